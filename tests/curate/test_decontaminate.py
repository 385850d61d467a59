import json

from curate_frames import frame

from curate import evalsets
from curate.stages.decontaminate import Decontaminate


def test_rows_sharing_a_13gram_or_embedding_with_eval_items_are_dropped(ctx):
    items = dict(evalsets.mtbench_items())
    q81 = items["mtbench:81:1"]
    ifb = evalsets.ifbench_items()[0]
    df = frame([
        [("user", "Hi! " + q81 + " Thanks a lot."), ("assistant", "Aloha! Here is a travel blog post about Hawaii...")],
        [("user", "How do I return a pair of shoes that do not fit?"), ("assistant", "Start a return from your order page and print the label.")],
        [("user", ifb[1]), ("assistant", "Sure, here is the response with all those keywords.")],
    ])
    res = Decontaminate(eval_sets=["mtbench", "ifbench"]).apply(df, ctx)
    assert res.kept["_row"].to_list() == [1]
    got = dict(zip(res.dropped["_row"].to_list(), res.dropped["rep_id"].to_list()))
    assert got == {0: "mtbench:81:1", 2: ifb[0]}
    report = ctx.reports["decontaminate"]
    assert report["items_hit"] == {"mtbench:81:1": 1, ifb[0]: 1} and report["eval_items"] == 160 + 294


def test_paraphrase_caught_by_embedding_only(ctx):
    q = dict(evalsets.mtbench_items())["mtbench:81:1"]
    para = q.replace("Compose", "Write").replace("engaging", "captivating")
    df = frame([[("user", para), ("assistant", "Here is a blog post about my trip to Hawaii and its culture.")]])
    res = Decontaminate(eval_sets=["mtbench"], ngram=13).apply(df, ctx)
    assert res.dropped["reason"].to_list() in (["decontaminate:ngram"], ["decontaminate:embedding"])
    res = Decontaminate(eval_sets=["mtbench"], embed_threshold=None).apply(
        frame([[("user", "Write a captivating travel blog entry on a recent Hawaii trip with cultural highlights and sights."),
                ("assistant", "Here is a blog post about Hawaii.")]]), ctx)
    assert res.dropped.height == 0  # no shared 13-gram: only the embedding check could catch it


def test_golden_items_are_read_when_present(tmp_path, monkeypatch):
    (tmp_path / "golden" / "items").mkdir(parents=True)
    (tmp_path / "golden" / "items" / "support.jsonl").write_text(json.dumps(
        {"id": "sup-001", "messages": [{"role": "user", "content": "Where is my refund?"}]}) + "\n")
    assert evalsets.golden_items(tmp_path) == [("golden:sup-001", "Where is my refund?")]
