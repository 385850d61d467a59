"""Pipeline configuration (TOML), validated completely before any data is read.

Three layers, all before a source is opened: types, ranges and unknown keys (pydantic, strict);
each stage's own semantic checks (known field/key names, ISO codes, min <= max: `StageConfig`
validators raising `FieldError`); and the checks that need the whole config or the installed assets
(`check_config`): split fractions, the tokenizer and embedding model resolve to installed model
directories (without loading them), eval-set names. Every error names its key as written in the TOML.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sftloop.curate.lengths import LengthReference
from sftloop.curate.sources import SourceConfig
from sftloop.schema import MAX_ROW_BYTES
from sftloop.curate.stages import STAGES
from sftloop.curate.stages.base import FieldError, StageConfig


class ConfigError(ValueError):
    pass


class SplitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    mode: Literal["random", "time"] = "random"
    val_fraction: float = Field(0.05, ge=0, lt=1)
    test_fraction: float = Field(0.0, ge=0, lt=1)
    time_field: str = Field("timestamp", min_length=1)


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    tokenizer: str = "smollm2-135m-instruct"
    embedding_model: str = "minilm-l6-v2"
    output_dir: str = "data/datasets"
    parent: str | None = None
    shard_rows: int = Field(50_000, ge=1)  # rows per on-disk shard: the unit of memory, not part of the version
    max_row_bytes: int = Field(MAX_ROW_BYTES, ge=1)  # a larger input row is quarantined (docs/curate.md)
    sources: list[SourceConfig] = Field(min_length=1)
    stages: list[StageConfig]
    split: SplitSpec = Field(default_factory=SplitSpec)
    length_reference: LengthReference | None = None  # lengths vs serving (curate.lengths)
    # where the shard tasks run (curate.executors); how it ran, not what it made: not in the version id
    executor: Literal["local", "processes", "ray"] = "local"
    address: str | None = None  # ray: "auto" or a cluster URL; none starts a local cluster
    workers: int | None = Field(None, ge=1)  # processes / a local Ray cluster (default: all cores)

    @field_validator("sources", mode="before")
    @classmethod
    def _row_limit_is_top_level(cls, v: Any) -> Any:
        for i, src in enumerate(v if isinstance(v, list) else []):
            if isinstance(src, dict) and "max_row_bytes" in src:
                raise ValueError(f"[{i}].max_row_bytes: max_row_bytes is a top-level key (it applies to every source)")
        return v


def error_key(err: dict) -> str:
    """A pydantic error's location as written in TOML (`allowed[0]`, `split.val_fraction`), plus the key a
    `FieldError` names."""
    key = ""
    loc = list(err["loc"])
    e = (err.get("ctx") or {}).get("error")
    if isinstance(e, FieldError):
        loc.append(e.key)
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def error_text(err: dict) -> str:
    e = (err.get("ctx") or {}).get("error")
    if isinstance(e, FieldError):
        return str(e)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] not in ("missing", "extra_forbidden") and not isinstance(err.get("input"), (dict, list)):
        msg += f" (got {err['input']!r})"
    return msg


def parse_stage(i: int, raw: dict[str, Any]) -> StageConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"stages[{i}]: expected a [[stages]] table, got {raw!r}")
    if "type" not in raw:
        raise ConfigError(f"stages[{i}]: missing key 'type' (known: {sorted(STAGES)})")
    cls = STAGES.get(raw["type"])
    if cls is None:
        close = difflib.get_close_matches(str(raw["type"]), list(STAGES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"stages[{i}].type: unknown stage {raw['type']!r}{hint} (known: {sorted(STAGES)})")
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"stages[{i}] ({raw['type']}).{error_key(err)}: {error_text(err)}") from None


def load_config(path: Path | str) -> PipelineConfig:
    """Parse and validate a config completely; raises `ConfigError` naming the file and key. Reads no data."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from None
    raw_stages = raw.pop("stages", [])
    if not isinstance(raw_stages, list):
        raise ConfigError(f"{path}: stages: use [[stages]] tables, one per stage")
    try:
        stages = [parse_stage(i, s) for i, s in enumerate(raw_stages)]
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    try:
        cfg = PipelineConfig.model_validate({**raw, "stages": []})
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"{path}: {error_key(err)}: {error_text(err)}") from None
    cfg.stages = stages
    try:
        check_config(cfg)
    except FieldError as e:
        raise ConfigError(f"{path}: {e.key}: {e}") from None
    return cfg


