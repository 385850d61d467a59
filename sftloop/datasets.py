"""Where the packages meet on disk: dataset versions `data/datasets/<name>/<version>/`."""

from __future__ import annotations

from pathlib import Path


class DatasetNotFound(ValueError):
    pass


def resolve_version(spec: str | Path, root: Path) -> Path:
    """A version dir from a version path, a dataset dir (its LATEST) or a path relative to `root`."""
    p = Path(spec)
    p = p if p.is_absolute() else root / p
    if (p / "LATEST").exists():
        p = p / (p / "LATEST").read_text().strip()
    if not (p / "manifest.json").exists():
        raise DatasetNotFound(f"{p} is not a dataset version (no manifest.json); run `just curate` first")
    return p
