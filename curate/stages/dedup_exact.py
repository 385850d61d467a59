"""Exact duplicates on a normalised hash (lowercase, collapsed whitespace) of the whole
conversation and/or of the first user turn. The kept row of each group is the one with the highest
weight (a reviewed or mined correction, weight > 1, wins over the raw row it corrects), then the
longest assistant content, then input order, so the choice does not depend on file order alone."""

from __future__ import annotations

from typing import ClassVar, Literal

import polars as pl
from pydantic import Field, model_validator

from sftloop.curate.stages.base import Context, GlobalStage, TextsOf, check_names, empty_dropped, rank_columns
from sftloop.curate.text import contents, normalise_for_hash

KEYS = {
    "conversation": lambda: pl.concat_str([pl.col("messages").list.eval(
        pl.element().struct.field("role") + pl.lit("\x1f") + pl.element().struct.field("content")).list.join("\x1e")]),
    "first_user": lambda: contents(("user",), first_only=True),
}


class ExactDedup(GlobalStage):
    type: Literal["exact_dedup"] = "exact_dedup"
    keys: list[Literal["conversation", "first_user"]] = Field(default_factory=lambda: ["conversation", "first_user"])
    expected_drop_share: ClassVar[float] = 0.1  # ShareGPT demo: 10.4 % (docs/curate.md)
    default_max_drop_share: ClassVar[float] = 0.7  # see docs/curate.md: heavily duplicated sources

    @model_validator(mode="after")
    def _known_keys(self) -> "ExactDedup":
        check_names("keys", list(self.keys), KEYS, "key", "the stage would compare nothing")
        return self

    def features(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        keys = df.select(**{f"_k_{k}": normalise_for_hash(KEYS[k]()).hash(seed=7) for k in self.keys})
        return pl.concat([rank_columns(df), keys], how="horizontal")

    def decide(self, feats: pl.DataFrame, ctx: Context, texts_of: TextsOf) -> pl.DataFrame:
        dropped = [empty_dropped()]
        cur = feats
        for key in self.keys:
            k = f"_k_{key}"
            order = cur.sort(["weight", "_alen", "_row"], descending=[True, True, False])
            rep = order.group_by(k, maintain_order=True).agg(_rep=pl.col("id").first(), _reprow=pl.col("_row").first())
            tagged = cur.join(rep, on=k, how="left", maintain_order="left")
            dup = pl.col("_row") != pl.col("_reprow")
            dropped.append(tagged.filter(dup).select("_row", reason=pl.lit(f"exact_dup:{key}"), rep_id=pl.col("_rep")))
            cur = tagged.filter(~dup).drop("_rep", "_reprow")
        return pl.concat(dropped)
