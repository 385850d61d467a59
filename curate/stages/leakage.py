"""Label leakage: the reply is already in the prompt, so the model learns to copy, not to answer.

Score of one assistant turn = containment: the share of its distinct word n-grams (casefolded `\\w+`
words, so punctuation and whitespace do not matter; `curate.text` shingles) that occur in the
system and user turns before it. Every assistant turn is scored, since `train` learns every reply;
the row's score is the maximum over its turns. Earlier assistant turns are not context: revising
or continuing one's own answer ("shorter please") is not the label being in the input. Jaccard
(`parroting`) misses the case this catches: a long context (a pasted document, a template that
includes the answer field) contains a short answer, so the word sets differ in size and the
Jaccard is small while the containment is 1.

Replies shorter than `min_reply_words` (default 3, the n-gram size) are not scored (score 0): on
the ShareGPT asset most 1-2 word replies over the threshold were instructed acknowledgements
("Acknowledged.", "Yes", "READ") and multiple-choice letters, not leakage. With `min_reply_words`
below `ngram`, a reply of k < n words ("42", "Paris.") scores 1 when its whole normalised k-word
sequence occurs in the context, else 0.

Some tasks legitimately copy the input: rewrite/proofread/fix/translate/format this text or code,
extract or quote, or multiple choice (the answer is one of the listed options). When the last user
turn before a reply asks for one (`exempt_pattern`: an imperative verb starting a sentence, or
multiple-choice cues), a turn over the threshold is kept and counted in the stage report
(`rows_exempt_over_threshold`); `exempt_pattern = ""` turns the exemption off.
`mode = "filter"` drops rows over `threshold` (reason `label_leakage`); `"flag"` keeps them. In both
modes the row's score goes to `meta.label_leakage` (3 decimals), for dropped rows too.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import polars as pl
from pydantic import Field, field_validator

from sftloop.curate.stages.base import Context, StageConfig, StageResult
from sftloop.curate.text import _mix, shingle_hashes, word_hashes

# Tasks whose right answer repeats the input, looked for in the last user turn before a reply: a
# copy/transform request (an imperative at the start of a sentence, so "what is the correct date?"
# in a pasted document does not count), or multiple choice (the answer is one of the listed options).
# Measured on ShareGPT: without it most turns over the threshold are these (docs/curate.md).
COPY_TASK = (r"(?:^|[.!?:\n]\s*)(?:(?:please|pls|now|then|can you|could you|would you|kindly|just)\s+)*"
             r"(?:re-?write|rephrase|paraphrase|proof-?read|correct|fix|edit|improve|polish|refactor|reword|revise|"
             r"modify|change|update|replace|add|remove|split|format|convert|translate|extract|quote|repeat|copy|"
             r"summari[sz]e|shorten|finish|complete|sentence case|capitali[sz]e|give me only|show|put|make)\b")
MULTIPLE_CHOICE = (r"\b(?:options|choices|which of the following|true or false|fill (?:in )?the blanks?)\b|"
                   r"(?s:(?:^|\s)\(?[a-dA-D][.)]\s.*?(?:^|\s)\(?[b-eB-E][.)]\s)")
EXEMPT = f"(?im){COPY_TASK}|{MULTIPLE_CHOICE}"


def _turns(df: pl.DataFrame) -> pl.DataFrame:
    """One row per message: msg (index), doc (frame row), pos (turn index), role, content, and `ask`:
    the msg index of the last user turn at or before it (null before the first user turn)."""
    t = (df.select(pl.col("messages")).with_row_index("doc").explode("messages")
         .with_columns(pos=pl.int_range(pl.len()).over("doc"), role=pl.col("messages").struct.field("role"),
                       content=pl.col("messages").struct.field("content").fill_null(""))
         .drop("messages").drop_nulls("role").with_row_index("msg"))
    return t.with_columns(ask=pl.when(pl.col("role") == "user").then(pl.col("msg")).forward_fill().over("doc"))


def _containment(cd, cp, ch, rm, rd, rp, rh, n_msgs: int) -> np.ndarray:
    """Per message index (< n_msgs): the share of its distinct shingles that occur in an earlier context
    turn of the same conversation (NaN for messages without reply shingles).

    Context (doc cd, turn cp, hash ch) and reply shingles (message rm, doc rd, turn rp) are keyed by
    one 64-bit hash of (doc, shingle) and sorted together by (key, turn) in one Polars sort; a reply
    shingle is found when a context entry precedes it in its key's run (a cumulative count), and
    repeats of a shingle in one reply are adjacent (same key and turn). No group-by, no join."""
    with np.errstate(over="ignore"):
        ck = _mix(ch ^ (cd.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))
        rk = _mix(rh ^ (rd.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))
    both = pl.DataFrame({"k": np.concatenate([ck, rk]), "p": np.concatenate([cp, rp]),
                         "m": np.concatenate([np.full(len(ck), -1, dtype=np.int64), rm.astype(np.int64)])})
    both = both.sort("k", "p")
    k, p, m = both["k"].to_numpy(), both["p"].to_numpy(), both["m"].to_numpy()
    is_ctx = m < 0
    new_key = np.r_[True, k[1:] != k[:-1]]
    seen = np.cumsum(is_ctx)
    before = seen - is_ctx  # context entries up to and excluding this one ...
    start = np.maximum.accumulate(np.where(new_key, np.arange(len(k)), 0))
    found = (before - (seen[start] - is_ctx[start])) > 0  # ... within this key's run (earlier turns sort first)
    repeat = np.r_[False, (~new_key[1:]) & (p[1:] == p[:-1]) & ~is_ctx[:-1]]
    rep = ~is_ctx & ~repeat
    n = np.bincount(m[rep], minlength=n_msgs)
    h = np.bincount(m[rep], weights=found[rep], minlength=n_msgs)
    return np.divide(h, n, out=np.full(n_msgs, np.nan), where=n > 0)


def turn_scores(df: pl.DataFrame, ngram: int = 3, min_reply_words: int = 1, exempt_pattern: str | None = EXEMPT,
                threshold: float = 0.0) -> pl.DataFrame:
    """Per assistant turn: doc, pos, words, score (containment in the earlier system+user text), and
    exempt (the last user turn before it matches `exempt_pattern`; only tested where score >= threshold)."""
    t = _turns(df)
    is_ctx = t["role"].is_in(["system", "user"]).to_numpy()
    is_rep = (t["role"] == "assistant").to_numpy()
    mdoc, wh = word_hashes(t["content"])  # mdoc: message index (row of t), words in order
    words = np.bincount(mdoc, minlength=t.height)
    doc_of, pos_of = t["doc"].to_numpy().astype(np.int64), t["pos"].to_numpy().astype(np.int64)
    in_ctx, in_rep = is_ctx[mdoc], is_rep[mdoc] & (words[mdoc] >= min_reply_words)
    rep_short = in_rep & (words[mdoc] < ngram)
    score = np.full(t.height, np.nan)
    # long replies: word n-grams; short replies (k < n words): their one k-gram against context k-grams
    for k, sel in [(ngram, in_rep & ~rep_short)] + [(k, rep_short & (words[mdoc] == k)) for k in range(1, ngram)]:
        if not sel.any():
            continue
        cm, ch = shingle_hashes(mdoc[in_ctx], wh[in_ctx], k)
        rm, rh = shingle_hashes(mdoc[sel], wh[sel], k)
        part = _containment(doc_of[cm], pos_of[cm], ch, rm, doc_of[rm], pos_of[rm], rh, t.height)
        score = np.where(np.isnan(part), score, part)
    reps = (t.with_columns(words=pl.Series(words, dtype=pl.Int64), score=pl.Series(np.nan_to_num(score, nan=0.0)))
            .filter(pl.col("role") == "assistant"))
    reps = reps.with_columns(exempt=pl.lit(False))
    cand = reps.filter(pl.col("score") >= threshold).select("msg", "ask")
    if exempt_pattern and cand.height:  # the regex runs on the few candidates' requests only
        asks = t.select(ask="msg", _text="content")
        ex = cand.join(asks, on="ask", how="left").select("msg", _ex=pl.col("_text").str.contains(exempt_pattern))
        reps = (reps.join(ex, on="msg", how="left", maintain_order="left")
                .with_columns(exempt=pl.col("_ex").fill_null(False)))
    return reps.select("doc", "pos", "words", "score", "exempt")


class LabelLeakage(StageConfig):
    """Drop (`filter`) or mark (`flag`) rows whose replies are contained in the system+user text before them."""

    type: Literal["label_leakage"] = "label_leakage"
    mode: Literal["filter", "flag"] = "filter"
    threshold: float = Field(0.8, gt=0, le=1)
    ngram: int = Field(3, ge=1, le=13)
    min_reply_words: int = Field(3, ge=1)  # shorter replies: unscored (see module doc)
    exempt_pattern: str | None = EXEMPT  # "" or null: no exemption
    expected_drop_share: ClassVar[float] = 0.01  # ShareGPT asset after clean, defaults: 0.7 % (docs/curate.md)

    @field_validator("exempt_pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v:
            try:  # the regex engine the stage uses (Rust `regex`), checked before any data is read
                pl.Series([""]).str.contains(v)
            except pl.exceptions.ComputeError as e:
                raise ValueError(f"not a valid regex: {str(e).splitlines()[0]}") from None
        return v

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        if df.height == 0:
            return StageResult.split(df.with_columns(label_leakage=pl.lit(None, pl.Float64)), None)
        ts = turn_scores(df, self.ngram, self.min_reply_words, self.exempt_pattern, self.threshold)
        over = ts["score"] >= self.threshold
        ts = ts.with_columns(_hit=over & ~ts["exempt"], _exempt_hit=over & ts["exempt"])
        per_row = ts.group_by("doc").agg(label_leakage=pl.col("score").max().round(3), _hit=pl.col("_hit").any(),
                                         _exempt=pl.col("_exempt_hit").any())
        full = (df.with_row_index("doc").join(per_row, on="doc", how="left", maintain_order="left")
                .with_columns(pl.col("_hit", "_exempt").fill_null(False), pl.col("label_leakage").fill_null(0.0))
                .drop("doc"))
        report = {
            "rows_scored": df.height, "turns_scored": ts.height, "rows_over_threshold": int(full["_hit"].sum()),
            "rows_exempt_over_threshold": int((full["_exempt"] & ~full["_hit"]).sum()),
            "score_histogram": {f"{b / 10:.1f}": int(c) for b, c in
                                zip(*np.unique(np.minimum((full["label_leakage"].to_numpy() * 10).astype(int), 9),
                                               return_counts=True))},
        }
        full = full.drop("_exempt")
        if self.mode == "flag":
            return StageResult.split(full.drop("_hit"), None).reported(ctx, self.name, counters=report)
        res = StageResult.split(full, pl.when(pl.col("_hit")).then(pl.lit("label_leakage"))).reported(
            ctx, self.name, counters=report)
        res.kept = res.kept.drop("_hit")
        # the score rides along with the dropped rows, so excluded.parquet has it in meta too
        res.dropped = res.dropped.join(full.select("_row", "label_leakage"), on="_row", how="left",
                                       maintain_order="left")
        return res
