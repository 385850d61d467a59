"""Domain rules about an assistant reply, declared once: is it a refusal (or AI boilerplate), was it cut off.

They live in `sftloop/` (the contract layer) because three packages apply them: the training filters (`curate/stages/filters.py`: `refusal`, `truncated`) and the failure miner
(`curate/mine/detect.py`: `behaviour:refusal`, `behaviour:truncated`) both call these, so what the loop
mines as a failure is what it keeps out of training (tests/curate/test_rules_agree.py feeds both the
same strings), and the gate's false-refusal rule (`evaluate/checks.py`) counts the declining phrases
of the same list (`declines_match`: boilerplate and knowledge-cutoff notes are not a refusal to help). Matching is case-insensitive and apostrophe-blind: curly quotes, backticks and the
modifier letter read as `'`, so "I can’t" is "I can't".
"""

from __future__ import annotations

import re

import polars as pl

_APOSTROPHE_CHARS = "’‘`´ʼ′"
_APOSTROPHE = str.maketrans({c: "'" for c in _APOSTROPHE_CHARS})  # one character for one: match spans map back

# A refusal names what is declined: "I can't" + one of these verbs ("I can't wait", "I cannot stress
# enough", "I can't help but notice" are not refusals).
_DECLINED = (r"(?:help(?! but\b)(?: you)?(?: with)?|assist|provide|fulfil+|comply|do that|browse|access|generate|"
             r"create|write|share|answer|process|complete|engage|support|discuss|give you|offer)")
_CANNOT = (r"i (?:cannot|can ?not|can't|won't|will not|won't be able to)|"
           r"i(?:'m| am) (?:unable|not able|not allowed|not permitted|not equipped) to")

REFUSAL_PHRASES: dict[str, str] = {
    # name -> pattern; declared once, combined into one regex (first match wins, by position)
    "ai_boilerplate": r"as an ai(?: language)? model|as a language model|as an ai(?: assistant)?,|"
                      r"i(?:'m| am) (?:just |only )?an ai\b",
    "declines": rf"(?:{_CANNOT}) {_DECLINED}\b",
    "sorry_but": rf"i(?:'m| am) (?:sorry|afraid),? (?:but )?(?:{_CANNOT}|as an ai)|"
                 rf"(?:sorry|i apologi[sz]e),? but (?:{_CANNOT})",
    "no_opinions": r"i do(?: not|n't) have (?:personal )?(?:opinions|feelings|emotions|the ability|access to)",
    "knowledge_cutoff": r"my knowledge cut-?off",
}
REFUSAL = re.compile(r"\b(?:" + "|".join(f"(?P<{k}>{v})" for k, v in REFUSAL_PHRASES.items()) + ")", re.I)
# The same pattern without its one look-ahead, for Rust's regex (polars): a superset, so it can pick the
# candidates a column-wise stage then confirms with `refusal_match` (one rule, ~10x faster on ShareGPT).
_PREFILTER = "(?i)" + REFUSAL.pattern.replace(r"(?! but\b)", "")
_APOSTROPHES = "[" + "".join(_APOSTROPHE_CHARS) + "]"


def refusal_candidates(texts: pl.Series) -> pl.Series:
    """Boolean per text: could `refusal_match` find a phrase in it (False means it cannot)."""
    return texts.fill_null("").str.replace_all(_APOSTROPHES, "'").str.contains(_PREFILTER)


def refusal_match(text: str) -> str | None:
    """The refusal or boilerplate phrase in `text` as written ("I can’t assist with"), or None."""
    m = REFUSAL.search(text.translate(_APOSTROPHE))
    return None if m is None else text[m.start():m.end()]


DECLINING = ("declines", "sorry_but")  # the phrases that decline the request itself


def declines_match(text: str) -> str | None:
    """The first phrase in `text` that declines the request ("I'm sorry, but I can't"), or None;
    boilerplate ("as an AI model") and knowledge-cutoff notes do not count here."""
    t = text.translate(_APOSTROPHE)
    for m in REFUSAL.finditer(t):
        if m.lastgroup in DECLINING:
            return text[m.start():m.end()]
    return None


def is_refusal(text: str) -> bool:
    return refusal_match(text) is not None


# A reply ends properly on one of these (or is a list item, a code line or a short fragment).
TERMINAL = tuple(".!?:;)]}\"'`*»”’…>|") + ("```",)
LIST_OR_CODE_LINE = re.compile(r"^\s*(?:[-*+•]|\d+[.)]|#|\||//|<|[A-Za-z_][\w.]*\s*[=(:{])")


def truncation_reason(text: str, min_words_last_line: int = 6) -> str | None:
    """`truncated:open_code_fence`, `truncated:mid_sentence` (the last line has `min_words_last_line`+ words
    and ends on a letter, digit, comma or dash), or None."""
    t = text.rstrip()
    if t.count("```") % 2 == 1:
        return "truncated:open_code_fence"
    if not t or t.endswith(TERMINAL) or not t[-1].isalnum() and t[-1] not in ",-":
        return None
    last = t.rsplit("\n", 1)[-1]
    if LIST_OR_CODE_LINE.match(last) or len(last.split()) < min_words_last_line:
        return None
    return "truncated:mid_sentence"


def is_truncated(text: str) -> bool:
    return truncation_reason(text) is not None
