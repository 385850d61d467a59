"""System prompt: train with exactly the one the model will be served with.

`prompt` (or `prompt_file`, read at config time) is the inference system prompt. `mode`:
- `require`: keep only rows whose system prompt equals it (whitespace-normalised comparison);
  drop `system_prompt:missing` (none) or `system_prompt:different`.
- `replace` (default): every row gets it, verbatim: an existing system message is replaced, a
  missing one added as the first message.
- `add`: add it where a row has none; rows with their own system prompt keep it.

In every mode a row with more than one system message is dropped `system_prompt:multiple`, and a
row whose only system message is not the first message `system_prompt:misplaced`: a server sends
one system prompt, first, so neither matches serving, and which one to keep is not a guess to make.
Rows whose messages change get a new id (the old one is kept as `meta.pre_system_prompt_id`).

`prompt_distribution` is what the writer reports for every version, configured or not: the
distinct system prompts of the rows read (counted by the pipeline before the first stage) and of
every split, with their counts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import ClassVar, Literal

import polars as pl
from pydantic import model_validator

from sftloop.curate.stages.base import Context, StageConfig, StageResult
from sftloop.schema import content_id


def normalise_ws(expr: pl.Expr) -> pl.Expr:
    return expr.str.replace_all(r"\s+", " ").str.strip_chars()


def _system_columns(df: pl.DataFrame | pl.LazyFrame):
    """`_n_sys` (number of system messages), `_first_sys` (is message 0 a system message), `_sys`
    (the contents of the system messages joined by blank lines, null when none)."""
    el = pl.element()
    roles = pl.col("messages").list.eval(el.struct.field("role"))
    sys_text = pl.col("messages").list.eval(el.filter(el.struct.field("role") == "system").struct.field("content"))
    return df.with_columns(_n_sys=roles.list.eval(el == "system").list.sum().fill_null(0).cast(pl.Int64),
                           _first_sys=(roles.list.first() == "system").fill_null(False),
                           _sys=sys_text.list.join("\n\n")).with_columns(
        _sys=pl.when(pl.col("_n_sys") > 0).then(pl.col("_sys")))


class SystemPrompt(StageConfig):
    """Require, replace or add the inference system prompt (see the module doc)."""

    type: Literal["system_prompt"] = "system_prompt"
    prompt: str | None = None
    prompt_file: str | None = None
    mode: Literal["require", "replace", "add"] = "replace"
    expected_drop_share: ClassVar[float] = 0.0  # replace/add drop only multiple/misplaced system messages

    @model_validator(mode="after")
    def _one_prompt(self) -> "SystemPrompt":
        if (self.prompt is None) == (self.prompt_file is None):
            raise ValueError("give exactly one of `prompt` or `prompt_file`")
        if self.prompt_file is not None:
            p = Path(self.prompt_file).expanduser()
            try:
                self.prompt = p.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"prompt_file {p}: {e}") from None
            self.prompt_file = None  # the text itself is the config (and the version id), not its path
        if not (self.prompt or "").strip():
            raise ValueError("the system prompt is empty")
        return self

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        prompt = self.prompt or ""
        d = _system_columns(df)
        same = pl.col("_sys").pipe(normalise_ws) == " ".join(prompt.split())
        reason = (pl.when(pl.col("_n_sys") > 1).then(pl.lit("system_prompt:multiple"))
                  .when((pl.col("_n_sys") == 1) & ~pl.col("_first_sys")).then(pl.lit("system_prompt:misplaced")))
        if self.mode == "require":
            reason = (reason.when(pl.col("_n_sys") == 0).then(pl.lit("system_prompt:missing"))
                      .when(~same).then(pl.lit("system_prompt:different")))
        res = StageResult.split(d, reason)
        kept = res.kept
        msg = pl.struct(role=pl.lit("system"), content=pl.lit(prompt))
        rest = pl.col("messages").list.slice(pl.when(pl.col("_n_sys") == 1).then(1).otherwise(0))
        if self.mode == "replace":
            change = (pl.col("_n_sys") == 0) | (pl.col("_sys") != prompt)  # byte-exact: replace even whitespace
        elif self.mode == "add":
            change = pl.col("_n_sys") == 0
        else:
            change = pl.lit(False)
        kept = kept.with_columns(_change=change)
        actions = kept.select(added=(pl.col("_change") & (pl.col("_n_sys") == 0)).sum(),
                              replaced=(pl.col("_change") & (pl.col("_n_sys") == 1)).sum()).row(0, named=True)
        res.reported(ctx, self.name, counters={
            "rows_added": int(actions["added"]), "rows_replaced": int(actions["replaced"]),
            "rows_unchanged": kept.height - int(actions["added"]) - int(actions["replaced"])})
        kept = kept.with_columns(messages=pl.when(pl.col("_change"))
                                 .then(pl.concat_list(msg, rest))
                                 .otherwise(pl.col("messages")))
        res.kept = _new_ids(kept).drop("_n_sys", "_first_sys", "_sys", "_change")
        return res


def _new_ids(df: pl.DataFrame) -> pl.DataFrame:
    """Changed rows get the content id of their new messages; the old id goes to meta."""
    if not df["_change"].any():
        return df
    ids, metas = [], []
    for msgs, meta, old, ch in df.select("messages", "meta", "id", "_change").iter_rows():
        if not ch:
            ids.append(old)
            metas.append(meta)
            continue
        m = json.loads(meta) if meta else {}
        m.setdefault("pre_system_prompt_id", old)
        ids.append(content_id(msgs))
        metas.append(json.dumps(m, ensure_ascii=False, sort_keys=True))
    return df.with_columns(id=pl.Series(ids, dtype=pl.String), meta=pl.Series(metas, dtype=pl.String))


# ---------------------------------------------------------------- distribution (the writer's report)

INPUT_SYSTEM_PROMPTS = "input_system_prompts"  # the pipeline's count of the rows read (ctx.reports key)


def prompt_distribution(lf: pl.LazyFrame, top: int = 10, excerpt_chars: int = 80) -> dict:
    """Distinct system prompts of a split (whitespace-normalised), with counts: the `top` most common
    (count, sha256 of the normalised text, first characters), the rows with none, with several.
    Aggregated lazily (Polars streaming): memory is one entry per distinct prompt, not per row."""
    counts = (_system_columns(lf.select("messages"))
              .group_by(_norm=normalise_ws(pl.col("_sys")))
              .agg(n=pl.len(), several=(pl.col("_n_sys") > 1).sum())
              .collect(engine="streaming"))
    with_sys = counts.filter(pl.col("_norm").is_not_null()).sort(["n", "_norm"], descending=[True, False])
    rows = int(counts["n"].sum())
    return {
        "rows": rows,
        "rows_without": rows - int(with_sys["n"].sum()),
        "rows_with_several": int(counts["several"].sum()),
        "distinct": with_sys.height,
        "top": [{"count": int(n), "sha256": hashlib.sha256(t.encode()).hexdigest()[:12],
                 "excerpt": t[:excerpt_chars] + ("…" if len(t) > excerpt_chars else "")}
                for t, n in with_sys.head(top).select("_norm", "n").iter_rows()],
    }


def distribution_markdown(dists: dict[str, dict]) -> str:
    """funnel.md section: per split, rows without a system prompt and the most common ones."""
    lines = ["", "## System prompts", "", "| split | rows | without | distinct | several in one row |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {v['rows']} | {v['rows_without']} | {v['distinct']} | {v['rows_with_several']} |"
              for k, v in dists.items()]
    for k, v in dists.items():
        if v["top"]:
            lines += ["", f"{k}, most common:", "", "| count | sha256 | excerpt |", "|---:|---|---|"]
            lines += [f"| {t['count']} | `{t['sha256']}` | {t['excerpt'].replace('|', '/')} |" for t in v["top"]]
    return "\n".join(lines) + "\n"
