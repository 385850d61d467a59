"""`python -m curate run CONFIG`: curate a dataset version and print its path and funnel."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from sftloop.settings import offline_env, repo_root


def main(argv: list[str] | None = None) -> int:
    offline_env()
    ap = argparse.ArgumentParser(prog="python -m curate")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a pipeline config")
    r.add_argument("config", nargs="?", default="curate/configs/default.toml")
    r.add_argument("--root", default=None, help="project root (default: the repo)")
    r.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)

    from curate.config import ConfigError, load_config

    try:
        cfg = load_config(a.config)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    from curate.pipeline import finalise, run
    from curate.write import write_version

    root = Path(a.root) if a.root else repo_root()
    t0 = time.time()
    print(f"curate: {cfg.name} from {a.config}")
    work = root / cfg.output_dir / cfg.name / ".work"
    res = run(cfg, work, progress=not a.quiet)
    parts = finalise(cfg, res, work / "parts")
    path = write_version(cfg, res, parts, root)
    print((path / "funnel.md").read_text())
    shutil.rmtree(work, ignore_errors=True)
    print(f"dataset version: {path}  ({time.time() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
