import json

from sftloop.curate.sources import SourceConfig, read_source
from sftloop.schema import QuarantineWriter


def _read(fix, tmp_path, fmt, name, **kw):
    qpath = tmp_path / "q.jsonl"
    qw = QuarantineWriter(qpath)
    recs, stats = read_source(SourceConfig(name=fmt, format=fmt, path=str(fix / name), **kw), qw)
    qw.close()
    q = [json.loads(line) for line in qpath.read_text().splitlines()] if qpath.exists() else []
    for s in stats:
        assert s.rows_in == s.rows_out + s.rows_quarantined
    return recs, stats, q


def test_sharegpt_roles_chunks_and_truncated_tail(fix, tmp_path):
    recs, stats, q = _read(fix, tmp_path, "sharegpt", "sharegpt.json")
    assert stats[0].rows_in == 6 and len(recs) == 4
    assert [(x["row"], x["field"]) for x in q] == [(4, "conversations.0.from"), (6, "<json>")]
    a1 = next(r for r in recs if r.meta["origin_id"] == "a_1")
    # a chunk that starts with the assistant keeps its turns here; cleaning cuts the orphan reply
    assert [m.role for m in a1.messages] == ["assistant", "user", "assistant"]
    b0 = next(r for r in recs if r.meta["origin_id"] == "b_0")
    assert b0.messages[1].role == "assistant"  # "bing" is an assistant


def test_messages_jsonl_keeps_multi_turn_and_timestamps(fix, tmp_path):
    recs, stats, q = _read(fix, tmp_path, "messages", "messages.jsonl")
    assert len(recs) == 3 and len(q) == 2
    assert len(recs[0].messages) == 5 and recs[0].messages[0].role == "system"
    assert recs[0].meta["timestamp"] == "2026-11-02T10:00:00Z"
    assert {x["field"] for x in q} == {"messages", "messages.0.role"}


def test_pairs_extraction_only_when_asked(fix, tmp_path):
    recs, _, _ = _read(fix, tmp_path, "messages", "messages.jsonl", pairs=True)
    assert len(recs) == 4  # the 2-reply conversation became two records with context
    assert [m.role for m in recs[1].messages] == ["system", "user", "assistant", "user", "assistant"]
    assert recs[0].messages[-1].content.startswith("I am sorry")


def test_alpaca(fix, tmp_path):
    recs, _, q = _read(fix, tmp_path, "alpaca", "alpaca.jsonl")
    assert len(recs) == 3
    assert recs[1].messages[0].content == "Rewrite the following sentence in a polite tone.\n\nSend me my invoice now."
    assert [(x["row"], x["field"]) for x in q] == [(4, "instruction"), (5, "instruction")]


def test_bitext_csv_meta(fix, tmp_path):
    recs, _, q = _read(fix, tmp_path, "bitext", "bitext.csv")
    assert len(recs) == 3
    assert recs[0].meta == {"intent": "cancel_order", "category": "ORDER"}
    assert q[0]["row"] == 5 and q[0]["field"].startswith("messages.0.content")


def test_multiwoz(fix, tmp_path):
    recs, _, q = _read(fix, tmp_path, "multiwoz", "multiwoz.jsonl")
    assert len(recs) == 1 and [m.role for m in recs[0].messages] == ["user", "assistant"] * 2
    assert q[0]["field"] == "turns.1.speaker"
