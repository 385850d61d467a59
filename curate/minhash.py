"""Vectorised MinHash + LSH banding with exact-Jaccard verification.

Why our own instead of feeding datasketch row by row: the common recipe (a `MinHash` per row,
`update()` per shingle in Python, then `MinHashLSH.insert/query` per row) is a Python loop per
shingle and per row; bench/curate_bench.py times it in the same run as this code. Here words are
hashed in Polars (Rust), n-gram hashes are combined with numpy, signatures use one-permutation
hashing with densification (one pass over the shingles, not 128), and LSH bands are grouped by
Polars. Band/row counts come from datasketch's own optimiser (`_optimal_param`). Every LSH
candidate is verified against the real shingle Jaccard before it becomes an edge, which is
what keeps precision high, and clustering (curate.cluster) never chains dissimilar rows.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl
from datasketch.lsh import _optimal_param

from sftloop.curate.text import jaccard_sorted, shingle_frame

EMPTY = np.uint64(1 << 63)


def signatures(sh: pl.DataFrame, n_docs: int, num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """One-permutation MinHash signatures (n_docs, num_perm) from a (doc, h) shingle frame.

    Each shingle hash is re-mixed with `seed`, its high bits pick one of `num_perm` bins and its
    low 32 bits are the value; a bin's signature is the minimum value that fell into it. Empty
    bins are filled by rotation densification (Shrivastava & Li, ICML 2014): the next non-empty
    bin to the right, offset by its distance, so Pr[sig_a[k] == sig_b[k]] stays ~ Jaccard(a, b).
    O(shingles) instead of O(shingles x num_perm). Documents without shingles stay EMPTY.
    """
    from sftloop.curate.text import _mix

    sig = np.full((n_docs, num_perm), EMPTY, dtype=np.uint64)
    if sh.height == 0:
        return sig
    h = _mix(sh["h"].to_numpy() ^ np.uint64(seed * 0x9E3779B97F4A7C15 % (1 << 64)))
    frame = pl.DataFrame({"doc": sh["doc"].to_numpy(), "bin": ((h >> np.uint64(32)) % np.uint64(num_perm)).astype(np.int64),
                          "v": h & np.uint64(0xFFFFFFFF)})
    mins = frame.group_by("doc", "bin").agg(pl.col("v").min())
    sig[mins["doc"].to_numpy(), mins["bin"].to_numpy()] = mins["v"].to_numpy()
    empty = sig == EMPTY
    if empty.any():
        P = num_perm
        cols = np.arange(P)
        own = np.where(empty, 4 * P, cols[None, :])
        doubled = np.concatenate([own, np.where(empty, 4 * P, cols[None, :] + P)], axis=1)
        nxt = np.minimum.accumulate(doubled[:, ::-1], axis=1)[:, ::-1][:, :P]
        has_any = ~empty.all(axis=1)
        rows = np.nonzero(empty & has_any[:, None])
        src = nxt[rows] % P
        dist = (nxt[rows] - rows[1]).astype(np.uint64)
        sig[rows] = sig[rows[0], src] + dist * np.uint64(1 << 32)
    return sig


def band_params(threshold: float, num_perm: int, min_recall: float = 0.985) -> tuple[int, int]:
    """The most rows per band (fewest spurious candidates) whose probability of making a pair at
    exactly `threshold` a candidate, 1 - (1 - t^r)^b with b = num_perm // r, is >= min_recall.

    datasketch's `_optimal_param` balances false positives and negatives equally; at t=0.8 and
    128 permutations it picks 9 bands x 13 rows, which finds a pair at J=0.8 only 40% of the time
    (measured recall 0.90 in bench/curate_bench.py). Falls back to datasketch's choice if none fits.
    """
    for r in range(num_perm, 0, -1):
        b = num_perm // r
        if 1 - (1 - threshold ** r) ** b >= min_recall:
            return b, r
    return _optimal_param(threshold, num_perm, 0.5, 0.5)


def valid_rows(sig: np.ndarray) -> np.ndarray:
    """Indices of the documents that have shingles (a document without any stays all EMPTY)."""
    return np.flatnonzero(~(np.asarray(sig) == EMPTY).all(axis=1)).astype(np.int64)


def unique_pairs(parts: list[np.ndarray], n: int) -> np.ndarray:
    """The union of pair arrays (i < j < n), sorted by (i, j): what `np.unique(..., axis=0)` gives, faster."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return np.zeros((0, 2), dtype=np.int64)
    p = np.concatenate(parts).astype(np.int64, copy=False)
    code = np.unique(p[:, 0] * np.int64(n) + p[:, 1])
    return np.stack([code // n, code % n], axis=1)


def band_candidates(sig: np.ndarray, idx: np.ndarray, bands: range, rows: int, max_bucket: int = 64) -> np.ndarray:
    """Candidate pairs (i < j) of the documents `idx` that share a bucket in one of `bands`; buckets of
    more than `max_bucket` documents are linked as stars (from their smallest index). Vectorised: a
    Polars self-join on the bucket key per band, no Python loop over buckets."""
    if not len(bands):
        return np.zeros((0, 2), dtype=np.int64)
    cols = np.asarray(sig[:, bands.start * rows:bands.stop * rows])[idx]  # one read of this range's columns
    parts = []
    for bi in bands:
        block = cols[:, (bi - bands.start) * rows:(bi - bands.start + 1) * rows]
        mult = np.random.RandomState(1000 + bi).randint(1, 1 << 62, size=rows, dtype=np.uint64) | np.uint64(1)
        with np.errstate(over="ignore"):
            key = (block * mult[None, :]).sum(axis=1, dtype=np.uint64)  # a 64-bit mix of the band; collisions are verified away
        f = pl.DataFrame({"k": key, "i": idx}).with_columns(n=pl.len().over("k")).filter(pl.col("n") > 1)
        small = f.filter(pl.col("n") <= max_bucket).select("k", "i")
        pairs = small.join(small, on="k", suffix="_j").filter(pl.col("i") < pl.col("i_j"))
        star = (f.filter(pl.col("n") > max_bucket).with_columns(m=pl.col("i").min().over("k"))
                .filter(pl.col("i") != pl.col("m")))
        parts.append(np.stack([pairs["i"].to_numpy(), pairs["i_j"].to_numpy()], axis=1))
        parts.append(np.stack([star["m"].to_numpy(), star["i"].to_numpy()], axis=1))
    return unique_pairs(parts, sig.shape[0])


def lsh_candidates(sig: np.ndarray, threshold: float, max_bucket: int = 64) -> np.ndarray:
    """Candidate pairs (i < j) sharing at least one band, sorted. Large buckets are linked as stars.

    Bands/rows are chosen recall-first (`band_params`): every candidate is verified by exact
    Jaccard, so a false positive costs only time while a false negative is a duplicate that stays.
    """
    bands, rows = band_params(threshold, sig.shape[1])
    return band_candidates(sig, valid_rows(sig), range(bands), rows, max_bucket)


class ShingleSets:
    """Sorted distinct shingle hashes per document, computed on first use for the documents that
    LSH made candidates (so memory stays bounded: the full shingle table is never kept).

    `texts` is the corpus as a Series, or a function giving the texts of given document indices
    (the sharded pipeline reads only the candidates' texts back from disk, `read_chunk` documents
    per read: each read of the shards is a scan, so reads are few and shingling chunks small)."""

    def __init__(self, texts: pl.Series | Callable[[np.ndarray], pl.Series], ngram: int, docs: np.ndarray,
                 read_chunk: int = 20_000):
        self._memo: dict[int, np.ndarray] = {}
        texts_of = (lambda idx: texts.gather(idx)) if isinstance(texts, pl.Series) else texts
        docs = np.unique(docs)
        for lo in range(0, len(docs), read_chunk):
            want = docs[lo:lo + read_chunk]
            got = texts_of(want)
            if len(got) != len(want):
                raise ValueError(f"texts_of gave {len(got)} texts for {len(want)} documents (first asked: {want[:5].tolist()})")
            for so in range(0, len(want), 5_000):  # small chunks: the transient word table stays small
                part = docs[lo + so:lo + so + 5_000]
                sh = shingle_frame(got.slice(so, 5_000), ngram)
                d = sh["doc"].to_numpy()
                h = sh["h"].to_numpy()
                order = np.lexsort((h, d))
                d, h = d[order], h[order]
                first = np.r_[True, (d[1:] != d[:-1]) | (h[1:] != h[:-1])] if len(d) else np.zeros(0, dtype=bool)
                d, h = d[first], h[first]  # distinct per document, still sorted
                cuts = np.searchsorted(d, np.arange(len(part) + 1))
                for k, doc in enumerate(part.tolist()):
                    self._memo[doc] = h[cuts[k]:cuts[k + 1]]

    def __getitem__(self, i: int) -> np.ndarray:
        return self._memo[i]


def signature_matrix(texts: pl.Series, num_perm: int = 128, ngram: int = 5, seed: int = 1, progress: bool = False,
                     chunk: int = 20_000) -> np.ndarray:
    """(n, num_perm) signatures, computed in chunks of `chunk` documents: peak memory is the chunk's
    shingles plus the signature matrix, not the corpus's shingles."""
    from tqdm import tqdm

    n = len(texts)
    sig = np.empty((n, num_perm), dtype=np.uint64)
    for lo in tqdm(range(0, n, chunk), desc="minhash", disable=not progress, unit="chunk"):
        part = texts.slice(lo, chunk)
        sig[lo:lo + len(part)] = signatures(shingle_frame(part, ngram), len(part), num_perm, seed)
    return sig


def pair_sims(pairs: np.ndarray, texts: pl.Series | Callable[[np.ndarray], pl.Series],
              ngram: int = 5) -> tuple[np.ndarray, ShingleSets]:
    """Exact shingle Jaccard of every pair (i, j), in pair order, and the shingle sets read for them."""
    sets = ShingleSets(texts, ngram, pairs.ravel())
    sims = np.array([jaccard_sorted(sets[i], sets[j]) for i, j in pairs.tolist()], dtype=np.float64)
    return sims, sets


def verify_candidates(cand: np.ndarray, texts: pl.Series | Callable[[np.ndarray], pl.Series], lowest: float,
                      ngram: int = 5) -> tuple[np.ndarray, np.ndarray, ShingleSets]:
    """Candidate pairs whose exact shingle Jaccard is >= `lowest`, their similarities, the shingle sets."""
    sims, sets = pair_sims(cand, texts, ngram)
    keep = sims >= lowest
    return cand[keep].astype(np.int64).reshape(-1, 2), sims[keep], sets


def near_duplicate_edges(texts: pl.Series, threshold: float = 0.8, num_perm: int = 128, ngram: int = 5,
                         seed: int = 1, progress: bool = False, chunk: int = 20_000,
                         floor: float | None = None) -> tuple[np.ndarray, np.ndarray, ShingleSets]:
    """Verified edges (i, j) with exact shingle Jaccard >= threshold, their similarities, and the shingle sets used.

    `floor` (< threshold) also keeps LSH candidates whose exact Jaccard is in [floor, threshold):
    the borderline pairs that go to human review. LSH is still tuned for `threshold`, so pairs
    far below it are found less often; callers filter the edges by `sims >= threshold`.
    """
    sig = signature_matrix(texts, num_perm, ngram, seed, progress, chunk)
    cand = lsh_candidates(sig, threshold)
    return verify_candidates(cand, texts, threshold if floor is None else min(floor, threshold), ngram)
