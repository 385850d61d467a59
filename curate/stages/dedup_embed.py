"""Near-duplicates by embedding cosine (MiniLM asset).

Default path (`prefilter = "static"`): `features` keeps only each row's MiniLM token ids (capped at
128, as MiniLM sees them); `decide` builds a static vector per row from MiniLM's own input token
embeddings (idf-weighted bag, centred: `embed.static_vectors`, no forward pass), takes every pair at
static cosine >= `prefilter_threshold` as a candidate, and embeds only the candidate rows with fp32
MiniLM, whose pairs decide. Every similarity reported (and every borderline pair) is fp32 MiniLM's.
`prefilter = "none"` embeds every row with MiniLM (the reference). Search is exact blockwise below
`index_min_rows` rows and an HNSW index (usearch) above; the stage report names both methods."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from sftloop.curate.cluster import cluster_by_centers
from sftloop.curate.embed import search_pairs, static_vectors, token_ids
from sftloop.curate.stages.base import (Context, FieldError, GlobalStage, TextsOf, borderline_pairs, check_names,
                                 empty_dropped, keep_rank, rank_columns)
from sftloop.curate.text import contents
from sftloop.schema import ROLES

# `role` (its first turn), `role:first` or `role:all` (every turn of that role, joined)
FIELDS = tuple(f"{r}{w}" for r in ROLES for w in ("", ":first", ":all"))


def embed_text(df: pl.DataFrame, fields: list[str], max_chars: int) -> list[str]:
    parts = []
    for f in fields:
        role, _, which = f.partition(":")
        parts.append(contents((role,), first_only=(which != "all")))
    return df.select(t=pl.concat_str(parts, separator="\n").str.slice(0, max_chars))["t"].to_list()


class EmbedDedup(GlobalStage):
    """Embed `fields` (default first user + first assistant turn), link pairs with cosine >= threshold,
    cluster without chaining, keep the best row per cluster (highest weight, then longest assistant).
    Embeddings are computed shard by shard (and cached); the search holds only the (n, 384) matrix."""

    type: Literal["embed_dedup"] = "embed_dedup"
    threshold: float = Field(0.95, gt=0, le=1)
    fields: list[str] = Field(default_factory=lambda: ["user:first", "assistant:first"])
    max_chars: int = Field(1000, gt=0)
    block: int = Field(2048, ge=64)
    borderline_margin: float = Field(0.02, ge=0, lt=0.5)  # pairs within this of threshold go to the review queue
    # How the pairs are found, not which: measured to keep the decisions of exact fp32 search
    # (docs/benchmarks.md), so they stay out of the config hash (version ids) and go in the report.
    prefilter: Literal["static", "none"] = Field("static", exclude=True)
    prefilter_threshold: float = Field(0.75, gt=0, le=1, exclude=True)
    index_min_rows: int = Field(500_000, ge=2, exclude=True)  # exact was 6x faster than HNSW at 50 k (benchmarks.md)
    expected_drop_share: ClassVar[float] = 0.005  # ShareGPT demo, after minhash_dedup: 0.52 %
    default_max_drop_share: ClassVar[float] = 0.7  # see docs/curate.md: heavily duplicated sources

    @model_validator(mode="after")
    def _known_fields(self) -> "EmbedDedup":
        check_names("fields", self.fields, FIELDS, "field", "nothing would be embedded and every row would be a duplicate")
        if all(f.startswith("system") for f in self.fields):
            raise FieldError("fields", "system prompts alone are often identical across rows (or absent): "
                                       "name a user or assistant field too")
        if self.borderline_margin >= self.threshold:
            raise FieldError("borderline_margin", f"borderline_margin = {self.borderline_margin} >= threshold = "
                                                  f"{self.threshold}: every pair would be borderline")
        return self

    def features(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        texts = embed_text(df, self.fields, self.max_chars)
        if self.prefilter == "static":  # 128 token ids (<= 256 bytes a row) instead of 384 floats
            ids = token_ids(ctx.embedding_model, texts, ctx.embedder().max_seq_length)
            return rank_columns(df).with_columns(_ids=pl.Series(ids, dtype=pl.List(pl.UInt16)))
        emb = ctx.embedder().encode(texts)
        return rank_columns(df).with_columns(_emb=pl.Series(emb, dtype=pl.Array(pl.Float32, emb.shape[1] if len(emb) else 384)))

    def _pairs(self, feats: pl.DataFrame, ctx: Context, lo: float) -> tuple[np.ndarray, np.ndarray, dict]:
        """(pairs (i, j, cos) over feature rows, MiniLM vectors of the rows they touch (by row), report)."""
        n = feats.height
        if "_emb" in feats.columns:
            emb = feats["_emb"].to_numpy().astype(np.float32)
            pairs, method = search_pairs(emb, lo, self.index_min_rows, self.block)
            return pairs, emb, {"prefilter": "none", "search": method, "rows_embedded": n}
        ids = feats["_ids"].to_list()
        cand_pairs, pre_method = search_pairs(static_vectors(ctx.embedding_model, ids), self.prefilter_threshold,
                                              self.index_min_rows, self.block)
        cand = np.unique(cand_pairs[:, :2].astype(np.int64))
        emb = np.zeros((n, 384), dtype=np.float32)
        pairs = np.zeros((0, 3))
        method = "exact"
        if len(cand) > 1:
            emb[cand] = ctx.embedder().encode_ids([ids[i] for i in cand])
            sub, method = search_pairs(emb[cand], lo, self.index_min_rows, self.block)
            pairs = np.stack([cand[sub[:, 0].astype(np.int64)], cand[sub[:, 1].astype(np.int64)], sub[:, 2]], axis=1) \
                if len(sub) else sub
        return pairs, emb, {"prefilter": f"static@{self.prefilter_threshold}", "prefilter_search": pre_method,
                            "candidate_pairs": int(len(cand_pairs)), "search": method, "rows_embedded": int(len(cand))}

    def decide(self, feats: pl.DataFrame, ctx: Context, texts_of: TextsOf) -> pl.DataFrame:
        if feats.height < 2:
            return empty_dropped()
        pairs, emb, how = self._pairs(feats, ctx, self.threshold - self.borderline_margin)
        ids = feats["id"].to_numpy()
        if self.borderline_margin > 0:
            # 5 decimals: fp32 results differ in the 7th with batch composition, which must not change the file
            ctx.borderline.append(borderline_pairs(ids, pairs[:, :2].astype(np.int64).tolist(),
                                                   np.round(pairs[:, 2], 5).tolist(),
                                                   "embedding", self.threshold, self.borderline_margin))
        pairs = pairs[pairs[:, 2] >= self.threshold]
        edges = pairs[:, :2].astype(np.int64)
        rep = cluster_by_centers(feats.height, edges, keep_rank(feats), lambda i, j: float(emb[i] @ emb[j]) >= self.threshold)
        dup = rep != np.arange(len(rep))
        ctx.reports[self.name] = {"pairs_above_threshold": int(len(pairs)), "dropped": int(dup.sum())} | how
        return pl.DataFrame({"_row": feats["_row"].to_numpy()[dup], "rep_id": ids[rep[dup]].astype(str)},
                            schema={"_row": pl.UInt32, "rep_id": pl.String}).select(
            "_row", reason=pl.lit("near_dup:embedding"), rep_id="rep_id")
