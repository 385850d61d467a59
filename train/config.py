"""Training configuration (TOML validated by pydantic)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ALL_PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(ALL_PROJ))


class ReplaySpec(BaseModel):
    """General instruction data mixed in so forgetting probes have something to protect."""

    model_config = ConfigDict(extra="forbid")
    dataset: str  # a dataset version dir, or "<output_dir>/<name>" to take its LATEST
    share: float = Field(0.1, ge=0, lt=1)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    base_model: str = "smollm2-135m-instruct"
    dataset: str = "data/datasets/sharegpt-demo"
    runs_dir: str = "runs"
    register_as: str | None = "candidate"
    seed: int = 0
    # data
    max_len: int = Field(1024, gt=8)
    overflow: Literal["drop", "turns"] = "turns"
    max_bad_share: float = Field(0.2, ge=0, le=1)
    max_train_samples: int | None = Field(None, gt=0)
    max_eval_samples: int | None = Field(64, gt=0)
    pack: bool = True
    mask: Literal["auto", "block4d", "position_ids"] = "auto"
    replay: ReplaySpec | None = None
    # optimisation
    lora: LoraSpec = Field(default_factory=LoraSpec)
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    per_device_batch: int = Field(1, gt=0)
    grad_accum: int = Field(4, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    bf16: bool = False
    gradient_checkpointing: bool = False
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"
    # several processes (`--nproc N`, docs/train.md): DDP by default; FSDP when `fsdp` is set
    # (TrainingArguments.fsdp, e.g. "full_shard auto_wrap", with `fsdp_config` passed through)
    fsdp: str = ""
    fsdp_config: dict = Field(default_factory=dict)
    # monitoring and checkpoints
    logging_steps: int = Field(5, gt=0)
    eval_steps: int = Field(25, gt=0)
    save_steps: int = Field(25, gt=0)
    save_total_limit: int = 3
    monitor_every: int = Field(10, gt=0)
    report_to: list[str] = Field(default_factory=lambda: ["tensorboard"])
    merge: bool = False


def load_config(path: Path | str) -> TrainConfig:
    path = Path(path)
    raw = tomllib.loads(path.read_text())
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        raise ValueError(f"{path}: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None
