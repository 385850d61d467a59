"""Build a pipeline frame from hand-written conversations (stage unit tests)."""

import polars as pl

from sftloop.schema import PARQUET_SCHEMA, ChatRecord


def frame(convs: list[list[tuple[str, str]]], source: str = "t", metas: list[str] | None = None) -> pl.DataFrame:
    rows = []
    for i, conv in enumerate(convs):
        rec = ChatRecord.model_validate({"messages": [{"role": r, "content": c} for r, c in conv], "source": source})
        row = rec.to_row()
        if metas:
            row["meta"] = metas[i]
        rows.append(row)
    return pl.DataFrame(rows, schema=PARQUET_SCHEMA).with_row_index("_row")
