"""Gate reports: report.md (CI logs, diffs) and a self-contained report.html (charts inline as PNG data URIs)."""

from __future__ import annotations

import base64
import html
import io
import math


def _fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.3f}"  # no measurement: say so, never print nan
    return str(v)


def result_label(c) -> str:
    return c.outcome.upper() + ("" if c.blocking else " (non-blocking)")


def table_rows(res) -> list[tuple[str, str, str, str, str]]:
    return [(c.name, _fmt(c.value), c.threshold, result_label(c), c.note + (f" — needs: {c.fix}" if c.fix else ""))
            for c in res.checks]


def judge_summary(d: dict, checks: list) -> str:
    """What the judge can and cannot tell, in plain words (from its reliability measurements and rules)."""
    pw, cal = d["pairwise"], d["calibration"]
    bad = [c for c in checks if c.rule.startswith("judge ") and c.outcome != "pass"]
    if bad:
        verdict = ("It cannot tell which answer is better: " + "; ".join(c.fix for c in bad) +
                   f". It is not needed for identical answers ({pw['identical']} of {pw['n']} pairs).")
    else:
        verdict = "It passes every judge rule: its pairwise and grading verdicts are used."
    return (f"Judge `{d['judge']}`: calibration {cal['correct']}/{cal['n']} human pairs right in both orders "
            f"(Wilson 95% CI {_fmt(cal['ci95'][0])}–{_fmt(cal['ci95'][1])}), position consistency "
            f"{_fmt(cal['consistency'])} on calibration / {_fmt(pw['position_consistency'])} on the gate's pairs, "
            f"first-position share {_fmt(cal['first_position_win_share'])} / {_fmt(pw['first_position_win_share'])}, "
            f"verdict entropy {_fmt(cal['verdict_entropy_bits'])} / {_fmt(pw['verdict_entropy_bits'])} bits, "
            f"injection flip rate {_fmt(d['injection']['flip_rate'])} ({d['injection']['compared']} known outcomes). "
            + verdict)


