"""Near-duplicates by MinHash LSH (word 5-grams, threshold 0.8, 128 permutations by default)."""

from __future__ import annotations

import itertools
from typing import Callable, ClassVar, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from sftloop.curate.cluster import cluster_by_centers
from sftloop.curate.minhash import signature_matrix
from sftloop.curate.minhash_tasks import lsh_candidates_tasks, pair_sims_tasks
from sftloop.curate.stages.base import (Context, FieldError, GlobalStage, TextsOf, borderline_pairs, empty_dropped, keep_rank,
                                 rank_columns)
from sftloop.curate.text import contents


class MinHashDedup(GlobalStage):
    """Cluster near-duplicates and keep one per cluster.

    Keep rule: highest weight, then most assistant characters; `keep = "quality"` uses a numeric
    `quality` column when an earlier stage provides one (else falls back). Signatures are computed
    shard by shard; LSH (one task per band range) and the exact-Jaccard verification of the candidates
    (in chunks, each task reading back only its pairs' texts) run as tasks on the run's executor.
    """

    type: Literal["minhash_dedup"] = "minhash_dedup"
    threshold: float = Field(0.8, gt=0, le=1)
    num_perm: int = Field(128, ge=16, le=1024)
    ngram: int = Field(5, ge=1, le=20)
    keep: Literal["longest_assistant", "quality"] = "longest_assistant"
    seed: int = 1
    borderline_margin: float = Field(0.05, ge=0, lt=0.5)  # pairs within this of threshold go to the review queue
    expected_drop_share: ClassVar[float] = 0.001  # ShareGPT demo, after exact_dedup: 0.07 %
    default_max_drop_share: ClassVar[float] = 0.7  # see docs/curate.md: heavily duplicated sources

    @model_validator(mode="after")
    def _margin_below_threshold(self) -> "MinHashDedup":
        if self.borderline_margin >= self.threshold:
            raise FieldError("borderline_margin", f"borderline_margin = {self.borderline_margin} >= threshold = "
                                                  f"{self.threshold}: every pair would be borderline")
        return self

    def features(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        sig = signature_matrix(df.select(t=contents(None))["t"], self.num_perm, self.ngram, self.seed, ctx.progress)
        out = rank_columns(df).with_columns(_sig=pl.Series(sig, dtype=pl.Array(pl.UInt64, self.num_perm)))
        if self.keep == "quality" and "quality" in df.columns:
            out = out.with_columns(_quality=df["quality"].fill_null(0).cast(pl.Float64))
        return out

    def decide(self, feats: pl.DataFrame, ctx: Context, texts_of: TextsOf) -> pl.DataFrame:
        """LSH by band range and verification in chunks run as tasks on the run's executor (`ctx.map`);
        clustering on the driver, from the verified edges (see `_cluster`)."""
        if feats.height < 2:
            return empty_dropped()
        with ctx.scratch("minhash") as scratch:
            tasks = ctx.parallelism()

            def sims_of(pairs: np.ndarray, name: str) -> np.ndarray:
                return pair_sims_tasks(pairs, texts_of, self.ngram, scratch, ctx.map, tasks, name)

            cand = lsh_candidates_tasks(feats["_sig"].to_numpy(), self.threshold, scratch, ctx.map, tasks)
            sims_all = sims_of(cand, "candidates")
            keep = sims_all >= self.threshold - self.borderline_margin
            edges, sims = cand[keep], sims_all[keep]
            ids = feats["id"].to_numpy()
            if self.borderline_margin > 0:
                ctx.borderline.append(borderline_pairs(ids, edges.tolist(), sims.tolist(), "minhash", self.threshold,
                                                       self.borderline_margin))
            edges = edges[sims >= self.threshold]
            rank = feats["_quality"].to_numpy() if "_quality" in feats.columns else keep_rank(feats)
            rep = self._cluster(feats.height, edges, rank, cand, sims_all, sims_of)
        dup = rep != np.arange(len(rep))
        ctx.reports[self.name] = {"candidate_edges_verified": int(len(edges)),
                                  "clusters_with_duplicates": int(len(np.unique(rep[dup])))}
        return pl.DataFrame({"_row": feats["_row"].to_numpy()[dup], "rep_id": ids[rep[dup]].astype(str)},
                            schema={"_row": pl.UInt32, "rep_id": pl.String}).select(
            "_row", reason=pl.lit("near_dup:minhash"), rep_id="rep_id")

    def _cluster(self, n: int, edges: np.ndarray, rank: np.ndarray, cand: np.ndarray, cand_sims: np.ndarray,
                 sims_of: Callable[[np.ndarray, str], np.ndarray]) -> np.ndarray:
        """`cluster_by_centers` with the exact Jaccard as `similar`, without shingle sets on the driver.

        `similar(i, c)` of a candidate pair is its verified similarity; any other pair is computed by the
        tasks (clustering asks only for pairs that are not edges, so these are few). Clustering is run with
        the pairs known so far (an unknown one counts as not similar and is recorded); the recorded pairs
        are computed and clustering runs again, until a run asks for no unknown pair. That run's every
        answer was the true similarity, so its result is the one the single-process stage gives."""
        codes = cand[:, 0] * np.int64(n) + cand[:, 1]  # sorted: cand is sorted by (i, j)
        known: dict[tuple[int, int], bool] = {}
        for attempt in itertools.count(1):
            asked: set[tuple[int, int]] = set()

            def similar(i: int, c: int) -> bool:
                a, b = (i, c) if i < c else (c, i)
                pos = int(np.searchsorted(codes, a * n + b))
                if pos < len(codes) and codes[pos] == a * n + b:
                    return bool(cand_sims[pos] >= self.threshold)  # a candidate: verified already
                if (a, b) in known:
                    return known[(a, b)]
                asked.add((a, b))
                return False

            rep = cluster_by_centers(n, edges, rank, similar)
            if not asked:
                return rep
            pairs = np.array(sorted(asked), dtype=np.int64)
            sims = sims_of(pairs, f"cluster-{attempt}")
            known.update(zip(map(tuple, pairs.tolist()), (sims >= self.threshold).tolist()))
        raise AssertionError("unreachable")  # pragma: no cover - count() does not end
