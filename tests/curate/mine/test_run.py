import json

import polars as pl

from sftloop.curate.mine.run import run
from log_fixture import write_logs, write_reference


def test_weekly_run_redacts_flags_clusters_and_is_idempotent(tmp_path, minilm):
    write_logs(tmp_path)
    ref = write_reference(tmp_path)
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
