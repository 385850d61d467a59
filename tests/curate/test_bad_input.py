"""Bad input never aborts a run and never passes silently (issue 12, section 3).

Every class ends as quarantined rows (file, row, field, readable reason) or as an exit-2 message naming
the file, with nothing published on failure and LATEST unchanged. Tiny files in tmp_path; the CLI runs
in-process through `curate.__main__.main` with a cheap config (clean only)."""

import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import polars as pl
import pytest

from sftloop.curate.__main__ import main
from sftloop.curate.sources import InputError, SourceConfig, read_source, resolve_paths
from sftloop.dataset_version import dataset_lock, work_dir
from sftloop.schema import ChatRecord, QuarantineWriter, records_frame, write_parquet

Q, A = "How do I reset my router password?", "Hold the reset button for ten seconds, then log in with the default password."
MSGS = [{"role": "user", "content": Q}, {"role": "assistant", "content": A}]


def msg_row(i: int, **kw) -> dict:
    return {"messages": [{"role": "user", "content": f"{Q} (case {i})"}, {"role": "assistant", "content": A}], **kw}


def jsonl_text(n: int = 3) -> str:
    return "".join(json.dumps(msg_row(i)) + "\n" for i in range(n))


def csv_text(n: int = 3, sep: str = ",") -> str:
    return f"instruction{sep}output\n" + "".join(f'"{Q} (case {i})"{sep}"{A}"\n' for i in range(n))


def read(tmp_path, fmt: str, path, **kw):
    qpath = tmp_path / "q.jsonl"
    qpath.unlink(missing_ok=True)
    qw = QuarantineWriter(qpath)
    recs, stats = read_source(SourceConfig(name="s", format=fmt, path=str(path), **kw), qw)
    qw.close()
    q = [json.loads(line) for line in qpath.read_text().splitlines()] if qpath.exists() else []
    for s in stats:
        assert s.rows_in == s.rows_out + s.rows_quarantined  # nothing lost
    return recs, stats, q


# ---------------------------------------------------------------- encodings


LATIN1 = "Caf\u00e9 cr\u00e8me: how long do I steam the milk for a latte?"


@pytest.mark.parametrize("suffix,fmt", [(".jsonl", "messages"), (".json", "messages"), (".csv", "alpaca"),
                                        (".tsv", "alpaca")])
def test_latin1_bytes_quarantine_only_their_row(tmp_path, suffix, fmt):
    sep = "\t" if suffix == ".tsv" else ","
    if suffix in (".csv", ".tsv"):
        good = csv_text(2, sep).encode()
        bad = f'"{LATIN1}"{sep}"{A}"\n'.encode("latin-1")
        data = good + bad + f'"{Q} last"{sep}"{A}"\n'.encode()
        bad_row = 4
    else:
        rows = [json.dumps(msg_row(i), ensure_ascii=False).encode() for i in range(2)]
        rows.append(json.dumps(msg_row(9, ), ensure_ascii=False).replace("case 9", LATIN1).encode("latin-1"))
        rows.append(json.dumps(msg_row(3)).encode())
        data = b"\n".join(rows) + b"\n" if suffix == ".jsonl" else b"[\n" + b",\n".join(rows) + b"\n]\n"
        bad_row = 3
    p = tmp_path / f"in{suffix}"
    p.write_bytes(data)
    recs, stats, q = read(tmp_path, fmt, p)
    assert len(recs) == 3 and stats[0].rows_quarantined == 1
    assert (q[0]["file"], q[0]["row"], q[0]["field"]) == (str(p), bad_row, "<encoding>")
    assert "not valid UTF-8" in q[0]["error"] and "e9" in q[0]["error"] and "Latin-1" in q[0]["error"]
    assert "\\xe9" in q[0]["raw"]  # the bad byte is kept, readable


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
@pytest.mark.parametrize("suffix,fmt", [(".jsonl", "messages"), (".json", "messages"), (".csv", "alpaca")])
def test_bom_and_utf16_utf32_files_are_decoded(tmp_path, codec, suffix, fmt):
    text = {".jsonl": jsonl_text(3), ".json": json.dumps([msg_row(i) for i in range(3)]),
            ".csv": csv_text(3)}[suffix].replace("case 1", "caf\u00e9 \u2014 \u65e5\u672c")
    p = tmp_path / f"in{suffix}"
    p.write_bytes(text.encode(codec))
    recs, stats, q = read(tmp_path, fmt, p)
    assert q == [] and len(recs) == 3
    assert "caf\u00e9 \u2014 \u65e5\u672c" in recs[1].messages[0].content
    assert not recs[0].messages[0].content.startswith("\ufeff")


