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

Resume: after each stage the driver writes a stage record (`resume`) before it deletes the previous
stage's shards; a run on a work dir an earlier run left books the stages whose records match from the
records and runs from the first one without, whose shard markers skip the shards done before.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sftloop.curate.config import PipelineConfig
from sftloop.curate.sources import InputError, SourceConfig, iter_source, resolve_paths
from sftloop.curate.split import assign_splits
from sftloop.curate.executors import Executor, ExecutorConfig, make_executor
from sftloop.curate import resume
from sftloop.curate.resume import Resumed
from sftloop.curate.shard_tasks import (EXCLUDED_SCHEMA, RowTask, ShardOut, ShardTexts, fold_helpers_into_meta,
                                        run_features_task, run_row_task, run_split_task, shared_cache)
from sftloop.curate.stages.base import (BORDERLINE_SCHEMA, Context, GlobalStage, StageConfig, merge_counters,
                                        merge_info)
from sftloop.curate.stages.system_prompt import INPUT_SYSTEM_PROMPTS, prompt_distribution
from sftloop.curate.text import contents
from sftloop.progress import is_tty
from sftloop.schema import PARQUET_SCHEMA, QuarantineWriter

ROW_GROUP = 65_536
__all__ = ["EXCLUDED_SCHEMA", "DropShareError", "RunResult", "StageStats", "finalise", "load_sources", "run"]


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
    tasks: dict[str, list[ShardOut]] = field(default_factory=dict)  # per stage: each shard task's figures
    features_bytes: dict[str, int] = field(default_factory=dict)  # per GlobalStage: what the driver read to decide
    resumed: Resumed | None = None  # what was taken over from an earlier run on the same work dir


class _Shards:
    """Numbered Parquet files under one directory."""

    def __init__(self, root: Path, name: str, clear: bool = True):
        self.dir = root / name
        if clear:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
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


def _texts_of(shards: list[Path], rows: np.ndarray):
    """texts_of(feature indices) -> Series of full conversation texts, read back from the shards (picklable:
    a GlobalStage's tasks may read texts themselves)."""
    return ShardTexts(tuple(str(p) for p in shards), rows)


@dataclass
class StepOut:
    """One stage over all shards, as the driver books it."""

    kept: list[Path]
    excluded: list[Path]
    reasons: Counter
    tasks: list[ShardOut]
    features_bytes: int = 0
    reports: list[tuple[str, Any]] = field(default_factory=list)  # the ctx.reports entries it set, in order
    borderline: list[pl.DataFrame] = field(default_factory=list)  # the borderline pairs it appended


def _tasks(stage: StageConfig, shards: list[Path], ctx: Context, kept: _Shards, excluded: _Shards, tag: str,
           local: bool) -> list[RowTask]:
    bars = ctx.progress and local and is_tty()  # a stage's own tqdm only in this process, on a TTY
    return [RowTask(stage, str(sh), str(kept.dir), str(excluded.dir), tag, ctx.settings(), progress=bars)
            for sh in shards]


def _book(outs: list[ShardOut], stage: StageConfig, ctx: Context) -> tuple[list[Path], list[Path], Counter]:
    """Shard results in shard order: kept and excluded files, reasons, and the stage's merged report."""
    counters: dict = {}
    info: dict = {}
    reasons: Counter = Counter()
    for o in outs:
        if o.rows_kept + sum(o.reasons.values()) != o.rows_in:
            raise AssertionError(f"stage {stage.name} on {o.shard}: in {o.rows_in} != out {o.rows_kept} "
                                 f"+ dropped {sum(o.reasons.values())}")
        counters = merge_counters(counters, o.counters, stage.name)
        info = merge_info(info, o.info, stage.name)
        reasons.update(o.reasons)
    if counters or info:
        ctx.reports[stage.name] = {**info, **counters}
    return ([Path(o.kept) for o in outs if o.kept], [Path(o.excluded) for o in outs if o.excluded], reasons)


def _run_row_stage(stage: StageConfig, shards: list[Path], ctx: Context, kept: _Shards, excluded: _Shards,
                   ex: Executor, tag: str) -> StepOut:
    outs = ex.map(run_row_task, _tasks(stage, shards, ctx, kept, excluded, tag, ex.kind == "local"),
                  f"curate: {stage.name}")
    k, e, reasons = _book(outs, stage, ctx)
    return StepOut(k, e, reasons, outs)


