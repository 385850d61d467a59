"""Source adapters: each format is normalised into the chat-record contract.

Every adapter reads its file(s) row by row through `sftloop.schema`'s streaming readers, so
malformed rows are quarantined with file, row and field, and `rows_in == rows_out + quarantined`
holds per file. Multi-turn context is kept whole; only `pairs = true` flattens into
(user, assistant) pairs, each pair carrying the preceding turns as context.
"""

from __future__ import annotations

import csv
import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from sftloop import assets
from sftloop.schema import ChatRecord, QuarantineWriter, ReadStats, iter_records, parse_objects, quarantine_row

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant", "bing": "assistant",
                  "bard": "assistant", "assistant": "assistant", "system": "system"}


class FieldError(ValueError):
    """A row-level problem in a named field (goes to quarantine with that field)."""

    def __init__(self, field: str, msg: str):
        super().__init__(msg)
        self.field = field


@dataclass
class SourceConfig:
    name: str
    format: str  # sharegpt | messages | records | alpaca | bitext | multiwoz
    path: str  # file path, glob, or "asset:<name>"
    limit: int | None = None
    pairs: bool = False
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


def resolve_paths(spec: str) -> list[Path]:
    """A file, a glob, `asset:<name>`, or `dataset:<dataset dir>[:split]` (its LATEST version's split,
    default `train`: how reviewed/mined records come back into a curation run)."""
    if spec.startswith("asset:"):
        return [assets.path(spec.removeprefix("asset:"))]
    if spec.startswith("dataset:"):
        from sftloop.datasets import resolve_version

        where, _, split = spec.removeprefix("dataset:").partition(":")
        return [resolve_version(where, Path.cwd()) / f"{split or 'train'}.parquet"]
    paths = sorted(Path(p) for p in glob.glob(spec))
    if not paths:
        raise FileNotFoundError(f"source path {spec!r} matches no file")
    return paths


def _record(messages: list[dict], src: SourceConfig, meta: dict) -> ChatRecord:
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
    if not isinstance(obj, dict) or "messages" not in obj:
        raise FieldError("messages", "missing")
    meta = obj.get("meta") or {}
    if isinstance(meta, str):
        meta = json.loads(meta) if meta else {}
    for k in ("id", "timestamp", "category"):
        if k in obj and obj[k] is not None:
            meta.setdefault(k if k != "id" else "origin_id", obj[k])
    return _record(obj["messages"], src, meta)


def parse_records(obj: Any, src: SourceConfig) -> ChatRecord:
    """Rows already in the chat-record contract (a dataset version's split): id, source and weight are
    kept (mined corrections stay `mined:<week>` with their weight); meta may be a JSON string."""
    if not isinstance(obj, dict) or "messages" not in obj:
        raise FieldError("messages", "missing")
    meta = obj.get("meta") or {}
    if isinstance(meta, str):
        meta = json.loads(meta) if meta else {}
    return ChatRecord.model_validate({"id": obj.get("id") or "", "messages": obj["messages"],
                                      "source": obj.get("source") or src.name, "meta": meta,
                                      "weight": obj.get("weight") or src.weight})


def parse_alpaca(obj: Any, src: SourceConfig) -> ChatRecord:
    for k in ("instruction", "output"):
        if not isinstance(obj.get(k), str):
            raise FieldError(k, "missing or not a string")
    user = obj["instruction"].strip()
    if (inp := (obj.get("input") or "").strip()):
        user = f"{user}\n\n{inp}"
    return _record([{"role": "user", "content": user}, {"role": "assistant", "content": obj["output"]}], src, {})


def parse_bitext(obj: Any, src: SourceConfig) -> ChatRecord:
    for k in ("instruction", "response"):
        if not isinstance(obj.get(k), str):
            raise FieldError(k, "missing or not a string")
    meta = {k: obj[k] for k in ("intent", "category", "flags") if obj.get(k) is not None}
    return _record([{"role": "user", "content": obj["instruction"]}, {"role": "assistant", "content": obj["response"]}], src, meta)


def parse_multiwoz(obj: Any, src: SourceConfig) -> ChatRecord:
    turns = obj.get("turns")
    if not isinstance(turns, list):
        raise FieldError("turns", "missing or not a list")
    msgs = []
    for i, t in enumerate(turns):
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


def _iter_json_array(path: Path, stats: ReadStats, qw: QuarantineWriter, parse: Callable[[Any], Any]) -> Iterator[Any]:
    """A (possibly truncated) top-level JSON array: complete objects are rows; a truncated tail is quarantined."""
    text = path.read_text(encoding="utf-8")
    objs, stop = assets.salvage_json_array(text)
    yield from parse_objects(enumerate(objs, start=1), path, stats, qw, parse)
    tail = text[stop:].strip().rstrip("]").strip()
    if tail:
        stats.rows_in += 1
        quarantine_row(stats, qw, path, len(objs) + 1, "<json>", "truncated JSON object at end of file", tail)


def _iter_csv(path: Path, stats: ReadStats, qw: QuarantineWriter, parse: Callable[[Any], Any]) -> Iterator[Any]:
    with open(path, newline="", encoding="utf-8", errors="strict") as f:
        yield from parse_objects(enumerate(csv.DictReader(f), start=2), path, stats, qw, parse)  # row 1 is the header


def iter_source(src: SourceConfig, qw: QuarantineWriter, all_stats: list[ReadStats]) -> Iterator[ChatRecord]:
    """Records of one source one at a time (bounded by `limit`); per-file statistics are appended to
    `all_stats` as each file finishes."""
    parser = PARSERS.get(src.format)
    if parser is None:
        raise ValueError(f"source {src.name}: unknown format {src.format!r} (known: {sorted(PARSERS)})")

    def parse(obj: Any) -> ChatRecord:
        return parser(obj, src)

    done = 0
    for path in resolve_paths(src.path):
        stats = ReadStats(str(path))
        if path.suffix == ".json":
            it = _iter_json_array(path, stats, qw, parse)
        elif path.suffix == ".csv":
            it = _iter_csv(path, stats, qw, parse)
        else:
            it = iter_records(path, stats, qw, parse)
        for rec in it:
            yield from (to_pairs(rec) if src.pairs else [rec])
            if src.limit is not None and done + stats.rows_in >= src.limit:
                break
        it.close()
        stats.check()
        all_stats.append(stats)
        done += stats.rows_in
        if src.limit is not None and done >= src.limit:
            break


def read_source(src: SourceConfig, qw: QuarantineWriter) -> tuple[list[ChatRecord], list[ReadStats]]:
    """All records of one source (bounded by `limit`), with per-file read statistics."""
    stats: list[ReadStats] = []
    return list(iter_source(src, qw, stats)), stats
