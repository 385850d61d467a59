import json
import shutil
from pathlib import Path

import pytest

from sftloop.evaluate import golden as G
from sftloop.evaluate.checks import run_checks
from sftloop.evaluate.stats import bootstrap_ci, mcnemar

ROOT = Path(__file__).parents[2]


def test_checks():
    c = {"json_schema": {"type": "object", "required": ["order_id"]}, "must_not_include": ["guarantee"], "max_words": 5}
    assert run_checks(c, '```json\n{"order_id": "#W1"}\n```') == {"json_schema": True, "must_not_include": True, "max_words": True}
    assert run_checks(c, "Sure! I guarantee the order id is #W1 for you today") == {
        "json_schema": False, "must_not_include": False, "max_words": False}
    assert run_checks({"must_include_any": ["Refund", "return"]}, "start a RETURN")["must_include_any"]


def test_stats():
    m, lo, hi = bootstrap_ci([1.0] * 30 + [0.0] * 10)
    assert m == 0.75 and lo < 0.75 < hi and hi - lo < 0.35
    assert mcnemar([True] * 10, [True] * 10) == (0, 0, 1.0)
    b, c, p = mcnemar([True] * 20, [False] * 12 + [True] * 8)
    assert (b, c) == (12, 0) and p < 0.001


def test_golden_set_is_frozen_and_complete():
    items, manifest = G.verify_frozen(ROOT)
    support = [i for i in items if "support" in i.tags]
    assert len(support) >= 120
    assert {i.category for i in support} >= {"account", "order", "refund", "shipping", "payment", "subscription", "contact",
                                              "feedback", "invoice", "cancellation", "registration"}
    assert sum("mtbench" in i.tags for i in items) == 80 and sum("ifbench" in i.tags for i in items) == 294
    assert manifest["items"] == len(items)
    # MT-Bench/IFBench texts are referenced by id, never copied into the repo
    first_q = next(i for i in items if i.id == "mtbench-81").messages[0]["content"]
    for p in (ROOT / "golden").rglob("*"):
        if p.is_file():
            assert first_q[:60] not in p.read_text(errors="ignore")


def test_changed_golden_set_is_refused_until_frozen(tmp_path):
    shutil.copytree(ROOT / "golden", tmp_path / "golden")
    p = tmp_path / "golden" / "items" / "support.jsonl"
    lines = p.read_text().splitlines()
    item = json.loads(lines[0])
    item["reference"] += " (edited)"
    p.write_text("\n".join([json.dumps(item)] + lines[1:]) + "\n")
    with pytest.raises(G.GoldenChanged, match="golden-freeze"):
        G.verify_frozen(tmp_path)
    m = G.freeze(tmp_path, "edited one reference")
    assert m["version"] == 2
    G.verify_frozen(tmp_path)
    assert "v2" in (tmp_path / "golden" / "CHANGELOG.md").read_text().splitlines()[-1]


def test_ifbench_checkers_run_without_punkt():
    from sftloop.evaluate.ifbench import check
    from sftloop import assets

    row = next(json.loads(line) for line in assets.path("ifbench").read_text().splitlines()
               if json.loads(line)["instruction_id_list"] == ["count:keywords_multiple"])
    kw = row["kwargs"][0]
    words = [kw["keyword1"]] + [kw["keyword2"]] * 2 + [kw["keyword3"]] * 3 + [kw["keyword4"]] * 5 + [kw["keyword5"]] * 7
    good = "Here is my answer. " + " ".join(f"A {w} appears." for w in words)
    assert check(row["prompt"], row, good)["strict"] is True
    assert check(row["prompt"], row, "A short answer without the keywords.")["strict"] is False
    # with the punkt-free tokenizers, all but the checkers needing a POS tagger/stopwords run (276 of 294 measured)
    rows = [json.loads(line) for line in assets.path("ifbench").read_text().splitlines()]
    evaluated = sum(check(r["prompt"], r, "One sentence here. Another one follows.")["strict"] is not None for r in rows)
    assert evaluated >= 270


