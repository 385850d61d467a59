"""Vectorised text helpers shared by stages: conversation text, words, hashed n-gram shingles."""

from __future__ import annotations

import re

import numpy as np
import polars as pl

CODE_FENCE = re.compile(r"```.*?(?:```|\Z)", re.S)


def contents(roles: tuple[str, ...] | None = None, first_only: bool = False) -> pl.Expr:
    """An expression: the contents of `messages` whose role is in `roles`, joined by blank lines."""
    el = pl.element()
    expr = pl.col("messages")
    if roles is not None:
        expr = expr.list.eval(el.filter(el.struct.field("role").is_in(list(roles))))
    expr = expr.list.eval(el.struct.field("content"))
    if first_only:
        return expr.list.first().fill_null("")
    return expr.list.join("\n\n")


def normalise_for_hash(expr: pl.Expr) -> pl.Expr:
    """Lowercase, collapse whitespace, strip: the normal form for exact-duplicate hashing."""
    return expr.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()


def word_hashes(texts: pl.Series, lowercase: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(doc index, 64-bit word hash) for every word (\\w+ run) of every text, in order. Polars/Rust."""
    s = texts.fill_null("")
    if lowercase:
        s = s.str.to_lowercase()
    w = pl.DataFrame({"w": s.str.extract_all(r"\w+")}).with_row_index("doc").explode("w").drop_nulls("w")
    return w["doc"].to_numpy().astype(np.int64), w["w"].hash(seed=1).to_numpy()


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-mixed 64-bit hash of a 64-bit value (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def shingle_hashes(doc: np.ndarray, wh: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashed word n-grams from per-word hashes, vectorised (no per-shingle Python loop).

    A document with fewer than n words yields one shingle of all its words. Output is sorted
    by document; within a document shingles may repeat (callers take sets where needed).
    """
    N = len(doc)
    if N == 0:
        return doc, wh
    starts = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])
    lengths = np.diff(np.r_[starts, N])
    doc_len = np.repeat(lengths, lengths)
    pos = np.arange(N) - np.repeat(starts, lengths)
    mw = _mix(wh)
    acc = mw.copy()
    phi = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for k in range(1, n):
            nxt = np.zeros(N, dtype=np.uint64)
            nxt[: N - k] = mw[k:]
            nxt[(pos + k) >= doc_len] = 0
            np.multiply(acc, phi, out=acc)
            np.add(acc, nxt, out=acc)
    keep = ((pos + n) <= doc_len) | ((doc_len < n) & (pos == 0))
    return doc[keep], _mix(acc[keep])


def shingle_frame(texts: pl.Series, n: int, lowercase: bool = True) -> pl.DataFrame:
    """Hashed word n-gram shingles per text as a (doc: i64, h: u64) frame ordered by doc (may repeat)."""
    d, wh = word_hashes(texts, lowercase)
    d, h = shingle_hashes(d, wh, n)
    return pl.DataFrame({"doc": d, "h": h})


def jaccard_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted unique uint64 arrays."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (len(a) + len(b) - inter)


def strip_code(text: str) -> str:
    return CODE_FENCE.sub(" ", text)


# ---- matching normal form (decontamination): robust to re-wrapping, case, punctuation, markdown ----

_APOSTROPHES = r"['’‘`´ʼ]"


def normalise_for_match(expr: pl.Expr) -> pl.Expr:
    """NFKC, lowercase, words joined across hyphenated line breaks, apostrophes dropped ("can't" ->
    "cant"), every other non-word character (markdown, bullets, quotes, punctuation, `_`) turned into
    one space. Word tokens of the result are what n-grams see."""
    e = expr.fill_null("").str.normalize("NFKC").str.to_lowercase().str.replace_all("ß", "ss", literal=True)
    e = e.str.replace_all(r"(\w)-[ \t]*\r?\n\s*(\w)", "${1}${2}").str.replace_all(_APOSTROPHES, "")
    return e.str.replace_all(r"[\W_]+", " ").str.strip_chars()


def normalise_texts(texts: list[str]) -> list[str]:
    """`normalise_for_match` on a Python list."""
    return pl.Series("t", texts, dtype=pl.String).to_frame().select(normalise_for_match(pl.col("t")))["t"].to_list()


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n\s*\n|\n(?=\s*(?:[-*•]|\d{1,2}[.)])\s)")


def sentences(text: str, max_words: int = 64) -> list[str]:
    """Sentences (split at . ! ? followed by space, blank lines, list items), pieces of at most
    `max_words` words (a long run-on sentence is cut into chunks)."""
    out = []
    for s in _SENTENCE_END.split(text):
        w = s.split()
        for k in range(0, len(w), max_words):
            out.append(" ".join(w[k:k + max_words]))
    return [s for s in out if s]


def sentence_windows(text: str, sizes: tuple[int, ...] = (1, 2, 3), max_words: int = 96) -> list[tuple[int, str]]:
    """(first sentence index, window) for every run of `sizes` consecutive sentences (capped at
    `max_words` words); a text of one sentence gives itself."""
    sents = sentences(text)
    out = []
    for size in sizes:
        for i in range(0, max(len(sents) - size + 1, 1 if size == 1 else 0)):
            w = " ".join(sents[i:i + size]).split()
            if w:
                out.append((i, " ".join(w[:max_words])))
    return out
