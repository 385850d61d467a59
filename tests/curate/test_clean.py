import json

from curate_frames import frame

from sftloop.curate.stages.clean import Clean, fix_roles


def test_invisible_chars_boilerplate_whitespace(ctx):
    df = frame([[("user", "What\u200b is\u00a0this?\x07Share Prompt"),
                 ("assistant", "Here is code:\n\npython\nCopy code\nprint('hi')   \n\n\n\nDone.")]])
    res = Clean().apply(df, ctx)
    msgs = res.kept["messages"][0].to_list()
    assert msgs[0]["content"] == "What is this?"
    assert msgs[1]["content"] == "Here is code:\n\npython\nprint('hi')\n\nDone."
    meta = json.loads(res.kept["meta"][0])
    assert meta["pre_clean_id"] == df["id"][0] and res.kept["id"][0] != df["id"][0]


def test_html_in_code_is_kept_but_exporter_wrappers_go(ctx):
    df = frame([[("user", "Show me a div in html please"),
                 ("assistant", '<div class="markdown prose w-full break-words"><p>Use <div> like this.</p></div>')]])
    out = Clean().apply(df, ctx).kept["messages"][0].to_list()[1]["content"]
    assert out == "<p>Use <div> like this.</p>"


def test_role_repair():
    m = lambda r, c: {"role": r, "content": c}  # noqa: E731
    fixed, why, notes = fix_roles([m("assistant", "orphan"), m("user", "a"), m("user", "b"), m("assistant", "c"), m("user", "d")])
    assert why is None and [x["role"] for x in fixed] == ["user", "assistant"]
    assert fixed[0]["content"] == "a\n\nb" and notes == {"merged_turns": 1, "cut_leading_assistant": 1, "cut_trailing_user": 1}
    _, why, _ = fix_roles([m("user", "a"), m("system", "late"), m("assistant", "b")])
    assert why == "roles:system_after_start"
    _, why, _ = fix_roles([m("assistant", "only")])
    assert why == "roles:no_user_assistant_pair"


def test_rows_that_cannot_alternate_are_dropped_with_reason(ctx):
    df = frame([[("user", "hello there friend"), ("assistant", "hi")], [("assistant", "only me talking here")]])
    res = Clean().apply(df, ctx)
    assert res.kept.height == 1 and res.dropped["reason"].to_list() == ["roles:no_user_assistant_pair"]
