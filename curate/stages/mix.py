"""Cap the share of focus data (mined failure corrections) in the weighted training mixture."""

from __future__ import annotations

import hashlib
from typing import ClassVar, Literal

import polars as pl
from pydantic import Field

from sftloop.curate.stages.base import Context, GlobalStage, TextsOf


class Mix(GlobalStage):
    """Keep at least `min_ordinary_share` of the mixture ordinary data.

    Shares are by weight (a weight-3 mined record counts three times, as the trainer upsamples it).
    When the focus rows (source starting with `focus_prefix`) weigh more than allowed, focus rows
    are kept in a seeded order of their ids until the cap is reached; the rest are dropped with
    reason `mix:focus_over_cap`. Put this stage last, after deduplication.
    """

    type: Literal["mix"] = "mix"
    focus_prefix: str = Field("mined:", min_length=1)  # "" would make every row focus data
    min_ordinary_share: float = Field(0.5, ge=0.0, le=1.0)
    seed: int = 0
    expected_drop_share: ClassVar[float] = 0.0  # only focus rows over the cap; none when focus data is small

    def features(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        return df.select("_row", "id", "source", "weight")

    def decide(self, df: pl.DataFrame, ctx: Context, texts_of: TextsOf) -> pl.DataFrame:
        focus = df["source"].str.starts_with(self.focus_prefix)
        w_ord = float(df.filter(~focus)["weight"].sum())
        w_focus = float(df.filter(focus)["weight"].sum())
        s = self.min_ordinary_share
        cap = float("inf") if s == 0 else w_ord * (1 - s) / s
        drop_ids: set[str] = set()
        if w_focus > cap:
            rows = df.filter(focus).select("id", "weight").iter_rows()
            ordered = sorted(rows, key=lambda r: hashlib.sha256(f"{self.seed}:{r[0]}".encode()).hexdigest())
            total = 0.0
            for rid, w in ordered:
                if total + w <= cap + 1e-9:
                    total += w
                else:
                    drop_ids.add(rid)
        kept_focus = w_focus - float(df.filter(pl.col("id").is_in(list(drop_ids)))["weight"].sum())
        denom = w_ord + kept_focus
        ctx.reports[self.name] = {
            "ordinary_weight": w_ord, "focus_weight_in": w_focus, "focus_weight_kept": kept_focus,
            "ordinary_share": round(w_ord / denom, 4) if denom else None, "min_ordinary_share": s,
            "focus_rows_dropped": len(drop_ids),
        }
        return df.filter(pl.col("id").is_in(list(drop_ids))).select(
            "_row", reason=pl.lit("mix:focus_over_cap"), rep_id=pl.lit(None, pl.String))
