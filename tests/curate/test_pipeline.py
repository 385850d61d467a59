import json
import shutil
import textwrap

import polars as pl
import pytest
from curate_frames import run_version

from sftloop.curate.__main__ import main
from sftloop.curate.config import ConfigError, load_config

STAGES = """
[[stages]]
type = "clean"
[[stages]]
type = "exact_dedup"
[[stages]]
type = "min_words"
[[stages]]
type = "truncated"
[[stages]]
type = "refusal"
[[stages]]
type = "parroting"
[[stages]]
type = "language"
[[stages]]
type = "token_limit"
max_tokens = 512
[[stages]]
type = "minhash_dedup"
[[stages]]
type = "embed_dedup"
[[stages]]
type = "decontaminate"
eval_sets = ["mtbench"]
"""


def write_config(tmp_path, fix, extra_sources="", stages=STAGES, split='[split]\nval_fraction = 0.3\n'):
    data = tmp_path / "in"
    if not data.exists():
        shutil.copytree(fix, data)
    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent(f"""
        name = "fixture-mix"
        output_dir = "out"
        [[sources]]
        name = "sharegpt"
        format = "sharegpt"
        path = "{data}/sharegpt.json"
        [[sources]]
        name = "alpaca"
        format = "alpaca"
        path = "{data}/alpaca.jsonl"
        [[sources]]
        name = "bitext"
        format = "bitext"
        path = "{data}/bitext.csv"
        [[sources]]
        name = "chat"
        format = "messages"
        path = "{data}/messages.jsonl"
        [[sources]]
        name = "woz"
        format = "multiwoz"
        path = "{data}/multiwoz.jsonl"
        {extra_sources}
    """) + stages + split)
    return cfg


def run(tmp_path, cfg):
    return run_version(cfg, tmp_path, "fixture-mix")


def test_accounting_determinism_and_outputs(tmp_path, fix):
    cfg = write_config(tmp_path, fix)
    v1 = run(tmp_path, cfg)
    m = json.loads((v1 / "manifest.json").read_text())
    parts = {k: pl.read_parquet(v1 / f"{k}.parquet") for k in ("train", "val", "excluded")}
    quarantined = len((v1 / "quarantine.jsonl").read_text().splitlines())
    # every input row accounted for
    assert m["rows_in"] == 6 + 5 + 4 + 5 + 2
    assert m["rows_in"] == sum(p.height for p in parts.values()) + quarantined
    assert m["counts"]["quarantined"] == quarantined == 2 + 2 + 1 + 2 + 1
    for st in m["funnel"]:
        assert st["rows_in"] == st["rows_out"] + st["dropped"]
    ex = parts["excluded"]
    assert set(ex.columns) >= {"id", "messages", "stage", "reason", "rep_id"}
    assert "language:de" in ex["reason"].to_list()
    assert (v1 / "funnel.png").stat().st_size > 1000 and "| clean |" in (v1 / "funnel.md").read_text()
    assert m["tokenizer"]["tokenizer"] == "smollm2-135m-instruct" and m["tokenizer"]["max_tokens"] == 512
    # n_tokens and lang went into meta
    meta = json.loads(parts["train"]["meta"][0])
    assert meta["n_tokens"] > 0 and meta["lang"] in ("en", "und")
    # determinism: same inputs + config -> same version and identical files
    files = {p.name: p.read_bytes() for p in v1.iterdir()}
    shutil.rmtree(v1)
    v2 = run(tmp_path, cfg)
    assert v2.name == v1.name
    assert {p.name: p.read_bytes() for p in v2.iterdir()} == files


