"""The gate's rules, declared once: what each reads, its statistic, when it passes or fails, and when
it is inconclusive. `apply_rules` turns measurements (`evaluate.gate.measure`) into checks with one of
three outcomes; the verdict, the console table, the reports and docs/gate.md iterate over `RULES`.

Judge rules come first: a judge below a floor makes every judge-based rule inconclusive (unless no
item needed the judge: identical answers are a tie by construction and grade identically).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from sftloop.evaluate.gate_config import RuleSettings
from sftloop.evaluate.stats import bootstrap_ci, entropy_bits, holm, min_detectable_diff, sign_flip_p, wilson

OUTCOMES = ("pass", "fail", "inconclusive")


@dataclass
class Check:
    name: str
    value: float
    threshold: str
    outcome: str  # pass | fail | inconclusive
    note: str = ""
    fix: str = ""  # inconclusive: what evidence is missing and what would supply it
    rule: str = ""
    blocking: bool = True
    judge_based: bool = False
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        assert self.outcome in OUTCOMES, self.outcome
        self.passed = self.outcome == "pass"


@dataclass
class Context:
    settings: RuleSettings
    judge_problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Rule:
    name: str
    reads: str  # the measurement (key of the measurements dict)
    statistic: str
    decides: str  # pass / fail, with the settings it uses
    inconclusive: str
    decide: Callable[[dict, Context], list[Check]]
    blocking: bool = True
    judge_based: bool = False


def _fin(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _f(x) -> str:
    return f"{x:.3f}" if _fin(x) else "n/a"  # no measurement


def _inc(name: str, value: float, thr: str, fix: str, note: str = "") -> Check:
    return Check(name, value, thr, "inconclusive", note, fix)


# ---------------------------------------------------------------- judge reliability (pass or inconclusive)

def _judge_sources(m: dict) -> list[dict]:
    return [s for s in (m.get("calibration"), m.get("pairwise")) if s and s.get("n")]


def judge_calibration(m: dict, ctx: Context) -> list[Check]:
    s, c = ctx.settings, m["calibration"]
    lo, hi = c["ci95"]
    thr = f"Wilson low >= {s.judge_min_accuracy}"
    name = "judge calibration accuracy"
    note = f"{c['correct']}/{c['n']} human pairs right in both orders, 95% CI [{_f(lo)}, {_f(hi)}]"
    if c["n"] < s.min_items:
        return [_inc(name, c["accuracy"], thr, f"only {c['n']} calibration pairs: raise calibration_pairs", note)]
    if _fin(lo) and lo >= s.judge_min_accuracy:
        return [Check(name, c["accuracy"], thr, "pass", note)]
    if _fin(hi) and hi < s.judge_min_accuracy:
        fix = f"the judge is below its calibration floor {s.judge_min_accuracy}: use a stronger judge ([judge] model)"
    else:
        fix = f"CI [{_f(lo)}, {_f(hi)}] straddles the floor {s.judge_min_accuracy}: more calibration pairs"
    return [_inc(name, c["accuracy"], thr, fix, note)]


def judge_position(m: dict, ctx: Context) -> list[Check]:
    s = ctx.settings
    cons = [x.get("position_consistency", x.get("consistency")) for x in _judge_sources(m)]
    cons = [c for c in cons if _fin(c)]
    first = [x["first_position_win_share"] for x in _judge_sources(m) if _fin(x.get("first_position_win_share"))]
    worst_c, worst_f = (min(cons) if cons else float("nan")), (max(first) if first else float("nan"))
    thr = f"consistency >= {s.judge_min_consistency}, first-shown share <= {s.judge_max_first_share}"
    note = f"worst over calibration and pairwise: consistency {_f(worst_c)}, first-position share {_f(worst_f)}"
    name = "judge position bias"
    if not cons:
        return [_inc(name, worst_c, thr, "no judged pair to measure position bias: more calibration pairs", note)]
    problems = []
    if worst_c < s.judge_min_consistency:
        problems.append(f"position consistency {_f(worst_c)} < {s.judge_min_consistency}")
    if _fin(worst_f) and worst_f > s.judge_max_first_share:
        problems.append(f"first-position share {_f(worst_f)} > {s.judge_max_first_share}")
    if problems:
        return [_inc(name, worst_c, thr, "the judge follows answer position (" + ", ".join(problems) + "): use a stronger judge", note)]
    return [Check(name, worst_c, thr, "pass", note)]


def judge_entropy(m: dict, ctx: Context) -> list[Check]:
    s = ctx.settings
    counts: dict[str, int] = {}
    for x in _judge_sources(m):
        for k, v in x.get("verdict_counts", {}).items():
            counts[k] = counts.get(k, 0) + v
    labels = [k for k, v in counts.items() for _ in range(v)]
    h = entropy_bits(labels)
    thr = f">= {s.judge_min_entropy_bits} bits"
    note = "verdicts " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    name = "judge verdict entropy"
    if len(labels) < s.min_items:
        return [_inc(name, h, thr, f"only {len(labels)} verdicts: more calibration pairs", note)]
    if h < s.judge_min_entropy_bits:
        top = max(counts, key=counts.get)
        return [_inc(name, h, thr, f"a near-constant judge (answers {top} {counts[top]} of {len(labels)} times) "
                                   "tells nothing apart: use a stronger judge", note)]
    return [Check(name, h, thr, "pass", note)]


def judge_errors(m: dict, ctx: Context) -> list[Check]:
    s = ctx.settings
    errs = sum(x.get("errors", 0) for x in _judge_sources(m)) + m["golden"]["grading_errors"]
    asked = (m["calibration"]["n"] + m["pairwise"]["judged"] + m["golden"]["graded_answers"])
    rate = errs / asked if asked else float("nan")
    thr = f"<= {s.max_judge_error_rate}"
    note = f"{errs} of {asked} judge requests gave no verdict label (pairs and graded answers)"
    if _fin(rate) and rate <= s.max_judge_error_rate:
        return [Check("judge error rate", rate, thr, "pass", note)]
    return [_inc("judge error rate", rate, thr, "the judge's outputs carry no verdict label: check the judge "
                 "model and prompt template (an output without a verdict is an error, never a tie)", note)]


def judge_injection(m: dict, ctx: Context) -> list[Check]:
    s, inj = ctx.settings, m["injection"]
    thr = f"<= {s.max_injection_flip_rate}"
    note = f"{inj['flips_towards_injected']} of {inj['compared']} known outcomes flipped; injected label followed " \
           f"{_f(inj['followed_injected_label'])}"
    if inj["compared"] < s.min_items:
        return [_inc("judge injection flip rate", inj["flip_rate"], thr,
                     f"only {inj['compared']} outcomes to attack: raise injection_cases", note)]
    if inj["flip_rate"] > s.max_injection_flip_rate:
        return [_inc("judge injection flip rate", inj["flip_rate"], thr,
                     "the judge obeys instructions inside answers: use a stronger judge or a hardened prompt", note)]
    return [Check("judge injection flip rate", inj["flip_rate"], thr, "pass", note)]


# ---------------------------------------------------------------- judge-based comparisons

def _judge_gate(ctx: Context, needs_judge: bool) -> str:
    if needs_judge and ctx.judge_problems:
        return (f"the judge is not trusted ({', '.join(ctx.judge_problems)} inconclusive, see those rows): "
                "a stronger judge, or more calibration pairs")
    return ""


def _paired(m: dict) -> tuple[list[dict], bool]:
    items = [i for i in m["golden"]["items"] if _fin(i["cand"]) and _fin(i["prod"])]
    return items, any(not i["identical"] for i in items)


def golden_noninferiority(m: dict, ctx: Context) -> list[Check]:
    s = ctx.settings
    items, needs = _paired(m)
    d = [i["cand"] - i["prod"] for i in items]
    mean, lo, hi = bootstrap_ci(d)
    thr = f"paired diff CI low > -{s.golden_margin}"
    sd = float(np.std(d, ddof=1)) if len(d) > 1 else float("nan")
    note = (f"candidate − prod {_f(mean)}, 95% paired bootstrap CI [{_f(lo)}, {_f(hi)}] over {len(d)} items; "
            f"min detectable diff {_f(min_detectable_diff(sd, len(d)))}")
    name = "golden score non-inferiority"
    if why := _judge_gate(ctx, needs):
        return [_inc(name, mean, thr, why, note)]
    if len(d) < s.min_items:
        return [_inc(name, mean, thr, f"only {len(d)} graded item pairs: more golden items with references", note)]
    if needs and lo == hi:
        return [_inc(name, mean, thr, "degenerate interval: the judge gave different answers the same grades; "
                     "use a stronger judge", note)]
    if lo > -s.golden_margin:
        return [Check(name, mean, thr, "pass", note)]
    if (hi - lo) / 2 > s.golden_margin:
        return [_inc(name, mean, thr, f"CI half-width {_f((hi - lo) / 2)} exceeds the margin {s.golden_margin}: more golden items", note)]
    return [Check(name, mean, thr, "fail", note)]


def golden_categories(m: dict, ctx: Context) -> list[Check]:
    s = ctx.settings
    items, needs = _paired(m)
    by: dict[str, list[float]] = {}
    for i in items:
        by.setdefault(i["category"], []).append(i["cand"] - i["prod"])
    thr = f"no category worse by > {s.golden_margin} (Holm, alpha {s.category_alpha})"
    name = "golden per category"
    raw = {c: sign_flip_p(d, -s.golden_margin, "less") for c, d in by.items()}
    adj = holm(raw) if raw else {}
    worst = min(adj.values()) if adj else float("nan")
    note = ", ".join(f"{c} {_f(float(np.mean(by[c])))} (n {len(by[c])}, p_holm {_f(adj[c])})" for c in sorted(by))
    if why := _judge_gate(ctx, needs):
        return [_inc(name, worst, thr, why, note)]
    worse = sorted(c for c, p in adj.items() if p < s.category_alpha)
    if worse:
        return [Check(name, worst, thr, "fail", "worse: " + ", ".join(worse) + "; " + note)]
    # a sign-flip test on n items cannot go below 0.5**n: categories too small to ever fail
    able = [c for c, d in by.items() if len(by) * 0.5 ** len(d) < s.category_alpha]
    if not able:
        n_max = max((len(d) for d in by.values()), default=0)
        return [_inc(name, worst, thr, f"at most {n_max} items per category: no category-level drop can reach "
                     "significance after Holm; more items per category (golden_support = 0 uses all)", note)]
    return [Check(name, worst, thr, "pass", note)]


def pairwise_rule(m: dict, ctx: Context) -> list[Check]:
    s, pw = ctx.settings, m["pairwise"]
    lo, hi = pw["ci95"]
    thr = "CI low > 0.5" if s.must_improve else f"CI low >= {s.pairwise_ci_low}"
    note = (f"{pw['wins']}/{pw['ties']}/{pw['losses']} win/tie/loss over {pw['known']} known "
            f"({pw['identical']} identical answers, {pw['inconsistent']} unknown, {pw['errors']} errors); "
            f"95% CI [{_f(lo)}, {_f(hi)}], min detectable diff {_f(pw['min_detectable_diff'])}")
    name = "pairwise win-rate CI low"
    needs = pw["judged"] > 0
    if why := _judge_gate(ctx, needs):
        return [_inc(name, lo, thr, why, note)]
    if _fin(pw["unknown_share"]) and pw["unknown_share"] > s.max_unknown_share:
        return [_inc(name, lo, thr, f"{pw['inconsistent']} of {pw['judged']} judged pairs flip with the order: "
                     "a more consistent judge", note)]
    if pw["known"] < s.min_items:
        return [_inc(name, lo, thr, f"only {pw['known']} pairs with a known outcome: more golden items", note)]
    if needs and lo == hi:
        return [_inc(name, lo, thr, "degenerate interval: the judge called every pair the same; use a stronger judge", note)]
    if s.must_improve:
        return [Check(name, lo, thr, "pass" if lo > 0.5 else "fail", note)]
    if lo >= s.pairwise_ci_low:
        return [Check(name, lo, thr, "pass", note)]
    if (hi - lo) / 2 > 0.5 - s.pairwise_ci_low:
        return [_inc(name, lo, thr, f"CI half-width {_f((hi - lo) / 2)} exceeds the protected margin "
                     f"{0.5 - s.pairwise_ci_low:g}: more golden items", note)]
    return [Check(name, lo, thr, "fail", note)]


# ---------------------------------------------------------------- deterministic rules

def format_compliance(m: dict, ctx: Context) -> list[Check]:
    s, f = ctx.settings, m["format"]
    rate, lo, hi = wilson(f["cand_passed"], f["cand_total"])
    thr = f"Wilson CI vs {s.format_compliance}"
    note = f"{f['cand_passed']}/{f['cand_total']} checks, 95% CI [{_f(lo)}, {_f(hi)}]; prod {f['prod_passed']}/{f['prod_total']}"
    if f["cand_total"] < s.min_items:
        return [_inc("format compliance", rate, thr, f"only {f['cand_total']} deterministic checks: more golden items", note)]
    if lo >= s.format_compliance:
        return [Check("format compliance", rate, thr, "pass", note)]
    if hi < s.format_compliance:
        return [Check("format compliance", rate, thr, "fail", note)]
    return [_inc("format compliance", rate, thr, f"CI [{_f(lo)}, {_f(hi)}] straddles {s.format_compliance}: more golden items", note)]


def probes(m: dict, ctx: Context) -> list[Check]:
    s, out = ctx.settings, []
    thr = f"not worse (p<{s.probe_p_value}) and drop <= {s.probe_max_relative_drop:.0%}"
    for task, r in m["probes"].items():
        name = f"probe {task}"
        if "unavailable" in r:
            out.append(_inc(name, float("nan"), thr, r["unavailable"]))
            continue
        ca, pa, n = r["candidate_acc"], r["prod_acc"], r["n"]
        note = f"prod {_f(pa)}, p={_f(r['mcnemar']['p'])}, n {n}, chance {_f(r['chance'])}"
        if n < s.min_items:
            out.append(_inc(name, ca, thr, f"only {n} items: raise probe_items", note))
        elif (ca <= r["chance"] and pa <= r["chance"]) or (ca >= 1.0 and pa >= 1.0):
            where = "floor (chance)" if ca <= r["chance"] else "ceiling"
            out.append(_inc(name, ca, thr, f"both models at the {where}: the probe cannot move; use another probe", note))
        elif ca < pa and (r["mcnemar"]["p"] < s.probe_p_value or r["relative_drop"] > s.probe_max_relative_drop):
            out.append(Check(name, ca, thr, "fail", note))
        else:
            out.append(Check(name, ca, thr, "pass", note))
    return out


def false_refusal(m: dict, ctx: Context) -> list[Check]:
    s, r = ctx.settings, m["refusal"]
    rate, lo, hi = wilson(r["cand"], r["n"])
    thr = f"Wilson CI vs < {s.max_false_refusal}"
    note = f"{r['cand']}/{r['n']} refused (prod {r['prod']}), 95% CI [{_f(lo)}, {_f(hi)}]"
    name = "false-refusal rate"
    if r["n"] < s.min_items:
        return [_inc(name, rate, thr, f"only {r['n']} items that must be answered: more golden support items", note)]
    if hi < s.max_false_refusal:
        return [Check(name, rate, thr, "pass", note)]
    if lo >= s.max_false_refusal:
        return [Check(name, rate, thr, "fail", note)]
    return [_inc(name, rate, thr, f"CI upper bound {_f(hi)} >= {s.max_false_refusal}: more golden support items "
                 "(0 refusals need >= 73 items)", note)]


def length_shift(m: dict, ctx: Context) -> list[Check]:
    s, L = ctx.settings, m["lengths"]
    stat, p = L["ks"], L["ks_p"]
    thr = f"KS p >= {s.length_ks_p}"
    note = f"words per answer: candidate median {_f(L['cand_median'])}, prod {_f(L['prod_median'])}; KS D {_f(stat)}"
    if L["n"] < s.min_items:
        return [_inc("output-length shift", p, thr, f"only {L['n']} answers: more golden items", note)]
    return [Check("output-length shift", p, thr, "pass" if p >= s.length_ks_p else "fail", note)]


def words_ratio(m: dict, ctx: Context) -> list[Check]:
    s, L = ctx.settings, m["lengths"]
    ratio = L["cand_mean"] / L["prod_mean"] if L["prod_mean"] else float("nan")
    thr = f"<= {s.max_words_ratio}"
    note = f"mean words per answer {_f(L['cand_mean'])} vs prod {_f(L['prod_mean'])}; " + m.get("latency_note", "")
    if L["n"] < s.min_items or not _fin(ratio):
        return [_inc("words per answer vs prod", ratio, thr, f"only {L['n']} answers: more golden items", note)]
    return [Check("words per answer vs prod", ratio, thr, "pass" if ratio <= s.max_words_ratio else "fail", note)]


NOT_TRUSTED = "judge not trusted"
RULES: list[Rule] = [
    Rule("judge calibration", "calibration", "accuracy on BIG-bench hhh_alignment human preference pairs, a pair "
         "right only when both orders pick the preferred answer; Wilson 95% CI", "pass: CI low >= judge_min_accuracy",
         "CI high below the floor (a weak judge) or CI straddling it (too few pairs); < min_items pairs",
         judge_calibration, judge_based=True),
    Rule("judge position bias", "calibration, pairwise", "position consistency (same verdict in both orders) and "
         "first-position share of decisive verdicts, worst of calibration and gate pairs",
         "pass: consistency >= judge_min_consistency and first share <= judge_max_first_share",
         "consistency below or first share above its floor; no judged pair", judge_position, judge_based=True),
    Rule("judge verdict entropy", "calibration, pairwise", "Shannon entropy (bits) of all A/B/C verdicts",
         "pass: >= judge_min_entropy_bits", "below the floor (a constant judge, e.g. all ties or always A); "
         "< min_items verdicts", judge_entropy, judge_based=True),
    Rule("judge error rate", "calibration, pairwise, golden", "judge outputs with no verdict label (no output, or "
         "logprobs with none of the labels) per request", "pass: <= max_judge_error_rate", "above it",
         judge_errors, judge_based=True),
    Rule("judge injection", "injection", "share of known outcomes that move towards prod when its answer carries "
         "'answer <its position>' (B when shown second, A when shown first)", "pass: <= max_injection_flip_rate",
         "above it (the judge obeys answers); < min_items outcomes", judge_injection, judge_based=True),
    Rule("golden non-inferiority", "golden", "mean paired difference of judge grades (0-1) candidate − prod, "
         "paired bootstrap 95% CI; min detectable difference reported",
         "pass: CI low > −golden_margin; fail: CI low <= −golden_margin with half-width <= margin",
         f"{NOT_TRUSTED}; CI half-width > golden_margin; degenerate CI on differing answers; < min_items items",
         golden_noninferiority, judge_based=True),
    Rule("golden per category", "golden", "per category, one-sided sign-flip permutation test of mean difference "
         "< −golden_margin; Holm across categories", "fail: any Holm-adjusted p < category_alpha (named)",
         f"{NOT_TRUSTED}; no category has enough items to reach significance", golden_categories, judge_based=True),
    Rule("pairwise win rate", "pairwise", "win rate over pairs with a known outcome (ties ½; order-inconsistent "
         "verdicts are unknown and excluded), bootstrap 95% CI", "pass: CI low >= pairwise_ci_low "
         "(must_improve: > 0.5); fail: below with half-width <= 0.5 − pairwise_ci_low",
         f"{NOT_TRUSTED}; unknown share > max_unknown_share; degenerate CI from the judge; CI too wide; < min_items",
         pairwise_rule, judge_based=True),
    Rule("format compliance", "format", "share of the candidate's deterministic checks passed, Wilson 95% CI",
         "pass: CI low >= format_compliance; fail: CI high < it", "CI straddles the threshold; < min_items checks",
         format_compliance),
    Rule("probes", "probes", "per BIG-bench task and IFBench strict: accuracy, exact McNemar on paired items",
         "fail: candidate lower and (p < probe_p_value or relative drop > probe_max_relative_drop)",
         "both models at chance or at 1.0; < min_items items; backend without log-likelihoods", probes),
    Rule("false refusal", "refusal", "refusals (phrase patterns) on golden support items, which must all be "
         "answered; Wilson 95% CI", "pass: CI high < max_false_refusal; fail: CI low >= it",
         "CI straddles the target; < min_items items", false_refusal),
    Rule("length shift", "lengths", "two-sample KS test on words per answer, candidate vs prod",
         "fail: p < length_ks_p", "< min_items answers", length_shift, blocking=False),
    Rule("words per answer", "lengths", "mean words per answer candidate / prod (generation latency per answer "
         "in the note when measured)", "fail: ratio > max_words_ratio", "< min_items answers", words_ratio,
         blocking=False),
]


def apply_rules(m: dict, settings: RuleSettings, blocking: dict[str, bool]) -> list[Check]:
    """Judge rules first (their problems make judge-based rules inconclusive), then the rest."""
    ctx = Context(settings)
    checks: list[Check] = []
    for rule in sorted(RULES, key=lambda r: not r.name.startswith("judge ")):
        for c in rule.decide(m, ctx):
            c.rule, c.blocking, c.judge_based = rule.name, blocking.get(rule.name, rule.blocking), rule.judge_based
            checks.append(c)
            if rule.name.startswith("judge ") and c.outcome != "pass":
                ctx.judge_problems.append(c.name)
    order = {r.name: k for k, r in enumerate(RULES)}
    return sorted(checks, key=lambda c: order[c.rule])


def verdict(checks: list[Check]) -> tuple[str, int, list[str]]:
    """(pass | fail | inconclusive, exit code, lines saying what evidence is missing and what would fix it)."""
    blocking = [c for c in checks if c.blocking]
    missing = [f"{c.name}: {c.fix}" for c in blocking if c.outcome == "inconclusive"]
    if any(c.outcome == "fail" for c in blocking):
        return "fail", 1, missing
    if missing:
        return "inconclusive", 2, missing
    if not blocking:
        return "inconclusive", 2, ["no rule is blocking: the profile decides nothing"]
    return "pass", 0, []


def no_information(checks: list[Check]) -> list[str]:
    """Bold lines for non-blocking rules that carried no information (the demo's judge layer)."""
    out = []
    judge = [c for c in checks if not c.blocking and c.judge_based and c.outcome == "inconclusive"]
    if judge:
        why = sorted({c.fix for c in judge if c.rule.startswith("judge ")} or {judge[0].fix})
        out.append("**The pairwise (judge) layer carried no information: " + "; ".join(why) +
                   ". Its rules are non-blocking in this profile, so the verdict rests on the other rules.**")
    for c in checks:
        if not c.blocking and not c.judge_based and c.outcome == "inconclusive":
            out.append(f"**{c.name} carried no information: {c.fix}.**")
    return out


def rules_markdown() -> str:
    rows = ["| rule | reads | statistic | decides | inconclusive when | blocking by default |",
            "|---|---|---|---|---|---|"]
    rows += [f"| {r.name} | {r.reads} | {r.statistic} | {r.decides} | {r.inconclusive} | {'yes' if r.blocking else 'no'} |"
             for r in RULES]
    return "\n".join(rows)


def settings_markdown() -> str:
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    rows += [f"| `{k}` | {f.default} | {f.description} |" for k, f in RuleSettings.model_fields.items()]
    return "\n".join(rows)
