"""Quality filters. Each only says keep, or drop with a named reason; thresholds are config."""

from __future__ import annotations

import re
from typing import Literal

import polars as pl
from pydantic import Field

from curate.language import detect_languages
from curate.stages.base import Context, StageConfig, StageResult
from curate.text import contents

# ---------------------------------------------------------------- minimum words


class MinWords(StageConfig):
    """Drop when the first user turn has <= user_min words or any assistant turn <= assistant_min words.

    Defaults (user > 4, assistant > 5) follow the well-known customer-support recipe. Later user
    turns ("continue", "thanks") are allowed to be short unless `all_user_turns = true`.
    """

    type: Literal["min_words"] = "min_words"
    user_min: int = Field(4, ge=0)
    assistant_min: int = Field(5, ge=0)
    all_user_turns: bool = False

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        el = pl.element()

        def words(e: pl.Expr) -> pl.Expr:
            return e.str.count_matches(r"\S+")

        def role_words(role: str) -> pl.Expr:
            return pl.col("messages").list.eval(
                el.filter(el.struct.field("role") == role).struct.field("content").str.count_matches(r"\S+"))

        user = role_words("user").list.min() if self.all_user_turns else words(contents(("user",), first_only=True))
        asst = role_words("assistant").list.min()
        reason = (pl.when(user.fill_null(0) <= self.user_min).then(pl.lit("min_words:user"))
                  .when(asst.fill_null(0) <= self.assistant_min).then(pl.lit("min_words:assistant")))
        return StageResult.split(df, reason)


# ---------------------------------------------------------------- token limit


class TokenLimit(StageConfig):
    """Token count of the fully templated conversation with the target model's own tokenizer.

    System prompt, role headers and special tokens all count, exactly as `train` will see them.
    The count is kept in the `n_tokens` column (written to meta).
    """

    type: Literal["token_limit"] = "token_limit"
    max_tokens: int = Field(2048, gt=0)
    min_tokens: int = Field(0, ge=0)
    batch_size: int = Field(512, gt=0)

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        from tqdm import tqdm

        tok = ctx.tokenizer_obj()
        msgs = df["messages"].to_list()
        counts: list[int] = []
        for i in tqdm(range(0, len(msgs), self.batch_size), desc="token_limit", disable=not ctx.progress, unit="batch"):
            texts = tok.apply_chat_template(msgs[i:i + self.batch_size], tokenize=False)
            enc = tok(texts, add_special_tokens=False)["input_ids"]
            counts.extend(len(x) for x in enc)
        df = df.with_columns(n_tokens=pl.Series(counts, dtype=pl.Int32))
        ctx.reports["token_limit"] = {"tokenizer": ctx.tokenizer, "max_tokens": self.max_tokens}
        reason = (pl.when(pl.col("n_tokens") > self.max_tokens).then(pl.lit(f"token_limit:>{self.max_tokens}"))
                  .when(pl.col("n_tokens") < self.min_tokens).then(pl.lit(f"token_limit:<{self.min_tokens}")))
        return StageResult.split(df, reason)


# ---------------------------------------------------------------- language


class Language(StageConfig):
    """lingua-language-detector on the user and assistant text without code blocks.

    `allowed` are ISO 639-1 codes. Text with too little prose to decide (after removing
    code) is kept and marked `und` unless `drop_undetermined`.
    """

    type: Literal["language"] = "language"
    allowed: list[str] = Field(default_factory=lambda: ["en"])
    max_chars: int = Field(600, gt=0)  # lingua is accurate on a few sentences; more costs time
    min_chars: int = Field(20, ge=0)
    drop_undetermined: bool = False

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        texts = df.select(t=contents(("user", "assistant")))["t"].to_list()
        codes = detect_languages(texts, self.min_chars, self.max_chars, ctx.progress)
        df = df.with_columns(lang=pl.Series(codes, dtype=pl.String))
        allowed = pl.col("lang").is_in(self.allowed)
        if not self.drop_undetermined:
            allowed = allowed | (pl.col("lang") == "und")
        return StageResult.split(df, pl.when(~allowed).then(pl.lit("language:") + pl.col("lang")))


