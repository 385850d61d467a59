import numpy as np
import polars as pl
from curate_frames import frame

from sftloop.curate.cluster import cluster_by_centers
from sftloop.curate.minhash import near_duplicate_edges
from sftloop.curate.stages.dedup_embed import EmbedDedup
from sftloop.curate.stages.dedup_exact import ExactDedup
from sftloop.curate.stages.dedup_minhash import MinHashDedup

BASE = ("customer support teams should answer every ticket within one business day and escalate billing problems "
        "to the finance group while keeping the customer informed about each step of the process until it is resolved "
        "and then ask for feedback about the experience so the team can improve over the following quarter by "
        "reviewing the most common complaints in a weekly meeting with product managers engineers and the support "
        "leads who decide which fixes ship first and which documentation pages need to be rewritten for clarity").split()


def variant(words, k, seed):
    rng = np.random.default_rng(seed)
    w = list(words)
    for i in rng.choice(len(w), k, replace=False):
        w[i] = f"x{seed}_{i}"
    return " ".join(w)


def test_exact_dedup_normalised_and_keeps_longest(ctx):
    df = frame([[("user", "Hello   World, how are you?"), ("assistant", "fine")],
                [("user", "hello world, how are you?"), ("assistant", "I am fine, thanks")],
                [("user", "other question here"), ("assistant", "fine")]])
    res = ExactDedup(keys=["first_user"]).apply(df, ctx)
    assert res.kept["_row"].to_list() == [1, 2]
    assert res.dropped.to_dicts() == [{"_row": 0, "reason": "exact_dup:first_user", "rep_id": df["id"][1]}]


def test_minhash_edges_are_verified_jaccard():
    texts = pl.Series([" ".join(BASE), variant(BASE, 1, 1), variant(BASE, 12, 2), "completely different text about cooking pasta with garlic and olive oil for dinner tonight"])
    edges, sims, sets = near_duplicate_edges(texts, threshold=0.8)
    assert edges.tolist() == [[0, 1]] and sims[0] >= 0.8


def test_clusters_do_not_chain_dissimilar_rows():
    # 0~1 and 1~2 are similar, 0 and 2 are not: 1 must not pull 2 into 0's cluster
    sim = {(0, 1), (1, 2)}
    rep = cluster_by_centers(3, np.array([[0, 1], [1, 2]]), np.array([3.0, 2.0, 1.0]),
                             lambda i, j: (min(i, j), max(i, j)) in sim)
    assert rep.tolist() == [0, 0, 2]


def test_minhash_stage_keeps_longest_and_names_representative(ctx):
    a = " ".join(BASE)
    df = frame([[("user", "Summarise the support policy"), ("assistant", variant(BASE, 1, 3))],
                [("user", "Summarise the support policy"), ("assistant", a + " Thank you.")],
                [("user", "Something else entirely please"), ("assistant", "Cooking pasta needs salted boiling water and patience.")]])
    res = MinHashDedup().apply(df, ctx)
    assert res.kept["_row"].to_list() == [1, 2]
    assert res.dropped.to_dicts() == [{"_row": 0, "reason": "near_dup:minhash", "rep_id": df["id"][1]}]


def test_embedding_near_dup(ctx):
    q = "How can I change the delivery address of an order I already placed?"
    a = "Open your orders, pick the order and choose Change address before it ships."
    df = frame([[("user", q), ("assistant", a)],
                [("user", q + " "), ("assistant", a + " Thanks!")],
                [("user", "What is the capital of Japan?"), ("assistant", "The capital of Japan is Tokyo, a very large city.")]])
    res = EmbedDedup(threshold=0.95).apply(df, ctx)
    assert res.kept["_row"].to_list() == [1, 2]
    assert res.dropped["reason"].to_list() == ["near_dup:embedding"]
