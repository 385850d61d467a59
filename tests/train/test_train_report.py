"""The run report answers "did training work?": asserted on the session's real tiny training run."""

import json
import re

import torch

from sftloop.train.monitor import energy_rank, update_singular_values
from sftloop.train.report import ema, rank_rows


def test_report_has_baseline_final_change_and_coverage(tiny_run):
    run_dir, s = tiny_run
    md = (run_dir / "report.md").read_text()
    # run.json: full precision; step 0 is the base model, change = final - step 0
    assert isinstance(s["eval_loss_step0"], float) and isinstance(s["final_eval_loss"], float)
    assert abs(s["eval_loss_change"] - (s["final_eval_loss"] - s["eval_loss_step0"])) < 1e-12
    assert s["eval_loss_change"] < 0, "6 steps at lr 1e-3 on the tiny set lower the held-out loss"
    assert f"| step 0 (base model) | {s['eval_loss_step0']:.3f} |" in md
    assert f"| final (step {s['steps']}) | {s['final_eval_loss']:.3f} |" in md
    assert f"{s['eval_loss_change']:+.3f}" in md and "eval loss went down" in md
    # coverage: rows, conversations, tokens, epochs, each "trained | of | share"
    assert 0 < s["rows_trained"] <= s["rows_total"] and s["rows_trained"] == min(s["steps"], s["rows_total"])
    assert s["conversations_trained"] <= s["conversations_total"] == s["samples"]
    assert s["processed_tokens"] <= s["tokens_total"] * (s["epochs"] + 1)
    assert f"| packed rows (one row = up to max_len tokens) | {s['rows_trained']} | {s['rows_total']} |" in md
    assert f"| epochs | {s['epochs']:.3f} |" in md
    assert re.search(r"\| conversations \(in those rows\) \| \d+ \| \d+ \| [\d.]+% \|", md)
    # two ratios, two names, each defined
    assert s["padding_efficiency"] > 0.9 and 0 < s["trained_token_share"] < 1
    assert f"**padding efficiency {s['padding_efficiency']:.2f}** = non-pad tokens / batch slots" in md
    assert f"**trained-token share {s['trained_token_share']:.2f}** = tokens with a label" in md
    assert "token efficiency" not in md
    # rounded for people: no long float in the report
    assert not re.search(r"\d\.\d{5,}", md), re.findall(r"\d\.\d{5,}", md)
    assert json.loads((run_dir / "run.json").read_text())["eval_loss_step0"] == s["eval_loss_step0"]


def test_report_rank_rows_per_module(tiny_run):
    run_dir, s = tiny_run
    md = (run_dir / "report.md").read_text()
    r = s["config"]["lora"]["r"]
    rows = {m: line for line in md.splitlines() for m in s["config"]["lora"]["target_modules"]
            if line.startswith(f"| {m} |")}
    assert set(rows) == set(s["config"]["lora"]["target_modules"])  # one row per projection
    for line in rows.values():
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert 1 <= float(cells[1]) <= r and float(cells[1]) <= int(cells[2]) <= r  # median <= max <= r
        assert cells[6].startswith(("keep r", "r = ", "saturated"))
    assert "energy rank" in md and "median over the layers" in md


def test_loss_curve_uses_per_step_points_and_ema(tiny_run):
    run_dir, s = tiny_run
    steps = [x[0] for x in s["step_losses"]]
    assert steps == list(range(1, s["steps"] + 1))
    assert (run_dir / "loss.png").stat().st_size > 10_000
    assert ema([1.0, 1.0, 1.0], 3) == [1.0, 1.0, 1.0]  # bias-corrected: no pull towards 0
    assert ema([0.0, 2.0], 3)[1] == 4 / 3


def test_energy_rank_and_suggestion():
    u, _ = torch.linalg.qr(torch.randn(32, 8))
    v, _ = torch.linalg.qr(torch.randn(16, 8))
    delta = u @ torch.diag(torch.tensor([10.0, 5, 1, 0.5, 0.1, 0, 0, 0])) @ v.T
    assert energy_rank(delta, 0.9) == 2  # 100 + 25 of 126.26 = 99%; 100 alone = 79%
    assert energy_rank(delta, 0.995) == 3
    assert energy_rank(torch.zeros(4, 4)) == 0
    a, b = torch.randn(8, 64), torch.randn(96, 8)  # LoRA factors: B·A's singular values from an 8×8 problem
    assert torch.allclose(update_singular_values(a, b, 2.0), torch.linalg.svdvals(2.0 * b @ a)[:8], rtol=1e-4)
    last = {"energy_rank90_median/q_proj": 3, "energy_rank90_max/q_proj": 5, "erank_median/q_proj": 4.2,
            "layers/q_proj": 30, "drift/q_proj": 0.1, "grad_norm/q_proj": 0.2,
            "energy_rank90_median/v_proj": 8, "energy_rank90_max/v_proj": 8, "erank_median/v_proj": 7.0,
            "layers/v_proj": 30, "drift/v_proj": 0.1, "grad_norm/v_proj": 0.2}
    rows = {x["module"]: x for x in rank_rows(last, 8)}
    assert rows["q_proj"]["suggested_r"] == 4 and rows["q_proj"]["verdict"] == "r = 4 would do"
    assert rows["v_proj"]["verdict"].startswith("saturated")


def test_only_rank_0_prints_stage_and_progress_lines(monkeypatch, capsys):
    """Under torchrun every process runs the same trainer: rank 1 stays quiet, rank 0 speaks."""
    from sftloop.train.console import ConsoleLog, Stages
    for rank, expect in (("1", False), ("0", True)):
        monkeypatch.setenv("RANK", rank)
        s = Stages("train")
        s.next("encode + pack")
        s.done()
        ConsoleLog()._print("step 1/2")
        err = capsys.readouterr().err
        assert ("train: encode + pack ..." in err and "train: step 1/2" in err) is expect, (rank, err)
        assert bool(err) is expect
