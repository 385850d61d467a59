"""PII redaction before anything leaves the process: e-mail, payment card, IBAN, US SSN, IPv4/IPv6
address and phone number, replaced by typed placeholders ([EMAIL], [CARD], [IBAN], [SSN], [IP], [PHONE])
and counted per type.

Candidates are found by patterns that tolerate how people write values (upper/lower case, spaces,
doubled spaces, dashes, dots, a line break or `\\r\\n` between groups, apostrophes and plus-tags in
e-mails, `name [at] example [dot] com`), then validated, so that look-alikes stay:
- cards: 13-19 digits, Luhn, and the issuer prefix/length of a major brand;
- IBANs: the country's registered length and mod 97;
- IPs: `ipaddress`; IPv6 needs three groups, or two with a 4-digit one (`1::2` in a slice is not one);
- phones: Google's libphonenumber port (`phonenumbers`) says the number is possible (international
  form) or possible in one of the common regions (national form); undelimited digit strings must be a
  valid number there, or follow a phone keyword;
- all numbers: not a date or time, a version, an ISBN, an amount, a quantity, or a number labelled as
  an order/invoice/ticket/tracking/... number (the words right before it).
Measured on the labelled corpus in tests/fixtures/pii/ by bench/pii_bench.py (docs/mine.md).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import phonenumbers

LABELS = ("EMAIL", "IBAN", "CARD", "SSN", "IP", "PHONE")

# ------------------------------------------------------------------ shared pieces

NL = r"(?:[ \t]*\r?\n[ \t]*)"  # a line break (with the spaces around it) inside a value
_DASH = r"[-.\u2010-\u2015/]"
SEP = rf"(?:[ \t]{{1,3}}|{NL}|[ \t]?{_DASH}[ \t]?|[ \t]?{_DASH}{NL}|{NL}{_DASH}[ \t]?)"  # between digit groups
# Words that label the number after them as something other than PII (order #123456789, version 1.2.3.4).
NOT_PII_WORDS = frozenset(
    "order orders invoice inv ticket case ref reference tracking track shipment parcel package isbn isbn-10 isbn-13 "
    "issn doi version ver v build release rel revision rev firmware patch update sku serial s/n sn part model po "
    "confirmation booking reservation transaction txn receipt claim policy item product article section chapter "
    "clause paragraph step rule page pages port pid uid gid id code zip postcode room flight seat batch lot rma ean "
    "upc gtin asin bug issue pr commit table figure fig eq equation row col column year years km miles count total "
    "amount price qty quantity size timestamp epoch ts unix fedex ups usps dhl tnt gls dpd hermes colissimo awb "
    "waybill app chrome firefox safari edge windows android ios macos linux kernel python node java".split())
_LABEL_TAIL = re.compile(r"(?i)(?:\b([a-z/-]+(?:-1[03])?)|(§))[\s:#№.=()-]*(?:no\.?|nr\.?|number|num|id|code|#)?[\s:#№.=-]*$")


class _NotPiiLabel:
    """`search(before)`: the words right before a number label it as an order, a version, ... (a set
    lookup on the last word and its label suffix: this runs for every number in every row)."""

    @staticmethod
    def search(before: str) -> bool:
        m = _LABEL_TAIL.search(before[-40:])
        return bool(m and (m.group(2) or m.group(1).lower() in NOT_PII_WORDS or
                           m.group(1).lower().removesuffix("-10").removesuffix("-13") in NOT_PII_WORDS))


NOT_PII_LABEL = _NotPiiLabel()
PHONE_WORD = re.compile(r"(?i)\b(?:phone|phones|tel|tél|telephone|téléphone|telefon|telefono|teléfono|mobile|mob|"
                        r"cell|cellphone|call|calls|called|ring|text|sms|whatsapp|fax|contact|reach|dial|"
                        r"numéro|nummer|handy|portable|hotline|landline)\b[^\n\d]{0,20}$")
_D, _M, _Y4 = r"(?:0?[1-9]|[12]\d|3[01])", r"(?:0?[1-9]|1[0-2])", r"(?:19|20)\d\d"
DATE_TOKEN = re.compile(rf"{_Y4}([-./]){_M}\1{_D}|{_D}([-./]){_M}\2(?:{_Y4}|\d\d)|{_M}([-./]){_D}\3(?:{_Y4}|\d\d)")
DATE_IN = re.compile(rf"(?<!\d)(?:{_Y4}([-./]){_M}\1{_D}|{_D}([-./]){_M}\2{_Y4}|{_M}([-./]){_D}\3{_Y4})(?!\d)")
DATE_SPACED = re.compile(rf"{_D} {_M} {_Y4}|{_M} {_D} {_Y4}|{_Y4} {_M} {_D}")


def _has_date(core: str) -> bool:
    """A chunk that is a date (01/15/24), holds one with a 4-digit year (2026-11-17-1), or the whole
    value as 15 01 2024."""
    return bool(DATE_SPACED.fullmatch(core.strip()) or DATE_IN.search(core)) or any(DATE_TOKEN.fullmatch(c) for c in core.split())


AMOUNT_BEFORE = re.compile(r"(?i)(?:[$€£¥₹₽₩]|\b(?:usd|eur|gbp|jpy|chf|inr|brl|cad|aud|rs\.?|r\$))\s*$")
UNIT_AFTER = re.compile(r"(?i)^\s*(?:%|‰|[$€£¥₹]|(?:usd|eur|gbp|jpy|chf|inr|brl|cad|aud|dollars?|euros?|"
                        r"ms|sec|secs|seconds|mins|minutes|hrs|hours|kb|mb|gb|tb|kg|mg|lb|lbs|km|cm|mm|miles|"
                        r"px|pt|rpm|hz|khz|mhz|ghz|°|times|rows|items|users|words|tokens|bytes|points|pts)\b)")


CODE_BEFORE = re.compile(r"\b(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]{2,}[ \t]+$")  # after a code: R9RY 8363 ..., DE70 8139 ...


def _label_before(text: str, start: int) -> bool:
    return bool(NOT_PII_LABEL.search(text[max(0, start - 40):start]))


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


# ------------------------------------------------------------------ e-mail

_LOCAL = r"[\w!#$%&*+/=?^`{|}~-][\w!#$%&'*+/=?^`{|}~-]*"  # o'brien, not the quote before 'a@b.com'

EMAIL = re.compile(
    rf"(?<![\w.!#$%&*+/=?^`{{|}}~-]){_LOCAL}(?:{NL}?\.{NL}?{_LOCAL})*{NL}?@{NL}?"
    rf"[\w-]+(?:{NL}?\.{NL}?[\w-]+)*{NL}?\.{NL}?(?:[^\W\d_]{{2,}}|xn--[\w-]+)(?![\w-])")
_TLD = r"(?:com|org|net|edu|gov|io|co|uk|de|fr|es|it|nl|be|ch|at|se|no|dk|fi|pl|ru|jp|cn|in|br|au|ca|us|info|biz|me|ai|dev|app)"
_AT = r"(?:\s*[\[({<]\s*at\s*[\])}>]\s*|\s+at\s+)"
_DOT = r"(?:\s*[\[({<]\s*dot\s*[\])}>]\s*|\s+dot\s+)"
_OLOCAL = rf"[\w+-][\w+'-]*(?:(?:{_DOT}|\.)[\w+-][\w+'-]*)*"  # jane dot doe
EMAIL_OBFUSCATED = re.compile(rf"(?i)(?<![\w.+-]){_OLOCAL}{_AT}[\w-]+(?:(?:{_DOT}|\.)[\w-]+)*(?:{_DOT}){_TLD}\b"
                              rf"|(?<![\w.+-]){_OLOCAL}\s*[\[({{<]\s*at\s*[\])}}>]\s*[\w-]+(?:(?:{_DOT}|\.)[\w-]+)*\.{_TLD}\b")


def _email_start(text: str, m: re.Match) -> int:
    """A value wrapped onto the next line (`mary.ja\\nne@example.com`): take the piece before the break too."""
    start = m.start()
    head = re.search(r"[\w.'+-]+\r?\n[ \t]*$", text[max(0, start - 80):start])
    return start - len(head.group(0)) if head else start


# ------------------------------------------------------------------ payment card

# (prefix range low, high, lengths): Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay, Maestro, Mir, RuPay.
BRANDS: list[tuple[int, int, frozenset[int]]] = [
    (4, 4, frozenset({13, 16, 19})),
    (51, 55, frozenset({16})), (2221, 2720, frozenset({16})),
    (34, 34, frozenset({15})), (37, 37, frozenset({15})),
    (6011, 6011, frozenset(range(16, 20))), (644, 649, frozenset(range(16, 20))), (65, 65, frozenset(range(16, 20))),
    (300, 305, frozenset(range(14, 20))), (3095, 3095, frozenset(range(14, 20))), (36, 36, frozenset(range(14, 20))),
    (38, 39, frozenset(range(14, 20))),
    (3528, 3589, frozenset(range(16, 20))),
    (62, 62, frozenset(range(16, 20))), (81, 81, frozenset(range(16, 20))),
    (50, 50, frozenset(range(13, 20))), (56, 69, frozenset(range(13, 20))),
    (2200, 2204, frozenset(range(16, 20))),
    (60, 60, frozenset({16})), (508, 508, frozenset({16})), (82, 82, frozenset({16})),
]
# Luhn and the brand prefix are strong: only labels of numbers that are never cards keep a run.
CARD_NOT_LABEL = re.compile(r"(?i)\b(?:isbn(?:-1[03])?|issn|ean|upc|gtin|tracking|track)\b[\s:#.=-]*(?:no\.?|number|#)?[\s:#.=-]*$")
CARD_RUN = re.compile(rf"(?<![\w.,/-])\d+(?:{SEP}\d+)*(?![\w])")


def luhn_ok(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = int(ch)
        if alt:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        alt = not alt
    return total % 10 == 0


def card_ok(digits: str) -> bool:
    """13-19 digits, Luhn, and the prefix and length of a major brand."""
    if not 13 <= len(digits) <= 19 or not luhn_ok(digits):
        return False
    for lo, hi, lengths in BRANDS:
        n = len(str(lo))
        if lo <= int(digits[:n]) <= hi and len(digits) in lengths:
            return True
    return False


def _card_spans(text: str) -> list[tuple[int, int]]:
    """Runs of digit groups: the whole run, or the longest whole groups at its start or end (a card and
    its expiry date, two cards in a row) that are a card; never a piece from the middle of a run."""
    spans = []
    for m in CARD_RUN.finditer(text):
        groups = [(g.start(), g.end()) for g in re.finditer(r"\d+", m.group(0))]
        before = text[max(0, m.start() - 30):m.start()]
        if sum(e - s for s, e in groups) < 13 or CARD_NOT_LABEL.search(before) or CODE_BEFORE.search(before):
            continue
        run = m.group(0)
        left = [0] * (len(groups) + 1)  # digits in groups[i:]
        for k in range(len(groups) - 1, -1, -1):
            left[k] = left[k + 1] + groups[k][1] - groups[k][0]
        i, anchor = 0, 0
        while i < len(groups):
            found = None
            ends = [len(groups)] if left[i] <= 19 else []  # to the end of the run
            if i == anchor:  # or the most whole groups from i that hold at most 19 digits
                n, j = 0, i
                while j < len(groups) and n + groups[j][1] - groups[j][0] <= 19:
                    n, j = n + groups[j][1] - groups[j][0], j + 1
                ends = sorted(set(ends) | set(range(i + 1, j + 1)), reverse=True)
            for j in ends:
                d = _digits(run[groups[i][0]:groups[j - 1][1]]) if j > i else ""
                if 13 <= len(d) <= 19 and card_ok(d):
                    found = j
                    break
            if found:
                spans.append((m.start() + groups[i][0], m.start() + groups[found - 1][1]))
                i = anchor = found
            else:
                i += 1
    return spans


# ------------------------------------------------------------------ IBAN

IBAN_LENGTH = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
    "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # the SWIFT IBAN registry
IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}")
IBAN_SEP = re.compile(rf"{NL}|[ \t]{{1,3}}|[ \t]?-[ \t]?")


def iban_ok(s: str) -> bool:
    s = re.sub(r"\s|-", "", s).upper()
    if not 15 <= len(s) <= 34 or not s.isalnum() or (s[:2] in IBAN_LENGTH and len(s) != IBAN_LENGTH[s[:2]]):
        return False
    moved = s[4:] + s[:4]
    num = "".join(str(int(c, 36)) for c in moved)
    return int(num) % 97 == 1


def _iban_spans(text: str) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for m in IBAN_START.finditer(text):
        if m.start() < pos or (want := IBAN_LENGTH.get(m.group(0)[:2].upper())) is None:
            continue
        i, got, end = m.end(), 4, m.end()
        while got < want and i < len(text):
            if text[i].isascii() and text[i].isalnum():
                got, i, end = got + 1, i + 1, i + 1
                continue
            sep = IBAN_SEP.match(text, i)
            if not sep or sep.end() >= len(text) or not text[sep.end()].isalnum():
                break
            i = sep.end()
        if got == want and not (end < len(text) and text[end].isalnum()) and iban_ok(text[m.start():end]):
            spans.append((m.start(), end))
            pos = end
    return spans


# ------------------------------------------------------------------ US social security number

SSN = re.compile(r"(?<![\w-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-])")
SSN_WORD = re.compile(r"(?i)\b(?:ssn|social security|soc\.? sec\.?)\b[^\n\d]{0,20}$")


def _ssn_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in SSN.finditer(text):
        area, group, serial = m.group(1), m.group(3), m.group(4)
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        if m.group(2) == " " and not SSN_WORD.search(text[max(0, m.start() - 30):m.start()]):
            continue  # 123 45 6789 only after "SSN": spaced groups are too common otherwise
        if _label_before(text, m.start()):
            continue
        spans.append(m.span())
    return spans


# ------------------------------------------------------------------ IP addresses

IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
IPV6 = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:)(?:[0-9A-Fa-f]{1,4}|:)[0-9A-Fa-f:.]*(?:%[\w.]+)?(?![\w:])")


def _ip_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in IPV4.finditer(text):
        octets = m.group(0).split(".")
        if all(int(o) <= 255 for o in octets) and not _label_before(text, m.start()):
            spans.append(m.span())
    for m in IPV6.finditer(text):
        s = m.group(0).rstrip(".")
        try:
            ipaddress.IPv6Address(s.split("%")[0])
        except ValueError:
            continue
        groups = [g for g in s.split("%")[0].split(":") if g]
        if len(groups) >= 3 or "." in s or (len(groups) == 2 and max(map(len, groups)) == 4):  # not 1::2 (a slice)
            spans.append((m.start(), m.start() + len(s)))
    return spans


# ------------------------------------------------------------------ phone numbers

PHONE_REGIONS = ("US", "GB", "FR", "DE", "JP", "IN", "BR", "ES", "IT", "NL", "BE", "CH", "AT", "SE", "PL", "PT",
                 "IE", "AU", "CA", "MX", "AR", "CN", "KR", "RU", "ZA", "SG", "HK", "AE", "TR", "NG")
_EXT = r"(?:[ \t]*[,;]?[ \t]*(?:ext\.?|extension|x|#|poste|durchwahl|內線|内線)[ \t]*\d{1,6})"
PHONE = re.compile(
    rf"(?<![\w+.,/#-])(?:(?:\+|00)[ \t]?\d{{1,3}}(?:{SEP}|(?=\())?(?:\(0\)[ \t.-]?)?)?"
    rf"(?:\d[ \t.-]?(?=\())?(?:\(\d{{1,5}}\)[ \t.-]?)?\d+(?:{SEP}\d+)*(?i:{_EXT})?(?![\w])")
_EXT_AT_END = re.compile(rf"(?i){_EXT}$")
THOUSANDS = re.compile(r"^\d{1,3}(?:([. \u00a0\u202f])\d{3})(?:\1\d{3})*$")


def _possible(number: str, region: str | None) -> tuple[bool, bool]:
    """(possible, valid) per libphonenumber."""
    try:
        n = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return False, False
    return phonenumbers.is_possible_number(n), phonenumbers.is_valid_number(n)


def phone_ok(candidate: str, before: str = "", after: str = "", strict: bool = False) -> bool:
    """Whether a run of digit groups is a phone number (not a date, version, amount, ...). `before` and
    `after`: the text around it; `strict`: the number must be valid (a piece of a longer run)."""
    ext = _EXT_AT_END.search(candidate)
    core = (candidate[:ext.start()] if ext else candidate).strip()
    international = core.startswith("+") or (core.startswith("00") and len(_digits(core)) >= 10)
    digits = _digits(core.replace("(0)", "")) if international else _digits(core)
    if not 7 <= len(digits) <= (15 if international else 13) or (international and len(digits) < 8):
        return False  # E.164 has at most 15 digits with the country code; national numbers at most 13
    if re.match(r"^[ \t]?[-.:/][ \t]?\d|^[.,]\d", after):
        return False  # not the whole number: a time, a decimal, a longer id
    if _has_date(core) or UNIT_AFTER.match(after) or AMOUNT_BEFORE.search(before):
        return False
    if NOT_PII_LABEL.search(before) and not international:
        return False  # labels do not hold for +44 ...: no order or version number starts with a country code
    body = re.sub(r"^(?:\+|00)[ \t]?\d{1,3}", "", core) if international else core
    groups = re.findall(r"\d+", body)
    seps = set(re.findall(r"[-./]|\s+", re.sub(r"\(\d+\)", " ", body).strip()))
    if "." in seps and (len(seps) > 1 or len(groups) < 3 or not all(2 <= len(g) <= 4 for g in groups)):
        return False  # 48.8566 2.3522, 151.2093, 10.0.19045.3570: decimals and versions
    if body.count("/") > 1:
        return False  # 030/1234567 and 0711 / 123 456 are phones; 1/2/2024 is not
    if sum(len(g) == 1 for g in groups) > (2 if international else 1):
        return False  # 1 2 3 4 5 6 7
    if not international and THOUSANDS.match(body) and (len(groups[0]) < 3 or "." in seps):
        return False  # 1 234 567, 1.234.567
    if not international and re.fullmatch(r"(?:19|20)\d\d-\d+", body):
        return False  # 2024-000123: a year and a sequence number
    keyword = bool(PHONE_WORD.search(before))
    if not international and len(groups) == 2 and "(" not in body and len(digits) < 10 and not keyword:
        return False  # 1234-5678, 94105-1234 (ZIP+4): two groups are a phone only after a phone word
    if _isbn(digits, groups):
        return False
    formatted = bool(re.search(r"[\s().\-/]", core))
    if international:
        possible, valid = _possible("+" + (digits[2:] if core.startswith("00") else digits), None)
        return valid if strict or not (formatted or keyword) else possible
    if not formatted and not keyword:
        # a bare digit string is a count or an id unless it is a valid NANP number (4155550132) or a
        # valid national number with its trunk prefix (07700900123)
        return len(digits) >= 10 and any(_possible(digits, r)[1] for r in (("US",) if digits[0] != "0" else PHONE_REGIONS))
    for region in PHONE_REGIONS:
        possible, valid = _possible(digits, region)
        if valid if strict else possible:
            return True
    return False


def _isbn(d: str, groups: list[str] | None = None) -> bool:
    """ISBN-13 (978/979 and its check digit), or a hyphenated ISBN-10 (0-306-40615-2: four groups,
    the last one the check digit)."""
    if len(d) == 13 and d[:3] in ("978", "979"):
        return sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(d)) % 10 == 0
    if len(d) == 10 and groups and len(groups) == 4 and len(groups[-1]) == 1:
        return sum((10 - i) * int(c) for i, c in enumerate(d)) % 11 == 0
    return False


def _phone_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in PHONE.finditer(text):
        before, after = text[max(0, m.start() - 40):m.start()], text[m.end():m.end() + 12]
        if ((NOT_PII_LABEL.search(before) and not m.group(0).startswith("+")) or AMOUNT_BEFORE.search(before)
                or CODE_BEFORE.search(before)):
            continue  # labelled as something else, an amount, or the digits of a code like an IBAN
        if phone_ok(m.group(0), before, after):
            spans.append(m.span())
        elif len(_digits(m.group(0))) > 15 or _has_date(m.group(0)):
            spans += _phone_windows(text, m)
    return spans


def _phone_windows(text: str, m: re.Match) -> list[tuple[int, int]]:
    """Several numbers in one run (`415-555-0132 415-555-0133`, a phone on the line above a date): the
    longest pieces that are valid numbers on their own, split at a line break or at white space
    between formatted numbers (never inside `4111 7693 8762 3902`)."""
    chunks = [(m.start() + c.start(), m.start() + c.end()) for c in re.finditer(r"\S+", m.group(0))]

    def formatted(k: int) -> bool:
        return bool(re.search(r"[-./()]|^\+", text[chunks[k][0]:chunks[k][1]]))

    cut = [True] + [("\n" in text[chunks[k - 1][1]:chunks[k][0]]) or (formatted(k - 1) and formatted(k))
                    for k in range(1, len(chunks))] + [True]
    ndig = [len(_digits(text[s:e])) for s, e in chunks]
    spans, i = [], 0
    while i < len(chunks):
        j_max, n = i, 0
        while j_max < len(chunks) and n + ndig[j_max] <= 15:  # a phone has at most 15 digits
            n, j_max = n + ndig[j_max], j_max + 1
        for j in range(j_max, i, -1):
            if (i, j) == (0, len(chunks)) or not (cut[i] and cut[j]):
                continue
            s, e = chunks[i][0], chunks[j - 1][1]
            if phone_ok(text[s:e], text[max(0, s - 40):s], "", strict=True):
                spans.append((s, e))
                i = j
                break
        else:
            i += 1
    return spans


# ------------------------------------------------------------------ redaction


def _email_spans(text: str) -> list[tuple[int, int]]:
    spans = [(_email_start(text, m), m.end()) for m in EMAIL.finditer(text)] if "@" in text else []
    return spans + ([m.span() for m in EMAIL_OBFUSCATED.finditer(text)] if "at" in text.lower() else [])


# One character for one, so offsets stay: no-break and thin spaces as spaces, full-width digits and @ as ASCII.
_PLAIN = str.maketrans({**{c: " " for c in "\u00a0\u2007\u2009\u202f\u3000"}, "\uff20": "@", "\uff0e": ".",
                        "\uff0b": "+", "\uff0d": "-", **{chr(0xFF10 + i): str(i) for i in range(10)}})
DETECTORS: list[tuple[str, Callable[[str], list[tuple[int, int]]]]] = [
    ("EMAIL", _email_spans), ("IBAN", _iban_spans), ("CARD", _card_spans), ("SSN", _ssn_spans), ("IP", _ip_spans),
    ("PHONE", _phone_spans),
]  # in this order: each detector sees the text with the earlier types already replaced


def redact(text: str) -> tuple[str, Counter]:
    """The text with PII replaced by [EMAIL], [IBAN], [CARD], [SSN], [IP], [PHONE], and counts per type."""
    counts: Counter = Counter()
    if not text or not any(c.isdigit() or c in "@:[({<\uff20" for c in text) and " at " not in text.lower():
        return text, counts
    for label, find in DETECTORS:
        spans = _merge(find(text.translate(_PLAIN)))  # same length: the spans hold for the original text
        if not spans:
            continue
        counts[label] += len(spans)
        parts, last = [], 0
        for s, e in spans:
            parts += [text[last:s], f"[{label}]"]
            last = e
        text = "".join(parts) + text[last:]
    return text, counts


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def redact_obj(obj: Any) -> tuple[Any, Counter]:
    """Every string inside a JSON-like value (dict keys and values, lists) redacted; counts per type."""
    counts: Counter = Counter()

    def walk(x: Any) -> Any:
        if isinstance(x, str):
            red, c = redact(x)
            counts.update(c)
            return red
        if isinstance(x, dict):
            return {walk(k) if isinstance(k, str) else k: walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        return x

    return walk(obj), counts


_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|([nrt\"\\/]))")


def redact_raw(raw: str) -> tuple[str, Counter]:
    """A raw row as read from a file: JSON is decoded, redacted string by string and re-encoded (so
    `\\n` and `\\u0040` escapes cannot hide a value); anything else is redacted as text with JSON escapes
    resolved first."""
    try:
        obj = json.loads(raw)
    except ValueError:
        text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)) if m.group(1) else
                           {"n": "\n", "r": "\r", "t": "\t"}.get(m.group(2), m.group(2)), raw)
        return redact(text)
    red, counts = redact_obj(obj)
    return json.dumps(red, ensure_ascii=False, default=str), counts


# ------------------------------------------------------------------ measuring a redactor on a labelled corpus


def leaked(value: str, kind: str, redacted: str) -> bool:
    """Whether a planted value survives in redacted text: verbatim, or (cards, phones, IBANs, SSNs) as
    its digits in the text's digits."""
    if value in redacted:
        return True
    if kind in ("CARD", "PHONE", "IBAN", "SSN"):
        d = _digits(value)
        return len(d) >= 7 and d in _digits(redacted)
    return False


