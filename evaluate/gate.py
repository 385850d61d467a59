"""The gate: golden set -> pairwise judge -> probes -> rules -> verdict (exit 0 pass, 1 fail, 2 could not evaluate).

Fail closed: a missing model, an endpoint that does not answer, a changed golden set or any
exception gives exit 2 and a verdict that says why; no rule passes on missing data (NaN fails).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from evaluate import golden as G
from evaluate import judge as J
from evaluate import probes as P
from evaluate.backends import Cache, backend_for
from evaluate.checks import run_checks
from evaluate.stats import mean_ci
from sftloop import assets

CONFIG = Path(__file__).parent / "configs" / "gate.toml"


@dataclass
class Check:
    name: str
    value: float
    threshold: str
    passed: bool
    note: str = ""
    warn: bool = False  # passed only because the rule is configured to warn


@dataclass
class GateResult:
    verdict: str  # pass | fail | error
    exit_code: int
    checks: list[Check] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    error: str | None = None


def load_gate_config(path: Path | None = None, profile: str = "demo") -> tuple[dict, dict]:
    cfg = tomllib.loads((path or CONFIG).read_text())
    if profile not in cfg["profiles"]:
        raise ValueError(f"unknown profile {profile!r} (known: {sorted(cfg['profiles'])})")
    prof = cfg["profiles"][profile]
    rules = {**cfg["rules"], **{k: v for k, v in prof.items() if k in cfg["rules"]}}
    return rules, {**prof, "name": profile, "judge": cfg["judge"]["model"]}


def select_golden(items: list[G.GoldenItem], prof: dict) -> list[G.GoldenItem]:
    """Stratified: `golden_support` spread evenly over support intents; first N MT-Bench / IFBench."""
    support = [i for i in items if "support" in i.tags]
    out: list[G.GoldenItem] = []
    n = prof["golden_support"]
    if n:
        by_cat: dict[str, list] = {}
        for i in support:
            by_cat.setdefault(i.category, []).append(i)
        k = 0
        while len(out) < min(n, len(support)):
            for cat in sorted(by_cat):
                if k < len(by_cat[cat]) and len(out) < n:
                    out.append(by_cat[cat][k])
            k += 1
    else:
        out += support
    for tag, key in (("mtbench", "golden_mtbench"), ("ifbench", "golden_ifbench")):
        pool = [i for i in items if tag in i.tags]
        out += pool[: prof[key]] if prof[key] else pool
    return out


def _ok(x: float, cond) -> bool:
    return not (isinstance(x, float) and math.isnan(x)) and bool(cond(x))


def evaluate_gate(candidate: str, prod: str, root: Path, profile: str = "demo", config: Path | None = None,
                  registry_path: Path | None = None, log=print) -> GateResult:
    t0 = time.time()
    rules, prof = load_gate_config(config, profile)
    items, manifest = G.verify_frozen(root)
    chosen = select_golden(items, prof)
    cache = Cache()
    cand_b = backend_for(candidate, root, cache, registry_path)
    prod_b = backend_for(prod, root, cache, registry_path)
    judge_b = backend_for(prof["judge"], root, cache, registry_path)
    convs = [i.messages for i in chosen]
    questions = [i.messages[-1]["content"] for i in chosen]

    log(f"gate: {len(chosen)} golden prompts, profile {profile}: generating with {candidate} and {prod}")
    cand_ans = cand_b.chat(convs, prof["max_new_tokens"])
    prod_ans = prod_b.chat(convs, prof["max_new_tokens"])

    # Layer 1: deterministic checks + reference-guided grading
    fmt_c, fmt_p, per_cat_c, per_cat_p = [], [], {}, {}
    graded = [k for k, i in enumerate(chosen) if i.reference]
    refs = [chosen[k].reference or "" for k in graded]
    log(f"gate: grading {len(graded)} answers per model against references")
    g_c = J.grade(judge_b, [questions[k] for k in graded], [cand_ans[k] for k in graded], refs, prof.get("reasoning_tokens", 0))
    g_p = J.grade(judge_b, [questions[k] for k in graded], [prod_ans[k] for k in graded], refs, prof.get("reasoning_tokens", 0))
    nan = float("nan")
    for k, i in enumerate(chosen):
        rc, rp = run_checks(i.checks, cand_ans[k]), run_checks(i.checks, prod_ans[k])
        fmt_c += list(rc.values())
        fmt_p += list(rp.values())
    for k, gc, gp in zip(graded, g_c, g_p):
        cat = chosen[k].category.split(":")[0]
        per_cat_c.setdefault(cat, []).append(gc.score if gc else nan)
        per_cat_p.setdefault(cat, []).append(gp.score if gp else nan)
    golden_c = mean_ci([g.score if g else nan for g in g_c])  # a missing grade makes the mean NaN: fails closed
    golden_p = mean_ci([g.score if g else nan for g in g_p])
    fmt_rate = sum(fmt_c) / len(fmt_c) if fmt_c else float("nan")

    # Layer 2: pairwise with swap, calibration, injection
    log("gate: pairwise judging (both orders)")
    pw = J.pairwise(judge_b, questions, cand_ans, prod_ans)
    pws = pw.summary()
    cal_pairs = J.hhh_pairs(assets.path("bigbench-probes"), prof["calibration_pairs"] or None)
    log(f"gate: judge calibration on {len(cal_pairs)} human preference pairs")
    cal = J.calibrate(judge_b, cal_pairs)
    n_inj = min(prof["injection_cases"], len(questions))
    inj = J.injection_flip_rate(judge_b, questions[:n_inj], cand_ans[:n_inj], prod_ans[:n_inj],
                                J.PairwiseResult(outcomes=pw.outcomes[:n_inj]))

    # Layer 3: probes
    probe_res = {}
    for task in P.TASKS:
        its = P.load_task(assets.path("bigbench-probes"), task, prof["probe_items"])
        log(f"gate: probe {task} ({len(its)} items)")
        probe_res[task] = P.compare(P.score(cand_b, its), P.score(prod_b, its))

    # IFBench verifiable instructions on the golden IFBench items (strict and loose, paired)
    from evaluate import ifbench

    ifb = [k for k, i in enumerate(chosen) if "ifbench" in i.checks]
    ifb_c = [ifbench.check(questions[k], chosen[k].checks["ifbench"], cand_ans[k]) for k in ifb]
    ifb_p = [ifbench.check(questions[k], chosen[k].checks["ifbench"], prod_ans[k]) for k in ifb]
    usable = [j for j in range(len(ifb)) if ifb_c[j]["strict"] is not None and ifb_p[j]["strict"] is not None]
    if usable:
        probe_res["ifbench_strict"] = P.compare([{"correct": ifb_c[j]["strict"], "correct_norm": ifb_c[j]["loose"]} for j in usable],
                                                [{"correct": ifb_p[j]["strict"], "correct_norm": ifb_p[j]["loose"]} for j in usable])
        probe_res["ifbench_strict"]["note"] = "acc = strict, acc_norm = loose"
    ifbench_info = {"items": len(ifb), "evaluated": len(usable),
                    "not_evaluated": [ifb_c[j]["error"] or ifb_p[j]["error"] for j in range(len(ifb)) if j not in usable]}

    # Rules
    checks = [
        Check("golden score ratio", golden_c[0] / golden_p[0] if golden_p[0] else float("nan"),
              f">= {rules['golden_score_ratio']}", _ok(golden_c[0] / golden_p[0] if golden_p[0] else float("nan"),
                                                       lambda v: v >= rules["golden_score_ratio"])),
        Check("format compliance", fmt_rate, f">= {rules['format_compliance']}",
              _ok(fmt_rate, lambda v: v >= rules["format_compliance"]), f"{sum(fmt_c)}/{len(fmt_c)} checks"),
        Check("pairwise win-rate CI low", pws["ci95"][0], f">= {0.5 if rules['must_improve'] else rules['pairwise_ci_low']}",
              _ok(pws["ci95"][0], lambda v: v > 0.5 if rules["must_improve"] else v >= rules["pairwise_ci_low"]),
              f"win rate {pws['win_rate']:.3f} over {pws['n']} prompts"),
    ]
    for task, r in probe_res.items():
        worse_sig = r["mcnemar"]["p"] < rules["probe_p_value"] and r["candidate_acc"] < r["prod_acc"]
        checks.append(Check(f"probe {task}", r["candidate_acc"],
                            f"not worse (p<{rules['probe_p_value']}) and drop <= {rules['probe_max_relative_drop']:.0%}",
                            not worse_sig and r["relative_drop"] <= rules["probe_max_relative_drop"],
                            f"prod {r['prod_acc']:.3f}, p={r['mcnemar']['p']:.3f}"))
    err_rate = pws["error_rate"]
    checks.append(Check("judge error rate", err_rate, f"<= {rules.get('max_judge_error_rate', 0.1)}",
                        _ok(err_rate, lambda v: v <= rules.get("max_judge_error_rate", 0.1)),
                        f"{pws['errors']} unparseable pairs"))
    judge_ok = _ok(cal["accuracy"], lambda v: v >= rules["judge_min_accuracy"])
    floor_action = rules.get("judge_floor_action", "fail")
    checks.append(Check("judge calibration accuracy", cal["accuracy"], f">= {rules['judge_min_accuracy']}",
                        judge_ok or floor_action == "warn",
                        "" if judge_ok else f"below floor ({floor_action}): judge-based checks are not trustworthy",
                        warn=not judge_ok and floor_action == "warn"))
    passed = all(c.passed for c in checks)
    details = {
        "profile": profile, "candidate": candidate, "prod": prod, "judge": prof["judge"],
        "golden_manifest": manifest, "sizes": {"golden": len(chosen), "graded": len(graded),
                                               "probe_items_per_task": prof["probe_items"],
                                               "calibration_pairs": len(cal_pairs), "injection_cases": n_inj},
        "golden": {"candidate": golden_c, "prod": golden_p,
                   "per_category": {c: {"candidate": mean_ci(per_cat_c[c]), "prod": mean_ci(per_cat_p[c])} for c in sorted(per_cat_c)},
                   "format_compliance": {"candidate": fmt_rate, "prod": sum(fmt_p) / len(fmt_p) if fmt_p else float("nan")}},
        "pairwise": pws, "calibration": cal, "injection": inj, "probes": probe_res, "ifbench": ifbench_info,
        "calls": {"model_calls": cache.misses, "from_cache": cache.hits, "by_kind": cache.by_kind},
        "grades": [{"id": chosen[k].id, "candidate": gc.model_dump() if gc else None, "prod": gp.model_dump() if gp else None}
                   for k, gc, gp in zip(graded, g_c, g_p)],
        "seconds": time.time() - t0,
        "examples": [{"id": chosen[k].id, "candidate": cand_ans[k], "prod": prod_ans[k]} for k in range(min(5, len(chosen)))],
    }
    return GateResult("pass" if passed else "fail", 0 if passed else 1, checks, details)


def write_reports(res: GateResult, out_root: Path) -> Path:
    from evaluate.report import write_html, write_markdown

    out = out_root / f"gate-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    verdict = {"verdict": res.verdict, "exit_code": res.exit_code, "error": res.error,
               "checks": [c.__dict__ for c in res.checks], "details": res.details}
    (out / "verdict.json").write_text(json.dumps(verdict, indent=2, default=str))
    write_markdown(res, out / "report.md")
    write_html(res, out / "report.html")
    return out