def test_invalid_byte_sequences_mid_file_cost_one_row(tmp_path):
    p = tmp_path / "in.jsonl"
    lines = jsonl_text(4).encode().splitlines(keepends=True)
    lines[2] = lines[2].replace(b"case 2", b"case \xc3\x28 \xed\xa0\x80")  # bad continuation + encoded surrogate
    p.write_bytes(b"".join(lines))
    recs, _, q = read(tmp_path, "messages", p)
    assert len(recs) == 3 and [(x["row"], x["field"]) for x in q] == [(3, "<encoding>")]


def test_parquet_string_bytes_that_are_not_utf8_cost_their_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = records_frame([ChatRecord.model_validate({"messages": MSGS, "source": "t"})] * 3).to_arrow()
    ids = b"id-0id-1caf\xe9"  # row 3's id holds a Latin-1 byte (pyarrow writes it unchecked)
    offsets = pa.array([0, 4, 8, 12], type=pa.int32()).buffers()[1]
    bad_ids = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(ids)])
    p = tmp_path / "in.parquet"
    pq.write_table(good.set_column(0, "id", bad_ids), p)
    recs, _, q = read(tmp_path, "records", p)
    assert [r.id for r in recs] == ["id-0", "id-1"]
    assert [(x["row"], x["field"]) for x in q] == [(3, "<encoding>")] and "column 'id'" in q[0]["error"]
    assert json.loads(q[0]["raw"])["id"] == "caf\\xe9"  # the raw row, the bad byte shown


def test_undecodable_json_document_is_accounted(tmp_path):
    p = tmp_path / "in.json"
    p.write_bytes(b'{"messages": [{"role": "user", "content": "caf\xe9"}, {"role": "assistant", "content": "ok"}]}')
    recs, stats, q = read(tmp_path, "messages", p)
    assert recs == [] and stats[0].rows_quarantined == 1 and q[0]["field"] == "<encoding>"


# ---------------------------------------------------------------- size limits


@pytest.mark.parametrize("suffix,fmt,field", [(".jsonl", "messages", "messages.1.content"),
                                              (".json", "messages", "messages.1.content"),
                                              (".csv", "alpaca", "output"), (".tsv", "alpaca", "output"),
                                              (".parquet", "records", "messages.1.content")])
def test_one_size_limit_for_every_format(tmp_path, suffix, fmt, field):
    big = "x" * 5000
    p = tmp_path / f"in{suffix}"
    if suffix == ".parquet":
        recs = [ChatRecord.model_validate({"messages": MSGS, "source": "t"}),
                ChatRecord.model_validate({"messages": [MSGS[0], {"role": "assistant", "content": big}], "source": "t"})]
        write_parquet(recs, p)
    elif suffix in (".csv", ".tsv"):
        sep = "\t" if suffix == ".tsv" else ","
        p.write_text(csv_text(1, sep) + f'"{Q}"{sep}"{big}"\n')
    else:
        rows = [msg_row(0), {"messages": [MSGS[0], {"role": "assistant", "content": big}]}]
        p.write_text("".join(json.dumps(r) + "\n" for r in rows) if suffix == ".jsonl" else json.dumps(rows))
    recs, _, q = read(tmp_path, fmt, p, max_row_bytes=4000)
    assert len(recs) == 1 and len(q) == 1
    assert q[0]["row"] == (3 if suffix in (".csv", ".tsv") else 2) and q[0]["field"] == field  # csv: header is row 1
    assert "over the max_row_bytes limit of 4,000" in q[0]["error"] and "5,000 bytes" in q[0]["error"]
    recs, _, q = read(tmp_path, fmt, p, max_row_bytes=10_000)  # the limit is the config's, not a constant
    assert len(recs) == 2 and q == []


