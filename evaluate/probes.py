"""Layer 3: forgetting probes. BIG-bench multiple choice scored by log-likelihood of each choice
(acc and length-normalised acc with standard errors), compared candidate vs prod per item with
McNemar's exact test."""

from __future__ import annotations

import json
import random
from pathlib import Path

from evaluate.stats import mcnemar, stderr_binary

TASKS = {
    "arithmetic": "arithmetic/2_digit_addition",
    "date_understanding": "date_understanding",
    "logical_deduction": "logical_deduction/three_objects",
    "general_knowledge": "general_knowledge",
    "sports_understanding": "sports_understanding",
}


def load_task(task_root: Path, name: str, n: int | None, seed: int = 0) -> list[dict]:
    data = json.loads((task_root / TASKS[name] / "task.json").read_text())
    prefix = data.get("task_prefix", "")
    in_pre = data.get("example_input_prefix", "\nQ: ")
    out_pre = data.get("example_output_prefix", "\nA: ")
    items = []
    for k, ex in enumerate(data["examples"]):
        scores = ex.get("target_scores") or {}
        if not scores or max(scores.values()) <= 0:
            continue
        choices = list(scores)
        items.append({"id": f"{name}-{k}", "context": f"{prefix}{in_pre}{ex['input']}{out_pre}".lstrip(),
                      "choices": choices, "gold": [c for c in choices if scores[c] == max(scores.values())]})
    if n is not None and n < len(items):
        items = random.Random(seed).sample(items, n)
        items.sort(key=lambda x: int(x["id"].rsplit("-", 1)[1]))
    return items


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
