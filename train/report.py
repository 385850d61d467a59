"""Run report: report.md plus PNG plots (loss curves, grad norms, effective rank by module)."""

from __future__ import annotations

import math
from pathlib import Path


def _plot(path: Path, series: dict[str, tuple[list, list]], title: str, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (x, y) in series.items():
        if x:
            ax.plot(x, y, marker="o", markersize=3, label=name)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if series:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(run_dir: Path, summary: dict, log: list[dict], history: list[dict], r: int) -> None:
    tr = [(x["step"], x["loss"]) for x in log if "loss" in x]
    ev = [(x["step"], x["eval_loss"]) for x in log if "eval_loss" in x]
    _plot(run_dir / "loss.png", {"train": ([a for a, _ in tr], [b for _, b in tr]),
                                  "eval": ([a for a, _ in ev], [b for _, b in ev])}, "loss", "loss")
    mods = sorted({k.split("/")[1] for h in history for k in h if k.startswith("grad_norm/")})
    _plot(run_dir / "grad_norms.png", {m: ([h["step"] for h in history if f"grad_norm/{m}" in h],
                                           [h[f"grad_norm/{m}"] for h in history if f"grad_norm/{m}" in h]) for m in mods},
          "gradient norm by module", "L2 norm")
    rmods = sorted({k.split("/")[1] for h in history for k in h if k.startswith("erank/")})
    _plot(run_dir / "effective_rank.png", {m: ([h["step"] for h in history], [h.get(f"erank/{m}", 0) for h in history])
                                           for m in rmods}, f"effective rank of B·A (r = {r})", "entropy effective rank")
    last = history[-1] if history else {}
    eranks = {m: last.get(f"erank/{m}") for m in rmods}
    used = max((v for v in eranks.values() if v), default=None)
    advice = ""
    if used is not None:
        k = round(used, 1)
        suggestion = max(2, 2 ** math.ceil(math.log2(max(used, 1))))
        advice = (f"The adapters use effective rank ≈ {k} of r = {r}" +
                  (f": consider r = {suggestion}." if suggestion < r else ": r is not oversized."))
    lines = [f"# Run {summary['run_id']}", "",
             f"- dataset: {summary['dataset']['name']} {summary['dataset']['version']}",
             f"- base model: {summary['base_model']} · attention {summary['attn_implementation']} · mask {summary['mask']}",
             f"- steps: {summary['steps']} (resumed: {summary['resumed']}) · {summary['seconds']:.0f}s",
             f"- train loss {summary['train_loss']:.4f} · best eval loss {summary['best_eval_loss']} · final eval loss {summary['final_eval_loss']}",
             f"- trained tokens {summary['trained_tokens']} / processed {summary['processed_tokens']} · token efficiency {summary['token_efficiency']:.3f}",
             f"- samples encoded {summary['encode']['encoded']} of {summary['encode']['samples']}: cut at a turn boundary "
             f"{summary['encode']['cut_at_turn']}, dropped (too long) {summary['encode']['dropped_overflow']}, "
             f"zero trainable {summary['encode']['zero_trainable']}",
             "", advice, "", "| module | effective rank | ||B·A|| | grad norm |", "|---|---:|---:|---:|"]
    for m in rmods:
        lines.append(f"| {m} | {last.get(f'erank/{m}', 0):.2f} | {last.get(f'drift/{m}', 0):.4f} | {last.get(f'grad_norm/{m}', 0):.4f} |")
    lines += ["", "![loss](loss.png)", "![grad norms](grad_norms.png)", "![effective rank](effective_rank.png)", ""]
    (run_dir / "report.md").write_text("\n".join(lines))

