import json

import polars as pl
from curate_frames import chat_config, frame, run_version, write_chat

from sftloop.curate.stages.filters import Parroting
from sftloop.curate.stages.leakage import LabelLeakage, turn_scores

ARTICLE = ("The museum opened in 1987 after a decade of fundraising by the city council. Its main hall holds "
           "a collection of maritime instruments, including a brass sextant donated by the founder's family. "
           "Admission is free on the first Sunday of every month, and guided tours start at ten in the morning. "
           "The building was designed by the architect Clara Mendes, who also planned the harbour library.")
LEAKY_Q = f"Read the article and answer the question.\n\n{ARTICLE}\n\nQuestion: who donated the brass sextant?"
LEAKY_A = "A brass sextant donated by the founder's family."  # every word 3-gram is in the article
Q = "Could you explain how compound interest works for savings?"
A = ("Compound interest means you earn interest on both your deposit and the interest already added, "
     "so savings grow faster over time.")


def reasons(res):
    return dict(zip(res.dropped["_row"].to_list(), res.dropped["reason"].to_list()))


def test_long_context_with_short_answer_is_caught_where_parroting_is_not(ctx):
    df = frame([[("user", LEAKY_Q), ("assistant", LEAKY_A)], [("user", Q), ("assistant", A)]])
    assert reasons(Parroting().apply(df, ctx)) == {}  # the word sets differ in size: Jaccard is small
    res = LabelLeakage().apply(df, ctx)
    assert reasons(res) == {0: "label_leakage"}
    assert res.dropped["label_leakage"].to_list() == [1.0]
    assert res.kept["label_leakage"].to_list() == [0.0]  # the clean QA pair: nothing of the answer is in the question
    assert ctx.reports["label_leakage"]["rows_over_threshold"] == 1


def test_score_is_containment_of_the_reply_ngrams_casefolded_without_punctuation(ctx):
    half = "The Founder's family donated a brass SEXTANT; nobody knows why they kept it so long"
    ts = turn_scores(frame([[("user", LEAKY_Q), ("assistant", half)]]))
    # 16 words, 14 distinct 3-grams; in the article: "the founder s", "founder s family", "a brass sextant"
    assert ts["words"].to_list() == [16] and abs(ts["score"][0] - 3 / 14) < 1e-9


def test_flag_keeps_rows_and_writes_the_score(ctx):
    df = frame([[("user", LEAKY_Q), ("assistant", LEAKY_A)], [("user", Q), ("assistant", A)]])
    res = LabelLeakage(mode="flag").apply(df, ctx)
    assert res.dropped.height == 0 and res.kept["label_leakage"].to_list() == [1.0, 0.0]
    res = LabelLeakage(mode="filter", threshold=1.0).apply(df, ctx)
    assert reasons(res) == {0: "label_leakage"}


def test_every_assistant_turn_is_scored_against_earlier_system_and_user_turns_only(ctx):
    clean_first = [("system", ARTICLE), ("user", Q), ("assistant", A),
                   ("user", "And who donated the sextant in the museum?"), ("assistant", LEAKY_A)]
    own_reply = [("user", Q), ("assistant", A), ("user", "Say that again please, word for word."), ("assistant", A)]
    res = LabelLeakage().apply(frame([clean_first, own_reply]), ctx)
    assert reasons(res) == {0: "label_leakage"}  # a later turn leaks from the system prompt: max over turns
    assert res.kept["label_leakage"].to_list() == [0.0]  # repeating its own earlier reply is not the label in the input


