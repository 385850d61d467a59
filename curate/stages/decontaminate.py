"""Decontamination against everything the gate evaluates (MT-Bench, IFBench, golden set).

A training row is dropped when its user turns share a word 13-gram with an eval item, or when
its first user turn embeds within `embed_threshold` cosine of one. The stage report lists which
eval items were hit and how often.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

import polars as pl
from pydantic import Field

from curate import evalsets
from curate.embed import similar_pairs
from curate.stages.base import Context, StageConfig, StageResult
from curate.text import contents, shingle_hashes, word_hashes


class Decontaminate(StageConfig):
    type: Literal["decontaminate"] = "decontaminate"
    eval_sets: list[str] = Field(default_factory=lambda: ["mtbench", "ifbench", "golden"])
    ngram: int = Field(13, ge=3)
    embed_threshold: float | None = Field(0.95, gt=0, le=1)

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        items = evalsets.load(self.eval_sets)
        if not items or df.is_empty():
            return StageResult.split(df, None)
        ids = [i for i, _ in items]
        # n-gram overlap
        ed, ewh = word_hashes(pl.Series([t for _, t in items]))
        ed, eh = shingle_hashes(ed, ewh, self.ngram)
        owner = pl.DataFrame({"h": eh, "item": ed}).unique("h", keep="first")
        rd, rwh = word_hashes(df.select(t=contents(("user",)))["t"])
        rd, rh = shingle_hashes(rd, rwh, self.ngram)
        hits = pl.DataFrame({"doc": rd, "h": rh}).join(owner, on="h", how="inner").unique("doc", keep="first")
        hit_item: dict[int, str] = {int(d): ids[int(i)] for d, i in zip(hits["doc"], hits["item"])}
        reasons: list[str | None] = [None] * df.height
        for d in hit_item:
            reasons[d] = "decontaminate:ngram"
        # embedding proximity
        if self.embed_threshold is not None:
            emb = ctx.embedder()
            rows = emb.encode(df.select(t=contents(("user",), first_only=True).str.slice(0, 2000))["t"].to_list())
            evs = emb.encode([t[:2000] for _, t in items])
            for i, j, _ in similar_pairs(rows, evs, self.embed_threshold):
                i = int(i)
                if reasons[i] is None:
                    reasons[i] = "decontaminate:embedding"
                    hit_item[i] = ids[int(j)]
        counts = Counter(hit_item.values())
        ctx.reports[self.name] = {"eval_items": len(items), "rows_dropped": len(hit_item),
                                  "items_hit": dict(sorted(counts.items()))}
        rep = [hit_item.get(i) for i in range(df.height)]
        tagged = df.with_columns(_why=pl.Series(reasons, dtype=pl.String), _item=pl.Series(rep, dtype=pl.String))
        res = StageResult.split(tagged, pl.col("_why"), pl.col("_item"))
        res.kept = res.kept.drop("_why", "_item", strict=False)
        return res
