import json

import polars as pl
import pytest
from pydantic import ValidationError

from sftloop.schema import (ChatRecord, MAX_ROW_BYTES, ReadStats, content_id, frame_to_records, iter_records,
                            read_records, records_frame, write_jsonl, write_parquet)

GOOD = {"messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"}], "source": "t"}


def test_id_is_a_stable_content_hash():
    a = ChatRecord.model_validate(GOOD)
    b = ChatRecord.model_validate({**GOOD, "source": "other", "meta": {"x": 1}})
    assert a.id == b.id == content_id(GOOD["messages"])
    c = ChatRecord.model_validate({**GOOD, "messages": GOOD["messages"][:1] + [{"role": "assistant", "content": "Hey"}]})
    assert c.id != a.id


@pytest.mark.parametrize("bad,field", [
    ({**GOOD, "messages": [{"role": "user", "content": "only a question"}]}, "messages"),
    ({**GOOD, "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "   "}]}, "messages.1.content"),
    ({**GOOD, "messages": [{"role": "human", "content": "q"}, {"role": "assistant", "content": "a"}]}, "messages.0.role"),
    ({**GOOD, "weight": 0}, "weight"),
    ({**GOOD, "messages": "not a list"}, "messages"),
    ({"messages": GOOD["messages"]}, "source"),
])
def test_invalid_records_name_the_field(bad, field):
    with pytest.raises(ValidationError) as e:
        ChatRecord.model_validate(bad)
    locs = [".".join(str(x) for x in err["loc"]) for err in e.value.errors()]
    assert any(loc.startswith(field) for loc in locs), locs


def _bad_jsonl(path):
    rows = [
        json.dumps(GOOD).encode(),                                                    # 1 ok
        b'{"messages": [ {"role": "user", ',                                          # 2 bad JSON
        json.dumps({**GOOD, "weight": "heavy"}).encode(),                              # 3 wrong type
        json.dumps({**GOOD, "messages": [{"role": "user", "content": "q?"}]}).encode(),  # 4 no assistant turn
        json.dumps({**GOOD, "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}).encode(),  # 5 empty
        b'{"messages": [{"role": "user", "content": "caf\xe9"}], "source": "t"}',     # 6 invalid UTF-8
        json.dumps({**GOOD, "meta": {"blob": "x" * (10 * 1024 * 1024)}}).encode(),     # 7 a 10 MB row
        json.dumps({**GOOD, "messages": GOOD["messages"] + [{"role": "user", "content": "more"}, {"role": "assistant", "content": "sure"}]}).encode(),  # 8 ok
    ]
    path.write_bytes(b"\n".join(rows) + b"\n")
    return path


def test_bad_jsonl_rows_are_quarantined_with_file_row_field_and_nothing_is_lost(tmp_path):
    src = _bad_jsonl(tmp_path / "in.jsonl")
    qpath = tmp_path / "quarantine.jsonl"
    recs, stats = read_records(src, quarantine=qpath)
    assert stats.rows_in == 8 and stats.rows_out == 2 and stats.rows_quarantined == 6
    assert stats.rows_in == stats.rows_out + stats.rows_quarantined
    q = [json.loads(line) for line in qpath.read_text().splitlines()]
    assert [(r["row"], r["field"]) for r in q] == [
        (2, "<json>"), (3, "weight"), (4, "messages"), (5, "messages.1.content"), (6, "<encoding>"), (7, "meta.blob")]
    assert all(r["file"] == str(src) for r in q)
    assert len(q[5]["raw"]) > MAX_ROW_BYTES  # the raw row is kept, not dropped
    assert "over the max_row_bytes limit of 8,388,608; meta.blob alone is 10,485,760 bytes" in q[5]["error"]
    assert "e9" in q[4]["error"] and "\\xe9" in q[4]["raw"]  # the bad byte is named and kept
    assert "in.jsonl:3: field 'weight'" in stats.errors[1]


def test_parquet_round_trip_and_bad_parquet_rows(tmp_path):
    recs = [ChatRecord.model_validate(GOOD), ChatRecord.model_validate({**GOOD, "meta": {"lang": "de", "n": [1, 2]}, "weight": 3})]
    p = write_parquet(recs, tmp_path / "ok.parquet")
    back, stats = read_records(p)
    assert [r.model_dump() for r in back] == [r.model_dump() for r in recs]
    df = records_frame(recs)
    bad = df.with_columns(pl.when(pl.col("weight") > 2).then(pl.lit(-1.0)).otherwise(pl.col("weight")).alias("weight"))
    write_parquet(bad, tmp_path / "bad.parquet")
    stats = ReadStats("bad")
    got = list(iter_records(tmp_path / "bad.parquet", stats, tmp_path / "q.jsonl"))
    assert len(got) == 1 and stats.rows_quarantined == 1
    assert json.loads((tmp_path / "q.jsonl").read_text())["field"] == "weight"
    assert frame_to_records(df)[1].meta == {"lang": "de", "n": [1, 2]}


def test_jsonl_writer_round_trip(tmp_path):
    recs = [ChatRecord.model_validate({**GOOD, "meta": {"k": "v"}})]
    back, _ = read_records(write_jsonl(recs, tmp_path / "x.jsonl"))
    assert back[0] == recs[0]


def test_unsupported_extension_is_a_clear_error(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported file type"):
        read_records(tmp_path / "x.csv")


@pytest.mark.parametrize("weight", [0, -0.5, float("nan"), float("inf"), float("-inf"), "2", True, None])
def test_weight_must_be_a_finite_positive_number(weight):
    with pytest.raises(ValidationError) as e:
        ChatRecord.model_validate({**GOOD, "weight": weight})
    assert e.value.errors()[0]["loc"] == ("weight",)
    assert ChatRecord.model_validate({**GOOD, "weight": 3}).weight == 3.0  # an int is a number


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"])
def test_jsonl_in_any_unicode_encoding_is_read(tmp_path, codec):
    p = tmp_path / "x.jsonl"
    rows = [GOOD, {**GOOD, "messages": [{"role": "user", "content": "Gr\u00fc\u00dfe \u2014 \u65e5\u672c?"}, GOOD["messages"][1]]}]
    p.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows).encode(codec))
    recs, stats = read_records(p)
    assert stats.rows_quarantined == 0 and recs[1].messages[0].content == "Gr\u00fc\u00dfe \u2014 \u65e5\u672c?"


def test_row_limit_is_configurable_and_names_the_largest_field(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({**GOOD, "meta": {"note": "n" * 3000}}) + "\n" + json.dumps(GOOD) + "\n")
    qpath = tmp_path / "q.jsonl"
    recs, stats = read_records(p, quarantine=qpath, max_row_bytes=2000)
    q = json.loads(qpath.read_text())
    assert len(recs) == 1 and (q["row"], q["field"]) == (1, "meta.note") and "limit of 2,000" in q["error"]
    assert read_records(p, max_row_bytes=10_000)[1].rows_quarantined == 0


def test_unreadable_files_are_one_file_level_entry(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    (tmp_path / "gone.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    for name in ("bad.parquet", "gone.jsonl"):
        qpath = tmp_path / f"{name}.q"
        recs, stats = read_records(tmp_path / name, quarantine=qpath)
        q = json.loads(qpath.read_text())
        assert recs == [] and stats.rows_in == stats.rows_quarantined == 1
        assert q["row"] is None and q["field"] == "<file>" and stats.errors[0].startswith(f"{tmp_path / name}: field '<file>'")


def test_quarantine_writer_never_fails_on_a_raw_row(tmp_path):
    from sftloop.schema import Quarantined, QuarantineWriter

    qw = QuarantineWriter(tmp_path / "q.jsonl")
    qw.write(Quarantined("f", 1, "<encoding>", "bad", "caf\udce9"))  # a lone surrogate
    qw.close()
    assert "caf" in json.loads((tmp_path / "q.jsonl").read_text())["raw"]


def test_vectorised_parquet_row_sizes_equal_the_row_walk():
    import pyarrow as pa

    from sftloop.schema import _strings, batch_text_bytes, text_bytes

    rows = [{"id": None if i % 3 == 0 else f"id{i}",
             "messages": None if i % 7 == 0 else [{"role": "user", "content": None if i % 5 == 0 else "h\u00e9 \u65e5" * i}
                                                   for _ in range(i % 4)],
             "tags": [["a", None], None, ["bb"]] if i % 4 else None, "s": {"x": "yy", "n": i} if i % 6 else None,
             "weight": 1.0 if i % 2 else None} for i in range(60)]
    table = pa.Table.from_pylist(rows)
    for batch in [*table.to_batches(max_chunksize=16), table.slice(11, 30).to_batches()[0]]:
        want = [sum(text_bytes(s) for _, s in _strings(obj)) for obj in batch.to_pylist()]
        assert batch_text_bytes(batch).tolist() == want
    assert batch_text_bytes(pa.RecordBatch.from_pydict({"d": pa.array(["a"]).dictionary_encode()})) is None  # walked
