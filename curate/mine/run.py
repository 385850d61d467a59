"""One weekly mining run: logs -> week -> redact -> detect -> cluster -> drift -> reports.

Writes `reports/mine-<week>/` (overwritten when the week is rerun): failures.parquet (redacted,
every reason per row, cluster and its terms), drift.json, report.md and report.html (charts inline).
Nothing leaves the process unredacted: `read_logs` redacts every string field of every row as it is
read, and the quarantine of malformed rows, before anything is embedded, clustered, graded or written.
Embedding and judge grading run on the chosen executor (`local` in-process by default; `processes`,
`ray`: curate/mine/parallel.py), with the same results; report.md names the executor.
"""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

from sftloop.curate.executors import Executor, ExecutorConfig, make_executor
from sftloop.curate.language import detect_languages
from sftloop.curate.mine import parallel as P
from sftloop.curate.mine import detect as D
from sftloop.curate.mine import understand as U
from sftloop.curate.mine.logs import read_logs, select_week
from sftloop.dataset_version import DatasetVersion


def reference_prompts(reference: Path | None) -> list[str]:
    """First user turns of a dataset version's train split (the training distribution of prod)."""
    if reference is None:
        return []
    df = DatasetVersion.resolve(reference).read("train")
    return [next((m["content"] for m in msgs if m["role"] == "user"), "") for msgs in df["messages"].to_list()]


def run(logs: str, out_root: Path, week: str | None = None, reference: Path | None = None,
        embedder=None, progress: bool = False, judge: str | None = None, judge_sample: int | None = None,
        judge_threshold: float = 2.5, root: Path | None = None, uncertainty_model: str | None = None,
        uncertainty_samples: int = 4, uncertainty_threshold: float = 0.5,
        executor: ExecutorConfig | None = None) -> Path:
    """`judge`: a registry entry graded through `evaluate.file_tasks.grade_rows` (all rows of the week, or a
    seeded sample of `judge_sample`); a score below `judge_threshold` (1-5) adds `soft:judge_low`.
    `uncertainty_model`: a local registry entry samples `uncertainty_samples` answers per prompt (same
    sample of rows as the judge); disagreement (1 - mean pairwise MiniLM cosine) above
    `uncertainty_threshold` adds `uncertainty:disagreement`.
    `executor`: where embedding and judge grading run (`local` in-process by default; `processes`, `ray`:
    as tasks, curate/mine/parallel.py); every executor writes the same failures and drift."""
    cfg = executor or ExecutorConfig()
    ex = make_executor(cfg) if cfg.kind != "local" else None
    try:
        return _mine(logs, out_root, week, reference, embedder, progress, judge, judge_sample, judge_threshold, root,
                     uncertainty_model, uncertainty_samples, uncertainty_threshold, ex)
    finally:
        if ex is not None:
            ex.close()


