"""Source adapters: each format is normalised into the chat-record contract.

Every adapter reads its file(s) row by row through `sftloop.schema`'s streaming readers, so
malformed rows are quarantined with file, row and field, and `rows_in == rows_out + quarantined`
holds per file. Multi-turn context is kept whole; only `pairs = true` flattens into
(user, assistant) pairs, each pair carrying the preceding turns as context.

File types: `.jsonl`/`.ndjson`, `.json` (an array of rows, possibly truncated, or an object whose
values are rows, or one row), `.csv`/`.tsv` (header row), `.parquet`. Bad input never stops a run:
a bad row is quarantined; a file that cannot be read (unreadable, unsupported type, bad header,
not JSON at all) is one quarantine entry with `row = None`; a directory or an empty file is skipped
with a note in the source statistics. What cannot be curated at all (a missing file, a glob that
matches no file, an unknown asset or dataset) raises `InputError` before any row is read.
"""

from __future__ import annotations

import csv
import glob
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sftloop import assets
from sftloop.schema import (ENCODING_FIELD, MAX_ROW_BYTES, ChatRecord, FieldError, QuarantineWriter, ReadStats,
                            iter_records, open_text, oversize, parse_meta, parse_objects, printable, quarantine_file,
                            quarantine_row, text_bytes, undecodable)

__all__ = ["FieldError", "InputError", "SourceConfig", "PARSERS", "iter_source", "read_source", "resolve_paths"]

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant", "bing": "assistant",
                  "bard": "assistant", "assistant": "assistant", "system": "system"}
FILE_TYPES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")
CSV_LIMIT_FACTOR = 16  # csv's own field limit is this many times max_row_bytes: bigger fields are not read


class InputError(ValueError):
    """The input as a whole cannot be curated (missing file, empty glob, unknown asset, no rows):
    the CLI prints the message and exits 2; nothing is published."""


class SourceConfig(BaseModel):
    """One `[[sources]]` table of a curate config (validated there), and what a reader is given."""

    model_config = ConfigDict(extra="forbid")
    name: str
    format: str  # sharegpt | messages | records | alpaca | bitext | multiwoz
    path: str  # file path, glob, "asset:<name>" or "dataset:<dir>[:split]"
    limit: int | None = Field(None, gt=0)
    pairs: bool = False
    weight: float = Field(1.0, gt=0, allow_inf_nan=False)
    # the config's top-level `max_row_bytes`, set by the runner (not a key of a [[sources]] table, not in the version id)
    max_row_bytes: int = Field(MAX_ROW_BYTES, ge=1, exclude=True)

    @field_validator("format")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in PARSERS:
            raise ValueError(f"unknown format {v!r} (known: {sorted(PARSERS)})")
        return v


def resolve_paths(spec: str) -> list[Path]:
    """A file, a glob, `asset:<name>`, or `dataset:<dataset dir>[:split]` (its LATEST version's split,
    default `train`: how reviewed/mined records come back into a curation run). Directories a glob
    matches are returned too (the reader skips them with a note); a spec that names no file at all
    raises `InputError` naming it."""
    if spec.startswith("asset:"):
        name = spec.removeprefix("asset:")
        if name not in assets.specs():
            raise InputError(f"source path {spec!r}: unknown asset {name!r} (known: {sorted(assets.specs())})")
        try:
            return [assets.path(name)]
        except assets.AssetError as e:
            raise InputError(f"source path {spec!r}: {e}") from None
    if spec.startswith("dataset:"):
        from sftloop.dataset_version import DatasetNotFound, DatasetVersion, UnknownPart

        where, _, split = spec.removeprefix("dataset:").partition(":")
        try:
            p = DatasetVersion.resolve(where).file(split or "train")
        except (DatasetNotFound, UnknownPart) as e:
            raise InputError(f"source path {spec!r}: {e}") from None
        if not p.exists():
            raise InputError(f"source path {spec!r}: {p} does not exist")
        return [p]
    paths = sorted(Path(p) for p in glob.glob(spec))
    if not paths:
        raise InputError(f"source path {spec!r} matches no file")
    if all(p.is_dir() for p in paths):
        raise InputError(f"source path {spec!r} matches only directories ({', '.join(map(str, paths[:3]))}); "
                         f"use a glob of files such as '{paths[0]}/*.jsonl'")
    return paths


