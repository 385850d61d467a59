"""Training monitor: what Trainer does not log, logged every `monitor_every` steps.

Per-module gradient norms (q/k/v/o/gate/up/down), LoRA drift (||B·A|| and its relative change
since the last check), the effective rank of each adapter update (nuclear/spectral norm ratio, the
entropy-based effective rank of B·A's singular values, and the energy rank: how many singular values
hold 90% of ||B·A||²), per projection as the mean and the median over layers, activation norms of a
few layers, padding efficiency, trained-token share and peak memory. Also the per-step training loss
(for the smoothed curve) and which packed rows were trained on. Everything is kept for the run report.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections import defaultdict

import psutil
import torch
from transformers import TrainerCallback

PROJ = re.compile(r"\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.")


def lora_updates(model) -> dict[str, torch.Tensor]:
    """B·A (scaled) for every LoRA module, by module name."""
    return {name: (b @ a) * scale for name, (a, b, scale) in lora_factors(model).items()}


def lora_factors(model) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """(A, B, scaling) for every LoRA module, by module name."""
    out = {}
    for name, mod in model.named_modules():
        if hasattr(mod, "lora_A") and "default" in getattr(mod, "lora_A", {}):
            out[name] = (mod.lora_A["default"].weight.detach().float(), mod.lora_B["default"].weight.detach().float(),
                         float(mod.scaling["default"]))
    return out


def update_singular_values(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """Singular values of scale·B·A without forming it: B = Q_B R_B, Aᵀ = Q_A R_A, so B·A =
    Q_B (R_B R_Aᵀ) Q_Aᵀ has the singular values of the r×r matrix R_B R_Aᵀ."""
    rb = torch.linalg.qr(b, mode="r").R
    ra = torch.linalg.qr(a.T, mode="r").R
    return torch.linalg.svdvals(rb @ ra.T) * abs(scale)


def effective_rank(delta: torch.Tensor, s: torch.Tensor | None = None) -> tuple[float, float]:
    """(nuclear/spectral ratio, entropy effective rank) of a matrix (or of singular values `s`);
    (0, 0) for a zero matrix."""
    s = torch.linalg.svdvals(delta) if s is None else s
    if float(s.max()) <= 0:
        return 0.0, 0.0
    ratio = float(s.sum() / s.max())
    p = s / s.sum()
    p = p[p > 0]
    return ratio, float(math.exp(float(-(p * p.log()).sum())))


def energy_rank(delta: torch.Tensor | None, share: float = 0.9, s: torch.Tensor | None = None) -> int:
    """Smallest k whose top-k singular values hold `share` of ||delta||_F² (0 for a zero matrix):
    a rank-k LoRA can represent that much of this update."""
    e = (torch.linalg.svdvals(delta.float()) if s is None else s).pow(2)
    total = float(e.sum())
    if total <= 0:
        return 0
    return int((torch.cumsum(e, 0) / total < share).sum()) + 1


class Monitor(TrainerCallback):
    def __init__(self, every: int, r: int, probe_layers: tuple[int, ...] = (0, -1)):
        self.every = every
        self.r = r
        self.history: list[dict] = []
        self.grad_norms: dict[str, float] = {}
        self.prev_norms: dict[str, float] = {}
        self.tokens = {"trained": 0, "processed": 0, "slots": 0}
        self.rows_seen: set[int] = set()  # packed-row ids trained on (this process, this session)
        self._step_loss: dict[int, list] = {}  # optimizer step -> [sum, n, scaled]
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

    def add_loss(self, step: int, value: float, scaled: bool) -> None:
        """One micro-batch's loss for optimizer step `step`. `scaled`: Trainer normalised it by the
        step's trained-token count (then the step loss is the sum), else it is a per-batch mean."""
        acc = self._step_loss.setdefault(step, [0.0, 0, scaled])
        acc[0] += value
        acc[1] += 1

    @property
    def step_losses(self) -> list[tuple[int, float]]:
        """(step, training loss) per optimizer step, trained tokens weighted as Trainer does."""
        return [(k, v[0] if v[2] else v[0] / v[1]) for k, v in sorted(self._step_loss.items())]

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
        for name, (a, b, scale) in lora_factors(model).items():
            sv = update_singular_values(a, b, scale)
            norm = float(sv.pow(2).sum().sqrt())  # = ||B·A||_F
            prev = self.prev_norms.get(name)
            ratio, erank = effective_rank(None, sv)
            m = PROJ.search(name + ".")
            by_proj[m.group(1) if m else "other"].append((norm, (norm - prev) / prev if prev else 0.0, ratio, erank,
                                                          energy_rank(None, s=sv)))
            self.prev_norms[name] = norm
        for proj, vals in by_proj.items():
            rec[f"drift/{proj}"] = sum(v[0] for v in vals) / len(vals)
            rec[f"drift_rel/{proj}"] = sum(v[1] for v in vals) / len(vals)
            rec[f"rank_ratio/{proj}"] = sum(v[2] for v in vals) / len(vals)
            rec[f"erank/{proj}"] = sum(v[3] for v in vals) / len(vals)
            rec[f"erank_median/{proj}"] = statistics.median(v[3] for v in vals)
            rec[f"energy_rank90_median/{proj}"] = statistics.median(v[4] for v in vals)
            rec[f"energy_rank90_max/{proj}"] = max(v[4] for v in vals)
            rec[f"layers/{proj}"] = len(vals)
        for k, v in self.grad_norms.items():
            rec[f"grad_norm/{k}"] = v
        for k, v in self.act_norms.items():
            rec[f"act_norm/{k}"] = v
        rec["padding_efficiency"] = self.tokens["processed"] / max(self.tokens["slots"], 1)
        rec["trained_token_share"] = self.tokens["trained"] / max(self.tokens["processed"], 1)
        rec["peak_rss_mb"] = psutil.Process().memory_info().rss / 2**20
        if torch.cuda.is_available():
            rec["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        self.history.append(rec)

    def on_log(self, args, state, control, logs=None, **kw):
        if logs is not None:
            logs["padding_efficiency"] = self.tokens["processed"] / max(self.tokens["slots"], 1)
            if self._t0 is not None:
                logs["trained_tokens_per_s"] = self.tokens["trained"] / max(time.time() - self._t0, 1e-9)
            if self.history and self.history[-1]["step"] == state.global_step:  # fresh values only, never stale ones
                last = self.history[-1]
                for k in ("erank/q_proj", "drift/q_proj", "grad_norm/q_proj"):
                    if k in last:
                        logs[k] = last[k]
            loss = logs.get("loss")
            if loss is not None and not math.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss} logged at step {state.global_step}")
