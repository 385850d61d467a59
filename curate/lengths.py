"""Length distribution of a dataset version, and how it compares with what the model will serve.

Tokens are counted with the target tokenizer (the config's `tokenizer`), as `train` and inference
see them: the **prompt** is everything before the last assistant reply, rendered by the tokenizer's
own chat template with the generation prompt (`<|im_start|>assistant\\n` for SmolLM2; a template's
default system prompt counts too); the **reply** is the last assistant reply's content (no special
tokens). Per split: count, mean, p5/p25/p50/p75/p95/p99, max. Rows are read in Parquet record
batches and tokenized in batches (fast tokenizer), so memory is a batch plus one int per row.

With `[length_reference]` (`path = "golden"`, or a JSONL/Parquet file, glob, `asset:` or
`dataset:<dir>[:split]` of chat records or production-log rows), the same numbers are computed on the reference, and the two-sample
Kolmogorov-Smirnov statistic (`scipy.stats.ks_2samp`) of train vs reference, for prompt and reply
lengths, goes into the manifest and funnel.md, with overlaid CDFs in `lengths.png`. A reference row
that cannot be read is skipped and counted with its file, row and field (first errors listed);
it never stops the run.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

PERCENTILES = (5, 25, 50, 75, 95, 99)
READERS = (".jsonl", ".ndjson", ".parquet")
Conversation = tuple[list[dict], str | None]  # (prompt messages, reply or None)


class LengthReference(BaseModel):
    """`[length_reference]`: what the model will be served with. `path = "golden"` (the golden set:
    its messages are the prompt, its reference answer the reply) or a JSONL/Parquet file, glob,
    `asset:<name>` or `dataset:<dataset dir>[:split]`:
    chat records (`messages`, the last assistant turn is the reply) or production-log rows
    (`messages` or `prompt`, plus `response`). A bare string is accepted as the path."""

    model_config = ConfigDict(extra="forbid")
    path: str

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"path": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _exists(self) -> "LengthReference":
        if self.path != "golden":
            files = reference_files(self.path)
            if not files:
                raise ValueError(f"no {'/'.join(READERS)} file matches {self.path!r} (or use \"golden\")")
        return self


def reference_files(spec: str) -> list[Path]:
    """The JSONL/Parquet files of a source-style spec: a file, a glob, `asset:<name>` or
    `dataset:<dataset dir>[:split]` (`curate.sources.resolve_paths`); [] when it names none."""
    from sftloop.curate.sources import InputError, resolve_paths

    try:
        paths = resolve_paths(str(Path(spec).expanduser()) if not spec.startswith(("asset:", "dataset:")) else spec)
    except InputError:
        return []
    return [p for p in paths if p.is_file() and p.suffix.lower() in READERS]


# ---------------------------------------------------------------- numbers


def summary(x: np.ndarray) -> dict:
    """count, mean, percentiles (numpy's linear interpolation), max; None for an empty sample."""
    if len(x) == 0:
        return {"count": 0, "mean": None, "max": None} | {f"p{q}": None for q in PERCENTILES}
    pct = np.percentile(x, PERCENTILES)
    return ({"count": int(len(x)), "mean": round(float(np.mean(x)), 2), "max": int(np.max(x))}
            | {f"p{q}": round(float(v), 2) for q, v in zip(PERCENTILES, pct)})


def ks(a: np.ndarray, b: np.ndarray) -> dict | None:
    """Two-sample Kolmogorov-Smirnov: the largest gap between the two empirical CDFs, and its p-value."""
    if len(a) == 0 or len(b) == 0:
        return None
    from scipy.stats import ks_2samp

    r = ks_2samp(a, b)
    return {"statistic": round(float(r.statistic), 6), "pvalue": float(f"{r.pvalue:.6g}"), "n": int(len(a)),
            "n_reference": int(len(b))}


# ---------------------------------------------------------------- conversations -> token counts


def split_last_reply(messages: list[dict]) -> Conversation:
    """(messages before the last assistant reply, that reply); (messages, None) without one."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        return list(messages), None
    return list(messages[:last]), messages[last]["content"]


def token_lengths(convs: Iterable[Conversation], tok, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, int]:
    """(prompt lengths, reply lengths, conversations the template refused). A conversation whose
    prompt the template cannot render is counted, not fatal; a missing reply adds no reply length."""
    prompts: list[int] = []
    replies: list[int] = []
    refused = 0
    batch: list[Conversation] = []

    def render(msgs: list[dict]) -> str:
        return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    def flush() -> None:
        nonlocal refused
        try:
            texts = tok.apply_chat_template([p for p, _ in batch], tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - one bad conversation: render one by one, count the refused
            texts = []
            for p, _ in batch:
                try:
                    texts.append(render(p))
                except Exception:  # noqa: BLE001
                    texts.append(None)
        ok = [t for t in texts if t is not None]
        refused += len(texts) - len(ok)
        if ok:
            prompts.extend(len(x) for x in tok(ok, add_special_tokens=False)["input_ids"])
        reps = [r for (_, r), t in zip(batch, texts) if r is not None and t is not None]
        if reps:
            replies.extend(len(x) for x in tok(reps, add_special_tokens=False)["input_ids"])
        batch.clear()

    for c in convs:
        batch.append(c)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return np.asarray(prompts, dtype=np.int64), np.asarray(replies, dtype=np.int64), refused


def dataset_conversations(path: Path, batch_size: int = 4096) -> Iterator[Conversation]:
    """The (prompt, last reply) of every row of a dataset part, read in Parquet record batches."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    for b in pf.iter_batches(batch_size=batch_size, columns=["messages"]):
        for msgs in b.column("messages").to_pylist():
            yield split_last_reply(msgs or [])


def _reference_row(obj: Any) -> Conversation:
    """A production-log row (`response` + `messages`/`prompt`) or a chat record (`messages`)."""
    from sftloop.curate.mine.logs import LogRow
    from sftloop.schema import Message

    if isinstance(obj, dict) and "response" in obj:
        row = LogRow.model_validate(obj)
        return row.conversation(), row.response
    if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list):
        err = ValueError("expected `messages` (a chat record) or `response` (a production-log row)")
        err.field = "messages"  # type: ignore[attr-defined]
        raise err
    msgs = [Message.model_validate(m) for m in obj["messages"]]
    return split_last_reply([{"role": m.role, "content": m.content} for m in msgs])


