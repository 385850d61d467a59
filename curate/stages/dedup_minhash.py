"""Near-duplicates by MinHash LSH (word 5-grams, threshold 0.8, 128 permutations by default)."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from sftloop.curate.cluster import cluster_by_centers
from sftloop.curate.minhash import lsh_candidates, signature_matrix, verify_candidates
from sftloop.curate.stages.base import (Context, FieldError, GlobalStage, TextsOf, borderline_pairs, empty_dropped, keep_rank,
                                 rank_columns)
from sftloop.curate.text import contents, jaccard_sorted


class MinHashDedup(GlobalStage):
    """Cluster near-duplicates and keep one per cluster.

    Keep rule: highest weight, then most assistant characters; `keep = "quality"` uses a numeric
    `quality` column when an earlier stage provides one (else falls back). Signatures are computed
    shard by shard; only LSH candidates' texts are read back for exact-Jaccard verification.
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
        if feats.height < 2:
            return empty_dropped()
        cand = lsh_candidates(feats["_sig"].to_numpy(), self.threshold)
        edges, sims, sets = verify_candidates(cand, texts_of, self.threshold - self.borderline_margin, self.ngram)
        ids = feats["id"].to_numpy()
        if self.borderline_margin > 0:
            ctx.borderline.append(borderline_pairs(ids, edges.tolist(), sims.tolist(), "minhash", self.threshold,
                                                   self.borderline_margin))
        above = sims >= self.threshold
        edges = edges[above]
        rank = feats["_quality"].to_numpy() if "_quality" in feats.columns else keep_rank(feats)
        rep = cluster_by_centers(feats.height, edges, rank,
                                 lambda i, j: jaccard_sorted(sets[i], sets[j]) >= self.threshold)
        dup = rep != np.arange(len(rep))
        ctx.reports[self.name] = {"candidate_edges_verified": int(len(edges)),
                                  "clusters_with_duplicates": int(len(np.unique(rep[dup])))}
        return pl.DataFrame({"_row": feats["_row"].to_numpy()[dup], "rep_id": ids[rep[dup]].astype(str)},
                            schema={"_row": pl.UInt32, "rep_id": pl.String}).select(
            "_row", reason=pl.lit("near_dup:minhash"), rep_id="rep_id")
