"""Push review queues to Argilla: sample QA, borderline near-duplicate pairs, mined failures."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from sftloop.curate.review import queues as Q
from sftloop.curate.review.client import Endpoint, ReviewError, connect, workspace
from sftloop.curate.review.sample import stratified_sample


def dataset_for(client, ep: Endpoint, queue: str, create: bool = True):
    """The queue's Argilla dataset in our workspace, created with its settings when missing."""
    import argilla as rg

    ws = workspace(client, ep)
    ds = client.datasets(name=queue, workspace=ws)
    if ds is None:
        if not create:
            raise ReviewError(f"review: queue {queue!r} does not exist in workspace {ep.workspace!r} at {ep.url}; push it first")
        ds = rg.Dataset(name=queue, workspace=ws, settings=Q.settings_for(queue), client=client).create()
    return ds


def existing_ids(ds) -> set[str]:
    return {str(r.id) for r in ds.records(with_responses=False, with_suggestions=False)}


def queued_prompts(ep: Endpoint) -> list[str]:
    """The last user turn of every record in the failures queue (for near-dup checks before a push)."""
    try:
        ds = dataset_for(connect(ep), ep, Q.FAILURES, create=False)
    except ReviewError:  # no failures queue yet
        return []
    out = []
    for r in ds.records(with_responses=False, with_suggestions=False):
        msgs = r.fields.get("prompt") or []
        last = msgs[-1] if msgs else None
        out.append(last.get("content", "") if isinstance(last, dict) else getattr(last, "content", ""))
    return out


def _log(ds, records: list) -> int:
    if records:
        ds.records.log(records, batch_size=256)
    return len(records)


def _version_parts(version_dir: Path) -> tuple[dict, pl.DataFrame]:
    manifest = json.loads((version_dir / "manifest.json").read_text())
    parts = [pl.read_parquet(version_dir / f"{n}.parquet") for n in ("train", "val", "test")
             if (version_dir / f"{n}.parquet").exists()]
    return manifest, pl.concat(parts)


def _up_to_last_answer(messages: list[dict]) -> list[dict]:
    k = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return [{"role": m["role"], "content": m["content"]} for m in messages[: k + 1]]


def push_sample_qa(ep: Endpoint, version_dir: Path, size: int = 100, seed: int = 0,
                   judge_scores: Path | None = None, judge: str | None = None, root: Path | None = None) -> dict:
    """Stratified sample of a version's kept rows → the sample-QA queue (upsert by record id).

    `judge` (a registry entry) grades the sample through `python -m sftloop.evaluate grade`; `judge_scores`
    reads grades made earlier (Parquet: id, score). Either becomes the suggestion on *quality*."""
    manifest, kept = _version_parts(version_dir)
    sample = stratified_sample(kept, size, seed)
    scores = None
    if judge_scores is not None:
        js = pl.read_parquet(judge_scores)
        scores = dict(zip(js["id"].to_list(), js["score"].to_list()))
    client = connect(ep)  # fail before spending minutes on grading
    if judge is not None:
        from sftloop.curate.model_calls import judge_scores as grade

        rows = pl.DataFrame({"id": sample["id"], "messages": [_up_to_last_answer(m) for m in sample["messages"].to_list()]})
        js = grade(rows, judge, root or Path.cwd())
        scores = {r["id"]: r["score"] for r in js.iter_rows(named=True) if r["graded"]}
    ds = dataset_for(client, ep, Q.SAMPLE_QA)
    recs = [Q.sample_qa_record(r, manifest["name"], manifest["version"], scores) for r in sample.iter_rows(named=True)]
    n = _log(ds, recs)
    strata = sample.group_by("source", "length_bucket").len().sort("source", "length_bucket").iter_rows()
    return {"queue": Q.SAMPLE_QA, "pushed": n, "strata": {f"{s}/{b}": c for s, b, c in strata},
            "dataset": manifest["name"], "version": manifest["version"], "judge_suggestions": len(scores or {})}


def push_near_dups(ep: Endpoint, version_dir: Path, limit: int | None = None) -> dict:
    """Borderline near-duplicate pairs that curate recorded (borderline_pairs.parquet) → the near-dups queue."""
    manifest = json.loads((version_dir / "manifest.json").read_text())
    path = version_dir / "borderline_pairs.parquet"
    if not path.exists():
        raise ReviewError(f"review: {path} missing: curate this dataset with a near-dup stage whose borderline_margin > 0")
    pairs = pl.read_parquet(path)
    if limit is not None:  # closest to the threshold first: those are the informative labels
        pairs = pairs.with_columns(_d=(pl.col("similarity") - pl.col("threshold")).abs()).sort("_d", "id_a", "id_b").head(limit)
    rows = pl.concat([pl.read_parquet(p).select("id", "messages") for p in sorted(version_dir.glob("*.parquet"))
                      if p.stem in ("train", "val", "test", "excluded")])
    by_id = {r["id"]: r for r in rows.unique("id", keep="first").iter_rows(named=True)}
    client = connect(ep)
    ds = dataset_for(client, ep, Q.NEAR_DUPS)
    recs = [Q.near_dup_record(p, by_id[p["id_a"]], by_id[p["id_b"]], manifest["name"], manifest["version"])
            for p in pairs.iter_rows(named=True) if p["id_a"] in by_id and p["id_b"] in by_id]
    return {"queue": Q.NEAR_DUPS, "pushed": _log(ds, recs), "dataset": manifest["name"], "version": manifest["version"]}


def push_failures(ep: Endpoint, failures: pl.DataFrame) -> dict:
    """Mined failures (rows with id, messages, response, reasons, week, cluster, priority) → the failures
    queue; ids the queue already holds, and rows marked `already_queued` (a near-duplicate prompt is
    queued), are skipped, so a rerun of a week adds nothing twice."""
    client = connect(ep)
    ds = dataset_for(client, ep, Q.FAILURES)
    have = existing_ids(ds)
    new = [r for r in failures.iter_rows(named=True) if r["id"] not in have and not r.get("already_queued")]
    return {"queue": Q.FAILURES, "pushed": _log(ds, [Q.failure_record(r) for r in new]),
            "already_queued": failures.height - len(new)}
