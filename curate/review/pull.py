"""Pull submitted review responses from Argilla and apply them.

- sample-qa → a new version of the reviewed dataset (parent = the reviewed version): rejected rows
  move to `excluded` (`review:rejected`), corrected last replies replace the originals (kept in
  `meta.review.original_reply`; the record keeps its id so decisions stay attached), accepted rows
  are marked reviewed. Majority of submitted verdicts decides; a tie rejects (training data errs
  on the side of leaving out).
- near-dups → labelled pairs (`data/review/near-dups-labels.parquet`), the curate benchmark's
  ground truth, and the threshold that best separates the labels per method.
- failures → chat records `mined:<week>` with weight 3 (configurable) in dataset `mined`, which a
  curate config mixes in (see docs/review.md, docs/mine.md).

Only `submitted` responses count: drafts and discarded ones are not applied. Decisions are sorted
by record id, so pulling twice gives the same version.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import polars as pl

from sftloop.curate.checklist import for_derived
from sftloop.curate.review import queues as Q
from sftloop.curate.review.client import Endpoint, ReviewError, connect, dataset_for
from sftloop.curate.review.queues import QUEUES, Decision
from sftloop.dataset_version import SPLITS, DatasetNotFound, DatasetVersion, write_derived
from sftloop.schema import PARQUET_SCHEMA, content_id


def pull(queue: str, ep: Endpoint, root: Path, **kw) -> tuple[Path | None, dict]:
    """Apply a queue's submitted responses (`QUEUES[queue].apply`); the path written, and a summary."""
    if queue not in QUEUES:
        raise ReviewError(f"review: unknown queue {queue!r} (known: {', '.join(QUEUES)})")
    decisions, skipped = collect(ep, queue)
    return QUEUES[queue].apply(decisions, skipped, root, **kw)


def collect(ep: Endpoint, queue: str) -> tuple[list[Decision], dict]:
    """Submitted answers per record (sorted by record id) and counts of what was skipped."""
    client = connect(ep)
    ds = dataset_for(client, ep, QUEUES[queue], create=False)
    names = {str(u.id): u.username for u in client.users}
    out, skipped = [], Counter()
    for rec in ds.records(with_responses=True, with_suggestions=False):
        by_user: dict[str, dict] = defaultdict(dict)
        status: dict[str, str] = {}
        for resp in rec.responses:
            user = names.get(str(resp.user_id), str(resp.user_id))
            st = str(getattr(resp.status, "value", resp.status))
            status[user] = st
            if st == "submitted":
                by_user[user][resp.question_name] = resp.value
        for st in status.values():
            if st != "submitted":
                skipped[st] += 1
        if by_user:
            out.append(Decision(str(rec.id), dict(rec.metadata or {}), dict(rec.fields or {}), dict(sorted(by_user.items()))))
    out.sort(key=lambda d: d.record_id)
    return out, dict(skipped)


def cohen_kappa(decisions: list[Decision], question: str) -> dict:
    """Agreement of the two reviewers who answered most records in common (Cohen's kappa)."""
    pairs = Counter()
    for d in decisions:
        users = [u for u, a in d.answers.items() if question in a]
        for i in range(len(users)):
            for j in range(i + 1, len(users)):
                pairs[(users[i], users[j])] += 1
    if not pairs:
        return {"records_with_two_reviewers": 0, "note": "no record was answered by two reviewers"}
    (u1, u2), _ = max(pairs.items(), key=lambda t: (t[1], t[0]))
    a = [str(d.answers[u1][question]) for d in decisions if question in d.answers.get(u1, {}) and question in d.answers.get(u2, {})]
    b = [str(d.answers[u2][question]) for d in decisions if question in d.answers.get(u1, {}) and question in d.answers.get(u2, {})]
    from sklearn.metrics import cohen_kappa_score

    observed = sum(x == y for x, y in zip(a, b)) / len(a)
    kappa = float(cohen_kappa_score(a, b)) if len(set(a) | set(b)) > 1 else (1.0 if observed == 1 else 0.0)
    return {"records_with_two_reviewers": len(a), "raters": [u1, u2], "observed_agreement": round(observed, 4),
            "cohen_kappa": round(kappa, 4)}