# ---------------------------------------------------------------- checks across keys and against assets


def check_config(cfg: PipelineConfig) -> None:
    """What no single table can check alone: raises `FieldError` with the full key."""
    sp = cfg.split
    if sp.val_fraction + sp.test_fraction >= 1:
        raise FieldError("split", f"val_fraction + test_fraction = {sp.val_fraction} + {sp.test_fraction} >= 1 "
                                  "leaves no train split")
    check_model("tokenizer", cfg.tokenizer, chat_template=True)
    check_model("embedding_model", cfg.embedding_model)
    known = known_eval_sets()
    for i, st in enumerate(cfg.stages):
        if hasattr(st, "eval_sets"):
            names = list(st.eval_sets)  # type: ignore[attr-defined]
            if not names:
                raise FieldError(f"stages[{i}] ({st.type}).eval_sets",  # type: ignore[attr-defined]
                                 "empty list would check nothing; remove the stage or name sets "
                                 f"(known: {sorted(known)})")
            for j, n in enumerate(names):
                if n not in known:
                    close = difflib.get_close_matches(str(n), sorted(known), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise FieldError(f"stages[{i}] ({st.type}).eval_sets[{j}]",  # type: ignore[attr-defined]
                                     f"unknown eval set {n!r}{hint} (known: {sorted(known)})")


def known_eval_sets() -> set[str]:
    """The names the decontamination stage's own eval-set reader accepts (`evaluate.evalsets` or the older
    `curate.evalsets`, whichever it imports), so validation and the run cannot disagree."""
    from sftloop.curate.stages import decontaminate

    for fn in ("known_eval_sets", "eval_set_names"):
        if callable(getattr(decontaminate, fn, None)):
            return set(getattr(decontaminate, fn)())
    mod = getattr(decontaminate, "evalsets", None)
    if mod is None or not hasattr(mod, "SETS"):
        try:
            from sftloop.evaluate import evalsets as mod  # type: ignore[no-redef]
        except ImportError:
            from sftloop.curate import evalsets as mod  # type: ignore[no-redef]
    return set(mod.SETS)


def check_model(key: str, name: str, chat_template: bool = False) -> Path:
    """`name` resolves (as `sftloop.assets.resolve_model` does) to an installed model directory with a
    tokenizer (and a chat template when asked); only metadata files are read, no model is loaded."""
    from sftloop import assets

    declared = assets.specs()
    if name in declared:
        try:
            d = assets.path(name)  # stats the declared files against the install stamp
        except assets.AssetError as e:
            raise FieldError(key, str(e)) from None
    else:
        d = Path(name).expanduser()
        if not d.exists():
            models = [n for n, s in declared.items() if s.build == "gguf_to_transformers" or "model" in s.root]
            close = difflib.get_close_matches(name, models, n=1, cutoff=0.4)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise FieldError(key, f"{name!r} is neither a declared asset nor an existing model directory{hint} "
                                  f"(declared models: {models})")
    if not d.is_dir() or not ((d / "tokenizer.json").exists() or (d / "tokenizer_config.json").exists()):
        raise FieldError(key, f"{name!r} ({d}) is not a model directory with a tokenizer")
    if chat_template and not _has_chat_template(d):
        raise FieldError(key, f"{name!r} ({d}) has no chat template: token counts need the model's own template")
    return d


def _has_chat_template(d: Path) -> bool:
    if (d / "chat_template.jinja").exists() or (d / "chat_template.json").exists():
        return True
    try:
        return bool(json.loads((d / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


def config_dict(cfg: PipelineConfig) -> dict[str, Any]:
    d = cfg.model_dump(exclude={"stages", "shard_rows", "executor", "address", "workers"})  # how it ran, not what it made
    d["stages"] = [s.model_dump(exclude={"max_drop_share"}) for s in cfg.stages]  # a guard, not what it made
    for st in d["stages"]:  # token_limit with exact_counts writes what it wrote before the key existed: same ids
        if st.get("type") == "token_limit" and st.get("exact_counts"):
            st.pop("exact_counts")
    if d.get("length_reference") is None:  # unset: version ids of existing configs stay as they were
        d.pop("length_reference", None)
    return d
