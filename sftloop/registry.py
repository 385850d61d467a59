"""The model registry: `models.toml` at the repo root names models (`base`, `prod`, `candidate`, ...).

An entry is either local::

    [models.candidate]
    base_model = "smollm2-135m-instruct"     # asset name or path
    adapter = "runs/20261123-0412-ab12/adapter"  # optional
    merged = "runs/.../merged"                   # optional: a full model dir, used instead of base+adapter
    run = "runs/20261123-0412-ab12"              # optional lineage (dataset version lives in the run)

or remote (any OpenAI-compatible endpoint)::

    [models.prod]
    endpoint = "http://127.0.0.1:8000/v1"
    model = "candidate"
    api_key_env = "VLLM_API_KEY"   # the *name* of the variable; keys never touch disk or logs
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ConfigDict, model_validator

from sftloop.settings import repo_root

DEFAULT_BASE = "smollm2-135m-instruct"


class RegistryError(RuntimeError):
    pass


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_model: str | None = None
    adapter: str | None = None
    merged: str | None = None
    run: str | None = None
    endpoint: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "ModelEntry":
        local = self.base_model is not None or self.merged is not None
        remote = self.endpoint is not None
        if local == remote:
            raise ValueError("an entry is either local (base_model/merged) or remote (endpoint + model), not both or neither")
        if remote and not self.model:
            raise ValueError("a remote entry needs `model`")
        if self.adapter and not self.base_model:
            raise ValueError("`adapter` needs `base_model`")
        return self

    @property
    def is_remote(self) -> bool:
        return self.endpoint is not None

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if key is None:
            raise RegistryError(f"environment variable {self.api_key_env} (api key) is not set")
        return key

    def spec(self) -> dict[str, Any]:
        """What identifies this model's outputs (for cache keys). Never includes the key."""
        return self.model_dump(exclude={"note", "api_key_env"}, exclude_none=True)


def registry_path(root: Path | None = None) -> Path:
    return (root or repo_root()) / "models.toml"


def load(path: Path | None = None) -> dict[str, ModelEntry]:
    path = path or registry_path()
    if not path.exists():
        return {"base": ModelEntry(base_model=DEFAULT_BASE), "prod": ModelEntry(base_model=DEFAULT_BASE)}
    raw = tomllib.loads(path.read_text())
    out: dict[str, ModelEntry] = {}
    for name, entry in raw.get("models", {}).items():
        try:
            out[name] = ModelEntry.model_validate(entry)
        except Exception as e:
            raise RegistryError(f"{path}: models.{name}: {e}") from e
    return out


def get(name: str, path: Path | None = None) -> ModelEntry:
    reg = load(path)
    if name not in reg:
        raise RegistryError(f"model {name!r} is not in {path or registry_path()} (known: {sorted(reg)})")
    return reg[name]


def put(name: str, entry: ModelEntry, path: Path | None = None) -> None:
    """Write or replace one entry, keeping the others. Atomic."""
    path = path or registry_path()
    raw = tomllib.loads(path.read_text()) if path.exists() else {}
    raw.setdefault("models", {})[name] = entry.model_dump(exclude_none=True)
    tmp = path.with_suffix(".toml.part")
    tmp.write_text(tomli_w.dumps(raw))
    tmp.replace(path)


def resolve_local(entry: ModelEntry, root: Path | None = None) -> tuple[Path, Path | None]:
    """(model dir, adapter dir or None) for a local entry; relative paths are taken from the repo root."""
    from sftloop.assets import resolve_model

    root = root or repo_root()

    def p(x: str) -> Path:
        q = Path(x)
        return q if q.is_absolute() else root / q

    if entry.is_remote:
        raise RegistryError("remote entry has no local path")
    if entry.merged:
        return p(entry.merged), None
    assert entry.base_model is not None
    base = resolve_model(entry.base_model) if not (root / entry.base_model).exists() else root / entry.base_model
    return base, (p(entry.adapter) if entry.adapter else None)


def training_dataset(name: str, root: Path, path: Path | None = None) -> Path | None:
    """The dataset version a registered model was trained on (run lineage: runs/<run>/run.json), or
    None for a model with no training run of ours (e.g. the base model)."""
    import json

    entry = get(name, path)
    if not entry.run:
        return None
    run_json = (Path(entry.run) if Path(entry.run).is_absolute() else root / entry.run) / "run.json"
    if not run_json.exists():
        run_json = root / "runs" / entry.run / "run.json"
    if not run_json.exists():
        return None
    ds = json.loads(run_json.read_text()).get("dataset") or {}
    p = Path(ds.get("path", ""))
    return p if (p / "manifest.json").exists() else None
