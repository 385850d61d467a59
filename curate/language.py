"""Language identification (lingua-language-detector) on prose: code removed, text capped.

What is not prose is removed before detection: fenced code blocks, unfenced code-like lines (a line
where code symbols are >= `CODE_LINE_SYMBOLS` of its visible characters, or that starts like a
statement: `import x`, `def f(`, `SELECT ...`, `$ cmd`, `<tag>`), and tokens that are not words
(identifiers with `_`/digits/camelCase, chemical and product names like `2-methyl-4-(...)`).
A short prose remainder (< `short_chars`) counts only when lingua is confident (top value >= 0.5 and
3x the runner-up); otherwise it is `und`. Without this, ShareGPT's English requests with pasted code
or chemical names landed in `language:la` (issue 16.3; docs/curate.md lists the rows that moved).
"""

from __future__ import annotations

import re
from functools import lru_cache

from sftloop.curate.text import strip_code

CODE_LINE_SYMBOLS = 0.15  # share of {}[]()<>=;$\|&^~@` among a line's visible characters (and >= 3 of them)
_SYMBOLS = re.compile(r"[{}\[\]()<>=;$\\|&^~@`]")
_SPACE = re.compile(r"\s+")
_STATEMENT = re.compile(r"^\s*(?:import |from \S+ import |def |class |return\b|public |private |static |const |let |var |"
                        r"function\b|#include|package |using |SELECT |INSERT |UPDATE |CREATE |\$ |>>> |<[a-zA-Z/!])")
# a run of printable ASCII holding a digit, `_`, camelCase or a code symbol: an identifier, number,
# URL or chemical name, not a word (ASCII runs only, so CJK text, written without spaces, stays whole)
_NON_WORD = re.compile(r"[\x21-\x7e]*(?:[_0-9]|[a-z][A-Z]|[{}\[\]<>=;$\\|&^~@`/+*#%])[\x21-\x7e]*")


def _collapse(lines: list[str]) -> str:
    return _SPACE.sub(" ", " ".join(lines)).strip()


def prose(text: str, limit: int | None = None) -> str:
    """The text without fenced code, code-like lines and non-word tokens, whitespace collapsed.

    With `limit`, only the first `limit` characters of that, exactly `prose(text)[:limit]`: lines are
    cleaned until the collapsed prose is longer than `limit`, so a long conversation costs its first
    few lines, not all of them (most of `language`'s time before: ShareGPT rows average 6.5 kB, the
    detector reads 600 characters). Collapsing only merges whitespace and a later line can only add
    characters after the cut, so the prefix is the same."""
    lines: list[str] = []
    raw, check = 0, limit
    for line in strip_code(text).splitlines():
        visible = len(line) - line.count(" ")
        if not visible or _STATEMENT.match(line) or (n := len(_SYMBOLS.findall(line))) >= 3 and n >= CODE_LINE_SYMBOLS * visible:
            continue
        lines.append(_NON_WORD.sub(" ", line))
        if check is not None:
            raw += len(lines[-1]) + 1
            if raw > check:  # collapsed length <= raw length: only now can it pass the limit
                out = _collapse(lines)
                if len(out) > limit:  # type: ignore[operator]
                    return out[:limit]
                check = max(2 * raw, limit)  # doubling: the re-collapses stay linear in the text read
    out = _collapse(lines)
    return out if limit is None else out[:limit]


@lru_cache(maxsize=2)
def detector(accurate: bool = False):
    """Low-accuracy mode is fast and right on a few sentences (curation); high accuracy is needed for
    one-line prompts (mining): measured here, low accuracy calls "How do I reset my password?"
    Italian with confidence 0.99, high accuracy says English."""
    from lingua import LanguageDetectorBuilder

    b = LanguageDetectorBuilder.from_all_languages()
    return (b if accurate else b.with_low_accuracy_mode()).build()


def _confident(c) -> object | None:
    return c[0].language if c and c[0].value >= 0.5 and (len(c) < 2 or c[0].value >= 3 * c[1].value) else None


def detect_languages(texts: list[str], min_chars: int = 20, max_chars: int = 600, progress: bool = False,
                     accurate: bool = False, min_confidence: float = 0.0, short_chars: int = 200) -> list[str]:
    """ISO 639-1 code per text; `und` where there is too little prose (after removing code) to decide,
    a short remainder (< `short_chars`) is not confidently one language, or (with `min_confidence`) the
    top language is not clearly ahead: lingua spreads confidence over 75 languages, so a short English
    line scores ~0.3 for English with every runner-up below 0.1. Batches run on lingua's thread pool."""
    from tqdm import tqdm

    pro = [prose(t, max_chars) for t in texts]
    det = detector(accurate)
    out: list[str] = []
    for i in tqdm(range(0, len(pro), 2000), desc="language", disable=not progress, unit="chunk"):
        chunk = pro[i:i + 2000]
        if min_confidence > 0:  # confident = top value >= min_confidence and 3x the runner-up's
            langs = [c[0].language if c and c[0].value >= min_confidence and (len(c) < 2 or c[0].value >= 3 * c[1].value)
                     else None for c in det.compute_language_confidence_values_in_parallel(chunk)]
        else:
            langs = det.detect_languages_in_parallel_of(chunk)
            short = [j for j, t in enumerate(chunk) if min_chars <= len(t.strip()) < short_chars]
            for j, c in zip(short, det.compute_language_confidence_values_in_parallel([chunk[j] for j in short])):
                langs[j] = _confident(c)
        out.extend("und" if lang is None or len(t.strip()) < min_chars else lang.iso_code_639_1.name.lower()
                   for t, lang in zip(chunk, langs))
    return out
