"""PII redaction on the labelled corpus (tests/fixtures/pii/corpus.jsonl): per-type recall and
precision, the share of look-alikes left intact, and throughput (prints figures; not a timed test).

Backends, all in the same run on the same rows:
- `regex`: curate/mine/redact.py (patterns + Luhn / mod 97 / ipaddress / libphonenumber checks);
- `baseline`: the redactor before issue 12 (redact.py at commit f14a3a7, read with `git show`);
- `presidio`: Microsoft Presidio's AnalyzerEngine, when `presidio_analyzer` is importable. Its default
  spaCy model (en_core_web_lg) is downloaded at run time and cannot be here, so it runs on a blank
  spaCy English pipeline (no NER: the six types compared are all pattern recognizers in Presidio) and
  tldextract's bundled suffix list (no download).

    python bench/pii_bench.py [--corpus tests/fixtures/pii/corpus.jsonl] [--show-errors]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sftloop.curate.mine.redact import LABELS, redact, score  # noqa: E402

BASELINE_COMMIT = "f14a3a7"
PRESIDIO_TYPES = {"EMAIL_ADDRESS": "EMAIL", "CREDIT_CARD": "CARD", "IBAN_CODE": "IBAN", "IP_ADDRESS": "IP",
                  "PHONE_NUMBER": "PHONE", "US_SSN": "SSN"}


def baseline_redactor():
    try:
        src = subprocess.run(["git", "show", f"{BASELINE_COMMIT}:curate/mine/redact.py"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"baseline: not available ({e})")
        return None
    mod = types.ModuleType("redact_baseline")
    exec(compile(src, "redact_baseline", "exec"), mod.__dict__)  # noqa: S102 - our own file at a fixed commit
    return lambda t: mod.redact(t)[0]


def presidio_redactor():
    try:
        import spacy
        import tldextract
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
    except ImportError as e:
        print(f"presidio: not installed ({e}); `pip install presidio-analyzer` to compare")
        return None
    tldextract.extract = tldextract.TLDExtract(suffix_list_urls=())  # the bundled snapshot: no download
    model = Path(tempfile.mkdtemp()) / "blank_en"
    spacy.blank("en").to_disk(model)
    conf = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": str(model)}]}
    engine = AnalyzerEngine(nlp_engine=NlpEngineProvider(nlp_configuration=conf).create_engine(), supported_languages=["en"])

    def redactor(text: str) -> str:
        found = sorted(((r.start, r.end, PRESIDIO_TYPES[r.entity_type]) for r in
                        engine.analyze(text, language="en", entities=list(PRESIDIO_TYPES))), key=lambda x: (x[0], -x[1]))
        out, last = [], 0
        for s, e, label in found:
            if s < last:
                continue  # overlapping: the earlier (longest) span wins
            out += [text[last:s], f"[{label}]"]
            last = e
        return "".join(out) + text[last:]

    return redactor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=ROOT / "tests/fixtures/pii/corpus.jsonl")
    ap.add_argument("--show-errors", action="store_true", help="print every missed value and changed look-alike")
    a = ap.parse_args()
    rows = [json.loads(line) for line in a.corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    n_values = sum(len(r["pii"]) for r in rows)
    print(f"corpus: {n_values} planted values in {sum(1 for r in rows if r['pii'])} rows, "
          f"{sum(1 for r in rows if not r['pii'])} look-alikes")
    backends = {"regex": lambda t: redact(t)[0], "baseline": baseline_redactor(), "presidio": presidio_redactor()}
    results = {}
    for name, fn in backends.items():
        if fn is None:
            continue
        results[name] = score(rows, fn)  # also the warm-up: lazily compiled patterns, metadata loads
        t0 = time.perf_counter()
        for r in rows:
            fn(r["text"])
        results[name]["rows_per_s"] = len(rows) / (time.perf_counter() - t0)
    names = list(results)
    print("\n| type | planted | " + " | ".join(f"{n} recall | {n} precision" for n in names) + " |")
    print("|---|---:|" + "---:|---:|" * len(names))
    for t in LABELS:
        cells = []
        for n in names:
            d = results[n]["types"][t]
            cells += [f"{d['recall']:.3f}" if d["recall"] is not None else "-",
                      f"{d['precision']:.3f}" if d["precision"] is not None else "-"]
        print(f"| {t} | {results[names[0]]['types'][t]['planted']} | " + " | ".join(cells) + " |")
    print("\n| backend | values found | look-alikes intact | rows/s (warm) |")
    print("|---|---:|---:|---:|")
    for n in names:
        r = results[n]
        print(f"| {n} | {n_values - len(r['misses'])}/{n_values} | "
              f"{r['lookalikes'] - len(r['false_hits'])}/{r['lookalikes']} ({r['lookalike_precision']:.3f}) | "
              f"{r['rows_per_s']:,.0f} |")
    if a.show_errors:
        for n in names:
            print(f"\n## {n}: missed\n" + "\n".join(results[n]["misses"]))
            print(f"## {n}: look-alikes changed\n" + "\n".join(results[n]["false_hits"]))


if __name__ == "__main__":
    main()