def _mine(logs: str, out_root: Path, week: str | None, reference: Path | None, embedder, progress: bool,
          judge: str | None, judge_sample: int | None, judge_threshold: float, root: Path | None,
          uncertainty_model: str | None, uncertainty_samples: int, uncertainty_threshold: float,
          ex: Executor | None) -> Path:
    timing: dict[str, float] = {}
    tasks: dict = {}
    quarantine_pii: Counter = Counter()
    rows, stats = read_logs(logs, out_root / ".mine-quarantine.jsonl", quarantine_pii)  # redacted as read
    week, sel = select_week(rows, week)
    out = out_root / f"mine-{week}"
    shutil.rmtree(out, ignore_errors=True)  # idempotent per week
    out.mkdir(parents=True)
    pii: Counter = Counter()
    recs = []
    for r in sel:
        pii.update(r.pii)
        conv = r.conversation()
        recs.append({"request_id": r.request_id, "week": week, "timestamp": r.timestamp.isoformat(), "category": r.category,
                     "model": r.model, "messages": conv, "prompt": conv[-1]["content"], "response": r.response,
                     "feedback": r.user_feedback, "expects_json": r.expects_json, "automated_score": r.automated_score,
                     "response_words": len(r.response.split())})
    texts = [x["prompt"] for x in recs] + [x["response"] for x in recs]
    langs = detect_languages(texts, accurate=True, min_confidence=0.2) if recs else []  # one-liners: see curate/language.py
    for i, x in enumerate(recs):
        x["reasons"] = D.detect(x["prompt"], x["response"], x["feedback"], x["expects_json"],
                                langs[i], langs[len(recs) + i])
    t0 = time.perf_counter()
    judge_info = _judge(recs, judge, judge_sample, judge_threshold, root or Path.cwd(), ex, tasks) if judge and recs else None
    timing["judge"] = time.perf_counter() - t0
    if embedder is None:
        from sftloop.curate.embed import Embedder

        embedder = Embedder(progress=progress)
    unc_info = (_uncertainty(recs, uncertainty_model, uncertainty_samples, uncertainty_threshold, judge_sample,
                             root or Path.cwd(), embedder) if uncertainty_model and recs else None)
    flagged = [x for x in recs if x["reasons"]]
    t0 = time.perf_counter()
    emb_all = P.encode(embedder, [x["prompt"] for x in recs], ex, tasks) if recs else np.zeros((0, 384), dtype=np.float32)
    timing["embed"] = time.perf_counter() - t0
    idx = [i for i, x in enumerate(recs) if x["reasons"]]
    t0 = time.perf_counter()  # on the driver: it needs every vector and takes milliseconds
    labels = U.cluster(emb_all[idx]) if idx else np.zeros(0, dtype=int)
    timing["cluster"] = time.perf_counter() - t0
    terms = U.distinctive_terms([recs[i]["prompt"] for i in idx], labels) if idx else {}
    for j, i in enumerate(idx):
        recs[i]["cluster"] = int(labels[j])
        recs[i]["cluster_terms"] = terms.get(int(labels[j]), [])
    ref = reference_prompts(reference)
    t0 = time.perf_counter()
    ref_emb = P.encode(embedder, ref, ex, tasks) if ref else np.zeros((0, 384), dtype=np.float32)
    timing["embed"] += time.perf_counter() - t0
    weekly = {}
    for r in rows:
        if r.automated_score is not None:
            weekly.setdefault(r.iso_week, []).append(r.automated_score)
    weekly_means = {w: float(np.mean(v)) for w, v in weekly.items()}
    prev_week_rows = [r for r in rows if r.iso_week < week]
    drift = {
        "week": week, "rows": len(sel), "flagged": len(flagged),
        "prompts_vs_training": U.embedding_drift(emb_all, ref_emb) if ref else {"note": "no training-data reference given"},
        "response_length_vs_previous_weeks": U.length_shift([x["response_words"] for x in recs],
                                                            [len(r.response.split()) for r in prev_week_rows]),
        "judge_trend": U.judge_trend(weekly_means, week) if weekly_means else {"note": "no automated_score in the logs"},
        "per_category": U.per_category([x["category"] for x in recs], [bool(x["reasons"]) for x in recs]),
        "judge_this_week": judge_info or {"note": "no judge configured (--judge)"},
        "uncertainty": unc_info or {"note": "no local model for sampled answers (--uncertainty-model)"},
    }
    reasons = dict(Counter(reason for x in flagged for reason in x["reasons"]).most_common())
    clusters = Counter(x["cluster"] for x in flagged)
    failures = pl.DataFrame([{**x, "reasons": x["reasons"], "cluster": x.get("cluster"), "cluster_terms": x.get("cluster_terms", [])}
                             for x in flagged]) if flagged else pl.DataFrame()
    failures.write_parquet(out / "failures.parquet")
    (out / "drift.json").write_text(json.dumps(drift, indent=2, default=str))
    simulated = sum(1 for r in sel if r.feedback_simulated and r.user_feedback)
    summary = {"week": week, "simulated_feedback": simulated, "rows_in_logs": sum(s.rows_in for s in stats), "quarantined": sum(s.rows_quarantined for s in stats),
               "rows_this_week": len(sel), "flagged": len(flagged), "pii_redactions": dict(pii),
               "quarantine_pii_redactions": dict(quarantine_pii), "reasons": reasons,
               "clusters": {int(c): {"size": n, "terms": terms.get(c, [])} for c, n in clusters.most_common()},
               "executor": P.describe(ex), "tasks": {k: len(v) if isinstance(v, set) else v for k, v in tasks.items()},
               "seconds": {k: round(v, 3) for k, v in timing.items()}}
    _write_reports(out, summary, drift)
    return out


