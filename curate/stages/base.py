"""What every stage shares: the frame layout, the context, the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

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


def rank_columns(df: pl.DataFrame) -> pl.DataFrame:
    """The narrow columns the keep rule needs: `_row`, `id`, `weight`, `_alen` (assistant characters)."""
    from curate.text import contents

    return df.select("_row", "id", "weight", _alen=contents(("assistant",)).str.len_chars().cast(pl.Int64))


def keep_rank(feats: pl.DataFrame) -> np.ndarray:
    """Which near-duplicate to keep: higher weight first (reviewed/mined corrections), then the longest
    assistant content. One rule for every dedup stage."""
    return feats["weight"].to_numpy().astype(float) * 1e12 + feats["_alen"].to_numpy().astype(float)


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
    """A row stage: `apply` decides each row on its own, so the pipeline runs it shard by shard."""

    model_config = ConfigDict(extra="forbid")
    needs_all_rows: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return getattr(self, "label", None) or self.type  # type: ignore[attr-defined]

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:  # pragma: no cover - interface
        raise NotImplementedError


TextsOf = Callable[[np.ndarray], pl.Series]


class GlobalStage(StageConfig):
    """A stage that must see every row (deduplication, mixing), in two steps so memory stays bounded:
    `features(shard)` returns narrow per-row columns (always `_row`), computed shard by shard;
    `decide(features, ctx, texts_of)` sees the features of all rows and returns the dropped rows
    (`_row`, `reason`, `rep_id`). `texts_of(indices)` gives the full text of feature rows on demand
    (read back from the shards), for the few rows that need it, e.g. MinHash candidates."""

    needs_all_rows: ClassVar[bool] = True

    def features(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:  # pragma: no cover - interface
        raise NotImplementedError

    def decide(self, feats: pl.DataFrame, ctx: Context, texts_of: TextsOf) -> pl.DataFrame:  # pragma: no cover
        raise NotImplementedError

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        """Both steps on one in-memory frame (unit tests, small inputs)."""
        from curate.text import contents

        if df.height == 0:
            return StageResult.split(df, None)
        feats = self.features(df, ctx)
        texts = df.select(t=contents(None))["t"]
        dropped = self.decide(feats, ctx, lambda idx: texts.gather(idx))
        return StageResult(df.filter(~pl.col("_row").is_in(dropped["_row"].implode())), dropped)