def test_unknown_stage_or_bad_threshold_fails_before_reading_data(tmp_path):
    base = 'name = "x"\n[[sources]]\nname = "s"\nformat = "sharegpt"\npath = "/nonexistent/file.json"\n'
    (tmp_path / "a.toml").write_text(base + '[[stages]]\ntype = "dedupe_magic"\n')
    with pytest.raises(ConfigError, match=r"stages\[0\].type: unknown stage 'dedupe_magic'"):
        load_config(tmp_path / "a.toml")
    (tmp_path / "b.toml").write_text(base + '[[stages]]\ntype = "minhash_dedup"\nthreshold = 1.5\n')
    with pytest.raises(ConfigError, match=r"stages\[0\] \(minhash_dedup\).threshold"):
        load_config(tmp_path / "b.toml")
    (tmp_path / "c.toml").write_text(base + '[[stages]]\ntype = "min_words"\nuser_minimum = 3\n')
    with pytest.raises(ConfigError, match="user_minimum"):
        load_config(tmp_path / "c.toml")
    assert main(["run", str(tmp_path / "b.toml"), "--root", str(tmp_path)]) == 2


def test_time_split_puts_newest_in_val(tmp_path, fix):
    cfg = write_config(tmp_path, fix, stages='[[stages]]\ntype = "clean"\n',
                       split='[split]\nmode = "time"\nval_fraction = 0.5\n')
    cfg.write_text(cfg.read_text().replace('name = "alpaca"', 'name = "alpaca"\nlimit = 1'))
    v = run(tmp_path, cfg)
    val = pl.read_parquet(v / "val.parquet")
    stamps = [json.loads(m).get("timestamp") for m in val["meta"]]
    assert "2026-11-04T10:00:00Z" in stamps  # the newest timestamped row is in val


def test_sharded_run_gives_the_same_dataset(tmp_path, fix):
    """Tiny shards (3 rows) exercise the bounded-memory path of every stage: same version, same files."""
    cfg = write_config(tmp_path, fix)
    v1 = run(tmp_path, cfg)
    files = {p.name: p.read_bytes() for p in v1.iterdir()}
    shutil.rmtree(v1)
    cfg.write_text(cfg.read_text().replace('name = "fixture-mix"', 'name = "fixture-mix"\nshard_rows = 3'))
    v2 = run(tmp_path, cfg)
    assert v2.name == v1.name
    assert {p.name: p.read_bytes() for p in v2.iterdir()} == files


