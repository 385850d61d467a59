"""The real gate code path (CLI, backends, judge, rules, reports) against FAKE OpenAI-compatible
endpoints on 127.0.0.1 (tests/evaluate/fake_openai.py): pathological judges are inconclusive, never
a pass; a hanging endpoint is exit 2 within the deadline; MT-Bench turn 2 is generated and judged."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from sftloop.evaluate.__main__ import main
from fake_openai import FakeOpenAI

ROOT = Path(__file__).parents[2]

PROFILE = """
[judge]
model = "{judge}"

[profiles.full]
golden_support = 6
golden_mtbench = 2
golden_ifbench = 1
max_new_tokens = 16
calibration_pairs = 8
injection_cases = 4
request_timeout_s = {timeout}
max_retries = 0
gate_deadline_s = {deadline}
rules = {{ format_compliance = 0.0, min_items = 2 }}

[profiles.demo]
golden_support = 6
golden_mtbench = 2
golden_ifbench = 1
max_new_tokens = 16
calibration_pairs = 8
injection_cases = 4
rules = {{ format_compliance = 0.0, min_items = 2 }}
non_blocking = ["judge calibration", "judge position bias", "judge verdict entropy", "judge error rate",
                "judge injection", "golden non-inferiority", "golden per category", "pairwise win rate",
                "probes", "false refusal"]