def test_ifbench_checkers_import_without_trying_to_download_nltk_data(monkeypatch):
    """if-verifiable calls nltk.download() at import for data that is missing here: never at run time."""
    import sys

    import nltk

    from sftloop.evaluate import ifbench

    calls = []
    monkeypatch.setattr(nltk, "download", lambda *a, **k: calls.append(a) or False)
    for name in [m for m in sys.modules if m.startswith("if_verifiable")]:
        monkeypatch.delitem(sys.modules, name)
    ifbench._patched.cache_clear()
    try:
        ifbench._patched()
    finally:
        ifbench._patched.cache_clear()
    assert calls == []
    assert nltk.download.__name__ == "<lambda>"  # the caller's own nltk.download is put back


def test_wilson_holm_sign_flip_entropy():
    from sftloop.evaluate.stats import entropy_bits, holm, sign_flip_p, wilson

    p, lo, hi = wilson(0, 22)
    assert p == 0 and lo == 0 and 0.14 < hi < 0.15  # never the zero-width [0, 0] a bootstrap gives
    assert wilson(0, 73)[2] < 0.05 <= wilson(0, 72)[2]
    assert holm({"a": 0.01, "b": 0.04, "c": 0.5}) == {"a": 0.03, "b": 0.08, "c": 0.5}
    assert sign_flip_p([-0.3] * 6, shift=-0.05) == 1 / 64  # exact: all 2^6 sign patterns
    assert sign_flip_p([0.0] * 6) == 1.0 and sign_flip_p([-0.2], -0.05) == 0.5
    assert entropy_bits(["A"] * 9) == 0.0 and entropy_bits(list("ABCABC")) > 1.5


class FakeObedientJudge:
    """FAKE judge (stands in for a real one to pin the injection logic): prefers the answer containing
    GOOD, but obeys an 'answer X' instruction found in either answer."""

    def next_token_logprobs(self, convs, labels):
        import re

        out = []
        for c in convs:
            text = c[-1]["content"]
            m = re.search(r"and answer ([AB]): this answer", text)
            a = text.split("[Answer A]")[1].split("[Answer B]")[0]
            pick = m.group(1) if m else ("A" if "GOOD" in a else "B")
            out.append({lab: (0.0 if lab == pick else -5.0) for lab in labels})
        return out


def test_fake_obedient_judge_injection_flips_in_both_orders():
    from sftloop.evaluate import judge as J

    qs, cand, prod = ["q1", "q2", "q3"], ["GOOD one", "GOOD two", "GOOD three"], ["meh", "meh 2", "meh 3"]
    base = J.pairwise(FakeObedientJudge(), qs, cand, prod)
    assert base.outcomes == [1.0, 1.0, 1.0] and base.summary()["position_consistency"] == 1.0
    inj = J.injection_flip_rate(FakeObedientJudge(), qs, cand, prod, base)
    # the injected label names prod's position in each order (B, then A), so an obedient judge flips
    # the outcome to a consistent loss instead of an order-inconsistent "tie"
    assert inj["flip_rate"] == 1.0 and inj["followed_injected_label"] == 1.0 and inj["compared"] == 3


def test_no_verdict_logprobs_are_errors_not_ties():
    from sftloop.evaluate import judge as J

    class FakeNoVerdictJudge:
        def next_token_logprobs(self, convs, labels):
            return [{lab: -1e9 for lab in labels} if k % 2 else {} for k in range(len(convs))]

    s = J.pairwise(FakeNoVerdictJudge(), ["q", "r"], ["a", "b"], ["c", "d"]).summary()
    assert s["errors"] == 2 and s["ties"] == 0 and s["known"] == 0 and s["error_rate"] == 1.0


def test_a_value_without_measurement_prints_n_a_never_nan():
    from sftloop.evaluate.report import _fmt
    from sftloop.evaluate.rules import _f

    assert _f(float("nan")) == _fmt(float("nan")) == "n/a" and _f(0.25) == _fmt(0.25) == "0.250"
