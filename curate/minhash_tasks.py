"""MinHash LSH by band range and exact-Jaccard verification in chunks, as executor tasks.

The driver writes the signature matrix once (`sig.npy` in a scratch directory under the run's work
dir); each band-range task memory-maps it, buckets its bands, writes its candidate pairs atomically
(temp name, then rename) and returns their count; the driver checks the counts against the files and
takes the union (sorted, unique: the same array as `minhash.lsh_candidates`). Verification tasks get
a contiguous slice of a pairs file (pairs ordered by connected component of the candidate graph, so a
document's shingles are computed in one task, give or take the slice boundaries), read the texts
they need back by `_row` (`texts_of` must be picklable: `shard_tasks.ShardTexts`) and return the
exact Jaccard of every pair in their slice. Tasks get paths and settings, never the executor; the
number of tasks changes nothing in the result.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from sftloop.curate.minhash import band_candidates, band_params, pair_sims, unique_pairs, valid_rows

Mapper = Callable[[Callable[[Any], Any], Sequence[Any], str], list]  # Context.map: fn, items, desc -> results
MAX_PAIRS_PER_TASK = 500_000  # a verification task's shingle sets stay a few hundred MB


def save_npy_atomic(arr: np.ndarray, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr)
    os.replace(tmp, path)


@dataclass
class BandTask:
    """LSH over bands [lo, hi) of the signature file; pairs go to `out`."""

    sig: str  # .npy (n, num_perm) uint64, memory-mapped
    valid: str  # .npy int64: rows that have shingles
    out: str  # .npy (m, 2) int64
    lo: int
    hi: int
    rows: int  # signature rows per band
    max_bucket: int = 64


def run_band_task(t: BandTask) -> int:
    sig = np.load(t.sig, mmap_mode="r")
    pairs = band_candidates(sig, np.load(t.valid), range(t.lo, t.hi), t.rows, t.max_bucket)
    save_npy_atomic(pairs, Path(t.out))
    return len(pairs)


@dataclass
class SimTask:
    """Exact shingle Jaccard of pairs [lo, hi) of a pairs file; texts read back with `texts_of`."""

    pairs: str  # .npy (m, 2) int64, memory-mapped
    lo: int
    hi: int
    texts_of: Callable[[np.ndarray], pl.Series]
    ngram: int


def run_sim_task(t: SimTask) -> np.ndarray:
    pairs = np.array(np.load(t.pairs, mmap_mode="r")[t.lo:t.hi])
    return pair_sims(pairs, t.texts_of, t.ngram)[0]


def band_ranges(bands: int, tasks: int) -> list[tuple[int, int]]:
    """`bands` split into at most `tasks` contiguous ranges of `bands // tasks` (or one more) bands each."""
    return [(int(r[0]), int(r[-1]) + 1) for r in np.array_split(np.arange(bands), max(1, min(tasks, bands)))]


def lsh_candidates_tasks(sig: np.ndarray, threshold: float, scratch: Path, map_fn: Mapper, tasks: int,
                         max_bucket: int = 64) -> np.ndarray:
    """`minhash.lsh_candidates(sig, threshold)`, one task per band range."""
    n, num_perm = sig.shape
    bands, rows = band_params(threshold, num_perm)
    sig_path, valid_path = scratch / "sig.npy", scratch / "valid.npy"
    save_npy_atomic(np.ascontiguousarray(sig, dtype=np.uint64), sig_path)
    save_npy_atomic(valid_rows(sig), valid_path)
    items = [BandTask(str(sig_path), str(valid_path), str(scratch / f"cand-{lo:04d}-{hi:04d}.npy"), lo, hi, rows,
                      max_bucket) for lo, hi in band_ranges(bands, tasks)]
    counts = map_fn(run_band_task, items, "minhash_dedup: LSH band ranges")
    parts = []
    for t, c in zip(items, counts, strict=True):
        p = np.load(t.out)
        if len(p) != c:
            raise AssertionError(f"LSH bands [{t.lo}, {t.hi}): the task returned {c} pairs, {t.out} holds {len(p)}")
        parts.append(p)
    return unique_pairs(parts, n)


def pair_sims_tasks(pairs: np.ndarray, texts_of: Callable[[np.ndarray], pl.Series], ngram: int, scratch: Path,
                    map_fn: Mapper, tasks: int, name: str = "candidates",
                    max_pairs: int = MAX_PAIRS_PER_TASK) -> np.ndarray:
    """`minhash.pair_sims(pairs, texts_of, ngram)[0]` (exact Jaccard per pair, in pair order) in chunks as tasks."""
    m = len(pairs)
    if m == 0:
        return np.zeros(0, dtype=np.float64)
    n = int(pairs.max()) + 1
    g = coo_matrix((np.ones(m, dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    labels = connected_components(g, directed=False)[1]
    order = np.argsort(labels[pairs[:, 0]], kind="stable")  # a component's pairs together: its texts read once
    path = scratch / f"pairs-{name}.npy"
    save_npy_atomic(pairs[order].astype(np.int64), path)
    k = min(m, max(tasks, -(-m // max_pairs)))
    bounds = np.linspace(0, m, k + 1).round().astype(np.int64)
    items = [SimTask(str(path), int(lo), int(hi), texts_of, ngram) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    got = map_fn(run_sim_task, items, f"minhash_dedup: verify {name}")
    for t, s in zip(items, got, strict=True):
        if len(s) != t.hi - t.lo:
            raise AssertionError(f"verify pairs [{t.lo}, {t.hi}): the task returned {len(s)} similarities")
    sims = np.empty(m, dtype=np.float64)
    sims[order] = np.concatenate(got)
    return sims
