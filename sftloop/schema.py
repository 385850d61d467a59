"""The chat-record contract, with readers and writers that never lose a row.

A `ChatRecord` is what every package exchanges: `id` (stable content hash of the
messages), `messages` (system/user/assistant, non-empty content, at least one
assistant turn), `source`, `meta` (free dict), `weight` (> 0, used for upsampling).

Readers stream JSONL or Parquet in batches. A row that fails to decode or validate is
written to a quarantine JSONL file with the file, 1-based row number, field and error
(and the raw row, so nothing is lost); valid rows go on. A file that cannot be read at all
is one quarantine entry with `row = None` (counted as one row). `ReadStats` holds the identity
`rows_in == rows_out + rows_quarantined`.

Text files are decoded by their BOM or, without one, by the RFC 8259 NUL-byte rule (UTF-8,
UTF-16 and UTF-32, `json.detect_encoding`); bytes that do not decode never stop a read: the
row that holds them is quarantined with field `<encoding>`. A row over `max_row_bytes` (UTF-8
bytes of its decoded text; default `MAX_ROW_BYTES`) is quarantined with its largest field and size.

On disk (Parquet), `meta` is stored as a JSON string column because it is a free dict.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")
MAX_ROW_BYTES = 8 * 1024 * 1024  # default row size limit (UTF-8 bytes); larger rows are quarantined
ENCODING_FIELD = "<encoding>"  # quarantine field of a row holding bytes that are not valid in the file's encoding
FILE_FIELD = "<file>"  # quarantine field of a whole file that could not be read (row = None)

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
    # strict: a bool or a string is not a weight; finite: NaN/Infinity are not (see docs/schema.md)
    weight: float = Field(default=1.0, gt=0, strict=True, allow_inf_nan=False)

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
    row: int | None  # 1-based; None: the whole file (one entry, counted as one row)
    field: str
    error: str
    raw: str

    def message(self) -> str:
        where = self.file if self.row is None else f"{self.file}:{self.row}"
        return f"{where}: field '{self.field}': {' '.join(self.error.split())}"  # one line


@dataclass
class ReadStats:
    file: str
    rows_in: int = 0
    rows_out: int = 0
    rows_quarantined: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # a file that held no rows (empty, a directory): nothing lost

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
            # backslashreplace: a stray lone surrogate in a raw row must not stop the run
            self._fh = open(self.path, "a", encoding="utf-8", errors="backslashreplace")
        self._fh.write(json.dumps(q.__dict__, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class FieldError(ValueError):
    """A row-level problem in a named field (goes to quarantine with that field)."""

    def __init__(self, field: str, msg: str):
        super().__init__(msg)
        self.field = field


def _field_of(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(x) for x in first["loc"]) or "<row>"
    return loc


def _error_text(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        got = e.get("input")
        shown = f" (got {got!r:.60})" if isinstance(got, (str, int, float, bool)) or got is None else ""
        parts.append(f"{'.'.join(str(x) for x in e['loc']) or '<row>'}: {e['msg']}{shown}")
    return "; ".join(parts)


def parse_meta(meta: Any) -> dict:
    """`meta` as given (a dict, a JSON string of one, or null/empty): anything else is a FieldError."""
    if meta is None:
        return {}
    if isinstance(meta, str):
        if not meta.strip():
            return {}
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError as e:
            raise FieldError("meta", f"not valid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(meta, dict):
        raise FieldError("meta", f"must be an object, got {type(meta).__name__}")
    return dict(meta)


def validate_row(obj: Any) -> ChatRecord:
    """Validate a decoded row (dict with messages, source, ...). Raises ValidationError."""
    if isinstance(obj, dict) and "meta" in obj:
        obj = {**obj, "meta": parse_meta(obj["meta"])}
    return ChatRecord.model_validate(obj)


# ---------------------------------------------------------------- decoding and size limits

_MARK = "sftloop.mark_undecodable"
_UNDECODABLE = re.compile("[\ud800-\udfff]+")  # lone surrogates: never produced by a strict decode


def _mark_undecodable(err: UnicodeError) -> tuple[str, int]:
    """Codec error handler: each undecodable byte b becomes the lone surrogate U+DC00+b, like
    `surrogateescape` but for every codec and byte value, so a bad byte marks its row instead of
    stopping the read."""
    if not isinstance(err, UnicodeDecodeError):
        raise err
    return "".join(chr(0xDC00 + b) for b in err.object[err.start:err.end]), err.end


codecs.register_error(_MARK, _mark_undecodable)


def detect_encoding(path: Path | str) -> str:
    """The file's text encoding from its first 4 bytes: a BOM (UTF-8/16/32) or the NUL-byte
    pattern of UTF-16/32 text without one; UTF-8 otherwise (`json.detect_encoding`, RFC 8259)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return json.detect_encoding(head)


