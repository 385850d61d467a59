"""Embedding backends, cache keys, the static prefilter and the index search (real MiniLM asset)."""

import numpy as np
import pytest
from curate_frames import frame

from sftloop.curate.embed import (Embedder, index_pairs, search_pairs, similar_pairs, static_vectors, text_key,
                                  token_ids)
from sftloop.curate.stages.dedup_embed import EmbedDedup

TEXTS = ["How can I change the delivery address of an order I already placed?",
         "how can i change the delivery address of an order i have already placed",
         "The capital of Japan is Tokyo, a very large city.",
         "def add(a, b):\n    return a + b  # a tiny Python function"]


def test_cache_key_names_backend_and_keeps_torch_keys():
    t = TEXTS[0]
    keys = {b: text_key("minilm-l6-v2", t, 128, b) for b in ("torch", "onnx", "onnx-int8")}
    assert len(set(keys.values())) == 3  # a backend never reads another backend's vector
    assert keys["torch"] == text_key("minilm-l6-v2", t, 128)  # existing fp32 cache entries stay valid
    with pytest.raises(ValueError, match="backend"):
        Embedder(backend="tensorrt")


def test_token_ids_path_matches_sentence_transformers():
    emb = Embedder(progress=False)
    by_text = emb._load_model().encode(TEXTS, 64, False)
    by_ids = emb._load_model().encode_ids(token_ids(emb.model_name, TEXTS, 128), 2)  # other batches, other padding
    assert np.min(np.sum(by_text * by_ids, axis=1)) > 0.99999


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, 64)).astype(np.float32)
    k = n // 4
    src = rng.integers(0, n - k, k)
    a[n - k:] = a[src] + rng.uniform(0.05, 0.4, (k, 1)).astype(np.float32) * rng.standard_normal((k, 64)).astype(np.float32)
    a[n - 10:] = a[0]  # a dense cluster: more duplicates of one row than the first k neighbours
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_index_search_recall_against_exact():
    a = clustered(4000)
    exact = {(int(i), int(j)) for i, j, _ in similar_pairs(a, None, 0.9)}
    found = index_pairs(a, 0.9, k=4)
    got = {(int(i), int(j)) for i, j, _ in found}
    assert len(exact) > 500
    assert len(exact & got) / len(exact) >= 0.99
    assert got <= exact  # every similarity is re-scored exactly
    assert all(i < j for i, j in got) and len(got) == len(found)
    assert search_pairs(a, 0.9, index_min_rows=10_000)[1] == "exact"
    assert search_pairs(a, 0.9, index_min_rows=1_000)[1] == "hnsw-usearch"


def test_static_vectors_rank_near_duplicates_first():
    ids = token_ids("minilm-l6-v2", TEXTS, 128)
    v = static_vectors("minilm-l6-v2", ids)
    s = v @ v.T
    assert s[0, 1] > 0.75 and s[0, 1] > s[0, 2] + 0.3 and s[0, 1] > s[0, 3] + 0.3


def test_prefilter_keeps_reference_decisions_and_version_hash(ctx):
    from test_dedup import variant

    topics = ["customer support teams should answer every ticket within one business day and escalate billing "
              "problems to the finance group while keeping the customer informed about each step",
              "to bake sourdough bread feed the starter the night before then mix flour water and salt fold the "
              "dough every half hour and let it rise slowly in a cold fridge overnight",
              "the python interpreter reads a script line by line compiles it to bytecode and runs that bytecode "
              "on a virtual machine which is why syntax errors appear before anything executes",
              "our hiking club meets on saturday mornings at the north parking lot bring water sturdy boots a rain "
              "jacket and snacks because the mountain trail takes about five hours"]
    rows = []
    for k, t in enumerate(topics):  # each topic: the text, two close variants (near-dups), one far variant
        words = t.split()
        rows += [[("user", variant(words, e, 100 * k + e)), ("assistant", " ".join(words[::-1]))] for e in (0, 1, 2, 20)]
    rows += [[("user", q), ("assistant", "Here is a careful and complete answer to that question.")] for q in TEXTS]
    df = frame(rows)
    fast, ref = EmbedDedup().apply(df, ctx), ctx.reports["embed_dedup"]
    slow = EmbedDedup(prefilter="none").apply(df, ctx)
    assert fast.dropped.sort("_row").to_dicts() == slow.dropped.sort("_row").to_dicts()
    assert fast.dropped.height >= 4
    assert ref["prefilter"].startswith("static") and ref["search"] == "exact" and ref["rows_embedded"] < df.height
    assert ctx.reports["embed_dedup"]["prefilter"] == "none"
    # how the pairs are found stays out of the config hash, so version ids of existing configs are kept
    assert set(EmbedDedup().model_dump()) == set(EmbedDedup(prefilter="none").model_dump()) and \
        "prefilter" not in EmbedDedup().model_dump()