def _run_global_stage(stage: GlobalStage, shards: list[Path], ctx: Context, kept: _Shards, excluded: _Shards,
                      ex: Executor, tag: str) -> StepOut:
    """Features per shard as tasks; `decide` on the driver from the narrow features; the split per shard as tasks."""
    tasks = _tasks(stage, shards, ctx, kept, excluded, tag, ex.kind == "local")
    fouts = ex.map(run_features_task, tasks, f"curate: {stage.name} features")
    feats = pl.concat([pl.read_parquet(o.features) for o in fouts], how="vertical_relaxed")
    fbytes = sum(Path(o.features).stat().st_size for o in fouts)
    dropped = stage.decide(feats, ctx, _texts_of(shards, feats["_row"].to_numpy()))
    owner = pl.concat([pl.DataFrame({"_row": pl.read_parquet(o.features, columns=["_row"])["_row"].cast(pl.UInt32),
                                     "_shard": pl.Series([i] * o.rows_in, dtype=pl.Int64)}) for i, o in enumerate(fouts)])
    tagged = dropped.with_columns(pl.col("_row").cast(pl.UInt32)).join(owner, on="_row", how="left", maintain_order="left")
    for t, part in zip(tasks, [tagged.filter(pl.col("_shard") == i).drop("_shard") for i in range(len(tasks))]):
        t.dropped = part
    outs = ex.map(run_split_task, tasks, f"curate: {stage.name} split")
    for o in fouts:
        Path(o.features).unlink(missing_ok=True)
    k, e, _ = _book(outs, stage, ctx)
    return StepOut(k, e, Counter(dropped["reason"].to_list()), outs + fouts, fbytes)


def _run_stage(i: int, stage: StageConfig, shards: list[Path], ctx: Context, kept: _Shards, excluded: _Shards,
               ex: Executor, n: int) -> tuple[StepOut, StageStats]:
    """Stage i over all shards, booked: its funnel line, and what it put in `ctx.reports` / `ctx.borderline`
    (reports through the JSON round trip a record gives them, so a resumed run books the same numbers)."""
    t = time.time()
    before, n_border = dict(ctx.reports), len(ctx.borderline)
    runner = _run_global_stage if stage.needs_all_rows else _run_row_stage
    step = runner(stage, shards, ctx, kept, excluded, ex, f"{i:02d}") if shards else StepOut([], [], Counter(), [])
    n_drop = sum(step.reasons.values())
    n_out = sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in step.kept)
    if n_out + n_drop != n:
        raise AssertionError(f"stage {stage.name}: in {n} != out {n_out} + dropped {n_drop}")
    for k, v in list(ctx.reports.items()):
        if k not in before or before[k] is not v:
            ctx.reports[k] = resume.json_copy(v)
            step.reports.append((k, ctx.reports[k]))
    step.borderline = ctx.borderline[n_border:]
    return step, StageStats(stage.name, n, n_out, n_drop, time.time() - t, dict(step.reasons.most_common()))


def _restore(rec: resume.StageRecord, workdir: Path, ctx: Context, n: int) -> tuple[StepOut, StageStats]:
    """A stage an earlier run completed, booked from its record as that run booked it."""
    st = StageStats(**rec.stats)
    if st.rows_in != n:
        raise AssertionError(f"stage {rec.stage}: its record has {st.rows_in} rows in, this run has {n}")
    for k, v in rec.reports:
        ctx.reports[k] = v
    if (b := resume.borderline_of(workdir, rec)) is not None:
        ctx.borderline.append(b)
    step = StepOut(rec.paths(workdir, "kept"), rec.paths(workdir, "excluded"), Counter(st.reasons), rec.shard_outs(),
                   rec.features_bytes)
    return step, st


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


def _check_input(src_stats: list[dict], rows_in: int, n_rows: int, first_errors: list[str]) -> None:
    """An empty input, or one where every row was quarantined, is not a dataset: `InputError`
    (the CLI exits 2 and publishes nothing)."""
    if rows_in == 0:
        files = ", ".join(f"{s['file']} ({'; '.join(s.get('notes', []))})" for s in src_stats[:5])
        raise InputError(f"no input rows: {files or 'no files'}; nothing published")
    if n_rows == 0:
        raise InputError(f"all {rows_in} input rows were quarantined (first: {' | '.join(first_errors)}); "
                         "nothing published")