def _digest(decisions: list[Decision]) -> str:
    blob = json.dumps([[d.record_id, d.answers] for d in decisions], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _reviewed_version(decisions: list[Decision], root: Path, version: str | None) -> DatasetVersion:
    seen = Counter((d.metadata.get("dataset"), d.metadata.get("version")) for d in decisions)
    (name, ver), _ = max(seen.items(), key=lambda t: (t[1], str(t[0])))
    try:
        return DatasetVersion.resolve(version or Path("data/datasets") / str(name) / str(ver), root)
    except DatasetNotFound as e:
        raise ReviewError(f"review: {e}") from None


def apply_sample_qa(decisions: list[Decision], skipped: dict, root: Path, version: str | None = None
                    ) -> tuple[Path | None, dict]:
    """Decisions → a new version of the reviewed dataset (parent = the reviewed version)."""
    if not decisions:
        return None, {"queue": Q.SAMPLE_QA, "submitted_records": 0, "skipped_responses": skipped}
    parent = _reviewed_version(decisions, root, version)
    parts = {n: parent.read(n) for n in (*SPLITS, "excluded") if parent.has(n)}
    verdicts: dict[str, dict] = {}
    for d in decisions:
        votes = [a.get("verdict") for a in d.answers.values() if a.get("verdict")]
        if not votes:
            continue
        reject = votes.count("reject") >= votes.count("keep")
        fixes = [(u, a["corrected_reply"]) for u, a in d.answers.items()
                 if a.get("corrected_reply") and a.get("verdict") == "keep" and a["corrected_reply"].strip()]
        quality = [a["quality"] for a in d.answers.values() if isinstance(a.get("quality"), (int, float))]
        verdicts[d.record_id] = {
            "reject": reject, "fix": fixes[0] if fixes else None, "reviewers": sorted(d.answers),
            "quality": round(sum(quality) / len(quality), 3) if quality else None,
            "reasons": sorted({a["reason"] for a in d.answers.values() if a.get("reason")}),
        }
    applied = Counter()
    moved = []
    for split in [s for s in SPLITS if s in parts]:
        df = parts[split]
        rows = []
        for r in df.iter_rows(named=True):
            v = verdicts.get(r["id"])
            if v is None:
                rows.append(r)
                continue
            meta = json.loads(r["meta"]) if r["meta"] else {}
            review = {"reviewed": True, "queue": Q.SAMPLE_QA, "reviewers": v["reviewers"], "quality": v["quality"]}
            if v["reasons"]:
                review["reasons"] = v["reasons"]
            if v["reject"]:
                review["verdict"] = "reject"
                meta["review"] = review
                moved.append({**r, "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True), "stage": "review",
                              "reason": "review:rejected", "rep_id": None})
                applied["rejected"] += 1
                continue
            review["verdict"] = "keep"
            if v["fix"] is not None:
                user, text = v["fix"]
                msgs = [dict(m) for m in r["messages"]]
                k = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
                if msgs[k]["content"] != text:
                    review["original_reply"] = msgs[k]["content"]
                    review["corrected_by"] = user
                    msgs[k]["content"] = text
                    r = {**r, "messages": msgs}
                    applied["corrected"] += 1
            applied["accepted"] += 1
            meta["review"] = review
            rows.append({**r, "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True)})
        parts[split] = pl.DataFrame(rows, schema=PARQUET_SCHEMA) if rows else df.head(0)
    if moved:
        ex = parts["excluded"]
        parts["excluded"] = pl.concat([ex, pl.DataFrame(moved, schema=ex.schema)])
    reviewers = Counter(u for d in decisions for u in d.answers)
    change = {
        "step": "review-pull", "queue": Q.SAMPLE_QA, "decisions_sha256": _digest(decisions),
        "submitted_records": len(decisions), "applied": dict(sorted(applied.items())),
        "not_in_version": sum(1 for rid in verdicts if not any(rid in set(parts[s]["id"].to_list()) for s in parts)),
        "reviewers": dict(sorted(reviewers.items())), "agreement": {"verdict": cohen_kappa(decisions, "verdict"),
                                                                     "quality": cohen_kappa(decisions, "quality")},
        "skipped_responses": dict(sorted(skipped.items())),
    }
    return write_derived(parent.base, parts, change, parent=parent, checklist=for_derived).path, change


def best_threshold(sims: list[float], labels: list[bool]) -> dict:
    """The cut (similarity >= t means duplicate) with the highest accuracy on the labelled pairs."""
    if not sims:
        return {}
    cands = sorted(set(sims)) + [max(sims) + 1e-9]
    best = max(cands, key=lambda t: (sum((s >= t) == y for s, y in zip(sims, labels)), -abs(t - 0.8)))
    acc = sum((s >= best) == y for s, y in zip(sims, labels)) / len(sims)
    return {"threshold": round(float(best), 4), "accuracy": round(acc, 4), "pairs": len(sims),
            "duplicates": int(sum(labels))}


def apply_near_dups(decisions: list[Decision], skipped: dict, root: Path) -> tuple[Path, dict]:
    """Labelled pairs (the curate benchmark's ground truth) and the best threshold per method."""
    rows = []
    for d in decisions:
        votes = [a.get("duplicate") for a in d.answers.values() if a.get("duplicate")]
        if not votes:
            continue
        id_a, _, id_b = d.record_id.partition("-")
        rows.append({"id_a": id_a, "id_b": id_b, "method": d.metadata.get("method"),
                     "similarity": float(d.metadata.get("similarity", 0.0)), "threshold": float(d.metadata.get("threshold", 0.0)),
                     "duplicate": votes.count("yes") > votes.count("no"), "votes": len(votes)})
    out = root / "data" / "review"
    out.mkdir(parents=True, exist_ok=True)
    labels = pl.DataFrame(rows, schema={"id_a": pl.String, "id_b": pl.String, "method": pl.String, "similarity": pl.Float64,
                                        "threshold": pl.Float64, "duplicate": pl.Boolean, "votes": pl.Int64})
    path = out / "near-dups-labels.parquet"
    labels.write_parquet(path, statistics=False)
    tuned = {m: best_threshold(g["similarity"].to_list(), g["duplicate"].to_list())
             for (m,), g in labels.group_by("method") if m}
    summary = {"queue": Q.NEAR_DUPS, "labelled_pairs": labels.height, "by_method": dict(sorted(tuned.items())),
               "agreement": cohen_kappa(decisions, "duplicate"), "skipped_responses": skipped}
    (out / "near-dups-summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return path, summary


def apply_failures(decisions: list[Decision], skipped: dict, root: Path, weight: float = 3.0, dataset: str = "mined"
                   ) -> tuple[Path | None, dict]:
    """Corrected answers → chat records `mined:<week>` with `weight`, a new version of dataset `mined`."""
    rows = []
    for d in decisions:
        fixes = sorted((u, a["corrected_answer"]) for u, a in d.answers.items() if (a.get("corrected_answer") or "").strip())
        if not fixes:
            continue
        user, text = fixes[0]
        week = d.metadata.get("week", "unknown")
        prompt = [m if isinstance(m, dict) else {"role": m.role, "content": m.content} for m in d.fields["prompt"]]
        msgs = [{"role": m["role"], "content": m["content"]} for m in prompt] + [{"role": "assistant", "content": text}]
        meta = {"review": {"queue": Q.FAILURES, "corrected_by": user, "original_answer": d.fields.get("bad_answer"),
                           "reasons": d.metadata.get("reasons"), "log_record_id": d.record_id}}
        rows.append({"id": content_id(msgs), "messages": msgs, "source": f"mined:{week}",
                     "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True), "weight": float(weight)})
    if not rows:
        return None, {"queue": Q.FAILURES, "corrections": 0, "skipped_responses": skipped}
    train = pl.DataFrame(rows, schema=PARQUET_SCHEMA).unique("id", keep="first").sort("id")
    change = {"step": "review-pull", "queue": Q.FAILURES, "decisions_sha256": _digest(decisions), "weight": weight,
              "corrections": train.height, "weeks": dict(sorted(Counter(train["source"].to_list()).items())),
              "reviewers": dict(sorted(Counter(u for d in decisions for u in d.answers).items())),
              "skipped_responses": dict(sorted(skipped.items()))}
    written = write_derived(root / "data" / "datasets" / dataset, {"train": train, "val": train.head(0)},
                            change, parent=None, name=dataset, checklist=for_derived)
    return written.path, change

