"""Failure detectors for one logged exchange. Each returns the reasons that fire (all of them).

Refusal and truncation are the training filters' own rules (`sftloop/rules.py`), so a reply mined as a
failure is one the `refusal`/`truncated` stages keep out of training."""

from __future__ import annotations

import json
import re
from collections import Counter

from sftloop.rules import is_refusal, is_truncated


def repetition_loop(text: str, n: int = 4, min_repeats: int = 4) -> bool:
    """A word n-gram occurring at least `min_repeats` times and covering a large share of the answer."""
    words = text.lower().split()
    if len(words) < n * min_repeats:
        return False
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    gram, count = grams.most_common(1)[0]
    return count >= min_repeats and count * n >= 0.3 * len(words)


def detect(prompt: str, response: str, feedback: str | None = None, expects_json: bool = False,
           prompt_lang: str | None = None, response_lang: str | None = None) -> list[str]:
    reasons = []
    if feedback == "thumbs_down":
        reasons.append("hard:thumbs_down")
    if not response.strip():
        reasons.append("behaviour:empty")
        return reasons
    if expects_json:
        try:
            json.loads(re.sub(r"^```(?:json)?\s*|\s*```$", "", response.strip()))
        except ValueError:
            reasons.append("format:invalid_json")
    if is_refusal(response):
        reasons.append("behaviour:refusal")
    if repetition_loop(response):
        reasons.append("behaviour:repetition")
    if is_truncated(response):
        reasons.append("behaviour:truncated")
    if prompt_lang and response_lang and prompt_lang != response_lang and "und" not in (prompt_lang, response_lang):
        reasons.append("behaviour:language_mismatch")
    return reasons
