"""The chat-record contract, with readers and writers that never lose a row.

A `ChatRecord` is what every package exchanges: `id` (stable content hash of the
messages), `messages` (system/user/assistant, non-empty content, at least one
assistant turn), `source`, `meta` (free dict), `weight` (> 0, used for upsampling).

Readers stream JSONL or Parquet in batches. A row that fails to decode or validate is
written to a quarantine JSONL file with the file, 1-based row number, field and error
(and the raw row, so nothing is lost); valid rows go on. `ReadStats` holds the identity
`rows_in == rows_out + rows_quarantined`.

On disk (Parquet), `meta` is stored as a JSON string column because it is a free dict.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")
MAX_ROW_BYTES = 8 * 1024 * 1024  # a row larger than this is quarantined, not parsed

PARQUET_SCHEMA = {
    "id": pl.String,
    "messages": pl.List(pl.Struct({"role": pl.String, "content": pl.String})),
    "source": pl.String,
    "meta": pl.String,
    "weight": pl.Float64,
}


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Role
    content: str

    @field_validator("content")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("content is empty")
        return v


def content_id(messages: Iterable[Message | dict]) -> str:
    """Stable id: sha256 of the canonical JSON of (role, content) pairs, first 16 hex digits."""
    canon = [
        [m["role"], m["content"]] if isinstance(m, dict) else [m.role, m.content] for m in messages
    ]
    blob = json.dumps(canon, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


class ChatRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = ""
    messages: list[Message] = Field(min_length=1)
    source: str = Field(min_length=1)
    meta: dict[str, Any] = Field(default_factory=dict)
    weight: float = Field(default=1.0, gt=0)

    @field_validator("messages")
    @classmethod
    def _has_assistant(cls, v: list[Message]) -> list[Message]:
        if not any(m.role == "assistant" for m in v):
            raise ValueError("no assistant turn")
        return v

    @model_validator(mode="after")
    def _check(self) -> "ChatRecord":
        if not self.id:
            self.id = content_id(self.messages)
        return self

    @classmethod
    def new(cls, messages: list[dict], source: str, meta: dict | None = None, weight: float = 1.0) -> "ChatRecord":
        return cls(messages=messages, source=source, meta=meta or {}, weight=weight)

    def to_row(self) -> dict:
        return {
            "id": self.id,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "source": self.source,
            "meta": json.dumps(self.meta, ensure_ascii=False, sort_keys=True),
            "weight": float(self.weight),
        }


# ---------------------------------------------------------------- accounting


@dataclass
class Quarantined:
    file: str
    row: int
    field: str
    error: str
    raw: str

    def message(self) -> str:
        return f"{self.file}:{self.row}: field '{self.field}': {self.error}"


@dataclass
class ReadStats:
    file: str
    rows_in: int = 0
    rows_out: int = 0
    rows_quarantined: int = 0
    errors: list[str] = field(default_factory=list)

    def check(self) -> None:
        if self.rows_in != self.rows_out + self.rows_quarantined:
            raise AssertionError(f"{self.file}: rows_in {self.rows_in} != out {self.rows_out} + quarantined {self.rows_quarantined}")


class QuarantineWriter:
    """Appends quarantined rows (with file/row/field/error and the raw row) to a JSONL file."""

    def __init__(self, path: Path | None):
        self.path = path
        self._fh = None

    def write(self, q: Quarantined) -> None:
        if self.path is None:
            return
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(json.dumps(q.__dict__, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _field_of(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(x) for x in first["loc"]) or "<row>"
    return loc


def _error_text(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '<row>'}: {e['msg']}" for e in err.errors()[:3])


def validate_row(obj: Any) -> ChatRecord:
    """Validate a decoded row (dict with messages, source, ...). Raises ValidationError."""
    if isinstance(obj, dict) and isinstance(obj.get("meta"), str):
        obj = {**obj, "meta": json.loads(obj["meta"]) if obj["meta"] else {}}
    return ChatRecord.model_validate(obj)


# ---------------------------------------------------------------- readers


def quarantine_row(stats: ReadStats, quarantine: QuarantineWriter, path: Path | str, row: int, field: str,
                   error: str, raw: str) -> None:
    """Count and write one quarantined row (the caller has already counted it in rows_in)."""
    q = Quarantined(str(path), row, field, error, raw)
    stats.rows_quarantined += 1
    stats.errors.append(q.message())
    quarantine.write(q)


def parse_objects(rows: Iterable[tuple[int, Any]], path: Path | str, stats: ReadStats, quarantine: QuarantineWriter,
                  parse: Any = validate_row) -> Iterator[Any]:
    """Validate decoded rows given as (row number, object): yield parse(obj), quarantine the failures
    with the field that failed. Every reader (JSONL, Parquet, JSON arrays, CSV) goes through here."""
    for row_no, obj in rows:
        stats.rows_in += 1
        try:
            rec = parse(obj)
        except ValidationError as e:
            field, error = _field_of(e), _error_text(e)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            field, error = getattr(e, "field", "<row>"), str(e)[:500]
        else:
            stats.rows_out += 1
            yield rec
            continue
        quarantine_row(stats, quarantine, path, row_no, field, error, json.dumps(obj, default=str, ensure_ascii=False))


def iter_jsonl(path: Path, stats: ReadStats, quarantine: QuarantineWriter, parse: Any = validate_row) -> Iterator[Any]:
    """Stream a JSONL file, yielding parse(obj) for each good row; bad rows go to quarantine."""

    def decoded() -> Iterator[tuple[int, Any]]:
        with open(path, "rb") as f:
            for row_no, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                if len(raw) > MAX_ROW_BYTES:
                    error, field = f"row is {len(raw)} bytes, over the {MAX_ROW_BYTES} byte limit", "<row>"
                else:
                    try:
                        yield row_no, json.loads(raw.decode("utf-8"))
                        continue
                    except UnicodeDecodeError as e:
                        error, field = f"invalid UTF-8 at byte {e.start}", "<utf-8>"
                    except json.JSONDecodeError as e:
                        error, field = f"invalid JSON: {e.msg} at column {e.colno}", "<json>"
                stats.rows_in += 1
                quarantine_row(stats, quarantine, path, row_no, field, error, raw.decode("utf-8", "replace"))

    yield from parse_objects(decoded(), path, stats, quarantine, parse)


def iter_parquet(path: Path, stats: ReadStats, quarantine: QuarantineWriter, parse: Any = validate_row,
                 batch_size: int = 4096) -> Iterator[Any]:
    """Stream a Parquet file in record batches (bounded memory), validating each row."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - unreadable file: one quarantine entry for the whole file
        stats.rows_in += 1
        quarantine_row(stats, quarantine, path, 0, "<file>", f"unreadable Parquet: {e}", "")
        return

    def rows() -> Iterator[tuple[int, Any]]:
        row_no = 0
        for batch in pf.iter_batches(batch_size=batch_size):
            for obj in batch.to_pylist():
                row_no += 1
                yield row_no, obj

    yield from parse_objects(rows(), path, stats, quarantine, parse)


