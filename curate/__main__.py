"""`python -m sftloop.curate run CONFIG`: curate a dataset version and print its path and funnel.

Exit codes: 0 a version was published (LATEST points at it); 2 nothing was published and LATEST is
unchanged: a config error, an input that cannot be curated (missing file, empty glob, unknown asset,
no rows, every row quarantined, no row survived the stages), a stage over its drop share, or the
dataset name is being written by another run. The message is one line naming the file or key.
Exit 1: stage code raised on a shard (the line names the stage, the shard and the row), or a task's
worker kept dying after the bounded retries; nothing is published. `--executor local|processes|ray`
(`--address`, `--workers`) overrides the config's executor.

Resume: the run works in `<output_dir>/<name>/.work` (under the dataset lock). A run that fails in a
stage (exit 1, a stage over its drop share) or is killed leaves it, and the next run of the same name
takes over every stage and shard completed before (`sftloop.curate.resume`: records keyed by the input
and the configs of the stages so far, so a changed stage runs again, from its position on) and prints one
`resume: ...` line; the version is the one a clean run makes. It is removed once a version is published,
and after an input that cannot be curated or an `OSError` (a full disk); `--fresh` discards it first.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from sftloop.settings import offline_env, repo_root


def main(argv: list[str] | None = None) -> int:
    offline_env()
    ap = argparse.ArgumentParser(prog="python -m sftloop.curate")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a pipeline config")
    r.add_argument("config", nargs="?", default="curate/configs/default.toml")
    r.add_argument("--root", default=None, help="project root (default: the repo)")
    r.add_argument("--quiet", action="store_true")
    r.add_argument("--executor", choices=["local", "processes", "ray"], default=None,
                   help="where shard tasks run (default: the config's `executor`, else local)")
    r.add_argument("--address", default=None, help='ray: "auto" or a cluster URL (default: a local cluster)')
    r.add_argument("--workers", type=int, default=None, help="processes / local Ray: worker count (default: all cores)")
    r.add_argument("--fresh", action="store_true", help="discard the work an earlier failed or killed run left")
    a = ap.parse_args(argv)

    from sftloop.curate.config import ConfigError, load_config

    try:
        cfg = load_config(a.config)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    for key in ("executor", "address", "workers"):  # the flags override the config; not part of the version
        if getattr(a, key) is not None:
            setattr(cfg, key, getattr(a, key))
    from sftloop.curate.executors import InfrastructureError
    from sftloop.curate.pipeline import DropShareError, finalise, run
    from sftloop.curate.shard_tasks import StageFailure
    from sftloop.curate.sources import InputError
    from sftloop.curate.write import write_version
    from sftloop.dataset_version import DatasetLocked, dataset_lock, resume_dir

    root = Path(a.root) if a.root else repo_root()
    t0 = time.time()
    print(f"curate: {cfg.name} from {a.config} (executor {cfg.executor})")
    base = root / cfg.output_dir / cfg.name
    try:
        with dataset_lock(base):  # one run per dataset name, in the work dir an earlier failed run may have left
            if a.fresh:
                shutil.rmtree(resume_dir(base), ignore_errors=True)
            work = resume_dir(base)
            try:
                res = run(cfg, work, progress=not a.quiet)
                if res.resumed:
                    print(res.resumed.line())
                parts = finalise(cfg, res, work / "parts")
                path = write_version(cfg, res, parts, root)
            except (InputError, OSError):  # nothing to resume: the input cannot be curated, or the disk is full
                shutil.rmtree(work, ignore_errors=True)
                raise
            except (StageFailure, DropShareError, InfrastructureError):
                print(f"curate: completed stages and shards are kept in {work} for the next run "
                      "(--fresh discards them)")
                raise
            shutil.rmtree(work, ignore_errors=True)
    except DropShareError as e:
        print(f"stopped: {e}", file=sys.stderr)
        return 2
    except (StageFailure, InfrastructureError) as e:
        print(f"curate: {' '.join(str(e).split())}; nothing published", file=sys.stderr)
        return 1
    except (InputError, DatasetLocked) as e:
        print(f"curate: {' '.join(str(e).split())}", file=sys.stderr)  # one line
        return 2
    except OSError as e:  # the output dir cannot be written (permissions, disk full)
        print(f"curate: cannot write {e.filename or base}: {e.strerror or e}; nothing published", file=sys.stderr)
        return 2
    print((path / "funnel.md").read_text())
    print(f"dataset version: {path}  ({time.time() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