# ---------------------------------------------------------------- row parsers (one per format)


def _object(obj: Any) -> dict:
    if not isinstance(obj, dict):
        raise FieldError("<row>", f"row is a JSON {type(obj).__name__}, not an object")
    return obj


def _text(obj: dict, key: str, optional: bool = False) -> str:
    v = obj.get(key)
    if v is None and optional:
        return ""
    if not isinstance(v, str):
        raise FieldError(key, "missing" if v is None else f"not a string (got {type(v).__name__})")
    return v


def _record(messages: Any, src: SourceConfig, meta: dict) -> ChatRecord:
    return ChatRecord.model_validate({"messages": messages, "source": src.name, "meta": meta, "weight": src.weight})


def parse_sharegpt(obj: Any, src: SourceConfig) -> ChatRecord:
    if not isinstance(obj, dict) or not isinstance(obj.get("conversations"), list):
        raise FieldError("conversations", "missing or not a list")
    msgs: list[dict] = []
    empty = 0
    for i, turn in enumerate(obj["conversations"]):
        if not isinstance(turn, dict):
            raise FieldError(f"conversations.{i}", "turn is not an object")
        who = str(turn.get("from", "")).strip().lower()
        role = SHAREGPT_ROLES.get(who)
        if role is None:
            raise FieldError(f"conversations.{i}.from", f"unknown role {turn.get('from')!r}")
        value = turn.get("value")
        if not isinstance(value, str):
            raise FieldError(f"conversations.{i}.value", "not a string")
        if not value.strip():
            empty += 1
            continue
        msgs.append({"role": role, "content": value})
    meta = {"origin_id": obj.get("id")}
    if empty:
        meta["empty_turns_removed"] = empty
    return _record(msgs, src, meta)


def parse_messages(obj: Any, src: SourceConfig) -> ChatRecord:
    if "messages" not in _object(obj):
        raise FieldError("messages", "missing")
    meta = parse_meta(obj.get("meta"))
    for k in ("id", "timestamp", "category"):
        if k in obj and obj[k] is not None:
            meta.setdefault(k if k != "id" else "origin_id", obj[k])
    return _record(obj["messages"], src, meta)


def parse_records(obj: Any, src: SourceConfig) -> ChatRecord:
    """Rows already in the chat-record contract (a dataset version's split): id, source and weight are
    kept as given (mined corrections stay `mined:<week>` with their weight); only a missing/null value
    takes the default (content-hash id, the source's name, the source's weight). meta may be a JSON string."""
    if "messages" not in _object(obj):
        raise FieldError("messages", "missing")

    def given(key: str, default: Any) -> Any:
        return default if obj.get(key) is None else obj[key]  # not `or`: 0 and "" are values, and invalid

    return ChatRecord.model_validate({"id": given("id", ""), "messages": obj["messages"],
                                      "source": given("source", src.name), "meta": parse_meta(obj.get("meta")),
                                      "weight": given("weight", src.weight)})


def parse_alpaca(obj: Any, src: SourceConfig) -> ChatRecord:
    _object(obj)
    instruction, output = _text(obj, "instruction"), _text(obj, "output")
    user = instruction.strip()
    if (inp := _text(obj, "input", optional=True).strip()):
        user = f"{user}\n\n{inp}"
    return _record([{"role": "user", "content": user}, {"role": "assistant", "content": output}], src, {})


def parse_bitext(obj: Any, src: SourceConfig) -> ChatRecord:
    _object(obj)
    instruction, response = _text(obj, "instruction"), _text(obj, "response")
    meta = {k: obj[k] for k in ("intent", "category", "flags") if obj.get(k) is not None}
    return _record([{"role": "user", "content": instruction}, {"role": "assistant", "content": response}], src, meta)


