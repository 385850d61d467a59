"""`python -m sftloop.curate.mine run LOGS [--week 2026-W47] [--reference DATASET] [--judge NAME]
[--executor local|processes|ray [--address A] [--workers N]] [--no-push]`,
`python -m sftloop.curate.mine demo-logs --dataset DATASET` (see docs/mine.md).

No demo knowledge here: `just mine` and `just demo-logs` pass the demo's logs, dataset, judge and
threshold as flags (justfile).

`run` writes reports/mine-<week>/ and then pushes the week's failures to the Argilla failures queue
(deduplicated, prioritised). Exit 0: done; 2: the logs could not be read, the judge failed, or the
queue could not be reached (the report is still written, so the scheduled job goes red with it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sftloop.progress import is_tty, stage
from sftloop.settings import offline_env, repo_root

JUDGE_THRESHOLD = 2.5  # on the judge's 1-5 scale


def _redacted(e: BaseException) -> str:
    from sftloop.curate.mine.redact import redact

    return redact(str(e))[0]


def _positive(v: str) -> int:
    n = int(v)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def main(argv: list[str] | None = None) -> int:
    offline_env()
    ap = argparse.ArgumentParser(prog="python -m sftloop.curate.mine")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="mine one ISO week of production logs")
    r.add_argument("logs", help="a glob of JSONL/Parquet log files (quote it), e.g. 'logs/*.jsonl'")
    r.add_argument("--week", default=None, help="e.g. 2026-W47 (default: the last full week in the logs)")
    r.add_argument("--reference", default=None,
                   help="dataset dir/version for drift (default: the one --prod was trained on, from its run lineage)")
    r.add_argument("--prod", default="prod", help="registry entry of the production model (default: prod)")
    r.add_argument("--reports", default="reports")
    r.add_argument("--judge", default=None, help="registry entry to grade the week's answers (soft failures)")
    r.add_argument("--judge-sample", type=int, default=None, help="grade a seeded sample of this many rows (default: all)")
    r.add_argument("--judge-threshold", type=float, default=JUDGE_THRESHOLD,
                   help=f"judge score (1-5) below which a row is a failure (default {JUDGE_THRESHOLD})")
    r.add_argument("--uncertainty-model", default=None, help="local registry entry: sample answers, flag disagreement")
    r.add_argument("--uncertainty-samples", type=int, default=4)
    r.add_argument("--uncertainty-threshold", type=float, default=0.5, help="1 - mean pairwise cosine above which a row is flagged")
    r.add_argument("--executor", choices=["local", "processes", "ray"], default="local",
                   help="where embedding and judge grading run (default local: in-process); as `curate run`")
    r.add_argument("--address", default=None, help='ray: "auto" or a cluster URL (default: a local cluster)')
    r.add_argument("--workers", type=_positive, default=None, help="processes / local Ray: worker count (default: all cores)")
    r.add_argument("--no-push", action="store_true", help="do not push failures to the Argilla failures queue")
    r.add_argument("--url", default=None, help="Argilla URL (default $ARGILLA_API_URL or http://127.0.0.1:6900)")
    d = sub.add_parser("demo-logs", help="make demo production logs: the prod model answers held-out prompts")
    d.add_argument("--dataset", required=True, help="curated dataset (dir or version) whose held-out rows give prompts")
    d.add_argument("--out", default="data/logs/demo")
    d.add_argument("--model", default="prod")
    d.add_argument("--judge", default="base")
    d.add_argument("--n-chat", type=int, default=48)
    d.add_argument("--n-support", type=int, default=48)
    d.add_argument("--weeks", type=int, default=4)
    a = ap.parse_args(argv)
    root = repo_root()
    if a.cmd == "demo-logs":
        from sftloop.curate.mine.demo_logs import make_demo_logs

        path = make_demo_logs(root, Path(a.dataset), root / a.out, a.model, a.judge, a.n_chat, a.n_support, a.weeks,
                              progress_cmd="demo-logs")
        print(f"demo logs: {path}")
        return 0

    from sftloop.curate.executors import ExecutorConfig
    from sftloop.curate.model_calls import ModelCallError
    from sftloop.curate.mine.run import run

    executor = ExecutorConfig(kind=a.executor, address=a.address, workers=a.workers)

    reference = Path(a.reference) if a.reference else None
    if reference is None:
        from sftloop import registry

        try:
            reference = registry.training_dataset(a.prod, root, root / "models.toml")
        except registry.RegistryError as e:
            print(f"mine: {e}", file=sys.stderr)
        if reference is not None:
            print(f"mine: drift reference = {a.prod}'s training data {reference}")
    logs = a.logs if Path(a.logs).is_absolute() else str(root / a.logs)
    try:
        with stage("mine", f"mining {a.logs}" + (f" (judge {a.judge})" if a.judge else "")
                   + (f" on executor {a.executor}" if a.executor != "local" else "")) as st:
            out = run(logs, root / a.reports, a.week, reference, progress=is_tty(), judge=a.judge,
                      judge_sample=a.judge_sample, judge_threshold=a.judge_threshold, root=root,
                      uncertainty_model=a.uncertainty_model, uncertainty_samples=a.uncertainty_samples,
                      uncertainty_threshold=a.uncertainty_threshold, executor=executor)
            st.detail = out.name
    except (FileNotFoundError, ModelCallError) as e:
        print(f"mine: {_redacted(e)}", file=sys.stderr)  # a model call's error may echo a prompt
        return 2
    print((out / "report.md").read_text())
    print(f"mining report: {out}")
    if a.no_push:
        return 0
    import polars as pl

    from sftloop.curate.review.client import Endpoint, ReviewError
    from sftloop.curate.review.push import push
    from sftloop.curate.review.queues import FAILURES

    failures = pl.read_parquet(out / "failures.parquet")
    if failures.height == 0:
        print("no failures this week: nothing to push")
        return 0
    try:
        with stage("mine", f"push {failures.height} failures to the Argilla failures queue"):
            ep = Endpoint.from_env(a.url)
            res = push(FAILURES, ep, failures)  # the same push as `review push failures`
    except ReviewError as e:
        print(f"{_redacted(e)}\nmine: the report is written; the failures were not queued (rerun, or pass --no-push)", file=sys.stderr)
        return 2
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