def score(rows: list[dict], redactor: Callable[[str], str]) -> dict:
    """Per type: recall (planted values gone and replaced by their type's placeholder), precision (of
    the placeholders made, the share that replaced a value of that type), and the share of look-alike
    rows left unchanged. `rows`: {"text", "pii": [{"type", "value"}]} (empty `pii`: a look-alike)."""
    per: dict[str, dict[str, int]] = {t: {"planted": 0, "found": 0, "placeholders": 0, "true": 0} for t in LABELS}
    lookalikes = kept = 0
    misses: list[str] = []
    false_hits: list[str] = []
    for r in rows:
        out = redactor(r["text"])
        made = Counter({t: out.count(f"[{t}]") - r["text"].count(f"[{t}]") for t in LABELS})
        want = Counter(p["type"] for p in r["pii"])
        for t in LABELS:
            per[t]["placeholders"] += max(made[t], 0)
            per[t]["true"] += min(max(made[t], 0), want[t])
        if not r["pii"]:
            lookalikes += 1
            kept += out == r["text"]
            if out != r["text"]:
                false_hits.append(f"{r['text']!r} -> {out!r}")
        for p in r["pii"]:
            per[p["type"]]["planted"] += 1
            if not leaked(p["value"], p["type"], out) and made[p["type"]] > 0:
                per[p["type"]]["found"] += 1
            else:
                misses.append(f"{p['type']}: {p['value']!r} in {out!r}")
    types = {t: {"planted": d["planted"], "recall": d["found"] / d["planted"] if d["planted"] else None,
                 "precision": d["true"] / d["placeholders"] if d["placeholders"] else None}
             for t, d in per.items()}
    return {"types": types, "lookalikes": lookalikes, "lookalike_precision": kept / lookalikes if lookalikes else None,
            "misses": misses, "false_hits": false_hits}
