"""`python -m sftloop.curate.review server|push|pull`: human review queues in Argilla.

    server [--port 6900]                         Redis + argilla-server + worker on 127.0.0.1 (Ctrl-C stops)
    push sample-qa [--dataset D] [--size 100]    stratified sample of a dataset version
    push near-dups [--dataset D] [--limit N]     borderline near-duplicate pairs curate recorded
    push failures REPORT_DIR                     mined failures (reports/mine-<week>/failures.parquet)
    pull sample-qa|near-dups|failures            apply submitted responses (a new dataset version)

Exit 0 on success, 2 when Argilla cannot be reached, the key is refused or an input is missing;
in those cases nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sftloop.settings import offline_env, repo_root

DEFAULT_DATASET = "data/datasets/sharegpt-demo"


def main(argv: list[str] | None = None) -> int:
    from sftloop.curate.review.queues import QUEUES

    offline_env()
    ap = argparse.ArgumentParser(prog="python -m sftloop.curate.review")
    ap.add_argument("--url", default=None, help="Argilla URL (default $ARGILLA_API_URL or http://127.0.0.1:6900)")
    ap.add_argument("--root", default=None, help="project root (default: the repo)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server", help="start Redis, argilla-server and its worker; Ctrl-C stops them")
    s.add_argument("--port", type=int, default=6900)
    s.add_argument("--redis-port", type=int, default=6379)
    s.add_argument("--home", default=None, help="data dir (default $SFTLOOP_HOME/argilla)")
    p = sub.add_parser("push", help="push a review queue")
    p.add_argument("queue", choices=list(QUEUES))
    p.add_argument("source", nargs="?", default=None, help="dataset dir/version (sample-qa, near-dups) or mining report dir (failures)")
    p.add_argument("--size", type=int, default=100, help="sample-qa: records to sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="near-dups: at most this many pairs, closest to the threshold first")
    p.add_argument("--judge", default=None, help="sample-qa: registry entry whose grade (1-5) is shown as a suggestion")
    p.add_argument("--judge-scores", default=None, help="sample-qa: parquet (id, score 1-5) made earlier, instead of --judge")
    q = sub.add_parser("pull", help="apply submitted responses of a queue")
    q.add_argument("queue", choices=list(QUEUES))
    q.add_argument("--version", default=None, help="sample-qa: the reviewed dataset version (default: the one the records name)")
    q.add_argument("--weight", type=float, default=3.0, help="failures: weight of the corrected records")
    a = ap.parse_args(argv)

    from sftloop.curate.model_calls import ModelCallError
    from sftloop.curate.review.client import Endpoint, ReviewError

    root = Path(a.root) if a.root else repo_root()
    try:
        if a.cmd == "server":
            from sftloop.curate.review.serve import ServerConfig, serve_forever

            cfg = ServerConfig(port=a.port, redis_port=a.redis_port)
            if a.home:
                cfg.home = Path(a.home)
            try:
                serve_forever(cfg)
            except KeyboardInterrupt:
                print("review server: stopped during start-up")
            except (RuntimeError, TimeoutError, FileNotFoundError) as e:
                print(str(e), file=sys.stderr)
                return 2
            return 0
        ep = Endpoint.from_env(a.url)
        if a.cmd == "push":
            from sftloop.curate.review.push import push
            from sftloop.dataset_version import DatasetNotFound, DatasetVersion

            if a.queue == "failures":
                import polars as pl

                if not a.source:
                    raise ReviewError("review: push failures needs the mining report dir, e.g. reports/mine-2026-W47")
                f = Path(a.source) / "failures.parquet"
                if not f.exists():
                    raise ReviewError(f"review: {f} missing; run `just mine` first")
                out = push(a.queue, ep, pl.read_parquet(f))
            else:
                try:
                    version = DatasetVersion.resolve(a.source or DEFAULT_DATASET, root)
                except DatasetNotFound as e:
                    raise ReviewError(f"review: {e}") from None
                if a.queue == "sample-qa":
                    out = push(a.queue, ep, version, size=a.size, seed=a.seed, judge=a.judge, root=root,
                               judge_scores=Path(a.judge_scores) if a.judge_scores else None)
                else:
                    out = push(a.queue, ep, version, limit=a.limit)
            print(json.dumps(out, indent=2))
            print(f"review UI: {ep.url}")
            return 0
        from sftloop.curate.review.pull import pull

        path, summary = pull(a.queue, ep, root, version=a.version, weight=a.weight)
        print(json.dumps(summary, indent=2, default=str))
        print(f"written: {path}" if path else "nothing submitted yet: nothing written")
        return 0
    except (ReviewError, ModelCallError) as e:
        print(str(e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
