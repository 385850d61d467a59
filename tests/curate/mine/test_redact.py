import json
from pathlib import Path

import pytest

from sftloop.curate.mine.logs import read_logs
from sftloop.curate.mine.redact import LABELS, card_ok, iban_ok, luhn_ok, redact, redact_raw, score

CORPUS = Path(__file__).parents[2] / "fixtures" / "pii" / "corpus.jsonl"


def test_planted_pii_is_replaced_and_counted():
    text = ("Hi, I'm jane.doe+shop@example.co.uk, call me at +44 20 7946 0958 or (555) 123-4567. "
            "Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, from 192.168.10.7 and 2001:db8::8a2e:370:7334.")
    out, counts = redact(text)
    assert "jane.doe" not in out and "4111" not in out and "DE89" not in out and "192.168" not in out
    assert "7946" not in out and "123-4567" not in out and "2001:db8" not in out
    assert counts == {"EMAIL": 1, "PHONE": 2, "CARD": 1, "IBAN": 1, "IP": 2}
    assert "[EMAIL]" in out and "[CARD]" in out and "[IBAN]" in out and "[IP]" in out and "[PHONE]" in out


def test_checksums_keep_non_pii_numbers():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert card_ok("378282246310005") and not card_ok("9999999999999995")  # Luhn-valid, but no brand starts with 9
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    assert iban_ok("de89 3704 0044 0532 0130 00") and not iban_ok("DE8937040044053201300")  # DE has 22 characters
    out, counts = redact("Order #W2378156 shipped 2026-11-20; tracking 4111 1111 1111 1112; version 1.2.3.4.5")
    assert counts.get("CARD", 0) == 0 and "4111 1111 1111 1112" in out  # fails Luhn: not a card
    assert "#W2378156" in out


@pytest.mark.parametrize("text,label", [
    ("4111.1111.1111.1111", "CARD"), ("4111  1111  1111  1111", "CARD"), ("4111 1111\n1111 1111", "CARD"),
    ("mary.jane@\nexample.com", "EMAIL"), ("o'brien@example.com", "EMAIL"), ("de89 3704 0044 0532 0130 00", "IBAN"),
    ("+33 1 23 45 67 89", "PHONE"), ("+81 3-1234-5678", "PHONE"), ("01 23 45 67 89", "PHONE"), ("(415) 555-0132", "PHONE"),
])
def test_issue_12_misses_are_redacted(text, label):
    out, counts = redact(text)
    assert out == f"[{label}]" and counts == {label: 1}


@pytest.mark.parametrize("text", ["order #123456789", "INV-2024-000123", "15.01.2024", "01/15/2024", "2024-01-15",
                                  "ISBN 978-3-16-148410-0", "version 1.2.3.4", "v10.0.19041.1", "$1,234,567.89",
                                  "uuid 123e4567-e89b-12d3-a456-426614174000", "at 48.8566, 2.3522", "localhost:8080"])
def test_issue_12_false_positives_stay(text):
    assert redact(text) == (text, {})


def test_labelled_corpus_recall_and_precision():
    """The numbers bench/pii_bench.py prints: every planted value found, look-alikes kept."""
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    assert sum(len(r["pii"]) for r in rows) >= 150 and sum(not r["pii"] for r in rows) >= 50
    assert {p["type"] for r in rows for p in r["pii"]} == set(LABELS)
    r = score(rows, lambda t: redact(t)[0])
    assert r["misses"] == []
    assert all(d["recall"] == 1.0 for d in r["types"].values())
    assert all(d["precision"] >= 0.95 for d in r["types"].values())
    assert r["lookalike_precision"] >= 0.95, r["false_hits"]


def test_raw_rows_are_redacted_through_json_escapes():
    raw = json.dumps({"prompt": "mail mary.jane@\nexample.com", "n": 1, "m": ["card 4111 1111 1111 1111"]})
    out, counts = redact_raw(raw)
    assert json.loads(out) == {"prompt": "mail [EMAIL]", "n": 1, "m": ["card [CARD]"]} and counts == {"EMAIL": 1, "CARD": 1}
    out, counts = redact_raw('{"prompt": "mail mary.jane@\\nexample.com, ip 10.1.2.3", ')  # invalid JSON: as text
    assert "mary" not in out and "10.1.2.3" not in out and counts == {"EMAIL": 1, "IP": 1}


def test_read_logs_redacts_every_field_and_the_quarantine(tmp_path):
    good = {"request_id": "+1 415 555 0132", "timestamp": "2026-11-17T10:00:00Z", "model": "prod", "category": "call 020 7946 0958",
            "messages": [{"role": "user", "content": "card 4111-1111-1111-1111"}], "response": "mail a.b@example.com",
            "latency_ms": 1}
    bad = {**good, "user_feedback": "a.b@example.com"}
    (tmp_path / "l.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n{\"prompt\": \"4111 1111 1111 1111\n")
    rows, stats = read_logs(str(tmp_path / "*.jsonl"), tmp_path / "q.jsonl")
    (r,) = rows
    assert (r.request_id, r.category, r.messages[0].content, r.response) == ("[PHONE]", "call [PHONE]", "card [CARD]", "mail [EMAIL]")
    assert r.pii == {"PHONE": 2, "CARD": 1, "EMAIL": 1} and r.timestamp.year == 2026
    q = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert [(x["row"], x["field"]) for x in q] == [(2, "user_feedback"), (3, "<json>")]
    text = (tmp_path / "q.jsonl").read_text()
    assert "a.b@example.com" not in text and "4111" not in text and "7946" not in text and "[EMAIL]" in text
    assert stats[0].rows_quarantined == 2
