"""Sentence embeddings (MiniLM asset) with a content-keyed cache under $SFTLOOP_HOME/cache/embeddings.

Keys are sha256(model name + text), so a rerun (or another stage embedding the same text) does
not recompute; deleting the cache changes speed, never results.
"""

from __future__ import annotations

import hashlib
import uuid

import numpy as np
import polars as pl

from sftloop.settings import cache_dir


def text_key(model: str, text: str, max_len: int = 128) -> str:
    return hashlib.sha256(f"{model}\x00{max_len}\x00{text}".encode("utf-8")).hexdigest()[:32]


class Embedder:
    def __init__(self, model: str = "minilm-l6-v2", progress: bool = True, batch_size: int = 64,
                 max_seq_length: int = 128):
        # 128 tokens: enough to tell near-duplicates apart; MiniLM cost grows with length
        # (measured here: 256-token inputs embed at ~25/s on 2 cores).
        self.max_seq_length = max_seq_length
        self.model_name = model
        self.progress = progress
        self.batch_size = batch_size
        self._model = None
        self.dir = cache_dir("embeddings") / model
        self.dir.mkdir(parents=True, exist_ok=True)
        self.computed = 0
        self.cached = 0

    def _load_model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            from sftloop.assets import resolve_model

            self._model = SentenceTransformer(str(resolve_model(self.model_name)), device="cpu")
            self._model.max_seq_length = self.max_seq_length
        return self._model

    def _load_cache(self, keys: set[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for shard in sorted(self.dir.glob("*.parquet")):
            df = pl.read_parquet(shard).filter(pl.col("key").is_in(list(keys)))
            for k, v in zip(df["key"].to_list(), df["vec"].to_list()):
                found[k] = np.asarray(v, dtype=np.float32)
        return found

    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 embeddings, (len(texts), dim)."""
        keys = [text_key(self.model_name, t, self.max_seq_length) for t in texts]
        cache = self._load_cache(set(keys))
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in cache}.items())
        if missing:
            model = self._load_model()
            vecs = model.encode([t for _, t in missing], batch_size=self.batch_size, normalize_embeddings=True,
                                show_progress_bar=self.progress, convert_to_numpy=True).astype(np.float32)
            shard = self.dir / f"{uuid.uuid4().hex}.parquet"
            pl.DataFrame({"key": [k for k, _ in missing], "vec": vecs.tolist()}).write_parquet(shard.with_suffix(".part"))
            shard.with_suffix(".part").rename(shard)
            for (k, _), v in zip(missing, vecs):
                cache[k] = v
        self.computed += len(missing)
        self.cached += len(set(keys)) - len(missing)
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([cache[k] for k in keys])


def similar_pairs(a: np.ndarray, b: np.ndarray | None, threshold: float, block: int = 2048) -> np.ndarray:
    """All (i, j, cos) with cos >= threshold, by exact blockwise matrix products (bounded memory).

    With b None, pairs within a (i < j). Memory is O(block x block) regardless of input size.
    """
    same = b is None
    b = a if b is None else b
    out = []
    for i0 in range(0, len(a), block):
        ai = a[i0:i0 + block]
        j_start = i0 if same else 0
        for j0 in range(j_start, len(b), block):
            s = ai @ b[j0:j0 + block].T
            if same and j0 == i0:
                s = np.triu(s, 1) + np.tril(np.full_like(s, -2.0))
            ii, jj = np.nonzero(s >= threshold)
            if len(ii):
                out.append(np.stack([ii + i0, jj + j0, s[ii, jj]], axis=1))
    if not out:
        return np.zeros((0, 3))
    return np.concatenate(out)
