"""Reach the gate's models from curate in-process, through evaluate's public row functions.

Layering: curate may import evaluate (never the other way round). The registry (models.toml under
`root`) names the models; calls go through the gate's backends, with their request deadlines and
bounded retries, and its call cache. Errors are raised as `ModelCallError` naming the call and model.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl


class ModelCallError(RuntimeError):
    pass


def _call(what: str, name: str, fn, *args, **kwargs) -> pl.DataFrame:
    from sftloop.backends import BackendError

    try:
        return fn(*args, **kwargs)
    except (ValueError, BackendError, KeyError, FileNotFoundError) as e:
        raise ModelCallError(f"{what} with {name!r} failed: {e}") from e


def judge_scores(rows: pl.DataFrame, judge: str, root: Path) -> pl.DataFrame:
    """rows: id + messages (last turn the answer) → id, score (1-5), graded, aspects (see evaluate/file_tasks.py)."""
    from sftloop.evaluate.file_tasks import grade_rows

    return _call("grading", judge, grade_rows, rows.select("id", "messages"), judge, root, root / "models.toml")


def generate(rows: pl.DataFrame, model: str, root: Path, max_new_tokens: int = 128,
             samples: int = 0, temperature: float = 0.8) -> pl.DataFrame:
    """rows: id + messages (ending with the user turn) → id, response, model (+ `sample` with samples > 0)."""
    from sftloop.evaluate.file_tasks import generate_rows

    return _call("generation", model, generate_rows, rows.select("id", "messages"), model, root, root / "models.toml",
                 max_new_tokens, samples, temperature)
