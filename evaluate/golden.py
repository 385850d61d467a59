"""Layer 1 data: the frozen golden set (our support items + MT-Bench turn 1 + IFBench prompts by id).

`golden/MANIFEST.json` holds the sha256 of the *resolved* set (our items plus the asset texts they
reference). The gate refuses to run when the set changed without `just golden-freeze`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sftloop.evaluate import evalsets


class GoldenChanged(RuntimeError):
    pass


class GoldenItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    category: str
    messages: list[dict[str, str]]
    reference: str | None = None
    checks: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)


def load_items(root: Path) -> list[GoldenItem]:
    """Our items plus the MT-Bench turn-1 / IFBench items referenced by id, read through `evalsets`."""
    items: list[GoldenItem] = []
    for p, n, line in evalsets.golden_lines(root):
        try:
            items.append(GoldenItem.model_validate_json(line))
        except Exception as e:  # noqa: BLE001
            raise GoldenChanged(f"{p}:{n}: invalid golden item: {e}") from None
    ext = evalsets.golden_external(root)
    refs = {qid: turns[0] for qid, turns in evalsets.mtbench_references().items()}
    questions = {q["question_id"]: q for q in evalsets.mtbench_questions()}
    for qid in ext.get("mtbench_question_ids", []):
        q = questions[qid]
        items.append(GoldenItem(id=f"mtbench-{qid}", category=f"mtbench:{q['category']}",
                                messages=[{"role": "user", "content": q["turns"][0]}], reference=refs.get(qid),
                                tags=["mtbench"]))
    ifb = {r["key"]: r for r in evalsets.ifbench_rows()}
    for key in ext.get("ifbench_keys", []):
        r = ifb[key]
        items.append(GoldenItem(id=f"ifbench-{key}", category="ifbench", messages=[{"role": "user", "content": r["prompt"]}],
                                checks={"ifbench": {"instruction_id_list": r["instruction_id_list"], "kwargs": r["kwargs"]}},
                                tags=["ifbench"]))
    return items


def resolved_sha(items: list[GoldenItem]) -> str:
    blob = json.dumps([i.model_dump() for i in items], sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def verify_frozen(root: Path) -> tuple[list[GoldenItem], dict]:
    manifest_p = root / "golden" / "MANIFEST.json"
    if not manifest_p.exists():
        raise GoldenChanged(f"{manifest_p} is missing; run `just golden-freeze`")
    manifest = json.loads(manifest_p.read_text())
    items = load_items(root)
    sha = resolved_sha(items)
    if sha != manifest["sha256"]:
        raise GoldenChanged(f"the golden set changed (sha256 {sha[:12]} != frozen {manifest['sha256'][:12]}, "
                            f"version {manifest['version']}); review the change and run `just golden-freeze`")
    return items, manifest


def freeze(root: Path, note: str = "") -> dict:
    items = load_items(root)
    manifest_p = root / "golden" / "MANIFEST.json"
    old = json.loads(manifest_p.read_text()) if manifest_p.exists() else {"version": 0}
    sha = resolved_sha(items)
    if old.get("sha256") == sha:
        return old
    cats: dict[str, int] = {}
    for i in items:
        cats[i.category.split(":")[0]] = cats.get(i.category.split(":")[0], 0) + 1
    manifest = {"version": old["version"] + 1, "sha256": sha, "items": len(items), "categories": dict(sorted(cats.items()))}
    manifest_p.write_text(json.dumps(manifest, indent=2) + "\n")
    with open(root / "golden" / "CHANGELOG.md", "a", encoding="utf-8") as f:
        f.write(f"- v{manifest['version']} {dt.date.today().isoformat()} sha256 {sha[:12]} items {len(items)}"
                f"{' — ' + note if note else ''}\n")
    return manifest
