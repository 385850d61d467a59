"""Push a review queue to Argilla: the one push that `review push <queue>` and `mine run` both call.

What a queue's records are is declared in `queues.QUEUES`; this module connects (before any slow
work such as grading, so a down server fails fast), gets or creates the queue's dataset, and upserts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from sftloop.curate.review.client import Endpoint, connect, dataset_for, log
from sftloop.curate.review.queues import FAILURES, NEAR_DUPS, QUEUES, SAMPLE_QA
from sftloop.dataset_version import DatasetVersion


def push(queue: str, ep: Endpoint, source: Any, **kw) -> dict:
    """`source`: a `DatasetVersion` (or its path) for sample-qa and near-dups, a mining report's
    failures frame for failures; `kw` as the queue's `records` takes them."""
    q = QUEUES[queue]
    if isinstance(source, (str, Path)):
        source = DatasetVersion.resolve(source)
    client = connect(ep)
    ds = dataset_for(client, ep, q)
    recs, info = q.records(source, ds, **kw)
    return {"queue": q.name, "pushed": log(ds, recs), **info}


def push_sample_qa(ep: Endpoint, version: DatasetVersion | Path, size: int = 100, seed: int = 0,
                   judge_scores: Path | None = None, judge: str | None = None, root: Path | None = None) -> dict:
    return push(SAMPLE_QA, ep, version, size=size, seed=seed, judge_scores=judge_scores, judge=judge, root=root)


def push_near_dups(ep: Endpoint, version: DatasetVersion | Path, limit: int | None = None) -> dict:
    return push(NEAR_DUPS, ep, version, limit=limit)


def push_failures(ep: Endpoint, failures: pl.DataFrame, embedder=None) -> dict:
    return push(FAILURES, ep, failures, embedder=embedder)
