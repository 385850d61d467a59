"""Near-duplicates by MinHash LSH (word 5-grams, threshold 0.8, 128 permutations by default)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field

from curate.cluster import cluster_by_centers
from curate.minhash import near_duplicate_edges
from curate.stages.base import Context, StageConfig, StageResult, borderline_pairs, keep_rank
from curate.text import contents, jaccard_sorted


class MinHashDedup(StageConfig):
    """Cluster near-duplicates and keep one per cluster.

    `keep = "longest_assistant"` keeps the row with the most assistant characters; `"quality"`
    uses a numeric `quality` column when an earlier stage provides one (else falls back).
    """

    type: Literal["minhash_dedup"] = "minhash_dedup"
    threshold: float = Field(0.8, gt=0, le=1)
    num_perm: int = Field(128, ge=16, le=1024)
    ngram: int = Field(5, ge=1, le=20)
    keep: Literal["longest_assistant", "quality"] = "longest_assistant"
    seed: int = 1
    borderline_margin: float = Field(0.05, ge=0, lt=0.5)  # pairs within this of threshold go to the review queue

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        if df.height < 2:
            return StageResult.split(df, None)
        texts = df.select(t=contents(None))["t"]
        edges, sims, sets = near_duplicate_edges(texts, self.threshold, self.num_perm, self.ngram, self.seed, ctx.progress,
                                                 floor=self.threshold - self.borderline_margin)
        ids = df["id"].to_numpy()
        if self.borderline_margin > 0:
            ctx.borderline.append(borderline_pairs(ids, edges.tolist(), sims.tolist(), "minhash", self.threshold,
                                                   self.borderline_margin))
        above = sims >= self.threshold
        edges, sims = edges[above], sims[above]
        if self.keep == "quality" and "quality" in df.columns:
            rank = df["quality"].fill_null(0).to_numpy().astype(float)
        else:
            rank = keep_rank(df)
        rep = cluster_by_centers(df.height, edges, rank,
                                 lambda i, j: jaccard_sorted(sets[i], sets[j]) >= self.threshold)
        ctx.reports[self.name] = {"candidate_edges_verified": int(len(edges)),
                                  "clusters_with_duplicates": int(len(np.unique(rep[rep != np.arange(len(rep))])))}
        tagged = df.with_columns(_rep=pl.Series(ids[rep], dtype=pl.String),
                                 _dup=pl.Series(rep != np.arange(len(rep))))
        res = StageResult.split(tagged, pl.when(pl.col("_dup")).then(pl.lit("near_dup:minhash")), pl.col("_rep"))
        res.kept = res.kept.drop("_rep", "_dup", strict=False)
        return res
