import pytest
from curate_frames import frame

from sftloop.curate.stages.decontaminate import Decontaminate
from sftloop.evaluate import evalsets

HOST_Q = "Can you recommend a good book about the history of the Roman empire for a beginner?"
HOST_A = "Sure. SPQR by Mary Beard is a readable overview that covers a thousand years of Roman history."


@pytest.fixture(scope="module")
def items():
    return {i.id: i for i in evalsets.load()}


@pytest.fixture(scope="module")
def stage():
    return Decontaminate()


def _rewrap(text: str, width: int = 6) -> str:
    w = text.split()
    return "\n".join(" ".join(w[i:i + width]) for i in range(0, len(w), width))


DISGUISES = {
    "verbatim": lambda q: [("user", q), ("assistant", HOST_A)],
    "rewrapped": lambda q: [("user", _rewrap(q)), ("assistant", HOST_A)],
    "inside_longer": lambda q: [("user", HOST_Q + " Also, unrelated: " + q + " Thanks a lot!"), ("assistant", HOST_A)],
    "later_user_turn": lambda q: [("user", HOST_Q), ("assistant", HOST_A), ("user", q), ("assistant", HOST_A)],
    "assistant_turn": lambda q: [("user", HOST_Q), ("assistant", "Here is one you could ask:\n\n" + q)],
    "case_punct": lambda q: [("user", "**" + q.upper().replace(",", "").replace(".", " !").replace("'", "’") + "**"),
                             ("assistant", HOST_A)],
}


@pytest.mark.parametrize("disguise", sorted(DISGUISES))
def test_every_disguise_of_real_items_is_caught_by_ngrams(stage, items, ctx, disguise):
    ifb = next(i for i in items.values() if i.set == "ifbench")
    support = next(i for i in items.values() if i.set == "golden")
    picks = [("mtbench-81", items["mtbench-81"].of("prompt")[0]), (ifb.id, ifb.of("prompt")[0]),
             (support.id, support.of("prompt")[0]), ("sports_understanding-0", items["sports_understanding-0"].of("prompt")[0])]
    convs = [DISGUISES[disguise](q) for _, q in picks] + [[("user", HOST_Q), ("assistant", HOST_A)]]
    res = stage.apply(frame(convs), ctx)
    assert res.kept["_row"].to_list() == [len(picks)]
    got = dict(zip(res.dropped["_row"].to_list(), res.dropped["rep_id"].to_list()))
    # the support prompt exists twice in the golden set (-0 / -1 variants share it): either id is right
    assert got[0] == "mtbench-81" and got[1] == ifb.id and got[3] == "sports_understanding-0"
    assert items[got[2]].of("prompt")[0].split()[:3] == support.of("prompt")[0].split()[:3]
    assert all(r.startswith("decontaminate:ngram:") for r in res.dropped["reason"])


def test_short_item_is_matched_as_a_whole_span_only(stage, items, ctx):
    q = items["arithmetic-0"].of("prompt")[0]  # "What is 80 plus 29?": shorter than the n-gram
    assert len(q.split()) < stage.ngram
    res = stage.apply(frame([
        [("user", f"My kid asked me: {q.lower()} I said I'd check."), ("assistant", HOST_A)],
        [("user", "What is the plus side of 80 apartments with 29 floors?"), ("assistant", HOST_A)],
    ]), ctx)
    assert res.dropped["_row"].to_list() == [0] and res.dropped["rep_id"].to_list() == ["arithmetic-0"]


def test_reason_names_method_role_and_turn(stage, items, ctx):
    mt = items["mtbench-81"]
    res = stage.apply(frame([
        DISGUISES["assistant_turn"](mt.of("prompt")[0]),
        [("user", HOST_Q), ("assistant", HOST_A), ("user", mt.of("prompt")[1]), ("assistant", HOST_A)],  # 2nd turn
    ]), ctx)
    assert res.dropped["reason"].to_list() == ["decontaminate:ngram:assistant-turn2", "decontaminate:ngram:user-turn3"]
    rep = ctx.reports["decontaminate"]
    assert rep["items_hit"] == {"mtbench-81": {"ngram": 2}} and rep["rows_dropped"] == 2
    assert rep["eval_items"] == len(items)


