"""Training on 1 vs 2 processes on CPU (DDP, gloo): trained tokens/s and the all-reduce overhead.

Same config (cpu-smollm2.toml, shortened), same data, same global batch (1 process x 2 rows vs
2 processes x 1 row), same seed, in one run; 2 processes run with OMP_NUM_THREADS=1 each (torchrun's
default), 1 process with torch's default threads. The all-reduce overhead is the wall time of one
gloo all-reduce of the trainable-gradient size (measured on the same process group after training,
`run.json` distributed.allreduce_s) times the optimizer steps, as a share of the training time.

    python bench/train_scale_bench.py [--steps 6] [--max-len 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import tomllib
from pathlib import Path

import tomli_w

from sftloop.settings import offline_env, repo_root
from sftloop.train.__main__ import main as train_main


def run(root: Path, out: Path, name: str, nproc: int, over: dict) -> dict:
    raw = tomllib.loads((root / "train" / "configs" / "cpu-smollm2.toml").read_text())
    raw.update(over, name=name, per_device_batch=2 // nproc, runs_dir=str(out / "runs"), register_as="")
    cfg = out / f"{name}.toml"
    cfg.write_text(tomli_w.dumps(raw))
    argv = ["run", str(cfg), "--root", str(root), "--run-id", name] + (["--nproc", str(nproc)] if nproc > 1 else [])
    if train_main(argv) != 0:
        raise SystemExit(f"{name}: training failed")
    return json.loads((out / "runs" / name / "run.json").read_text())


def main() -> None:
    offline_env()
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--max-len", type=int, default=1024)  # >= the dataset token limit
    a = ap.parse_args()
    root = repo_root()
    over = {"max_steps": a.steps, "max_len": a.max_len, "grad_accum": 1, "max_train_samples": 200,
            "max_eval_samples": 1, "eval_steps": 1000, "save_steps": 1000, "logging_steps": 1, "report_to": []}
    os.environ.setdefault("SFTLOOP_ROOT", str(root))
    with tempfile.TemporaryDirectory() as d:
        res = {n: run(root, Path(d), f"scale-{n}p", n, over) for n in (1, 2)}
    print(f"| processes | steps | trained tokens | train s | trained tok/s | all-reduce s/step | all-reduce share | final loss |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, s in res.items():
        ar = s["distributed"].get("allreduce_s", 0.0)
        print(f"| {n} | {s['steps']} | {s['trained_tokens']} | {s['seconds']:.1f} | {s['trained_tokens'] / s['seconds']:.1f} | "
              f"{ar:.4f} | {ar * s['steps'] / s['seconds']:.2%} | {s['step_losses'][-1][1]:.4f} |")
    r1, r2 = res[1], res[2]
    print(f"speed-up 2 vs 1 process: {(r2['trained_tokens'] / r2['seconds']) / (r1['trained_tokens'] / r1['seconds']):.2f}x; "
          f"max |loss difference| per step: {max(abs(x[1] - y[1]) for x, y in zip(r1['step_losses'], r2['step_losses'])):.2e}; "
          f"trainable params {r2['distributed'].get('trainable_params')}")


if __name__ == "__main__":
    main()
