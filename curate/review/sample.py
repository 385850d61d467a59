"""Stratified random sample of a dataset version for QA review: by source and length bucket."""

from __future__ import annotations

import hashlib
import json

import polars as pl

LENGTH_BUCKETS = ((0, 128, "short"), (128, 512, "medium"), (512, None, "long"))  # tokens, [lo, hi)


def length_bucket(n: int) -> str:
    for lo, hi, name in LENGTH_BUCKETS:
        if n >= lo and (hi is None or n < hi):
            return name
    return "long"


def _tokens(row_meta: str | None, messages: list[dict]) -> int:
    meta = json.loads(row_meta) if row_meta else {}
    if "n_tokens" in meta:  # the target tokenizer's count from curate's token_limit stage
        return int(meta["n_tokens"])
    return int(sum(len(m["content"].split()) for m in messages) * 1.3)  # rough, when curate did not count


def stratified_sample(df: pl.DataFrame, size: int, seed: int = 0) -> pl.DataFrame:
    """`size` rows, allocated to (source, length_bucket) strata in proportion to their size (largest
    remainder), at least one per stratum when `size` allows (taken from the largest allocation).
    Inside a stratum the order is a seeded hash of the id: the same seed gives the same sample."""
    if df.height == 0 or size <= 0:
        return df.head(0).with_columns(length_bucket=pl.lit(None, pl.String))
    buckets = [length_bucket(_tokens(m, msgs)) for m, msgs in zip(df["meta"].to_list(), df["messages"].to_list())]
    df = df.with_columns(length_bucket=pl.Series(buckets, dtype=pl.String),
                         _order=pl.Series([hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in df["id"]]))
    strata = df.group_by("source", "length_bucket").len().sort("source", "length_bucket")
    size = min(size, df.height)
    n = strata["len"].to_list()
    exact = [size * c / df.height for c in n]
    quota = [int(e) for e in exact]
    for k in sorted(range(len(n)), key=lambda k: (-(exact[k] - quota[k]), k))[: size - sum(quota)]:
        quota[k] += 1  # largest remainders; never above the stratum's size since exact <= n
    if size >= len(n):  # every stratum seen at least once: take from the largest allocations
        for k in [k for k in range(len(n)) if quota[k] == 0]:
            donor = max(range(len(n)), key=lambda d: (quota[d], -d))
            quota[donor] -= 1
            quota[k] += 1
    quotas = strata.with_columns(_quota=pl.Series(quota)).select("source", "length_bucket", "_quota")
    out = (df.join(quotas, on=["source", "length_bucket"]).sort("_order")
           .filter(pl.int_range(pl.len()).over("source", "length_bucket") < pl.col("_quota")))
    return out.sort("_order").drop("_order", "_quota")
