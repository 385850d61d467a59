"""What every stage shares: the frame layout, the context, the result."""

from __future__ import annotations

import difflib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    # the run's executor and work dir (the pipeline sets them): `decide` may run tasks with `map`. Never in
    # `settings()`: tasks get settings and paths, not the executor. None: tasks run in this process.
    executor: Any = None
    workdir: Path | None = None

    def settings(self) -> dict[str, Any]:
        """What a task on another process needs to rebuild this context (caches are rebuilt there)."""
        return {"seed": self.seed, "tokenizer": self.tokenizer, "embedding_model": self.embedding_model}

    def for_task(self, progress: bool | None = None) -> "Context":
        """A context for one shard's task: the same settings and caches, its own reports."""
        return Context(**self.settings(), progress=self.progress if progress is None else progress, _cache=self._cache)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], desc: str) -> list[Any]:
        """`fn` (a top-level function) over task descriptions on the run's executor; results in item order."""
        if self.executor is None:
            return [fn(x) for x in items]
        return self.executor.map(fn, items, desc)

    def parallelism(self) -> int:
        """How many tasks the executor runs at once (1 in this process): how finely to split a step."""
        ex = self.executor
        if ex is None or ex.kind == "local":
            return 1
        if getattr(ex, "workers", None):
            return int(ex.workers)
        if ex.kind == "ray":
            import ray

            return max(1, int(ray.cluster_resources().get("CPU", 1)))
        return 1

    @contextmanager
    def scratch(self, prefix: str) -> Iterator[Path]:
        """A private directory for one step's task files, removed afterwards: under the work dir (which
        every worker sees, as the shards do), else a temporary one."""
        if self.workdir is not None:
            Path(self.workdir).mkdir(parents=True, exist_ok=True)
        d = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=self.workdir))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def tokenizer_obj(self):
        if "tok" not in self._cache:
            from transformers import AutoTokenizer

            from sftloop.assets import resolve_model

            self._cache["tok"] = AutoTokenizer.from_pretrained(resolve_model(self.tokenizer))
        return self._cache["tok"]

    def embedder(self):
        if "emb" not in self._cache:
            from sftloop.curate.embed import Embedder

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
    from sftloop.curate.text import contents

    return df.select("_row", "id", "weight", _alen=contents(("assistant",)).str.len_chars().cast(pl.Int64))


def keep_rank(feats: pl.DataFrame) -> np.ndarray:
    """Which near-duplicate to keep: higher weight first (reviewed/mined corrections), then the longest
    assistant content. One rule for every dedup stage."""
    return feats["weight"].to_numpy().astype(float) * 1e12 + feats["_alen"].to_numpy().astype(float)


@dataclass
class StageResult:
    """What a stage did to one shard. The stage owns its report: `counters` are numbers (or dicts of
    numbers) that the runner sums over shards; `info` is what is the same in every shard (settings,
    reference sizes), checked equal and kept once. The runner knows no stage by name."""

    kept: pl.DataFrame
    dropped: pl.DataFrame  # columns: _row, reason, rep_id (nullable str)
    counters: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def report(self) -> dict[str, Any]:
        return {**self.info, **self.counters}

    def reported(self, ctx: "Context", name: str, counters: dict[str, Any] | None = None,
                 info: dict[str, Any] | None = None) -> "StageResult":
        """Attach this shard's report; `ctx.reports[name]` gets it too, for a caller of `apply` on one frame."""
        self.counters, self.info = dict(counters or {}), dict(info or {})
        ctx.reports[name] = self.report
        return self

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


class FieldError(ValueError):
    """A semantic config mistake, naming its key as written in the stage's TOML table (`allowed[0]`).

    Raised from a stage's `model_validator`; `curate.config` prefixes it with `stages[i] (type).`."""

    def __init__(self, key: str, msg: str):
        super().__init__(msg)
        self.key = key