def test_csv_field_over_128kb_is_read_and_one_over_the_limit_quarantined(tmp_path):
    p = tmp_path / "in.csv"
    p.write_text(csv_text(1) + f'"{Q}","{"long answer " * 20_000}"\n' + f'"{Q} after","{A}"\n')  # 240 KB field
    recs, _, q = read(tmp_path, "alpaca", p)
    assert len(recs) == 3 and q == []
    recs, _, q = read(tmp_path, "alpaca", p, max_row_bytes=100_000)
    assert len(recs) == 2 and [(x["row"], x["field"]) for x in q] == [(3, "output")]


# ---------------------------------------------------------------- structure


def test_csv_rows_with_extra_or_missing_columns_are_quarantined_not_misaligned(tmp_path):
    p = tmp_path / "in.csv"
    p.write_text(csv_text(1) + f'"{Q}","{A}","surplus"\n' + f'"{Q} short"\n' + f'"{Q} fine","{A}"\n')
    recs, _, q = read(tmp_path, "alpaca", p)
    assert len(recs) == 2
    assert [(x["row"], x["field"]) for x in q] == [(3, "<columns>"), (4, "<columns>")]
    assert "3 fields, the header has 2" in q[0]["error"] and "surplus" in q[0]["raw"]


def test_csv_bad_header_is_one_file_level_entry(tmp_path):
    p = tmp_path / "in.csv"
    p.write_text("instruction,output,output\n" + f'"{Q}","{A}","x"\n')
    recs, stats, q = read(tmp_path, "alpaca", p)
    assert recs == [] and stats[0].rows_in == 1 and q[0]["row"] is None and "duplicate column 'output'" in q[0]["error"]


@pytest.mark.parametrize("suffix,data", [(".json", b""), (".json", b"  \n\t"), (".json", b"[]"), (".json", b"{}"),
                                         (".jsonl", b""), (".jsonl", b"\n\n  \n"), (".csv", b""), (".csv", b" \n\n"),
                                         (".csv", b"instruction,output\n"), (".JSONL", b""), (".parquet", b"")])
def test_empty_files_are_noted_not_lost(tmp_path, suffix, data):
    p = tmp_path / f"in{suffix}"
    p.write_bytes(data)
    recs, stats, q = read(tmp_path, {".csv": "alpaca", ".parquet": "records"}.get(suffix, "messages"), p)
    assert recs == [] and q == [] and stats[0].rows_in == 0 and stats[0].notes == ["no rows (empty file)"]


@pytest.mark.parametrize("data,err", [(b'"just a string"', "top-level JSON is a str"), (b"42", "is a int"),
                                      (b'{"messages": [', "invalid JSON at line 1")])
def test_json_that_is_not_rows_is_a_file_level_entry(tmp_path, data, err):
    p = tmp_path / "in.json"
    p.write_bytes(data)
    recs, stats, q = read(tmp_path, "messages", p)
    assert recs == [] and stats[0].rows_in == 1 and q[0]["row"] is None and q[0]["field"] == "<json>"
    assert err in q[0]["error"]