def parse_multiwoz(obj: Any, src: SourceConfig) -> ChatRecord:
    turns = _object(obj).get("turns")
    if not isinstance(turns, list):
        raise FieldError("turns", "missing or not a list")
    msgs = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise FieldError(f"turns.{i}", "turn is not an object")
        speaker = str(t.get("speaker", "")).upper()
        if speaker not in ("USER", "SYSTEM"):
            raise FieldError(f"turns.{i}.speaker", f"unknown speaker {t.get('speaker')!r}")
        if not isinstance(t.get("utterance"), str):
            raise FieldError(f"turns.{i}.utterance", "missing or not a string")
        msgs.append({"role": "user" if speaker == "USER" else "assistant", "content": t["utterance"]})
    meta = {"origin_id": obj.get("dialogue_id"), "services": obj.get("services")}
    return _record(msgs, src, {k: v for k, v in meta.items() if v is not None})


PARSERS: dict[str, Callable[[Any, SourceConfig], ChatRecord]] = {
    "sharegpt": parse_sharegpt,
    "messages": parse_messages,
    "records": parse_records,
    "alpaca": parse_alpaca,
    "bitext": parse_bitext,
    "multiwoz": parse_multiwoz,
}


def to_pairs(rec: ChatRecord) -> list[ChatRecord]:
    """Flatten into one record per assistant turn, each with its preceding context (only when asked)."""
    out = []
    for i, m in enumerate(rec.messages):
        if m.role == "assistant" and i > 0:
            out.append(ChatRecord(messages=rec.messages[: i + 1], source=rec.source,
                                  meta={**rec.meta, "pair_of": rec.id, "turn": i}, weight=rec.weight))
    return out or [rec]


# ---------------------------------------------------------------- file readers (.json, .csv/.tsv)


def _read_text(path: Path, stats: ReadStats, qw: QuarantineWriter) -> tuple[str, str] | None:
    try:
        f, enc = open_text(path)
        with f:
            return f.read(), enc
    except OSError as e:
        quarantine_file(stats, qw, path, f"cannot read the file: {e.strerror or e}")
        return None


def _json_error(text: str, pos: int, msg: str) -> str:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"invalid JSON at line {line} column {col}: {msg}"


def _iter_json(path: Path, stats: ReadStats, qw: QuarantineWriter, parse: Callable[[Any], Any],
               limit: int) -> Iterator[Any]:
    """A whole-file JSON document. A top-level array streams its objects one by one (a truncated or
    broken rest is one quarantined row); an object whose values are all objects is a mapping of rows;
    any other object is one row; anything else is a file-level quarantine entry."""
    got = _read_text(path, stats, qw)
    if got is None:
        return
    text, enc = got
    start = len(text) - len(text.lstrip())
    if start == len(text):
        return  # empty: the caller notes it
    if text[start] == "[":
        yield from _iter_json_array(path, text, start + 1, enc, stats, qw, parse, limit)
        return
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        bad = undecodable(text, enc)
        quarantine_file(stats, qw, path, bad or _json_error(text, e.pos, e.msg), ENCODING_FIELD if bad else "<json>",
                        printable(text[:2000]))
        return
    if not isinstance(doc, dict):
        quarantine_file(stats, qw, path, f"top-level JSON is a {type(doc).__name__}; expected an array of rows or an "
                        "object", "<json>", printable(text[:2000]))
        return
    rows = list(doc.values()) if doc and all(isinstance(v, dict) for v in doc.values()) else ([doc] if doc else [])

    def checked(obj: Any) -> Any:
        if (bad := undecodable(json.dumps(obj, ensure_ascii=False), enc)) is not None:
            raise FieldError(ENCODING_FIELD, bad)
        return parse(obj)

    yield from parse_objects(enumerate(rows, start=1), path, stats, qw, checked if undecodable(text, enc) else parse,
                             max_row_bytes=limit)


_NEXT_OBJECT = re.compile(r"[,\[]\s*(?=\{)")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]')  # strings (skipped whole) and structure


def _element_end(text: str, i: int) -> int | None:
    """End of the array element starting at `i`, by bracket depth outside strings: a broken token
    (a bare word, a missing comma) rarely breaks the brackets. None if they never close."""
    depth = 0
    for m in _TOKEN.finditer(text, i):
        c = m.group()
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth <= 0:
                return m.end() if depth == 0 else m.start()
        elif c == "," and depth == 0:
            return m.start()
    return None


