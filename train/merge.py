"""Merge a run's LoRA adapter into the base weights on CPU: a safetensors model dir vLLM can serve."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sftloop.assets import resolve_model
from sftloop.backends import quiet_peft


def merge(run_dir: Path, out: Path | None = None) -> Path:
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "run.json").read_text())
    base = resolve_model(summary["base_model"])
    from peft import PeftModel

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    with quiet_peft():
        model = PeftModel.from_pretrained(model, run_dir / "adapter").merge_and_unload()
    out = out or run_dir / "merged"
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(run_dir / "adapter").save_pretrained(out)
    return out
