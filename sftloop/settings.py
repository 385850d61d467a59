"""Paths and environment shared by every package."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """`$SFTLOOP_HOME`, default `~/.cache/sftloop`: downloads, assets, caches."""
    return Path(os.environ.get("SFTLOOP_HOME", Path.home() / ".cache" / "sftloop")).expanduser()


def repo_root() -> Path:
    """The project root: `$SFTLOOP_ROOT`, else the nearest parent holding `models.toml`, else the cwd."""
    env = os.environ.get("SFTLOOP_ROOT")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "models.toml").exists():
            return p
    return here


def cache_dir(kind: str) -> Path:
    """A content-keyed cache folder under `$SFTLOOP_CACHE` (default `$SFTLOOP_HOME/cache`)/<kind>.
    Deleting it changes speed, never results."""
    p = Path(os.environ.get("SFTLOOP_CACHE", home() / "cache")) / kind
    p.mkdir(parents=True, exist_ok=True)
    return p


def offline_env() -> None:
    """Everything runs offline after `just assets`: make sure no hub call is attempted."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
