"""Write an immutable dataset version from a pipeline run: data/datasets/<name>/<version>/.

Files: train/val(/test).parquet, excluded.parquet (stage, reason, rep_id), quarantine.jsonl,
manifest.json, funnel.md, funnel.png; `<name>/LATEST` names the newest version. The version is a
content hash of the config and the written data, and no file holds a timestamp, so the same
inputs and config give the same version id and byte-identical files. The lock, the atomic publish
and the manifest's type are the dataset-version contract in `sftloop.dataset_version`; this module
keeps what is pipeline-specific: the manifest's pipeline fields and the funnel.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import polars as pl

from sftloop import assets
from sftloop.curate.checklist import checklist_markdown, data_checklist
from sftloop.curate.config import PipelineConfig, config_dict
from sftloop.curate.pipeline import RunResult
from sftloop.curate.stages.system_prompt import INPUT_SYSTEM_PROMPTS
from sftloop.dataset_version import MANIFEST, PARTS, Manifest, publish, staging


def _sha(p: Path) -> str:
    return assets.sha256_file(p)


def source_hashes(cfg: PipelineConfig) -> dict[str, str]:
    from sftloop.curate.sources import resolve_paths

    out = {}
    for s in cfg.sources:
        if s.path.startswith("asset:"):
            name = s.path.removeprefix("asset:")
            stamp = assets.verify(name)
            out[s.path] = hashlib.sha256(json.dumps(stamp["files"], sort_keys=True).encode()).hexdigest()
        else:
            for p in resolve_paths(s.path):
                if p.is_dir():
                    continue  # skipped by the reader, noted in the source statistics
                try:
                    out[str(p)] = _sha(p)
                except OSError as e:  # quarantined by the reader as a whole file
                    out[str(p)] = f"unreadable: {e.strerror or e}"
    return out


def tokenizer_settings(cfg: PipelineConfig) -> dict:
    max_tokens = next((s.max_tokens for s in cfg.stages if s.type == "token_limit"), None)  # type: ignore[attr-defined]
    info = {"tokenizer": cfg.tokenizer, "max_tokens": max_tokens}
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(assets.resolve_model(cfg.tokenizer))
        info["chat_template_sha256"] = hashlib.sha256((tok.chat_template or "").encode()).hexdigest()
    except Exception as e:  # noqa: BLE001 - recorded, train will refuse a mismatch
        info["error"] = str(e)
    return info


def funnel_markdown(name: str, version: str, funnel: list[dict], counts: dict[str, int],
                    examples: dict[tuple[str, str], list[tuple[str, str]]] | None = None,
                    excluded: str | None = None) -> str:
    """The funnel table, then (with `examples` from `reason_examples`) every reason of every stage with its
    count and example ids, and how to read the rest from `excluded` (the version's excluded.parquet)."""
    lines = [f"# Funnel: {name} {version}", "", "| stage | in | out | dropped | top reasons |", "|---|---:|---:|---:|---|"]
    for st in funnel:
        reasons = ", ".join(f"{k} ({v})" for k, v in list(st["reasons"].items())[:4])
        lines.append(f"| {st['stage']} | {st['rows_in']} | {st['rows_out']} | {st['dropped']} | {reasons} |")
    lines += ["", "| output | rows |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in counts.items()]
    if examples is not None:
        lines += ["", "## Drop reasons", "",
                  "Every reason, with two dropped rows each: id and an excerpt (redacted, at most 80 characters): the "
                  "matched phrase where the stage records one, the end of the last reply for `truncated`, the "
                  "shortest reply for `min_words:assistant`, else the first user turn."]
        if excluded:
            lines += [f"All dropped rows are in `{excluded}` (full row, `stage`, `reason`, `rep_id`, details in "
                      "`meta`); quarantined input rows are in `quarantine.jsonl`. To read one reason:", "",
                      "```bash", f"python -c \"import polars as pl; print(pl.read_parquet('{excluded}')"
                      ".filter(pl.col('reason') == 'refusal').select('id', 'stage', 'reason', 'meta'))\"", "```"]
        lines += ["", "| stage | reason | rows | examples |", "|---|---|---:|---|"]
        for st in funnel:
            for reason, n in st["reasons"].items():
                ex = "<br>".join(f"`{i}` {_cell(t)}" for i, t in examples.get((st["stage"], reason), []))
                lines.append(f"| {st['stage']} | {reason} | {n} | {ex} |")
    return "\n".join(lines) + "\n"


EXCERPT_CHARS = 80


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def _excerpt(messages: list[dict], meta: str | None, reason: str = "") -> str:
    """What to show of a dropped row: the phrase a stage recorded (`refusal`), the end of the last reply for
    `truncated:*`, the shortest reply for `min_words:assistant`, else the first user turn."""
    from sftloop.curate.mine.redact import redact

    m = json.loads(meta) if meta else {}
    replies = [x["content"] for x in messages if x["role"] == "assistant"]
    tail = False
    if isinstance(m.get("refusal"), dict):
        text = f"turn {m['refusal']['turn']}: \"{m['refusal']['phrase']}\""
    elif reason.startswith("truncated:") and replies:
        text, tail = replies[-1], True
    elif reason == "min_words:assistant" and replies:
        text = min(replies, key=lambda r: len(r.split()))
    else:
        text = next((x["content"] for x in messages if x["role"] == "user"), messages[0]["content"] if messages else "")
    text = " ".join(redact(text)[0].split())
    if len(text) <= EXCERPT_CHARS:
        return text
    return "…" + text[-(EXCERPT_CHARS - 1):] if tail else text[:EXCERPT_CHARS - 1] + "…"


def reason_examples(excluded: Path, n: int = 2) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(stage, reason) -> the first `n` dropped rows as (id, excerpt of <= 80 characters, redacted)."""
    first = (pl.scan_parquet(excluded).with_row_index("_i").filter(pl.int_range(pl.len()).over("stage", "reason") < n)
             .select("_i", "stage", "reason", "id", "messages", "meta").collect().sort("_i"))
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for r in first.iter_rows(named=True):
        out.setdefault((r["stage"], r["reason"]), []).append((r["id"], _excerpt(r["messages"], r["meta"], r["reason"])))
    return out


def funnel_png(funnel: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [st["stage"] for st in funnel]
    kept = [st["rows_out"] for st in funnel]
    dropped = [st["dropped"] for st in funnel]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.5))
    y = list(range(len(names)))[::-1]
    ax.barh(y, kept, color="#4c78a8", label="kept")
    ax.barh(y, dropped, left=kept, color="#e45756", label="dropped / quarantined")
    ax.set_yticks(y, names)
    for yi, k, d in zip(y, kept, dropped):
        ax.text(k + d, yi, f" {k} (-{d})", va="center", fontsize=8)
    ax.set_xlabel("rows")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def _rows(p: Path) -> int:
    return pl.scan_parquet(p).select(pl.len()).collect().item()


def write_version(cfg: PipelineConfig, res: RunResult, parts: dict[str, Path], root: Path) -> Path:
    """`parts`: train/val/test/excluded Parquet files written by `pipeline.finalise` (moved here)."""
    base = root / cfg.output_dir / cfg.name
    with staging(base) as tmp:
        return _write_version(cfg, res, parts, base, tmp)


def _write_version(cfg: PipelineConfig, res: RunResult, parts: dict[str, Path], base: Path, tmp: Path) -> Path:
    files = {}
    for name, src in parts.items():
        if name == "test" and _rows(src) == 0 and cfg.split.test_fraction == 0:
            continue
        p = tmp / PARTS[name]
        shutil.move(src, p)
        files[name] = _sha(p)
    if res.borderline is not None:
        p = tmp / "borderline_pairs.parquet"
        res.borderline.write_parquet(p, statistics=False)
        files["borderline_pairs"] = _sha(p)
    q = tmp / "quarantine.jsonl"
    if res.quarantine_path.exists():
        shutil.copyfile(res.quarantine_path, q)
    else:
        q.write_text("")
    files["quarantine"] = _sha(q)
    conf = config_dict(cfg)
    version = hashlib.sha256(json.dumps({"config": conf, "files": files}, sort_keys=True).encode()).hexdigest()[:12]
    latest = base / "LATEST"
    parent = cfg.parent or (latest.read_text().strip() if latest.exists() else None)
    if parent == version:
        parent = Manifest.read(base / version / MANIFEST).parent if (base / version).exists() else None
    counts = {k: _rows(tmp / f"{k}.parquet") for k in parts if k in files} | {
        "quarantined": sum(s["rows_quarantined"] for s in res.source_stats)}
    funnel = [dict(st.__dict__) for st in res.funnel]
    for st in funnel:
        st["seconds"] = None  # timings go to the console, not into versioned files
    manifest = {
        "name": cfg.name, "version": version, "parent": parent, "config": conf,
        "sources": res.source_stats, "source_hashes": source_hashes(cfg),
        "tokenizer": tokenizer_settings(cfg), "counts": counts, "rows_in": res.rows_in,
        "funnel": funnel, "stage_reports": res.reports, "files_sha256": files,
        "borderline_pairs": 0 if res.borderline is None else res.borderline.height,
        "excluded_reasons": dict(pl.scan_parquet(tmp / "excluded.parquet").group_by("reason").len().sort("reason")
                                 .collect().iter_rows()),
    }
    inputs = manifest["stage_reports"].pop(INPUT_SYSTEM_PROMPTS, None)  # counted by the pipeline as rows are read
    manifest |= data_checklist(tmp, cfg.tokenizer, cfg.length_reference, f"{cfg.name} {version}",
                               {"input": inputs} if inputs else {})
    Manifest.model_validate(manifest).write(tmp / MANIFEST)
    excluded = (Path(cfg.output_dir) / cfg.name / version / "excluded.parquet").as_posix()
    (tmp / "funnel.md").write_text(funnel_markdown(cfg.name, version, funnel, counts, reason_examples(tmp / "excluded.parquet"),
                                                   excluded) + checklist_markdown(manifest))
    funnel_png(funnel, tmp / "funnel.png", f"{cfg.name} {version}")
    return publish(base, tmp, version)
