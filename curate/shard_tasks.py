"""The pipeline's units of work, one Parquet shard each, as top-level functions any executor can run.

A task reads its input shard, runs one stage step on it, writes its outputs atomically (a temporary
name, then `os.replace`) and returns what the driver needs for the books: rows in, rows kept,
reasons counted in row order, and the stage's report (`StageResult.counters` / `.info`). Next to its
outputs a task writes a completion marker keyed by (stage config, input shard content): a task whose
marker matches and whose outputs exist is skipped, so a rerun on the same work dir after a killed
driver or a failed task redoes only what is missing and writes the same bytes.

An exception raised by stage code is not an infrastructure failure: it becomes `StageFailure`
naming the stage, the shard and the first row that fails on its own (found by running the stage
row by row on that shard), and the run stops.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sftloop.curate.stages.base import Context, StageConfig, StageResult
from sftloop.dataset_version import EXCLUDED_SCHEMA
from sftloop.procs import peak_rss_mb

_CACHES: dict[tuple, dict[str, Any]] = {}  # per process: tokenizer / embedder, loaded once per worker


class StageFailure(RuntimeError):
    """Stage code raised on a shard: the message names the stage, the shard and the row."""


def shared_cache(settings: dict[str, Any]) -> dict[str, Any]:
    return _CACHES.setdefault(tuple(sorted(settings.items())), {})


def task_context(settings: dict[str, Any], progress: bool) -> Context:
    return Context(**settings, progress=progress, _cache=shared_cache(settings))


@dataclass
class ShardOut:
    """What one task returns (and its marker stores)."""

    shard: str  # input shard
    rows_in: int
    kept: str | None  # output shard (None: no row kept)
    rows_kept: int
    excluded: str | None
    reasons: dict[str, int] = field(default_factory=dict)  # in first-seen row order
    counters: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    features: str | None = None  # GlobalStage features file
    skipped: bool = False  # a matching marker was found
    seconds: float = 0.0
    peak_rss_mb: float = 0.0  # of the process that ran it, over its life


@dataclass
class RowTask:
    stage: StageConfig
    shard: str
    kept_dir: str
    excluded_dir: str
    tag: str  # stage position, e.g. "03": names the excluded file
    settings: dict[str, Any]
    progress: bool = False
    dropped: pl.DataFrame | None = None  # GlobalStage split: this shard's rows the driver dropped


@dataclass
class ShardTexts:
    """texts_of(feature indices) -> Series of full conversation texts, read back from the shards by `_row`.
    Paths and row numbers only, so it travels inside task descriptions (a GlobalStage's tasks read the
    texts they need themselves: MinHash verification)."""

    shards: tuple[str, ...]
    rows: np.ndarray  # feature index -> _row

    def __call__(self, idx: np.ndarray) -> pl.Series:
        from sftloop.curate.text import contents

        want = pl.DataFrame({"_row": self.rows[np.asarray(idx, dtype=np.int64)].astype(np.uint32),
                             "_i": np.arange(len(idx))})
        found = (pl.scan_parquet(list(self.shards)).join(want.lazy(), on="_row", how="inner")
                 .select("_i", t=contents(None)).collect().sort("_i"))
        return found["t"]


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _key(step: str, stage: StageConfig, shard: Path, extra: bytes = b"") -> str:
    h = hashlib.sha256(f"{step}\0{type(stage).__name__}\0{stage.model_dump_json()}\0{_sha(shard)}\0".encode())
    h.update(extra)
    return h.hexdigest()


def atomic_parquet(df: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.write_parquet(tmp)
    os.replace(tmp, path)


def _atomic_json(obj: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, sort_keys=True))
    os.replace(tmp, path)


def _done(marker: Path, key: str) -> ShardOut | None:
    """The stored result when the marker matches and every output it names exists."""
    try:
        m = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if m.get("key") != key:
        return None
    out = ShardOut(**m["out"])
    if any(p is not None and not Path(p).exists() for p in (out.kept, out.excluded, out.features)):
        return None
    out.skipped = True
    return out


def fold_helpers_into_meta(df: pl.DataFrame) -> pl.DataFrame:
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


def excluded_rows(df: pl.DataFrame, dropped: pl.DataFrame, stage: str) -> pl.DataFrame:
    """Full dropped rows + stage, reason, rep_id (extra columns a stage returned, e.g. a score, go to meta)."""
    extra = [c for c in dropped.columns if c not in df.columns and c not in ("reason", "rep_id")]
    full = df.join(dropped, on="_row", how="inner").select(*df.columns, *extra, "reason", "rep_id")
    return fold_helpers_into_meta(full.with_columns(stage=pl.lit(stage))).select(list(EXCLUDED_SCHEMA))


def _first_failing_row(stage: StageConfig, df: pl.DataFrame, ctx: Context) -> str:
    for i in range(df.height):
        one = df.slice(i, 1)
        try:
            stage.apply(one, ctx)
        except Exception as e:  # noqa: BLE001 - reported, the run stops anyway
            return f"row _row={one['_row'][0]} id={one['id'][0]!r} ({type(e).__name__}: {e})"
    return "no single row fails on its own (the shard as a whole does)"


def _fail(stage: StageConfig, shard: Path, df: pl.DataFrame, ctx: Context, e: Exception, step: str) -> StageFailure:
    where = _first_failing_row(stage, df, ctx) if step == "apply" else "its features"
    return StageFailure(f"stage {stage.name} failed on shard {shard}: {where}; first error: {type(e).__name__}: {e}")


def _write_outputs(t: RowTask, shard: Path, df: pl.DataFrame, kept: pl.DataFrame, dropped: pl.DataFrame,
                   t0: float) -> ShardOut:
    if kept.height + dropped.height != df.height:
        raise AssertionError(f"stage {t.stage.name} on {shard}: in {df.height} != out {kept.height} "
                             f"+ dropped {dropped.height}")
    kept_path = excl_path = None
    if kept.height:
        kept_path = Path(t.kept_dir) / shard.name
        atomic_parquet(kept, kept_path)
    if dropped.height:
        excl_path = Path(t.excluded_dir) / f"{t.tag}-{shard.name}"
        atomic_parquet(excluded_rows(df, dropped, t.stage.name), excl_path)
    reasons: dict[str, int] = {}
    for r in dropped["reason"].to_list():
        reasons[r] = reasons.get(r, 0) + 1
    return ShardOut(str(shard), df.height, None if kept_path is None else str(kept_path), kept.height,
                    None if excl_path is None else str(excl_path), reasons, seconds=time.time() - t0)


def _finish(out: ShardOut, marker: Path, key: str) -> ShardOut:
    out.peak_rss_mb = peak_rss_mb()
    _atomic_json({"key": key, "out": asdict(out)}, marker)
    return out


def run_row_task(t: RowTask) -> ShardOut:
    """A row stage on one shard."""
    shard = Path(t.shard)
    marker = Path(t.kept_dir) / f".{shard.stem}.done.json"
    key = _key("apply", t.stage, shard)
    if (done := _done(marker, key)) is not None:
        return done
    t0 = time.time()
    df = pl.read_parquet(shard)
    ctx = task_context(t.settings, t.progress)
    try:
        res: StageResult = t.stage.apply(df, ctx)
    except Exception as e:  # noqa: BLE001 - stage code: the run stops naming shard and row
        raise _fail(t.stage, shard, df, task_context(t.settings, False), e, "apply") from None
    out = _write_outputs(t, shard, df, res.kept, res.dropped, t0)
    out.counters, out.info = res.counters, res.info
    return _finish(out, marker, key)


def run_features_task(t: RowTask) -> ShardOut:
    """A GlobalStage's narrow features of one shard, written next to the kept shards (`<shard>.feat`)."""
    shard = Path(t.shard)
    marker = Path(t.kept_dir) / f".{shard.stem}.feat.json"
    key = _key("features", t.stage, shard)
    if (done := _done(marker, key)) is not None:
        return done
    t0 = time.time()
    df = pl.read_parquet(shard)
    try:
        feats = t.stage.features(df, task_context(t.settings, t.progress))  # type: ignore[attr-defined]
    except Exception as e:  # noqa: BLE001
        raise _fail(t.stage, shard, df, task_context(t.settings, False), e, "features") from None
    path = Path(t.kept_dir) / f"{shard.stem}.feat.parquet"
    atomic_parquet(feats, path)
    out = ShardOut(str(shard), df.height, None, 0, None, features=str(path), seconds=time.time() - t0)
    return _finish(out, marker, key)


def run_split_task(t: RowTask) -> ShardOut:
    """A GlobalStage's decision applied to one shard: the rows the driver dropped go to excluded."""
    shard = Path(t.shard)
    marker = Path(t.kept_dir) / f".{shard.stem}.done.json"
    dropped = t.dropped if t.dropped is not None else pl.DataFrame(schema={"_row": pl.UInt32, "reason": pl.String,
                                                                           "rep_id": pl.String})
    key = _key("split", t.stage, shard, dropped.write_ipc(None).getvalue())
    if (done := _done(marker, key)) is not None:
        return done
    t0 = time.time()
    df = pl.read_parquet(shard)
    mine = dropped.join(df.select("_row"), on="_row", how="semi")
    kept = df.join(mine.select("_row"), on="_row", how="anti", maintain_order="left")
    return _finish(_write_outputs(t, shard, df, kept, mine, t0), marker, key)
