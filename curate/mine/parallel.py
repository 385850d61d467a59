"""Mining's embedding and judge grading as executor tasks (`sftloop.curate.executors`).

With `local` (the default) nothing here is used: the run calls `Embedder.encode` and
`model_calls.judge_scores` in-process, as before (no copies, no pickling). With `processes` or `ray`:

- embedding: `encode` asks the embedder's cache first (on the driver, as `Embedder.encode` does); the
  texts it cannot answer are cut into the very batches the in-process call would make
  (sentence-transformers' order: longest first, `batch_size` a batch; for the ONNX backends
  `embed.padded_batches`' order), whole batches go to a task, a task runs the encoder (loaded once per
  worker) one batch at a time, and the driver puts the vectors back in row order and stores them in the
  cache. Same batches, same padding: the vectors are the in-process ones, bit for bit
  (tests/curate/mine/test_mine_executors.py compares the caches two runs wrote).
- judge grading: the chosen rows in one chunk per worker, each a multiple of the hf backend's batch
  size, so every batch of judge prompts is one the in-process call would make; a task calls
  `model_calls.judge_scores` on its chunk (the call cache makes a rerun free; the hf judge is loaded
  once per chunk, i.e. once per worker); the scores are concatenated in row order.
- clustering and drift stay on the driver: they need every vector and take milliseconds (the report's
  executor line gives their time).
"""

from __future__ import annotations

import inspect
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sftloop.curate.embed import DIM, Embedder, OnnxEncoder, TorchEncoder, text_key, token_ids
from sftloop.curate.executors import Executor

TASKS_PER_WORKER = 4  # embedding: a few tasks per worker, so a slow one does not hold the rest back


def parallelism(ex: Executor) -> int:
    """How many tasks the executor runs at once: its processes, or the Ray cluster's CPUs."""
    if ex.kind == "processes":
        return int(getattr(ex, "workers", 1))
    if ex.kind == "ray":
        return max(1, int(ex.ray.cluster_resources().get("CPU", 1)))  # type: ignore[attr-defined]
    return 1


def describe(ex: Executor | None) -> str:
    if ex is None or ex.kind == "local":
        return "local (in-process)"
    if ex.kind == "processes":
        return f"processes ({parallelism(ex)} workers)"
    return f"ray ({parallelism(ex)} CPUs)"


@dataclass(frozen=True)
class EncoderSpec:
    """What a worker needs to build the driver's encoder (the `Embedder`'s settings)."""

    model: str
    backend: str
    max_seq_length: int
    batch_size: int

    @classmethod
    def of(cls, e: Embedder) -> EncoderSpec:
        return cls(e.model_name, e.backend, e.max_seq_length, e.batch_size)


@dataclass
class EmbedTask:
    spec: EncoderSpec
    batches: list[list[Any]]  # texts (torch) or token ids (onnx), one list per in-process batch


@dataclass
class EmbedOut:
    vectors: list[np.ndarray]  # one (len(batch), DIM) array per batch
    pid: int
    seconds: float


def _encoder(spec: EncoderSpec):
    """The worker's encoder, loaded once per process (kept in the shard tasks' per-process cache)."""
    from sftloop.curate.shard_tasks import shared_cache

    cache = shared_cache({"mine_encoder": spec.model, "backend": spec.backend, "max_seq_length": spec.max_seq_length})
    if "enc" not in cache:
        cache["enc"] = (TorchEncoder(spec.model, spec.max_seq_length) if spec.backend == "torch"
                        else OnnxEncoder(spec.model, spec.backend == "onnx-int8"))
    return cache["enc"]


def embed_task(task: EmbedTask) -> EmbedOut:
    """Top-level (any executor can run it): each batch exactly as `Embedder._embed` runs it in-process."""
    t0 = time.perf_counter()
    enc = _encoder(task.spec)
    bs = task.spec.batch_size
    if task.spec.backend == "torch":
        vecs = [enc.encode(b, bs, False) for b in task.batches]
    else:
        vecs = [enc.encode_ids(b, bs) for b in task.batches]
    return EmbedOut(vecs, os.getpid(), time.perf_counter() - t0)


