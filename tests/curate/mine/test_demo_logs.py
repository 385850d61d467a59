"""Demo logs made by the real prod model (SmolLM2 asset), then a mining run that grades them with the judge."""

import json

import polars as pl

from sftloop.curate.mine.demo_logs import make_demo_logs
from sftloop.curate.mine.logs import LogRow
from sftloop.curate.mine.run import run
from sftloop.curate.checklist import for_derived
from sftloop.dataset_version import write_derived
from sftloop.schema import PARQUET_SCHEMA, content_id


def _held_out(root):
    prompts = ["How do I make a good cup of pour-over coffee at home?", "Write a short poem about the sea at night.",
               "What is the difference between a list and a tuple in Python?", "Give me three tips for a job interview."]
    rows = []
    for p in prompts:
        msgs = [{"role": "user", "content": p}, {"role": "assistant", "content": "An answer."}]
        rows.append({"id": content_id(msgs), "messages": msgs, "source": "t", "meta": "{}", "weight": 1.0})
    val = pl.DataFrame(rows, schema=PARQUET_SCHEMA)
    return write_derived(root / "data" / "datasets" / "held", {"train": val, "val": val},
                         {"step": "test"}, name="held", checklist=for_derived).path


def test_demo_logs_then_judge_graded_mining(tmp_path, capsys):
    (tmp_path / "models.toml").write_text('[models.base]\nbase_model = "smollm2-135m-instruct"\n'
                                          '[models.prod]\nbase_model = "smollm2-135m-instruct"\n')
    _held_out(tmp_path)
    path = make_demo_logs(tmp_path, tmp_path / "data/datasets/held", tmp_path / "logs", n_chat=3, n_support=6, weeks=2,
                          max_new_tokens=24)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 9
    err = capsys.readouterr().err  # a line per stage, no progress-bar frames off a TTY
    for line in ("demo-logs: prompts done in", "demo-logs: prod answers 9 prompts done in", "demo-logs: base grades 9 answers done in"):
        assert line in err, err
    assert "\r" not in err
    parsed = [LogRow.model_validate(r) for r in rows]  # the documented log schema
    assert all(r.feedback_simulated for r in parsed) and all(r.response for r in parsed)
    assert {r.category for r in parsed} >= {"chat"} and sum(r.expects_json for r in parsed) == 2
    assert any("@example.com" in r.messages[0].content for r in parsed)  # planted PII for the redaction report
    assert all(0 <= r.automated_score <= 1 for r in parsed)
    weeks = {r.iso_week for r in parsed}
    assert weeks <= {"2026-W46", "2026-W47", "2026-W48"}

    out = run(str(path), tmp_path / "reports", week="2026-W47", judge="base", judge_threshold=5.0, root=tmp_path)
    drift = json.loads((out / "drift.json").read_text())
    this_week = [r for r in parsed if r.iso_week == "2026-W47"]
    assert drift["judge_this_week"]["graded"] == len(this_week) > 0
    fails = pl.read_parquet(out / "failures.parquet")
    assert fails.height == len(this_week)  # threshold 5.0: every graded answer is a soft failure
    assert all("soft:judge_low" in r for r in fails["reasons"].to_list())
    assert b"@example.com" not in (out / "failures.parquet").read_bytes()
    if any(r.user_feedback for r in this_week):
        assert "SIMULATED" in (out / "report.md").read_text() and "SIMULATED" in (out / "report.html").read_text()

    # uncertainty: the prod model samples answers; with a threshold below any disagreement every sampled row is flagged
    out = run(str(path), tmp_path / "reports", week="2026-W47", root=tmp_path, uncertainty_model="prod",
              uncertainty_samples=2, uncertainty_threshold=-1.0)
    unc = json.loads((out / "drift.json").read_text())["uncertainty"]
    assert unc["prompts"] == len(this_week) and unc["above_threshold"] == len(this_week)
    fails = pl.read_parquet(out / "failures.parquet")
    assert all("uncertainty:disagreement" in r for r in fails["reasons"].to_list())
    assert all(0 <= d <= 2 for d in fails["disagreement"].to_list())


def test_disagreement_is_zero_for_identical_answers_and_grows_with_difference():
    import numpy as np

    from sftloop.curate.mine.understand import disagreement

    same = np.tile(np.array([[1.0, 0.0]]), (3, 1))
    assert disagreement(same) == 0.0
    orth = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert disagreement(orth) == 1.0
    assert np.isnan(disagreement(same[:1]))
