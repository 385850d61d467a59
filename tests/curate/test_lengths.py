import json

import numpy as np
import pytest
from curate_frames import chat_config, frame, run_version, write_chat

from sftloop.curate.lengths import LengthReference, ks, length_report, reference_files, summary, token_lengths
from sftloop.settings import repo_root

CONVS = [
    [("user", "How do I reset my password?"), ("assistant", "Use the Forgot password link on the sign-in page.")],
    [("system", "You are a helpful support assistant."), ("user", "Can I change my delivery address?"),
     ("assistant", "Yes, as long as the order has not shipped yet: open the order and choose Edit address.")],
    [("user", "Hi"), ("assistant", "Hello! How can I help?"), ("user", "Where is my parcel? Order 5531."),
     ("assistant", "It left our warehouse yesterday and should arrive tomorrow.")],
    [("user", "Thanks, bye."), ("assistant", "Goodbye!")],
    [("user", "Do you ship to Canada and how long does it take?"),
     ("assistant", "We do. Standard shipping to Canada takes five to eight business days, express two to three.")],
]


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from sftloop.assets import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))


def expected(tok, convs):
    """Prompt = everything before the last reply, rendered by SmolLM2's own template with the generation
    prompt; reply = the last reply's content. Counted one conversation at a time, independently."""
    p, r = [], []
    for conv in convs:
        msgs = [{"role": a, "content": b} for a, b in conv]
        p.append(len(tok.apply_chat_template(msgs[:-1], tokenize=True, add_generation_prompt=True,
                                             return_dict=True)["input_ids"]))
        r.append(len(tok(msgs[-1]["content"], add_special_tokens=False)["input_ids"]))
    return np.array(p), np.array(r)


def test_token_lengths_and_percentiles_with_the_real_tokenizer(tok, tmp_path):
    path = tmp_path / "train.parquet"
    frame(CONVS).drop("_row").write_parquet(path)
    p_exp, r_exp = expected(tok, CONVS)
    assert p_exp[2] > p_exp[0] + 10  # the multi-turn prompt carries the earlier turns
    report, arrays = length_report("smollm2-135m-instruct", {"train": path}, None, repo_root())
    assert arrays["train"][0].tolist() == p_exp.tolist() and arrays["train"][1].tolist() == r_exp.tolist()
    s = report["splits"]["train"]["prompt"]
    assert s["count"] == 5 and s["max"] == p_exp.max() and s["mean"] == round(p_exp.mean(), 2)
    for q in (5, 25, 50, 75, 95, 99):
        assert s[f"p{q}"] == round(float(np.percentile(p_exp, q)), 2)
    assert report["splits"]["train"]["reply"]["p50"] == float(np.median(r_exp))
    # batching does not change a count
    p2, r2, refused = token_lengths((([{"role": a, "content": b} for a, b in c[:-1]], c[-1][1]) for c in CONVS),
                                    tok, batch_size=2)
    assert p2.tolist() == p_exp.tolist() and r2.tolist() == r_exp.tolist() and refused == 0


def test_summary_and_ks_match_numpy_and_scipy():
    from scipy.stats import ks_2samp

    a = np.array([3, 9, 14, 2, 7, 30, 11, 5])
    b = np.array([40, 12, 9, 60, 33, 21])
    s = summary(a)
    assert s["p25"] == round(float(np.percentile(a, 25)), 2) and s["max"] == 30 and s["count"] == 8
    assert summary(np.array([], dtype=int))["p50"] is None
    r = ks_2samp(a, b)
    k = ks(a, b)
    assert k["statistic"] == round(float(r.statistic), 6) and k["pvalue"] == pytest.approx(r.pvalue, rel=1e-5)
    assert ks(a, np.array([])) is None