def reference_conversations(ref: LengthReference, root: Path, stats: list) -> Iterator[Conversation]:
    """Conversations of the reference; `stats` receives one `ReadStats` per file read."""
    from sftloop.schema import QuarantineWriter, ReadStats, iter_records

    if ref.path == "golden":
        from sftloop.evaluate.golden import load_items

        for item in load_items(root):
            yield [dict(m) for m in item.messages], item.reference
        return
    qw = QuarantineWriter(None)  # skipped rows are counted and named in the report, not copied
    for p in reference_files(ref.path):
        st = ReadStats(str(p))
        stats.append(st)
        yield from iter_records(p, st, qw, parse=_reference_row)


# ---------------------------------------------------------------- the report


@functools.lru_cache(maxsize=4)
def load_tokenizer(name: str):
    """The target tokenizer, loaded once per process (every version written loads it)."""
    from transformers import AutoTokenizer

    from sftloop import assets

    return AutoTokenizer.from_pretrained(assets.resolve_model(name))


def length_report(tokenizer: str, parts: dict[str, Path], reference: LengthReference | None,
                  root: Path) -> tuple[dict, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(manifest section, the lengths per part and reference for the picture). Never raises for bad
    data: a tokenizer that does not load or a reference that cannot be read is recorded as `error`."""
    report: dict[str, Any] = {"tokenizer": tokenizer, "prompt": "chat template + generation prompt, before "
                              "the last assistant reply", "reply": "the last assistant reply's content"}
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        tok = load_tokenizer(tokenizer)
    except Exception as e:  # noqa: BLE001 - recorded; the version is still written
        report["error"] = f"tokenizer {tokenizer!r}: {e}"
        return report, arrays
    report["splits"] = {}
    for name, path in parts.items():
        p, r, refused = token_lengths(dataset_conversations(path), tok)
        arrays[name] = (p, r)
        report["splits"][name] = {"prompt": summary(p), "reply": summary(r)} | (
            {"template_refused": refused} if refused else {})
    if reference is not None:
        stats: list = []
        entry: dict[str, Any] = {"path": reference.path}
        try:
            p, r, refused = token_lengths(reference_conversations(reference, root, stats), tok)
        except Exception as e:  # noqa: BLE001 - e.g. the golden set or an asset is missing
            entry["error"] = f"{type(e).__name__}: {e}"
        else:
            arrays["reference"] = (p, r)
            entry |= {"prompt": summary(p), "reply": summary(r),
                      "rows_skipped": sum(s.rows_quarantined for s in stats),
                      "first_errors": [e for s in stats for e in s.errors][:5]} | (
                {"template_refused": refused} if refused else {})
            if "train" in arrays:
                entry["ks_train_vs_reference"] = {"prompt": ks(arrays["train"][0], p), "reply": ks(arrays["train"][1], r)}
        report["reference"] = entry
    return report, arrays


def lengths_markdown(report: dict) -> str:
    cols = ["count", "mean"] + [f"p{q}" for q in PERCENTILES] + ["max"]
    lines = ["", f"## Lengths (tokens, {report['tokenizer']})", ""]
    if "error" in report:
        return "\n".join(lines + [f"not computed: {report['error']}"]) + "\n"
    lines += ["| data | part | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    rows = list(report["splits"].items())
    ref = report.get("reference")
    if ref and "prompt" in ref:
        rows.append((f"reference ({ref['path']})", ref))
    for name, s in rows:
        for part in ("prompt", "reply"):
            vals = ["" if s[part][c] is None else str(s[part][c]) for c in cols]
            lines.append(f"| {name} | {part} | " + " | ".join(vals) + " |")
    if ref:
        if "error" in ref:
            lines += ["", f"reference {ref['path']}: {ref['error']}"]
        else:
            k = ref.get("ks_train_vs_reference") or {}
            for part in ("prompt", "reply"):
                if k.get(part):
                    lines.append(f"\nKS train vs reference, {part} tokens: D = {k[part]['statistic']:.4f} "
                                 f"(p = {k[part]['pvalue']:.3g}, n = {k[part]['n']} vs {k[part]['n_reference']})")
            if ref["rows_skipped"]:
                first = "; ".join(ref["first_errors"][:2])
                lines.append(f"\nreference rows skipped: {ref['rows_skipped']} (first: {first})")
    return "\n".join(lines) + "\n"


def lengths_png(arrays: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    """Empirical CDFs of prompt and reply tokens, one line per split and the reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, k, part in ((axes[0], 0, "prompt"), (axes[1], 1, "reply")):
        for name, arr in arrays.items():
            x = np.sort(arr[k])
            if len(x):
                ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=f"{name} (n={len(x)})",
                        linestyle="--" if name == "reference" else "-")
        ax.set_xscale("symlog")
        ax.set_xlabel(f"{part} tokens")
        ax.set_ylabel("share of rows ≤ x")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
