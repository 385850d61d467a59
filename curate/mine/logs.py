"""Production log rows: schema (pydantic), streaming validation with quarantine, ISO-week selection.

One row per request: request_id, timestamp (ISO 8601), model, messages (the conversation up to the
request) or prompt, response, latency_ms, optional user_feedback (thumbs_up/thumbs_down/null),
automated_score, expects_json, category.

Privacy choke point: `read_logs` redacts every string of every row as it is read (request_id, model,
messages, prompt, response, category), so nothing downstream (detectors, embeddings, reports, the
review queue) ever holds raw PII; malformed rows go to the quarantine with file/row/field/error kept
and their raw text and error redacted (`RedactingQuarantine`).
"""

from __future__ import annotations

import datetime as dt
import glob
from pathlib import Path
from typing import Literal

from collections import Counter
from dataclasses import replace

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from sftloop.curate.mine.redact import redact, redact_obj, redact_raw
from sftloop.schema import Message, Quarantined, QuarantineWriter, ReadStats, iter_records


class LogRow(BaseModel):
    model_config = ConfigDict(extra="ignore")
    request_id: str = Field(min_length=1)
    timestamp: dt.datetime
    model: str
    messages: list[Message] | None = None
    prompt: str | None = None
    response: str
    latency_ms: float = Field(ge=0)
    user_feedback: Literal["thumbs_up", "thumbs_down"] | None = None
    automated_score: float | None = None
    expects_json: bool = False
    category: str | None = None
    feedback_simulated: bool = False  # demo logs: feedback made from the judge score plus noise
    _pii: Counter = PrivateAttr(default_factory=Counter)  # redactions made in this row, per type

    @model_validator(mode="after")
    def _conversation(self) -> "LogRow":
        if not self.messages and not self.prompt:
            raise ValueError("one of messages or prompt is required")
        if self.timestamp.tzinfo is None:
            self.timestamp = self.timestamp.replace(tzinfo=dt.timezone.utc)
        return self

    def conversation(self) -> list[dict]:
        if self.messages:
            return [{"role": m.role, "content": m.content} for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]

    @property
    def pii(self) -> Counter:
        return self._pii

    def redacted(self) -> "LogRow":
        """This row with every string field redacted (and the redaction counts kept on it)."""
        data, counts = redact_obj(self.model_dump())
        row = LogRow.model_validate(data)
        row._pii = counts
        return row

    @property
    def iso_week(self) -> str:
        y, w, _ = self.timestamp.isocalendar()
        return f"{y}-W{w:02d}"


class RedactingQuarantine(QuarantineWriter):
    """Quarantine for log rows: file, row and field kept; the error and the raw row redacted (JSON rows
    decoded and redacted string by string, so they stay repairable); redactions counted in `pii`."""

    def __init__(self, path: Path | None):
        super().__init__(path)
        self.pii: Counter = Counter()

    def write(self, q: Quarantined) -> None:
        raw, c1 = redact_raw(q.raw)
        error, c2 = redact(q.error)
        field, c3 = redact(q.field)
        self.pii.update(c1 + c2 + c3)
        super().write(replace(q, raw=raw, error=error, field=field))


def _parse(obj: object) -> LogRow:
    return LogRow.model_validate(obj).redacted()


def read_logs(pattern: str, quarantine: Path | None = None,
              quarantine_pii: Counter | None = None) -> tuple[list[LogRow], list[ReadStats]]:
    """Validated, redacted rows of every file matching `pattern`; bad rows (redacted) to `quarantine`.
    `quarantine_pii`, when given, is updated with the redactions made in quarantined rows."""
    paths = sorted(Path(p) for p in glob.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no log files match {pattern!r}")
    qw = RedactingQuarantine(quarantine)
    rows, stats = [], []
    try:
        for p in paths:
            st = ReadStats(str(p))
            rows.extend(iter_records(p, st, qw, parse=_parse))
            st.check()
            st.errors = [redact(e)[0] for e in st.errors]
            stats.append(st)
    finally:
        qw.close()
    if quarantine_pii is not None:
        quarantine_pii.update(qw.pii)
    return rows, stats


def last_full_week(rows: list[LogRow]) -> str:
    """The last ISO week that ended before the newest timestamp's week."""
    newest = max(r.timestamp for r in rows)
    y, w, _ = (newest - dt.timedelta(days=7)).isocalendar()
    return f"{y}-W{w:02d}"


def select_week(rows: list[LogRow], week: str | None = None) -> tuple[str, list[LogRow]]:
    week = week or last_full_week(rows)
    return week, [r for r in rows if r.iso_week == week]