def _batches(embedder: Embedder, texts: list[str]) -> tuple[list[Any], list[np.ndarray]]:
    """(inputs, row indices of each batch) in the order the in-process `Embedder._embed(texts)` batches them."""
    if embedder.backend == "torch":
        # sentence-transformers' encode: np.argsort of minus the character length (its `_input_length` of a str)
        inputs: list[Any] = texts
        order = np.argsort([-len(t) for t in texts])
    else:
        inputs = token_ids(embedder.model_name, texts, embedder.max_seq_length)
        order = np.argsort([-len(x) for x in inputs], kind="stable")  # embed.padded_batches
    bs = embedder.batch_size
    return inputs, [order[i:i + bs] for i in range(0, len(order), bs)]


def encode(embedder: Embedder, texts: list[str], ex: Executor | None, stats: dict | None = None) -> np.ndarray:
    """`embedder.encode(texts)`, its cache misses computed on the executor (in-process when `ex` is None)."""
    if ex is None or ex.kind == "local" or not texts:
        return embedder.encode(texts)
    keys = [text_key(embedder.model_name, t, embedder.max_seq_length, embedder.backend) for t in texts]

    def compute(idx: list[int]) -> np.ndarray:  # the misses, in the order Embedder.encode computes them
        sub = [texts[i] for i in idx]
        inputs, batches = _batches(embedder, sub)
        per = max(1, math.ceil(len(batches) / (TASKS_PER_WORKER * parallelism(ex))))
        groups = [batches[i:i + per] for i in range(0, len(batches), per)]
        spec = EncoderSpec.of(embedder)
        tasks = [EmbedTask(spec, [[inputs[j] for j in b] for b in g]) for g in groups]
        out = np.zeros((len(sub), DIM), dtype=np.float32)
        results = ex.map(embed_task, tasks, desc=f"embed {len(sub)} texts")
        for g, res in zip(groups, results):
            for b, v in zip(g, res.vectors):
                out[b] = v
        if stats is not None:
            stats["embed"] = stats.get("embed", 0) + len(tasks)
            stats.setdefault("embed_workers", set()).update(r.pid for r in results)
        return out

    return embedder._cached(keys, compute)  # the embedder's own cache lookup and store


def judge_batch() -> int:
    """The hf backend's batch size (its declared default): judge chunks are whole batches of it."""
    from sftloop.backends import HFBackend

    return int(inspect.signature(HFBackend.__init__).parameters["batch_size"].default)


@dataclass
class JudgeTask:
    rows: pl.DataFrame  # id + messages
    judge: str
    root: str


def judge_task(task: JudgeTask) -> pl.DataFrame:
    """Top-level: `model_calls.judge_scores` on one chunk of rows."""
    from sftloop.curate.model_calls import judge_scores as scores

    return scores(task.rows, task.judge, Path(task.root))


def judge_chunks(n: int, workers: int, step: int) -> list[tuple[int, int]]:
    """(offset, length) of one chunk per worker, each a multiple of `step` rows (the last one the rest)."""
    size = max(step, math.ceil(n / max(workers, 1) / step) * step)
    return [(i, min(size, n - i)) for i in range(0, n, size)]


def judge_scores(rows: pl.DataFrame, judge: str, root: Path, ex: Executor | None,
                 stats: dict | None = None) -> pl.DataFrame:
    """`model_calls.judge_scores(rows, judge, root)`, graded in chunks on the executor; rows in order."""
    from sftloop.curate.model_calls import judge_scores as scores

    if ex is None or ex.kind == "local" or rows.height == 0:
        return scores(rows, judge, root)
    chunks = judge_chunks(rows.height, parallelism(ex), judge_batch())
    tasks = [JudgeTask(rows.slice(o, n), judge, str(root)) for o, n in chunks]
    if stats is not None:
        stats["judge"] = stats.get("judge", 0) + len(tasks)
    return pl.concat(ex.map(judge_task, tasks, desc=f"judge {rows.height} rows"), how="vertical")