def test_reference_answer_probe_item_and_calibration_pair_are_caught(stage, items, ctx):
    ref_item = next(i for i in items.values() if i.set == "mtbench" and i.of("reference"))
    cal = next(i for i in items.values() if i.set == "calibration")
    logic = items["logical_deduction-0"]
    res = stage.apply(frame([
        [("user", HOST_Q), ("assistant", ref_item.of("reference")[0])],        # MT-Bench reference in the reply
        [("user", "Which shelf order?\n" + logic.of("prompt")[0]), ("assistant", HOST_A)],  # probe question
        [("user", cal.of("prompt")[0]), ("assistant", HOST_A)],                 # calibration question
        [("user", HOST_Q), ("assistant", cal.of("response")[0])],             # calibration answer
    ]), ctx)
    got = dict(zip(res.dropped["_row"].to_list(), res.dropped["rep_id"].to_list()))
    assert set(got) == {0, 1, 2, 3}
    assert got[0] == ref_item.id and got[1].startswith("logical_deduction-")
    assert items[got[2]].of("prompt") == cal.of("prompt") and items[got[3]].set == "calibration"


def test_probe_target_counts_only_with_its_question(stage, items, ctx):
    assert items["sports_understanding-0"].of("prompt", "target") == ["Jamal Murray was perfect from the line", "plausible"]
    res = stage.apply(frame([
        [("user", "Is the claim about the new phone true?"), ("assistant", "It sounds plausible to me.")],  # target alone
        [("user", "Murray (Jamal) perfect at the free-throw line: is that believable?"), ("assistant", "Plausible.")],
    ]), ctx)
    assert res.dropped["_row"].to_list() == [1]
    assert res.dropped["rep_id"].to_list() == ["sports_understanding-0"]
    assert res.dropped["reason"].to_list() == ["decontaminate:answer:assistant-turn2"]


def test_light_rewording_is_caught_by_sentence_window_embeddings(stage, items, ctx):
    q = items["mtbench-81"].of("prompt")[0]
    para = (q.replace("Compose", "Write").replace("engaging", "captivating").replace("must-see", "top")
            .replace("highlighting", "featuring"))
    res = stage.apply(frame([
        [("user", HOST_Q + "\n\n" + para + "\n\nKeep it under 500 words."), ("assistant", HOST_A)],
    ]), ctx)
    assert res.dropped["reason"].to_list() == ["decontaminate:embedding:user-turn1"]
    assert res.dropped["rep_id"].to_list() == ["mtbench-81"]
    assert Decontaminate(embed_threshold=None).apply(frame([[("user", para), ("assistant", HOST_A)]]), ctx).dropped.height == 0


def test_clean_conversations_and_the_shared_system_prompt_are_not_hits(stage, items, ctx):
    support = next(i for i in items.values() if i.set == "golden")
    res = stage.apply(frame([
        [("user", HOST_Q), ("assistant", HOST_A)],
        [("user", "How do I return a pair of shoes that do not fit?"), ("assistant", "Start a return from your order page.")],
        [("user", "Write a haiku about autumn leaves in Kyoto."), ("assistant", "Red leaves drift and fall / over quiet temple stones / "
                                                                         "the river runs cold.")],
        [("system", support.of("system")[0]), ("user", "Hi, what are your opening hours on Sunday?"),
         ("assistant", "We are open from 10 am to 4 pm on Sundays.")],
    ]), ctx)
    assert res.dropped.height == 0
    assert ctx.reports["decontaminate"]["templates_ignored"] == [support.of("system")[0][:60]]


