"""`python -m sftloop.train run CONFIG` / `python -m sftloop.train merge RUN`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sftloop.settings import offline_env, repo_root


def main(argv: list[str] | None = None) -> int:
    offline_env()
    ap = argparse.ArgumentParser(prog="python -m sftloop.train")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train a LoRA adapter and register it")
    r.add_argument("config", nargs="?", default="train/configs/cpu-smollm2.toml")
    r.add_argument("--root", default=None)
    r.add_argument("--run-id", default=None, help="default: derived from config + dataset version (reruns resume)")
    r.add_argument("--fresh", action="store_true", help="discard checkpoints of this run id")
    r.add_argument("--nproc", type=int, default=1, help="training processes on this machine (torchrun; DDP, or FSDP per config)")
    m = sub.add_parser("merge", help="merge a run's adapter into a full safetensors model")
    m.add_argument("run")
    a = ap.parse_args(argv)
    if a.cmd == "run" and a.nproc > 1 and "RANK" not in os.environ:
        from sftloop.train.distributed import launch

        args = sys.argv[1:] if argv is None else list(argv)
        return launch(a.nproc, [x for i, x in enumerate(args) if x != "--nproc" and not x.startswith("--nproc=")
                                and (i == 0 or args[i - 1] != "--nproc")])
    from sftloop.train.config import load_config
    from sftloop.train.data import DataError
    from sftloop.train.trainer import TrainError, train

    if a.cmd == "merge":
        from sftloop.train.merge import merge

        print(f"merged model: {merge(Path(a.run))}")
        return 0
    try:
        cfg = load_config(a.config)
        run_dir = train(cfg, Path(a.root) if a.root else repo_root(), run_id=a.run_id, fresh=a.fresh)
    except (ValueError, DataError, TrainError, FloatingPointError) as e:
        print(f"train: {e}", file=sys.stderr)
        return 1
    from sftloop.train.distributed import is_main

    if not is_main():
        return 0
    print((run_dir / "report.md").read_text())
    print(f"run: {run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
