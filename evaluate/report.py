"""Gate reports: report.md (CI logs, diffs) and a self-contained report.html (charts inline as PNG data URIs)."""

from __future__ import annotations

import base64
import html
import io
import math


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def table_rows(res) -> list[tuple[str, str, str, str, str]]:
    return [(c.name, _fmt(c.value), c.threshold, ("WARN" if c.warn else "PASS") if c.passed else "FAIL", c.note)
            for c in res.checks]


def write_markdown(res, path) -> None:
    d = res.details
    lines = [f"# Gate: {d.get('candidate')} vs {d.get('prod')} — **{res.verdict.upper()}** (exit {res.exit_code})", ""]
    if res.error:
        lines += [f"Could not evaluate: {res.error}", ""]
    full = "pairwise" in d
    if full:
        lines += [f"Profile `{d['profile']}`, sizes {d['sizes']}; judge `{d['judge']}`; model calls {d['calls']['model_calls']}, "
                  f"from cache {d['calls']['from_cache']}; {d['seconds']:.0f}s", ""]
    lines += ["| check | value | threshold | result | note |", "|---|---:|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {e} | {f} |" for a, b, c, e, f in table_rows(res)]
    if full:
        pw = d["pairwise"]
        lines += ["", f"Pairwise: {pw['wins']} wins / {pw['ties']} ties / {pw['losses']} losses, win rate {_fmt(pw['win_rate'])} "
                  f"(95% CI {_fmt(pw['ci95'][0])}–{_fmt(pw['ci95'][1])}), position consistency {_fmt(pw['position_consistency'])}, "
                  f"first-position win share {_fmt(pw['first_position_win_share'])}, longer answer won {_fmt(pw['longer_answer_win_rate'])}",
                  f"Judge calibration (hhh_alignment): accuracy {_fmt(d['calibration']['accuracy'])}, consistency "
                  f"{_fmt(d['calibration']['consistency'])}; prompt injection flip rate {_fmt(d['injection']['flip_rate'])}", "",
                  "| probe | candidate | prod | McNemar p |", "|---|---:|---:|---:|"]
        for t, r in d["probes"].items():
            lines.append(f"| {t} | {_fmt(r['candidate_acc'])} ± {_fmt(r['candidate_stderr'])} | {_fmt(r['prod_acc'])} | {_fmt(r['mcnemar']['p'])} |")
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
    tasks = list(d["probes"])
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
    rows = "".join(f"<tr class='{e.lower()}'><td>{html.escape(a)}</td><td>{b}</td><td>{html.escape(c)}</td><td>{e}</td>"
                   f"<td>{html.escape(f)}</td></tr>" for a, b, c, e, f in table_rows(res))
    imgs = ""
    if "pairwise" in d:
        imgs = "".join(f"<figure><img id='chart-{k}' alt='{k}' src='{v}'></figure>" for k, v in charts(d).items())
    err = f"<p class='error'>Could not evaluate: {html.escape(res.error)}</p>" if res.error else ""
    path.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>Gate {res.verdict}</title>
<style>body{{font-family:sans-serif;margin:2em}} #verdict{{color:white;background:{color};padding:.5em 1em;display:inline-block}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px}} tr.fail td{{background:#fdecea}} tr.warn td{{background:#fff4e5}}</style></head>
<body><h1 id="verdict">{res.verdict.upper()} (exit {res.exit_code})</h1>
<p>{html.escape(str(d.get('candidate', '')))} vs {html.escape(str(d.get('prod', '')))} · profile {html.escape(str(d.get('profile', '')))}</p>{err}
<table id="checks"><tr><th>check</th><th>value</th><th>threshold</th><th>result</th><th>note</th></tr>{rows}</table>
{imgs}</body></html>""")
