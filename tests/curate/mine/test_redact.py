from curate.mine.redact import iban_ok, luhn_ok, redact


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
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    out, counts = redact("Order #W2378156 shipped 2026-11-20; tracking 4111 1111 1111 1112; version 1.2.3.4.5")
    assert counts.get("CARD", 0) == 0 and "4111 1111 1111 1112" in out  # fails Luhn: not a card
    assert "#W2378156" in out
