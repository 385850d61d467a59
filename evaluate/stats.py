"""The statistics the gate rests on: bootstrap CIs over prompts, normal CIs of means, McNemar."""

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
