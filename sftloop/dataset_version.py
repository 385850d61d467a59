"""Where the packages meet on disk: a dataset version `data/datasets/<name>/<version>/`.

One contract for every reader (train, review push/pull, mine, the `dataset:` source) and writer
(curate's pipeline, review pull, mined corrections):

- `PARTS` declares the files a version may hold; `DatasetVersion.read(part)` reads one by name.
- `Manifest` is `manifest.json`, typed. Keys it does not know (older or newer versions) are kept
  on read and written back as they were, so an old version still reads.
- `DatasetVersion.resolve(spec)`: a version dir, a dataset dir (its `LATEST`) or a path relative to
  the repo root (`settings.repo_root()`, never the cwd).
- Writing is all-or-nothing: `staging(base)` holds the per-dataset lock (`dataset_lock`) and gives a
  private temp dir under `<name>/`; `publish` renames it into place and replaces `LATEST` atomically,
  last; a failure removes the temp dir and leaves LATEST as it was. `write_derived` makes a version
  from a later step (review decisions, mined corrections) with its parent as lineage.

One run at a time writes a dataset name: `dataset_lock` holds a non-blocking `flock` on
`<name>/.lock` (released by the kernel when the process dies, so a killed run never blocks the next
one); a second run gets `DatasetLocked` naming the holder's pid. Temp dirs of killed runs are
removed by the next run that takes the lock; the shared work dir `resume_dir` (`<name>/.work`) is kept
for the next run to resume from.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from sftloop import settings
from sftloop.assets import sha256_file
from sftloop.schema import PARQUET_SCHEMA
from sftloop.procs import pid_alive

SPLITS = ("train", "val", "test")  # the chat-record parts, in this order
PARTS: dict[str, str] = {  # part name -> file in the version dir
    **{s: f"{s}.parquet" for s in SPLITS},
    "excluded": "excluded.parquet",  # PARQUET_SCHEMA + stage, reason, rep_id
    "borderline_pairs": "borderline_pairs.parquet",  # near-dup pairs close to the threshold (review queue)
    "quarantine": "quarantine.jsonl",  # unreadable input rows: file, row, field, error
}
# Rows a stage dropped; `_row` is the pipeline's row number while it runs (not stored).
EXCLUDED_SCHEMA = {"_row": pl.UInt32, **PARQUET_SCHEMA, "stage": pl.String, "reason": pl.String, "rep_id": pl.String}
MANIFEST = "manifest.json"


class DatasetNotFound(ValueError):
    pass


class UnknownPart(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class DatasetLocked(RuntimeError):
    """Another process is writing this dataset name (the CLIs exit 2)."""


class TokenizerInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    tokenizer: str | None = None
    max_tokens: int | None = None
    chat_template_sha256: str | None = None
    error: str | None = None


class Manifest(BaseModel):
    """`manifest.json`. Pipeline versions fill every field; derived versions start from the parent's."""

    model_config = ConfigDict(extra="allow")
    name: str
    version: str
    parent: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)  # the curate config that made it (pipeline versions)
    sources: list[dict[str, Any]] = Field(default_factory=list)
    source_hashes: dict[str, str] = Field(default_factory=dict)
    tokenizer: TokenizerInfo = Field(default_factory=TokenizerInfo)
    counts: dict[str, int] = Field(default_factory=dict)  # rows per part, + quarantined
    rows_in: int | None = None
    funnel: list[dict[str, Any]] = Field(default_factory=list)
    stage_reports: dict[str, Any] = Field(default_factory=dict)
    files_sha256: dict[str, str] = Field(default_factory=dict)
    borderline_pairs: int = 0
    excluded_reasons: dict[str, int] = Field(default_factory=dict)
    system_prompts: dict[str, Any] = Field(default_factory=dict)
    lengths: dict[str, Any] | None = None
    change: dict[str, Any] | None = None  # derived versions: what was applied and from where

    _OMIT_WHEN_NONE = ("rows_in", "lengths", "change")

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        try:
            return cls.model_validate_json(path.read_text())
        except ValueError as e:
            raise DatasetNotFound(f"{path}: not a valid manifest: {e}") from None

    def dump(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        d["tokenizer"] = self.tokenizer.model_dump(mode="json", exclude_none=True)
        for k in self._OMIT_WHEN_NONE:
            if d.get(k) is None:
                d.pop(k, None)
        return d

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.dump(), indent=2, sort_keys=True, ensure_ascii=False, default=str))


