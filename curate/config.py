"""Pipeline configuration (TOML), validated completely before any data is read."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from curate.sources import PARSERS
from sftloop.schema import MAX_ROW_BYTES
from curate.stages import STAGES
from curate.stages.base import StageConfig


class ConfigError(ValueError):
    pass


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    format: str
    path: str
    limit: int | None = Field(None, gt=0)
    pairs: bool = False
    weight: float = Field(1.0, gt=0, allow_inf_nan=False)

    @field_validator("format")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in PARSERS:
            raise ValueError(f"unknown format {v!r} (known: {sorted(PARSERS)})")
        return v


class SplitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["random", "time"] = "random"
    val_fraction: float = Field(0.05, ge=0, lt=1)
    test_fraction: float = Field(0.0, ge=0, lt=1)
    time_field: str = "timestamp"


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
    sources: list[SourceSpec] = Field(min_length=1)
    stages: list[StageConfig]
    split: SplitSpec = Field(default_factory=SplitSpec)


def parse_stage(i: int, raw: dict[str, Any]) -> StageConfig:
    if "type" not in raw:
        raise ConfigError(f"stages[{i}]: missing key 'type' (known: {sorted(STAGES)})")
    cls = STAGES.get(raw["type"])
    if cls is None:
        raise ConfigError(f"stages[{i}].type: unknown stage {raw['type']!r} (known: {sorted(STAGES)})")
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"stages[{i}] ({raw['type']}).{key}: {err['msg']}") from None


def load_config(path: Path | str) -> PipelineConfig:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from None
    stages = [parse_stage(i, s) for i, s in enumerate(raw.pop("stages", []))]
    try:
        cfg = PipelineConfig.model_validate({**raw, "stages": []})
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"{path}: {key}: {err['msg']}") from None
    cfg.stages = stages
    return cfg


def config_dict(cfg: PipelineConfig) -> dict[str, Any]:
    d = cfg.model_dump(exclude={"stages", "shard_rows"})  # how it ran, not what it made
    d["stages"] = [s.model_dump() for s in cfg.stages]
    return d
