import json

import polars as pl

from sftloop.schema import ChatRecord, write_parquet


def write_logs(tmp_path):
    """Two weeks of support logs with planted PII, refusals and thumbs-down, plus a next-week row and a bad row."""
    rows = []
    prompts = ["Where is my refund for order 123?", "My refund never arrived, card 4111 1111 1111 1111",
               "Refund still missing, e-mail me at a.b@example.com", "How do I reset my password?",
               "Password reset link broken", "What are your opening hours?"]
    for week_day, score in (("2026-11-10", 0.8), ("2026-11-17", 0.7)):
        for i, p in enumerate(prompts):
            bad = i < 4 and week_day == "2026-11-17"
            rows.append({"request_id": f"{week_day}-{i}", "timestamp": f"{week_day}T1{i}:00:00Z", "model": "prod", "prompt": p,
                         "response": "I'm sorry, but I cannot help with that." if bad else "Sure, here is how that works.",
                         "latency_ms": 100, "user_feedback": "thumbs_down" if bad and i % 2 else None,
                         "automated_score": score, "category": "refund" if "efund" in p else "account"})
    rows.append({"request_id": "next-week", "timestamp": "2026-11-24T10:00:00Z", "model": "prod", "prompt": "hi",
                 "response": "hello", "latency_ms": 5})
    rows.append({"request_id": "bad", "timestamp": "2026-11-17T10:00:00Z", "model": "prod", "response": "no prompt", "latency_ms": 1})
    (tmp_path / "logs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def write_reference(tmp_path):
    """A one-conversation training set as the mining run's reference (`tmp_path/ref/train.parquet`); returns its dir."""
    ref = tmp_path / "ref-rows"
    write_parquet([ChatRecord.model_validate({"messages": [{"role": "user", "content": "Where is my refund?"},
                                                           {"role": "assistant", "content": "Let me check."}], "source": "t"})],
                  ref / "train.parquet")
    from sftloop.dataset_version import write_derived

    return write_derived(tmp_path / "ref", {"train": pl.read_parquet(ref / "train.parquet")}, {"step": "test"}, name="ref").path
