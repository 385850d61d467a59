"""Assistant-only labels built from the tokenizer's *own* chat template.

No hand-built template and no reliance on `{% generation %}` markers or on the template being
prefix-stable (Mistral v0.3 moves the system prompt into the *last* user turn; Phi-3 appends
`<|endoftext|>` only after the last turn; DeepSeek-R1 drops past reasoning). Instead:

1. **Locate spans in the full rendering.** The conversation is rendered once as it is (`full`) and
   once with every assistant reply replaced by a unique sentinel (`skel`). The text between
   sentinels is the template's scaffolding (role headers, end-of-turn markers, user turns, BOS per
   turn...), so `full` must read `scaffold_0 reply_1 scaffold_1 reply_2 ... scaffold_n`. Each reply
   is found right where its scaffolding ends, as the template emits it (verbatim, stripped, trimmed,
   or with past reasoning dropped: any substring of the content). Where the scaffolding itself depends
   on the content (Qwen3 moves a final reply's `<think>` block into its header), the reply is what lies
   between the point where the rendering leaves the skeleton and the scaffolding after the reply, and it
   must hold the reply's answer. A template that does not render a reply at all, or transforms it beyond
   recognition, is refused with a MaskingError naming the turn.
2. **The end-of-turn marker is what the model must emit to stop.** After a reply the rendering holds
   the marker plus whatever scaffolding follows (the next turn's header, or Phi-3's trailing
   `<|endoftext|>`). The trained tail is the longest common prefix of what follows a reply when
   another turn comes and when it is the last turn, cut right after the first *stop token*
   (the tokenizer's `eos_token`, plus `stop_ids`, e.g. `generation_config.eos_token_id`). So
   `<|im_end|>`, `<|eot_id|>`, `</s>`, ` </s>` (Llama-2), `<end_of_turn>`, `<|end|>` are trained;
   the `\\n` after them, the next role header, BOS and Phi-3's trailing `<|endoftext|>` are not.
3. **EOS check, once per tokenizer** (`check_template`, cached on the tokenizer): a probe
   conversation gives the template's marker; if it contains no stop token (the template ends turns
   with `<|end|>` but `eos_token` is `<|endoftext|>` and nothing else stops generation), training would
   teach the model to emit a marker that never stops generation, so it is refused naming both.

Every character the template keeps from a reply is trained, whitespace included (blank lines, code
indentation, trailing spaces a template does not trim). Tokens are labelled when their character
span's midpoint falls inside a trained span (offsets from the fast tokenizer). The sentinel
approach needs two renderings per conversation, fewer than rendering every prefix (2n+1).
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass
from typing import Literal

IGNORE = -100


class MaskingError(ValueError):
    """A sample that would train on nothing, or a template we cannot label safely.

    `kind`: "overflow" (too long), "zero_trainable", "unlocatable" (a reply cannot be found in the
    rendering) or "template" (the template/tokenizer pair is unusable for every sample).
    """

    def __init__(self, msg: str, kind: str = "unlocatable"):
        super().__init__(msg)
        self.kind = kind


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    n_turns_cut: int = 0

    @property
    def n_trainable(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


@dataclass(frozen=True)
class TemplateInfo:
    """What `check_template` learnt about a tokenizer's chat template."""

    marker: str  # the end-of-turn text trained after every reply (ends with a stop token)
    stop_tokens: tuple[str, ...]  # texts of the tokens that stop generation


def _render(tok, messages: list[dict], gen: bool = False) -> str:
    try:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
    except MaskingError:
        raise
    except Exception as e:  # jinja raise_exception (alternation, unsupported role...) and friends
        raise MaskingError(f"chat template cannot render this conversation: {e}", "unlocatable") from None


def _lcp(*texts: str) -> str:
    if not texts:
        return ""
    n = min(len(t) for t in texts)
    i = 0
    while i < n and all(t[i] == texts[0][i] for t in texts):
        i += 1
    return texts[0][:i]


