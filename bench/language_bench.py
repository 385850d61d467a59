"""Which rows the language stage's prose cleaning moves (issue 16.3), on the rows that reached
`language` in a written version: the detector before (fenced code removed only) vs now (code-like
lines, non-word tokens removed; short texts need confidence). Prints counts per (before -> after)
and 5 examples of each move, and both wall times.

    python bench/language_bench.py data/datasets/sharegpt-demo/<id>
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter

import polars as pl

from sftloop.settings import offline_env

LATER = ["language", "token_limit", "minhash_dedup", "embed_dedup", "decontaminate"]


def before(texts: list[str], min_chars: int = 20, max_chars: int = 600) -> list[str]:
    """The detector as it was: fenced code removed, whitespace collapsed, capped."""
    from sftloop.curate.language import detector
    from sftloop.curate.text import strip_code

    pro = [re.sub(r"\s+", " ", strip_code(t))[:max_chars] for t in texts]
    langs = detector(False).detect_languages_in_parallel_of(pro)
    return ["und" if g is None or len(t.strip()) < min_chars else g.iso_code_639_1.name.lower() for t, g in zip(pro, langs)]


def main() -> None:
    offline_env()
    from sftloop.curate.language import detect_languages
    from sftloop.curate.text import contents

    d = sys.argv[1]
    e = pl.read_parquet(f"{d}/excluded.parquet").filter(pl.col("stage").is_in(LATER))
    parts = [pl.read_parquet(f"{d}/{p}.parquet") for p in ("train", "val")]
    df = pl.concat(parts + [e.select(parts[0].columns)])
    texts = df.select(t=contents(("user", "assistant")))["t"].to_list()
    t = time.perf_counter(); old = before(texts); t_old = time.perf_counter() - t
    t = time.perf_counter(); new = detect_languages(texts); t_new = time.perf_counter() - t
    print(f"{df.height:,} rows reached `language`; before {t_old:.1f} s, now {t_new:.1f} s (shared machine)")
    keep = lambda c: c in ("en", "und")  # noqa: E731  (the demo config: allowed = ["en"], und kept)
    print(f"dropped (allowed = ['en']): before {sum(not keep(c) for c in old)}, now {sum(not keep(c) for c in new)}")
    moves = Counter((a, b) for a, b in zip(old, new) if a != b)
    for (a, b), n in moves.most_common():
        print(f"\n{a} -> {b}: {n} rows")
        for i in [i for i, (x, y) in enumerate(zip(old, new)) if (x, y) == (a, b)][:5]:
            print(f"  {df['id'][i]}: {texts[i][:110]!r}")


if __name__ == "__main__":
    main()
