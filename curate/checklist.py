"""The handbook's data-quality checklist (docs/curate.md) for a version being written: distinct system
prompts per split and token lengths (vs the config's reference) with `lengths.png`; manifest fields and
the markdown that goes into funnel.md. Used for pipeline versions (`write`) and derived ones
(review pull, mined corrections: `for_derived`, the `checklist` of `DatasetVersion` writes)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sftloop.curate.lengths import LengthReference, length_report, lengths_markdown, lengths_png
from sftloop.curate.stages.system_prompt import distribution_markdown, prompt_distribution
from sftloop.dataset_version import PARTS, SPLITS, Manifest
from sftloop.settings import repo_root


def data_checklist(tmp: Path, tokenizer: str | None, reference: LengthReference | None, title: str,
                   system_prompts: dict | None = None) -> dict:
    """Manifest fields for the splits written in `tmp` (`system_prompts`, `lengths`)."""
    splits = {k: tmp / PARTS[k] for k in SPLITS if (tmp / PARTS[k]).exists()}
    out: dict = {"system_prompts": (system_prompts or {}) | {
        k: prompt_distribution(pl.scan_parquet(p)) for k, p in splits.items()}}
    if tokenizer:
        out["lengths"], arrays = length_report(tokenizer, splits, reference, repo_root())
        if arrays:
            lengths_png(arrays, tmp / "lengths.png", f"{title}: tokens ({tokenizer})")
    return out


def checklist_markdown(manifest: dict) -> str:
    md = distribution_markdown(manifest.get("system_prompts", {}))
    return md + (lengths_markdown(manifest["lengths"]) if "lengths" in manifest else "")


def for_derived(tmp: Path, m: Manifest) -> tuple[dict, str]:
    """The checklist of a derived version, with the parent's tokenizer and length reference."""
    fields = data_checklist(tmp, m.tokenizer.tokenizer, _length_reference(m.config.get("length_reference")),
                            f"{m.name} {m.version}")
    return fields, checklist_markdown(fields)


def _length_reference(raw) -> LengthReference | None:
    """The parent's `length_reference`, when it still resolves (else the lengths come without one)."""
    try:
        return LengthReference.model_validate(raw) if raw else None
    except ValueError:
        return None
