"""Train/val(/test) split that keeps every near-duplicate cluster on one side.

Rows are grouped by `cluster` (the representative id that dedup stages leave; the row's own
id otherwise) and a group goes wholly to one split, chosen by a seeded hash of the group key,
so the assignment does not depend on row order. `mode = "time"` sorts groups by their earliest
`meta.<time_field>` and puts the newest fraction in val/test.
"""

from __future__ import annotations

import hashlib

import polars as pl

from sftloop.curate.config import SplitSpec


def assign_splits(df: pl.DataFrame, spec: SplitSpec, seed: int) -> pl.Series:
    group = pl.col("cluster") if "cluster" in df.columns else pl.col("id")
    if spec.mode == "time":
        ts = pl.col("meta").str.json_path_match(f"$.{spec.time_field}")
        g = df.select(_g=group, _t=ts).group_by("_g").agg(pl.col("_t").min()).sort("_t", "_g", nulls_last=False)
        n = g.height
        n_test = round(n * spec.test_fraction)
        n_val = round(n * spec.val_fraction)
        labels = ["train"] * (n - n_val - n_test) + ["val"] * n_val + ["test"] * n_test
        lut = g.with_columns(_split=pl.Series(labels))
        return df.select(_g=group).join(lut.select("_g", "_split"), on="_g", how="left", maintain_order="left")["_split"]
    # a stable (cross-version) hash: sha256 of seed and group key, not Polars' hash
    u = group.map_elements(lambda k: int(hashlib.sha256(f"{seed}:{k}".encode()).hexdigest()[:12], 16) / 16**12,
                           return_dtype=pl.Float64)
    expr = (pl.when(u < spec.test_fraction).then(pl.lit("test"))
            .when(u < spec.test_fraction + spec.val_fraction).then(pl.lit("val"))
            .otherwise(pl.lit("train")))
    return df.select(expr.alias("_split"))["_split"]
