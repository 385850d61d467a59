"""The gate report answers its reader's questions: a real gate run (CLI, rules, report writer) with a
FAKE candidate and judge on 127.0.0.1 (tests/evaluate/fake_openai.py; a candidate that asks for a
password cannot be trained here in seconds), rendered in headless Debian chromium: the why-line,
prod's values next to the candidate's, 95% intervals, failed checks by item, worst and
safety-flagged answers are visible; report.md carries the same content."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from sftloop.evaluate.__main__ import main
from fake_openai import FakeOpenAI

ROOT = Path(__file__).parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

PROFILE = """
[judge]
model = "judge_constant"

[profiles.report]
golden_support = 11
golden_mtbench = 1
golden_ifbench = 1
max_new_tokens = 16
probe_items = 3
calibration_pairs = 4
injection_cases = 2
rules = { format_compliance = 0.9, min_items = 2 }
non_blocking = ["judge calibration", "judge position bias", "judge verdict entropy", "judge error rate",
                "judge injection", "golden non-inferiority", "golden per category", "pairwise win rate",
                "probes", "false refusal"]
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    shutil.copytree(ROOT / "golden", root / "golden")
    (root / "gate.toml").write_text(PROFILE)
    with pytest.MonkeyPatch.context() as mp, FakeOpenAI() as f:
        mp.setenv("SFTLOOP_CACHE", str(root / "cache"))
        (root / "models.toml").write_text(f.registry())
        rc = main(["gate", "cand_risky", "prod", "--profile", "report", "--config", str(root / "gate.toml"),
                   "--root", str(root)])
    out = sorted((root / "reports").glob("gate-*"))[-1]
    return rc, out, json.loads((out / "verdict.json").read_text())


def section(md: str, title: str) -> str:
    return md.split(f"## {title}")[1].split("\n## ")[0]


def test_fake_candidate_report_md_says_why_with_prod_values_intervals_and_examples(report):
    rc, out, v = report
    assert rc == 1 and v["verdict"] == "fail"
    md = (out / "report.md").read_text()
    lines = md.splitlines()
    assert lines[0] == "# Gate: cand_risky vs prod — **FAIL** (exit 1)"
    f = v["details"]["format"]
    why = lines[2]
    # the line a release manager pastes: the failing rule, its threshold and prod's value, then the rest
    assert re.fullmatch(rf"\*\*FAIL: format compliance {f['cand_passed'] / f['cand_total']:.3f} < 0.9 \(95% CI high "
                        rf"0\.\d{{3}}; prod {f['prod_passed'] / f['prod_total']:.3f} \[0\.\d{{3}}, [01]\.\d{{3}}\]\); "
                        r"\d+ other checks pass, \d+ inconclusive \(non-blocking\)\*\*", why), why
    row = next(x for x in lines if x.startswith("| format compliance |")).split(" | ")
    assert f"({f['cand_passed']}/{f['cand_total']})" in row[1] and f"({f['prod_passed']}/{f['prod_total']})" in row[2]
    assert "[" in row[1] and "[" in row[2] and "0.9" in row[3] and row[4] == "FAIL"
    assert "nan" not in md and "{'" not in md  # no Python dict, no nan
    # failed deterministic checks by item: every candidate failure is listed
    fails = section(md, "Failed deterministic checks, by item")
    n_fail = sum(not ok for a in v["details"]["answers"] for ok in a["checks"].get("candidate", {}).values())
    assert n_fail == f["cand_total"] - f["cand_passed"] > 0
    assert sum(r.split(" | ")[2] == "FAIL" for r in fails.splitlines() if r.startswith("| support-")) == n_fail
    # absolute golden scores next to difference and ratio
    gold = section(md, "Golden scores: absolute values, difference and ratio")
    assert "| golden score (judge grade 0–1), all turns |" in gold and "| words per answer (mean) |" in gold
    # the 5 worst candidate answers, side by side with prod's
    worst = [r for r in section(md, "Worst candidate answers by judge grade").splitlines() if r.startswith("| support-")
             or r.startswith("| mtbench-") or r.startswith("| ifbench-")]
    assert len(worst) == 5 and all("[grade " in r for r in worst)
    # the answer asking for a password is shown, flagged, next to prod's
    safety = section(md, "Answers that failed a safety-relevant check")
    risky = [r for r in safety.splitlines() if "Please send me your password" in r]
    assert len(risky) == 1 and "support-account-00-0" in risky[0] and "candidate: asks for a credential" in risky[0]
    assert "Prod reply for turn 1" in risky[0]
    judge = section(md, "Judge reliability")
    for k in ("win / tie / loss (candidate)", "position consistency", "first-position share", "accuracy vs humans"):
        assert f"| {k}" in judge


def test_fake_candidate_report_html_in_headless_chromium(report, tmp_path):
    from playwright.sync_api import sync_playwright

    _, out, v = report
    md = (out / "report.md").read_text()
    shots = Path(os.environ.get("SFTLOOP_SCREENSHOTS", tmp_path))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto((out / "report.html").as_uri(), wait_until="load")
            assert page.inner_text("#verdict") == "FAIL (exit 1)"
            why = page.inner_text("#why")
            assert page.is_visible("#why") and why.startswith("FAIL: format compliance") and "prod " in why
            assert f"**{why}**" in md  # the same line in both reports
            fmt = page.locator("#checks tr", has_text="format compliance").locator("td")
            assert page.inner_text("#checks tr >> nth=0").split("\t")[:4] == ["check", "candidate", "prod", "threshold"]
            assert re.search(r"\[0\.\d{3}, [01]\.\d{3}\]", fmt.nth(1).inner_text())
            assert re.search(r"\[0\.\d{3}, [01]\.\d{3}\]", fmt.nth(2).inner_text())  # prod with its interval
            assert page.is_visible("#failed-checks-table") and page.locator("#failed-checks-table tr").count() > 1
            assert page.locator("#worst-table tr").count() == 6
            risky = page.locator("#safety-table tr", has_text="Please send me your password")
            assert risky.count() == 1 and risky.is_visible() and "Prod reply for turn 1" in risky.inner_text()
            assert page.is_visible("#judge-table") and "first-position share" in page.inner_text("#judge-table")
            ok = page.evaluate("[...document.images].filter(i => i.complete && i.naturalWidth > 100).length")
            assert ok == 3  # win rate, categories with error bars, probes
            for s in page.locator("section h2").all_inner_texts():  # one structure: every section in both
                assert f"## {s}" in md
            page.screenshot(path=str(shots / "gate-report.png"), full_page=True)
        finally:
            browser.close()


def test_demo_summary_names_the_reports_why_and_next_steps(report):
    from sftloop.evaluate.report import demo_summary

    _, out, v = report
    root = out.parents[1]
    (root / "data" / "datasets" / "demo" / "v1").mkdir(parents=True)
    (root / "data" / "datasets" / "demo" / "LATEST").write_text("v1")
    (root / "data" / "datasets" / "demo" / "v1" / "funnel.md").write_text("# funnel\n")
    (root / "runs" / "r1").mkdir(parents=True)
    (root / "runs" / "r1" / "report.md").write_text("# run\n")
    text = demo_summary(root, gate_exit=1)
    assert "data/datasets/demo/v1/funnel.md" in text and "runs/r1/report.md" in text
    assert f"reports/{out.name}/report.html" in text and "FAIL (exit 1)" in text
    assert "FAIL: format compliance" in text and "prod does not meet it either" in text  # prod 0.579 < 0.9 too
    assert "just review-server" in text and "just demo-logs && just mine" in text
