import json
import shutil
from pathlib import Path

import pytest

from evaluate import golden as G
from evaluate.checks import run_checks
from evaluate.stats import bootstrap_ci, mcnemar

ROOT = Path(__file__).parents[2]


def test_checks():
    c = {"json_schema": {"type": "object", "required": ["order_id"]}, "must_not_include": ["guarantee"], "max_words": 5}
    assert run_checks(c, '```json\n{"order_id": "#W1"}\n```') == {"json_schema": True, "must_not_include": True, "max_words": True}
    assert run_checks(c, "Sure! I guarantee the order id is #W1 for you today") == {
        "json_schema": False, "must_not_include": False, "max_words": False}
    assert run_checks({"must_include_any": ["Refund", "return"]}, "start a RETURN")["must_include_any"]


def test_stats():
    m, lo, hi = bootstrap_ci([1.0] * 30 + [0.0] * 10)
    assert m == 0.75 and lo < 0.75 < hi and hi - lo < 0.35
    assert mcnemar([True] * 10, [True] * 10) == (0, 0, 1.0)
    b, c, p = mcnemar([True] * 20, [False] * 12 + [True] * 8)
    assert (b, c) == (12, 0) and p < 0.001


def test_golden_set_is_frozen_and_complete():
    items, manifest = G.verify_frozen(ROOT)
    support = [i for i in items if "support" in i.tags]
    assert len(support) >= 120
    assert {i.category for i in support} >= {"account", "order", "refund", "shipping", "payment", "subscription", "contact",
                                              "feedback", "invoice", "cancellation", "registration"}
    assert sum("mtbench" in i.tags for i in items) == 80 and sum("ifbench" in i.tags for i in items) == 294
    assert manifest["items"] == len(items)
    # MT-Bench/IFBench texts are referenced by id, never copied into the repo
    first_q = next(i for i in items if i.id == "mtbench-81").messages[0]["content"]
    for p in (ROOT / "golden").rglob("*"):
        if p.is_file():
            assert first_q[:60] not in p.read_text(errors="ignore")


def test_changed_golden_set_is_refused_until_frozen(tmp_path):
    shutil.copytree(ROOT / "golden", tmp_path / "golden")
    p = tmp_path / "golden" / "items" / "support.jsonl"
    lines = p.read_text().splitlines()
    item = json.loads(lines[0])
    item["reference"] += " (edited)"
    p.write_text("\n".join([json.dumps(item)] + lines[1:]) + "\n")
    with pytest.raises(G.GoldenChanged, match="golden-freeze"):
        G.verify_frozen(tmp_path)
    m = G.freeze(tmp_path, "edited one reference")
    assert m["version"] == 2
    G.verify_frozen(tmp_path)
    assert "v2" in (tmp_path / "golden" / "CHANGELOG.md").read_text().splitlines()[-1]


def test_ifbench_checkers_run_without_punkt():
    from evaluate.ifbench import check
    from sftloop import assets

    row = next(json.loads(line) for line in assets.path("ifbench").read_text().splitlines()
               if json.loads(line)["instruction_id_list"] == ["count:keywords_multiple"])
    kw = row["kwargs"][0]
    words = [kw["keyword1"]] + [kw["keyword2"]] * 2 + [kw["keyword3"]] * 3 + [kw["keyword4"]] * 5 + [kw["keyword5"]] * 7
    good = "Here is my answer. " + " ".join(f"A {w} appears." for w in words)
    assert check(row["prompt"], row, good)["strict"] is True
    assert check(row["prompt"], row, "A short answer without the keywords.")["strict"] is False
    # with the punkt-free tokenizers, all but the checkers needing a POS tagger/stopwords run (276 of 294 measured)
    rows = [json.loads(line) for line in assets.path("ifbench").read_text().splitlines()]
    evaluated = sum(check(r["prompt"], r, "One sentence here. Another one follows.")["strict"] is not None for r in rows)
    assert evaluated >= 270
