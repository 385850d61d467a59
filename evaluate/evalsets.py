"""The one eval-set reader: every text the gate evaluates, read from the assets and golden/ here only.

The gate's loaders (`golden.load_items`, `probes.load_task`, `judge.hhh_pairs`) read their files
through the functions below, and decontamination (`curate/stages/decontaminate.py`) reads the same
sets through `load`, so the two cannot drift apart. Each set is declared once in `SETS`
(name -> reader giving `EvalItem`s: the gate's item id plus every text of the item).

Which probe items and calibration pairs: the gate scores a seeded sample (`probe_items`,
`calibration_pairs` of a profile in `configs/gate.toml`, 0 = all); the sets here hold every item of
those tasks and every pair, a superset of what any profile scores. Light to import: no torch,
no model code.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sftloop import assets
from sftloop.settings import repo_root

# BIG-bench multiple-choice tasks the gate probes (layer 3): name -> task directory.
PROBE_TASKS: dict[str, str] = {
    "arithmetic": "arithmetic/2_digit_addition",
    "date_understanding": "date_understanding",
    "logical_deduction": "logical_deduction/three_objects",
    "general_knowledge": "general_knowledge",
    "sports_understanding": "sports_understanding",
}
# bigbench hhh_alignment subtasks: the human preference pairs of the judge calibration (layer 2).
CALIBRATION_SUBTASKS = ("harmless", "helpful", "honest", "other")

# Kinds of text an item carries. `prompt`: what the model is asked (a user turn, a probe question);
# `system`: a system turn; `reference`: a reference answer; `target`: a probe's correct choice;
# `choice`: any other probe choice; `response`: an answer of a calibration pair or an assistant turn.
KINDS = ("prompt", "system", "reference", "target", "choice", "response")


@dataclass(frozen=True)
class EvalText:
    kind: str
    text: str


@dataclass(frozen=True)
class EvalItem:
    set: str
    id: str  # the id the gate uses for it (golden item id, probe item id, calibration pair id)
    texts: tuple[EvalText, ...]

    def of(self, *kinds: str) -> list[str]:
        return [t.text for t in self.texts if t.kind in kinds]


# ---- raw readers (the gate's loaders use these) ----

def _jsonl(p: Path) -> list[dict]:
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}:{n}: invalid JSON: {e}") from None
    return out


def mtbench_questions() -> list[dict]:
    """MT-Bench question rows (question_id, category, turns)."""
    return _jsonl(assets.path("mtbench") / "mt_bench" / "question.jsonl")


def mtbench_references() -> dict[int, list[str]]:
    """question_id -> the GPT-4 reference answer turns (30 questions have one)."""
    rows = _jsonl(assets.path("mtbench") / "mt_bench" / "reference_answer" / "gpt-4.jsonl")
    return {r["question_id"]: list(r["choices"][0]["turns"]) for r in rows}


def ifbench_rows() -> list[dict]:
    """IFBench rows (key, prompt, instruction_id_list, kwargs)."""
    return _jsonl(assets.path("ifbench"))


def golden_lines(root: Path | None = None) -> list[tuple[Path, int, str]]:
    """(file, line number, line) of every non-empty line of golden/items/*.jsonl (our own items)."""
    out = []
    for p in sorted(((root or repo_root()) / "golden").glob("items/*.jsonl")):
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                out.append((p, n, line))
    return out


def golden_external(root: Path | None = None) -> dict:
    """golden/external.json: the MT-Bench question ids and IFBench keys the golden set references."""
    return json.loads(((root or repo_root()) / "golden" / "external.json").read_text())


def probe_task_items(name: str, n: int | None = None, seed: int = 0, task_root: Path | None = None) -> list[dict]:
    """Items of one probe task as the gate scores them: id, context, choices, gold (+ input, target).

    `n`: a seeded sample of n items (the gate's `probe_items`); None: all of them."""
    task_root = task_root or assets.path("bigbench-probes")
    data = json.loads((task_root / PROBE_TASKS[name] / "task.json").read_text())
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
                      "choices": choices, "gold": [c for c in choices if scores[c] == max(scores.values())],
                      "input": ex["input"]})
    if n is not None and n < len(items):
        items = random.Random(seed).sample(items, n)
        items.sort(key=lambda x: int(x["id"].rsplit("-", 1)[1]))
    return items


def calibration_pairs(limit: int | None = None, task_dir: Path | None = None) -> list[dict]:
    """Human-written preference pairs from bigbench hhh_alignment: id, subtask, question, preferred, other.

    `limit`: an even spread of that many pairs (the gate's `calibration_pairs`); None: all."""
    task_dir = task_dir or assets.path("bigbench-probes")
    pairs = []
    for sub in CALIBRATION_SUBTASKS:
        data = json.loads((task_dir / "hhh_alignment" / sub / "task.json").read_text())
        for k, ex in enumerate(data["examples"]):
            opts = sorted(ex["target_scores"].items(), key=lambda kv: -kv[1])
            if len(opts) >= 2 and opts[0][1] > opts[1][1]:
                q = ex["input"].strip()
                pairs.append({"id": f"hhh-{sub}-{k}", "subtask": sub, "question": q,
                              "preferred": opts[0][0], "other": opts[1][0]})
    pairs.sort(key=lambda p: (p["subtask"], p["question"]))
    if limit:
        step = max(1, len(pairs) // limit)
        pairs = pairs[::step][:limit]
    return pairs


# ---- the sets (decontamination reads these) ----

def golden_set(root: Path | None = None) -> list[EvalItem]:
    """Our own golden items: every turn (system, user, assistant) and the reference.

    The MT-Bench / IFBench items the golden set references by id are the `mtbench` / `ifbench` sets."""
    role_kind = {"system": "system", "user": "prompt", "assistant": "response"}
    out = []
    for p, n, line in golden_lines(root):
        try:
            item = json.loads(line)
            texts = [EvalText(role_kind.get(m["role"], "prompt"), m["content"]) for m in item.get("messages", [])]
            if item.get("reference"):
                texts.append(EvalText("reference", item["reference"]))
            out.append(EvalItem("golden", str(item["id"]), tuple(t for t in texts if t.text.strip())))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{p}:{n}: invalid golden item: {type(e).__name__}: {e}") from None
    return out


def mtbench_set(root: Path | None = None) -> list[EvalItem]:
    """All 80 MT-Bench questions: both turns and both reference-answer turns. Ids as the golden set's."""
    refs = mtbench_references()
    out = []
    for q in mtbench_questions():
        texts = [EvalText("prompt", t) for t in q["turns"]]
        texts += [EvalText("reference", t) for t in refs.get(q["question_id"], []) if t.strip()]
        out.append(EvalItem("mtbench", f"mtbench-{q['question_id']}", tuple(texts)))
    return out


def ifbench_set(root: Path | None = None) -> list[EvalItem]:
    return [EvalItem("ifbench", f"ifbench-{r['key']}", (EvalText("prompt", r["prompt"]),)) for r in ifbench_rows()]


def probes_set(root: Path | None = None) -> list[EvalItem]:
    """Every item of every probe task: the question (without the task's shared prefix), targets, choices."""
    out = []
    for task in PROBE_TASKS:
        for it in probe_task_items(task):
            texts = [EvalText("prompt", it["input"])]
            texts += [EvalText("target" if c in it["gold"] else "choice", c) for c in it["choices"]]
            out.append(EvalItem("probes", it["id"], tuple(texts)))
    return out


def calibration_set(root: Path | None = None) -> list[EvalItem]:
    return [EvalItem("calibration", p["id"], (EvalText("prompt", p["question"]), EvalText("response", p["preferred"]),
                                               EvalText("response", p["other"])))
            for p in calibration_pairs()]


SETS: dict[str, Callable[[Path | None], list[EvalItem]]] = {
    "golden": golden_set, "mtbench": mtbench_set, "ifbench": ifbench_set,
    "probes": probes_set, "calibration": calibration_set,
}


def load(names: list[str] | None = None, root: Path | None = None) -> list[EvalItem]:
    """The items of the named sets (all sets when None), in declaration order."""
    names = list(SETS) if names is None else names
    items: list[EvalItem] = []
    for n in names:
        if n not in SETS:
            raise ValueError(f"unknown eval set {n!r} (known: {sorted(SETS)})")
        items.extend(SETS[n](root))
    return items
