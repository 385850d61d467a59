"""Whole-stage resume: a record per completed stage, keyed by a chain hash, in the run's work dir.

When a stage has completed (its shards booked, its drop share checked) the driver writes
`records/stage-NN.json` (temp name, then rename; written last): the kept and excluded shards, the
stage's funnel line, its entries in `ctx.reports`, the borderline pairs it appended
(`stage-NN.borderline.parquet`, written first) and its task figures. The key is a chain: the run's
settings and the input shards' sha256, then each stage's type and config in turn, so a record
matches only when everything upstream of it is what it was. A rerun on the same work dir takes the
longest prefix of matching records whose outputs exist, books those stages from their records (the
numbers a clean run books, since a clean run books every report through the same JSON round trip,
`json_copy`), and runs from the next stage on, where the per-shard markers of `shard_tasks` skip the
shards done before. The driver deletes a stage's kept shards only once the next stage's record is
written.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from sftloop.assets import sha256_file
from sftloop.curate.shard_tasks import ShardOut
from sftloop.curate.stages.base import StageConfig

FORMAT = 1  # bump when a record's meaning changes: older records then match nothing
RECORDS = "records"


def chain(inputs: list[Path], settings: dict[str, Any], stages: list[StageConfig]) -> list[str]:
    """One key per stage: stage i's key hashes stage i-1's key with stage i's type and config; the
    first hashes the settings and the input shards' content."""
    blob = json.dumps({"format": FORMAT, "settings": settings, "inputs": [sha256_file(p) for p in inputs]},
                      sort_keys=True, default=str)
    key = hashlib.sha256(blob.encode()).hexdigest()
    keys = []
    for st in stages:
        key = hashlib.sha256(f"{key}\0{type(st).__name__}\0{st.model_dump_json()}".encode()).hexdigest()
        keys.append(key)
    return keys


def json_copy(value: Any) -> Any:
    """A report value as a record gives it back (JSON; what is not JSON becomes its `str`, as in the manifest)."""
    return json.loads(json.dumps(value, default=str))


@dataclass
class StageRecord:
    key: str  # the chain key it was written under
    stage: str
    kept: list[str]  # shard paths relative to the work dir, in shard order
    excluded: list[str]
    stats: dict[str, Any]  # the funnel line (pipeline.StageStats fields)
    reports: list[list[Any]]  # [name, report] entries it put in ctx.reports, in insertion order
    tasks: list[dict[str, Any]]  # each task's ShardOut
    features_bytes: int = 0
    borderline: str | None = None  # file (next to the record) of the borderline pairs it appended
    format: int = FORMAT

    def paths(self, work: Path, which: str) -> list[Path]:
        return [work / p for p in getattr(self, which)]

    def shard_outs(self) -> list[ShardOut]:
        """The task figures, each marked skipped: nothing ran for them in this run."""
        return [ShardOut(**(t | {"skipped": True})) for t in self.tasks]


def _path(work: Path, i: int, suffix: str = ".json") -> Path:
    return work / RECORDS / f"stage-{i:02d}{suffix}"


def _rel(work: Path, paths: list[Path]) -> list[str]:
    return [Path(p).relative_to(work).as_posix() for p in paths]


def write(work: Path, i: int, key: str, stage: str, kept: list[Path], excluded: list[Path], stats: dict[str, Any],
          reports: list[tuple[str, Any]], tasks: list[ShardOut], features_bytes: int,
          borderline: list[pl.DataFrame]) -> None:
    """Stage i's record; the borderline pairs first, the record last (each a temp name, then a rename)."""
    d = work / RECORDS
    d.mkdir(parents=True, exist_ok=True)
    bfile = None
    if borderline:
        b = _path(work, i, ".borderline.parquet")
        tmp = b.with_name(f".{b.name}.{os.getpid()}.tmp")
        pl.concat(borderline).write_parquet(tmp)
        os.replace(tmp, b)
        bfile = b.name
    rec = StageRecord(key, stage, _rel(work, kept), _rel(work, excluded), stats, [[k, v] for k, v in reports],
                      [asdict(t) for t in tasks], features_bytes, bfile)
    p = _path(work, i)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(rec), sort_keys=True, default=str))
    os.replace(tmp, p)


def read(work: Path, i: int, key: str) -> StageRecord | None:
    """Stage i's record if it was written under `key` and the excluded shards and borderline file it names
    exist (its kept shards are checked by the caller: only the last restored stage's are still needed)."""
    try:
        rec = StageRecord(**json.loads(_path(work, i).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if rec.format != FORMAT or rec.key != key:
        return None
    files = rec.paths(work, "excluded") + ([work / RECORDS / rec.borderline] if rec.borderline else [])
    return rec if all(p.exists() for p in files) else None


def restorable(work: Path, keys: list[str]) -> list[StageRecord]:
    """The longest prefix of stages whose records match their chain keys, cut back to the last stage whose
    kept shards still exist (the next stage's input)."""
    out: list[StageRecord] = []
    for i, key in enumerate(keys):
        rec = read(work, i, key)
        if rec is None:
            break
        out.append(rec)
    while out and not all(p.exists() for p in out[-1].paths(work, "kept")):
        out.pop()
    return out


def borderline_of(work: Path, rec: StageRecord) -> pl.DataFrame | None:
    return pl.read_parquet(work / RECORDS / rec.borderline) if rec.borderline else None


@dataclass
class Resumed:
    """What a run took over from an earlier run on the same work dir (None on the RunResult when nothing)."""

    stages: int  # stages 0 .. stages-1 booked from their records
    total: int  # stages in the config
    shards_done: int = 0  # of the first stage that ran: shards whose task had completed before (marker found)
    shards: int = 0  # that stage's shards
    tasks_skipped: int = 0  # tasks skipped by their markers, over every stage that ran

    def line(self) -> str:
        done = ("no stage" if self.stages == 0 else "stage 0" if self.stages == 1 else f"stages 0-{self.stages - 1}")
        out = f"resume: {done} complete from an earlier run"
        if self.stages < self.total:
            out += f", stage {self.stages}: {self.shards_done} of {self.shards} shards done"
        return out