def iter_records(path: Path | str, stats: ReadStats | None = None, quarantine: Path | QuarantineWriter | None = None,
                 parse: Any = validate_row) -> Iterator[Any]:
    """Stream rows of a JSONL or Parquet file; `parse` turns a decoded dict into a record."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats(str(path))
    qw = quarantine if isinstance(quarantine, QuarantineWriter) else QuarantineWriter(quarantine)
    try:
        if path.suffix == ".parquet":
            yield from iter_parquet(path, stats, qw, parse)
        elif path.suffix in (".jsonl", ".ndjson"):
            yield from iter_jsonl(path, stats, qw, parse)
        else:
            raise ValueError(f"{path}: unsupported file type {path.suffix!r} (use .jsonl or .parquet)")
    finally:
        if not isinstance(quarantine, QuarantineWriter):
            qw.close()


def read_records(path: Path | str, quarantine: Path | None = None) -> tuple[list[ChatRecord], ReadStats]:
    stats = ReadStats(str(path))
    recs = list(iter_records(path, stats, quarantine))
    stats.check()
    return recs, stats


# ---------------------------------------------------------------- writers


def records_frame(records: Iterable[ChatRecord]) -> pl.DataFrame:
    return pl.DataFrame([r.to_row() for r in records], schema=PARQUET_SCHEMA)


def write_parquet(records: Iterable[ChatRecord] | pl.DataFrame, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df = records if isinstance(records, pl.DataFrame) else records_frame(records)
    tmp = path.with_suffix(".parquet.part")
    df.write_parquet(tmp, statistics=False)
    tmp.replace(path)
    return path


def write_jsonl(records: Iterable[ChatRecord], path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.part")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            row = r.to_row()
            row["meta"] = r.meta
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def frame_to_records(df: pl.DataFrame) -> list[ChatRecord]:
    """Rows of a dataset frame (Parquet schema) back into validated records."""
    return [validate_row(row) for row in df.select(list(PARQUET_SCHEMA)).iter_rows(named=True)]