def test_reference_from_production_logs_and_chat_records_skips_bad_rows(tok, tmp_path):
    logs = tmp_path / "logs.jsonl"
    good = [{"request_id": "r1", "timestamp": "2026-01-05T10:00:00Z", "model": "m", "latency_ms": 12,
             "prompt": "How do I reset my password?", "response": "Use the Forgot password link."},
            {"request_id": "r2", "timestamp": "2026-01-05T11:00:00Z", "model": "m", "latency_ms": 15,
             "messages": [{"role": "user", "content": "Do you ship to Canada?"}], "response": "We do."}]
    logs.write_text(json.dumps(good[0]) + "\n" + "{not json\n" + json.dumps(good[1]) + "\n"
                    + json.dumps({"request_id": "r3", "response": "no timestamp"}) + "\n")
    records = tmp_path / "records.parquet"
    frame(CONVS[:2]).drop("_row").write_parquet(records)
    train = tmp_path / "train.parquet"
    frame(CONVS).drop("_row").write_parquet(train)

    report, arrays = length_report("smollm2-135m-instruct", {"train": train}, LengthReference(path=str(logs)), repo_root())
    ref = report["reference"]
    assert ref["prompt"]["count"] == 2 and ref["reply"]["count"] == 2 and ref["rows_skipped"] == 2
    assert any(f"{logs}:2:" in e for e in ref["first_errors"]) and any("timestamp" in e for e in ref["first_errors"])
    p_exp, r_exp = expected(tok, [[("user", "How do I reset my password?"), ("assistant", "Use the Forgot password link.")],
                                  [("user", "Do you ship to Canada?"), ("assistant", "We do.")]])
    assert arrays["reference"][0].tolist() == p_exp.tolist() and arrays["reference"][1].tolist() == r_exp.tolist()
    k = ref["ks_train_vs_reference"]["prompt"]
    from scipy.stats import ks_2samp

    assert k["statistic"] == round(float(ks_2samp(arrays["train"][0], p_exp).statistic), 6)

    report, arrays = length_report("smollm2-135m-instruct", {"train": train}, LengthReference(path=str(records)),
                                   repo_root())
    assert report["reference"]["ks_train_vs_reference"]["prompt"]["n_reference"] == 2
    assert arrays["reference"][0].tolist() == arrays["train"][0][:2].tolist()


def test_golden_reference_uses_its_messages_and_reference_answers(tmp_path):
    from sftloop.evaluate.golden import load_items

    train = tmp_path / "train.parquet"
    frame(CONVS).drop("_row").write_parquet(train)
    report, _ = length_report("smollm2-135m-instruct", {"train": train}, LengthReference.model_validate("golden"),
                              repo_root())
    items = load_items(repo_root())
    assert report["reference"]["prompt"]["count"] == len(items)
    assert report["reference"]["reply"]["count"] == sum(i.reference is not None for i in items)


def test_manifest_funnel_and_picture_with_a_reference_and_stable_ids_without(tmp_path):
    from sftloop.curate.config import ConfigError, config_dict, load_config

    data = write_chat(tmp_path, [{"messages": [{"role": r, "content": c} for r, c in conv]} for conv in CONVS])
    ref = tmp_path / "prod.parquet"
    frame(CONVS[:3]).drop("_row").write_parquet(ref)
    head = chat_config("len", data)
    cfg = tmp_path / "c.toml"
    cfg.write_text(head)
    assert "length_reference" not in config_dict(load_config(cfg))  # unset: the version id is what it was
    cfg.write_text(head + f'[length_reference]\npath = "{ref}"\n')
    assert config_dict(load_config(cfg))["length_reference"] == {"path": str(ref)}
    v = run_version(cfg, tmp_path, "len")
    base = v.parent
    lengths = json.loads((v / "manifest.json").read_text())["lengths"]
    assert lengths["tokenizer"] == "smollm2-135m-instruct"
    assert set(lengths["splits"]) == {"train", "val"} and lengths["splits"]["train"]["prompt"]["count"] == 5
    assert set(lengths["splits"]["train"]["reply"]) == {"count", "mean", "max", "p5", "p25", "p50", "p75", "p95", "p99"}
    ks_prompt = lengths["reference"]["ks_train_vs_reference"]["prompt"]
    assert 0 <= ks_prompt["statistic"] <= 1 and ks_prompt["n_reference"] == 3
    md = (v / "funnel.md").read_text()
    assert "## Lengths (tokens, smollm2-135m-instruct)" in md and "KS train vs reference, prompt tokens" in md
    assert (v / "lengths.png").stat().st_size > 1000
    # a dataset version as the reference: the LATEST version's split
    assert reference_files(f"dataset:{base}:train") == [v / "train.parquet"]
    # a version derived from it (review decisions) gets its own figures, not its parent's
    import polars as pl

    from sftloop.curate.checklist import for_derived
    from sftloop.dataset_version import DatasetVersion, write_derived

    d = write_derived(base, {"train": pl.read_parquet(v / "train.parquet").head(2)}, {"kind": "test"},
                      parent=DatasetVersion.resolve(v), checklist=for_derived).path
    m = json.loads((d / "manifest.json").read_text())
    assert m["lengths"]["splits"]["train"]["prompt"]["count"] == 2 and m["system_prompts"]["train"]["rows"] == 2
    assert m["lengths"]["reference"]["prompt"]["count"] == 3  # the parent's reference, still there
    assert "## Lengths" in (d / "funnel.md").read_text() and (d / "lengths.png").exists()

    cfg.write_text(head + f'[length_reference]\npath = "{tmp_path}/nothing-*.jsonl"\n')
    with pytest.raises(ConfigError, match="length_reference"):
        load_config(cfg)