def open_text(path: Path | str, newline: str | None = "\n") -> tuple[IO[str], str]:
    """Open a text file in its detected encoding; undecodable bytes become markers that
    `undecodable()` finds, so one bad byte costs one row, not the file."""
    enc = detect_encoding(path)
    return open(path, encoding=enc, errors=_MARK, newline=newline), enc


def undecodable(text: str, encoding: str) -> str | None:
    """A readable reason if `text` holds bytes that were not valid in `encoding`, else None."""
    if text.isascii():
        return None
    try:  # a C-speed test: lone surrogates do not encode (a regex scan is ~10x slower, bench/read_bench.py)
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as e:
        m = _UNDECODABLE.match(text, e.start) or _UNDECODABLE.search(text)
    if m is None:
        return None
    bad = bytes(ord(c) - 0xDC00 for c in m.group()[:8] if 0xDC00 <= ord(c) <= 0xDCFF)
    name = "UTF-8" if encoding.startswith("utf-8") else encoding.upper()
    hint = ""
    if name == "UTF-8" and bad and all(b >= 0x80 for b in bad):
        hint = "; the file looks Latin-1/cp1252-encoded: re-save it as UTF-8"
    return f"not valid {name}: byte(s) {bad.hex(' ')} at character {m.start() + 1}{hint}"


def printable(text: str) -> str:
    """`text` with undecodable-byte markers shown as \\xNN (for the quarantine's raw row)."""
    if text.isascii() or undecodable(text, "utf-8") is None:
        return text
    return _UNDECODABLE.sub(lambda m: "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC00 <= ord(c) <= 0xDCFF
                                              else f"\\u{ord(c):04x}" for c in m.group()), text)