def check_names(key: str, values: list[str], known: Iterable[str], what: str, empty: str) -> None:
    """Every entry of a names list is one of `known`; the list is not empty (`empty` says what an empty
    list would do) and has no repeats. Unknown names get the closest known one as a hint."""
    known = list(known)
    if not values:
        raise FieldError(key, f"empty list: {empty}; name at least one of {known}")
    for j, v in enumerate(values):
        if v not in known:
            close = difflib.get_close_matches(str(v), known, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise FieldError(f"{key}[{j}]", f"unknown {what} {v!r}{hint} (known: {known})")
        if v in values[:j]:
            raise FieldError(f"{key}[{j}]", f"{v!r} is listed twice")


def min_max_pairs(names: Iterable[str]) -> list[tuple[str, str]]:
    """Field pairs that bound one quantity: `min_x`/`max_x` and `x_min`/`x_max`."""
    names = set(names)
    pairs = [(n, "max_" + n[4:]) for n in names if n.startswith("min_") and "max_" + n[4:] in names]
    pairs += [(n, n[:-4] + "_max") for n in names if n.endswith("_min") and n[:-4] + "_max" in names]
    return sorted(pairs)


class StageConfig(BaseModel):
    """A row stage: `apply` decides each row on its own, so the pipeline runs it shard by shard.

    Validation is complete before any data is read: pydantic checks types (strictly: `"0.8"` is not a
    number, `1` is not `true`) and ranges; a stage's own `model_validator` checks names against the
    known set (raising `FieldError` with the key); every `min_x <= max_x` pair is checked here.

    Drop-share guard: `expected_drop_share` documents the share of rows a stage typically drops on
    ordinary chat data (docs/curate.md gives the measured figures); the runner stops the run when a
    stage drops more than `max_drop_share` (default `default_max_drop_share`), because a share far
    above the expected one is almost always a config mistake. A stage's table may raise its limit.
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    needs_all_rows: ClassVar[bool] = False
    expected_drop_share: ClassVar[float | None] = None  # each stage class declares its own (a test checks)
    default_max_drop_share: ClassVar[float] = 0.5
    max_drop_share: float | None = Field(None, gt=0, le=1)

    @property
    def name(self) -> str:
        return self.type  # type: ignore[attr-defined]

    @property
    def drop_limit(self) -> float:
        return self.default_max_drop_share if self.max_drop_share is None else self.max_drop_share

    @model_validator(mode="after")
    def _min_not_above_max(self) -> "StageConfig":
        for lo, hi in min_max_pairs(type(self).model_fields):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise FieldError(lo, f"{lo} = {a} > {hi} = {b}: no row can pass")
        return self

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
        from sftloop.curate.text import contents

        if df.height == 0:
            return StageResult.split(df, None)
        feats = self.features(df, ctx)
        texts = df.select(t=contents(None))["t"]
        dropped = self.decide(feats, ctx, lambda idx: texts.gather(idx))
        return StageResult(df.filter(~pl.col("_row").is_in(dropped["_row"].implode())), dropped)


def merge_counters(a: dict[str, Any], b: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Two shards' counters, summed key by key (dicts recursively; keys keep first-seen order)."""
    out = dict(a)
    for k, v in b.items():
        if k not in out:
            out[k] = v
        elif isinstance(v, dict) and isinstance(out[k], dict):
            out[k] = merge_counters(out[k], v, f"{where}.{k}")
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and isinstance(out[k], (int, float)):
            out[k] = out[k] + v
        else:
            raise TypeError(f"stage report counter {where}.{k}: cannot add {out[k]!r} and {v!r} (put it in info)")
    return out


def merge_info(a: dict[str, Any], b: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Two shards' constant info: every key they share must be equal."""
    for k, v in b.items():
        if k in a and a[k] != v:
            raise AssertionError(f"stage report info {where}.{k} differs between shards: {a[k]!r} != {v!r}")
    return {**a, **b}
