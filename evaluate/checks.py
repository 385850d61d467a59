"""Deterministic checks on an answer: JSON(-schema) validity, regex, must/must-not include, length."""

from __future__ import annotations

import json
import re
from typing import Any

from sftloop.rules import declines_match


def _extract_json(text: str) -> Any:
    t = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", t, re.S)
    if fence:
        t = fence.group(1).strip()
    return json.loads(t)


def _schema_ok(value: Any, schema: dict) -> bool:
    """The subset of JSON Schema our items use: type object/array/string/boolean/number, required."""
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "number": (int, float)}
    t = schema.get("type")
    if t and not isinstance(value, types[t]):
        return False
    if isinstance(value, dict):
        return all(k in value for k in schema.get("required", []))
    return True


def run_checks(checks: dict, answer: str) -> dict[str, bool]:
    """name -> passed, for every deterministic check the item declares (IFBench is scored elsewhere)."""
    out: dict[str, bool] = {}
    low = answer.lower()
    if "json_schema" in checks:
        try:
            out["json_schema"] = _schema_ok(_extract_json(answer), checks["json_schema"])
        except (ValueError, TypeError):
            out["json_schema"] = False
    if "regex" in checks:
        out["regex"] = re.search(checks["regex"], answer) is not None
    if "must_include_any" in checks:
        out["must_include_any"] = any(s.lower() in low for s in checks["must_include_any"])
    if "must_include" in checks:
        out["must_include"] = all(s.lower() in low for s in checks["must_include"])
    if "must_not_include" in checks:
        out["must_not_include"] = not any(s.lower() in low for s in checks["must_not_include"])
    if "max_words" in checks:
        out["max_words"] = len(answer.split()) <= checks["max_words"]
    if "max_chars" in checks:
        out["max_chars"] = len(answer) <= checks["max_chars"]
    return out


# Refusals of a legitimate request (the false-refusal rule): the declining phrases of the one refusal
# rule in sftloop/rules.py, which curate's filters and the miner apply too.
def is_refusal(answer: str) -> bool:
    """True when the answer declines the request (phrase patterns, checked on the first 300 characters)."""
    return declines_match(answer[:300]) is not None
