"""`python -m curate.mine run LOGS [--week 2026-W47] [--reference DATASET]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from sftloop.settings import offline_env, repo_root


def main(argv: list[str] | None = None) -> int:
    offline_env()
    ap = argparse.ArgumentParser(prog="python -m curate.mine")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="mine one ISO week of production logs")
    r.add_argument("logs", help="a glob of JSONL/Parquet log files")
    r.add_argument("--week", default=None, help="e.g. 2026-W47 (default: the last full week in the logs)")
    r.add_argument("--reference", default=None, help="dataset dir (or version) prod was trained on, for drift")
    r.add_argument("--reports", default="reports")
    a = ap.parse_args(argv)
    from curate.mine.run import run

    out = run(a.logs, repo_root() / a.reports, a.week, Path(a.reference) if a.reference else None, progress=True)
    print((out / "report.md").read_text())
    print(f"mining report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
