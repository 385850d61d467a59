"""Sentence embeddings (MiniLM asset) with a content-keyed cache under $SFTLOOP_HOME/cache/embeddings.

Backends (`backend`): `torch` (sentence-transformers, fp32: the reference), `onnx` (the same weights
exported locally to ONNX, fp32, run by onnxruntime) and `onnx-int8` (that export with dynamic int8
weight quantisation). The ONNX files are exported once from the asset into $SFTLOOP_HOME/cache/onnx
(no hub). All backends tokenise with the fast (Rust) tokenizer, sort by length and pad each batch
only to its longest text.

Keys are sha256(model [+ backend] + token cap + text), so a rerun (or another stage embedding the same
text) does not recompute, and a vector from one backend is never served to another; deleting the
cache changes speed, never results. `torch` keeps its historical keys (model + cap + text).

`similar_pairs` is exact blockwise search (the ground truth); `search_pairs` switches to an HNSW
index (usearch) above `index_min_rows` rows and says which method it used.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from sftloop.settings import cache_dir

Backend = Literal["torch", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8")
DIM = 384


def text_key(model: str, text: str, max_len: int = 128, backend: str = "torch") -> str:
    tag = model if backend == "torch" else f"{model}+{backend}"
    return hashlib.sha256(f"{tag}\x00{max_len}\x00{text}".encode("utf-8")).hexdigest()[:32]


def n_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def onnx_file(model: str, quantized: bool) -> Path:
    """The asset's transformer exported to ONNX (last hidden state), made once, atomically; with
    `quantized`, onnxruntime's dynamic int8 quantisation of it (weights int8, activations quantised
    per batch)."""
    out = cache_dir("onnx") / model
    fp32, int8 = out / "model.onnx", out / "model_int8.onnx"
    if not fp32.exists():
        import torch
        from transformers import AutoModel, AutoTokenizer

        from sftloop.assets import resolve_model

        src = str(resolve_model(model))
        hf = AutoModel.from_pretrained(src).eval()
        enc = AutoTokenizer.from_pretrained(src)(["an example sentence"], return_tensors="pt")

        class Hidden(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f"model.{uuid.uuid4().hex}.part"
        axes = {0: "batch", 1: "seq"}
        torch.onnx.export(Hidden(hf), (enc["input_ids"], enc["attention_mask"]), str(tmp),
                          input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "hidden": axes},
                          opset_version=17, dynamo=False)
        tmp.rename(fp32)
    if quantized and not int8.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = out / f"model_int8.{uuid.uuid4().hex}.part"
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
        tmp.rename(int8)
    return int8 if quantized else fp32


@lru_cache(maxsize=4)
def tokenizer(model: str, max_seq_length: int):
    """The model's fast (Rust) tokenizer, truncating as sentence-transformers does ([CLS] ... [SEP])."""
    from tokenizers import Tokenizer

    from sftloop.assets import resolve_model

    tok = Tokenizer.from_file(str(Path(resolve_model(model)) / "tokenizer.json"))
    tok.enable_truncation(max_seq_length)
    tok.no_padding()
    return tok


def token_ids(model: str, texts: list[str], max_seq_length: int = 128) -> list[list[int]]:
    """Token ids per text (special tokens included, capped), batch-encoded on all cores."""
    return [e.ids for e in tokenizer(model, max_seq_length).encode_batch(texts)] if texts else []