def text_bytes(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def _strings(obj: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(obj, str):
        yield path or "<row>", obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _strings(v, f"{path}.{i}" if path else str(i))


def largest_field(obj: Any) -> tuple[str, int]:
    """(path, UTF-8 bytes) of the largest text value in a decoded row, e.g. ('messages.1.content', 5e7)."""
    best = ("<row>", 0)
    for p, s in _strings(obj):
        if len(s) * 4 > best[1] and (n := text_bytes(s)) > best[1]:
            best = (p, n)
    return best


def oversize(size: int, limit: int, obj: Any = None) -> tuple[str, str]:
    """(field, reason) for a row of `size` bytes over `limit`: the field is its largest text value."""
    name, n = largest_field(obj) if obj is not None else ("<row>", 0)
    of = f"; {name} alone is {n:,} bytes" if n else ""
    return name, f"row is {size:,} bytes, over the max_row_bytes limit of {limit:,}{of}"


def row_size_over(obj: Any, limit: int) -> int | None:
    """UTF-8 bytes of a decoded row's text values when over `limit`, else None (cheap when small)."""
    texts = [s for _, s in _strings(obj)]
    if sum(len(s) for s in texts) * 4 <= limit:
        return None
    n = sum(text_bytes(s) for s in texts)
    return n if n > limit else None


# ---------------------------------------------------------------- readers


def quarantine_row(stats: ReadStats, quarantine: QuarantineWriter, path: Path | str, row: int | None, field: str,
                   error: str, raw: str) -> None:
    """Count and write one quarantined row (the caller has already counted it in rows_in)."""
    q = Quarantined(str(path), row, field, error, raw)
    stats.rows_quarantined += 1
    stats.errors.append(q.message())
    quarantine.write(q)


def quarantine_file(stats: ReadStats, quarantine: QuarantineWriter, path: Path | str, error: str,
                    field: str = FILE_FIELD, raw: str = "") -> None:
    """A whole file (or the unread rest of one) that cannot be read: one entry, row = None, counted as one row."""
    stats.rows_in += 1
    quarantine_row(stats, quarantine, path, None, field, error, raw)


def parse_objects(rows: Iterable[tuple[int, Any]], path: Path | str, stats: ReadStats, quarantine: QuarantineWriter,
                  parse: Any = validate_row, max_row_bytes: int | None = None) -> Iterator[Any]:
    """Validate decoded rows given as (row number, object): yield parse(obj), quarantine the failures
    with the field that failed. Every reader (JSONL, Parquet, JSON arrays, CSV) goes through here.
    With `max_row_bytes`, a row whose text values are larger is quarantined (readers that measured
    the raw row already pass None)."""
    for row_no, obj in rows:
        stats.rows_in += 1
        try:
            if max_row_bytes is not None and (size := row_size_over(obj, max_row_bytes)) is not None:
                raise FieldError(*oversize(size, max_row_bytes, obj))
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


def iter_jsonl(path: Path, stats: ReadStats, quarantine: QuarantineWriter, parse: Any = validate_row,
               max_row_bytes: int = MAX_ROW_BYTES) -> Iterator[Any]:
    """Stream a JSONL file, yielding parse(obj) for each good row; bad rows go to quarantine."""

    def decoded() -> Iterator[tuple[int, Any]]:
        row_no = 0
        try:
            f, enc = open_text(path)
        except OSError as e:
            quarantine_file(stats, quarantine, path, f"cannot read the file: {e.strerror or e}")
            return
        with f:
            try:
                for row_no, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    size = text_bytes(line.rstrip("\r\n")) if len(line) * 4 > max_row_bytes else 0
                    if (bad := undecodable(line, enc)) is not None:
                        field, error = ENCODING_FIELD, bad
                    elif size > max_row_bytes:
                        try:  # decoded only to name the largest field
                            obj = json.loads(line)
                        except json.JSONDecodeError:
                            obj = None
                        field, error = oversize(size, max_row_bytes, obj)
                    else:
                        try:
                            yield row_no, json.loads(line)
                            continue
                        except json.JSONDecodeError as e:
                            field, error = "<json>", f"invalid JSON: {e.msg} at column {e.colno}"
                    stats.rows_in += 1
                    quarantine_row(stats, quarantine, path, row_no, field, error, printable(line.rstrip("\r\n")))
            except OSError as e:  # an I/O error mid-file: the unread rest is one entry
                quarantine_file(stats, quarantine, path, f"read failed after row {row_no}: {e.strerror or e}")

    yield from parse_objects(decoded(), path, stats, quarantine, parse)


def iter_parquet(path: Path, stats: ReadStats, quarantine: QuarantineWriter, parse: Any = validate_row,
                 batch_size: int = 4096, max_row_bytes: int = MAX_ROW_BYTES) -> Iterator[Any]:
    """Stream a Parquet file in record batches (bounded memory), validating each row."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - unreadable file: one quarantine entry for the whole file
        quarantine_file(stats, quarantine, path, f"unreadable Parquet: {e}")
        return

    def rows() -> Iterator[tuple[int, Any]]:
        row_no = 0
        try:
            for batch in pf.iter_batches(batch_size=batch_size):
                try:
                    objs = batch.to_pylist()
                except UnicodeDecodeError:  # a string column holds bytes that are not UTF-8: find the rows
                    objs = None
                sizes = batch_text_bytes(batch) if objs is not None else None
                for k in range(batch.num_rows):
                    row_no += 1
                    got = objs[k] if objs is not None else _parquet_row(batch.slice(k, 1))
                    if isinstance(got, Quarantined):
                        field, error, raw = got.field, got.error, got.raw
                    elif (size := int(sizes[k]) if sizes is not None else row_size_over(got, max_row_bytes) or 0) \
                            > max_row_bytes:
                        (field, error), raw = oversize(size, max_row_bytes, got), json.dumps(got, default=str)
                    else:
                        yield row_no, got
                        continue
                    stats.rows_in += 1
                    quarantine_row(stats, quarantine, path, row_no, field, error, raw)
        except Exception as e:  # noqa: BLE001 - a corrupt row group: the unread rest is one entry
            quarantine_file(stats, quarantine, path, f"unreadable Parquet after row {row_no}: {e}")

    yield from parse_objects(rows(), path, stats, quarantine, parse)


def batch_text_bytes(batch: Any) -> Any:
    """UTF-8 bytes of the text values of each row of an Arrow record batch, vectorised (the same
    measure as `row_size_over`, without converting rows to Python); None for a column type it does
    not cover (dictionary, map, ...), where the caller measures row by row."""
    import numpy as np

    total = np.zeros(batch.num_rows, dtype=np.int64)
    for col in batch.columns:
        sizes = _arrow_text_bytes(col)
        if sizes is None:
            return None
        total += sizes
    return total


def _arrow_text_bytes(arr: Any) -> Any:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pc.binary_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        child = _arrow_text_bytes(arr.values)  # offsets index the whole values array (also when sliced)
        if child is None:
            return None
        cs = np.concatenate([[0], np.cumsum(child)])
        off = arr.offsets.to_numpy().astype(np.int64)
        out = cs[off[1:]] - cs[off[:-1]]
    elif pa.types.is_struct(t):
        out = np.zeros(len(arr), dtype=np.int64)
        for f in arr.flatten():
            sub = _arrow_text_bytes(f)
            if sub is None:
                return None
            out += sub
    elif (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_null(t)
          or pa.types.is_temporal(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)
          or pa.types.is_decimal(t)):
        return np.zeros(len(arr), dtype=np.int64)  # no text: decoded to numbers, bytes, dates
    else:
        return None
    if arr.null_count:
        out[arr.is_null().to_numpy(zero_copy_only=False)] = 0
    return out


def _parquet_row(one: Any) -> Any:
    """One row of a record batch as a dict, or a `Quarantined` (file/row filled in by the caller) naming
    the column whose bytes are not UTF-8."""
    try:
        return one.to_pylist()[0]
    except UnicodeDecodeError:
        pass
    import pyarrow as pa

    raw: dict[str, Any] = {}
    bad: list[str] = []
    for name in one.schema.names:
        col = one.column(name)
        try:
            raw[name] = col.to_pylist()[0]
        except UnicodeDecodeError as e:
            bad.append(f"column {name!r}: not valid UTF-8: byte {e.object[e.start:e.start + 1].hex()} at byte {e.start + 1}")
            raw[name] = (col.cast(pa.binary()).to_pylist()[0] if pa.types.is_string(col.type) else None)
    shown = json.dumps(raw, default=lambda b: b.decode("utf-8", "backslashreplace") if isinstance(b, bytes) else str(b),
                       ensure_ascii=False)
    return Quarantined("", 0, ENCODING_FIELD, "; ".join(bad) or "not valid UTF-8", shown)


def iter_records(path: Path | str, stats: ReadStats | None = None, quarantine: Path | QuarantineWriter | None = None,
                 parse: Any = validate_row, max_row_bytes: int = MAX_ROW_BYTES) -> Iterator[Any]:
    """Stream rows of a JSONL or Parquet file; `parse` turns a decoded dict into a record."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats(str(path))
    qw = quarantine if isinstance(quarantine, QuarantineWriter) else QuarantineWriter(quarantine)
    try:
        if path.suffix.lower() == ".parquet":
            yield from iter_parquet(path, stats, qw, parse, max_row_bytes=max_row_bytes)
        elif path.suffix.lower() in (".jsonl", ".ndjson"):
            yield from iter_jsonl(path, stats, qw, parse, max_row_bytes=max_row_bytes)
        else:
            raise ValueError(f"{path}: unsupported file type {path.suffix!r} (use .jsonl or .parquet)")
    finally:
        if not isinstance(quarantine, QuarantineWriter):
            qw.close()


def read_records(path: Path | str, quarantine: Path | None = None,
                 max_row_bytes: int = MAX_ROW_BYTES) -> tuple[list[ChatRecord], ReadStats]:
    stats = ReadStats(str(path))
    recs = list(iter_records(path, stats, quarantine, max_row_bytes=max_row_bytes))
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
