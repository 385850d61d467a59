import json

from sftloop.curate.mine.detect import detect, repetition_loop
from sftloop.curate.mine.logs import read_logs, select_week


def test_every_reason_that_fires_is_reported():
    assert detect("q", "", "thumbs_down") == ["hard:thumbs_down", "behaviour:empty"]
    assert detect("Give JSON", '{"a": 1', expects_json=True) == ["format:invalid_json"]
    assert detect("Give JSON", '```json\n{"a": 1}\n```', expects_json=True) == []
    assert "behaviour:refusal" in detect("How do I reset my password?", "I'm sorry, but I cannot help with that.")
    loop = "I can help you with that. " * 12
    assert repetition_loop(loop) and "behaviour:repetition" in detect("q", loop)
    assert "behaviour:truncated" in detect("q", "The refund will be processed once the warehouse confirms that the")
    assert detect("q", "Bonjour", prompt_lang="en", response_lang="fr") == ["behaviour:language_mismatch"]


def test_logs_validate_quarantine_and_week(tmp_path):
    rows = [
        {"request_id": "r1", "timestamp": "2026-11-17T10:00:00Z", "model": "prod", "prompt": "Where is my order?",
         "response": "Let me check.", "latency_ms": 120, "user_feedback": "thumbs_down"},
        {"request_id": "r2", "timestamp": "2026-11-18T10:00:00Z", "model": "prod",
         "messages": [{"role": "user", "content": "Refund?"}], "response": "Yes.", "latency_ms": 80},
        {"request_id": "r3", "timestamp": "2026-11-25T10:00:00Z", "model": "prod", "prompt": "Hi", "response": "Hello",
         "latency_ms": 50},
        {"request_id": "r4", "timestamp": "2026-11-18T10:00:00Z", "model": "prod", "response": "no prompt", "latency_ms": 1},
        {"request_id": "r5", "timestamp": "not a date", "model": "prod", "prompt": "x", "response": "y", "latency_ms": 1},
        {"request_id": "r6", "timestamp": "2026-11-18T10:00:00Z", "model": "prod", "prompt": "x", "response": "y",
         "latency_ms": 1, "user_feedback": "meh"},
    ]
    p = tmp_path / "logs.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    good, stats = read_logs(str(tmp_path / "*.jsonl"), tmp_path / "q.jsonl")
    assert [r.request_id for r in good] == ["r1", "r2", "r3"]
    assert stats[0].rows_in == 6 and stats[0].rows_quarantined == 3
    fields = [json.loads(line)["field"] for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert fields == ["<row>", "timestamp", "user_feedback"]
    week, rows_w = select_week(good)  # newest is in W48, so the last full week is W47
    assert week == "2026-W47" and [r.request_id for r in rows_w] == ["r1", "r2"]
    assert select_week(good, "2026-W48")[1][0].request_id == "r3"
