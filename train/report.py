"""Run report: report.md plus PNG plots (loss curves, grad norms, effective rank by module).

It answers "did training work?" first (eval loss at step 0 = the base model, at the end, the
change), then how much of the data was trained on, the two token ratios (each defined), and the
LoRA rank per module. Numbers are rounded for people here; run.json keeps full precision.
"""

from __future__ import annotations

import math
from pathlib import Path

ENERGY_SHARE = 0.9  # energy rank: singular values holding this share of ||B·A||²


# -- numbers for people
def _loss(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _int(x: int | float | None) -> str:
    return "n/a" if x is None else f"{round(x):,}"


def _pct(num: float | None, den: float | None) -> str:
    """Share of the data; above 1 (several epochs) as passes over it."""
    if num is None or not den:
        return "n/a"
    return f"{num / den:.1%}" if num <= den else f"{num / den:.2f} passes"


def ema(values: list[float], span: int) -> list[float]:
    """Bias-corrected exponential moving average (as TensorBoard's smoothing), alpha = 2/(span+1)."""
    a = 2 / (span + 1)
    out, m, w = [], 0.0, 0.0
    for v in values:
        m = (1 - a) * m + a * v
        w = (1 - a) * w + a
        out.append(m / w)
    return out


def smoothing_span(n_points: int) -> int:
    return max(3, min(50, n_points // 6))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot(path: Path, series: dict[str, tuple[list, list]], title: str, ylabel: str) -> None:
    plt = _plt()
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


def train_points(summary: dict, log: list[dict]) -> tuple[list[tuple[int, float]], str]:
    """Per-step training losses when the monitor has them (not after a resume), else Trainer's
    logged means over `logging_steps`."""
    steps = [tuple(x) for x in summary.get("step_losses") or []]
    if steps and len(steps) >= len([x for x in log if "loss" in x]):
        return steps, "per optimizer step"
    return [(x["step"], x["loss"]) for x in log if "loss" in x], "Trainer log (mean over logging_steps)"


def plot_loss(path: Path, summary: dict, log: list[dict]) -> int:
    """Raw training loss faint, its EMA bold, eval loss (step 0 = base model) with markers."""
    plt = _plt()
    tr, what = train_points(summary, log)
    ev = [(x["step"], x["eval_loss"]) for x in log if "eval_loss" in x]
    span = smoothing_span(len(tr))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if tr:
        xs, ys = [a for a, _ in tr], [b for _, b in tr]
        ax.plot(xs, ys, color="tab:blue", alpha=0.25, linewidth=0.8, marker=".", markersize=4,
                label=f"train, raw ({what})")
        ax.plot(xs, ema(ys, span), color="tab:blue", linewidth=2.2, label=f"train, EMA (span {span} points)")
    if ev:
        ax.plot([a for a, _ in ev], [b for _, b in ev], color="tab:orange", marker="o", markersize=6,
                linewidth=1.8, label="eval (held-out; step 0 = base model)")
        s0 = next((b for a, b in ev if a == 0), None)
        if s0 is not None:
            ax.axhline(s0, color="tab:orange", linestyle=":", linewidth=1, alpha=0.8)
            ax.annotate(f"base {s0:.3f}", (0, s0), textcoords="offset points", xytext=(6, 6), fontsize=8,
                        color="tab:orange")
        ax.annotate(f"final {ev[-1][1]:.3f}", ev[-1], textcoords="offset points", xytext=(-40, -14), fontsize=8,
                    color="tab:orange")
    ax.set_title("loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy per trained token")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return span


def rank_rows(last: dict, r: int) -> list[dict]:
    """Per projection: median energy rank over layers and the r it suggests.

    Why this statistic: the energy rank k90 is the number of singular values of B·A that hold 90% of
    ||B·A||², so a rank-k90 adapter keeps 90% of the update this run learned. The median over the
    layers is what most layers need (the mean/max let one outlier layer decide for all); the max is
    shown next to it. Suggested r: the next power of two >= that median (at least 2)."""
    mods = sorted({k.split("/", 1)[1] for k in last if k.startswith("energy_rank90_median/")})
    rows = []
    for m in mods:
        med = last[f"energy_rank90_median/{m}"]
        sugg = max(2, 2 ** math.ceil(math.log2(max(med, 1))))
        if med >= r:
            verdict = f"saturated (uses all {r}): try a larger r"
        elif sugg < r:
            verdict = f"r = {sugg} would do"
        else:
            verdict = f"keep r = {r}"
        rows.append({"module": m, "energy_rank90_median": med, "energy_rank90_max": last.get(f"energy_rank90_max/{m}"),
                     "erank_median": last.get(f"erank_median/{m}"), "layers": last.get(f"layers/{m}"),
                     "drift": last.get(f"drift/{m}"), "grad_norm": last.get(f"grad_norm/{m}"),
                     "suggested_r": min(sugg, r) if med < r else 2 * r, "verdict": verdict})
    return rows


def rank_advice(rows: list[dict], r: int) -> str:
    if not rows:
        return "No rank measurement (the run ended before the first monitor step)."
    one_r = max(x["suggested_r"] for x in rows)
    small = [x["module"] for x in rows if x["suggested_r"] < one_r]
    if one_r > r:
        head = f"Some modules use all r = {r} directions: try r = {one_r}."
    elif one_r < r:
        head = f"Every module's median layer keeps 90% of its update with rank ≤ {one_r}: consider r = {one_r}."
    else:
        head = f"r = {r} is not oversized (the busiest module's median layer needs it)."
    if small:
        head += (" Per module (peft's `rank_pattern`), smaller would do for "
                 + ", ".join(f"{x['module']} (r = {x['suggested_r']})" for x in rows if x["module"] in small) + ".")
    return head


def report_lines(summary: dict, log: list[dict], history: list[dict], r: int, span: int | None = None) -> list[str]:
    s = summary
    enc = s["encode"]
    step0, final, best = s.get("eval_loss_step0"), s.get("final_eval_loss"), s.get("best_eval_loss")
    change = s.get("eval_loss_change")
    n_val = s.get("val_samples")
    on = f" on {n_val} held-out conversations" if n_val else " on the held-out split"
    if step0 is not None and final is not None:
        verdict = ("eval loss went down" if change < 0 else "eval loss did NOT go down")
        headline = (f"**Did training work?** {verdict}{on}: {_loss(step0)} at step 0 (base model) → "
                    f"{_loss(final)} at step {s['steps']} ({change:+.3f}, {change / step0:+.1%}).")
    elif final is not None:
        headline = f"**Eval loss** {_loss(final)} at step {s['steps']} (no step-0 baseline: this run resumed)."
    else:
        headline = "**No eval split**: nothing held out, so no eval loss."
    lines = [f"# Run {s['run_id']}", "", headline, ""]
    lines += ["| eval loss | value |", "|---|---:|",
              f"| step 0 (base model) | {_loss(step0)} |",
              f"| final (step {s['steps']}) | {_loss(final)} |",
              f"| best (kept adapter) | {_loss(best)} |",
              f"| change, final − step 0 | {'n/a' if change is None else f'{change:+.3f}'} "
              f"({'n/a' if change is None or not step0 else f'{change / step0:+.1%}'}) |",
              f"| train loss, mean over the run | {_loss(s.get('train_loss'))} |", ""]

    ep = s.get("epochs")
    lines += ["## How much of the data was trained on", "",
              "| unit | trained | of | share |", "|---|---:|---:|---:|",
              f"| packed rows (one row = up to max_len tokens) | {_int(s.get('rows_trained'))} | {_int(s.get('rows_total'))} | "
              f"{_pct(s.get('rows_trained'), s.get('rows_total'))} |",
              f"| conversations (in those rows) | {_int(s.get('conversations_trained'))} | {_int(s.get('conversations_total'))} | "
              f"{_pct(s.get('conversations_trained'), s.get('conversations_total'))} |",
              f"| tokens read (non-pad) | {_int(s.get('processed_tokens'))} | {_int(s.get('tokens_total'))} | "
              f"{_pct(s.get('processed_tokens'), s.get('tokens_total'))} |",
              f"| trained tokens (with a label) | {_int(s.get('trained_tokens'))} | {_int(s.get('label_tokens_total'))} | "
              f"{_pct(s.get('trained_tokens'), s.get('label_tokens_total'))} |",
              f"| epochs | {'n/a' if ep is None else f'{ep:.3f}'} | | |", "",
              f"Encoding (before training, not coverage): {enc['encoded']} of {enc['samples']} records encoded; "
              f"cut at a turn boundary {enc['cut_at_turn']}, dropped as too long {enc['dropped_overflow']}, "
              f"zero trainable {enc['zero_trainable']}.", ""]
    if s.get("resumed"):
        lines += ["This run resumed from a checkpoint: rows/conversations/tokens count the last session only; "
                  "epochs counts the whole run.", ""]

    pe, ts = s.get("padding_efficiency"), s.get("trained_token_share")
    lines += ["## Token ratios", "",
              f"- **padding efficiency {'n/a' if pe is None else f'{pe:.2f}'}** = non-pad tokens / batch slots "
              f"({_int(s.get('processed_tokens'))} / {_int(s.get('batch_slots'))}): the share of compute not spent on padding; "
              "1.00 means packing left no padding.",
              f"- **trained-token share {'n/a' if ts is None else f'{ts:.2f}'}** = tokens with a label (assistant replies and "
              f"their end-of-turn marker) / non-pad tokens ({_int(s.get('trained_tokens'))} / {_int(s.get('processed_tokens'))}): "
              "the rest (system and user text, template scaffolding) is read, not trained.", ""]

    last = history[-1] if history else {}
    rows = rank_rows(last, r)
    lines += [f"## LoRA rank per module (r = {r}, at step {last.get('step', 'n/a')})", "", rank_advice(rows, r), "",
              f"Statistic: the **energy rank** of each adapter update B·A, i.e. how many singular values hold "
              f"{ENERGY_SHARE:.0%} of ‖B·A‖² (a rank-k adapter keeps that much of the update), as the **median over "
              "the layers** (what most layers need; one outlier layer does not decide). Max over layers and the "
              "entropy effective rank are shown for reference. A short run measures the rank the update has so far.", "",
              "| module | energy rank 90%, median | max over layers | entropy eff. rank, median | ‖B·A‖ | grad norm | suggestion |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for x in rows:
        gn = "n/a" if x["grad_norm"] is None else f"{x['grad_norm']:.3f}"
        lines.append(f"| {x['module']} | {x['energy_rank90_median']:g} | {x['energy_rank90_max']} | "
                     f"{x['erank_median']:.1f} | {x['drift']:.3f} | {gn} | {x['verdict']} |")
    lines += ["", "## Run", "",
              f"- dataset: {s['dataset']['name']} {s['dataset']['version']}",
              f"- base model: {s['base_model']} · attention {s['attn_implementation']} · mask {s['mask']}",
              f"- steps: {s['steps']} (resumed: {s['resumed']}) · {s['seconds']:.0f} s",
              "- full-precision values: run.json", "",
              "![loss](loss.png)" + (f"\n\nTraining loss: raw points faint, EMA (span {span}) bold; eval loss in orange."
                                     if span else ""),
              "", "![grad norms](grad_norms.png)", "![effective rank](effective_rank.png)", ""]
    return lines


def write_report(run_dir: Path, summary: dict, log: list[dict], history: list[dict], r: int) -> None:
    span = plot_loss(run_dir / "loss.png", summary, log)
    mods = sorted({k.split("/")[1] for h in history for k in h if k.startswith("grad_norm/")})
    _plot(run_dir / "grad_norms.png", {m: ([h["step"] for h in history if f"grad_norm/{m}" in h],
                                           [h[f"grad_norm/{m}"] for h in history if f"grad_norm/{m}" in h]) for m in mods},
          "gradient norm by module", "L2 norm")
    rmods = sorted({k.split("/", 1)[1] for h in history for k in h if k.startswith("energy_rank90_median/")})
    _plot(run_dir / "effective_rank.png",
          {m: ([h["step"] for h in history], [h.get(f"energy_rank90_median/{m}", 0) for h in history]) for m in rmods},
          f"energy rank (90% of ||B·A||²) of B·A, median over layers (r = {r})", "rank")
    (run_dir / "report.md").write_text("\n".join(report_lines(summary, log, history, r, span)))