def _stop_tokens(tok, stop_ids: tuple[int, ...]) -> tuple[str, ...]:
    out = []
    if tok.eos_token:
        out.append(str(tok.eos_token))
    for i in stop_ids:
        s = tok.decode([int(i)])
        if s and s not in out:
            out.append(s)
    return tuple(out)


def _marker_name(tok, text: str) -> str:
    """The token a rendering starts with after a reply, for error messages (`<|end|>` out of `<|end|>\\n<|`)."""
    chunk = (text.strip().split() or [""])[0]
    specials = [t for t in getattr(tok, "all_special_tokens", []) + list(tok.get_added_vocab()) if chunk.startswith(t)]
    return max(specials, key=len) if specials else chunk


def _cut_at_stop(tail: str, stops: tuple[str, ...]) -> str | None:
    """`tail` up to and including the first stop token, or None when it holds none."""
    hits = [(tail.find(s), s) for s in stops if s and s in tail]
    if not hits:
        return None
    at, s = min(hits, key=lambda h: (h[0], -len(h[1])))
    return tail[: at + len(s)]


def _sentinels(messages: list[dict]) -> list[str]:
    """One sentinel per message, absent from the conversation; deterministic (a hash of it, re-hashed on collision).

    Upper case letters and digits, no spaces: survives strip/trim/upper and JSON escaping.
    """
    blob = "\x00".join(str(m.get("content", "")) for m in messages)
    nonce = hashlib.sha256(blob.encode()).hexdigest()[:8].upper()
    while f"SFTLOOPREPLY{nonce}" in blob:
        nonce = hashlib.sha256(nonce.encode()).hexdigest()[:8].upper()
    return [f"SFTLOOPREPLY{nonce}N{i}X" for i in range(len(messages))]


def _skeleton(tok, messages: list[dict]) -> tuple[list[int], list[str], str]:
    """Assistant turn indices, their sentinels, and the rendering with sentinels as replies."""
    sent = _sentinels(messages)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    skel_msgs = [{**m, "content": sent[i]} if m["role"] == "assistant" else m for i, m in enumerate(messages)]
    return turns, [sent[i] for i in turns], _render(tok, skel_msgs)


def _scaffolding(skel: str, turns: list[int], sents: list[str]) -> list[str]:
    """Split the sentinel rendering into the n+1 scaffolding pieces around the n replies."""
    pieces, pos = [], 0
    for i, s in zip(turns, sents):
        at = skel.find(s, pos)
        if at == -1:
            raise MaskingError(
                f"assistant turn {i} does not appear in the full rendering: the chat template hides or reorders it "
                "(not prefix-stable for this conversation), so its labels cannot be located")
        if skel.find(s, at + len(s)) != -1:
            raise MaskingError(f"assistant turn {i} is rendered twice by the chat template; its labels are ambiguous")
        pieces.append(skel[pos:at])
        pos = at + len(s)
    pieces.append(skel[pos:])
    return pieces


_CACHE: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()


