from pathlib import Path

import polars as pl
import pytest

from sftloop.schema import ChatRecord, PARQUET_SCHEMA

FIX = Path(__file__).parents[1] / "fixtures" / "curate"


def frame(convs: list[list[tuple[str, str]]], source: str = "t", metas: list[str] | None = None) -> pl.DataFrame:
    rows = []
    for i, conv in enumerate(convs):
        rec = ChatRecord.model_validate({"messages": [{"role": r, "content": c} for r, c in conv], "source": source})
        row = rec.to_row()
        if metas:
            row["meta"] = metas[i]
        rows.append(row)
    return pl.DataFrame(rows, schema=PARQUET_SCHEMA).with_row_index("_row")


@pytest.fixture
def ctx():
    from curate.stages.base import Context

    return Context(progress=False)


@pytest.fixture
def fix():
    return FIX