def _reword(name: str = "reword"):
    """bench/decontam_bench.py's `reword` (light deterministic rewording of eval prompts) or `heavy`."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("decontam_bench_under_test",
                                                  Path(__file__).parents[2] / "bench" / "decontam_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return getattr(bench, name)


def _sharegpt(limit: int) -> list[list[tuple[str, str]]]:
    from sftloop.curate.sources import SourceConfig, iter_source
    from sftloop.schema import QuarantineWriter

    src = SourceConfig(name="sharegpt", format="sharegpt", path="asset:sharegpt-v3-partial", limit=limit)
    return [[(m.role, m.content) for m in r.messages] for r in iter_source(src, QuarantineWriter(None), [])]


def _reference_and_fast(df, ctx) -> tuple[dict, dict]:
    """The reference (`prefilter = "none"`) and the default static prefilter on `df`: asserts the same rows
    dropped for the same reasons and items; returns both stage reports."""
    ref = Decontaminate(prefilter="none").apply(df, ctx)
    ref_rep = dict(ctx.reports["decontaminate"])
    fast = Decontaminate().apply(df, ctx)
    cols = ["_row", "reason", "rep_id"]
    assert fast.dropped.select(cols).sort("_row").equals(ref.dropped.select(cols).sort("_row"))
    return ref_rep, dict(ctx.reports["decontaminate"])


def test_static_prefilter_drops_what_minilm_on_every_short_turn_drops(items, ctx):
    """The prefilter (MiniLM only on short user turns whose static vector is near a question's) against the
    reference (MiniLM on every short user turn): the same rows dropped for the same items, on lightly
    reworded eval prompts (what the embedding check is for) mixed with real ShareGPT conversations, and
    fewer turns embedded."""
    import random

    reword, rng = _reword(), random.Random(0)
    prompts = sorted({i.of("prompt")[0] for i in items.values() if i.set in ("golden", "mtbench", "ifbench")
                      and i.of("prompt") and 6 <= len(i.of("prompt")[0].split()) <= 100})
    convs = [[("user", reword(q, rng)), ("assistant", HOST_A)] for q in rng.sample(prompts, 60)]
    ref_rep, fast_rep = _reference_and_fast(frame(convs + _sharegpt(80)), ctx)
    assert ref_rep["by_method"].get("embedding", 0) >= 10  # the embedding check really decides here
    assert fast_rep["short_user_turns"] == ref_rep["short_user_turns"] == ref_rep["short_user_turns_embedded"]
    # 141 of 263 here (60 of them are the planted prompts); on the ShareGPT demo input 8,198 of 22,644
    assert fast_rep["short_user_turns_embedded"] < 0.6 * ref_rep["short_user_turns"]


def test_static_prefilter_sees_a_reworded_question_inside_chit_chat(items, ctx):
    """Short questions reworded, partly dropped and wrapped in chit-chat ("Hi there! Which is 52 plus 96?
    Thanks a lot in advance."): the chit-chat dominated the static bag of the whole turn, so the prefilter
    (whole turn only) missed rows that MiniLM on every turn drops (bench/decontam_bench.py
    --prefilter-study: heavy disguise recall 0.938); the turn's best sentence window must find them."""
    import random

    heavy, rng = _reword("heavy"), random.Random(2)
    prompts = sorted({i.of("prompt")[0] for i in items.values()
                      if i.id.split("-")[0] in ("arithmetic", "general_knowledge", "golden")
                      and i.of("prompt") and 4 <= len(i.of("prompt")[0].split()) <= 40})
    convs = [[("user", heavy(q, rng)), ("assistant", HOST_A)] for q in rng.sample(prompts, 80)]
    ref_rep, fast_rep = _reference_and_fast(frame(convs + _sharegpt(40)), ctx)
    assert ref_rep["by_method"].get("embedding", 0) >= 10
    assert fast_rep["short_user_turns_embedded"] < ref_rep["short_user_turns"]


def test_static_prefilter_of_candidate_windows_drops_what_minilm_on_every_window_drops(items, ctx):
    """(b)'s prefilter (MiniLM only on candidate windows whose static vector is near a window of their
    candidate question) against MiniLM on every candidate window: reworded eval prompts inside long
    turns of real ShareGPT conversations (so only the window check can see them), the same rows dropped
    for the same items, and fewer windows embedded."""
    import random

    reword, rng = _reword(), random.Random(1)
    real = _sharegpt(120)
    long_replies = [c for conv in real for role, c in conv if role == "assistant" and len(c.split()) > 120][:40]
    prompts = sorted({i.of("prompt")[0] for i in items.values() if i.set in ("mtbench", "ifbench")
                      and i.of("prompt") and 12 <= len(i.of("prompt")[0].split()) <= 80})
    convs = [[("user", HOST_Q), ("assistant", rep + "\n\nYou could also ask: " + reword(q, rng) + "\n\n" + rep)]
             for q, rep in zip(rng.sample(prompts, 40), long_replies)]
    ref_rep, fast_rep = _reference_and_fast(frame(convs + real[:80]), ctx)
    assert ref_rep["by_method"].get("embedding", 0) >= 5  # the window check really decides here
    assert fast_rep["candidate_windows"] == ref_rep["candidate_windows"] == ref_rep["candidate_windows_embedded"] > 0
    assert fast_rep["candidate_windows_embedded"] < 0.5 * ref_rep["candidate_windows"]
