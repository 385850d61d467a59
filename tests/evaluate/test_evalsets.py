import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sftloop.evaluate import evalsets, golden as G, judge as J, probes as P
from sftloop.evaluate.gate import load_gate_config, select_golden
from sftloop import assets

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def reader_items():
    return {(i.set, i.id): i for i in evalsets.load(None, ROOT)}


def test_every_item_the_gate_scores_is_in_the_eval_set_reader(reader_items):
    ids = {i for _, i in reader_items}
    cfg = tomllib.loads((ROOT / "evaluate" / "configs" / "gate.toml").read_text())
    items, _ = G.verify_frozen(ROOT)
    for profile in cfg["profiles"]:
        _, prof = load_gate_config(profile=profile)
        chosen = select_golden(items, prof)
        assert {i.id for i in chosen} <= ids
        for task in P.TASKS:
            scored = P.load_task(assets.path("bigbench-probes"), task, prof["probe_items"])
            assert scored and {it["id"] for it in scored} <= ids
        cal = J.hhh_pairs(assets.path("bigbench-probes"), prof["calibration_pairs"] or None)
        assert cal and {p["id"] for p in cal} <= ids
    # and the texts are the same ones the gate shows the model
    q = next(i for i in items if i.id == "mtbench-81")
    assert q.messages[0]["content"] in reader_items[("mtbench", "mtbench-81")].of("prompt")
    assert q.reference is None or q.reference in reader_items[("mtbench", "mtbench-81")].of("reference")


def test_sets_hold_every_text_of_an_item(reader_items):
    counts = {}
    for s, _ in reader_items:
        counts[s] = counts.get(s, 0) + 1
    assert counts["mtbench"] == 80 and counts["ifbench"] == 294 and counts["golden"] >= 120
    assert counts["probes"] == sum(len(P.load_task(assets.path("bigbench-probes"), t, None)) for t in P.TASKS)
    assert counts["calibration"] == len(J.hhh_pairs(assets.path("bigbench-probes")))
    mt = reader_items[("mtbench", "mtbench-101")]  # a math question with a reference answer: 2 turns + 2 refs
    assert len(mt.of("prompt")) == 2 and len(mt.of("reference")) == 2
    probe = reader_items[("probes", "arithmetic-0")]
    assert probe.of("prompt") == ["What is 80 plus 29?"] and probe.of("target") == ["109"] and "banana" in probe.of("choice")
    sup = next(i for (s, _), i in reader_items.items() if s == "golden")
    assert sup.of("system") and sup.of("prompt") and sup.of("reference")


def test_invalid_golden_line_names_file_and_line(tmp_path):
    (tmp_path / "golden" / "items").mkdir(parents=True)
    (tmp_path / "golden" / "items" / "support.jsonl").write_text(
        json.dumps({"id": "sup-1", "messages": [{"role": "user", "content": "Where is my refund?"}]}) + "\n{broken\n")
    with pytest.raises(ValueError, match=r"support.jsonl:2: invalid golden item"):
        evalsets.golden_set(tmp_path)
    with pytest.raises(ValueError, match="unknown eval set 'nope'"):
        evalsets.load(["nope"])


def test_reader_imports_without_torch():
    code = "import sys, evaluate.evalsets; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
