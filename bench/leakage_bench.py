"""Label-leakage stage benchmark (prints figures; not a timed test).

On the ShareGPT asset after `clean`: conversations/s of `label_leakage` (vectorised: Polars words,
numpy shingles, one u64 group-by/join) next to a baseline measured in the same run: the plain Python
version of the same score (re.findall words, sets of 3-gram tuples per turn), on the same rows; the
two must give the same scores. Also the share of rows over the threshold at the defaults.

    python bench/leakage_bench.py [--rows 3000]
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np
import polars as pl

from sftloop.settings import offline_env


def baseline_scores(msgs_list: list[list[dict]], n: int = 3, min_words: int = 3) -> list[float]:
    """Row score = max over assistant turns of |reply n-grams ∩ earlier system/user n-grams| / |reply n-grams|."""
    out = []
    for msgs in msgs_list:
        seen: set[tuple] = set()
        best = 0.0
        for m in msgs:
            w = re.findall(r"\w+", m["content"].lower())
            grams = {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}
            if m["role"] == "assistant":
                if len(w) >= min_words and grams:
                    best = max(best, len(grams & seen) / len(grams))
            else:
                seen |= grams
        out.append(best)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=3000, help="rows for the baseline comparison")
    a = ap.parse_args()
    offline_env()
    from sftloop.curate.sources import SourceConfig, iter_source
    from sftloop.curate.stages.base import Context
    from sftloop.curate.stages.clean import Clean
    from sftloop.curate.stages.leakage import LabelLeakage
    from sftloop.schema import PARQUET_SCHEMA, QuarantineWriter

    ctx = Context(progress=False)
    src = SourceConfig(name="sharegpt", format="sharegpt", path="asset:sharegpt-v3-partial")
    df = pl.DataFrame([r.to_row() for r in iter_source(src, QuarantineWriter(None), [])], schema=PARQUET_SCHEMA)
    df = Clean().apply(df.with_row_index("_row"), ctx).kept
    words = df.select(pl.col("messages").list.eval(pl.element().struct.field("content").str.count_matches(r"\w+"))
                      .list.sum()).to_series().sum()
    print(f"ShareGPT after clean: {df.height} conversations, {words:,} words")

    sub = df.head(a.rows)
    stage = LabelLeakage(mode="flag", exempt_pattern="")  # the exemption is a regex on candidates only
    t = time.perf_counter()
    ours = stage.apply(sub, ctx).kept["label_leakage"].to_numpy()
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    base = np.round(baseline_scores(sub["messages"].to_list()), 3)
    t_base = time.perf_counter() - t
    same = int((np.abs(ours - base) < 1e-9).sum())
    print(f"{sub.height} rows: label_leakage {sub.height / t_ours:,.0f} rows/s, python baseline "
          f"{sub.height / t_base:,.0f} rows/s ({t_base / t_ours:.1f}x); same score on {same}/{sub.height} rows")

    t = time.perf_counter()
    res = LabelLeakage().apply(df, ctx)
    dt = time.perf_counter() - t
    rep = ctx.reports["label_leakage"]
    print(f"full asset, defaults (filter, threshold 0.8): {df.height / dt:,.0f} rows/s; dropped "
          f"{res.dropped.height} ({res.dropped.height / df.height:.2%}), exempt over threshold "
          f"{rep['rows_exempt_over_threshold']} ({rep['rows_exempt_over_threshold'] / df.height:.2%})")


if __name__ == "__main__":
    main()
