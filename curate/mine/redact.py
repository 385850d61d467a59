"""PII redaction before anything leaves the process: e-mail, phone, payment card (Luhn), IBAN
(mod 97), IPv4/IPv6 addresses, replaced by typed placeholders and counted per type."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
IPV6 = re.compile(r"(?<![\w:])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:)[0-9A-Fa-f:]{2,39}(?![\w:])")  # validated by ipaddress
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]?\d{2,5}){1,4}(?!\w)")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def luhn_ok(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = int(ch)
        if alt:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        alt = not alt
    return total % 10 == 0


def iban_ok(s: str) -> bool:
    s = s.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    num = "".join(str(int(c, 36)) for c in moved)
    return int(num) % 97 == 1


def redact(text: str) -> tuple[str, Counter]:
    """The text with PII replaced by [EMAIL], [CARD], [IBAN], [IP], [PHONE], and counts per type."""
    counts: Counter = Counter()

    def sub(pattern: re.Pattern, label: str, valid=lambda m: True) -> None:
        nonlocal text

        def repl(m: re.Match) -> str:
            if valid(m.group(0)):
                counts[label] += 1
                return f"[{label}]"
            return m.group(0)

        text = pattern.sub(repl, text)

    sub(EMAIL, "EMAIL")
    sub(IBAN, "IBAN", iban_ok)
    sub(CARD, "CARD", lambda s: 13 <= len(re.sub(r"\D", "", s)) <= 19 and luhn_ok(re.sub(r"\D", "", s)))
    sub(IPV4, "IP", lambda s: _is_ip(s))
    sub(IPV6, "IP", lambda s: _is_ip(s))
    sub(PHONE, "PHONE", lambda s: 7 <= len(re.sub(r"\D", "", s)) <= 15 and not ISO_DATE.match(s.strip()))
    return text, counts


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False
