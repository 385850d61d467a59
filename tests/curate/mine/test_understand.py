import numpy as np

from sftloop.curate.mine.understand import cluster, distinctive_terms, embedding_drift, judge_trend, length_shift, per_category


def test_clusters_and_their_terms(minilm):
    texts = ["Where is my refund for the returned shoes?", "My refund has not arrived yet", "Refund still missing after return",
             "How do I reset my password?", "I forgot my password and cannot log in", "Password reset link does not work"]
    emb = minilm.encode(texts, normalize_embeddings=True)
    labels = cluster(emb, k=2, seed=0)
    assert len(set(labels[:3])) == 1 and len(set(labels[3:])) == 1 and labels[0] != labels[3]
    terms = distinctive_terms(texts, labels, top=2)
    assert "refund" in terms[labels[0]] and "password" in terms[labels[3]]


def test_drift_measures(minilm):
    train = minilm.encode(["How do I track my order?", "Where is my package?", "Can I return an item?"], normalize_embeddings=True)
    near = minilm.encode(["Where is my parcel?"], normalize_embeddings=True)
    far = minilm.encode(["Write a sonnet about quantum chromodynamics"], normalize_embeddings=True)
    d_near, d_far = embedding_drift(near, train), embedding_drift(far, train)
    assert d_near["mean_nn_cos"] > d_far["mean_nn_cos"] + 0.3 and d_far["share_far"] == 1.0 and d_near["share_far"] == 0.0
    rng = np.random.default_rng(0)
    same = length_shift(list(rng.integers(50, 150, 200)), list(rng.integers(50, 150, 200)))
    shifted = length_shift(list(rng.integers(150, 300, 200)), list(rng.integers(50, 150, 200)))
    assert same["p"] > 0.01 and shifted["p"] < 1e-6


def test_judge_trend_alert_and_category_collapse():
    t = judge_trend({"2026-W45": 0.80, "2026-W46": 0.82, "2026-W47": 0.74}, "2026-W47")
    assert t["alert"] and abs(t["relative_drop"] - (0.81 - 0.74) / 0.81) < 1e-9
    assert not judge_trend({"2026-W46": 0.80, "2026-W47": 0.79}, "2026-W47")["alert"]
    cats = per_category(["refund"] * 10 + ["order"] * 90, [True] * 8 + [False] * 2 + [False] * 90, {"refund": 0.1, "order": 0.0})
    assert cats["refund"]["failure_rate"] == 0.8 and abs(cats["refund"]["change"] - 0.7) < 1e-9