def test_json_object_of_rows_and_broken_array_elements(tmp_path):
    p = tmp_path / "obj.json"
    p.write_text(json.dumps({"a": msg_row(0), "b": msg_row(1)}))
    assert len(read(tmp_path, "messages", p)[0]) == 2
    p = tmp_path / "arr.json"  # element 2 is broken mid-file, element 4 is truncated at the end
    p.write_text("[\n" + json.dumps(msg_row(0)) + ',\n{"messages": [oops]},\n' + json.dumps(msg_row(2))
                 + ',\n{"messages": [{"role": "user", "cont')
    recs, stats, q = read(tmp_path, "messages", p)
    assert len(recs) == 2 and [(x["row"], x["field"]) for x in q] == [(2, "<json>"), (4, "<json>")]
    assert "line 3 column 15" in q[0]["error"] and "truncated" in q[1]["error"]
    assert stats[0].notes == ["JSON array is not closed (truncated file?)"]
    p = tmp_path / "nested.json"  # the broken element holds objects of its own: none of them is taken for a row
    p.write_text(json.dumps([msg_row(0)])[:-1] + ', {"messages": [{"role": "user", "content": "q"}, bad, '
                 '{"role": "assistant", "content": "a"}], "meta": {"k": "v"}}, ' + json.dumps(msg_row(2)) + "]")
    recs, stats, q = read(tmp_path, "messages", p)
    assert len(recs) == 2 and [(x["row"], x["field"]) for x in q] == [(2, "<json>")] and stats[0].notes == []


def test_directories_unreadable_and_unsupported_files_in_a_glob(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.jsonl").write_text(jsonl_text(2))
    (d / "b.jsonl").mkdir()  # a directory matching the glob: skipped with a note
    (d / "c.jsonl").symlink_to(d / "gone.jsonl")  # cannot be opened
    (d / "d.txt").write_text("notes")
    (d / "e.parquet").write_bytes(b"PAR1 not really")
    recs, stats, q = read(tmp_path, "messages", d / "*")
    assert len(recs) == 2
    by_file = {os.path.basename(s.file): s for s in stats}
    assert by_file["b.jsonl"].notes == ["a directory: skipped"] and by_file["b.jsonl"].rows_in == 0
    assert {os.path.basename(x["file"]): (x["row"], x["field"]) for x in q} == {
        "c.jsonl": (None, "<file>"), "d.txt": (None, "<file>"), "e.parquet": (None, "<file>")}
    assert "cannot read the file" in q[0]["error"] and "unsupported file type '.txt'" in q[1]["error"]


def test_parquet_with_wrong_columns_or_types(tmp_path):
    p = tmp_path / "cols.parquet"
    pl.DataFrame({"prompt": ["a", "b"], "reply": ["c", "d"]}).write_parquet(p)
    recs, _, q = read(tmp_path, "records", p)
    assert recs == [] and [(x["row"], x["field"]) for x in q] == [(1, "messages"), (2, "messages")]
    p = tmp_path / "types.parquet"
    records_frame([ChatRecord.model_validate({"messages": MSGS, "source": "t"})]).with_columns(
        weight=pl.lit("heavy")).write_parquet(p)
    recs, _, q = read(tmp_path, "records", p)
    assert recs == [] and q[0]["field"] == "weight"


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("weight", [0, -1, math.nan, math.inf, "2", True, [1]])
def test_bad_weights_are_quarantined_not_coerced(tmp_path, weight):
    p = tmp_path / "in.jsonl"
    p.write_text(json.dumps({"messages": MSGS, "weight": weight}) + "\n" + json.dumps({"messages": MSGS}) + "\n")
    recs, _, q = read(tmp_path, "records", p, weight=2.5)
    assert [(x["row"], x["field"]) for x in q] == [(1, "weight")]
    assert recs[0].weight == 2.5  # a missing weight takes the source's


@pytest.mark.parametrize("row,field", [
    ({"messages": [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "y"}]}, "messages.0.content"),
    ({"messages": []}, "messages"),
    ({"messages": MSGS, "meta": "{not json"}, "meta"),
    ({"messages": MSGS, "meta": [1, 2]}, "meta"),
    ({"messages": MSGS, "id": 17}, "id"),
    ({"messages": MSGS, "source": ""}, "source"),
    (["not", "an", "object"], "<row>"),
])
def test_invalid_values_name_the_field(tmp_path, row, field):
    p = tmp_path / "in.jsonl"
    p.write_text(json.dumps(row) + "\n")
    recs, _, q = read(tmp_path, "records", p)
    assert recs == [] and q[0]["field"] == field


# ---------------------------------------------------------------- the CLI: exit codes, LATEST, locking


