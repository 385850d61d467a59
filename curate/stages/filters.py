"""Quality filters. Each only says keep, or drop with a named reason; thresholds are config."""

from __future__ import annotations

import bisect
import difflib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Literal

import polars as pl
from pydantic import Field, model_validator

from sftloop.curate.language import detect_languages
from sftloop.rules import refusal_candidates, refusal_match, truncation_reason
from sftloop.curate.stages.base import Context, FieldError, StageConfig, StageResult
from sftloop.curate.text import contents
from sftloop.schema import content_id

# ---------------------------------------------------------------- minimum words


class MinWords(StageConfig):
    """Drop when the first user turn has <= user_min words or any assistant turn <= assistant_min words.

    Defaults (user > 4, assistant > 5) follow the well-known customer-support recipe. Later user
    turns ("continue", "thanks") are allowed to be short unless `all_user_turns = true`.
    """

    type: Literal["min_words"] = "min_words"
    expected_drop_share: ClassVar[float] = 0.08  # ShareGPT demo: 8.3 % (docs/curate.md)
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

    `mode = "drop"` drops a conversation over `max_tokens`. `mode = "truncate_turns"` keeps the longest
    prefix that ends with an assistant reply and fits (what `train` does with `overflow = "turns"`) and
    drops only a conversation whose first exchange does not fit (`token_limit:first_turn_too_long`).
    A truncated row gets `turns_cut` in meta and a new content id (the old one in `pre_truncate_id`; an
    id the source gave is kept); the stage report counts rows truncated and turns cut.

    Decisions need only the first `max_tokens` + 1 tokens, so a conversation is tokenized in pieces cut
    at the template's special tokens until it passes the limit (`count_tokens`): on ShareGPT most rows
    are far over 1,024 tokens and most of their text is never tokenized. The count of a row over the
    limit is then not known: its `n_tokens` is null (kept rows always have their exact count) and a
    truncated row has no `tokens_cut`. `exact_counts = true` counts everything (and writes
    `meta.tokens_cut` and the report's `tokens_cut`), as the stage did before.
    """

    type: Literal["token_limit"] = "token_limit"
    max_tokens: int = Field(2048, gt=0)
    min_tokens: int = Field(0, ge=0)
    mode: Literal["drop", "truncate_turns"] = "drop"
    batch_size: int = Field(512, gt=0)
    exact_counts: bool = Field(False, description="count every token of a conversation over the limit too (n_tokens of "
                               "dropped rows, meta.tokens_cut): the stage before issue 18 (its counting 1.6x slower on ShareGPT)")
    expected_drop_share: ClassVar[float] = 0.1  # ShareGPT demo, 1,024, truncate_turns: 10.2 % (drop: 64.4 %)

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        from tqdm import tqdm

        tok = ctx.tokenizer_obj()
        truncate = self.mode == "truncate_turns"
        cap = None if self.exact_counts else self.max_tokens
        msgs = df["messages"].to_list()
        counts: list[int | None] = []  # None: over the limit, not counted past it
        kept_turns: dict[int, tuple[int, int] | None] = {}  # row -> (messages kept, tokens) for rows over the limit
        checked: list[str] = []
        for i in tqdm(range(0, len(msgs), self.batch_size), desc="token_limit", disable=not ctx.progress, unit="batch"):
            batch = msgs[i:i + self.batch_size]
            texts = tok.apply_chat_template(batch, tokenize=False)
            c = count_tokens(tok, texts, cap, offsets=truncate, check=not checked)
            checked.append(c.method)
            counts.extend(n if done else None for n, done in zip(c.counts, c.complete))
            if truncate:
                over = [j for j, (n, done) in enumerate(zip(c.counts, c.complete)) if not done or n > self.max_tokens]
                fits = fit_prefixes(tok, [batch[j] for j in over], [texts[j] for j in over],
                                    [c.ends[j] for j in over], self.max_tokens)  # type: ignore[index]
                kept_turns.update({i + j: fit for j, fit in zip(over, fits)})
        info = {"tokenizer": ctx.tokenizer, "max_tokens": self.max_tokens, "mode": self.mode,
                "counting": max(set(checked), key=checked.count) if checked else "none"}
        report: dict = {} if self.exact_counts else {"rows_not_counted_past_limit": sum(n is None for n in counts)}
        if truncate:
            df, counts, report = self._truncate(df, msgs, counts, kept_turns, report)
        df = df.with_columns(n_tokens=pl.Series(counts, dtype=pl.Int32))
        over = (pl.lit("token_limit:first_turn_too_long") if truncate else pl.lit(f"token_limit:>{self.max_tokens}"))
        n = pl.col("n_tokens")
        reason = (pl.when(n.is_null() | (n > self.max_tokens)).then(over)
                  .when(n < self.min_tokens).then(pl.lit(f"token_limit:<{self.min_tokens}")))
        return StageResult.split(df, reason).reported(ctx, self.name, counters=report, info=info)

    def _truncate(self, df: pl.DataFrame, msgs: list, counts: list[int], kept_turns: dict, report: dict):
        """Replace each row over the limit by its longest fitting prefix (rows with none keep their count,
        so the reason expression drops them)."""
        new_msgs, ids, metas = list(msgs), df["id"].to_list(), df["meta"].to_list()
        rows = turns = tokens = 0
        for r, fit in kept_turns.items():
            if fit is None:
                continue
            keep, n_tok = fit
            m = json.loads(metas[r]) if metas[r] else {}
            m["turns_cut"] = len(msgs[r]) - keep
            if counts[r] is not None:  # counted to its end (exact_counts, or a row just over the limit)
                m["tokens_cut"] = counts[r] - n_tok
            new_msgs[r] = msgs[r][:keep]
            given = ids[r] != content_id(msgs[r])  # an id the source gave (`records`) is kept, as `clean` does
            nid = ids[r] if given else content_id(new_msgs[r])
            if nid != ids[r]:
                m.setdefault("pre_truncate_id", ids[r])
            ids[r] = nid
            metas[r] = json.dumps(m, ensure_ascii=False, sort_keys=True)
            rows, turns, tokens = rows + 1, turns + m["turns_cut"], tokens + m.get("tokens_cut", 0)
            counts[r] = n_tok
        report.update(rows_truncated=rows, turns_cut=turns, rows_first_turn_too_long=sum(v is None for v in kept_turns.values()))
        if self.exact_counts:
            report["tokens_cut"] = tokens
        if rows:
            df = df.with_columns(messages=pl.Series(new_msgs, dtype=df.schema["messages"]),
                                 id=pl.Series(ids, dtype=pl.String), meta=pl.Series(metas, dtype=pl.String))
        return df, counts, report


@dataclass
class Counts:
    counts: list[int]  # tokens counted: the exact total where `complete`, else already over the cap
    complete: list[bool]
    ends: list[list[int]] | None  # end offsets of the tokens counted (when asked for)
    method: str  # "pieces" or "full" (and why)


CHARS_PER_TOKEN_ASKED = 3  # a piece covers 3 characters per token still needed (SmolLM2 on ShareGPT: 4.2 per token)


def _tokenize(tok, texts: list[str], offsets: bool) -> tuple[list[int], list[list[int]] | None]:
    if not texts:  # transformers' fast tokenizer fails on an empty batch
        return [], [] if offsets else None
    enc = tok(texts, add_special_tokens=False, return_offsets_mapping=offsets)
    ends = [[e for _, e in o] for o in enc["offset_mapping"]] if offsets else None
    return [len(x) for x in enc["input_ids"]], ends


def count_tokens(tok, texts: list[str], cap: int | None, offsets: bool = False, check: bool = False) -> Counts:
    """Token counts of `texts`, exact up to `cap` (None: exact everywhere). Over the cap, a text is
    tokenized only until its count passes the cap.

    A text is cut only where one of the tokenizer's added special tokens starts (`_split_marks`: the
    tokenizer splits there before normalising or pre-tokenizing, so the pieces' tokens are exactly the
    whole text's, in order). Each round tokenizes, for every text still at or under the cap, the next
    piece: up to the first special token after `CHARS_PER_TOKEN_ASKED` characters per token still
    needed, all texts of a round in one batch (the Rust tokenizer's threads). A template with no special
    tokens between turns, or a text with none left, is tokenized whole.

    `check`: the texts cut into pieces are also tokenized whole (up to 8) and compared; where pieces and
    whole differ, every text is tokenized whole and `method` says why (never a wrong count)."""
    n = len(texts)
    marks = _split_marks(tok) if cap is not None else ()
    if not marks:
        c, e = _tokenize(tok, texts, offsets)
        return Counts(c, [True] * n, e, "full" if cap is None else "full (no special tokens to cut at)")
    pat = re.compile("|".join(re.escape(m) for m in sorted(marks, key=len, reverse=True)))
    pos, counts = [0] * n, [0] * n
    ends: list[list[int]] = [[] for _ in range(n)]
    pieces_of = [0] * n
    todo = list(range(n))
    while todo:
        cuts = []
        for i in todo:
            t, at = texts[i], pos[i] + CHARS_PER_TOKEN_ASKED * (cap + 1 - counts[i])
            m = pat.search(t, at) if at < len(t) else None
            cuts.append(m.start() if m else len(t))
        c, e = _tokenize(tok, [texts[i][pos[i]:end] for i, end in zip(todo, cuts)], offsets)
        nxt = []
        for k, (i, end) in enumerate(zip(todo, cuts)):
            counts[i] += c[k]
            if e is not None:
                ends[i].extend(pos[i] + x for x in e[k])
            pos[i], pieces_of[i] = end, pieces_of[i] + 1
            if end < len(texts[i]) and counts[i] <= cap:
                nxt.append(i)
        todo = nxt
    complete = [p == len(t) for p, t in zip(pos, texts)]
    if check:
        cut = [i for i in range(n) if pieces_of[i] > 1 or not complete[i]][:8]
        whole_c, whole_e = _tokenize(tok, [texts[i] for i in cut], True)
        for k, i in enumerate(cut):
            mine = ends[i] if offsets else None
            same = (whole_c[k] == counts[i]) if complete[i] else whole_c[k] >= counts[i]
            if same and mine is not None:
                same = whole_e[k][:len(mine)] == mine  # type: ignore[index]
            if not same:
                c, e = _tokenize(tok, texts, offsets)
                return Counts(c, [True] * n, e, "full (pieces differed from the whole text on a checked row)")
    return Counts(counts, complete, ends if offsets else None, "pieces")


def _proper_prefixes(messages: list[dict]) -> list[int]:
    """Lengths of the prefixes that end with an assistant reply, shorter than the conversation."""
    return [k + 1 for k, m in enumerate(messages[:-1]) if m["role"] == "assistant"]


def _n_tokens(tok, texts: list[str]) -> list[int]:
    return _tokenize(tok, texts, False)[0]


def estimate_prefix(tok, messages: list[dict], text: str, token_ends: list[int], max_tokens: int) -> tuple[int, str] | None:
    """The longest proper prefix ending with an assistant reply whose estimated size fits: (messages kept,
    its rendering), or None. `text` is the full rendering and `token_ends` its tokens' end offsets (the one
    tokenization): a prefix's size is the number of tokens that end where its own rendering ends in `text`
    (templates are prefix-stable: the rendering of turns [:k] is the start of the full one; where not, the
    prefix is tokenized itself). Sizes grow with the prefix, so the boundaries are binary-searched."""
    cands = _proper_prefixes(messages)
    rendered: dict[int, str] = {}

    def size(n: int) -> int:
        r = rendered[n] = tok.apply_chat_template(messages[:n], tokenize=False)
        return bisect.bisect_right(token_ends, len(r)) if text.startswith(r) else _n_tokens(tok, [r])[0]

    lo, hi = 0, len(cands)  # invariant: cands[:lo] fit, cands[hi:] do not
    while lo < hi:
        mid = (lo + hi) // 2
        if size(cands[mid]) <= max_tokens:
            lo = mid + 1
        else:
            hi = mid
    return (cands[lo - 1], rendered[cands[lo - 1]]) if lo else None


def _split_marks(tok) -> tuple[str, ...]:
    """Added special tokens that leave the whitespace before them alone (no `lstrip`): the tokenizer cuts the
    text at each before normalising or pre-tokenising, so the text before one is tokenized independently."""
    added = getattr(tok, "added_tokens_decoder", {}) or {}
    return tuple(t.content for t in added.values() if getattr(t, "special", False) and not getattr(t, "lstrip", True))


def fit_prefixes(tok, convs: list[list[dict]], texts: list[str], token_ends: list[list[int]],
                 max_tokens: int) -> list[tuple[int, int] | None]:
    """For conversations over `max_tokens`: (messages kept, exact token count) of the longest prefix that ends
    with an assistant reply and fits, or None when even the first exchange does not fit.

    An estimate (`estimate_prefix`) is exact where the kept prefix is a prefix of the full rendering, a token
    of it ends exactly where the prefix ends, and an added special token starts right there (the tokenizer
    splits at added tokens before anything else, so the text before one is tokenized the same alone:
    ChatML-style templates, SmolLM2's). Every other estimate is confirmed by tokenizing the kept prefix, all
    rows in one batch, so the count is exactly what `train` will see; where an estimate was off (a token
    spanning a boundary in a template without special tokens there), shorter prefixes are tried exactly,
    longest first."""
    est = [estimate_prefix(tok, m, t, e, max_tokens) for m, t, e in zip(convs, texts, token_ends)]
    marks = _split_marks(tok)
    exact: dict[int, int] = {}
    todo: list[int] = []
    for k, v in enumerate(est):
        if v is None:
            continue
        cut = len(v[1])
        n = bisect.bisect_right(token_ends[k], cut)
        if marks and n and token_ends[k][n - 1] == cut and texts[k].startswith(v[1]) and texts[k].startswith(marks, cut):
            exact[k] = n
        else:
            todo.append(k)
    exact.update(zip(todo, _n_tokens(tok, [est[k][1] for k in todo])))  # type: ignore[index]
    out: list[tuple[int, int] | None] = []
    for k, v in enumerate(est):
        if v is None:
            out.append(None)
        elif exact[k] <= max_tokens:
            out.append((v[0], exact[k]))
        else:  # rare: step down exactly
            out.append(None)
            for n in reversed([n for n in _proper_prefixes(convs[k]) if n < v[0]]):
                c = _n_tokens(tok, [tok.apply_chat_template(convs[k][:n], tokenize=False)])[0]
                if c <= max_tokens:
                    out[-1] = (n, c)
                    break
    return out


# ---------------------------------------------------------------- language


@lru_cache(maxsize=1)
def lingua_codes() -> dict[str, str]:
    """ISO 639-1 code -> language name, for every language lingua detects (75)."""
    from lingua import Language as L

    return dict(sorted((lang.iso_code_639_1.name.lower(), lang.name.lower()) for lang in L.all()))


def iso_code_hint(value: str) -> str:
    """`; did you mean 'en'?` for a language name, an ISO 639-3 code or a wrong case; else ''."""
    from lingua import Language as L

    v = str(value).strip().lower()
    by_alias = {lang.name.lower(): lang.iso_code_639_1.name.lower() for lang in L.all()}
    by_alias |= {lang.iso_code_639_3.name.lower(): lang.iso_code_639_1.name.lower() for lang in L.all()}
    by_alias |= {c: c for c in lingua_codes()}
    code = by_alias.get(v)
    if code is None:
        close = difflib.get_close_matches(v, [a for a in by_alias if len(a) > 3], n=1, cutoff=0.75)
        code = by_alias[close[0]] if close else None
    return f"; did you mean {code!r}?" if code else ""


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
    expected_drop_share: ClassVar[float] = 0.01  # ShareGPT demo, ["en"]: 1.1 %

    @model_validator(mode="after")
    def _iso_codes(self) -> "Language":
        known = lingua_codes()
        if not self.allowed:
            raise FieldError("allowed", "empty list would drop every row; name ISO 639-1 codes, e.g. [\"en\"]")
        for j, code in enumerate(self.allowed):
            if code == "und":
                raise FieldError(f"allowed[{j}]", "'und' is not a language; undetermined rows are kept unless "
                                                  "drop_undetermined = true")
            if code not in known:
                raise FieldError(f"allowed[{j}]", f"{code!r} is not an ISO 639-1 code lingua detects"
                                                  f"{iso_code_hint(code)} (known: {', '.join(known)})")
            if code in self.allowed[:j]:
                raise FieldError(f"allowed[{j}]", f"{code!r} is listed twice")
        return self

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
    expected_drop_share: ClassVar[float] = 0.002  # ShareGPT demo: 0.2 %
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

class Truncated(StageConfig):
    """Drop conversations whose assistant replies end mid-sentence or inside an open code fence.

    `last_turn_only` (default) checks the final assistant reply, where exports cut off.
    """

    type: Literal["truncated"] = "truncated"
    expected_drop_share: ClassVar[float] = 0.04  # ShareGPT demo: 4.1 %
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

class Refusal(StageConfig):
    """Refusal / boilerplate replies ("As an AI language model ...", "I can't assist with that"), the one
    definition in `sftloop/rules.py` that mining uses too.

    `scope = "last"` (default) checks the last assistant reply, the one that is trained; `"any"` checks
    every assistant reply. `mode = "filter"` drops; `"flag"` keeps the row and marks meta `refusal: true`.
    A dropped row's meta says which message (`turn`, 0-based index into `messages`) and which phrase
    matched: `{"refusal": {"turn": 3, "phrase": "As an AI language model"}}` in excluded.parquet.
    """

    type: Literal["refusal"] = "refusal"
    expected_drop_share: ClassVar[float] = 0.007  # ShareGPT demo, scope "last": 0.7 % ("any": 2.4 %; docs/curate.md)
    mode: Literal["filter", "flag"] = "filter"
    scope: Literal["last", "any"] = "last"

    def match(self, messages: list[dict]) -> dict | None:
        """{"turn", "phrase"} of the first refusal in scope, or None."""
        turns = [k for k, m in enumerate(messages) if m["role"] == "assistant"]
        for k in turns[-1:] if self.scope == "last" else turns:
            phrase = refusal_match(messages[k]["content"])
            if phrase is not None:
                return {"turn": k, "phrase": phrase}
        return None

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        el = pl.element()
        in_scope = (contents(("assistant",)) if self.scope == "any" else pl.col("messages").list.eval(
            el.filter(el.struct.field("role") == "assistant").struct.field("content")).list.last())
        cand = refusal_candidates(df.select(t=in_scope)["t"])  # column-wise; `match` confirms each candidate
        found: list[dict | None] = [None] * df.height
        for i, msgs in zip(cand.arg_true().to_list(), df.filter(cand)["messages"].to_list()):
            found[i] = self.match(msgs)
        if self.mode == "flag":
            return StageResult.split(df.with_columns(refusal=pl.Series([f is not None for f in found])), None)
        res = _by_list(df, ["refusal" if f else None for f in found])
        # the detail travels as a helper column of the dropped rows; the runner folds it into meta
        detail = [json.dumps(f, ensure_ascii=False) for f in found if f]
        res.dropped = res.dropped.with_columns(refusal=pl.Series(detail, dtype=pl.String).str.json_decode(
            pl.Struct({"turn": pl.Int64, "phrase": pl.String})) if detail else pl.lit(None))
        return res


def _by_list(df: pl.DataFrame, reasons: list[str | None]) -> StageResult:
    tagged = df.with_columns(_why=pl.Series(reasons, dtype=pl.String))
    res = StageResult.split(tagged, pl.col("_why"))
    res.kept = res.kept.drop("_why", strict=False)
    return res