def _judge(recs: list[dict], judge: str, sample: int | None, threshold: float, root: Path,
           ex: Executor | None = None, tasks: dict | None = None) -> dict:
    """Grade (a seeded sample of) this week's exchanges with the judge; mark low scores as failures."""
    chosen = _chosen(recs, sample)
    # keyed by position: redacted request ids need not be unique ("[PHONE]")
    rows = pl.DataFrame({"id": [str(i) for i in chosen],
                         "messages": [recs[i]["messages"] + [{"role": "assistant", "content": recs[i]["response"] or "(empty)"}]
                                      for i in chosen]})
    scores = P.judge_scores(rows, judge, root, ex, tasks)  # in-process when ex is None
    by_id = {r["id"]: r["score"] for r in scores.iter_rows(named=True) if r["graded"]}
    for i, x in enumerate(recs):
        x["judge_score"] = by_id.get(str(i))
        if x["judge_score"] is not None and x["judge_score"] < threshold:
            x["reasons"].append("soft:judge_low")
    vals = list(by_id.values())
    return {"judge": judge, "graded": len(vals), "of": len(recs), "threshold": threshold,
            "mean_score": round(float(np.mean(vals)), 4) if vals else None,
            "below_threshold": sum(v < threshold for v in vals), "ungraded": len(chosen) - len(vals)}


def _chosen(recs: list[dict], sample: int | None) -> list[int]:
    """All rows, or a seeded sample (by request id hash) of `sample` rows: the same rows for every signal."""
    import hashlib

    order = sorted(range(len(recs)), key=lambda i: hashlib.sha256(recs[i]["request_id"].encode()).hexdigest())
    return order[:sample] if sample else order


def _uncertainty(recs: list[dict], model: str, n: int, threshold: float, sample: int | None, root: Path, embedder) -> dict:
    """Sample `n` answers per prompt from a local model; flag prompts whose answers disagree."""
    from sftloop.curate.model_calls import generate

    chosen = _chosen(recs, sample)
    rows = pl.DataFrame({"id": [str(i) for i in chosen], "messages": [recs[i]["messages"] for i in chosen]})
    out = generate(rows, model, root, max_new_tokens=64, samples=n)
    by_id: dict[str, list[str]] = {}
    for r in out.sort("id", "sample").iter_rows(named=True):
        by_id.setdefault(r["id"], []).append(r["response"] or "(empty)")
    scores = []
    for i in chosen:
        answers = by_id.get(str(i), [])
        d = U.disagreement(embedder.encode(answers)) if len(answers) > 1 else float("nan")
        recs[i]["disagreement"] = None if np.isnan(d) else round(d, 4)
        if not np.isnan(d):
            scores.append(d)
            if d > threshold:
                recs[i]["reasons"].append("uncertainty:disagreement")
    return {"model": model, "samples_per_prompt": n, "prompts": len(scores), "threshold": threshold,
            "mean_disagreement": round(float(np.mean(scores)), 4) if scores else None,
            "above_threshold": int(sum(d > threshold for d in scores))}


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _chart(counter: dict, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.35 * max(len(counter), 1) + 1.2))
    keys = list(counter)[::-1]
    ax.barh([str(k) for k in keys], [counter[k] for k in keys], color="#4c78a8")
    ax.set_title(title)
    return _png(fig)


def _line_chart(series: dict, title: str, mark: str | None = None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6))
    xs = list(series)
    ax.plot(xs, [series[x] for x in xs], marker="o", color="#4c78a8")
    if mark in series:
        ax.plot([mark], [series[mark]], marker="o", color="#e45756", markersize=10)
    ax.set_title(title)
    ax.tick_params(axis="x", labelsize=8)
    return _png(fig)


