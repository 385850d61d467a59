"""Near-duplicates by embedding cosine (MiniLM asset), exact blockwise search."""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field

from curate.cluster import cluster_by_centers
from curate.embed import similar_pairs
from curate.stages.base import Context, StageConfig, StageResult, borderline_pairs, keep_rank
from curate.text import contents


def embed_text(df: pl.DataFrame, fields: list[str], max_chars: int) -> list[str]:
    parts = []
    for f in fields:
        role, _, which = f.partition(":")
        parts.append(contents((role,), first_only=(which != "all")))
    return df.select(t=pl.concat_str(parts, separator="\n").str.slice(0, max_chars))["t"].to_list()


class EmbedDedup(StageConfig):
    """Embed `fields` (default first user + first assistant turn), link pairs with cosine >= threshold,
    cluster without chaining, keep the longest-assistant row per cluster."""

    type: Literal["embed_dedup"] = "embed_dedup"
    threshold: float = Field(0.95, gt=0, le=1)
    fields: list[str] = Field(default_factory=lambda: ["user:first", "assistant:first"])
    max_chars: int = Field(1000, gt=0)
    block: int = Field(2048, ge=64)
    borderline_margin: float = Field(0.02, ge=0, lt=0.5)  # pairs within this of threshold go to the review queue

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        if df.height < 2:
            return StageResult.split(df, None)
        emb = ctx.embedder().encode(embed_text(df, self.fields, self.max_chars))
        pairs = similar_pairs(emb, None, self.threshold - self.borderline_margin, self.block)
        ids = df["id"].to_numpy()
        if self.borderline_margin > 0:
            ctx.borderline.append(borderline_pairs(ids, pairs[:, :2].astype(np.int64).tolist(), pairs[:, 2].tolist(),
                                                   "embedding", self.threshold, self.borderline_margin))
        pairs = pairs[pairs[:, 2] >= self.threshold]
        edges = pairs[:, :2].astype(np.int64)
        rank = keep_rank(df)
        rep = cluster_by_centers(df.height, edges, rank, lambda i, j: float(emb[i] @ emb[j]) >= self.threshold)
        dup = rep != np.arange(len(rep))
        ctx.reports[self.name] = {"pairs_above_threshold": int(len(pairs)), "dropped": int(dup.sum())}
        tagged = df.with_columns(_rep=pl.Series(ids[rep], dtype=pl.String), _dup=pl.Series(dup))
        res = StageResult.split(tagged, pl.when(pl.col("_dup")).then(pl.lit("near_dup:embedding")), pl.col("_rep"))
        res.kept = res.kept.drop("_rep", "_dup", strict=False)
        return res