def test_short_answers_unscored_by_default_and_matched_as_a_whole_span_when_asked(ctx):
    ctx_text = "The total on the invoice is 42 dollars, payable by Friday. What is the total in dollars?"
    df = frame([[("user", ctx_text), ("assistant", "42")],
                [("user", ctx_text), ("assistant", "Forty-two.")],      # 2 words, not in the context
                [("user", ctx_text), ("assistant", "42 dollars")]])     # 2 words, a contiguous span of it
    assert LabelLeakage().apply(df, ctx).kept["label_leakage"].to_list() == [0.0, 0.0, 0.0]
    res = LabelLeakage(min_reply_words=1).apply(df, ctx)
    assert reasons(res) == {0: "label_leakage", 2: "label_leakage"}
    ts = turn_scores(frame([[("user", "is it dollars 42 or not"), ("assistant", "42 dollars")]]))
    assert ts["score"].to_list() == [0.0]  # both words present, but not as the reply's word sequence


def test_copy_tasks_and_multiple_choice_are_exempt_unless_switched_off(ctx):
    text = "The books they borrowed last month from the city library was returned on time by the two students."
    fixed = "The books they borrowed last month from the city library were returned on time by the two students."
    mc = ("Which planet is known as the red planet?\na) Venus b) Mars c) Jupiter d) Saturn with its rings")
    df = frame([[("user", f"Please fix the grammar: {text}"), ("assistant", fixed)],
                [("user", mc), ("assistant", "b) Mars c) Jupiter")],
                [("user", LEAKY_Q), ("assistant", LEAKY_A)]])
    res = LabelLeakage().apply(df, ctx)
    assert reasons(res) == {2: "label_leakage"}
    assert ctx.reports["label_leakage"]["rows_exempt_over_threshold"] == 2
    assert res.kept["label_leakage"].to_list()[0] >= 0.8  # exempt rows are kept with their score
    assert reasons(LabelLeakage(exempt_pattern="").apply(df, ctx)) == {0: "label_leakage", 1: "label_leakage",
                                                                     2: "label_leakage"}
    # "correct" inside a pasted document is not an instruction: no exemption
    doc = LEAKY_Q.replace("Question:", "The correct dates are in the records.\nQuestion:")
    assert reasons(LabelLeakage().apply(frame([[("user", doc), ("assistant", LEAKY_A)]]), ctx)) == {0: "label_leakage"}


def test_a_bad_exempt_pattern_fails_when_the_config_is_read():
    import pytest

    from sftloop.curate.config import ConfigError, parse_stage

    with pytest.raises(ConfigError, match="exempt_pattern: not a valid regex"):
        parse_stage(0, {"type": "label_leakage", "exempt_pattern": "(unclosed"})
    with pytest.raises(ConfigError, match="mode"):
        parse_stage(0, {"type": "label_leakage", "mode": "drop"})


def test_empty_frame_and_unicode(ctx):
    res = LabelLeakage().apply(frame([[("user", Q), ("assistant", A)]]).head(0), ctx)
    assert res.kept.height == 0 and res.dropped.height == 0
    df = frame([[("user", "Übersetze nicht: Der schnelle braune Fuchs springt über den faulen Hund"),
                 ("assistant", "Der SCHNELLE braune Fuchs springt über den faulen Hund!")]])
    assert LabelLeakage(mode="flag").apply(df, ctx).kept["label_leakage"].to_list() == [1.0]


def test_pipeline_writes_the_score_into_meta_of_kept_and_excluded_rows(tmp_path):
    rows = [{"messages": [{"role": "user", "content": LEAKY_Q}, {"role": "assistant", "content": LEAKY_A}]}]
    rows += [{"messages": [{"role": "user", "content": f"{Q} ({i})"}, {"role": "assistant", "content": A}]}
             for i in range(3)]
    cfg = tmp_path / "c.toml"
    cfg.write_text(chat_config("leak", write_chat(tmp_path, rows)) + '[[stages]]\ntype = "label_leakage"\n')
    v = run_version(cfg, tmp_path, "leak")
    ex = pl.read_parquet(v / "excluded.parquet")
    assert ex["reason"].to_list() == ["label_leakage"] and json.loads(ex["meta"][0])["label_leakage"] == 1.0
    train = pl.read_parquet(v / "train.parquet")
    assert train.height == 3 and all(json.loads(m)["label_leakage"] == 0.0 for m in train["meta"])
