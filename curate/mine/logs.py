"""Production log rows: schema (pydantic), streaming validation with quarantine, ISO-week selection.

One row per request: request_id, timestamp (ISO 8601), model, messages (the conversation up to the
request) or prompt, response, latency_ms, optional user_feedback (thumbs_up/thumbs_down/null),
automated_score, expects_json, category.
"""

from __future__ import annotations

import datetime as dt
import glob
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sftloop.schema import Message, QuarantineWriter, ReadStats, iter_records


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
    def iso_week(self) -> str:
        y, w, _ = self.timestamp.isocalendar()
        return f"{y}-W{w:02d}"


def read_logs(pattern: str, quarantine: Path | None = None) -> tuple[list[LogRow], list[ReadStats]]:
    paths = sorted(Path(p) for p in glob.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no log files match {pattern!r}")
    qw = QuarantineWriter(quarantine)
    rows, stats = [], []
    try:
        for p in paths:
            st = ReadStats(str(p))
            rows.extend(iter_records(p, st, qw, parse=LogRow.model_validate))
            st.check()
            stats.append(st)
    finally:
        qw.close()
    return rows, stats


def last_full_week(rows: list[LogRow]) -> str:
    """The last ISO week that ended before the newest timestamp's week."""
    newest = max(r.timestamp for r in rows)
    y, w, _ = (newest - dt.timedelta(days=7)).isocalendar()
    return f"{y}-W{w:02d}"


def select_week(rows: list[LogRow], week: str | None = None) -> tuple[str, list[LogRow]]:
    week = week or last_full_week(rows)
    return week, [r for r in rows if r.iso_week == week]
