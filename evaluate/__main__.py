"""`python -m sftloop.evaluate gate|grade|generate|golden-freeze` (see docs/gate.md)."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from sftloop.settings import offline_env, repo_root


def main(argv: list[str] | None = None) -> int:
    offline_env()
    if not sys.stderr.isatty():  # no tqdm frames in a log (e.g. transformers' "Loading weights"): stage lines instead
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    ap = argparse.ArgumentParser(prog="python -m sftloop.evaluate")
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gate", help="decide whether CANDIDATE may replace PROD (exit 0 pass, 1 fail, 2 could not evaluate)")
    g.add_argument("candidate")
    g.add_argument("prod")
    g.add_argument("--profile", default="demo")
    g.add_argument("--config", default=None)
    g.add_argument("--root", default=None)
    g.add_argument("--reports", default="reports")
    gr = sub.add_parser("grade", help="single-answer judge grades (1-5) for a file of conversations")
    gr.add_argument("input", help="Parquet/JSONL: id + messages (last turn = the answer) or prompt + response")
    gr.add_argument("output", help="Parquet: id, score, aspects, hallucination_p, graded")
    gr.add_argument("--judge", default="base", help="registry entry of the judge (default: base)")
    gr.add_argument("--root", default=None)
    ge = sub.add_parser("generate", help="a model's answers to a file of conversations")
    ge.add_argument("input", help="Parquet/JSONL: id + messages (ending with the user turn)")
    ge.add_argument("output", help="Parquet: id, response, model")
    ge.add_argument("--model", default="prod", help="registry entry (default: prod)")
    ge.add_argument("--max-new-tokens", type=int, default=128)
    ge.add_argument("--samples", type=int, default=0, help="N temperature-sampled answers per row instead of the greedy one")
    ge.add_argument("--temperature", type=float, default=0.8)
    ge.add_argument("--root", default=None)
    f = sub.add_parser("golden-freeze", help="record the golden set's sha256 as a new version")
    f.add_argument("--note", default="")
    f.add_argument("--root", default=None)
    ds = sub.add_parser("demo-summary", help="the closing block of `just demo`: report paths, why the verdict, next steps")
    ds.add_argument("--gate-exit", type=int, default=None)
    ds.add_argument("--root", default=None)
    sub.add_parser("rules-doc", help="print the rule and settings tables docs/gate.md carries (generated from the rule list)")
    a = ap.parse_args(argv)
    if a.cmd == "rules-doc":
        from sftloop.evaluate.rules import rules_markdown, settings_markdown

        print(rules_markdown() + "\n\n" + settings_markdown())
        return 0
    root = Path(a.root) if a.root else repo_root()
    if a.cmd == "demo-summary":
        from sftloop.evaluate.report import demo_summary

        print(demo_summary(root, a.gate_exit))
        return 0
    if a.cmd in ("grade", "generate"):
        from sftloop.backends import BackendError
        from sftloop.evaluate.file_tasks import generate_file, grade_file

        try:
            if a.cmd == "grade":
                res = grade_file(Path(a.input), Path(a.output), a.judge, root, root / "models.toml")
                print(f"graded {res['graded'].sum()} of {res.height} rows with {a.judge}: {a.output}")
            else:
                res = generate_file(Path(a.input), Path(a.output), a.model, root, root / "models.toml", a.max_new_tokens,
                                    a.samples, a.temperature)
                print(f"generated {res.height} answers with {a.model}: {a.output}")
        except (ValueError, BackendError, KeyError, FileNotFoundError) as e:
            print(f"{a.cmd}: {e}", file=sys.stderr)
            return 2
        return 0
    if a.cmd == "golden-freeze":
        from sftloop.evaluate.golden import freeze

        m = freeze(root, a.note)
        print(f"golden set v{m['version']}: {m['items']} items, sha256 {m['sha256'][:12]}")
        return 0
    from sftloop.evaluate.gate import GateResult, evaluate_gate, write_reports
    from sftloop.evaluate.report import table_rows

    try:
        res = evaluate_gate(a.candidate, a.prod, root, a.profile, Path(a.config) if a.config else None,
                            registry_path=root / "models.toml")
    except Exception as e:  # noqa: BLE001 - fail closed: anything unexpected is "could not evaluate"
        traceback.print_exc(file=sys.stderr)
        res = GateResult("error", 2, error=f"{type(e).__name__}: {e}", details={"candidate": a.candidate, "prod": a.prod})
    try:  # the report writer is inside the fail-closed path: a report that cannot be written is exit 2
        out = write_reports(res, root / a.reports)
    except Exception as e:  # noqa: BLE001
        print(f"could not write the gate report under {root / a.reports}: {type(e).__name__}: {e}", file=sys.stderr)
        print(f"verdict: ERROR (exit 2) — the {res.verdict.upper()} verdict was not recorded", file=sys.stderr)
        return 2
    print(f"\n{'check':32} {'value':>8}  {'threshold':44} result")
    for name, val, thr, ok, note in table_rows(res):
        print(f"{name:32} {val:>8}  {thr:44} {ok}  {note}")
    d = res.details
    for line in d.get("no_information", []):
        print(f"\n{line}")
    for line in d.get("missing_evidence", []):
        print(f"inconclusive: {line}", file=sys.stderr)
    if res.error:
        print(f"\ncould not evaluate: {res.error}", file=sys.stderr)
    if "calls" in d:
        print(f"\nmodel calls: {d['calls']['model_calls']} new, {d['calls']['from_cache']} from cache")
        for kind, c in sorted(d["calls"]["by_kind"].items()):
            label = {"chat": "generations", "next": "judge/label calls", "loglik": "likelihood calls"}.get(kind, kind)
            print(f"  {label:20} {c['new']:>6} new  {c['cached']:>6} from cache")
    from sftloop.evaluate.report import why_line

    print(f"\n{why_line(res)}")
    print(f"verdict: {res.verdict.upper()} (exit {res.exit_code}) — {out / 'report.md'}")
    return res.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
