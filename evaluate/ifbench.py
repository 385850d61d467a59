"""IFBench verifiable instructions (strict and loose) with the `if-verifiable` checkers, punkt-free.

NLTK's punkt models cannot be downloaded here, so before the checkers run we point NLTK's
sentence and word tokenizers at punkt-free ones: sentences come from if-verifiable's own regex
splitter (`instructions_util.split_into_sentences`), words from a `\\w+|[^\\w\\s]` regex. A checker that
needs another NLTK resource (POS tagger, stopwords) raises LookupError: that sample is reported
as not evaluated, never as passed.
"""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=1)
def _patched():
    import nltk

    # if-verifiable calls nltk.download() for missing data when it is imported: a network attempt at
    # run time. Offline nothing can be fetched, so the import runs with downloading switched off.
    real_download = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        from if_verifiable.ifbench import instructions_util as u
    finally:
        nltk.download = real_download

    class _Sentences:
        @staticmethod
        def tokenize(text: str) -> list[str]:
            return u.split_into_sentences(text)

    def sent_tokenize(text, language="english"):
        return u.split_into_sentences(text)

    def word_tokenize(text, language="english", preserve_line=False):
        return re.findall(r"\w+|[^\w\s]", text)

    u._get_sentence_tokenizer = lambda: _Sentences()
    nltk.sent_tokenize = nltk.tokenize.sent_tokenize = sent_tokenize
    nltk.word_tokenize = nltk.tokenize.word_tokenize = word_tokenize
    from if_verifiable.api import evaluate_output_for_sample
    from if_verifiable.types import IFBenchSample

    return evaluate_output_for_sample, IFBenchSample


def _resource(e: LookupError) -> str:
    """The resource name out of NLTK's boxed LookupError text ('Resource stopwords not found.')."""
    m = re.search(r"Resource\s+(\S+)\s+not found", str(e))
    return m.group(1) if m else (str(e).strip("* \n").splitlines() or ["unknown resource"])[0]


def check(prompt: str, spec: dict, response: str, key: str = "") -> dict:
    """{'strict': bool|None, 'loose': bool|None, 'error': str|None} for one IFBench item."""
    evaluate_output_for_sample, IFBenchSample = _patched()
    sample = IFBenchSample(key=key, prompt=prompt, instruction_id_list=spec["instruction_id_list"], kwargs=spec["kwargs"])
    try:
        _, scores = evaluate_output_for_sample("ifbench", sample, response)
    except LookupError as e:  # an NLTK resource we cannot have here (never downloaded: see _patched)
        return {"strict": None, "loose": None, "error": f"needs NLTK data not installed here: {_resource(e)}"}
    except Exception as e:  # noqa: BLE001 - a checker bug must not count as a pass
        return {"strict": None, "loose": None, "error": f"{type(e).__name__}: {e}"}
    return {"strict": scores.binary_strict == 1.0, "loose": scores.binary_loose == 1.0, "error": None}
