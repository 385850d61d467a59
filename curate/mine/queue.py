"""Mined failures → rows for the review queue: record ids, near-dup collapse, priority order."""

from __future__ import annotations

import numpy as np
import polars as pl

from sftloop.curate.cluster import cluster_by_centers
from sftloop.curate.embed import similar_pairs
from sftloop.schema import content_id

# How much a reason says "this answer is wrong" (hard signals first); priority = cluster size × this.
REASON_WEIGHT = {"hard:thumbs_down": 3.0, "soft:judge_low": 2.0, "format:invalid_json": 2.0, "behaviour:empty": 2.0,
                 "behaviour:refusal": 1.5, "behaviour:repetition": 1.5, "behaviour:truncated": 1.0,
                 "behaviour:language_mismatch": 1.0}


def failures_for_review(failures: pl.DataFrame, embedder=None, threshold: float = 0.95,
                        queued_prompts: list[str] | None = None) -> pl.DataFrame:
    """Add `id` (chat-record id of prompt + bad answer), `messages` and `priority` (rows that carry them keep
    theirs; `prompt` defaults to the last turn of `messages`); collapse near-duplicate
    prompts (MiniLM cosine >= threshold, keep the highest priority of each group, count the rest in
    `duplicates`); mark prompts within the threshold of one the queue already holds (`queued_prompts`)
    with `already_queued` (the push skips them); order by priority, highest first."""
    if failures.height == 0:
        return failures
    sizes = failures.group_by("cluster").len().rename({"len": "_size"})
    df = failures.join(sizes, on="cluster", how="left")
    if "messages" in df.columns:  # the whole (redacted) conversation up to the request
        msgs = [[{"role": m["role"], "content": m["content"]} for m in conv] for conv in df["messages"].to_list()]
    else:
        msgs = [[{"role": "user", "content": p}] for p in df["prompt"].to_list()]
    ids = (df["id"].to_list() if "id" in df.columns else
           [content_id(m + [{"role": "assistant", "content": r or "(empty)"}]) for m, r in zip(msgs, df["response"].to_list())])
    prio = (df["priority"].to_list() if "priority" in df.columns else
            [float(size) * max((REASON_WEIGHT.get(r, 1.0) for r in reasons), default=1.0)
             for size, reasons in zip(df["_size"].to_list(), df["reasons"].to_list())])
    prompts = df["prompt"].to_list() if "prompt" in df.columns else [m[-1]["content"] for m in msgs]
    df = df.with_columns(id=pl.Series(ids), messages=pl.Series(msgs, dtype=pl.List(pl.Struct({"role": pl.String, "content": pl.String}))),
                         priority=pl.Series(prio, dtype=pl.Float64), prompt=pl.Series(prompts, dtype=pl.String)).drop("_size")
    df = df.unique("id", keep="first", maintain_order=True)
    if embedder is None:
        from sftloop.curate.embed import Embedder

        embedder = Embedder(progress=False)
    emb = embedder.encode(df["prompt"].to_list())
    pairs = similar_pairs(emb, None, threshold)
    rank = df["priority"].to_numpy().astype(float)
    rep = cluster_by_centers(df.height, pairs[:, :2].astype(np.int64), rank, lambda i, j: float(emb[i] @ emb[j]) >= threshold)
    keep = rep == np.arange(df.height)
    dups = np.bincount(rep, minlength=df.height) - 1
    if queued_prompts:  # already in the queue (an earlier week, or a rerun): a near-duplicate adds nothing
        near = similar_pairs(emb, embedder.encode(list(queued_prompts)), threshold)
    queued = np.zeros(df.height, dtype=bool)
    if queued_prompts:
        queued[near[:, 0].astype(np.int64)] = True
    df = df.with_columns(duplicates=pl.Series(dups.astype(np.int64)), already_queued=pl.Series(queued))
    return df.filter(pl.Series(keep)).sort(["priority", "id"], descending=[True, False])
