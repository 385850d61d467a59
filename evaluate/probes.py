"""Layer 3: forgetting probes. BIG-bench multiple choice scored by log-likelihood of each choice
(acc and length-normalised acc with standard errors), compared candidate vs prod per item with
McNemar's exact test."""

from __future__ import annotations

from pathlib import Path

from sftloop.evaluate import evalsets
from sftloop.evaluate.stats import mcnemar, stderr_binary

TASKS = evalsets.PROBE_TASKS  # declared once, in evalsets (decontamination reads the same items)


def load_task(task_root: Path, name: str, n: int | None, seed: int = 0) -> list[dict]:
    return evalsets.probe_task_items(name, n, seed, task_root)


def score(backend, items: list[dict]) -> list[dict]:
    pairs = [(it["context"].rstrip(" "), " " + c) for it in items for c in it["choices"]]
    ll = backend.loglik(pairs)
    out, k = [], 0
    for it in items:
        res = ll[k:k + len(it["choices"])]
        k += len(it["choices"])
        best = max(range(len(res)), key=lambda i: res[i][0])
        best_norm = max(range(len(res)), key=lambda i: res[i][0] / max(len(it["choices"][i]), 1))
        out.append({"id": it["id"], "correct": it["choices"][best] in it["gold"],
                    "correct_norm": it["choices"][best_norm] in it["gold"]})
    return out


def compare(cand: list[dict], prod: list[dict]) -> dict:
    n = len(cand)
    ca = sum(x["correct"] for x in cand) / n
    pa = sum(x["correct"] for x in prod) / n
    b, c, p = mcnemar([x["correct"] for x in cand], [x["correct"] for x in prod])
    return {"n": n, "candidate_acc": ca, "prod_acc": pa, "candidate_stderr": stderr_binary(ca, n),
            "prod_stderr": stderr_binary(pa, n),
            "candidate_acc_norm": sum(x["correct_norm"] for x in cand) / n,
            "prod_acc_norm": sum(x["correct_norm"] for x in prod) / n,
            "relative_drop": (pa - ca) / pa if pa > 0 else 0.0, "mcnemar": {"cand_only": b, "prod_only": c, "p": p}}
