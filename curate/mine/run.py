"""One weekly mining run: logs -> week -> redact -> detect -> cluster -> drift -> reports.

Writes `reports/mine-<week>/` (overwritten when the week is rerun): failures.parquet (redacted,
every reason per row, cluster and its terms), drift.json, report.md and report.html (charts inline).
Nothing leaves the process unredacted: prompts and responses are redacted before embedding,
clustering or writing.
"""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

from curate.mine import detect as D
from curate.mine import understand as U
from curate.mine.logs import read_logs, select_week
from curate.mine.redact import redact
from sftloop.datasets import resolve_version


def reference_prompts(reference: Path | None) -> list[str]:
    """First user turns of a dataset version's train split (the training distribution of prod)."""
    if reference is None:
        return []
    vdir = reference if (reference / "train.parquet").exists() else resolve_version(reference, Path.cwd())
    df = pl.read_parquet(vdir / "train.parquet")
    return [next((m["content"] for m in msgs if m["role"] == "user"), "") for msgs in df["messages"].to_list()]


def run(logs: str, out_root: Path, week: str | None = None, reference: Path | None = None,
        embedder=None, progress: bool = False) -> Path:
    rows, stats = read_logs(logs, out_root / ".mine-quarantine.jsonl")
    week, sel = select_week(rows, week)
    out = out_root / f"mine-{week}"
    shutil.rmtree(out, ignore_errors=True)  # idempotent per week
    out.mkdir(parents=True)
    pii: Counter = Counter()
    recs = []
    for r in sel:
        prompt = r.conversation()[-1]["content"]
        p_red, c1 = redact(prompt)
        a_red, c2 = redact(r.response)
        pii.update(c1)
        pii.update(c2)
        reasons = D.detect(p_red, a_red, r.user_feedback, r.expects_json)
        recs.append({"request_id": r.request_id, "week": week, "timestamp": r.timestamp.isoformat(), "category": r.category,
                     "prompt": p_red, "response": a_red, "reasons": reasons, "automated_score": r.automated_score,
                     "response_words": len(r.response.split())})
    flagged = [x for x in recs if x["reasons"]]
    if embedder is None:
        from curate.embed import Embedder

        embedder = Embedder(progress=progress)
    emb_all = embedder.encode([x["prompt"] for x in recs]) if recs else np.zeros((0, 384), dtype=np.float32)
    idx = [i for i, x in enumerate(recs) if x["reasons"]]
    labels = U.cluster(emb_all[idx]) if idx else np.zeros(0, dtype=int)
    terms = U.distinctive_terms([recs[i]["prompt"] for i in idx], labels) if idx else {}
    for j, i in enumerate(idx):
        recs[i]["cluster"] = int(labels[j])
        recs[i]["cluster_terms"] = terms.get(int(labels[j]), [])
    ref = reference_prompts(reference)
    ref_emb = embedder.encode(ref) if ref else np.zeros((0, 384), dtype=np.float32)
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
    }
    reasons = Counter(reason for x in flagged for reason in x["reasons"])
    clusters = Counter(x["cluster"] for x in flagged)
    failures = pl.DataFrame([{**x, "reasons": x["reasons"], "cluster": x.get("cluster"), "cluster_terms": x.get("cluster_terms", [])}
                             for x in flagged]) if flagged else pl.DataFrame()
    failures.write_parquet(out / "failures.parquet")
    (out / "drift.json").write_text(json.dumps(drift, indent=2, default=str))
    summary = {"week": week, "rows_in_logs": sum(s.rows_in for s in stats), "quarantined": sum(s.rows_quarantined for s in stats),
               "rows_this_week": len(sel), "flagged": len(flagged), "pii_redactions": dict(pii), "reasons": dict(reasons),
               "clusters": {int(c): {"size": n, "terms": terms.get(c, [])} for c, n in clusters.most_common()}}
    _write_reports(out, summary, drift)
    return out


def _chart(counter: dict, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.35 * max(len(counter), 1) + 1.2))
    keys = list(counter)[::-1]
    ax.barh([str(k) for k in keys], [counter[k] for k in keys], color="#4c78a8")
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _write_reports(out: Path, summary: dict, drift: dict) -> None:
    lines = [f"# Failure mining {summary['week']}", "",
             f"{summary['rows_this_week']} requests this week ({summary['rows_in_logs']} in the logs, "
             f"{summary['quarantined']} quarantined); {summary['flagged']} flagged.", "",
             f"PII redacted before anything left the process: {summary['pii_redactions'] or 'none found'}", "",
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
    (out / "report.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>Mining {html.escape(summary['week'])}</title></head>"
        f"<body style='font-family:sans-serif'><h1>Failure mining {html.escape(summary['week'])}</h1>"
        f"<p>{summary['flagged']} of {summary['rows_this_week']} requests flagged. PII redactions: "
        f"{html.escape(json.dumps(summary['pii_redactions']))}</p>{charts}"
        f"<pre>{html.escape(json.dumps(drift, indent=2, default=str))}</pre></body></html>")
