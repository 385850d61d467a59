"""Cleaning: unicode, invisible characters, UI boilerplate, html residue, whitespace, role order.

Content edits are vectorised Polars string expressions over the exploded messages. Role
repair is per row: consecutive same-role turns are merged, leading assistant turns (ShareGPT
chunks that start mid-conversation) and trailing user turns (nothing to learn from) are cut;
a conversation that still does not alternate, or has a system turn after the start, is dropped
with a reason. The record id is recomputed from the cleaned content; the old one goes to meta. An
id that is not the content hash of the row's messages was given by the source (`records`) and is kept.
"""

from __future__ import annotations

import json
from typing import ClassVar, Literal

import polars as pl

from sftloop.curate.stages.base import Context, StageConfig, StageResult
from sftloop.schema import content_id

ZERO_WIDTH = r"[\u200b\u200c\u200d\u200e\u200f\u2060\ufeff\u00ad]"
CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
# ChatGPT-export UI residue (ShareGPT): appended buttons and code-block headers.
BOILERPLATE = [
    r"(?m)\s*Share Prompt\s*$",
    r"(?m)^\s*Copy code\s*$\n?",
    r"(?m)(\w)Copy code\s*$",
    r"(?m)^\s*Regenerate response\s*$",
    r"(?m)^\s*\d+\s*/\s*\d+\s*$",  # "1 / 2" answer pager
]
# html residue from the exporter's wrappers only; html in code examples is left alone.
HTML_WRAPPERS = r"</?(?:div|span)\s+class=\"(?:markdown|prose|request-|result-|flex|w-full)[^\"]*\"[^>]*>|</div>\s*$"


def clean_content(expr: pl.Expr, nfkc: bool = True) -> pl.Expr:
    if nfkc:
        expr = expr.str.normalize("NFKC")
    expr = expr.str.replace_all(ZERO_WIDTH, "").str.replace_all(CONTROL, " ")
    for pat in BOILERPLATE:
        expr = expr.str.replace_all(pat, "$1" if "(\\w)" in pat else "")
    expr = expr.str.replace_all(HTML_WRAPPERS, "")
    expr = expr.str.replace_all(r"&nbsp;", " ").str.replace_all(r"\r\n?", "\n")
    expr = expr.str.replace_all(r"[ \t]+\n", "\n").str.replace_all(r"\n{3,}", "\n\n")
    return expr.str.strip_chars()


def fix_roles(messages: list[dict]) -> tuple[list[dict] | None, str | None, dict]:
    """Merge/cut turns until roles alternate; None + reason when the row cannot be repaired."""
    notes: dict = {}
    msgs = [dict(m) for m in messages if m["content"]]
    if len(msgs) < len(messages):
        notes["emptied_turns"] = len(messages) - len(msgs)
    system = []
    if msgs and msgs[0]["role"] == "system":
        system, msgs = [msgs[0]], msgs[1:]
    if any(m["role"] == "system" for m in msgs):
        return None, "roles:system_after_start", notes
    merged: list[dict] = []
    for m in msgs:
        if merged and merged[-1]["role"] == m["role"]:
            merged[-1]["content"] += "\n\n" + m["content"]
            notes["merged_turns"] = notes.get("merged_turns", 0) + 1
        else:
            merged.append(m)
    lead = 0
    while merged and merged[0]["role"] == "assistant":
        merged.pop(0)
        lead += 1
    if lead:
        notes["cut_leading_assistant"] = lead
    if merged and merged[-1]["role"] == "user":
        merged.pop()
        notes["cut_trailing_user"] = 1
    if not merged:
        return None, "roles:no_user_assistant_pair", notes
    return system + merged, None, notes


class Clean(StageConfig):
    type: Literal["clean"] = "clean"
    nfkc: bool = True
    expected_drop_share: ClassVar[float] = 0.01  # ShareGPT demo: 1.0 % (docs/curate.md)

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        if df.is_empty():
            return StageResult.split(df, None)
        ex = (
            df.select("_row", "messages")
            .explode("messages")
            .unnest("messages")
            .with_columns(content=clean_content(pl.col("content"), self.nfkc))
        )
        cleaned = ex.group_by("_row", maintain_order=True).agg(messages=pl.struct("role", "content"))
        base = df.drop("messages").join(cleaned, on="_row", how="left", maintain_order="left")
        new_msgs, reasons, ids, metas = [], [], [], []
        given = [old != content_id(orig) for old, orig in zip(df["id"].to_list(), df["messages"].to_list())]
        for msgs, meta, old_id, keep_id in zip(base["messages"].to_list(), base["meta"].to_list(), base["id"].to_list(),
                                               given):
            fixed, reason, notes = fix_roles(msgs)
            m = json.loads(meta) if meta else {}
            if notes:
                m.setdefault("clean", {}).update(notes)
            if fixed is not None:
                nid = old_id if keep_id else content_id(fixed)
                if nid != old_id:
                    m.setdefault("pre_clean_id", old_id)
                ids.append(nid)
            else:
                fixed, nid = msgs, old_id
                ids.append(old_id)
            new_msgs.append(fixed)
            reasons.append(reason)
            metas.append(json.dumps(m, ensure_ascii=False, sort_keys=True))
        out = base.with_columns(
            messages=pl.Series(new_msgs, dtype=df.schema["messages"]),
            id=pl.Series(ids, dtype=pl.String),
            meta=pl.Series(metas, dtype=pl.String),
            _why=pl.Series(reasons, dtype=pl.String),
        ).select(*df.columns, "_why")
        res = StageResult.split(out, pl.col("_why"))
        res.kept = res.kept.drop("_why", strict=False)
        return res
