"""The gate's models for other packages: single-answer grades and answers for a frame of rows.

`grade_rows` / `generate_rows` are the in-process entry points (curate's review queues and failure
mining call them through `curate.model_calls`); `grade_file` / `generate_file` wrap them for
`python -m sftloop.evaluate grade IN OUT --judge NAME` and `python -m sftloop.evaluate generate IN OUT --model NAME`.

grade: IN is Parquet or JSONL
with `id` and either `messages` (the conversation, last turn the assistant answer) or `prompt` +
`response`; an optional `reference` column gives a reference answer. OUT is Parquet with `id`,
`score` (1-5: mean of correctness, completeness and format), the three aspects, `hallucination_p`
and `graded` (False where the judge gave no usable output: those rows carry no score). Calls go
through the gate's SQLite cache, so regrading the same rows costs nothing.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sftloop.backends import Cache, backend_for
from sftloop.evaluate.judge import grade

NO_REFERENCE = "(no reference answer is available: judge the answer on its own merits)"


def _read(path: Path) -> pl.DataFrame:
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    return pl.read_ndjson(path)


def split_rows(df: pl.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """(question, answer, reference) per row; the question is the conversation before the answer."""
    questions, answers, refs = [], [], []
    has_ref = "reference" in df.columns
    for i, r in enumerate(df.iter_rows(named=True)):
        if r.get("messages"):
            msgs = r["messages"]
            if msgs[-1]["role"] != "assistant":
                raise ValueError(f"row {i + 1} (id {r.get('id')}): field messages: the last turn must be the assistant answer")
            ctx = msgs[:-1]
            q = ctx[-1]["content"] if len(ctx) == 1 else "\n".join(f"[{m['role']}] {m['content']}" for m in ctx)
            questions.append(q)
            answers.append(msgs[-1]["content"])
        elif r.get("prompt") is not None and r.get("response") is not None:
            questions.append(r["prompt"])
            answers.append(r["response"])
        else:
            raise ValueError(f"row {i + 1} (id {r.get('id')}): needs field messages, or prompt and response")
        refs.append((r.get("reference") if has_ref else None) or NO_REFERENCE)
    return questions, answers, refs


def grade_rows(df: pl.DataFrame, judge: str, root: Path, registry_path: Path | None = None,
               where: str = "rows") -> pl.DataFrame:
    if "id" not in df.columns:
        raise ValueError(f"{where}: field id missing")
    q, a, r = split_rows(df)
    backend = backend_for(judge, root, Cache(), registry_path)
    grades = grade(backend, q, a, r)
    rows = []
    for rid, g in zip(df["id"].to_list(), grades):
        if g is None:
            rows.append({"id": rid, "graded": False})
            continue
        rows.append({"id": rid, "graded": True, "correctness": g.correctness, "completeness": g.completeness,
                     "format_compliance": g.format_compliance, "hallucination_p": g.hallucination_p,
                     "score": (g.correctness + g.completeness + g.format_compliance) / 3})
    res = pl.DataFrame(rows, schema={"id": pl.String, "graded": pl.Boolean, "correctness": pl.Float64,
                                     "completeness": pl.Float64, "format_compliance": pl.Float64,
                                     "hallucination_p": pl.Float64, "score": pl.Float64})
    return res.with_columns(judge=pl.lit(judge))


def grade_file(src: Path, out: Path, judge: str, root: Path, registry_path: Path | None = None) -> pl.DataFrame:
    res = grade_rows(_read(src), judge, root, registry_path, where=str(src))
    out.parent.mkdir(parents=True, exist_ok=True)
    res.write_parquet(out)
    return res


def generate_rows(df: pl.DataFrame, model: str, root: Path, registry_path: Path | None = None,
                  max_new_tokens: int = 128, samples: int = 0, temperature: float = 0.8,
                  where: str = "rows") -> pl.DataFrame:
    """`id` + `messages` (ending with the user turn to answer) -> `id`, `response`, `model`; with
    `samples` > 0, that many temperature-sampled answers per row (`sample` = 0..n-1) instead of the
    greedy one."""
    for col in ("id", "messages"):
        if col not in df.columns:
            raise ValueError(f"{where}: field {col} missing")
    convs = [[{"role": m["role"], "content": m["content"]} for m in msgs] for msgs in df["messages"].to_list()]
    backend = backend_for(model, root, Cache(), registry_path)
    if samples > 0:
        outs = backend.sample(convs, samples, temperature, max_new_tokens)
        return pl.DataFrame({"id": [i for i in df["id"].to_list() for _ in range(samples)],
                             "sample": [k for _ in convs for k in range(samples)],
                             "response": [a for o in outs for a in o]}).with_columns(model=pl.lit(model))
    answers = backend.chat(convs, max_new_tokens)
    return pl.DataFrame({"id": df["id"], "response": answers}).with_columns(model=pl.lit(model))


def generate_file(src: Path, out: Path, model: str, root: Path, registry_path: Path | None = None,
                  max_new_tokens: int = 128, samples: int = 0, temperature: float = 0.8) -> pl.DataFrame:
    res = generate_rows(_read(src), model, root, registry_path, max_new_tokens, samples, temperature, where=str(src))
    out.parent.mkdir(parents=True, exist_ok=True)
    res.write_parquet(out)
    return res
