"""End-to-end gate runs on the real SmolLM2 asset with a tiny profile (exit codes, reports, cache)."""

import json
import shutil
from pathlib import Path

import pytest

from sftloop.evaluate.__main__ import main

ROOT = Path(__file__).parents[2]

TINY = """
[judge]
model = "base"

[profiles.tiny]
golden_support = 2
golden_mtbench = 1
golden_ifbench = 1
max_new_tokens = 8
probe_items = 3
calibration_pairs = 4
injection_cases = 2
rules = {{ format_compliance = 0.0, must_improve = {must_improve}, min_items = 1 }}
non_blocking = ["judge calibration", "judge position bias", "judge verdict entropy", "judge error rate",
                "judge injection", "golden per category", "probes", "false refusal"]
"""


@pytest.fixture(scope="module")
def gate_root(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # one call cache for every run in this module
        mp.setenv("SFTLOOP_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield _make_root(tmp_path_factory)


def _make_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    shutil.copytree(ROOT / "golden", root / "golden")
    (root / "models.toml").write_text(
        '[models.base]\nbase_model = "smollm2-135m-instruct"\n[models.prod]\nbase_model = "smollm2-135m-instruct"\n'
        '[models.candidate]\nbase_model = "smollm2-135m-instruct"\n'
        '[models.broken]\nbase_model = "smollm2-135m-instruct"\nadapter = "runs/does-not-exist/adapter"\n'
        '[models.down]\nendpoint = "http://127.0.0.1:9/v1"\nmodel = "x"\n')
    for flag in ("false", "true"):
        (root / f"gate-{flag}.toml").write_text(TINY.format(must_improve=flag))
    return root


def run_gate(root, cand, cfg="gate-false.toml", monkeypatch=None):
    return main(["gate", cand, "prod", "--profile", "tiny", "--config", str(root / cfg), "--root", str(root)])


def latest_report(root) -> Path:
    return sorted((root / "reports").glob("gate-*"))[-1]


def test_pass_then_rerun_makes_zero_model_calls(gate_root, capsys):
    assert run_gate(gate_root, "candidate") == 0
    out = latest_report(gate_root)
    v = json.loads((out / "verdict.json").read_text())
    assert v["verdict"] == "pass" and v["details"]["calls"]["model_calls"] > 0
    names = {c["name"] for c in v["checks"]}
    assert {"golden score non-inferiority", "format compliance", "pairwise win-rate CI low", "judge calibration accuracy",
            "probe arithmetic", "probe sports_understanding", "false-refusal rate", "output-length shift"} <= names
    assert all(c["outcome"] in ("pass", "fail", "inconclusive") for c in v["checks"])
    # identical models: identical greedy answers are ties by construction (the judge is not asked), and
    # pass the judge-based rules although the SmolLM2 judge itself is inconclusive
    pw = v["details"]["pairwise"]
    assert pw["n"] == 5 and pw["identical"] == 5 and pw["judged"] == 0  # 4 items + MT-Bench turn 2
    assert v["details"]["sizes"]["turn2"] == 1
    assert {c["name"]: c["outcome"] for c in v["checks"]}["pairwise win-rate CI low"] == "pass"
    md = (out / "report.md").read_text()
    assert md.startswith("# Gate: candidate vs prod — **PASS**")
    assert "carried no information" in md
    html = (out / "report.html").read_text()
    assert "PASS (exit 0)" in html and html.count("data:image/png;base64,") == 3
    capsys.readouterr()
    assert run_gate(gate_root, "candidate") == 0
    v2 = json.loads((latest_report(gate_root) / "verdict.json").read_text())
    assert v2["details"]["calls"]["model_calls"] == 0 and v2["details"]["calls"]["from_cache"] > 0


def test_report_renders_in_headless_chromium(gate_root, tmp_path):
    """Debian chromium renders report.html: the verdict heading, the check table and all three charts decode."""
    import subprocess

    report = next(p for p in sorted((gate_root / "reports").glob("gate-*"), reverse=True)
                  if json.loads((p / "verdict.json").read_text())["verdict"] == "pass") / "report.html"
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", """<script>
      window.addEventListener('load', () => {
        const ok = [...document.images].filter(i => i.complete && i.naturalWidth > 100).length;
        document.body.setAttribute('data-images-ok', ok);
        document.body.setAttribute('data-verdict', document.getElementById('verdict').innerText);
        document.body.setAttribute('data-rows', document.querySelectorAll('#checks tr').length);
      });</script></body>"""))
    r = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
                        probe.as_uri()], capture_output=True, text=True, timeout=120)
    dom = r.stdout
    assert 'data-images-ok="3"' in dom, r.stderr[-1000:]
    assert 'data-verdict="PASS (exit 0)"' in dom
    why = dom.split('<p id="why">')[1].split("</p>")[0]
    assert why.startswith("PASS: all ") and "blocking checks pass" in why  # the line for a PR, at the top
    rows = int(dom.split('data-rows="')[1].split('"')[0])
    assert rows >= 10  # header + every check


def test_must_improve_fails_identical_models(gate_root):
    assert run_gate(gate_root, "candidate", "gate-true.toml") == 1
    v = json.loads((latest_report(gate_root) / "verdict.json").read_text())
    failed = [c["name"] for c in v["checks"] if c["outcome"] == "fail"]
    assert failed == ["pairwise win-rate CI low"] and v["verdict"] == "fail"


@pytest.mark.parametrize("model", ["broken", "down", "unknown"])
def test_missing_model_or_dead_endpoint_exits_2(gate_root, model):
    assert run_gate(gate_root, model) == 2
    v = json.loads((latest_report(gate_root) / "verdict.json").read_text())
    assert v["verdict"] == "error" and v["error"]


def test_changed_golden_set_exits_2(gate_root, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(gate_root, root, ignore=shutil.ignore_patterns("reports"))
    p = root / "golden" / "external.json"
    ext = json.loads(p.read_text())
    ext["mtbench_question_ids"] = ext["mtbench_question_ids"][1:]
    p.write_text(json.dumps(ext))
    assert main(["gate", "candidate", "prod", "--profile", "tiny", "--config", str(root / "gate-false.toml"),
                 "--root", str(root)]) == 2
    assert "golden set changed" in json.loads((latest_report(root) / "verdict.json").read_text())["error"]