def _check_part(part: str) -> str:
    if part not in PARTS:
        raise UnknownPart(f"unknown dataset part {part!r} (known: {', '.join(PARTS)})")
    return PARTS[part]


@dataclass(frozen=True)
class DatasetVersion:
    path: Path
    manifest: Manifest

    @classmethod
    def resolve(cls, spec: str | Path, root: Path | None = None) -> "DatasetVersion":
        """A version dir, a dataset dir (its LATEST) or either relative to `root` (default: the repo root)."""
        p = Path(spec).expanduser()
        p = p if p.is_absolute() else (root or settings.repo_root()) / p
        if (p / "LATEST").is_file():
            p = p / (p / "LATEST").read_text().strip()
        if not (p / MANIFEST).exists():
            raise DatasetNotFound(f"{p} is not a dataset version (no {MANIFEST}); run `just curate` first")
        return cls(p, Manifest.read(p / MANIFEST))

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def base(self) -> Path:
        """The dataset dir (holds LATEST and every version)."""
        return self.path.parent

    @property
    def parts(self) -> list[str]:
        """The declared parts this version holds."""
        return [p for p, f in PARTS.items() if (self.path / f).exists()]

    def file(self, part: str) -> Path:
        return self.path / _check_part(part)

    def has(self, part: str) -> bool:
        return self.file(part).exists()

    def read(self, part: str) -> pl.DataFrame:
        p = self.file(part)
        if not p.exists():
            raise DatasetNotFound(f"{self.path}: no part {part!r} (has: {', '.join(self.parts)})")
        if p.suffix == ".jsonl":
            return pl.read_ndjson(p) if p.stat().st_size else pl.DataFrame()
        return pl.read_parquet(p)

    def splits(self) -> pl.DataFrame:
        """train + val + test (those present), in that order."""
        return pl.concat([self.read(s) for s in SPLITS if self.has(s)])

    @property
    def parent(self) -> "DatasetVersion | None":
        pv = self.manifest.parent
        return DatasetVersion.resolve(self.base / pv) if pv and (self.base / pv / MANIFEST).exists() else None

    def lineage(self) -> list[str]:
        """This version's id and its ancestors' (those still on disk), newest first."""
        out, v = [], self
        while v is not None and v.version not in out:
            out.append(v.version)
            v = v.parent
        return out

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "path": str(self.path)}


# ---- writing -----------------------------------------------------------------------------------

_held: dict[Path, list] = {}  # lock path -> [open file, depth]: re-entrant within one process


@contextmanager
def dataset_lock(base: Path) -> Iterator[None]:
    """Hold `<base>/.lock` while writing dataset `base.name`; non-blocking: raises `DatasetLocked`
    with the holder's pid. Once held, temp dirs left by killed runs (`.work-*`, `.writing-*`) are removed.
    A run that made the dataset dir and published nothing removes it again (and the dirs it made above)."""
    created = [p for p in (base, *base.parents) if not p.exists()]  # deepest first
    base.mkdir(parents=True, exist_ok=True)
    key = (base / ".lock").resolve()
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    while True:
        fh = open(key, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip() or "unknown"
            fh.close()
            raise DatasetLocked(f"dataset {base.name} is being written by another run (pid {pid}); "
                                "try again when it ends") from None
        try:
            same = os.fstat(fh.fileno()).st_ino == os.stat(key).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()  # a run that just ended removed this lock file: lock the current one
    fh.truncate(0)
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    _held[key] = [fh, 1]
    try:
        _remove_stale_temp_dirs(base)
        yield
    finally:
        del _held[key]
        fh.truncate(0)
        if created and [p.name for p in base.iterdir()] == [".lock"]:  # nothing published by the first run
            key.unlink(missing_ok=True)
            for d in created:
                try:
                    d.rmdir()
                except OSError:
                    break
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _remove_stale_temp_dirs(base: Path) -> None:
    """`.work-<pid>-*` / `.writing-<pid>-*` dirs of processes that no longer run (killed runs)."""
    for d in [*base.glob(".work-*"), *base.glob(".writing-*")]:
        pid = d.name.split("-")[1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def work_dir(base: Path) -> Path:
    """A private work dir for one run under the dataset dir (`.work-<pid>-<random>`)."""
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".work-{os.getpid()}-", dir=base))


