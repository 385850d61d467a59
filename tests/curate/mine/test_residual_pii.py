"""Residual-PII check: a real mining run (`python -m sftloop.curate.mine run`, in-process) over logs with planted
values in every string field and in malformed rows; no raw value may survive in anything it writes or
prints, nor in the Argilla failures-queue payload."""

import json

import polars as pl

from sftloop.curate.mine.__main__ import main
from sftloop.curate.mine.queue import failures_for_review
from sftloop.curate.mine.redact import leaked
from sftloop.curate.review.queues import Failures
from log_fixture import write_reference

PLANTED = [("EMAIL", "mary.jane@\nexample.com"), ("EMAIL", "o'brien+vip@Example.CO.UK"), ("CARD", "4111.1111.1111.1111"),
           ("CARD", "5555 5555\n5555 4444"), ("IBAN", "fr14 2004 1010 0505 0001 3m02 606"), ("PHONE", "+33 1 23 45 67 89"),
           ("PHONE", "+81 3-1234-5678"), ("PHONE", "(415) 555-0132"), ("IP", "203.0.113.45"), ("IP", "2001:db8::8a2e:370:7334"),
           ("SSN", "078-05-1120"), ("EMAIL", "jane dot doe at example dot com")]


def _row(rid, day, prompt, response, **kw):
    return {"request_id": rid, "timestamp": f"2026-11-{day}T10:00:00Z", "model": "prod", "prompt": prompt,
            "response": response, "latency_ms": 10, "automated_score": 0.5, **kw}


def _logs(tmp_path):
    (e1, e2, c1, c2, iban, p1, p2, p3, ip4, ip6, ssn, e3) = [v for _, v in PLANTED]
    rows = [
        _row("a1", 17, f"My refund never arrived, card {c1}, mail {e1}", "I'm sorry, but I cannot help with that.",
             user_feedback="thumbs_down", category=f"refund {p1}"),
        _row(p2, 18, f"Send it to IBAN {iban} please", f"Sure, I will call {p3} and write to {e2}.", category="billing",
             user_feedback="thumbs_down"),
        {**_row("a3", 18, "", "I'm sorry, but I cannot help with that.", category="account"), "prompt": None,
         "messages": [{"role": "user", "content": f"Login from {ip4} and {ip6} blocked, SSN {ssn}"}]},
        _row("a4", 19, f"Reset my password, reach me at {e3}", "", category="account", model=f"prod {c2}"),
        _row("b1", 10, "What are your opening hours?", "We are open 9 to 5.", category="account"),
        _row("b2", 11, "Where is my refund?", "Let me check.", category="refund"),
        # malformed rows, each with PII: no prompt, bad timestamp, bad feedback, invalid JSON
        {"request_id": f"bad {e1}", "timestamp": "2026-11-18T10:00:00Z", "model": "prod", "response": f"card {c1}", "latency_ms": 1},
        _row("bad2", 18, f"call {p1}", "x", timestamp=f"{p2} {iban}"),
        _row("bad3", 18, f"ip {ip6}", "x", user_feedback=f"{ssn} {e2}"),
    ]
    lines = [json.dumps(r) for r in rows] + ['{"request_id": "broken", "prompt": "mail ' + e1.replace("\n", "\\n")
                                             + ' card ' + c2.replace("\n", "\\n") + '", ']
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "prod.jsonl").write_text("\n".join(lines) + "\n")


def _texts(root):
    """Every file under root as text (Parquet decoded row by row, since its pages are compressed)."""
    for p in sorted(root.rglob("*")):
        if p.is_file():
            yield str(p), p.read_bytes().decode("utf-8", "replace")
            if p.suffix == ".parquet":
                yield f"{p} (rows)", json.dumps(pl.read_parquet(p).to_dicts(), default=str, ensure_ascii=False)


def test_no_planted_value_survives_a_mining_run(tmp_path, capsys):
    _logs(tmp_path)
    ref = write_reference(tmp_path)
    reports = tmp_path / "reports"
    assert main(["run", str(tmp_path / "logs" / "*.jsonl"), "--week", "2026-W47", "--reference", str(ref),
                 "--reports", str(reports), "--no-push"]) == 0
    out = capsys.readouterr()
    assert "mine: mining " in out.err and "done in" in out.err and "\r" not in out.err  # a stage line, no bar frames
    out_dir = reports / "mine-2026-W47"
    fails = pl.read_parquet(out_dir / "failures.parquet")
    assert fails.height == 4  # the four W47 rows are flagged (refusal, thumbs-down, empty answer)
    queue = failures_for_review(fails)
    payload = json.dumps([Failures.record(r).to_dict() for r in queue.iter_rows(named=True)], default=str, ensure_ascii=False)
    quarantine = [json.loads(line) for line in (reports / ".mine-quarantine.jsonl").read_text().splitlines()]
    assert len(quarantine) == 4 and all(q["file"].endswith("prod.jsonl") and q["row"] and q["field"] for q in quarantine)
    assert [q["field"] for q in quarantine] == ["<row>", "timestamp", "user_feedback", "<json>"]
    assert all("[" in q["raw"] for q in quarantine)  # kept, redacted

    places = [("stdout", out.out), ("stderr", out.err), ("failures queue payload", payload), *_texts(reports)]
    found = [(kind, value, where) for where, text in places for kind, value in PLANTED if leaked(value, kind, text)]
    assert found == []
    # the placeholders made it through to every output
    md = (out_dir / "report.md").read_text()
    assert all(f"'{t}'" in md for t in ("EMAIL", "CARD", "IBAN", "PHONE", "IP", "SSN"))
    assert "[PHONE]" in fails["request_id"].to_list() and any("[PHONE]" in (c or "") for c in fails["category"].to_list())
    drift = json.loads((out_dir / "drift.json").read_text())
    assert any("[PHONE]" in k for k in drift["per_category"])
