"""The gate: measure (golden set -> pairwise judge -> probes), then apply the declared rules
(`evaluate/rules.py`) -> verdict: exit 0 pass, 1 fail, 2 could not evaluate or inconclusive.

Fail closed: a missing model, an endpoint that does not answer (or answers nothing), a passed
deadline, a changed golden set, an invalid config or any exception gives exit 2 and a verdict
that says why. A rule whose evidence cannot support a verdict is inconclusive, never a pass.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from sftloop.evaluate import gate_config
from sftloop.evaluate import golden as G
from sftloop.evaluate import judge as J
from sftloop.evaluate import probes as P
from sftloop.backends import BackendError, Cache, Deadline, backend_for
from sftloop.evaluate.checks import is_refusal, run_checks
from sftloop.evaluate.rules import Check, apply_rules, no_information, verdict
from sftloop.evaluate.stats import ks_2samp, mean_ci
from sftloop.progress import progress, stage
from sftloop import assets

__all__ = ["Check", "GateResult", "evaluate_gate", "load_gate_config", "measure", "select_golden", "write_reports"]


@dataclass
class GateResult:
    verdict: str  # pass | fail | inconclusive | error
    exit_code: int
    checks: list[Check] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    error: str | None = None


def load_gate_config(path: Path | None = None, profile: str = "demo") -> tuple[dict, dict]:
    """(rule settings, profile with `name` and `judge`) as plain dicts, for readers outside the gate."""
    r = gate_config.load(path, profile)
    return r.settings.model_dump(), {**r.profile.model_dump(), "name": r.name, "judge": r.judge}


def select_golden(items: list[G.GoldenItem], prof: gate_config.Profile | dict) -> list[G.GoldenItem]:
    """Stratified: `golden_support` spread evenly over support intents; first N MT-Bench / IFBench."""
    if isinstance(prof, dict):
        prof = gate_config.Profile(**{k: v for k, v in prof.items() if k in gate_config.Profile.model_fields})
    support = [i for i in items if "support" in i.tags]
    out: list[G.GoldenItem] = []
    n = prof.golden_support
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
        out += pool[: getattr(prof, key)] if getattr(prof, key) else pool
    return out


def _render(conv: list[dict]) -> str:
    """A conversation as the judge's 'user request' (the last user turn is the one answered)."""
    if len(conv) == 1:
        return conv[0]["content"]
    return "\n\n".join(f"[{m['role']}] {m['content']}" for m in conv) + "\n\n(Judge the answer to the last user turn.)"


@dataclass
class Unit:
    """One answer each model gives: an item's turn 1, or MT-Bench turn 2 after the model's own turn 1."""

    item: G.GoldenItem
    turn: int
    reference: str | None
    cand_conv: list[dict]
    prod_conv: list[dict]


def _turn2(chosen: list[G.GoldenItem]) -> dict[str, tuple[str, str | None]]:
    """item id -> (MT-Bench second user turn, its reference answer or None)."""
    if not any("mtbench" in i.tags for i in chosen):
        return {}
    try:  # the one reader of eval items (issue 12); until it lands, the same two asset files directly
        from sftloop.evaluate import evalsets

        questions, references = evalsets.mtbench_questions(), evalsets.mtbench_references()
    except ImportError:
        qdir = assets.path("mtbench") / "mt_bench"
        questions = [json.loads(x) for x in (qdir / "question.jsonl").read_text().splitlines() if x.strip()]
        references = {r["question_id"]: list(r["choices"][0]["turns"]) for r in
                      (json.loads(x) for x in (qdir / "reference_answer" / "gpt-4.jsonl").read_text().splitlines() if x.strip())}
    qs = {f"mtbench-{q['question_id']}": q for q in questions}
    refs = {f"mtbench-{k}": v for k, v in references.items()}
    return {i.id: (qs[i.id]["turns"][1], (refs.get(i.id) or [None, None])[1])
            for i in chosen if "mtbench" in i.tags and len(qs.get(i.id, {}).get("turns", [])) > 1}


