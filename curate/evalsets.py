"""The texts the gate evaluates, read from the assets and golden/ (never from evaluate's code).

Decontamination drops training rows that overlap any of them.
"""

from __future__ import annotations

import json
from pathlib import Path

from sftloop import assets
from sftloop.settings import repo_root


def mtbench_items() -> list[tuple[str, str]]:
    p = assets.path("mtbench") / "mt_bench" / "question.jsonl"
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        for t, text in enumerate(q["turns"], start=1):
            out.append((f"mtbench:{q['question_id']}:{t}", text))
    return out


def ifbench_items() -> list[tuple[str, str]]:
    out = []
    for line in assets.path("ifbench").read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        out.append((f"ifbench:{q['key']}", q["prompt"]))
    return out


def golden_items(root: Path | None = None) -> list[tuple[str, str]]:
    """User turns of our own golden items (golden/items/*.jsonl), when the gate issue has written them."""
    out = []
    for p in sorted(((root or repo_root()) / "golden").glob("items/*.jsonl")):
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                text = "\n\n".join(m["content"] for m in item.get("messages", []) if m.get("role") == "user")
                if text:
                    out.append((f"golden:{item['id']}", text))
    return out


SETS = {"mtbench": mtbench_items, "ifbench": ifbench_items, "golden": golden_items}


def load(names: list[str]) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for n in names:
        if n not in SETS:
            raise ValueError(f"unknown eval set {n!r} (known: {sorted(SETS)})")
        items.extend(SETS[n]())
    return items