def write_markdown(res, path) -> None:
    d = res.details
    lines = [f"# Gate: {d.get('candidate')} vs {d.get('prod')} — **{res.verdict.upper()}** (exit {res.exit_code})", ""]
    if res.error:
        lines += [f"Could not evaluate: {res.error}", ""]
    full = "pairwise" in d
    if full:
        lines += [f"Profile `{d['profile']}`, sizes {d['sizes']}; judge `{d['judge']}`; model calls {d['calls']['model_calls']}, "
                  f"from cache {d['calls']['from_cache']}; {d['seconds']:.0f}s", ""]
    for line in d.get("no_information", []):
        lines += [line, ""]
    if d.get("missing_evidence"):
        lines += ["Inconclusive (blocking) — evidence missing:", ""] + [f"- {x}" for x in d["missing_evidence"]] + [""]
    lines += ["| check | value | threshold | result | note |", "|---|---:|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {e} | {f} |" for a, b, c, e, f in table_rows(res)]
    if full:
        pw = d["pairwise"]
        lines += ["", f"Pairwise: {pw['wins']} wins / {pw['ties']} ties / {pw['losses']} losses over {pw['known']} known outcomes "
                  f"({pw['identical']} identical, {pw['inconsistent']} unknown: orders disagree, {pw['errors']} errors), "
                  f"win rate {_fmt(pw['win_rate'])} (95% CI {_fmt(pw['ci95'][0])}–{_fmt(pw['ci95'][1])}), "
                  f"longer answer won {_fmt(pw['longer_answer_win_rate'])}", "", judge_summary(d, res.checks), "",
                  "| turn | answers | graded | golden candidate | golden prod | win rate (known) |", "|---|---:|---:|---:|---:|---:|"]
        for t, r in d["turns"].items():
            lines.append(f"| {t} | {r['answers']} | {r['graded']} | {_fmt(r['golden_candidate'][0])} | {_fmt(r['golden_prod'][0])} "
                         f"| {_fmt(r['win_rate'])} ({r['known']}) |")
        rf, L = d["refusal"], d["lengths"]
        lines += ["", f"False refusals on {rf['n']} items that must be answered: candidate {rf['cand']}, prod {rf['prod']}. "
                  f"Words per answer: candidate mean {_fmt(L['cand_mean'])}, prod {_fmt(L['prod_mean'])} (KS p {_fmt(L['ks_p'])}); "
                  f"{d['latency_note']}.", "", "| probe | candidate | prod | McNemar p |", "|---|---:|---:|---:|"]
        for t, r in d["probes"].items():
            if "unavailable" in r:
                lines.append(f"| {t} | — | — | {r['unavailable']} |")
            else:
                lines.append(f"| {t} | {_fmt(r['candidate_acc'])} ± {_fmt(r['candidate_stderr'])} | {_fmt(r['prod_acc'])} "
                             f"| {_fmt(r['mcnemar']['p'])} |")
    path.write_text("\n".join(lines) + "\n")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def charts(d: dict) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    pw = d["pairwise"]
    fig, ax = plt.subplots(figsize=(6, 1.8))
    ax.errorbar([pw["win_rate"]], [0], xerr=[[pw["win_rate"] - pw["ci95"][0]], [pw["ci95"][1] - pw["win_rate"]]], fmt="o", capsize=6)
    ax.axvline(0.5, color="grey", ls="--")
    ax.set_xlim(0, 1)
    ax.set_yticks([])
    ax.set_title("candidate win rate vs prod (95% bootstrap CI)")
    out["winrate"] = _png(fig)
    cats = list(d["golden"]["per_category"])
    fig, ax = plt.subplots(figsize=(7, 3))
    x = range(len(cats))
    ax.bar([i - 0.2 for i in x], [d["golden"]["per_category"][c]["candidate"][0] for c in cats], 0.4, label="candidate")
    ax.bar([i + 0.2 for i in x], [d["golden"]["per_category"][c]["prod"][0] for c in cats], 0.4, label="prod")
    ax.set_xticks(list(x), cats, rotation=45, ha="right", fontsize=7)
    ax.set_title("golden score by category")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out["categories"] = _png(fig)
    tasks = [t for t in d["probes"] if "unavailable" not in d["probes"][t]]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(tasks, [d["probes"][t]["candidate_acc"] - d["probes"][t]["prod_acc"] for t in tasks], color="#4c78a8")
    ax.axhline(0, color="grey")
    ax.set_title("probe accuracy delta (candidate − prod)")
    ax.tick_params(axis="x", labelsize=7, rotation=20)
    fig.tight_layout()
    out["probes"] = _png(fig)
    return out


def write_html(res, path) -> None:
    d = res.details
    color = {"pass": "#2e7d32", "fail": "#c62828"}.get(res.verdict, "#ef6c00")
    rows = "".join(f"<tr class='{e.split()[0].lower()}'><td>{html.escape(a)}</td><td>{b}</td><td>{html.escape(c)}</td><td>{e}</td>"
                   f"<td>{html.escape(f)}</td></tr>" for a, b, c, e, f in table_rows(res))
    imgs = ""
    if "pairwise" in d:
        imgs = "".join(f"<figure><img id='chart-{k}' alt='{k}' src='{v}'></figure>" for k, v in charts(d).items())
    err = f"<p class='error'>Could not evaluate: {html.escape(res.error)}</p>" if res.error else ""
    err += "".join(f"<p class='noinfo'><b>{html.escape(x.strip('*'))}</b></p>" for x in d.get("no_information", []))
    err += "".join(f"<p class='missing'>Inconclusive: {html.escape(x)}</p>" for x in d.get("missing_evidence", []))
    path.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>Gate {res.verdict}</title>
<style>body{{font-family:sans-serif;margin:2em}} #verdict{{color:white;background:{color};padding:.5em 1em;display:inline-block}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px}} tr.fail td{{background:#fdecea}} tr.inconclusive td{{background:#fff4e5}}</style></head>
<body><h1 id="verdict">{res.verdict.upper()} (exit {res.exit_code})</h1>
<p>{html.escape(str(d.get('candidate', '')))} vs {html.escape(str(d.get('prod', '')))} · profile {html.escape(str(d.get('profile', '')))}</p>{err}
<table id="checks"><tr><th>check</th><th>value</th><th>threshold</th><th>result</th><th>note</th></tr>{rows}</table>
{imgs}</body></html>""")