class _Stages:
    """`gate: <stage> ...` / `... done in N s` lines (sftloop.progress.stage), one stage after the other."""

    def __init__(self, cmd: str = "gate") -> None:
        self.cmd, self._cm = cmd, None

    def next(self, name: str | None) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = None
        if name:
            self._cm = stage(self.cmd, name)
            self._cm.__enter__()


def _batched(fn, xs: list, desc: str, *args, size: int = 16) -> list:
    """`fn(chunk, *args)` over `xs` in chunks: a progress line with an ETA (a tqdm bar only on a TTY)."""
    out: list = []
    chunks = [xs[s:s + size] for s in range(0, len(xs), size)]
    for ch in progress(chunks, total=len(chunks), desc=desc, unit="batch"):
        out += fn(ch, *args)
    return out


def _latency(b) -> str:
    t = getattr(b, "timing", {}).get("chat")
    return f"{t[0] / t[1]:.2f} s/answer over {t[1]} new" if t and t[1] else "from cache (not measured)"


def measure(cand_b, prod_b, judge_b, chosen: list[G.GoldenItem], prof: gate_config.Profile, deadline: Deadline,
            log=print) -> dict:
    """Every measurement the rules read (see `evaluate.rules.RULES[*].reads`)."""
    nan = float("nan")
    convs = [i.messages for i in chosen]
    st = _Stages()
    st.next(f"golden answers ({len(chosen)} prompts, both models)")
    cand_ans = _batched(cand_b.chat, convs, "gate: candidate answers", prof.max_new_tokens)
    prod_ans = _batched(prod_b.chat, convs, "gate: prod answers", prof.max_new_tokens)
    units = [Unit(i, 1, i.reference, i.messages, i.messages) for i in chosen]
    answers = [(c, p) for c, p in zip(cand_ans, prod_ans)]
    if prof.mtbench_turn2:
        t2 = _turn2(chosen)
        idx = [k for k, i in enumerate(chosen) if i.id in t2]
        c2 = [chosen[k].messages + [{"role": "assistant", "content": cand_ans[k]}, {"role": "user", "content": t2[chosen[k].id][0]}]
              for k in idx]
        p2 = [chosen[k].messages + [{"role": "assistant", "content": prod_ans[k]}, {"role": "user", "content": t2[chosen[k].id][0]}]
              for k in idx]
        if idx:
            deadline.check("MT-Bench turn 2")
            st.next(f"MT-Bench turn 2 ({len(idx)} questions, each model's own turn-1 answer in the history)")
            a2c = _batched(cand_b.chat, c2, "gate: candidate turn 2", prof.max_new_tokens)
            a2p = _batched(prod_b.chat, p2, "gate: prod turn 2", prof.max_new_tokens)
            for k, cc, pc, ac, ap in zip(idx, c2, p2, a2c, a2p):
                units.append(Unit(chosen[k], 2, t2[chosen[k].id][1], cc, pc))
                answers.append((ac, ap))
    cand_all, prod_all = [a for a, _ in answers], [b for _, b in answers]
    # pairwise: a turn-2 pair is judged on the full conversations: the question shows both user turns,
    # each answer shows that model's own turn 1 and turn 2 (MT-Bench's multi-turn pairwise layout)
    questions, pw_c, pw_p = [], [], []
    for u, a, b in zip(units, cand_all, prod_all):
        if u.turn == 1:
            questions.append(_render(u.cand_conv))
            pw_c.append(a)
            pw_p.append(b)
        else:
            q1, q2 = u.cand_conv[-3]["content"], u.cand_conv[-1]["content"]
            questions.append(f"[user, turn 1] {q1}\n\n[user, turn 2] {q2}\n\n(Each answer shows the assistant's "
                             "turn 1 and turn 2; judge the conversation, above all the answer to turn 2.)")
            pw_c.append(f"[turn 1] {u.cand_conv[-2]['content']}\n[turn 2] {a}")
            pw_p.append(f"[turn 1] {u.prod_conv[-2]['content']}\n[turn 2] {b}")

    # Layer 1: deterministic checks (turn 1) + reference-guided grading (every unit with a reference)
    deadline.check("grading")
    fmt_c, fmt_p, chk_c, chk_p = [], [], [], []
    for k, i in enumerate(chosen):
        chk_c.append(run_checks(i.checks, cand_ans[k]))
        chk_p.append(run_checks(i.checks, prod_ans[k]))
        fmt_c += list(chk_c[-1].values())
        fmt_p += list(chk_p[-1].values())
    graded = [k for k, u in enumerate(units) if u.reference]
    st.next(f"grading ({len(graded)} answers per model against references)")
    refs = [units[k].reference or "" for k in graded]

    def _grade(rows: list[tuple[str, str, str]]) -> list:
        return J.grade(judge_b, [q for q, _, _ in rows], [a for _, a, _ in rows], [r for _, _, r in rows], prof.reasoning_tokens)

    g_c = _batched(_grade, [(_render(units[k].cand_conv), cand_all[k], r) for k, r in zip(graded, refs)], "gate: grading candidate")
    g_p = _batched(_grade, [(_render(units[k].prod_conv), prod_all[k], r) for k, r in zip(graded, refs)], "gate: grading prod")
    golden_items = [{"id": units[k].item.id, "turn": units[k].turn, "category": units[k].item.category.split(":")[0],
                     "cand": gc.score if gc else nan, "prod": gp.score if gp else nan,
                     "identical": cand_all[k].strip() == prod_all[k].strip()}
                    for k, gc, gp in zip(graded, g_c, g_p)]

    # Layer 2: pairwise with swap, calibration, injection
    deadline.check("pairwise judging")
    st.next(f"pairwise judging ({len(questions)} pairs, both orders; identical answers are ties without asking)")
    pw = J.pairwise(judge_b, questions, pw_c, pw_p)
    pws = pw.summary()
    cal_pairs = J.hhh_pairs(assets.path("bigbench-probes"), prof.calibration_pairs or None)
    st.next(f"judge calibration ({len(cal_pairs)} human preference pairs) and injection")
    cal = J.calibrate(judge_b, cal_pairs)
    n_inj = min(prof.injection_cases, len(questions))
    inj = J.injection_flip_rate(judge_b, questions[:n_inj], pw_c[:n_inj], pw_p[:n_inj], pw)

    # Layer 3: probes (log-likelihood; a backend without it leaves the probe inconclusive)
    probe_res: dict[str, dict] = {}
    for task in P.TASKS:
        deadline.check(f"probe {task}")
        missing = [b.name or type(b).__name__ for b in (cand_b, prod_b)
                   if not getattr(b, "can_loglik", hasattr(b, "loglik"))]
        if missing:
            probe_res[task] = {"unavailable": f"{' and '.join(missing)} (remote) give{'s' if len(missing) == 1 else ''} "
                                              "no log-likelihoods: "
                                              "run the probes on a local (hf) registry entry of the same weights"}
            continue
        its = P.load_task(assets.path("bigbench-probes"), task, prof.probe_items)
        st.next(f"probe {task} ({len(its)} items)")
        probe_res[task] = P.compare(P.score(cand_b, its), P.score(prod_b, its))
        probe_res[task]["chance"] = sum(len(it["gold"]) / len(it["choices"]) for it in its) / len(its) if its else nan

    # IFBench verifiable instructions on the golden IFBench items (strict and loose, paired)
    from sftloop.evaluate import ifbench

    ifb = [k for k, i in enumerate(chosen) if "ifbench" in i.checks]
    st.next(f"IFBench checks ({len(ifb)} items)" if ifb else None)
    ifb_c = [ifbench.check(chosen[k].messages[-1]["content"], chosen[k].checks["ifbench"], cand_ans[k]) for k in ifb]
    ifb_p = [ifbench.check(chosen[k].messages[-1]["content"], chosen[k].checks["ifbench"], prod_ans[k]) for k in ifb]
    usable = [j for j in range(len(ifb)) if ifb_c[j]["strict"] is not None and ifb_p[j]["strict"] is not None]
    if usable:
        probe_res["ifbench_strict"] = P.compare([{"correct": ifb_c[j]["strict"], "correct_norm": ifb_c[j]["loose"]} for j in usable],
                                                [{"correct": ifb_p[j]["strict"], "correct_norm": ifb_p[j]["loose"]} for j in usable])
        probe_res["ifbench_strict"].update(note="acc = strict, acc_norm = loose", chance=0.0)
    ifbench_info = {"items": len(ifb), "evaluated": len(usable),
                    "not_evaluated": [ifb_c[j]["error"] or ifb_p[j]["error"] for j in range(len(ifb)) if j not in usable]}
    if ifbench_info["not_evaluated"]:  # one clear line; nothing is downloaded (ifbench.py)
        log(f"gate: IFBench: {len(ifbench_info['not_evaluated'])} of {len(ifb)} items not evaluated: "
            + "; ".join(sorted(set(ifbench_info["not_evaluated"]))))
    st.next(None)

    # Handbook lines: false refusals on items that must be answered, output length, latency
    must = [k for k, i in enumerate(chosen) if "support" in i.tags]
    wc, wp = [len(a.split()) for a in cand_all], [len(a.split()) for a in prod_all]
    ks, ks_p = ks_2samp(wc, wp)
    import numpy as np

    by_turn = {}
    for t in sorted({u.turn for u in units}):
        ks_t = [k for k, u in enumerate(units) if u.turn == t]
        sub = J.PairwiseResult(per_item=[pw.per_item[k] for k in ks_t]).summary()
        gi = [g for g in golden_items if g["turn"] == t]
        by_turn[t] = {"answers": len(ks_t), "win_rate": sub["win_rate"], "ci95": sub["ci95"], "known": sub["known"],
                      "graded": len(gi), "golden_candidate": mean_ci([g["cand"] for g in gi]),
                      "golden_prod": mean_ci([g["prod"] for g in gi])}
    return {
        "golden": {"items": golden_items, "graded_answers": 2 * len(graded),
                   "grading_errors": sum(g is None for g in g_c) + sum(g is None for g in g_p),
                   "grades": [{"id": units[k].item.id, "turn": units[k].turn, "candidate": gc.model_dump() if gc else None,
                               "prod": gp.model_dump() if gp else None} for k, gc, gp in zip(graded, g_c, g_p)]},
        "turns": by_turn,
        "format": {"cand_passed": sum(fmt_c), "cand_total": len(fmt_c), "prod_passed": sum(fmt_p), "prod_total": len(fmt_p)},
        "pairwise": pws, "calibration": cal, "injection": inj, "probes": probe_res, "ifbench": ifbench_info,
        "refusal": {"n": len(must), "cand": sum(is_refusal(cand_ans[k]) for k in must),
                    "prod": sum(is_refusal(prod_ans[k]) for k in must)},
        "lengths": {"n": len(wc), "ks": ks, "ks_p": ks_p, "cand_mean": float(np.mean(wc)) if wc else nan,
                    "prod_mean": float(np.mean(wp)) if wp else nan, "cand_median": float(np.median(wc)) if wc else nan,
                    "prod_median": float(np.median(wp)) if wp else nan},
        "latency_note": f"latency candidate {_latency(cand_b)}, prod {_latency(prod_b)}",
        "examples": [{"id": units[k].item.id, "turn": units[k].turn, "candidate": cand_all[k], "prod": prod_all[k]}
                     for k in range(min(5, len(units)))],
        # every answer pair, with its deterministic checks (turn 1) and judge grades: the report's examples
        "answers": [{"id": u.item.id, "turn": u.turn, "category": u.item.category.split(":")[0],
                     "support": "support" in u.item.tags, "prompt": u.cand_conv[-1]["content"],
                     "candidate": cand_all[k], "prod": prod_all[k],
                     "checks": {"candidate": chk_c[k], "prod": chk_p[k]} if u.turn == 1 else {},
                     "grade": next(({"candidate": g["cand"], "prod": g["prod"]} for g in golden_items
                                    if g["id"] == u.item.id and g["turn"] == u.turn), None)}
                    for k, u in enumerate(units)],
        "sizes": {"golden": len(chosen), "answers": len(units), "turn2": sum(u.turn == 2 for u in units),
                  "graded": len(graded), "probe_items_per_task": prof.probe_items,
                  "calibration_pairs": len(cal_pairs), "injection_cases": n_inj},
    }