def check_template(tok, stop_ids: tuple[int, ...] = ()) -> TemplateInfo:
    """The template's end-of-turn marker, refused when it would not teach the model to stop.

    Cached per tokenizer object and (template, eos_token, stop_ids): call it freely.
    """
    key = (tok.chat_template, tok.eos_token, tuple(stop_ids))
    try:
        per_tok = _CACHE.setdefault(tok, {})
    except TypeError:  # an object that cannot be weakly referenced: no cache
        per_tok = {}
    if key in per_tok:
        return per_tok[key]
    stops = _stop_tokens(tok, tuple(stop_ids))
    if not stops:
        raise MaskingError("tokenizer has no eos_token: generation could never stop; set tok.eos_token", "template")
    probe = [{"role": "user", "content": "Hello, can you help me?"}, {"role": "assistant", "content": ""},
             {"role": "user", "content": "Thanks. One more question?"}, {"role": "assistant", "content": ""}]
    errs: list[MaskingError] = []
    for attempt in (probe, [{"role": "system", "content": "You are helpful."}] + probe):  # some templates need a system turn
        try:
            turns, sents, skel = _skeleton(tok, attempt)
            pieces = _scaffolding(skel, turns, sents)
            _, sents1, skel1 = _skeleton(tok, attempt[:-2])
            last_first = skel1[skel1.find(sents1[0]) + len(sents1[0]):]
            break
        except MaskingError as e:
            errs.append(e)
    else:
        raise MaskingError(f"chat template fails on a plain user/assistant probe conversation: {errs[0]}", "template")
    followed, last = pieces[1], pieces[2]  # after a reply another turn comes / the conversation ends
    common = _lcp(followed, last, last_first)
    marker = _cut_at_stop(common, stops)
    if marker is None:
        shown = _marker_name(tok, common) or _marker_name(tok, last) or "(nothing)"
        raise MaskingError(
            f"the chat template ends an assistant turn with {shown!r}, which holds no stop token: eos_token is "
            f"{tok.eos_token!r} (stop tokens {list(stops)}). Training would teach the model to emit a marker that never "
            f"stops generation (after a reply followed by another turn the template renders {followed[:60]!r}, after the "
            f"last reply {last[:60]!r}). Set eos_token (and generation_config.eos_token_id) to the end-of-turn token.",
            "template")
    stop = next(s for s in stops if marker.endswith(s))
    ids = tok(stop, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise MaskingError(
            f"stop token {stop!r} is not a single token in this tokenizer (it encodes to {len(ids)} ids), so the model "
            "can never emit it; add it as a special token", "template")
    info = TemplateInfo(marker, stops)
    per_tok[key] = info
    return info


def _candidates(content: str) -> list[str]:
    """How a template may emit a reply: verbatim, stripped either side, or with past reasoning dropped."""
    out = [content, content.rstrip(), content.lstrip(), content.strip()]
    if "</think>" in content:
        after = content.split("</think>")[-1]
        out += [after, after.lstrip("\n"), after.strip()]
    seen, res = set(), []
    for c in out:
        if c not in seen:
            seen.add(c)
            res.append(c)
    return res


def _locate_reply(full: str, start: int, content: str, after: str, last: bool, i: int, marker: str) -> int:
    """End of the reply that starts at `start` and is followed by the scaffolding `after`.

    First the whole following scaffolding must match; then (when a later turn's scaffolding depends on its
    content, e.g. Qwen3's final <think> block) only the end-of-turn marker that starts it.
    """
    cands = _candidates(content)
    for cand in cands:
        end = start + len(cand)
        if full.startswith(cand, start) and full.startswith(after, end) and (not last or end + len(after) == len(full)):
            return end
    if marker and after.startswith(marker) and not last:
        for cand in cands:
            if full.startswith(cand, start) and full.startswith(marker, start + len(cand)):
                return start + len(cand)
    # any substring of the content the template kept (e.g. a custom transform that drops a prefix)
    j = len(full) - len(after) if last else full.find(after, start)
    while j != -1 and j >= start:
        if full[start:j] and full[start:j] in content and (not last or full.endswith(after)):
            return j
        j = -1 if last or not after else full.find(after, j + 1)
    raise MaskingError(
        f"assistant turn {i}: the chat template transforms the reply so it cannot be found in the rendering "
        "(not prefix-stable), so its labels cannot be located")


def _locate_diverging(full: str, pos: int, before: str, content: str, after: str, last: bool, i: int) -> tuple[int, int]:
    """The reply when the rendering leaves the template's structure inside the scaffolding before it.

    Everything from where the rendering diverges from the sentinel rendering up to the scaffolding that
    follows the reply is the reply as rendered (e.g. `reasoning\\n</think>\\n\\nanswer`); it must hold the reply's
    final answer, else the turn is refused.
    """
    start = pos + len(_lcp(before, full[pos:pos + len(before)]))
    if last:
        end = len(full) - len(after) if full.endswith(after) else -1
    else:
        end = full.find(after, start) if after else -1
    answer = _candidates(content)[-1].strip()
    if end < start or (answer and answer not in full[start:end]):
        raise MaskingError(
            f"the scaffolding before assistant turn {i} depends on the reply's content and the reply cannot be found "
            "after it (rendering differs from the template's structure; not prefix-stable), so its labels cannot be located")
    return start, end


def assistant_spans(tok, messages: list[dict], stop_ids: tuple[int, ...] = ()) -> tuple[str, list[tuple[int, int]]]:
    """The full rendered text and the [start, end) character spans of every assistant reply + end-of-turn marker."""
    info = check_template(tok, stop_ids)
    full = _render(tok, messages)
    turns, sents, skel = _skeleton(tok, messages)
    pieces = _scaffolding(skel, turns, sents)
    spans, pos = [], 0
    for k, i in enumerate(turns):
        before, after, last = pieces[k], pieces[k + 1], k == len(turns) - 1
        content = str(messages[i]["content"])
        if full.startswith(before, pos):
            start = pos + len(before)
            end = _locate_reply(full, start, content, after, last, i, info.marker)
        else:  # scaffolding that depends on the content (Qwen3 moves a final reply's <think> block into its header)
            start, end = _locate_diverging(full, pos, before, content, after, last, i)
        tail = info.marker if after.startswith(info.marker) else _tail(tok, messages, i, after, info)
        if not full.startswith(tail, end):
            raise MaskingError(f"assistant turn {i} is not followed by its end-of-turn marker {tail!r} in the rendering")
        spans.append((start, end + len(tail)))
        pos = end
    return full, spans


def _tail(tok, messages: list[dict], i: int, after: str, info: TemplateInfo) -> str:
    """The end-of-turn text for a turn whose context renders a different marker than the probe's."""
    if i + 1 < len(messages):
        other_msgs = messages[: i + 1]  # this turn as the last one
    else:
        other_msgs = messages + [{"role": "user", "content": "Next question?"}]  # this turn followed by another
    turns, sents, skel = _skeleton(tok, other_msgs)
    k = turns.index(i)
    other = skel[skel.find(sents[k]) + len(sents[k]):]
    other = other[: other.find(sents[k + 1])] if k + 1 < len(sents) else other
    tail = _cut_at_stop(_lcp(after, other), info.stop_tokens)
    if tail is None:
        raise MaskingError(
            f"assistant turn {i} is followed by {after[:40]!r}, which holds no stop token ({list(info.stop_tokens)}); "
            "its end-of-turn marker cannot be trained")
    return tail


def encode(tok, messages: list[dict], max_len: int | None = None,
           overflow: Literal["drop", "turns"] = "turns", stop_ids: tuple[int, ...] = ()) -> Encoded:
    """input_ids and labels for one conversation.

    Over `max_len`: `overflow="turns"` cuts at a turn boundary (keeps the longest prefix that
    ends with an assistant reply and fits), `"drop"` raises MaskingError. A reply is never cut.
    `stop_ids`: token ids that stop generation besides `tok.eos_token` (generation_config.eos_token_id).
    """
    ids, labels = _encode_full(tok, messages, stop_ids)
    cut = 0
    if max_len is not None and len(ids) > max_len:
        if overflow == "drop":
            raise MaskingError(f"conversation has {len(ids)} tokens > max_len {max_len} (overflow = drop)", "overflow")
        asst = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        for k in reversed(asst[:-1]):
            ids, labels = _encode_full(tok, messages[: k + 1], stop_ids)
            cut = len(messages) - (k + 1)
            if len(ids) <= max_len:
                break
        else:
            raise MaskingError(f"conversation does not fit max_len {max_len} even at its first turn boundary", "overflow")
        if len(ids) > max_len:
            raise MaskingError(f"conversation does not fit max_len {max_len} even at its first turn boundary", "overflow")
    enc = Encoded(ids, labels, cut)
    if enc.n_trainable == 0:
        raise MaskingError("sample has zero trainable tokens (no assistant reply survived templating)", "zero_trainable")
    return enc


def _encode_full(tok, messages: list[dict], stop_ids: tuple[int, ...] = ()) -> tuple[list[int], list[int]]:
    full, spans = assistant_spans(tok, messages, stop_ids)
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