def executor_config(cfg: PipelineConfig) -> ExecutorConfig:
    return ExecutorConfig(kind=cfg.executor, address=cfg.address, workers=cfg.workers)


def run(cfg: PipelineConfig, workdir: Path, progress: bool = True, executor: Executor | None = None) -> RunResult:
    """Read, then every stage shard by shard on `executor` (default: the one the config names, closed at
    the end); the driver keeps the books."""
    ex = executor or make_executor(executor_config(cfg))
    try:
        return _run(cfg, workdir, progress, ex)
    finally:
        if executor is None:
            ex.close()


def _run(cfg: PipelineConfig, workdir: Path, progress: bool, ex: Executor) -> RunResult:
    workdir.mkdir(parents=True, exist_ok=True)
    for d in workdir.glob(".*"):  # scratch dirs (`ctx.scratch`) of a run killed on this work dir: one run at a time
        if d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
    qpath = workdir / "quarantine.jsonl"
    qpath.unlink(missing_ok=True)
    settings = {"seed": cfg.seed, "tokenizer": cfg.tokenizer, "embedding_model": cfg.embedding_model}
    ctx = Context(**settings, progress=progress, _cache=shared_cache(settings))
    ctx.executor, ctx.workdir = ex, workdir  # GlobalStage.decide may run tasks too (ctx.map); never sent to tasks
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
    excluded = _Shards(workdir, "excluded", clear=False)
    excluded_paths: list[Path] = []
    tasks: dict[str, list[ShardOut]] = {}
    features: dict[str, int] = {}
    n = n_rows
    keys = resume.chain(shards, ctx.settings(), cfg.stages)
    done = resume.restorable(workdir, keys)  # stages completed by an earlier run on this work dir
    resumed = Resumed(len(done), len(cfg.stages))
    prev_dir: Path | None = None
    for i, stage in enumerate(cfg.stages):
        t = time.time()
        kept = _Shards(workdir, f"stage-{i:02d}", clear=False)
        if i < len(done):
            step, st = _restore(done[i], workdir, ctx, n)
        else:
            step, st = _run_stage(i, stage, shards, ctx, kept, excluded, ex, n)
            if i == len(done):
                final = [o for o in step.tasks if o.features is None]  # apply / split tasks: one a shard
                resumed.shards_done, resumed.shards = sum(o.skipped for o in final), len(final)
            resumed.tasks_skipped += sum(o.skipped for o in step.tasks)
        funnel.append(st)
        tasks[stage.name] = step.tasks
        if step.features_bytes:
            features[stage.name] = step.features_bytes
        if progress:
            took = "earlier run" if i < len(done) else f"{time.time() - t:.1f}s"
            print(f"  {stage.name:16} in {st.rows_in:>7}  out {st.rows_out:>7}  dropped {st.dropped:>6}  ({took})")
        check_drop_share(i, stage, st)
        if i >= len(done):  # the record first: only then are the previous stage's shards no longer needed
            resume.write(workdir, i, keys[i], stage.name, step.kept, step.excluded, asdict(st), step.reports,
                         step.tasks, step.features_bytes, step.borderline)
        if prev_dir is not None:  # the previous stage's kept shards are consumed
            shutil.rmtree(prev_dir, ignore_errors=True)
        prev_dir = kept.dir
        shards, n = step.kept, st.rows_out
        excluded_paths += step.excluded
    if n == 0:
        drops = "; ".join(f"{st.stage} dropped {st.dropped}" + (f" ({next(iter(st.reasons))} ...)" if st.reasons else "")
                          for st in funnel if st.dropped)
        raise InputError(f"no row survived the stages ({n_rows} read): {drops}; nothing published")
    borderline = (pl.concat(ctx.borderline).unique(["id_a", "id_b", "method"]).sort("method", "id_a", "id_b")
                  if ctx.borderline else pl.DataFrame(schema=BORDERLINE_SCHEMA))
    return RunResult(shards, excluded_paths, funnel, src_stats, qpath, rows_in, ctx.reports, borderline, tasks, features,
                     resumed if resumed.stages or resumed.tasks_skipped else None)


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
        df = fold_helpers_into_meta(pl.read_parquet(sh)).join(labels, on="_row", how="left", maintain_order="left")
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
