"""Assistant-only labels built from the tokenizer's *own* chat template.

No hand-built template and no reliance on `{% generation %}` markers: the conversation is
rendered prefix by prefix. For assistant turn i,

- `render(messages[:i], add_generation_prompt=True)` ends where the reply starts (after the
  role header such as `<|im_start|>assistant\\n`), and
- `render(messages[:i+1])` ends after the reply and its end-of-turn marker (`<|im_end|>`,
  `<|eot_id|>`, `</s>`, `<end_of_turn>`); trailing whitespace after the marker is not trained.

The full rendering must start with every prefix (checked: a template that rewrites earlier
turns, e.g. one that drops past reasoning, raises instead of silently mislabeling). Tokens are
labelled when their character span's midpoint falls inside an assistant span (offsets from the
fast tokenizer), so the loss covers every assistant reply plus its end-of-turn token and nothing
from system/user turns or scaffolding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

IGNORE = -100


class MaskingError(ValueError):
    """A sample that would train on nothing, or a template we cannot label safely."""


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    n_turns_cut: int = 0

    @property
    def n_trainable(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def _render(tok, messages: list[dict], gen: bool) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


def assistant_spans(tok, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The full rendered text and the [start, end) character spans of every assistant reply + marker."""
    full = _render(tok, messages, gen=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tok, messages[:i], gen=True) if i else ""
        after = _render(tok, messages[: i + 1], gen=False)
        if not full.startswith(after) or not after.startswith(before):
            raise MaskingError(
                f"chat template is not prefix-stable at turn {i}: rendering earlier turns differs from the full "
                "conversation, so assistant spans cannot be located safely")
        start = len(before)
        content = m["content"].strip()
        found = after.find(content, start) if content else -1
        if found != -1:
            start = found
        end = len(after.rstrip())
        if end <= start:
            raise MaskingError(f"assistant turn {i} renders to an empty span")
        spans.append((start, end))
    return full, spans


def encode(tok, messages: list[dict], max_len: int | None = None,
           overflow: Literal["drop", "turns"] = "turns") -> Encoded:
    """input_ids and labels for one conversation.

    Over `max_len`: `overflow="turns"` cuts at a turn boundary (keeps the longest prefix that
    ends with an assistant reply and fits), `"drop"` raises MaskingError. A reply is never cut.
    """
    ids, labels = _encode_full(tok, messages)
    cut = 0
    if max_len is not None and len(ids) > max_len:
        if overflow == "drop":
            raise MaskingError(f"conversation has {len(ids)} tokens > max_len {max_len} (overflow = drop)")
        asst = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        for k in reversed(asst[:-1]):
            ids, labels = _encode_full(tok, messages[: k + 1])
            cut = len(messages) - (k + 1)
            if len(ids) <= max_len:
                break
        else:
            raise MaskingError(f"conversation does not fit max_len {max_len} even at its first turn boundary")
        if len(ids) > max_len:
            raise MaskingError(f"conversation does not fit max_len {max_len} even at its first turn boundary")
    enc = Encoded(ids, labels, cut)
    if enc.n_trainable == 0:
        raise MaskingError("sample has zero trainable tokens (no assistant reply survived templating)")
    return enc


def _encode_full(tok, messages: list[dict]) -> tuple[list[int], list[int]]:
    full, spans = assistant_spans(tok, messages)
    enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    labels = [IGNORE] * len(ids)
    si = 0
    for t, (a, b) in enumerate(enc["offset_mapping"]):
        mid = (a + b) / 2 if b > a else a
        while si < len(spans) and spans[si][1] <= mid:
            si += 1
        if si < len(spans) and spans[si][0] <= mid < spans[si][1]:
            labels[t] = ids[t]
    return ids, labels


def label_segments(tok, enc: Encoded) -> list[str]:
    """Decode each contiguous run of labelled tokens (for tests and the masking preview)."""
    segs, cur = [], []
    for tid, lab in zip(enc.input_ids, enc.labels):
        if lab != IGNORE:
            cur.append(tid)
        elif cur:
            segs.append(tok.decode(cur))
            cur = []
    if cur:
        segs.append(tok.decode(cur))
    return segs
