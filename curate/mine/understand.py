"""Understanding flagged rows: clusters with distinctive terms, drift against the training data,
the weekly judge-score trend and a per-category view."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
from scipy import stats
from scipy.cluster.vq import kmeans2

WORD = re.compile(r"[a-z][a-z'-]{2,}")
STOP = set("the and for you your with that this are was have has can not but from what how when where which who "
           "will would should could about into there their they them then than also just like any all our out get "
           "please thanks thank hello".split())


def cluster(emb: np.ndarray, k: int | None = None, seed: int = 0) -> np.ndarray:
    """k-means (scipy kmeans2, k-means++ init) on L2-normalised embeddings; k defaults to ~sqrt(n/2)."""
    n = len(emb)
    if n == 0:
        return np.zeros(0, dtype=int)
    k = k or max(1, min(n, round(math.sqrt(n / 2))))
    if k == 1:
        return np.zeros(n, dtype=int)
    _, labels = kmeans2(emb.astype(np.float64), k, minit="++", seed=seed)
    return labels


def distinctive_terms(texts: list[str], labels: np.ndarray, top: int = 5) -> dict[int, list[str]]:
    """Class-based TF-IDF: terms frequent in a cluster and rare across clusters."""
    per: dict[int, Counter] = {}
    for t, lab in zip(texts, labels.tolist()):
        per.setdefault(lab, Counter()).update(w for w in WORD.findall(t.lower()) if w not in STOP)
    n_clusters = len(per)
    df = Counter(w for c in per.values() for w in c)
    out = {}
    for lab, c in per.items():
        total = sum(c.values()) or 1
        scored = {w: (f / total) * math.log(1 + n_clusters / df[w]) for w, f in c.items()}
        out[lab] = [w for w, _ in sorted(scored.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]
    return out


def embedding_drift(week: np.ndarray, train: np.ndarray, far: float = 0.5, block: int = 2048) -> dict:
    """Nearest-training-neighbour cosine of each prompt (blockwise): mean, and share below `far`."""
    if len(week) == 0 or len(train) == 0:
        return {"n": len(week), "mean_nn_cos": float("nan"), "share_far": float("nan")}
    best = np.full(len(week), -1.0)
    for j in range(0, len(train), block):
        best = np.maximum(best, (week @ train[j:j + block].T).max(axis=1))
    hist, edges = np.histogram(best, bins=10, range=(-0.0, 1.0))
    return {"n": len(week), "mean_nn_cos": float(best.mean()), "share_far": float((best < far).mean()), "far_threshold": far,
            "nn_cos_histogram": {f"{edges[i]:.1f}-{edges[i + 1]:.1f}": int(h) for i, h in enumerate(hist)}}


def length_shift(this_week: list[int], reference: list[int]) -> dict:
    """Two-sample Kolmogorov-Smirnov test on output lengths (scipy)."""
    if not this_week or not reference:
        return {"ks": float("nan"), "p": float("nan")}
    r = stats.ks_2samp(this_week, reference)
    return {"ks": float(r.statistic), "p": float(r.pvalue), "median_now": float(np.median(this_week)),
            "median_ref": float(np.median(reference))}


def judge_trend(weekly_means: dict[str, float], week: str, max_drop: float = 0.05) -> dict:
    """This week's judge-score mean against the mean of the previous weeks; alert on a relative drop > max_drop."""
    prev = [v for w, v in sorted(weekly_means.items()) if w < week and not math.isnan(v)]
    cur = weekly_means.get(week, float("nan"))
    base = float(np.mean(prev)) if prev else float("nan")
    drop = (base - cur) / base if prev and base else float("nan")
    return {"week": week, "mean": cur, "previous_mean": base, "relative_drop": drop,
            "alert": bool(not math.isnan(drop) and drop > max_drop), "weekly": dict(sorted(weekly_means.items()))}


def per_category(categories: list[str | None], flagged: list[bool], prev_rates: dict[str, float] | None = None) -> dict:
    """Failure rate per category (and its change): a category can collapse while the total looks stable."""
    out: dict[str, dict] = {}
    for cat, f in zip(categories, flagged):
        d = out.setdefault(cat or "unknown", {"n": 0, "flagged": 0})
        d["n"] += 1
        d["flagged"] += int(f)
    for cat, d in out.items():
        d["failure_rate"] = d["flagged"] / d["n"]
        if prev_rates and cat in prev_rates:
            d["change"] = d["failure_rate"] - prev_rates[cat]
    return out


def disagreement(emb: np.ndarray) -> float:
    """1 - mean pairwise cosine among N sampled answers (L2-normalised embeddings): 0 = all alike."""
    n = len(emb)
    if n < 2:
        return float("nan")
    sims = emb @ emb.T
    return float(1 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))
