"""Exact duplicates on a normalised hash (lowercase, collapsed whitespace) of the whole
conversation and/or of the first user turn. The kept row of each group is the one with the highest
weight (a reviewed or mined correction, weight > 1, wins over the raw row it corrects), then the
longest assistant content, then input order, so the choice does not depend on file order alone."""

from __future__ import annotations

from typing import Literal

import polars as pl
from pydantic import Field

from curate.stages.base import Context, StageConfig, StageResult
from curate.text import contents, normalise_for_hash

KEYS = {
    "conversation": lambda: pl.concat_str([pl.col("messages").list.eval(
        pl.element().struct.field("role") + pl.lit("\x1f") + pl.element().struct.field("content")).list.join("\x1e")]),
    "first_user": lambda: contents(("user",), first_only=True),
}


class ExactDedup(StageConfig):
    type: Literal["exact_dedup"] = "exact_dedup"
    keys: list[Literal["conversation", "first_user"]] = Field(default_factory=lambda: ["conversation", "first_user"])

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        dropped = []
        cur = df
        for key in self.keys:
            k = normalise_for_hash(KEYS[key]()).hash(seed=7)
            tagged = cur.with_columns(_k=k, _alen=contents(("assistant",)).str.len_chars())
            order = tagged.sort(["weight", "_alen", "_row"], descending=[True, True, False])
            rep = order.group_by("_k", maintain_order=True).agg(_rep=pl.col("id").first(), _reprow=pl.col("_row").first())
            tagged = tagged.join(rep, on="_k", how="left", maintain_order="left")
            res = StageResult.split(tagged, pl.when(pl.col("_row") != pl.col("_reprow")).then(pl.lit(f"exact_dup:{key}")),
                                    pl.col("_rep"))
            dropped.append(res.dropped)
            cur = res.kept.drop("_k", "_alen", "_rep", "_reprow", strict=False)
        return StageResult(cur, pl.concat(dropped))
