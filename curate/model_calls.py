"""Reach the gate's models from curate through files and a subprocess, never through imports.

`python -m evaluate grade|generate` read a Parquet file and write one; the registry (models.toml)
names the models. A call has a timeout, and one retry on failure; errors name the command and
carry the end of its stderr.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl


class ModelCallError(RuntimeError):
    pass


def _run(args: list[str], root: Path, timeout: float, retries: int = 1) -> None:
    cmd = [sys.executable, "-m", "evaluate", *args, "--root", str(root)]
    last = ""
    for _ in range(retries + 1):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=root)
        except subprocess.TimeoutExpired:
            last = f"timed out after {timeout:.0f} s"
            continue
        if r.returncode == 0:
            return
        last = (r.stderr or r.stdout)[-2000:]
        if r.returncode == 2:  # a usage/input error: retrying will not help
            break
    raise ModelCallError(f"`python -m evaluate {args[0]}` failed: {last}")


def judge_scores(rows: pl.DataFrame, judge: str, root: Path, timeout: float = 3600) -> pl.DataFrame:
    """rows: id + messages (last turn the answer) → id, score (1-5), graded, aspects (see evaluate/file_tasks.py)."""
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "in.parquet", Path(d) / "out.parquet"
        rows.select("id", "messages").write_parquet(src)
        _run(["grade", str(src), str(out), "--judge", judge], root, timeout)
        return pl.read_parquet(out)


def generate(rows: pl.DataFrame, model: str, root: Path, max_new_tokens: int = 128, timeout: float = 3600,
             samples: int = 0, temperature: float = 0.8) -> pl.DataFrame:
    """rows: id + messages (ending with the user turn) → id, response, model (+ `sample` with samples > 0)."""
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "in.parquet", Path(d) / "out.parquet"
        rows.select("id", "messages").write_parquet(src)
        args = ["generate", str(src), str(out), "--model", model, "--max-new-tokens", str(max_new_tokens)]
        if samples:
            args += ["--samples", str(samples), "--temperature", str(temperature)]
        _run(args, root, timeout)
        return pl.read_parquet(out)
