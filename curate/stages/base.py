"""What every stage shares: the frame layout, the context, the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

# Frame columns while a pipeline runs: `_row` (u32, unique per input record), `id`,
# `messages` (list[struct{role, content}]), `source`, `meta` (JSON str), `weight`,
# `cluster` (representative id; near-dup stages set it), and helper columns stages add
# (`n_tokens`, `lang`), which the writer folds into `meta`.


@dataclass
class Context:
    """What stages may use besides the frame: settings, caches, a place for stage reports."""

    seed: int = 0
    tokenizer: str = "smollm2-135m-instruct"
    embedding_model: str = "minilm-l6-v2"
    progress: bool = True
    reports: dict[str, Any] = field(default_factory=dict)
    borderline: list[pl.DataFrame] = field(default_factory=list)  # near-dup pairs near a threshold, for review
    _cache: dict[str, Any] = field(default_factory=dict)

    def tokenizer_obj(self):
        if "tok" not in self._cache:
            from transformers import AutoTokenizer

            from sftloop.assets import resolve_model

            self._cache["tok"] = AutoTokenizer.from_pretrained(resolve_model(self.tokenizer))
        return self._cache["tok"]

    def embedder(self):
        if "emb" not in self._cache:
            from curate.embed import Embedder

            self._cache["emb"] = Embedder(self.embedding_model, progress=self.progress)
        return self._cache["emb"]


BORDERLINE_SCHEMA = {"id_a": pl.String, "id_b": pl.String, "similarity": pl.Float64, "method": pl.String,
                     "threshold": pl.Float64}


def borderline_pairs(ids, pairs, sims, method: str, threshold: float, margin: float) -> pl.DataFrame:
    """Pairs whose similarity is within `margin` of `threshold` (both sides): what a reviewer labels."""
    rows = [(str(ids[i]), str(ids[j]), float(s)) for (i, j), s in zip(pairs, sims) if abs(float(s) - threshold) <= margin]
    rows = [(min(a, b), max(a, b), s) for a, b, s in rows]
    df = pl.DataFrame(rows, schema={"id_a": pl.String, "id_b": pl.String, "similarity": pl.Float64}, orient="row")
    return df.with_columns(method=pl.lit(method), threshold=pl.lit(float(threshold))).select(list(BORDERLINE_SCHEMA))


def keep_rank(df: pl.DataFrame) -> np.ndarray:
    """Which near-duplicate to keep: higher weight first (reviewed/mined corrections), then the longest
    assistant content. One rule for every dedup stage."""
    from curate.text import contents

    alen = df.select(contents(("assistant",)).str.len_chars())[:, 0].to_numpy().astype(float)
    return df["weight"].to_numpy().astype(float) * 1e12 + alen


@dataclass
class StageResult:
    kept: pl.DataFrame
    dropped: pl.DataFrame  # columns: _row, reason, rep_id (nullable str)

    @staticmethod
    def split(df: pl.DataFrame, reason: pl.Expr | None, rep_id: pl.Expr | None = None) -> "StageResult":
        """Split by a `reason` expression: null keeps the row, a string drops it with that reason."""
        if reason is None:
            return StageResult(df, empty_dropped())
        tagged = df.with_columns(_reason=reason, _rep=rep_id if rep_id is not None else pl.lit(None, pl.String))
        dropped = tagged.filter(pl.col("_reason").is_not_null()).select(
            "_row", reason=pl.col("_reason").cast(pl.String), rep_id=pl.col("_rep").cast(pl.String))
        kept = tagged.filter(pl.col("_reason").is_null()).drop("_reason", "_rep")
        return StageResult(kept, dropped)


def empty_dropped() -> pl.DataFrame:
    return pl.DataFrame(schema={"_row": pl.UInt32, "reason": pl.String, "rep_id": pl.String})


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @property
    def name(self) -> str:
        return getattr(self, "label", None) or self.type  # type: ignore[attr-defined]

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:  # pragma: no cover - interface
        raise NotImplementedError
