"""token_limit benchmark (prints figures; not a timed test).

On the first N cleaned ShareGPT conversations, with the SmolLM2 tokenizer and its chat template:
- `mode = "drop"` conversations/s (one batched render + tokenization);
- `mode = "truncate_turns"` conversations/s (ours: one tokenization with offsets, binary search over
  turn boundaries located in the full rendering, one confirming tokenization of the kept prefix);
- the baseline: `train`'s way (`train/masking.encode`, `overflow = "turns"`): tokenize the prefix at
  every earlier assistant boundary, longest first, until one fits, row by row;
- agreement: the kept prefix length is the same as the baseline's for every row.

    python bench/token_limit_bench.py [--rows 2000] [--max-tokens 1024]
"""

from __future__ import annotations

import argparse
import time

import polars as pl

from sftloop.settings import offline_env


def conversations(n: int) -> pl.DataFrame:
    from sftloop.curate.sources import SourceConfig, iter_source
    from sftloop.curate.stages.clean import Clean
    from sftloop.curate.stages.base import Context
    from sftloop.schema import PARQUET_SCHEMA, QuarantineWriter

    qw = QuarantineWriter(None)
    src = SourceConfig(name="sharegpt", format="sharegpt", path="asset:sharegpt-v3-partial", limit=n)
    rows = [rec.to_row() for rec in iter_source(src, qw, [])]
    df = pl.DataFrame(rows, schema=PARQUET_SCHEMA).with_row_index("_row")
    return Clean().apply(df, Context(progress=False)).kept.drop("_row").with_row_index("_row")


def baseline_keep(tok, msgs: list[dict], max_tokens: int) -> int | None:
    """Messages kept, the way train/masking.encode(overflow="turns") searches: longest prefix first."""
    def n_tok(m):
        return len(tok(tok.apply_chat_template(m, tokenize=False), add_special_tokens=False)["input_ids"])

    if n_tok(msgs) <= max_tokens:
        return len(msgs)
    for k in reversed([i for i, m in enumerate(msgs[:-1]) if m["role"] == "assistant"]):
        if n_tok(msgs[: k + 1]) <= max_tokens:
            return k + 1
    return None


def main() -> None:
    offline_env()
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--max-tokens", type=int, default=1024)
    a = ap.parse_args()
    from sftloop.curate.stages.base import Context
    from sftloop.curate.stages.filters import TokenLimit

    df = conversations(a.rows)
    ctx = Context(progress=False)
    tok = ctx.tokenizer_obj()
    print(f"{df.height:,} cleaned ShareGPT conversations, max_tokens {a.max_tokens}, tokenizer {ctx.tokenizer}")
    t = time.perf_counter()
    drop = TokenLimit(max_tokens=a.max_tokens).apply(df, ctx)
    t_drop = time.perf_counter() - t
    t = time.perf_counter()
    trunc = TokenLimit(max_tokens=a.max_tokens, mode="truncate_turns").apply(df, ctx)
    t_trunc = time.perf_counter() - t
    rep = ctx.reports["token_limit"]
    t = time.perf_counter()
    base = [baseline_keep(tok, m, a.max_tokens) for m in df["messages"].to_list()]
    t_base = time.perf_counter() - t
    ours: list[int | None] = [None] * df.height
    for r, m in zip(trunc.kept["_row"].to_list(), trunc.kept["messages"].to_list()):
        ours[r] = len(m)
    agree = sum(o == b for o, b in zip(ours, base))
    print(f"drop mode:             {df.height / t_drop:8.0f} conv/s  dropped {drop.dropped.height:,} "
          f"({drop.dropped.height / df.height:.1%})")
    print(f"truncate_turns (ours): {df.height / t_trunc:8.0f} conv/s  truncated {rep['rows_truncated']:,}, "
          f"dropped {trunc.dropped.height:,} ({trunc.dropped.height / df.height:.1%}), turns cut {rep['turns_cut']:,}, "
          f"tokens cut {rep['tokens_cut']:,}")
    print(f"baseline (train's per-prefix search): {df.height / t_base:8.0f} conv/s   ours/baseline = {t_base / t_trunc:.1f}x")
    print(f"kept prefix agrees with the baseline on {agree:,} of {df.height:,} rows")


if __name__ == "__main__":
    main()