# ---------------------------------------------------------------- parroting


def _word_set(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


class Parroting(StageConfig):
    """Drop when an assistant turn mostly repeats its user turn: 1 - nltk jaccard_distance >= threshold."""

    type: Literal["parroting"] = "parroting"
    threshold: float = Field(0.85, gt=0, le=1)

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        from nltk.metrics.distance import jaccard_distance

        reasons = []
        for msgs in df["messages"].to_list():
            why = None
            for prev, cur in zip(msgs, msgs[1:]):
                if prev["role"] == "user" and cur["role"] == "assistant":
                    a, b = _word_set(prev["content"]), _word_set(cur["content"])
                    if a and b and 1 - jaccard_distance(a, b) >= self.threshold:
                        why = "parroting"
                        break
            reasons.append(why)
        return _by_list(df, reasons)


# ---------------------------------------------------------------- truncation

TERMINAL = tuple(".!?:;)]}\"'`*»”’…>|") + ("```",)
LIST_OR_CODE_LINE = re.compile(r"^\s*(?:[-*+•]|\d+[.)]|#|\||//|<|[A-Za-z_][\w.]*\s*[=(:{])")


def truncation_reason(text: str, min_words_last_line: int = 6) -> str | None:
    t = text.rstrip()
    if t.count("```") % 2 == 1:
        return "truncated:open_code_fence"
    if not t or t.endswith(TERMINAL) or not t[-1].isalnum() and t[-1] not in ",-":
        return None
    last = t.rsplit("\n", 1)[-1]
    if LIST_OR_CODE_LINE.match(last) or len(last.split()) < min_words_last_line:
        return None
    return "truncated:mid_sentence"


class Truncated(StageConfig):
    """Drop conversations whose assistant replies end mid-sentence or inside an open code fence.

    `last_turn_only` (default) checks the final assistant reply, where exports cut off.
    """

    type: Literal["truncated"] = "truncated"
    last_turn_only: bool = True

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        reasons = []
        for msgs in df["messages"].to_list():
            replies = [m["content"] for m in msgs if m["role"] == "assistant"]
            if self.last_turn_only:
                replies = replies[-1:]
            reasons.append(next((r for r in map(truncation_reason, replies) if r), None))
        return _by_list(df, reasons)


# ---------------------------------------------------------------- refusals and boilerplate

REFUSAL = re.compile(
    r"\b(?:as an ai(?: language)? model|as a language model|i(?:'m| am) (?:just )?an ai\b|"
    r"i (?:cannot|can't|am unable to|am not able to) (?:browse|provide|fulfill|assist|help with|access|generate)|"
    r"i'?m sorry,? but (?:i|as an)|my knowledge cutoff|i do not have (?:personal )?(?:opinions|feelings|the ability))",
    re.I,
)


class Refusal(StageConfig):
    """Refusal / boilerplate replies ("As an AI language model ..."): `mode = "filter"` drops, `"flag"` marks meta."""

    type: Literal["refusal"] = "refusal"
    mode: Literal["filter", "flag"] = "filter"

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        hit = contents(("assistant",)).str.contains("(?i)" + REFUSAL.pattern)
        if self.mode == "flag":
            return StageResult.split(df.with_columns(refusal=hit), None)
        return StageResult.split(df, pl.when(hit).then(pl.lit("refusal")))


def _by_list(df: pl.DataFrame, reasons: list[str | None]) -> StageResult:
    tagged = df.with_columns(_why=pl.Series(reasons, dtype=pl.String))
    res = StageResult.split(tagged, pl.col("_why"))
    res.kept = res.kept.drop("_why", strict=False)
    return res
