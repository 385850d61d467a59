"""bench/curate_bench.py's per-row baseline (issue 18: "the tutorial funnel, same stages, per-row Python")
decides as our stages do on real ShareGPT rows, so the speed ratio it prints compares the same work.

Row stages and `clean` must agree row for row; the two dedup stages are left out on purpose (the baseline
keeps the first row seen and shingles datasketch's way; ours keeps the best row of a group)."""

import importlib.util
from pathlib import Path

import polars as pl
import pytest

from sftloop.curate.config import load_config
from sftloop.curate.sources import SourceConfig, iter_source
from sftloop.curate.stages.base import Context
from sftloop.schema import PARQUET_SCHEMA, QuarantineWriter

ROOT = Path(__file__).parents[2]
ROWS = 300
ROW_STAGES = ("min_words", "truncated", "refusal", "parroting", "language", "token_limit")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("curate_bench_under_test", ROOT / "bench" / "curate_bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def setup(bench):
    cfg = load_config(ROOT / "curate" / "configs" / "default.toml")
    stages = {st.type: st for st in cfg.stages}
    steps = dict(bench.per_row_steps([stages[t] for t in ("clean", *ROW_STAGES)], cfg.tokenizer))
    src = SourceConfig(name="sharegpt", format="sharegpt", path="asset:sharegpt-v3-partial", limit=ROWS)
    rows = [rec.to_row() for rec in iter_source(src, QuarantineWriter(None), [])]
    raw = pl.DataFrame(rows, schema=PARQUET_SCHEMA).with_row_index("_row")
    ctx = Context(progress=False)
    cleaned = stages["clean"].apply(raw, ctx)
    return stages, steps, raw, cleaned, ctx


def _plain(msgs) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in msgs]


def test_per_row_clean_matches_the_clean_stage_row_for_row(setup):
    stages, steps, raw, cleaned, _ = setup
    ours = dict(zip(cleaned.kept["_row"].to_list(), cleaned.kept["messages"].to_list()))
    dropped = set(cleaned.dropped["_row"].to_list())
    for r, msgs in zip(raw["_row"].to_list(), raw["messages"].to_list()):
        got = steps["clean"](_plain(msgs))
        if r in dropped:
            assert got is None, r
        else:
            assert got == _plain(ours[r]), r
    assert len(ours) > ROWS * 0.9  # most rows survive cleaning: the checks below see real rows


@pytest.mark.parametrize("name", ROW_STAGES)
def test_per_row_stage_drops_the_rows_our_stage_drops(setup, name):
    stages, steps, _, cleaned, ctx = setup
    df = cleaned.kept
    res = stages[name].apply(df, ctx)
    ours_dropped = set(res.dropped["_row"].to_list())
    base = {r: steps[name](_plain(m)) for r, m in zip(df["_row"].to_list(), df["messages"].to_list())}
    assert {r for r, m in base.items() if m is None} == ours_dropped
    if name == "token_limit":  # truncate_turns: the same prefix kept
        kept = dict(zip(res.kept["_row"].to_list(), res.kept["messages"].to_list()))
        assert {r: len(m) for r, m in kept.items()} == {r: len(m) for r, m in base.items() if m is not None}
        assert ctx.reports["token_limit"]["rows_truncated"] > 0
    if name in ("min_words", "truncated", "language", "token_limit"):
        assert ours_dropped, f"{name} dropped nothing in {df.height} rows: the check would prove nothing"
