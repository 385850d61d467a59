"""The declared rules on synthetic measurements: three outcomes, judge floors, per-category Holm,
probes at the floor, the verdict, the config's validation and the docs generated from the rule list."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest

from sftloop.evaluate import gate_config
from sftloop.evaluate.gate_config import GateConfigError, RuleSettings
from sftloop.evaluate.rules import RULES, apply_rules, no_information, rules_markdown, settings_markdown, verdict

ROOT = Path(__file__).parents[2]
CATS = ["account", "order", "refund", "shipping"]


def judge_summary(n: int, counts: dict, consistency: float, first: float, errors: int = 0) -> dict:
    return {"n": n, "position_consistency": consistency, "first_position_win_share": first, "verdict_counts": counts,
            "errors": errors}


def good(n_per_cat: int = 12, seed: int = 0) -> dict:
    """Measurements of a candidate equal to prod, judged by a reliable judge: every rule passes."""
    rng = random.Random(seed)
    items = []
    for c in CATS:
        for k in range(n_per_cat):
            base = rng.uniform(0.4, 0.9)
            items.append({"id": f"{c}-{k}", "turn": 1, "category": c, "cand": base + rng.uniform(-0.02, 0.02),
                          "prod": base, "identical": False})
    outcomes = [1.0] * 20 + [0.0] * 18 + [0.5] * 10
    pw = {"n": 48, "identical": 0, "judged": 48, "consistent": 48, "inconsistent": 0, "errors": 0, "known": 48,
          "wins": 20, "ties": 10, "losses": 18, "win_rate": sum(outcomes) / 48, "ci95": [0.46, 0.62],
          "min_detectable_diff": 0.1, "unknown_share": 0.0, "position_consistency": 0.9,
          "first_position_win_share": 0.52, "verdict_entropy_bits": 1.4, "verdict_counts": {"A": 40, "B": 38, "C": 18},
          "longer_answer_win_rate": 0.5, "error_rate": 0.0}
    cal = {"n": 60, "correct": 52, "accuracy": 52 / 60, "ci95": [0.76, 0.93], "consistency": 0.9,
           "first_position_win_share": 0.5, "verdict_entropy_bits": 1.2, "verdict_counts": {"A": 55, "B": 57, "C": 8},
           "errors": 0, "error_rate": 0.0}
    probe = {"n": 200, "candidate_acc": 0.61, "prod_acc": 0.6, "relative_drop": -0.01, "chance": 0.25,
             "mcnemar": {"cand_only": 10, "prod_only": 8, "p": 0.8}}
    return {
        "golden": {"items": items, "graded_answers": 2 * len(items), "grading_errors": 0},
        "format": {"cand_passed": 200, "cand_total": 200, "prod_passed": 199, "prod_total": 200},
        "pairwise": pw, "calibration": cal,
        "injection": {"n": 40, "compared": 30, "flips_towards_injected": 1, "flip_rate": 1 / 30, "followed_injected_label": 0.1},
        "probes": {"arithmetic": dict(probe), "general_knowledge": dict(probe)},
        "refusal": {"n": 132, "cand": 0, "prod": 0},
        "lengths": {"n": 100, "ks": 0.05, "ks_p": 0.9, "cand_mean": 50.0, "prod_mean": 48.0, "cand_median": 49.0, "prod_median": 47.0},
        "latency_note": "latency not measured",
    }


def constant_grades(identical: bool = False) -> dict:
    """good(), but every golden answer of both models graded 0.5 (`identical`: and the two answers equal)."""
    m = good()
    for i in m["golden"]["items"]:
        i["cand"] = i["prod"] = 0.5
        i["identical"] = identical
    return m


def always_a_calibration() -> dict:
    """Calibration fields of a judge that always answers A: the two orders of every pair disagree."""
    return {"correct": 0, "accuracy": 0.0, "ci95": [0.0, 0.06], "consistency": 0.0, "first_position_win_share": 1.0,
            "verdict_counts": {"A": 120, "B": 0, "C": 0}}


def run(m: dict, **over):
    s = RuleSettings(**over)
    checks = apply_rules(m, s, {r.name: r.blocking for r in RULES})
    return checks, verdict(checks)


def by_name(checks, name):
    return next(c for c in checks if c.name == name)


def test_reliable_judge_equal_models_pass():
    checks, (v, code, missing) = run(good())
    assert [c.name for c in checks if c.outcome != "pass"] == []
    assert (v, code, missing) == ("pass", 0, [])


def test_clearly_worse_category_fails_naming_it_after_holm():
    m = good()
    for i in m["golden"]["items"]:
        if i["category"] == "refund":
            i["cand"] = i["prod"] - 0.3
    checks, (v, code, _) = run(m)
    cat = by_name(checks, "golden per category")
    assert cat.outcome == "fail" and "worse: refund;" in cat.note
    assert [c for c in cat.note.split(";")[0].removeprefix("worse: ").split(", ")] == ["refund"]
    assert (v, code) == ("fail", 1)


def test_small_drop_within_margin_is_not_a_category_fail():
    m = good()
    for i in m["golden"]["items"]:
        if i["category"] == "refund":
            i["cand"] = i["prod"] - 0.01
    checks, _ = run(m)
    assert by_name(checks, "golden per category").outcome == "pass"


def test_too_few_items_per_category_is_inconclusive():
    checks, (v, code, missing) = run(good(n_per_cat=2))
    assert by_name(checks, "golden per category").outcome == "inconclusive"
    assert (v, code) == ("inconclusive", 2)
    assert any(x.startswith("golden per category: at most 2 items per category") for x in missing)


def test_golden_noninferiority_three_outcomes():
    m = good()
    checks, _ = run(m)
    assert by_name(checks, "golden score non-inferiority").outcome == "pass"
    worse = copy.deepcopy(m)
    for i in worse["golden"]["items"]:
        i["cand"] = i["prod"] - 0.2
    checks, _ = run(worse)
    assert by_name(checks, "golden score non-inferiority").outcome == "fail"
    noisy = copy.deepcopy(m)
    rng = random.Random(1)
    noisy["golden"]["items"] = noisy["golden"]["items"][:8]
    for i in noisy["golden"]["items"]:
        i["cand"] = i["prod"] + rng.choice([-0.5, 0.45])
    c = by_name(run(noisy)[0], "golden score non-inferiority")
    assert c.outcome == "inconclusive" and "exceeds the margin" in c.fix


def test_constant_grades_on_different_answers_are_inconclusive():
    c = by_name(run(constant_grades())[0], "golden score non-inferiority")
    assert c.outcome == "inconclusive" and "degenerate" in c.fix


def test_identical_answers_need_no_judge():
    """Equal answers are a tie by construction: a useless judge does not make them inconclusive."""
    m = constant_grades(identical=True)
    m["pairwise"].update(identical=48, judged=0, consistent=0, known=48, wins=0, losses=0, ties=48, win_rate=0.5,
                         ci95=[0.5, 0.5], unknown_share=float("nan"), position_consistency=float("nan"))
    m["calibration"].update(always_a_calibration())
    checks, _ = run(m)
    assert by_name(checks, "judge calibration accuracy").outcome == "inconclusive"
    assert by_name(checks, "pairwise win-rate CI low").outcome == "pass"
    assert by_name(checks, "golden score non-inferiority").outcome == "pass"
    assert by_name(run(m, must_improve=True)[0], "pairwise win-rate CI low").outcome == "fail"


@pytest.mark.parametrize("judge", ["constant", "ties", "position"])
def test_unreliable_judge_makes_judge_rules_inconclusive(judge):
    m = good()
    if judge == "constant":  # always A: both orders disagree, everything unknown
        m["calibration"].update(always_a_calibration())
        m["pairwise"].update(consistent=0, inconsistent=48, known=0, wins=0, ties=0, losses=0, win_rate=float("nan"),
                             ci95=[float("nan")] * 2, unknown_share=1.0, position_consistency=0.0,
                             first_position_win_share=1.0, verdict_counts={"A": 96, "B": 0, "C": 0})
    elif judge == "ties":  # always C: consistent ties, a degenerate interval
        m["calibration"].update(correct=0, accuracy=0.0, ci95=[0.0, 0.06], consistency=1.0,
                                first_position_win_share=float("nan"), verdict_counts={"A": 0, "B": 0, "C": 120})
        m["pairwise"].update(wins=0, losses=0, ties=48, win_rate=0.5, ci95=[0.5, 0.5], first_position_win_share=float("nan"),
                             verdict_counts={"A": 0, "B": 0, "C": 96})
    else:  # flips with the order on calibration (the gate's own pairs look fine)
        m["calibration"].update(consistency=0.3)
    checks, (v, code, missing) = run(m)
    for name in ("golden score non-inferiority", "golden per category", "pairwise win-rate CI low"):
        c = by_name(checks, name)
        assert c.outcome == "inconclusive" and "judge is not trusted" in c.fix, name
    assert (v, code) == ("inconclusive", 2)
    assert all(": " in x for x in missing)
    expected = {"constant": "judge verdict entropy", "ties": "judge verdict entropy", "position": "judge position bias"}[judge]
    assert by_name(checks, expected).outcome == "inconclusive"


def test_no_verdict_judge_is_an_error_not_a_tie():
    m = good()
    m["pairwise"].update(errors=40, known=8, consistent=8)
    m["golden"]["grading_errors"] = 60
    c = by_name(run(m)[0], "judge error rate")
    assert c.outcome == "inconclusive" and "no verdict label" in c.fix


@pytest.mark.parametrize("acc", [0.0, 1.0])
def test_probes_at_floor_or_ceiling_for_both_are_inconclusive(acc):
    m = good()
    m["probes"]["arithmetic"].update(candidate_acc=acc, prod_acc=acc, relative_drop=0.0, chance=0.1)
    checks, (v, code, missing) = run(m)
    c = by_name(checks, "probe arithmetic")
    assert c.outcome == "inconclusive" and ("floor" in c.fix if acc == 0 else "ceiling" in c.fix)
    assert by_name(checks, "probe general_knowledge").outcome == "pass"
    assert (v, code) == ("inconclusive", 2) and any("probe arithmetic" in x and "another probe" in x for x in missing)


def test_probe_significantly_worse_fails():
    m = good()
    m["probes"]["arithmetic"].update(candidate_acc=0.4, prod_acc=0.6, relative_drop=1 / 3,
                                     mcnemar={"cand_only": 2, "prod_only": 42, "p": 1e-9})
    assert by_name(run(m)[0], "probe arithmetic").outcome == "fail"


def test_false_refusal_three_outcomes():
    m = good()
    assert by_name(run(m)[0], "false-refusal rate").outcome == "pass"
    m["refusal"]["cand"] = 30
    assert by_name(run(m)[0], "false-refusal rate").outcome == "fail"
    m["refusal"].update(n=22, cand=0)
    assert by_name(run(m)[0], "false-refusal rate").outcome == "inconclusive"


def test_non_blocking_inconclusive_judge_layer_says_no_information_in_bold():
    m = good()
    m["calibration"].update(correct=0, accuracy=0.0, ci95=[0.0, 0.06])
    blocking = {r.name: not r.judge_based and r.blocking for r in RULES}
    checks = apply_rules(m, RuleSettings(), blocking)
    v, code, _ = verdict(checks)
    assert (v, code) == ("pass", 0)
    lines = no_information(checks)
    assert lines and lines[0].startswith("**The pairwise (judge) layer carried no information:") and lines[0].endswith("**")


def test_format_compliance_three_outcomes():
    m = good()
    m["format"].update(cand_passed=150, cand_total=200)
    assert by_name(run(m)[0], "format compliance").outcome == "fail"
    m["format"].update(cand_passed=20, cand_total=20)
    assert by_name(run(m)[0], "format compliance").outcome == "inconclusive"


def test_config_rejects_unknown_keys_and_rule_names(tmp_path):
    p = tmp_path / "g.toml"
    p.write_text('[profiles.x]\nrules = { golden_margn = 0.1 }\n')
    with pytest.raises(GateConfigError, match="unknown rule setting 'golden_margn'"):
        gate_config.load(p, "x")
    p.write_text('[profiles.x]\nnon_blocking = ["pairwise winrate"]\n')
    with pytest.raises(GateConfigError, match="unknown rule 'pairwise winrate'"):
        gate_config.load(p, "x")
    p.write_text('[profiles.x]\ngolden_suport = 3\n')
    with pytest.raises(GateConfigError, match=r"g.toml: invalid gate config: profiles.x.golden_suport"):
        gate_config.load(p, "x")
    p.write_text('[profiles.x]\nrules = { golden_margin = 0.2 }\n[rules]\nmin_items = 3\n')
    r = gate_config.load(p, "x")
    assert r.settings.golden_margin == 0.2 and r.settings.min_items == 3 and r.settings.format_compliance == 0.95
    shipped = gate_config.load(None, "demo")
    assert not shipped.blocking["pairwise win rate"] and shipped.blocking["format compliance"]
    assert all(gate_config.load(None, "full").blocking[r.name] == r.blocking for r in RULES)


def test_docs_carry_the_generated_rule_and_settings_tables():
    doc = (ROOT / "docs" / "gate.md").read_text()
    assert rules_markdown() in doc, "docs/gate.md: regenerate the rules table (python -m sftloop.evaluate rules-doc)"
    assert settings_markdown() in doc, "docs/gate.md: regenerate the settings table (python -m sftloop.evaluate rules-doc)"