def evaluate_gate(candidate: str, prod: str, root: Path, profile: str = "demo", config: Path | None = None,
                  registry_path: Path | None = None, log=print) -> GateResult:
    """Measure, then apply the rules."""
    t0 = time.time()
    cfg = gate_config.load(config, profile)
    prof = cfg.profile
    deadline = Deadline(prof.gate_deadline_s)
    items, manifest = G.verify_frozen(root)
    chosen = select_golden(items, prof)
    cache = Cache()
    kw = {"timeout": prof.request_timeout_s, "max_retries": prof.max_retries, "deadline": deadline}
    cand_b = backend_for(candidate, root, cache, registry_path, **kw)
    prod_b = backend_for(prod, root, cache, registry_path, **kw)
    judge_b = backend_for(cfg.judge, root, cache, registry_path, **kw)
    from sftloop.serve import identity_problems  # train/serve identity: a served entry renders as it trained

    problems = [p for n in dict.fromkeys((candidate, prod, cfg.judge)) for p in identity_problems(n, root, registry_path)]
    if problems:
        raise BackendError("refusing to evaluate: " + "; ".join(problems))
    backends = {k: getattr(b, "kind", type(b).__name__) for k, b in (("candidate", cand_b), ("prod", prod_b), ("judge", judge_b))}
    log("gate: backends " + ", ".join(f"{k} {v}" for k, v in backends.items()))
    m = measure(cand_b, prod_b, judge_b, chosen, prof, deadline, log)
    checks = apply_rules(m, cfg.settings, cfg.blocking)
    v, code, missing = verdict(checks)
    details = {
        "profile": profile, "candidate": candidate, "prod": prod, "judge": cfg.judge, "golden_manifest": manifest,
        "backends": backends,
        **{k: m[k] for k in ("sizes", "turns", "format", "pairwise", "calibration", "injection", "probes", "ifbench",
                             "refusal", "lengths", "latency_note", "examples", "answers")},
        "golden": {"candidate": mean_ci([g["cand"] for g in m["golden"]["items"]]),
                   "prod": mean_ci([g["prod"] for g in m["golden"]["items"]]),
                   "grading_errors": m["golden"]["grading_errors"],
                   "per_category": {c: {"candidate": mean_ci([g["cand"] for g in m["golden"]["items"] if g["category"] == c]),
                                        "prod": mean_ci([g["prod"] for g in m["golden"]["items"] if g["category"] == c])}
                                    for c in sorted({g["category"] for g in m["golden"]["items"]})}},
        "grades": m["golden"]["grades"],
        "missing_evidence": missing, "no_information": no_information(checks),
        "settings": cfg.settings.model_dump(), "blocking": cfg.blocking,
        "calls": {"model_calls": cache.misses, "from_cache": cache.hits, "by_kind": cache.by_kind},
        "seconds": time.time() - t0,
    }
    return GateResult(v, code, checks, details)


def write_reports(res: GateResult, out_root: Path) -> Path:
    """verdict.json, report.md, report.html under `out_root/gate-<timestamp>/`; raises OSError naming the path."""
    from sftloop.evaluate.report import write_html, write_markdown

    out = out_root / f"gate-{dt.datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create the report folder {out}: {e.strerror or e}") from e
    verdict_json = {"verdict": res.verdict, "exit_code": res.exit_code, "error": res.error,
                    "checks": [c.__dict__ for c in res.checks], "details": res.details}
    (out / "verdict.json").write_text(json.dumps(verdict_json, indent=2, default=str))
    write_markdown(res, out / "report.md")
    write_html(res, out / "report.html")
    return out