EXECUTOR_LINE = "Executor: "  # the one line of report.md that differs between executors (with the timings)


def _executor_line(summary: dict) -> str:
    """Which executor ran it, its tasks and the step timings (clustering always runs on the driver)."""
    t = summary["tasks"]
    tasks = "; ".join(x for x in (
        f"embedding {t['embed']} tasks in {t.get('embed_workers', '?')} worker processes" if "embed" in t else "",
        f"judge grading {t['judge']} tasks" if "judge" in t else "") if x)
    secs = ", ".join(f"{k} {v:.2f}" for k, v in summary["seconds"].items())
    return f"{EXECUTOR_LINE}{summary['executor']}" + (f"; {tasks}" if tasks else "") + f"; seconds: {secs} (clustering on the driver)."


def _write_reports(out: Path, summary: dict, drift: dict) -> None:
    lines = [f"# Failure mining {summary['week']}", "",
             f"{summary['rows_this_week']} requests this week ({summary['rows_in_logs']} in the logs, "
             f"{summary['quarantined']} quarantined); {summary['flagged']} flagged.", "",
             f"PII redacted before anything left the process: {summary['pii_redactions'] or 'none found'}"
             + (f" (and in quarantined rows: {summary['quarantine_pii_redactions']})" if summary["quarantine_pii_redactions"] else ""),
             "", _executor_line(summary), ""]
    if summary["simulated_feedback"]:
        lines += [f"**Note: the user feedback of {summary['simulated_feedback']} rows is SIMULATED** (demo logs: made "
                  "from the judge score plus noise), not given by real users.", ""]
    lines += [
             "| reason | rows |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in summary["reasons"].items()]
    lines += ["", "| cluster | size | terms |", "|---:|---:|---|"] + [
        f"| {c} | {v['size']} | {', '.join(v['terms'])} |" for c, v in summary["clusters"].items()]
    lines += ["", "```json", json.dumps(drift, indent=2, default=str), "```", ""]
    (out / "report.md").write_text("\n".join(lines))
    charts = ""
    if summary["reasons"]:
        charts += f"<img alt='reasons' src='{_chart(summary['reasons'], 'flagged rows by reason')}'>"
    if summary["clusters"]:
        sizes = {f"{c}: {' '.join(v['terms'][:3])}": v["size"] for c, v in summary["clusters"].items()}
        charts += f"<img alt='clusters' src='{_chart(sizes, 'clusters of flagged prompts')}'>"
    trend = drift.get("judge_trend", {})
    if trend.get("weekly"):
        title = "weekly mean automated/judge score" + (" (ALERT: drop > 5%)" if trend.get("alert") else "")
        charts += f"<img alt='judge trend' src='{_line_chart(trend['weekly'], title, summary['week'])}'>"
    hist = drift.get("prompts_vs_training", {}).get("nn_cos_histogram")
    if hist:
        charts += f"<img alt='drift' src='{_chart(hist, 'prompts by cosine to nearest training prompt')}'>"
    cats = {k: round(v["failure_rate"], 3) for k, v in drift.get("per_category", {}).items()}
    if cats:
        charts += f"<img alt='categories' src='{_chart(cats, 'failure rate by category')}'>"
    (out / "report.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>Mining {html.escape(summary['week'])}</title></head>"
        f"<body style='font-family:sans-serif'><h1>Failure mining {html.escape(summary['week'])}</h1>"
        + (f"<p><strong>Note: the user feedback of {summary['simulated_feedback']} rows is SIMULATED</strong> "
           "(demo logs: judge score plus noise).</p>" if summary["simulated_feedback"] else "")
        + f"<p>{summary['flagged']} of {summary['rows_this_week']} requests flagged. PII redactions: "
        f"{html.escape(json.dumps(summary['pii_redactions']))}</p><p>{html.escape(_executor_line(summary))}</p>{charts}"
        f"<pre>{html.escape(json.dumps(drift, indent=2, default=str))}</pre></body></html>")
