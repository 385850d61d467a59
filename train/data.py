"""From a dataset version to packed, masked training rows, with the checks that must come first."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from sftloop.dataset_version import DatasetNotFound, DatasetVersion, Manifest
from sftloop.schema import ChatRecord, frame_to_records
from sftloop.train.config import TrainConfig
from sftloop.train.masking import MaskingError, check_template, encode


class DataError(ValueError):
    pass


def resolve_version(spec: str, root: Path) -> DatasetVersion:
    try:
        return DatasetVersion.resolve(spec, root)
    except DatasetNotFound as e:
        raise DataError(str(e)) from None


def check_manifest(manifest: Manifest, cfg: TrainConfig, tok) -> None:
    """Refuse a dataset curated for another tokenizer/template or a larger token limit."""
    info = manifest.tokenizer
    want = hashlib.sha256((tok.chat_template or "").encode()).hexdigest()
    if info.chat_template_sha256 and info.chat_template_sha256 != want:
        raise DataError(
            f"dataset {manifest.name}/{manifest.version} was curated with tokenizer {info.tokenizer!r} "
            f"whose chat template differs from {cfg.base_model!r}'s; token counts and filters do not apply. Re-curate "
            "with `tokenizer` set to the training model.")
    if info.max_tokens and info.max_tokens > cfg.max_len:
        raise DataError(
            f"dataset token limit {info.max_tokens} > training max_len {cfg.max_len}: conversations would be cut. "
            "Raise max_len or curate with a lower token_limit.")


def read_split(version: DatasetVersion, split: str) -> list[ChatRecord]:
    if not version.has(split):
        return []
    p = version.file(split)
    df = version.read(split)
    try:
        return frame_to_records(df)
    except Exception as e:  # unknown roles, missing assistant turn...: refused up front
        raise DataError(f"{p}: invalid record: {e}") from None


@dataclass
class EncodeReport:
    samples: int = 0
    encoded: int = 0
    cut_at_turn: int = 0
    dropped_overflow: int = 0
    zero_trainable: int = 0
    unlocatable: int = 0  # the template hides/transforms a reply, or cannot render the conversation
    examples: list[str] = field(default_factory=list)

    @property
    def bad_share(self) -> float:
        return (self.cut_at_turn + self.dropped_overflow + self.zero_trainable + self.unlocatable) / max(self.samples, 1)


def stop_token_ids(tok) -> tuple[int, ...]:
    """Token ids that stop generation besides eos_token: the model's generation_config.eos_token_id (local dirs only)."""
    p = Path(str(getattr(tok, "name_or_path", "") or "")) / "generation_config.json"
    if not p.is_file():
        return ()
    try:
        eos = json.loads(p.read_text()).get("eos_token_id")
    except (OSError, ValueError) as e:
        raise DataError(f"{p}: unreadable generation config: {e}") from None
    return tuple(eos if isinstance(eos, list) else [] if eos is None else [eos])


def encode_records(recs: list[ChatRecord], tok, cfg: TrainConfig) -> tuple[list[tuple[list[int], list[int]]], EncodeReport]:
    rep = EncodeReport()
    out = []
    stop_ids = stop_token_ids(tok)
    try:  # once per tokenizer: a template whose end-of-turn marker never stops generation is refused up front
        check_template(tok, stop_ids)
    except MaskingError as err:
        raise DataError(f"tokenizer {getattr(tok, 'name_or_path', '')!r}: {err}") from None
    for r in recs:
        rep.samples += 1
        msgs = [{"role": m.role, "content": m.content} for m in r.messages]
        try:
            e = encode(tok, msgs, cfg.max_len, cfg.overflow, stop_ids=stop_ids)
        except MaskingError as err:
            if err.kind == "zero_trainable":
                rep.zero_trainable += 1
            elif err.kind == "overflow":
                rep.dropped_overflow += 1
            else:
                rep.unlocatable += 1
            if len(rep.examples) < 5:
                rep.examples.append(f"{r.id}: {err}")
            continue
        rep.cut_at_turn += e.n_turns_cut > 0
        rep.encoded += 1
        out.append((e.input_ids, e.labels))
    return out, rep


def apply_weights(recs: list[ChatRecord], seed: int) -> list[ChatRecord]:
    """Upsample by `weight`: floor(w) copies plus one more with probability frac(w) (seeded)."""
    rng = random.Random(seed)
    out = []
    for r in recs:
        n = int(r.weight) + (1 if rng.random() < r.weight - int(r.weight) else 0)
        out.extend([r] * max(n, 0))
    return out


def mix_replay(train: list[ChatRecord], replay: list[ChatRecord], share: float, seed: int) -> list[ChatRecord]:
    """Add replay rows so they make `share` of the mixture."""
    if not replay or share <= 0:
        return train
    n = round(len(train) * share / (1 - share))
    rng = random.Random(seed + 1)
    picked = [replay[rng.randrange(len(replay))] for _ in range(n)]
    return train + picked


def describe(version: DatasetVersion) -> dict:
    return version.describe()