def _resync(dec: json.JSONDecoder, text: str, i: int) -> int:
    """After a broken array element at `i`: where the next element starts, so the good rows after one
    bad row are still read. First by bracket depth; if the brackets never close, the next '{' after
    ',' or '[' that decodes and is followed by ',' or ']'; len(text) when there is none."""
    if (end := _element_end(text, i)) is not None:
        return end
    for m in _NEXT_OBJECT.finditer(text, i + 1):
        try:
            _, end = dec.raw_decode(text, m.end())
        except json.JSONDecodeError:
            continue
        after = text[end:end + 64].lstrip()
        if after[:1] in (",", "]"):
            return m.end()
    return len(text)


def _iter_json_array(path: Path, text: str, i: int, enc: str, stats: ReadStats, qw: QuarantineWriter,
                     parse: Callable[[Any], Any], limit: int) -> Iterator[Any]:
    """Objects of a top-level JSON array, decoded one by one from position `i` (after '['), each
    checked for undecodable bytes and size on its own text."""
    dec = json.JSONDecoder()
    n = len(text)
    row = 0

    def objects() -> Iterator[tuple[int, Any]]:
        nonlocal i, row
        while True:
            while i < n and text[i] in " \n\r\t,":
                i += 1
            if i >= n:
                if not text.rstrip().endswith("]"):
                    stats.notes.append("JSON array is not closed (truncated file?)")
                return
            if text[i] == "]":
                i += 1
                return
            row += 1
            try:
                obj, end = dec.raw_decode(text, i)
            except json.JSONDecodeError as e:
                resume = _resync(dec, text, i)
                piece = text[i:resume].strip()
                if resume < n:
                    reason = _json_error(text, e.pos, e.msg) + "; skipped to the next object"
                elif not text.rstrip().endswith("]"):
                    reason = "truncated JSON object at end of file"
                else:
                    reason = _json_error(text, e.pos, e.msg) + "; the rest of the file is this one row"
                if (bad := undecodable(piece, enc)) is not None:
                    reason = f"{reason} ({bad})"
                stats.rows_in += 1
                quarantine_row(stats, qw, path, row, ENCODING_FIELD if bad else "<json>", reason, printable(piece))
                i = resume
                continue
            span = text[i:end]
            i = end
            if (bad := undecodable(span, enc)) is not None:
                field, error = ENCODING_FIELD, bad
            elif len(span) * 4 > limit and (size := text_bytes(span)) > limit:
                field, error = oversize(size, limit, obj)
            else:
                yield row, obj
                continue
            stats.rows_in += 1
            quarantine_row(stats, qw, path, row, field, error, printable(span))

    yield from parse_objects(objects(), path, stats, qw, parse)
    if (extra := text[i:].strip()):
        stats.rows_in += 1
        quarantine_row(stats, qw, path, row + 1, "<json>", "extra data after the end of the JSON array",
                       printable(extra[:2000]))