def padded_batches(ids: list[list[int]], batch_size: int):
    """(row indices, ids, attention mask) per batch, longest first, each padded only to its longest row."""
    order = np.argsort([-len(x) for x in ids], kind="stable")
    for i in range(0, len(ids), batch_size):
        idx = order[i:i + batch_size]
        width = max(1, max(len(ids[j]) for j in idx))
        arr = np.zeros((len(idx), width), dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for r, j in enumerate(idx):
            arr[r, :len(ids[j])] = ids[j]
            mask[r, :len(ids[j])] = 1
        yield idx, arr, mask


def _mean_normalised(h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    v = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class OnnxEncoder:
    """Mean-pooled, L2-normalised last hidden state (MiniLM's sentence-transformers modules:
    Transformer -> mean Pooling -> Normalize), by onnxruntime on all cores."""

    def __init__(self, model: str, quantized: bool):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = n_threads()
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(str(onnx_file(model, quantized)), so, providers=["CPUExecutionProvider"])

    def encode_ids(self, ids: list[list[int]], batch_size: int) -> np.ndarray:
        out = np.zeros((len(ids), DIM), dtype=np.float32)
        for idx, arr, mask in padded_batches(ids, batch_size):
            out[idx] = _mean_normalised(self.sess.run(None, {"input_ids": arr, "attention_mask": mask})[0], mask)
        return out


class TorchEncoder:
    """sentence-transformers (fp32, PyTorch): the reference the other backends are measured against."""

    def __init__(self, model: str, max_seq_length: int):
        from sentence_transformers import SentenceTransformer

        from sftloop.assets import resolve_model
        from sftloop.progress import quiet_library_bars

        quiet_library_bars()
        self.st = SentenceTransformer(str(resolve_model(model)), device="cpu")
        self.st.max_seq_length = max_seq_length

    def encode(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        return self.st.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                              show_progress_bar=progress, convert_to_numpy=True).astype(np.float32)

    def encode_ids(self, ids: list[list[int]], batch_size: int) -> np.ndarray:
        import torch

        out = np.zeros((len(ids), DIM), dtype=np.float32)
        with torch.inference_mode():
            for idx, arr, mask in padded_batches(ids, batch_size):
                feats = {"input_ids": torch.from_numpy(arr), "attention_mask": torch.from_numpy(mask),
                         "token_type_ids": torch.zeros_like(torch.from_numpy(arr))}
                out[idx] = self.st(feats)["sentence_embedding"].numpy()
        return out


class Embedder:
    def __init__(self, model: str = "minilm-l6-v2", progress: bool = True, batch_size: int = 64,
                 max_seq_length: int = 128, backend: Backend = "torch"):
        # 128 tokens: enough to tell near-duplicates apart; MiniLM cost grows with length
        # (measured here: 256-token inputs embed at ~25/s on 2 cores).
        if backend not in BACKENDS:
            raise ValueError(f"embedding backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        self.max_seq_length = max_seq_length
        self.model_name = model
        self.backend = backend
        self.progress = progress
        self.batch_size = batch_size
        self._model = None
        self.dir = cache_dir("embeddings") / (model if backend == "torch" else f"{model}+{backend}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.computed = 0
        self.cached = 0

    def _load_model(self):
        if self._model is None:
            self._model = (TorchEncoder(self.model_name, self.max_seq_length) if self.backend == "torch"
                           else OnnxEncoder(self.model_name, self.backend == "onnx-int8"))
        return self._model

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self.backend == "torch":
            return self._load_model().encode(texts, self.batch_size, self.progress)
        return self._load_model().encode_ids(token_ids(self.model_name, texts, self.max_seq_length), self.batch_size)

    def _load_cache(self, keys: set[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        want = pl.Series(list(keys), dtype=pl.String)
        for shard in sorted(self.dir.glob("*.parquet")):
            df = pl.read_parquet(shard).filter(pl.col("key").is_in(want))
            for k, v in zip(df["key"].to_list(), df["vec"].to_list()):
                found[k] = np.asarray(v, dtype=np.float32)
        return found

    def _cached(self, keys: list[str], compute) -> np.ndarray:
        cache = self._load_cache(set(keys))
        missing = sorted({k: i for i, k in enumerate(keys) if k not in cache}.items())
        if missing:
            vecs = compute([i for _, i in missing])
            shard = self.dir / f"{uuid.uuid4().hex}.parquet"
            pl.DataFrame({"key": [k for k, _ in missing], "vec": vecs.tolist()}).write_parquet(shard.with_suffix(".part"))
            shard.with_suffix(".part").rename(shard)
            for (k, _), v in zip(missing, vecs):
                cache[k] = v
        self.computed += len(missing)
        self.cached += len(set(keys)) - len(missing)
        if not keys:
            return np.zeros((0, DIM), dtype=np.float32)
        return np.stack([cache[k] for k in keys])

    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 embeddings, (len(texts), dim)."""
        keys = [text_key(self.model_name, t, self.max_seq_length, self.backend) for t in texts]
        return self._cached(keys, lambda idx: self._embed([texts[i] for i in idx]))

    def encode_ids(self, ids: list[list[int]]) -> np.ndarray:
        """The same from token ids (`token_ids`: the text as the model sees it), cached by ids."""
        tag = f"{self.model_name}+{self.backend}+ids"
        keys = [hashlib.sha256(tag.encode() + np.asarray(x, dtype=np.int32).tobytes()).hexdigest()[:32] for x in ids]
        return self._cached(keys, lambda idx: self._load_model().encode_ids([list(ids[i]) for i in idx], self.batch_size))


def static_vectors(model: str, ids: list[list[int]], ref: list[list[int]] | None = None) -> np.ndarray:
    """A static prefilter embedding: the idf-weighted bag of the model's own input token embeddings
    (its `word_embeddings` matrix, no forward pass), centred on the corpus mean and L2-normalised.
    idf and the mean come from `ref` (default: `ids` itself, all rows of the stage), so it needs no
    training data; a fixed `ref` (decontaminate: the eval texts) makes a row's vector independent of
    the shard it is in. Measured on the ShareGPT demo input: at cosine 0.75 it keeps every MiniLM pair >= 0.93."""
    from sftloop.assets import resolve_model

    emb = _word_embeddings(str(resolve_model(model)))
    x = _bag(ids, emb.shape[0])
    r = x if ref is None else _bag(ref, emb.shape[0])
    df = np.bincount(r.indices, minlength=emb.shape[0])
    idf = (np.log((1 + r.shape[0]) / (1 + df)) + 1).astype(np.float32)
    v = np.asarray(x.multiply(idf[None, :]).tocsr() @ emb, dtype=np.float32)
    v -= v.mean(0) if ref is None else np.asarray(r.multiply(idf[None, :]).tocsr() @ emb, dtype=np.float32).mean(0)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)


def _bag(ids: list[list[int]], vocab: int):
    import scipy.sparse as sp

    lens = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=int(lens.sum()))
    x = sp.csr_matrix((np.ones(len(flat), np.float32), flat, np.concatenate([[0], np.cumsum(lens)])),
                      shape=(len(ids), vocab))
    x.sum_duplicates()
    return x


@lru_cache(maxsize=2)
def _word_embeddings(model_dir: str) -> np.ndarray:
    from safetensors.numpy import load_file

    w = load_file(str(Path(model_dir) / "model.safetensors"))
    return w[next(k for k in w if k.endswith("word_embeddings.weight"))].astype(np.float32)


def search_pairs(a: np.ndarray, threshold: float, index_min_rows: int, block: int = 2048) -> tuple[np.ndarray, str]:
    """Pairs within `a` with cos >= threshold and the method used: exact blockwise search below
    `index_min_rows` rows (the ground truth), an HNSW index (usearch) from there on."""
    if len(a) < index_min_rows:
        return similar_pairs(a, None, threshold, block), "exact"
    return index_pairs(a, threshold), "hnsw-usearch"


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


def index_pairs(a: np.ndarray, threshold: float, k: int = 32, expansion: int = 256) -> np.ndarray:
    """(i, j, cos), i < j, cos >= threshold, from an HNSW index (usearch, inner product on the
    normalised vectors): each row's `k` nearest neighbours, re-scored exactly in float32. A row with
    more than k-1 neighbours above the threshold is searched again with a larger k, so dense clusters
    of duplicates are not cut off."""
    from usearch.index import Index

    n = len(a)
    idx = Index(ndim=a.shape[1], metric="ip", dtype="f32", connectivity=32, expansion_add=256,
                expansion_search=expansion)
    idx.add(np.arange(n, dtype=np.uint64), a, threads=n_threads())
    todo, kk, out = np.arange(n), min(k, n), []
    while len(todo):
        res = idx.search(a[todo], kk, threads=n_threads())
        keys = np.asarray(res.keys).reshape(len(todo), -1).astype(np.int64)
        found = np.asarray(res.counts).reshape(-1)
        full = []
        for r, i in enumerate(todo):
            js = keys[r, :found[r]]
            js = js[js != i]
            if len(js) == 0:
                continue
            sims = a[js] @ a[i]
            hit = sims >= threshold
            if hit.sum() >= kk - 1 and kk < n:
                full.append(i)
                continue
            sel = js[hit]
            out.append(np.stack([np.minimum(sel, i), np.maximum(sel, i), sims[hit]], axis=1))
        todo, kk = np.asarray(full, dtype=np.int64), min(kk * 4, n)
    if not out:
        return np.zeros((0, 3))
    # a pair is found from either end (i's neighbour list or j's): once each
    pairs = np.concatenate(out)
    _, first = np.unique(pairs[:, 0].astype(np.int64) * n + pairs[:, 1].astype(np.int64), return_index=True)
    return pairs[np.sort(first)]