def resume_dir(base: Path) -> Path:
    """The work dir that runs of one dataset name share, one at a time (`dataset_lock`): `<name>/.work`. It
    outlives a failed or killed run so the next run resumes from it; the caller removes it once published.
    Not a temp dir: stale-dir removal leaves it alone."""
    base.mkdir(parents=True, exist_ok=True)
    (base / ".work").mkdir(exist_ok=True)
    return base / ".work"


@contextmanager
def staging(base: Path) -> Iterator[Path]:
    """Under the dataset's lock, a private dir to write a version into; removed afterwards unless
    `publish` moved it into place."""
    with dataset_lock(base):
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".writing-{os.getpid()}-", dir=base))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; a published version is as readable as any new dir
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already when published


def publish(base: Path, tmp: Path, version: str) -> Path:
    """Move a fully written `tmp` dir to `base/version` (immutable: an existing one is kept) and
    point `base/LATEST` at it atomically."""
    final = base / version
    if final.exists():  # identical content already written
        shutil.rmtree(tmp)
    else:
        tmp.rename(final)
    part = base / f".LATEST.{os.getpid()}.part"
    part.write_text(version + "\n")
    part.replace(base / "LATEST")  # last, and atomic: a reader sees the old or the new version, never a partial one
    return final


# (staging dir, manifest so far) -> (manifest fields, markdown for funnel.md): curate's data checklist
Checklist = Callable[[Path, Manifest], tuple[dict[str, Any], str]]


def write_derived(base: Path, parts: dict[str, pl.DataFrame], change: dict, parent: DatasetVersion | None = None,
                  name: str | None = None, checklist: Checklist | None = None) -> DatasetVersion:
    """A version made by a later step (review decisions, mined corrections), not a pipeline run.

    Parquet parts are written; with a `parent`, its other files (quarantine, borderline pairs) are
    carried over and its manifest is the starting point (new counts, `parent`, and `change`: what was
    applied and from where). The version id hashes the parent version, the change and the files, so
    the same decisions applied to the same parent give the same version. `checklist` adds figures
    computed on the written splits (curate's lengths and system prompts)."""
    for p in parts:
        _check_part(p)
    if "excluded" not in parts:  # nothing excluded by this step
        parts = {**parts, "excluded": pl.DataFrame(schema=EXCLUDED_SCHEMA).drop("_row")}
    with staging(base) as tmp:
        files = {}
        for part, df in parts.items():
            df.write_parquet(tmp / PARTS[part], statistics=False)
            files[part] = sha256_file(tmp / PARTS[part])
        for extra in ("quarantine", "borderline_pairs"):
            if parent and extra not in parts and parent.has(extra):
                shutil.copyfile(parent.file(extra), tmp / PARTS[extra])
                files[extra] = sha256_file(tmp / PARTS[extra])
        parent_version = parent.version if parent else None
        blob = json.dumps({"parent": parent_version, "change": change, "files": files}, sort_keys=True, default=str)
        version = hashlib.sha256(blob.encode()).hexdigest()[:12]
        start = parent.manifest.model_copy(deep=True) if parent else Manifest(name=name or base.name, version=version)
        counts = {k: parts[k].height for k in parts} | {"quarantined": start.counts.get("quarantined", 0)}
        m = start.model_copy(update={
            "version": version, "parent": parent_version, "change": json.loads(json.dumps(change, default=str)),
            "counts": counts, "files_sha256": files, "lengths": None,  # the parent's figures describe the parent's rows
            "excluded_reasons": dict(parts["excluded"].group_by("reason").len().sort("reason").iter_rows())})
        fields, md = checklist(tmp, m) if checklist else ({}, "")
        m = m.model_copy(update=fields)
        m.write(tmp / MANIFEST)
        title = f"# {m.name} {version}" + (f" (from {parent_version})" if parent_version else "")
        lines = [title, "", "change:", "", "```json", json.dumps(change, indent=2, sort_keys=True, default=str), "```",
                 "", "| output | rows |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in counts.items()]
        (tmp / "funnel.md").write_text("\n".join(lines) + "\n" + md)
        return DatasetVersion.resolve(publish(base, tmp, version))