"""


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("fakegate")
    shutil.copytree(ROOT / "golden", root / "golden")
    with FakeOpenAI() as f:
        (root / "models.toml").write_text(f.registry())
        f.root = root
        yield f


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SFTLOOP_CACHE", str(tmp_path / "cache"))


def gate(fake, judge: str, profile: str, cand: str = "cand", timeout: float = 10, deadline: float = 120,
         reports: str = "reports") -> tuple[int, dict, str]:
    cfg = fake.root / f"{judge}-{timeout}-{deadline}.toml"
    cfg.write_text(PROFILE.format(judge=judge, timeout=timeout, deadline=deadline))
    rc = main(["gate", cand, "prod", "--profile", profile, "--config", str(cfg), "--root", str(fake.root),
               "--reports", reports])
    out = sorted((fake.root / "reports").glob("gate-*"))[-1]
    return rc, json.loads((out / "verdict.json").read_text()), (out / "report.md").read_text()


def outcome(v: dict, name: str) -> dict:
    return next(c for c in v["checks"] if c["name"] == name)


@pytest.mark.parametrize("judge", ["judge_constant", "judge_ties", "judge_noverdict"])
def test_fake_pathological_judge_is_inconclusive_in_full(fake, judge, capsys):
    rc, v, md = gate(fake, judge, "full")
    assert rc == 2 and v["verdict"] == "inconclusive"
    pw = outcome(v, "pairwise win-rate CI low")
    assert pw["outcome"] == "inconclusive" and "judge is not trusted" in pw["fix"]
    assert outcome(v, "golden score non-inferiority")["outcome"] == "inconclusive"
    why = {"judge_constant": "judge verdict entropy", "judge_ties": "judge verdict entropy",
           "judge_noverdict": "judge error rate"}[judge]
    assert outcome(v, why)["outcome"] == "inconclusive"
    err = capsys.readouterr().err
    assert f"inconclusive: {outcome(v, why)['name']}: " in err  # the line saying what is missing and what fixes it
    d = v["details"]["pairwise"]
    if judge == "judge_noverdict":  # no verdict token is an error, never a tie
        assert d["errors"] == d["judged"] > 0 and d["ties"] == 0 and v["details"]["golden"]["grading_errors"] > 0
    elif judge == "judge_constant":  # always A: the orders disagree, unknown, not ties
        assert d["inconsistent"] == d["judged"] > 0 and d["ties"] == 0
    else:
        assert d["ties"] == d["judged"] > 0 and d["ci95"][0] == d["ci95"][1]
    assert "INCONCLUSIVE" in md and "Inconclusive (blocking) — evidence missing:" in md


@pytest.mark.parametrize("judge", ["judge_constant", "judge_noverdict"])
def test_fake_pathological_judge_in_demo_says_no_information_in_bold(fake, judge):
    rc, v, md = gate(fake, judge, "demo")
    assert rc == 0 and v["verdict"] == "pass"  # format compliance (threshold 0 here) is the only blocking rule
    assert "**The pairwise (judge) layer carried no information:" in md
    assert outcome(v, "pairwise win-rate CI low")["outcome"] == "inconclusive"
    assert "INCONCLUSIVE (non-blocking)" in md
    assert "It cannot tell which answer is better:" in md  # what the judge can and cannot tell, plainly


def test_mtbench_turn2_generated_with_own_answer_and_judged(fake):
    fake.requests.clear()
    rc, v, md = gate(fake, "judge_ties", "demo")
    chats = [r for r in fake.requests if not r.get("logprobs") and r["model"] in ("cand", "prod")]
    turn2 = [r for r in chats if len(r["messages"]) == 3]
    assert len(turn2) == 4  # 2 MT-Bench questions x 2 models
    for r in turn2:
        first = r["messages"][1]
        assert first["role"] == "assistant"
        assert first["content"].startswith({"cand": "Candidate (turn 1)", "prod": "Prod reply for turn 1"}[r["model"]])
    judged = [r for r in fake.requests if r.get("logprobs") and "[user, turn 2]" in r["messages"][0]["content"]]
    assert judged and all("[turn 2] Candidate (turn 2)" in r["messages"][0]["content"] for r in judged)
    turns = v["details"]["turns"]
    assert turns["1"]["answers"] == 9 and turns["2"]["answers"] == 2
    assert "| 2 | 2 |" in md


def test_hanging_endpoint_exits_2_within_the_deadline_naming_it(fake, capsys):
    t = time.monotonic()
    rc, v, _ = gate(fake, "judge_ties", "full", cand="hang", timeout=1, deadline=4)
    assert rc == 2 and v["verdict"] == "error"
    assert time.monotonic() - t < 20
    assert fake.url in v["error"] and "model hang" in v["error"]


def test_reports_under_a_regular_file_exit_2(fake, capsys):
    (fake.root / "afile").write_text("x")
    cfg = fake.root / "r.toml"
    cfg.write_text(PROFILE.format(judge="judge_ties", timeout=10, deadline=60))
    rc = main(["gate", "cand", "prod", "--profile", "demo", "--config", str(cfg), "--root", str(fake.root),
               "--reports", "afile/reports"])
    assert rc == 2
    assert "afile/reports" in capsys.readouterr().err


def test_misspelled_rule_in_profile_exits_2_naming_it(fake, capsys):
    cfg = fake.root / "bad.toml"
    cfg.write_text(PROFILE.format(judge="judge_ties", timeout=10, deadline=60).replace(
        '"probes", "false refusal"]', '"probes", "false refusals"]'))
    rc = main(["gate", "cand", "prod", "--profile", "demo", "--config", str(cfg), "--root", str(fake.root)])
    assert rc == 2
    v = json.loads((sorted((fake.root / "reports").glob("gate-*"))[-1] / "verdict.json").read_text())
    assert "unknown rule 'false refusals'" in v["error"] and "bad.toml" in v["error"]


def test_hanging_endpoint_cli_process_exits_2_promptly(fake, tmp_path):
    """As a process: a request still hanging at the deadline does not keep the interpreter alive."""
    import os
    import subprocess
    import sys

    cfg = fake.root / "hang-cli.toml"
    cfg.write_text(PROFILE.format(judge="judge_ties", timeout=120, deadline=3).replace("max_retries = 0", "max_retries = 3"))
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "sftloop.evaluate", "gate", "hang", "prod", "--profile", "full", "--config", str(cfg),
                        "--root", str(fake.root)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "SFTLOOP_CACHE": str(tmp_path / "c")})
    wall = time.monotonic() - t
    assert r.returncode == 2, r.stderr[-2000:]
    assert "deadline of 3 s passed" in r.stderr and fake.url in r.stderr
    assert wall < 60
