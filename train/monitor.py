"""Training monitor: what Trainer does not log, logged every `monitor_every` steps.

Per-module gradient norms (q/k/v/o/gate/up/down), LoRA drift (||B·A|| and its relative change
since the last check), the effective rank of each adapter update (nuclear/spectral norm ratio and
the entropy-based effective rank of B·A's singular values), activation norms of a few layers,
token efficiency and peak memory. Everything is also kept in `history` for the run report.
"""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict

import psutil
import torch
from transformers import TrainerCallback

PROJ = re.compile(r"\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.")


def lora_updates(model) -> dict[str, torch.Tensor]:
    """B·A (scaled) for every LoRA module, by module name."""
    out = {}
    for name, mod in model.named_modules():
        if hasattr(mod, "lora_A") and "default" in getattr(mod, "lora_A", {}):
            a = mod.lora_A["default"].weight.detach().float()
            b = mod.lora_B["default"].weight.detach().float()
            out[name] = (b @ a) * mod.scaling["default"]
    return out


def effective_rank(delta: torch.Tensor) -> tuple[float, float]:
    """(nuclear/spectral ratio, entropy effective rank) of a matrix; (0, 0) for a zero matrix."""
    s = torch.linalg.svdvals(delta)
    if float(s.max()) <= 0:
        return 0.0, 0.0
    ratio = float(s.sum() / s.max())
    p = s / s.sum()
    p = p[p > 0]
    return ratio, float(math.exp(float(-(p * p.log()).sum())))


class Monitor(TrainerCallback):
    def __init__(self, every: int, r: int, probe_layers: tuple[int, ...] = (0, -1)):
        self.every = every
        self.r = r
        self.history: list[dict] = []
        self.grad_norms: dict[str, float] = {}
        self.prev_norms: dict[str, float] = {}
        self.tokens = {"trained": 0, "processed": 0, "slots": 0}
        self.act_norms: dict[str, float] = {}
        self._hooks = []
        self.probe_layers = probe_layers
        self._t0: float | None = None

    # -- activation norms via forward hooks on a few decoder layers
    def attach(self, model) -> None:
        layers = None
        for _, mod in model.named_modules():
            if isinstance(getattr(mod, "layers", None), torch.nn.ModuleList):
                layers = mod.layers
                break
        if layers is None:
            return
        for i in self.probe_layers:
            layer = layers[i]

            def hook(_m, _inp, out, idx=i % len(layers)):
                h = out[0] if isinstance(out, tuple) else out
                self.act_norms[f"layer{idx}"] = float(h.detach().float().norm(dim=-1).mean())

            self._hooks.append(layer.register_forward_hook(hook))

    def on_train_begin(self, args, state, control, **kw):
        self._t0 = time.time()

    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        if model is None or (state.global_step + 1) % self.every:
            return
        sums: dict[str, float] = defaultdict(float)
        for name, p in model.named_parameters():
            if p.grad is not None:
                m = PROJ.search(name)
                if m:
                    sums[m.group(1)] += float(p.grad.detach().float().pow(2).sum())
        self.grad_norms = {k: math.sqrt(v) for k, v in sums.items()}

    def on_step_end(self, args, state, control, model=None, **kw):
        if model is None or state.global_step % self.every:
            return
        rec: dict = {"step": state.global_step}
        by_proj: dict[str, list] = defaultdict(list)
        for name, delta in lora_updates(model).items():
            norm = float(delta.norm())
            prev = self.prev_norms.get(name)
            ratio, erank = effective_rank(delta)
            m = PROJ.search(name + ".")
            by_proj[m.group(1) if m else "other"].append((norm, (norm - prev) / prev if prev else 0.0, ratio, erank))
            self.prev_norms[name] = norm
        for proj, vals in by_proj.items():
            rec[f"drift/{proj}"] = sum(v[0] for v in vals) / len(vals)
            rec[f"drift_rel/{proj}"] = sum(v[1] for v in vals) / len(vals)
            rec[f"rank_ratio/{proj}"] = sum(v[2] for v in vals) / len(vals)
            rec[f"erank/{proj}"] = sum(v[3] for v in vals) / len(vals)
        for k, v in self.grad_norms.items():
            rec[f"grad_norm/{k}"] = v
        for k, v in self.act_norms.items():
            rec[f"act_norm/{k}"] = v
        rec["token_efficiency"] = self.tokens["processed"] / max(self.tokens["slots"], 1)
        rec["trained_token_share"] = self.tokens["trained"] / max(self.tokens["processed"], 1)
        rec["peak_rss_mb"] = psutil.Process().memory_info().rss / 2**20
        if torch.cuda.is_available():
            rec["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        self.history.append(rec)

    def on_log(self, args, state, control, logs=None, **kw):
        if logs is not None:
            logs["token_efficiency"] = self.tokens["processed"] / max(self.tokens["slots"], 1)
            if self._t0 is not None:
                logs["trained_tokens_per_s"] = self.tokens["trained"] / max(time.time() - self._t0, 1e-9)
            if self.history:
                last = self.history[-1]
                for k in ("erank/q_proj", "drift/q_proj", "grad_norm/q_proj"):
                    if k in last:
                        logs[k] = last[k]
            loss = logs.get("loss")
            if loss is not None and not math.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss} logged at step {state.global_step}")
