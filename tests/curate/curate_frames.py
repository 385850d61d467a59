"""Build a pipeline frame from hand-written conversations (stage unit tests), and run a tiny pipeline config on
hand-written chat rows (pipeline tests)."""

import json
import textwrap
from pathlib import Path

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


def write_chat(tmp_path: Path, rows: list[dict]) -> Path:
    """`rows` (`{"messages": [...]}` dicts) as `tmp_path/chat.jsonl`."""
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def chat_config(name: str, data: Path) -> str:
    """A config reading `data` as one "chat" messages source into `out/<name>`, nothing held out for val;
    append `[[stages]]` (or other tables) to it."""
    return textwrap.dedent(f"""
        name = "{name}"
        output_dir = "out"
        [[sources]]
        name = "chat"
        format = "messages"
        path = "{data}"
        [split]
        val_fraction = 0.0
    """)


def run_version(cfg: Path, root: Path, name: str) -> Path:
    """Run the config (it must succeed) and return the version directory `out/<name>/LATEST` names."""
    from sftloop.curate.__main__ import main

    assert main(["run", str(cfg), "--root", str(root), "--quiet"]) == 0
    base = root / "out" / name
    return base / (base / "LATEST").read_text().strip()