def test_a_stage_dropping_more_than_its_max_drop_share_stops_the_run(tmp_path, fix, capsys):
    """`allowed = ["de"]` is a valid config that drops 13 of 14 fixture rows: exit 2 naming the stage, the
    share, the limit and the top reasons, and nothing is published; the stage's own table can allow it."""
    stages = '[[stages]]\ntype = "clean"\n[[stages]]\ntype = "language"\nallowed = ["de"]\n'
    cfg = write_config(tmp_path, fix, stages=stages)
    capsys.readouterr()
    assert main(["run", str(cfg), "--root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "stages[1] (language) dropped 13 of 14 rows (92.9%)" in err and "max_drop_share 0.5" in err
    assert "language:en (" in err and "`max_drop_share = 0.93`" in err
    assert not (tmp_path / "out" / "fixture-mix" / "LATEST").exists()  # nothing published
    cfg.write_text(cfg.read_text().replace('allowed = ["de"]', 'allowed = ["de"]\nmax_drop_share = 0.93'))
    v = run(tmp_path, cfg)
    assert pl.read_parquet(v / "train.parquet").height + pl.read_parquet(v / "val.parquet").height == 1
    assert "max_drop_share" not in json.dumps(json.loads((v / "manifest.json").read_text())["config"])


def test_truncate_turns_in_a_run_keeps_long_conversations(tmp_path, fix):
    """The fixtures' multi-turn conversations under a tight limit: truncated (meta records it), not dropped."""
    stages = '[[stages]]\ntype = "clean"\n[[stages]]\ntype = "token_limit"\nmax_tokens = 100\nmode = "truncate_turns"\n'
    cfg = write_config(tmp_path, fix, stages=stages)
    v = run(tmp_path, cfg)
    m = json.loads((v / "manifest.json").read_text())
    tl = next(st for st in m["funnel"] if st["stage"] == "token_limit")
    rep = m["stage_reports"]["token_limit"]
    assert rep["rows_truncated"] == 2 and rep["turns_cut"] == 4  # 2 of the 14 rows
    assert rep["counting"] == "pieces" and rep["rows_not_counted_past_limit"] >= 1 and "tokens_cut" not in rep
    assert tl["dropped"] == 1  # its single exchange is 107 tokens
    assert tl["dropped"] == rep["rows_first_turn_too_long"] == tl["reasons"].get("token_limit:first_turn_too_long", 0)
    rows = pl.concat([pl.read_parquet(v / "train.parquet"), pl.read_parquet(v / "val.parquet")])
    metas = [json.loads(x) for x in rows["meta"]]
    assert sum("turns_cut" in x for x in metas) == rep["rows_truncated"]
    assert all(x["n_tokens"] <= 100 for x in metas)
    excl = pl.read_parquet(v / "excluded.parquet").filter(pl.col("reason") == "token_limit:first_turn_too_long")
    assert excl.height == 1 and "n_tokens" not in json.loads(excl["meta"][0])  # not counted past the limit


def test_funnel_lists_every_reason_with_examples_and_points_to_excluded(tmp_path):
    import subprocess
    import sys

    from curate_frames import chat_config, write_chat

    q = "Could you explain how compound interest works for my savings account, please?"
    a = "Compound interest means you earn interest on the deposit and on the interest already added."
    long_q = "Please tell me, and my e-mail is jane.doe@example.com, " + "why the sky is blue " * 10
    rows = ([{"messages": [{"role": "user", "content": f"{q} ({k})"}, {"role": "assistant", "content": a}]} for k in range(3)]
            + [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": a}]}]
            + [{"messages": [{"role": "user", "content": long_q + str(k)},
                             {"role": "assistant", "content": "I’m sorry, but I can’t help with that request today."}]}
               for k in range(3)]
            + [{"messages": [{"role": "user", "content": long_q}, {"role": "assistant", "content": "Sure."}]}]
            + [{"messages": [{"role": "user", "content": "mail jane.doe@example.com " + "x" * 100}, {"role": "assistant", "content": a}]}])
    cfg = tmp_path / "c.toml"
    cfg.write_text(chat_config("f", write_chat(tmp_path, rows))
                   + '[[stages]]\ntype = "min_words"\nmax_drop_share = 1.0\n[[stages]]\ntype = "refusal"\nmax_drop_share = 1.0\n')
    v = run_version(cfg, tmp_path, "f")
    md = (v / "funnel.md").read_text()
    ex = pl.read_parquet(v / "excluded.parquet")
    table = md[md.index("## Drop reasons"):]
    lines = {ln.split(" | ")[1]: ln for ln in table.splitlines() if ln.startswith(("| min_words | ", "| refusal | "))}
    assert "| min_words | min_words:user | 2 |" in lines["min_words:user"]
    assert lines["min_words:assistant"].endswith("` Sure. |")  # the short reply is the excerpt
    refusal = lines["refusal"]
    assert refusal.startswith("| refusal | refusal | 3 |")
    ids = ex.filter(pl.col("reason") == "refusal")["id"].to_list()
    assert sum(f"`{i}`" in refusal for i in ids) == 2  # two examples of three
    assert 'turn 1: "I’m sorry, but I can’t"' in refusal
    assert "`{}`".format(ex.filter(pl.col("reason") == "min_words:user")["id"][0]) in lines["min_words:user"]
    # the pointer and its snippet work as printed (run from the root the config was run in)
    rel = f"out/f/{v.name}/excluded.parquet"
    assert f"All dropped rows are in `{rel}`" in md
    snippet = next(ln for ln in md.splitlines() if ln.startswith("python -c "))
    code = snippet.removeprefix('python -c "').removesuffix('"')
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert all(i in out for i in ids)
    # an excerpt (here the first user turn) is redacted and at most 80 characters
    excerpt = lines["min_words:user"].removesuffix(" |").split(" | ")[3].split("<br>")[1].split("` ", 1)[1]
    assert "jane.doe@example.com" not in md and "[EMAIL]" in excerpt and len(excerpt) <= 80 and excerpt.endswith("…")
