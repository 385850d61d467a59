"""`just mine` fills the failures queue: deduplicated, prioritised, never twice."""

import json
import sys
from pathlib import Path

from sftloop.curate.mine.__main__ import main
from sftloop.curate.review.serve import free_port

from .review_helpers import OWNER_KEY, records_by_external_id

sys.path.insert(0, str(Path(__file__).parents[1] / "mine"))
from log_fixture import write_logs  # noqa: E402  (the mining tests' logs)


def test_mining_pushes_failures_once(endpoint, tmp_path, monkeypatch, capsys):
    write_logs(tmp_path)
    monkeypatch.setenv("ARGILLA_API_KEY", OWNER_KEY)
    monkeypatch.setenv("SFTLOOP_ARGILLA_WORKSPACE", endpoint.workspace)
    args = ["run", str(tmp_path / "*.jsonl"), "--reports", str(tmp_path / "reports"), "--url", endpoint.url]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    recs = records_by_external_id(endpoint, OWNER_KEY, "failures")
    assert first["pushed"] == len(recs) >= 2
    meta = [r["metadata"] for r in recs.values()]
    assert all(m["week"] == "2026-W47" and m["priority"] > 0 for m in meta)
    assert any("hard:thumbs_down" in m["reasons"] for m in meta)
    assert not any("4111" in json.dumps(r["fields"]) for r in recs.values())  # redacted before it left the process
    assert main(args) == 0  # the same week again: overwrites the report, queues nothing twice
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["pushed"] == 0 and again["already_queued"] == first["pushed"]
    assert len(records_by_external_id(endpoint, OWNER_KEY, "failures")) == len(recs)
    # Argilla down: the report is written, the exit code says the queue was not filled
    assert main(args[:-1] + [f"http://127.0.0.1:{free_port()}"]) == 2
    assert "not queued" in capsys.readouterr().err
