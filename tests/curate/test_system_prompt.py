import json

import polars as pl
import pytest
from curate_frames import chat_config, frame, run_version, write_chat

from sftloop.curate.config import ConfigError, parse_stage
from sftloop.curate.stages.system_prompt import SystemPrompt, distribution_markdown, prompt_distribution
from sftloop.schema import content_id

P = "You are the support assistant of an online store. Answer briefly."
Q = "Where is my order number 1234? It has not arrived yet."
A = "I am sorry it is late. Let me check the tracking for order 1234 and get back to you."

ROWS = [
    [("user", Q), ("assistant", A)],                                            # 0 none
    [("system", P), ("user", Q), ("assistant", A)],                             # 1 the same
    [("system", "  You are the support assistant of an online store.\n Answer briefly. "), ("user", Q),
     ("assistant", A)],                                                         # 2 same up to whitespace
    [("system", "You are a pirate."), ("user", Q), ("assistant", A)],           # 3 different
    [("system", P), ("system", "Be terse."), ("user", Q), ("assistant", A)],    # 4 two system messages
    [("user", Q), ("system", P), ("assistant", A)],                             # 5 not first
]


def reasons(res):
    return dict(zip(res.dropped["_row"].to_list(), res.dropped["reason"].to_list()))


def systems(res):
    return [[m["content"] for m in msgs if m["role"] == "system"] for msgs in res.kept["messages"].to_list()]


def test_require_drops_missing_and_different_but_not_whitespace_variants(ctx):
    res = SystemPrompt(prompt=P, mode="require").apply(frame(ROWS), ctx)
    assert reasons(res) == {0: "system_prompt:missing", 3: "system_prompt:different", 4: "system_prompt:multiple",
                            5: "system_prompt:misplaced"}
    assert res.kept["_row"].to_list() == [1, 2]
    assert res.kept["messages"].to_list() == frame(ROWS)["messages"].to_list()[1:3]  # nothing rewritten


def test_replace_gives_every_row_the_exact_prompt_first(ctx):
    res = SystemPrompt(prompt=P, mode="replace").apply(frame(ROWS), ctx)
    assert reasons(res) == {4: "system_prompt:multiple", 5: "system_prompt:misplaced"}
    assert systems(res) == [[P]] * 4
    for msgs in res.kept["messages"].to_list():
        assert msgs[0] == {"role": "system", "content": P} and [m["role"] for m in msgs[1:]] == ["user", "assistant"]
    assert ctx.reports["system_prompt"] == {"rows_added": 1, "rows_replaced": 2, "rows_unchanged": 1}
    # changed rows get the id of their new content; the old id is kept in meta
    for rid, msgs, meta in res.kept.select("id", "messages", "meta").iter_rows():
        assert rid == content_id(msgs)
    changed = [json.loads(m) for m in res.kept["meta"]]
    assert [("pre_system_prompt_id" in m) for m in changed] == [True, False, True, True]


def test_add_only_fills_missing_prompts(ctx):
    res = SystemPrompt(prompt=P, mode="add").apply(frame(ROWS), ctx)
    assert reasons(res) == {4: "system_prompt:multiple", 5: "system_prompt:misplaced"}
    assert systems(res) == [[P], [P], [ROWS[2][0][1]], ["You are a pirate."]]
    assert ctx.reports["system_prompt"]["rows_added"] == 1 and ctx.reports["system_prompt"]["rows_replaced"] == 0


def test_prompt_file_and_config_errors(tmp_path, ctx):
    f = tmp_path / "serving.txt"
    f.write_text(P)
    st = parse_stage(0, {"type": "system_prompt", "prompt_file": str(f), "mode": "require"})
    assert st.prompt == P and st.model_dump()["prompt"] == P  # the text, not the path, is in the version's config
    with pytest.raises(ConfigError, match="exactly one"):
        parse_stage(0, {"type": "system_prompt", "mode": "replace"})
    with pytest.raises(ConfigError, match="missing.txt"):
        parse_stage(0, {"type": "system_prompt", "prompt_file": str(tmp_path / "missing.txt")})
    with pytest.raises(ConfigError, match="mode"):
        parse_stage(0, {"type": "system_prompt", "prompt": P, "mode": "prepend"})


def test_distribution_counts_distinct_prompts_and_rows_without(ctx):
    df = frame(ROWS + [[("system", "You are a pirate."), ("user", "Ahoy there, where is my parrot?"), ("assistant", A)]])
    d = prompt_distribution(df.lazy())
    assert d["rows"] == 7 and d["rows_without"] == 1 and d["rows_with_several"] == 1
    # P (x3 counting the whitespace variant and the misplaced one), pirate (x2), P + "Be terse." (x1)
    assert [t["count"] for t in d["top"]] == [3, 2, 1] and d["distinct"] == 3
    assert d["top"][1]["excerpt"] == "You are a pirate." and len(d["top"][0]["sha256"]) == 12
    md = distribution_markdown({"train": d})
    assert "| train | 7 | 1 | 3 | 1 |" in md and "You are a pirate." in md


def test_writer_reports_system_prompts_with_and_without_the_stage(tmp_path):
    rows = [{"messages": [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": f"{Q} {i}"},
                          {"role": "assistant", "content": A}]} for i in range(3)]
    rows += [{"messages": [{"role": "user", "content": f"{Q} {i}"}, {"role": "assistant", "content": A}]}
             for i in range(3, 5)]
    data = write_chat(tmp_path, rows)

    def run(stages: str) -> dict:
        cfg = tmp_path / "c.toml"
        cfg.write_text(chat_config("sp", data) + stages)
        v = run_version(cfg, tmp_path, "sp")
        assert "## System prompts" in (v / "funnel.md").read_text()
        return json.loads((v / "manifest.json").read_text())["system_prompts"]

    before = run("")
    assert before["train"]["rows_without"] == 2 and before["train"]["top"][0]["count"] == 3
    assert before["input"] == before["train"]
    after = run(f'[[stages]]\ntype = "system_prompt"\nprompt = "{P}"\nmode = "replace"\n')
    assert after["train"]["rows_without"] == 0 and after["train"]["distinct"] == 1
    assert after["train"]["top"][0]["count"] == 5 and after["train"]["top"][0]["excerpt"] == P
    assert after["input"] == before["input"]  # what came in, before the stage replaced it
