"""Mined corrections come back into curation (dataset: source, records format) and are capped by `mix`."""

import json
import textwrap

import polars as pl

from sftloop.curate.__main__ import main
from sftloop.curate.checklist import for_derived
from sftloop.dataset_version import write_derived
from sftloop.schema import PARQUET_SCHEMA, content_id


def _mined(root, n: int):
    rows = []
    for i in range(n):
        msgs = [{"role": "user", "content": f"Please cancel my order number {1000 + i} today, it has not shipped."},
                {"role": "assistant", "content": f"I have cancelled order {1000 + i}; the refund reaches your card in 3-5 days."}]
        rows.append({"id": content_id(msgs), "messages": msgs, "source": "mined:2026-W47", "meta": "{}", "weight": 3.0})
    train = pl.DataFrame(rows, schema=PARQUET_SCHEMA)
    return write_derived(root / "data" / "datasets" / "mined", {"train": train, "val": train.head(0)},
                         {"step": "test"}, name="mined", checklist=for_derived).path


def test_mined_records_mix_with_a_floor_of_ordinary_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _mined(tmp_path, 12)
    ordinary = [{"messages": [{"role": "user", "content": f"Tell me one fact about the number {i} in plain words."},
                              {"role": "assistant", "content": f"The number {i} is {'even' if i % 2 == 0 else 'odd'}, fact {i}."}]}
                for i in range(30)]
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in ordinary) + "\n")
    (tmp_path / "c.toml").write_text(textwrap.dedent(f"""
        name = "mixed"
        [[sources]]
        name = "mined"
        format = "records"
        path = "dataset:data/datasets/mined"
        [[sources]]
        name = "chat"
        format = "messages"
        path = "{tmp_path}/chat.jsonl"
        [[stages]]
        type = "exact_dedup"
        [[stages]]
        type = "mix"
        min_ordinary_share = 0.6
        [split]
        val_fraction = 0.0
    """))
    assert main(["run", str(tmp_path / "c.toml"), "--root", str(tmp_path), "--quiet"]) == 0
    base = tmp_path / "data" / "datasets" / "mixed"
    v = base / (base / "LATEST").read_text().strip()
    train = pl.read_parquet(v / "train.parquet")
    mined = train.filter(pl.col("source") == "mined:2026-W47")
    assert mined.height > 0 and set(mined["weight"].to_list()) == {3.0}
    w_ord = train.filter(pl.col("source") == "chat")["weight"].sum()
    assert w_ord / train["weight"].sum() >= 0.6  # 30 ordinary allow 20 weight of mined: 6 rows
    assert mined.height == 6
    ex = pl.read_parquet(v / "excluded.parquet")
    assert ex.filter(pl.col("reason") == "mix:focus_over_cap").height == 12 - 6
    m = json.loads((v / "manifest.json").read_text())
    assert m["stage_reports"]["mix"]["ordinary_share"] >= 0.6


def test_exact_dedup_keeps_the_weighted_correction(ctx):
    from sftloop.curate.stages.dedup_exact import ExactDedup
    from curate_frames import frame

    df = frame([[("user", "How do I reset my password, step by step?"), ("assistant", "A long but wrong answer " * 5)],
                [("user", "How do I reset my password, step by step?"), ("assistant", "Use the 'forgot password' link.")]])
    df = df.with_columns(weight=pl.Series([1.0, 3.0]))
    res = ExactDedup(keys=["first_user"]).apply(df, ctx)
    assert res.kept["weight"].to_list() == [3.0]
