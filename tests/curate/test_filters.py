from curate_frames import frame

from curate.stages.filters import Language, MinWords, Parroting, Refusal, TokenLimit, Truncated, truncation_reason

Q = "Could you explain how compound interest works for savings?"
A = "Compound interest means you earn interest on both your deposit and the interest already added, so savings grow faster over time."


def reasons(res):
    return dict(zip(res.dropped["_row"].to_list(), res.dropped["reason"].to_list()))


def test_min_words_defaults_user_gt4_assistant_gt5(ctx):
    df = frame([[("user", "one two three four"), ("assistant", A)],          # 4 words: dropped
                [("user", "one two three four five"), ("assistant", A)],     # 5 words: kept
                [("user", Q), ("assistant", "one two three four five")],     # 5 words: dropped
                [("user", Q), ("assistant", A), ("user", "continue"), ("assistant", A)]])  # short follow-up is fine
    assert reasons(MinWords().apply(df, ctx)) == {0: "min_words:user", 2: "min_words:assistant"}


def test_token_limit_counts_the_templated_conversation(ctx):
    from transformers import AutoTokenizer
    from sftloop.assets import path

    tok = AutoTokenizer.from_pretrained(path("smollm2-135m-instruct"))
    conv = [("user", Q), ("assistant", A)]
    templated = len(tok.apply_chat_template([{"role": r, "content": c} for r, c in conv], tokenize=True, return_dict=True)["input_ids"])
    plain = len(tok(Q + A)["input_ids"])
    assert templated > plain + 10  # SmolLM2's template adds a default system prompt and role headers
    df = frame([conv])
    res = TokenLimit(max_tokens=templated).apply(df, ctx)
    assert res.kept.height == 1 and res.kept["n_tokens"][0] == templated
    res = TokenLimit(max_tokens=templated - 1).apply(df, ctx)
    assert reasons(res) == {0: f"token_limit:>{templated - 1}"}


def test_language_ignores_code_and_drops_other_languages(ctx):
    code = "```python\nfor i in range(10):\n    print(i)\n```"
    df = frame([[("user", "Wie kann ich mein Passwort zurücksetzen, wenn ich die E-Mail nicht bekomme?"),
                 ("assistant", "Bitte prüfe zuerst deinen Spam-Ordner und fordere dann einen neuen Link an.")],
                [("user", "Please fix this loop so it prints the numbers."), ("assistant", "Here you go, this prints each number:\n" + code)],
                [("user", "¿Cómo puedo cambiar la dirección de envío de mi pedido?"), ("assistant", "Puedes cambiarla en la configuración de tu cuenta antes del envío.")]])
    res = Language(allowed=["en"]).apply(df, ctx)
    assert reasons(res) == {0: "language:de", 2: "language:es"}
    assert res.kept["lang"].to_list() == ["en"]


def test_parroting(ctx):
    df = frame([[("user", "the quick brown fox jumps over the lazy dog today"), ("assistant", "The quick brown fox jumps over the lazy dog today!")],
                [("user", Q), ("assistant", A)]])
    assert reasons(Parroting().apply(df, ctx)) == {0: "parroting"}


def test_truncation():
    assert truncation_reason("This answer stops in the middle of a long sentence without") == "truncated:mid_sentence"
    assert truncation_reason("Here:\n```python\nprint(1)\n") == "truncated:open_code_fence"
    assert truncation_reason("A full sentence.") is None
    assert truncation_reason("Steps:\n1. open the app\n- tap settings") is None
    assert truncation_reason("Thanks") is None


def test_truncated_stage_checks_last_reply(ctx):
    df = frame([[("user", Q), ("assistant", "The key idea is that interest is added to the balance and then")]])
    assert reasons(Truncated().apply(df, ctx)) == {0: "truncated:mid_sentence"}


def test_refusal_filter_and_flag(ctx):
    df = frame([[("user", Q), ("assistant", "As an AI language model, I cannot provide financial advice.")], [("user", Q), ("assistant", A)]])
    assert reasons(Refusal().apply(df, ctx)) == {0: "refusal"}
    res = Refusal(mode="flag").apply(df, ctx)
    assert res.dropped.height == 0 and res.kept["refusal"].to_list() == [True, False]
