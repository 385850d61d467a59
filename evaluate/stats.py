"""The statistics the gate rests on: bootstrap CIs over prompts, Wilson intervals, paired sign-flip tests, Holm, McNemar, KS."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def bootstrap_ci(values: list[float], n: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap over items (prompts)."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n, len(x)))].mean(axis=1)
    return float(x.mean()), float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def mean_ci(values: list[float], alpha: float = 0.05) -> tuple[float, float, float]:
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(x.mean())
    if len(x) < 2:
        return m, m, m
    se = float(x.std(ddof=1) / math.sqrt(len(x)))
    z = stats.norm.ppf(1 - alpha / 2)
    return m, m - z * se, m + z * se


def stderr_binary(acc: float, n: int) -> float:
    return math.sqrt(acc * (1 - acc) / n) if n else float("nan")


def mcnemar(a_correct: list[bool], b_correct: list[bool]) -> tuple[int, int, float]:
    """Exact McNemar test on paired correctness: (a right b wrong, a wrong b right, two-sided p)."""
    b = sum(1 for x, y in zip(a_correct, b_correct) if x and not y)
    c = sum(1 for x, y in zip(a_correct, b_correct) if not x and y)
    if b + c == 0:
        return b, c, 1.0
    return b, c, float(stats.binomtest(b, b + c, 0.5).pvalue)


def wilson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float, float]:
    """(proportion, low, high): Wilson score interval (never zero-width for 0 < n, unlike the bootstrap)."""
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    p = k / n
    z = float(stats.norm.ppf(1 - alpha / 2))
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return p, max(0.0, centre - half), min(1.0, centre + half)


def sign_flip_p(diffs: list[float], shift: float = 0.0, alternative: str = "less", n_resamples: int = 9999,
                seed: int = 0) -> float:
    """Paired permutation test on per-item differences: p-value for mean(diffs) < shift ("less") or > shift.

    Signs of (d - shift) are flipped (exact for up to 13 items, Monte Carlo beyond); no normality assumed,
    which matters for the bounded, lumpy judge scores on 2-12 items per category.
    """
    x = np.asarray(diffs, dtype=float) - shift
    if len(x) == 0:
        return float("nan")
    if np.all(x == 0):
        return 1.0
    if len(x) == 1:  # two sign patterns: the observed one and its flip
        worse = x[0] < 0 if alternative == "less" else x[0] > 0
        return 0.5 if worse else 1.0
    res = stats.permutation_test((x,), lambda a, axis=-1: np.mean(a, axis=axis), permutation_type="samples",
                                 alternative=alternative, n_resamples=n_resamples, random_state=seed, vectorized=True)
    return float(res.pvalue)


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm step-down adjusted p-values (family-wise error over the keys)."""
    order = sorted(pvalues, key=lambda k: pvalues[k])
    m, out, running = len(order), {}, 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * pvalues[k]))
        out[k] = running
    return out


def min_detectable_diff(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean difference a paired test on n items detects with the given power (normal approx.)."""
    if n < 2 or not math.isfinite(sd):
        return float("nan")
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * sd / math.sqrt(n))


def entropy_bits(labels: list[str]) -> float:
    """Shannon entropy of the label distribution (0 = the judge always says the same thing)."""
    if not labels:
        return float("nan")
    counts = np.unique(np.asarray(labels), return_counts=True)[1] / len(labels)
    return max(0.0, float(-(counts * np.log2(counts)).sum()))


def ks_2samp(a: list[float], b: list[float]) -> tuple[float, float]:
    """(KS statistic, p) of two samples (output lengths candidate vs prod)."""
    if len(a) < 2 or len(b) < 2:
        return float("nan"), float("nan")
    r = stats.ks_2samp(a, b)
    return float(r.statistic), float(r.pvalue)
