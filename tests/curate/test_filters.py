from curate_frames import frame

from sftloop.curate.stages.filters import Language, MinWords, Parroting, Refusal, TokenLimit, Truncated, truncation_reason

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


def _smollm2():
    from transformers import AutoTokenizer
    from sftloop.assets import path

    return AutoTokenizer.from_pretrained(path("smollm2-135m-instruct"))


def _n_tokens(tok, conv) -> int:
    text = tok.apply_chat_template([{"role": r, "content": c} for r, c in conv], tokenize=False)
    return len(tok(text, add_special_tokens=False)["input_ids"])


def test_token_limit_truncate_turns_keeps_the_longest_fitting_prefix_ending_with_an_assistant_reply(ctx):
    import json

    tok = _smollm2()
    long_reply = " ".join(["Interest is added to the balance every month and then earns interest itself."] * 12)
    conv = [("user", Q), ("assistant", A), ("user", "And what about loans, does it work the same way?"),
            ("assistant", long_reply), ("user", "Thanks, one more: what is APR?"),
            ("assistant", "APR is the yearly rate including fees, so you can compare offers.")]
    full, four, two = _n_tokens(tok, conv), _n_tokens(tok, conv[:4]), _n_tokens(tok, conv[:2])
    assert two < four < full
    too_long_first = [("user", Q), ("assistant", long_reply + " " + long_reply), ("user", "ok?"), ("assistant", A)]
    fits = [("user", Q), ("assistant", A)]
    df = frame([conv, conv, too_long_first, fits])
    # row 1 (same conversation) is checked against a tighter limit below
    res = TokenLimit(max_tokens=four, mode="truncate_turns", exact_counts=True).apply(df, ctx)
    assert reasons(res) == {2: "token_limit:first_turn_too_long"}
    kept = {r: row for r, row in zip(res.kept["_row"].to_list(), res.kept.iter_rows(named=True))}
    r0 = kept[0]
    assert [(m["role"], m["content"]) for m in r0["messages"]] == conv[:4]  # ends with the assistant reply
    assert r0["n_tokens"] == four  # the exact templated count of what is kept, as train will see it
    meta = json.loads(r0["meta"])
    assert meta["turns_cut"] == 2 and meta["tokens_cut"] == full - four
    assert meta["pre_truncate_id"] == df["id"][0] and r0["id"] != df["id"][0]
    assert kept[3]["id"] == df["id"][3] and "turns_cut" not in json.loads(kept[3]["meta"])  # fitting rows untouched
    rep = ctx.reports["token_limit"]
    assert rep["mode"] == "truncate_turns" and rep["rows_truncated"] == 2 and rep["turns_cut"] == 4
    assert rep["tokens_cut"] == 2 * (full - four) and rep["rows_first_turn_too_long"] == 1
    # the default counts a row only until it passes the limit: the same decisions, kept rows and counts;
    # a row over the limit has no total, so no tokens_cut and (dropped) no n_tokens
    fast = TokenLimit(max_tokens=four, mode="truncate_turns").apply(df, ctx)
    assert reasons(fast) == reasons(res)
    cols = ["_row", "id", "messages", "n_tokens"]
    assert fast.kept.select(cols).equals(res.kept.select(cols))
    strip = [{k: v for k, v in json.loads(m).items() if k != "tokens_cut"} for m in res.kept["meta"]]
    assert [json.loads(m) for m in fast.kept["meta"]] == strip
    frep = ctx.reports["token_limit"]
    assert "tokens_cut" not in frep and frep["counting"] == "pieces" and frep["rows_not_counted_past_limit"] == 3
    # one token less: only the first exchange fits
    res = TokenLimit(max_tokens=four - 1, mode="truncate_turns").apply(df.head(1), ctx)
    assert res.kept["n_tokens"][0] == two and len(res.kept["messages"][0]) == 2
    assert json.loads(res.kept["meta"][0])["turns_cut"] == 4
    # drop mode (the default) keeps the old behaviour: the whole row goes
    assert reasons(TokenLimit(max_tokens=four).apply(df, ctx)) == {0: f"token_limit:>{four}", 1: f"token_limit:>{four}",
                                                                   2: f"token_limit:>{four}"}


def test_token_limit_truncate_turns_agrees_with_exact_prefix_counts_on_sharegpt(ctx):
    """On real ShareGPT conversations, the kept prefix is the longest fitting one by exact tokenization
    of every prefix (the slow way `train` would count it)."""
    import json

    import polars as pl

    from sftloop.assets import path
    from sftloop.schema import PARQUET_SCHEMA, ChatRecord

    roles = {"human": "user", "gpt": "assistant"}
    rows = []
    with open(path("sharegpt-v3-partial"), encoding="utf-8") as f:
        for line in f:
            turns = [(roles.get(t["from"]), t["value"]) for t in json.loads(line)["conversations"]]
            alternating = all(r == ("user" if k % 2 == 0 else "assistant") and c.strip() for k, (r, c) in enumerate(turns))
            if alternating and len(turns) >= 6 and len(turns) % 2 == 0:
                rec = ChatRecord.model_validate({"messages": [{"role": r, "content": c} for r, c in turns], "source": "s"})
                rows.append(rec.to_row())
            if len(rows) == 25:
                break
    df = pl.DataFrame(rows, schema=PARQUET_SCHEMA).with_row_index("_row")
    tok = _smollm2()
    res = TokenLimit(max_tokens=512, mode="truncate_turns").apply(df, ctx)
    dropped = set(res.dropped["_row"].to_list())
    kept = {r: m for r, m in zip(res.kept["_row"].to_list(), res.kept["messages"].to_list())}
    for r, msgs in enumerate(df["messages"].to_list()):
        conv = [(m["role"], m["content"]) for m in msgs]
        ends = [k + 1 for k, (role, _) in enumerate(conv) if role == "assistant"]
        fitting = [n for n in ends if _n_tokens(tok, conv[:n]) <= 512]
        if not fitting:
            assert r in dropped
        else:
            assert len(kept[r]) == max(fitting), r
    assert ctx.reports["token_limit"]["rows_truncated"] > 0


