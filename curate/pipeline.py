"""Run a curation pipeline top to bottom: sources -> stages -> split -> write.

The runner does the accounting datatrove-style: each stage reports in/out/dropped and reasons,
`in == out + dropped` is checked after every stage, and overall
`input rows == train + val + test + excluded + quarantined` is checked before writing.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from curate.config import PipelineConfig
from curate.sources import SourceConfig, read_source
from curate.split import assign_splits
from curate.stages.base import BORDERLINE_SCHEMA, Context
from sftloop.schema import PARQUET_SCHEMA, QuarantineWriter


@dataclass
class StageStats:
    stage: str
    rows_in: int
    rows_out: int
    dropped: int
    seconds: float
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class RunResult:
    frame: pl.DataFrame
    excluded: pl.DataFrame
    funnel: list[StageStats]
    source_stats: list[dict]
    quarantine_path: Path
    rows_in: int
    reports: dict
    borderline: pl.DataFrame | None = None  # near-dup pairs near a threshold (review queue input)


def load_sources(cfg: PipelineConfig, quarantine: Path) -> tuple[pl.DataFrame, list[dict]]:
    qw = QuarantineWriter(quarantine)
    rows, stats = [], []
    try:
        for s in cfg.sources:
            recs, st = read_source(SourceConfig(name=s.name, format=s.format, path=s.path, limit=s.limit,
                                                pairs=s.pairs, weight=s.weight), qw)
            rows.extend(r.to_row() for r in recs)
            for x in st:
                stats.append({"source": s.name, "file": x.file, "rows_in": x.rows_in, "rows_out": x.rows_out,
                              "rows_quarantined": x.rows_quarantined})
    finally:
        qw.close()
    df = pl.DataFrame(rows, schema=PARQUET_SCHEMA).with_row_index("_row")
    return df, stats


def run(cfg: PipelineConfig, workdir: Path, progress: bool = True) -> RunResult:
    workdir.mkdir(parents=True, exist_ok=True)
    qpath = workdir / "quarantine.jsonl"
    qpath.unlink(missing_ok=True)
    ctx = Context(seed=cfg.seed, tokenizer=cfg.tokenizer, embedding_model=cfg.embedding_model, progress=progress)
    t0 = time.time()
    df, src_stats = load_sources(cfg, qpath)
    quarantined = sum(s["rows_quarantined"] for s in src_stats)
    rows_in = sum(s["rows_in"] for s in src_stats)
    funnel = [StageStats("read", rows_in, df.height, quarantined, time.time() - t0,
                         {"quarantined": quarantined} if quarantined else {})]
    if df.height != rows_in - quarantined:  # pair extraction changes the count: say so in the funnel
        funnel.append(StageStats("pairs", rows_in - quarantined, df.height, 0, 0.0,
                                 {"expanded_by_pairs": df.height - (rows_in - quarantined)}))
    excluded_parts = []
    for stage in cfg.stages:
        t = time.time()
        n_in = df.height
        res = stage.apply(df, ctx)
        kept, dropped = res.kept, res.dropped
        if kept.height + dropped.height != n_in:
            raise AssertionError(f"stage {stage.name}: in {n_in} != out {kept.height} + dropped {dropped.height}")
        if dropped.height:
            full = df.join(dropped, on="_row", how="inner").select(*df.columns, "reason", "rep_id")
            excluded_parts.append(full.with_columns(stage=pl.lit(stage.name)))
        funnel.append(StageStats(stage.name, n_in, kept.height, dropped.height, time.time() - t,
                                 dict(Counter(dropped["reason"].to_list()).most_common())))
        df = kept
        if progress:
            print(f"  {stage.name:16} in {n_in:>7}  out {kept.height:>7}  dropped {dropped.height:>6}  ({time.time() - t:.1f}s)")
    excluded = _excluded_frame(excluded_parts)
    borderline = (pl.concat(ctx.borderline).unique(["id_a", "id_b", "method"]).sort("method", "id_a", "id_b")
                  if ctx.borderline else pl.DataFrame(schema=BORDERLINE_SCHEMA))
    return RunResult(df, excluded, funnel, src_stats, qpath, rows_in, ctx.reports, borderline)


def _fold_helpers_into_meta(df: pl.DataFrame) -> pl.DataFrame:
    """Helper columns stages added (n_tokens, lang, refusal) go into meta; the record schema stays fixed."""
    helpers = [c for c in ("n_tokens", "lang", "refusal") if c in df.columns]
    if not helpers:
        return df
    metas = []
    for row in df.select("meta", *helpers).iter_rows(named=True):
        m = json.loads(row["meta"]) if row["meta"] else {}
        for h in helpers:
            if row[h] is not None:
                m[h] = row[h]
        metas.append(json.dumps(m, ensure_ascii=False, sort_keys=True))
    return df.with_columns(meta=pl.Series(metas, dtype=pl.String))


def _excluded_frame(parts: list[pl.DataFrame]) -> pl.DataFrame:
    cols = ["_row", *PARQUET_SCHEMA, "stage", "reason", "rep_id"]
    if not parts:
        return pl.DataFrame(schema={"_row": pl.UInt32, **PARQUET_SCHEMA, "stage": pl.String, "reason": pl.String,
                                    "rep_id": pl.String})
    return pl.concat([_fold_helpers_into_meta(p).select(cols) for p in parts]).sort("_row")


def finalise(cfg: PipelineConfig, res: RunResult) -> dict[str, pl.DataFrame]:
    df = _fold_helpers_into_meta(res.frame)
    df = df.with_columns(cluster=pl.col("id"))
    split = assign_splits(df, cfg.split, cfg.seed)
    df = df.with_columns(_split=split)
    out = {name: df.filter(pl.col("_split") == name).sort("_row").select(list(PARQUET_SCHEMA))
           for name in ("train", "val", "test")}
    out["excluded"] = res.excluded.drop("_row")
    total = sum(f.height for f in out.values()) + sum(s["rows_quarantined"] for s in res.source_stats)
    expected = res.rows_in + sum(st.rows_out - st.rows_in for st in res.funnel if st.stage == "pairs")
    if total != expected:
        raise AssertionError(f"accounting: train+val+test+excluded+quarantined = {total}, input rows = {expected}")
    return out
