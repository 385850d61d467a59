import json

import polars as pl

from curate.mine.run import run
from sftloop.schema import ChatRecord, write_parquet


def _logs(tmp_path):
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


def test_weekly_run_redacts_flags_clusters_and_is_idempotent(tmp_path, minilm):
    _logs(tmp_path)
    ref = tmp_path / "ref"
    write_parquet([ChatRecord.model_validate({"messages": [{"role": "user", "content": "Where is my refund?"},
                                                           {"role": "assistant", "content": "Let me check."}], "source": "t"})],
                  ref / "train.parquet")
    out = run(str(tmp_path / "*.jsonl"), tmp_path / "reports", reference=ref)
    assert out.name == "mine-2026-W47"
    fails = pl.read_parquet(out / "failures.parquet")
    assert sorted(fails["request_id"].to_list()) == [f"2026-11-17-{i}" for i in range(4)]
    text = (out / "failures.parquet").read_bytes()
    assert b"4111 1111" not in text and b"a.b@example.com" not in text  # redacted before writing
    assert any("[CARD]" in p for p in fails["prompt"].to_list())
    r0 = fails.filter(pl.col("request_id") == "2026-11-17-1")["reasons"].to_list()[0]
    assert r0 == ["hard:thumbs_down", "behaviour:refusal"]
    drift = json.loads((out / "drift.json").read_text())
    assert drift["judge_trend"]["alert"] is True  # 0.8 -> 0.7
    assert drift["per_category"]["refund"]["failure_rate"] == 1.0
    assert 0 < drift["prompts_vs_training"]["mean_nn_cos"] <= 1
    md = (out / "report.md").read_text()
    assert "'CARD': 1" in md and "'EMAIL': 1" in md and "behaviour:refusal" in md
    (out / "stale.txt").write_text("x")
    out2 = run(str(tmp_path / "*.jsonl"), tmp_path / "reports", week="2026-W47", reference=ref)
    assert out2 == out and not (out / "stale.txt").exists()
