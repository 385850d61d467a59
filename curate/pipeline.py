"""Run a curation pipeline top to bottom: sources -> stages -> split -> write.

Memory stays bounded by the shard size, not the input size: sources stream into Parquet shards of
`shard_rows` rows under the work dir; a row stage (`StageConfig.apply`) runs shard by shard; a
stage that must see every row (`GlobalStage`: dedup, mixing) computes narrow features shard by
shard (hashes, signatures, embeddings, weights), decides on all features at once, and reads full
texts back only for the rows it asks for (MinHash candidates). Kept rows and excluded rows are
written as shards again, so at no point is the whole dataset in memory.

The runner does the accounting datatrove-style: each stage reports in/out/dropped and reasons,
`in == out + dropped` is checked per shard and per stage, and overall
`input rows == train + val + test + excluded + quarantined` is checked before writing.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from sftloop.curate.config import PipelineConfig
from sftloop.curate.sources import InputError, SourceConfig, iter_source, resolve_paths
from sftloop.curate.split import assign_splits
from sftloop.curate.stages.base import BORDERLINE_SCHEMA, Context, StageConfig
from sftloop.curate.stages.system_prompt import INPUT_SYSTEM_PROMPTS, prompt_distribution
from sftloop.curate.text import contents
from sftloop.schema import PARQUET_SCHEMA, QuarantineWriter

ROW_GROUP = 65_536
EXCLUDED_SCHEMA = {"_row": pl.UInt32, **PARQUET_SCHEMA, "stage": pl.String, "reason": pl.String, "rep_id": pl.String}
CONSTANT_REPORT_KEYS = {"eval_items", "max_tokens", "tokenizer"}  # the same in every shard's report: not summed


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
    shards: list[Path]  # kept rows after the last stage
    excluded: list[Path]  # dropped rows: full row + stage, reason, rep_id
    funnel: list[StageStats]
    source_stats: list[dict]
    quarantine_path: Path
    rows_in: int
    reports: dict
    borderline: pl.DataFrame | None = None  # near-dup pairs near a threshold (review queue input)


class _Shards:
    """Numbered Parquet files under one directory."""

    def __init__(self, root: Path, name: str):
        self.dir = root / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.paths: list[Path] = []

    def write(self, df: pl.DataFrame) -> None:
        if df.height == 0:
            return
        p = self.dir / f"{len(self.paths):05d}.parquet"
        df.write_parquet(p)
        self.paths.append(p)


def load_sources(cfg: PipelineConfig, quarantine: Path, work: Path,
                 first_errors: list[str] | None = None) -> tuple[list[Path], list[dict], int]:
    """Stream every source into shards of `cfg.shard_rows` rows, numbering rows (`_row`) as they come.
    Every source's paths are resolved first (`InputError` before any row is read); `first_errors`
    receives the first quarantine messages (for the message when nothing is left)."""
    first_errors = first_errors if first_errors is not None else []
    qw = QuarantineWriter(quarantine)
    out = _Shards(work, "input")
    first_errors.clear()
    stats: list[dict] = []
    buf: list[dict] = []
    n = 0

    def flush() -> None:
        nonlocal buf, n
        if buf:
            df = pl.DataFrame(buf, schema=PARQUET_SCHEMA).with_row_index("_row", offset=n)
            out.write(df)
            n += len(buf)
            buf = []

    resolved = [resolve_paths(s.path) for s in cfg.sources]  # a missing file fails before any row is read
    try:
        for s, paths in zip(cfg.sources, resolved):
            st_list: list = []
            src = SourceConfig(name=s.name, format=s.format, path=s.path, limit=s.limit, pairs=s.pairs, weight=s.weight,
                               max_row_bytes=cfg.max_row_bytes)
            for rec in iter_source(src, qw, st_list, paths):
                buf.append(rec.to_row())
                if len(buf) >= cfg.shard_rows:
                    flush()
            for x in st_list:
                stats.append({"source": s.name, "file": x.file, "rows_in": x.rows_in, "rows_out": x.rows_out,
                              "rows_quarantined": x.rows_quarantined} | ({"notes": x.notes} if x.notes else {}))
                if x.errors and len(first_errors) < 3:
                    first_errors.extend(x.errors[: 3 - len(first_errors)])
        flush()
    finally:
        qw.close()
    return out.paths, stats, n


def merge_report(a: dict | None, b: dict) -> dict:
    """Per-shard reports of a row stage, combined: numbers add up (except constants), dicts merge."""
    if a is None:
        return b
    out = dict(a)
    for k, v in b.items():
        if k in out and isinstance(v, dict) and isinstance(out[k], dict):
            out[k] = merge_report(out[k], v)
        elif k in out and isinstance(v, (int, float)) and not isinstance(v, bool) and k not in CONSTANT_REPORT_KEYS:
            out[k] = out[k] + v
        else:
            out[k] = v
    return out


def _texts_of(shards: list[Path], rows: np.ndarray):
    """texts_of(feature indices) -> Series of full conversation texts, read back from the shards."""
    def get(idx: np.ndarray) -> pl.Series:
        want = pl.DataFrame({"_row": rows[np.asarray(idx, dtype=np.int64)].astype(np.uint32), "_i": np.arange(len(idx))})
        found = (pl.scan_parquet(shards).join(want.lazy(), on="_row", how="inner")
                 .select("_i", t=contents(None)).collect().sort("_i"))
        return found["t"]
    return get


def _run_row_stage(stage: StageConfig, shards: list[Path], ctx: Context, kept: _Shards, excluded: _Shards) -> list[str]:
    reasons: list[str] = []
    report = None
    for sh in shards:
        df = pl.read_parquet(sh)
        ctx.reports.pop(stage.name, None)
        res = stage.apply(df, ctx)
        if res.kept.height + res.dropped.height != df.height:
            raise AssertionError(f"stage {stage.name}: in {df.height} != out {res.kept.height} + dropped {res.dropped.height}")
        if stage.name in ctx.reports:
            report = merge_report(report, ctx.reports[stage.name])
        kept.write(res.kept)
        _write_excluded(df, res.dropped, stage.name, excluded)
        reasons.extend(res.dropped["reason"].to_list())
    if report is not None:
        ctx.reports[stage.name] = report
    return reasons


def _run_global_stage(stage, shards: list[Path], ctx: Context, kept: _Shards, excluded: _Shards) -> list[str]:
    feats = pl.concat([stage.features(pl.read_parquet(sh), ctx) for sh in shards], how="vertical_relaxed")
    dropped = stage.decide(feats, ctx, _texts_of(shards, feats["_row"].to_numpy()))
    for sh in shards:
        df = pl.read_parquet(sh)
        mine = dropped.join(df.select("_row"), on="_row", how="semi")
        kept.write(df.join(mine.select("_row"), on="_row", how="anti", maintain_order="left"))
        _write_excluded(df, mine, stage.name, excluded)
    return dropped["reason"].to_list()


class DropShareError(RuntimeError):
    """A stage dropped more than its `max_drop_share`: the run stops and nothing is published."""


def check_drop_share(i: int, stage: StageConfig, st: StageStats) -> None:
    """Stop the run when a stage drops more than its limit. Applied at every input size: a share well above
    a stage's expected one on 10 rows is as much a sign of a config mistake as on 10,000 (an empty
    `allowed`, a key that matches nothing); test configs that drop much on purpose say so explicitly."""
    if st.rows_in == 0 or st.dropped / st.rows_in <= stage.drop_limit:
        return
    share = st.dropped / st.rows_in
    top = "; ".join(f"{r} ({c:,})" for r, c in list(st.reasons.items())[:3])
    allow = min(1.0, math.ceil(share * 100 + 1e-9) / 100)
    expected = "" if stage.expected_drop_share is None else f" (typical: {stage.expected_drop_share:.0%})"
    raise DropShareError(
        f"stage stages[{i}] ({stage.name}) dropped {st.dropped:,} of {st.rows_in:,} rows ({share:.1%}), more than "
        f"its max_drop_share {stage.drop_limit}{expected}; top reasons: {top}. "
        f"Nothing was published. If this is intended, set `max_drop_share = {allow}` in that stage's [[stages]] table.")


def _write_excluded(df: pl.DataFrame, dropped: pl.DataFrame, stage: str, excluded: _Shards) -> None:
    if dropped.height:
        extra = [c for c in dropped.columns if c not in df.columns and c not in ("reason", "rep_id")]  # e.g. a score
        full = df.join(dropped, on="_row", how="inner").select(*df.columns, *extra, "reason", "rep_id")
        excluded.write(_fold_helpers_into_meta(full.with_columns(stage=pl.lit(stage))).select(list(EXCLUDED_SCHEMA)))


def _check_input(src_stats: list[dict], rows_in: int, n_rows: int, first_errors: list[str]) -> None:
    """An empty input, or one where every row was quarantined, is not a dataset: `InputError`
    (the CLI exits 2 and publishes nothing)."""
    if rows_in == 0:
        files = ", ".join(f"{s['file']} ({'; '.join(s.get('notes', []))})" for s in src_stats[:5])
        raise InputError(f"no input rows: {files or 'no files'}; nothing published")
    if n_rows == 0:
        raise InputError(f"all {rows_in} input rows were quarantined (first: {' | '.join(first_errors)}); "
                         "nothing published")


def run(cfg: PipelineConfig, workdir: Path, progress: bool = True) -> RunResult:
    workdir.mkdir(parents=True, exist_ok=True)
    qpath = workdir / "quarantine.jsonl"
    qpath.unlink(missing_ok=True)
    ctx = Context(seed=cfg.seed, tokenizer=cfg.tokenizer, embedding_model=cfg.embedding_model, progress=progress)
    t0 = time.time()
    first_errors: list[str] = []
    shards, src_stats, n_rows = load_sources(cfg, qpath, workdir, first_errors)
    quarantined = sum(s["rows_quarantined"] for s in src_stats)
    rows_in = sum(s["rows_in"] for s in src_stats)
    _check_input(src_stats, rows_in, n_rows, first_errors)
    ctx.reports[INPUT_SYSTEM_PROMPTS] = prompt_distribution(pl.scan_parquet(shards))  # the writer reports it
    funnel = [StageStats("read", rows_in, n_rows, quarantined, time.time() - t0,
                         {"quarantined": quarantined} if quarantined else {})]
    if n_rows != rows_in - quarantined:  # pair extraction changes the count: say so in the funnel
        funnel.append(StageStats("pairs", rows_in - quarantined, n_rows, 0, 0.0,
                                 {"expanded_by_pairs": n_rows - (rows_in - quarantined)}))
    excluded = _Shards(workdir, "excluded")
    n = n_rows
    prev_dir: Path | None = None
    for i, stage in enumerate(cfg.stages):
        t = time.time()
        kept = _Shards(workdir, f"stage-{i:02d}")
        runner = _run_global_stage if stage.needs_all_rows else _run_row_stage
        reasons = runner(stage, shards, ctx, kept, excluded) if shards else []
        n_out = sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in kept.paths)
        if n_out + len(reasons) != n:
            raise AssertionError(f"stage {stage.name}: in {n} != out {n_out} + dropped {len(reasons)}")
        funnel.append(StageStats(stage.name, n, n_out, len(reasons), time.time() - t, dict(Counter(reasons).most_common())))
        if progress:
            print(f"  {stage.name:16} in {n:>7}  out {n_out:>7}  dropped {len(reasons):>6}  ({time.time() - t:.1f}s)")
        check_drop_share(i, stage, funnel[-1])
        if prev_dir is not None:  # the previous stage's kept shards are consumed
            shutil.rmtree(prev_dir, ignore_errors=True)
        prev_dir = kept.dir
        shards, n = kept.paths, n_out
    if n == 0:
        drops = "; ".join(f"{st.stage} dropped {st.dropped}" + (f" ({next(iter(st.reasons))} ...)" if st.reasons else "")
                          for st in funnel if st.dropped)
        raise InputError(f"no row survived the stages ({n_rows} read): {drops}; nothing published")
    borderline = (pl.concat(ctx.borderline).unique(["id_a", "id_b", "method"]).sort("method", "id_a", "id_b")
                  if ctx.borderline else pl.DataFrame(schema=BORDERLINE_SCHEMA))
    return RunResult(shards, excluded.paths, funnel, src_stats, qpath, rows_in, ctx.reports, borderline)


def _fold_helpers_into_meta(df: pl.DataFrame) -> pl.DataFrame:
    """Helper columns stages added (n_tokens, lang, refusal) go into meta; the record schema stays fixed."""
    helpers = [c for c in ("n_tokens", "lang", "refusal", "label_leakage") if c in df.columns]
    if not helpers:
        return df
    metas = []
    for row in df.select("meta", *helpers).iter_rows(named=True):
        m = json.loads(row["meta"]) if row["meta"] else {}
        for h in helpers:
            if row[h] is not None:
                m[h] = row[h]
        metas.append(json.dumps(m, ensure_ascii=False, sort_keys=True))
    return df.with_columns(meta=pl.Series(metas, dtype=pl.String)).drop(helpers)


def finalise(cfg: PipelineConfig, res: RunResult, out_dir: Path) -> dict[str, Path]:
    """Split the kept rows and write the parts (train/val/test/excluded.parquet) into `out_dir`,
    streaming shard by shard; returns name -> path. Rows keep input order within each part."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # the split needs one narrow view of all kept rows: group key (+ meta for time splits)
    narrow = (pl.concat([pl.read_parquet(p, columns=["_row", "id", "meta"]) for p in res.shards]) if res.shards
              else pl.DataFrame(schema={"_row": pl.UInt32, "id": pl.String, "meta": pl.String}))
    labels = narrow.select("_row", _split=assign_splits(narrow, cfg.split, cfg.seed))
    paths = {name: out_dir / f"{name}.parquet" for name in ("train", "val", "test")}
    pieces: dict[str, list[Path]] = {name: [] for name in paths}
    tmp = out_dir / ".pieces"
    tmp.mkdir(exist_ok=True)
    for k, sh in enumerate(res.shards):  # shards hold rows in input order, so each part keeps input order
        df = _fold_helpers_into_meta(pl.read_parquet(sh)).join(labels, on="_row", how="left", maintain_order="left")
        for name in paths:
            pieces[name].append(tmp / f"{name}-{k:05d}.parquet")
            df.filter(pl.col("_split") == name).select(list(PARQUET_SCHEMA)).write_parquet(pieces[name][-1])
    for name, p in paths.items():  # streamed into one file; fixed row groups, so shard size never shows in the bytes
        src = pl.scan_parquet(pieces[name]) if pieces[name] else pl.LazyFrame(schema=PARQUET_SCHEMA)
        src.sink_parquet(p, statistics=False, row_group_size=ROW_GROUP)
    shutil.rmtree(tmp, ignore_errors=True)
    ex = (pl.scan_parquet(res.excluded).sort("_row").drop("_row") if res.excluded
          else pl.DataFrame(schema=EXCLUDED_SCHEMA).lazy().drop("_row"))
    paths["excluded"] = out_dir / "excluded.parquet"
    ex.sink_parquet(paths["excluded"], statistics=False, row_group_size=ROW_GROUP)
    counts = {k: pl.scan_parquet(p).select(pl.len()).collect().item() for k, p in paths.items()}
    total = sum(counts.values()) + sum(s["rows_quarantined"] for s in res.source_stats)
    expected = res.rows_in + sum(st.rows_out - st.rows_in for st in res.funnel if st.stage == "pairs")
    if total != expected:
        raise AssertionError(f"accounting: train+val+test+excluded+quarantined = {total}, input rows = {expected}")
    return paths