def test_refusal_scope_last_checks_the_trained_reply_and_records_turn_and_phrase(ctx):
    early = [("user", Q), ("assistant", "As an AI language model, I cannot give advice."),
             ("user", "Thanks anyway"), ("assistant", "You're welcome. I'm glad I could help with the basics.")]
    late = [("user", Q), ("assistant", A), ("user", "Which bank should I pick?"),
            ("assistant", "I’m sorry, but I can’t recommend a specific bank.")]
    df = frame([early, late])
    res = Refusal().apply(df, ctx)  # scope "last": only the final assistant reply is trained, so only it counts
    assert reasons(res) == {1: "refusal"}
    assert res.dropped["refusal"].to_list() == [{"turn": 3, "phrase": "I’m sorry, but I can’t"}]
    res = Refusal(scope="any").apply(df, ctx)
    assert reasons(res) == {0: "refusal", 1: "refusal"}
    assert res.dropped["refusal"].to_list() == [{"turn": 1, "phrase": "As an AI language model"},
                                                {"turn": 3, "phrase": "I’m sorry, but I can’t"}]
    assert Refusal(mode="flag", scope="any").apply(df, ctx).kept["refusal"].to_list() == [True, True]


def test_refusal_detail_lands_in_the_excluded_rows_meta(tmp_path):
    import json

    import polars as pl
    from curate_frames import chat_config, run_version, write_chat

    rows = [{"messages": [{"role": "user", "content": Q}, {"role": "assistant", "content": A}]},
            {"messages": [{"role": "user", "content": Q}, {"role": "assistant", "content": "I won't help with that request, sorry."}]}]
    cfg = tmp_path / "c.toml"
    cfg.write_text(chat_config("r", write_chat(tmp_path, rows)) + '[[stages]]\ntype = "refusal"\nmax_drop_share = 1.0\n')
    version = run_version(cfg, tmp_path, "r")
    ex = pl.read_parquet(version / "excluded.parquet")
    assert ex["reason"].to_list() == ["refusal"]
    assert json.loads(ex["meta"][0])["refusal"] == {"turn": 1, "phrase": "I won't help with"}


def _sharegpt_texts(tok, n: int) -> list[str]:
    from sftloop.curate.sources import SourceConfig, iter_source
    from sftloop.schema import QuarantineWriter

    src = SourceConfig(name="sharegpt", format="sharegpt", path="asset:sharegpt-v3-partial", limit=n)
    convs = [[{"role": m.role, "content": m.content} for m in r.messages] for r in iter_source(src, QuarantineWriter(None), [])]
    return tok.apply_chat_template(convs, tokenize=False)


def test_count_tokens_in_pieces_is_exact_up_to_the_cap_on_sharegpt():
    """Counting in pieces cut at special tokens (issue 18): a row at or under the cap gets its exact count,
    a row over it the exact first tokens (offsets included) and a count already over the cap, on real
    ShareGPT renderings (long, code, tables) at several caps."""
    from sftloop.curate.stages.filters import count_tokens

    tok = _smollm2()
    texts = _sharegpt_texts(tok, 300)
    enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
    full = [len(x) for x in enc["input_ids"]]
    full_ends = [[e for _, e in o] for o in enc["offset_mapping"]]
    for cap in (1, 64, 1024, 4096):
        c = count_tokens(tok, texts, cap, offsets=True, check=True)
        assert c.method == "pieces"
        assert sum(c.complete) < len(texts)  # some rows really were cut short
        for i, (n, done, ends) in enumerate(zip(c.counts, c.complete, c.ends)):
            if done:
                assert n == full[i] and ends == full_ends[i], (cap, i)
            else:
                assert cap < n <= full[i] and ends == full_ends[i][:n], (cap, i)
            assert done or full[i] > cap
            assert (full[i] <= cap) <= done  # every row within the cap is counted to its end
        counted = sum(c.counts)
        assert cap > 1000 or counted < 0.8 * sum(full)  # and the point: most of the text is never tokenized
    exact = count_tokens(tok, texts, None, offsets=False)
    assert exact.counts == full and all(exact.complete) and exact.method == "full"


def test_count_tokens_falls_back_to_whole_texts_when_pieces_differ(monkeypatch):
    """If cutting at the marks did change the tokens (here: a fake mark inside words), the check sees it
    and every text is counted whole, so a count is never wrong."""
    from sftloop.curate.stages import filters

    tok = _smollm2()
    texts = _sharegpt_texts(tok, 40)
    monkeypatch.setattr(filters, "_split_marks", lambda tok: ("e",))
    c = filters.count_tokens(tok, texts, 64, offsets=True, check=True)
    assert c.method.startswith("full (pieces differed")
    assert c.counts == [len(x) for x in tok(texts, add_special_tokens=False)["input_ids"]] and all(c.complete)
