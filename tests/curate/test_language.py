"""Language detection on prose only (issue 16.3): unfenced code, identifiers and chemical names removed;
short texts need a confident detection (real lingua detector)."""

from sftloop.curate.language import detect_languages, prose

CODE_REQUEST = ("Can you explain why this loop never stops and how I should fix it?\n"
                "for (int i = 0; i < n; i--) { total += values[i]; }\n"
                "while (queue.size() > 0) { item = queue.pop(); process(item); }\n"
                "if (x->next == NULL) { return -1; }")
CHEMICAL = ("What is the melting point of 2-methyl-4-(trifluoromethyl)benzoic_acid compared with "
            "C6H5COOH, and which one dissolves better in water at room temperature?")


def test_prose_drops_code_lines_and_non_words():
    p = prose(CODE_REQUEST)
    assert p == "Can you explain why this loop never stops and how I should fix it?"
    c = prose(CHEMICAL)
    assert "trifluoromethyl" not in c and "C6H5COOH" not in c and "melting point" in c
    md = "**Note:** keep the receipt (you will need it) and call us."
    assert prose(md) == "keep the receipt (you will need it) and call us."  # a parenthesis is prose, ** markup is not


def test_english_with_code_or_chemicals_is_english_and_short_unsure_is_und():
    langs = detect_languages([CODE_REQUEST, CHEMICAL, "Danke schön, das hat sehr geholfen, wirklich!", "ok lol sure yes"],
                             min_chars=5)
    assert langs[:2] == ["en", "en"]
    assert langs[3] == "und"  # short and not confidently one language


def test_prose_with_a_limit_is_the_prefix_of_the_whole_on_real_rows():
    """`prose(t, n)` stops cleaning once it has n characters; it must equal `prose(t)[:n]` exactly, on
    real ShareGPT conversations (long, code, tables) and on edge cases around the cut."""
    from sftloop.curate.sources import SourceConfig, iter_source
    from sftloop.schema import QuarantineWriter

    texts = [CODE_REQUEST, CHEMICAL, "", "   ", "a\n" * 700, ("x" * 599 + "\n") * 3, "word " * 200 + "\n\n\n" + "b " * 300]
    src = SourceConfig(name="sharegpt", format="sharegpt", path="asset:sharegpt-v3-partial", limit=400)
    texts += ["\n\n".join(m.content for m in rec.messages if m.role in ("user", "assistant"))
              for rec in iter_source(src, QuarantineWriter(None), [])]
    assert len(texts) > 400
    for t in texts:
        full = prose(t)
        for n in (1, 20, 199, 600, 601, 5000):
            assert prose(t, n) == full[:n], (n, t[:80])