def config(tmp_path, sources: list[tuple[str, str, str]], stages: str = '[[stages]]\ntype = "clean"\n') -> str:
    body = 'name = "bad"\noutput_dir = "out"\n'
    for name, fmt, path in sources:
        body += f'[[sources]]\nname = "{name}"\nformat = "{fmt}"\npath = "{path}"\n'
    p = tmp_path / "c.toml"
    p.write_text(body + stages + "[split]\nval_fraction = 0.0\n")
    return str(p)


def cli(tmp_path, cfg, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["run", cfg, "--root", str(tmp_path), "--quiet"])
    return rc, capsys.readouterr().err


def base(tmp_path):
    return tmp_path / "out" / "bad"


def latest(tmp_path) -> str | None:
    p = base(tmp_path) / "LATEST"
    return p.read_text().strip() if p.exists() else None


def versions(tmp_path) -> set[str]:
    return {p.name for p in base(tmp_path).iterdir() if (p / "manifest.json").exists()} if base(tmp_path).exists() else set()


def test_records_ids_are_kept_through_clean_and_funnel_counts_file_level_entries(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    rows = [{"id": "keep-me-1", "messages": [{"role": "user", "content": Q + "Share Prompt"},  # clean edits it
                                             {"role": "assistant", "content": A}], "weight": 3.0},
            {"messages": [{"role": "user", "content": Q + "  \u200b"}, {"role": "assistant", "content": A + " Sure."}]},
            {"id": "keep-me-2", "messages": MSGS, "weight": 0}]
    (d / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "b.parquet").write_bytes(b"garbage")
    rc, err = cli(tmp_path, config(tmp_path, [("rec", "records", f"{d}/*")]), capsys)
    assert rc == 0, err
    v = base(tmp_path) / latest(tmp_path)
    train = pl.read_parquet(v / "train.parquet")
    assert train["id"].to_list()[0] == "keep-me-1"
    assert train["messages"].to_list()[0][0]["content"] == Q  # cleaned, id kept
    assert train["id"].to_list()[1] == ChatRecord.model_validate(
        {"messages": train["messages"].to_list()[1], "source": "x"}).id  # no id given: the content hash
    m = json.loads((v / "manifest.json").read_text())
    assert m["rows_in"] == 4 and m["counts"]["quarantined"] == 2  # 1 bad row + 1 unreadable file
    assert m["rows_in"] == m["counts"]["train"] + m["counts"]["val"] + m["counts"]["excluded"] + m["counts"]["quarantined"]
    q = [json.loads(line) for line in (v / "quarantine.jsonl").read_text().splitlines()]
    assert sorted((os.path.basename(x["file"]), x["row"], x["field"]) for x in q) == [
        ("a.jsonl", 3, "weight"), ("b.parquet", None, "<file>")]
    assert not [p for p in base(tmp_path).iterdir() if p.name.startswith((".work", ".writing"))]  # cleaned up
    assert v.stat().st_mode & 0o777 == 0o777 & ~_umask()  # not the temp dir's private 0700


def _umask() -> int:
    um = os.umask(0)
    os.umask(um)
    return um


@pytest.mark.parametrize("path,needle", [("{d}/missing.jsonl", "missing.jsonl' matches no file"),
                                         ("{d}/*.none", "*.none' matches no file"),
                                         ("asset:no-such-asset", "unknown asset 'no-such-asset'"),
                                         ("dataset:{d}/nowhere", "nowhere is not a dataset version"),
                                         ("{d}/sub", "matches only directories")])
def test_input_that_cannot_be_curated_exits_2_naming_it(tmp_path, capsys, path, needle):
    (tmp_path / "sub").mkdir()
    rc, err = cli(tmp_path, config(tmp_path, [("x", "messages", path.format(d=tmp_path))]), capsys)
    assert rc == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # a first run that published nothing leaves no dataset dir


def test_empty_quarantined_or_fully_dropped_input_exits_2_and_keeps_latest(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text(jsonl_text(3))
    rc, err = cli(tmp_path, config(tmp_path, [("x", "messages", str(good))]), capsys)
    assert rc == 0, err
    before, vs = latest(tmp_path), versions(tmp_path)

    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    rc, err = cli(tmp_path, config(tmp_path, [("x", "messages", str(empty))]), capsys)
    assert rc == 2 and "no input rows" in err and "empty.json" in err

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": MSGS[:1]}) + "\n{oops\n")
    rc, err = cli(tmp_path, config(tmp_path, [("x", "messages", str(bad))]), capsys)
    assert rc == 2 and "all 2 input rows were quarantined" in err and "bad.jsonl:1: field 'messages'" in err

    rc, err = cli(tmp_path, config(tmp_path, [("x", "messages", str(good))],
                                   stages='[[stages]]\ntype = "min_words"\nuser_min = 50\nmax_drop_share = 1.0\n'), capsys)
    assert rc == 2 and "no row survived the stages" in err and "min_words dropped 3" in err
    assert latest(tmp_path) == before and versions(tmp_path) == vs
    assert not [p for p in base(tmp_path).iterdir() if p.name.startswith((".work", ".writing"))]


def test_a_failure_while_writing_publishes_nothing_injected_failure(tmp_path, capsys, monkeypatch):
    good = tmp_path / "good.jsonl"
    good.write_text(jsonl_text(3))
    cfg = config(tmp_path, [("x", "messages", str(good))])
    assert cli(tmp_path, cfg, capsys)[0] == 0
    before, vs = latest(tmp_path), versions(tmp_path)
    good.write_text(jsonl_text(4))  # new content: a new version would be written

    def boom(*a, **k):  # a fault injected into the writer (a disk that fills up while writing)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("sftloop.curate.write.funnel_png", boom)
    rc, err = cli(tmp_path, cfg, capsys)
    assert rc == 2 and "No space left on device" in err
    assert latest(tmp_path) == before and versions(tmp_path) == vs
    assert not [p for p in base(tmp_path).iterdir() if p.name.startswith((".work", ".writing"))]


def test_a_dataset_name_is_locked_while_a_run_writes_it(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text(jsonl_text(3))
    cfg = config(tmp_path, [("x", "messages", str(good))])
    base(tmp_path).mkdir(parents=True)
    with open(base(tmp_path) / ".lock", "a+") as fh:  # another run's lock (flock conflicts across open files)
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.write("4242\n")
        fh.flush()
        rc, err = cli(tmp_path, cfg, capsys)
    assert rc == 2 and "dataset bad is being written by another run (pid 4242); try again when it ends" in err
    assert latest(tmp_path) is None
    # a run killed while holding the lock does not block the next one (the kernel drops a dead process's flock)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys, time
        fh = open({str(base(tmp_path) / '.lock')!r}, "a+"); fcntl.flock(fh, fcntl.LOCK_EX)
        os.makedirs({str(base(tmp_path))!r} + f"/.work-{{os.getpid()}}-abc", exist_ok=True)
        print("held", flush=True); time.sleep(60)""")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    rc, err = cli(tmp_path, cfg, capsys)
    assert rc == 0, err
    assert not (base(tmp_path) / f".work-{holder.pid}-abc").exists()  # its work dir was removed


def test_each_run_gets_its_own_work_dir_and_the_lock_is_reentrant(tmp_path):
    b = tmp_path / "ds"
    w1, w2 = work_dir(b), work_dir(b)
    assert w1 != w2 and w1.parent == w2.parent == b and w1.name.startswith(f".work-{os.getpid()}-")
    with dataset_lock(b):
        with dataset_lock(b):  # write_version inside the CLI's lock
            assert (b / ".lock").read_text().strip() == str(os.getpid())
    assert w1.exists()  # our own live work dirs are never taken for stale ones


def test_unreadable_config_exits_2(tmp_path, capsys):
    rc, err = cli(tmp_path, str(tmp_path / "no-such.toml"), capsys)
    assert rc == 2 and "no-such.toml" in err and "Traceback" not in err


def test_resolve_paths_errors_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="matches no file"):
        resolve_paths(str(tmp_path / "nope*.jsonl"))