def _iter_csv(path: Path, stats: ReadStats, qw: QuarantineWriter, parse: Callable[[Any], Any],
              limit: int) -> Iterator[Any]:
    """CSV/TSV with a header row (row 1); `row` is the record number, so the first data row is 2.
    A row whose field count differs from the header's, holds undecodable bytes, or is over the size
    limit is quarantined naming the column; a bad header quarantines the file."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_LIMIT_FACTOR * limit))  # only ever raised
    try:
        f, enc = open_text(path, newline="")
    except OSError as e:
        quarantine_file(stats, qw, path, f"cannot read the file: {e.strerror or e}")
        return
    with f:
        reader = csv.reader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        try:
            header = next(reader, None)
            while header is not None and not any(h.strip() for h in header):  # blank lines before the header
                header = next(reader, None)
        except (csv.Error, OSError) as e:
            quarantine_file(stats, qw, path, f"unreadable header: {e}", "<header>")
            return
        if header is None:
            return  # empty: the caller notes it
        header = [h.strip() for h in header]
        problem = (undecodable(",".join(header), enc)
                   or (f"empty column name at position {header.index('') + 1}" if "" in header else None)
                   or next((f"duplicate column {h!r}" for k, h in enumerate(header) if h in header[:k]), None))
        if problem:
            quarantine_file(stats, qw, path, f"bad header: {problem}", "<header>", printable(",".join(header)))
            return

        def rows() -> Iterator[tuple[int, Any]]:
            row = 1
            while True:
                row += 1
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except csv.Error as e:
                    field, error, raw = "<csv>", f"unparseable row (line {reader.line_num}): {e}", ""
                except OSError as e:
                    quarantine_file(stats, qw, path, f"read failed after row {row - 1}: {e.strerror or e}")
                    return
                else:
                    if not values:
                        row -= 1  # a blank line is no row
                        continue
                    raw = printable(json.dumps(values, ensure_ascii=False))
                    sizes = [text_bytes(v) if len(v) * 4 > limit else len(v) for v in values]
                    bad = next(((h, b) for h, v in zip(header, values) if (b := undecodable(v, enc))), None)
                    if len(values) != len(header):
                        field = "<columns>"
                        error = (f"row has {len(values)} fields, the header has {len(header)} "
                                 f"({', '.join(header)}); the row is misaligned")
                    elif bad is not None:
                        field, error = ENCODING_FIELD, f"column {bad[0]!r}: {bad[1]}"
                    elif sum(sizes) > limit:
                        big = max(range(len(sizes)), key=sizes.__getitem__)
                        field = header[big]
                        error = (f"row is {sum(sizes):,} bytes, over the max_row_bytes limit of {limit:,}; "
                                 f"{field} alone is {sizes[big]:,} bytes")
                    else:
                        yield row, dict(zip(header, values))
                        continue
                stats.rows_in += 1
                quarantine_row(stats, qw, path, row, field, error, raw)

        yield from parse_objects(rows(), path, stats, qw, parse)


# ---------------------------------------------------------------- one source


def _iter_file(path: Path, stats: ReadStats, qw: QuarantineWriter, parse: Callable[[Any], Any],
               limit: int) -> Iterator[Any]:
    suffix = path.suffix.lower()
    if suffix not in FILE_TYPES:
        quarantine_file(stats, qw, path, f"unsupported file type {path.suffix!r} (known: {', '.join(FILE_TYPES)})")
        return
    if path.exists() and not path.is_file():  # a FIFO, socket or device would block or never end
        quarantine_file(stats, qw, path, "not a regular file")
        return
    if path.exists() and path.stat().st_size == 0:
        return  # 0 bytes, whatever the type (not even a Parquet footer): the caller notes it as empty
    if suffix == ".json":
        yield from _iter_json(path, stats, qw, parse, limit)
    elif suffix in (".csv", ".tsv"):
        yield from _iter_csv(path, stats, qw, parse, limit)
    else:
        yield from iter_records(path, stats, qw, parse, max_row_bytes=limit)


def iter_source(src: SourceConfig, qw: QuarantineWriter, all_stats: list[ReadStats],
                paths: list[Path] | None = None) -> Iterator[ChatRecord]:
    """Records of one source one at a time (bounded by `limit`); per-file statistics are appended to
    `all_stats` as each file finishes. `paths`: already resolved (default: `resolve_paths(src.path)`)."""
    parser = PARSERS.get(src.format)
    if parser is None:
        raise ValueError(f"source {src.name}: unknown format {src.format!r} (known: {sorted(PARSERS)})")

    def parse(obj: Any) -> ChatRecord:
        return parser(obj, src)

    done = 0
    for path in paths if paths is not None else resolve_paths(src.path):
        stats = ReadStats(str(path))
        if path.is_dir():
            stats.notes.append("a directory: skipped")
            all_stats.append(stats)
            continue
        it = _iter_file(path, stats, qw, parse, src.max_row_bytes)
        for rec in it:
            yield from (to_pairs(rec) if src.pairs else [rec])
            if src.limit is not None and done + stats.rows_in >= src.limit:
                break
        it.close()
        if stats.rows_in == 0:
            stats.notes.append("no rows (empty file)")
        stats.check()
        all_stats.append(stats)
        done += stats.rows_in
        if src.limit is not None and done >= src.limit:
            break


def read_source(src: SourceConfig, qw: QuarantineWriter) -> tuple[list[ChatRecord], list[ReadStats]]:
    """All records of one source (bounded by `limit`), with per-file read statistics."""
    stats: list[ReadStats] = []
    return list(iter_source(src, qw, stats)), stats
