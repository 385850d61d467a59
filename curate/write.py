"""Write an immutable dataset version: data/datasets/<name>/<version>/.

Files: train/val(/test).parquet, excluded.parquet (stage, reason, rep_id), quarantine.jsonl,
manifest.json, funnel.md, funnel.png; `<name>/LATEST` names the newest version. The version is a
content hash of the config and the written data, and no file holds a timestamp, so the same
inputs and config give the same version id and byte-identical files.

Writing is all-or-nothing: a version is written into a private temp dir under `<name>/`, renamed
into place when complete, and `LATEST` is replaced (atomically) last; a failure removes the temp dir
and leaves LATEST as it was. One run at a time writes a dataset name: `dataset_lock` holds a
non-blocking `flock` on `<name>/.lock` (released by the kernel when the process dies, so a killed
run never blocks the next one); a second run gets `DatasetLocked` naming the holder's pid. Temp
dirs of killed runs are removed by the next run that takes the lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import polars as pl

from sftloop.curate.config import PipelineConfig, config_dict
from sftloop.curate.lengths import LengthReference, length_report, lengths_markdown, lengths_png
from sftloop.curate.pipeline import EXCLUDED_SCHEMA, RunResult
from sftloop.curate.stages.system_prompt import INPUT_SYSTEM_PROMPTS, distribution_markdown, prompt_distribution
from sftloop import assets
from sftloop.settings import repo_root


def _sha(p: Path) -> str:
    return assets.sha256_file(p)


class DatasetLocked(RuntimeError):
    """Another process is writing this dataset name (the CLI exits 2)."""


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temp_dirs(base: Path) -> None:
    """`.work-<pid>-*` / `.writing-<pid>-*` dirs of processes that no longer run (killed runs)."""
    for d in [*base.glob(".work-*"), *base.glob(".writing-*")]:
        pid = d.name.split("-")[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def work_dir(base: Path) -> Path:
    """A private work dir for one run under the dataset dir (`.work-<pid>-<random>`)."""
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".work-{os.getpid()}-", dir=base))


def _temp_version_dir(base: Path) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".writing-{os.getpid()}-", dir=base))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; a published version is as readable as any new dir
    return tmp


def source_hashes(cfg: PipelineConfig) -> dict[str, str]:
    from sftloop.curate.sources import resolve_paths

    out = {}
    for s in cfg.sources:
        if s.path.startswith("asset:"):
            name = s.path.removeprefix("asset:")
            stamp = assets.verify(name)
            out[s.path] = hashlib.sha256(json.dumps(stamp["files"], sort_keys=True).encode()).hexdigest()
        else:
            for p in resolve_paths(s.path):
                if p.is_dir():
                    continue  # skipped by the reader, noted in the source statistics
                try:
                    out[str(p)] = _sha(p)
                except OSError as e:  # quarantined by the reader as a whole file
                    out[str(p)] = f"unreadable: {e.strerror or e}"
    return out


def tokenizer_settings(cfg: PipelineConfig) -> dict:
    max_tokens = next((s.max_tokens for s in cfg.stages if s.type == "token_limit"), None)  # type: ignore[attr-defined]
    info = {"tokenizer": cfg.tokenizer, "max_tokens": max_tokens}
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(assets.resolve_model(cfg.tokenizer))
        info["chat_template_sha256"] = hashlib.sha256((tok.chat_template or "").encode()).hexdigest()
    except Exception as e:  # noqa: BLE001 - recorded, train will refuse a mismatch
        info["error"] = str(e)
    return info


def funnel_markdown(name: str, version: str, funnel: list[dict], counts: dict[str, int]) -> str:
    lines = [f"# Funnel: {name} {version}", "", "| stage | in | out | dropped | top reasons |", "|---|---:|---:|---:|---|"]
    for st in funnel:
        reasons = ", ".join(f"{k} ({v})" for k, v in list(st["reasons"].items())[:4])
        lines.append(f"| {st['stage']} | {st['rows_in']} | {st['rows_out']} | {st['dropped']} | {reasons} |")
    lines += ["", "| output | rows |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in counts.items()]
    return "\n".join(lines) + "\n"


def funnel_png(funnel: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [st["stage"] for st in funnel]
    kept = [st["rows_out"] for st in funnel]
    dropped = [st["dropped"] for st in funnel]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.5))
    y = list(range(len(names)))[::-1]
    ax.barh(y, kept, color="#4c78a8", label="kept")
    ax.barh(y, dropped, left=kept, color="#e45756", label="dropped / quarantined")
    ax.set_yticks(y, names)
    for yi, k, d in zip(y, kept, dropped):
        ax.text(k + d, yi, f" {k} (-{d})", va="center", fontsize=8)
    ax.set_xlabel("rows")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def _rows(p: Path) -> int:
    return pl.scan_parquet(p).select(pl.len()).collect().item()


def write_version(cfg: PipelineConfig, res: RunResult, parts: dict[str, Path], root: Path) -> Path:
    """`parts`: train/val/test/excluded Parquet files written by `pipeline.finalise` (moved here)."""
    base = root / cfg.output_dir / cfg.name
    with dataset_lock(base):
        tmp = _temp_version_dir(base)
        try:
            return _write_version(cfg, res, parts, base, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already when published


def _write_version(cfg: PipelineConfig, res: RunResult, parts: dict[str, Path], base: Path, tmp: Path) -> Path:
    files = {}
    for name, src in parts.items():
        if name == "test" and _rows(src) == 0 and cfg.split.test_fraction == 0:
            continue
        p = tmp / f"{name}.parquet"
        shutil.move(src, p)
        files[name] = _sha(p)
    if res.borderline is not None:
        p = tmp / "borderline_pairs.parquet"
        res.borderline.write_parquet(p, statistics=False)
        files["borderline_pairs"] = _sha(p)
    q = tmp / "quarantine.jsonl"
    if res.quarantine_path.exists():
        shutil.copyfile(res.quarantine_path, q)
    else:
        q.write_text("")
    files["quarantine"] = _sha(q)
    conf = config_dict(cfg)
    version = hashlib.sha256(json.dumps({"config": conf, "files": files}, sort_keys=True).encode()).hexdigest()[:12]
    latest = base / "LATEST"
    parent = cfg.parent or (latest.read_text().strip() if latest.exists() else None)
    if parent == version:
        parent = json.loads((base / version / "manifest.json").read_text()).get("parent") if (base / version).exists() else None
    counts = {k: _rows(tmp / f"{k}.parquet") for k in parts if k in files} | {
        "quarantined": sum(s["rows_quarantined"] for s in res.source_stats)}
    funnel = [dict(st.__dict__) for st in res.funnel]
    for st in funnel:
        st["seconds"] = None  # timings go to the console, not into versioned files
    manifest = {
        "name": cfg.name, "version": version, "parent": parent, "config": conf,
        "sources": res.source_stats, "source_hashes": source_hashes(cfg),
        "tokenizer": tokenizer_settings(cfg), "counts": counts, "rows_in": res.rows_in,
        "funnel": funnel, "stage_reports": res.reports, "files_sha256": files,
        "borderline_pairs": 0 if res.borderline is None else res.borderline.height,
        "excluded_reasons": dict(pl.scan_parquet(tmp / "excluded.parquet").group_by("reason").len().sort("reason")
                                 .collect().iter_rows()),
    }
    inputs = manifest["stage_reports"].pop(INPUT_SYSTEM_PROMPTS, None)  # counted by the pipeline as rows are read
    manifest |= data_checklist(tmp, cfg.tokenizer, cfg.length_reference, f"{cfg.name} {version}",
                               {"input": inputs} if inputs else {})
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False))
    (tmp / "funnel.md").write_text(funnel_markdown(cfg.name, version, funnel, counts) + checklist_markdown(manifest))
    funnel_png(funnel, tmp / "funnel.png", f"{cfg.name} {version}")
    return publish(base, tmp, version)


def data_checklist(tmp: Path, tokenizer: str | None, reference: LengthReference | None, title: str,
                   system_prompts: dict | None = None) -> dict:
    """The handbook's data-quality checklist (docs/curate.md) for the splits written in `tmp`: distinct
    system prompts, and token lengths (vs `reference`) with `lengths.png`; manifest fields."""
    splits = {k: tmp / f"{k}.parquet" for k in ("train", "val", "test") if (tmp / f"{k}.parquet").exists()}
    out: dict = {"system_prompts": (system_prompts or {}) | {
        k: prompt_distribution(pl.scan_parquet(p)) for k, p in splits.items()}}
    if tokenizer:
        out["lengths"], arrays = length_report(tokenizer, splits, reference, repo_root())
        if arrays:
            lengths_png(arrays, tmp / "lengths.png", f"{title}: tokens ({tokenizer})")
    return out


def checklist_markdown(manifest: dict) -> str:
    md = distribution_markdown(manifest.get("system_prompts", {}))
    return md + (lengths_markdown(manifest["lengths"]) if "lengths" in manifest else "")


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


def write_derived_version(base: Path, parts: dict[str, pl.DataFrame], change: dict, parent: Path | None = None,
                          name: str | None = None) -> Path:
    """A version made by a later step (review decisions, mined corrections), not a pipeline run.

    Parquet parts are written; with a `parent`, its other files (quarantine, borderline pairs) are
    carried over and its manifest is the starting point (new counts, `parent`, and `change`: what was
    applied and from where). The version id hashes the parent version, the change and the files, so
    the same decisions applied to the same parent give the same version.
    """
    with dataset_lock(base):
        tmp = _temp_version_dir(base)
        try:
            return _write_derived_version(base, parts, change, parent, name, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already when published


def _write_derived_version(base: Path, parts: dict[str, pl.DataFrame], change: dict, parent: Path | None,
                           name: str | None, tmp: Path) -> Path:
    parent_manifest = json.loads((parent / "manifest.json").read_text()) if parent else {"name": name, "counts": {}}
    if "excluded" not in parts:  # nothing excluded by this step
        parts = {**parts, "excluded": pl.DataFrame(schema=EXCLUDED_SCHEMA).drop("_row")}
    files = {}
    for part, df in parts.items():
        df.write_parquet(tmp / f"{part}.parquet", statistics=False)
        files[part] = _sha(tmp / f"{part}.parquet")
    for extra in ("quarantine.jsonl", "borderline_pairs.parquet"):
        if parent and (parent / extra).exists():
            shutil.copyfile(parent / extra, tmp / extra)
            files[extra.split(".")[0]] = _sha(tmp / extra)
    parent_version = parent_manifest.get("version")
    blob = json.dumps({"parent": parent_version, "change": change, "files": files}, sort_keys=True, default=str)
    version = hashlib.sha256(blob.encode()).hexdigest()[:12]
    counts = {k: parts[k].height for k in parts} | {"quarantined": parent_manifest["counts"].get("quarantined", 0)}
    manifest = {**parent_manifest, "version": version, "parent": parent_version, "change": change,
                "counts": counts, "files_sha256": files,
                "excluded_reasons": dict(parts["excluded"].group_by("reason").len().sort("reason").iter_rows())}
    manifest.pop("lengths", None)  # the parent's figures describe the parent's rows: computed again
    manifest |= data_checklist(tmp, (parent_manifest.get("tokenizer") or {}).get("tokenizer"),
                               _length_reference((parent_manifest.get("config") or {}).get("length_reference")),
                               f"{manifest['name']} {version}")
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, default=str))
    title = f"# {manifest['name']} {version}" + (f" (from {parent_version})" if parent_version else "")
    lines = [title, "", "change:", "", "```json", json.dumps(change, indent=2, sort_keys=True, default=str), "```",
             "", "| output | rows |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in counts.items()]
    (tmp / "funnel.md").write_text("\n".join(lines) + "\n" + checklist_markdown(manifest))
    return publish(base, tmp, version)


def _length_reference(raw) -> LengthReference | None:
    """The parent's `length_reference`, when it still resolves (else the lengths come without one)."""
    try:
        return LengthReference.model_validate(raw) if raw else None
    except ValueError:
        return None
