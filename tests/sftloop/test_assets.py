import json
import shutil

import pytest

from sftloop import assets


def test_every_asset_is_installed_and_verified_by_hash():
    for name in assets.specs():
        stamp = assets.verify(name, full=True)
        assert stamp["name"] == name


def test_sharegpt_salvage_count_is_recorded_and_true():
    meta = assets.metadata("sharegpt-v3-partial")
    assert meta["conversations"] == 17671
    with open(assets.path("sharegpt-v3-partial"), encoding="utf-8") as f:
        assert sum(1 for _ in f) == 17671


def test_eval_asset_counts():
    assert assets.metadata("mtbench") == {"questions": 80, "reference_answers": 30}
    assert assets.metadata("ifbench") == {"prompts": 294}
    tasks = {p.parent.name for p in assets.path("bigbench-probes").rglob("task.json")}
    for t in ["date_understanding", "general_knowledge", "sports_understanding"]:
        assert t in tasks
    domains = assets.path("tau2-support")
    assert (domains / "retail" / "policy.md").read_text().strip()
    assert (domains / "airline" / "policy.md").read_text().strip()


def test_salvage_stops_at_the_first_incomplete_object():
    text = '[{"id": 1}, {"id": 2},\n {"id": 3, "conv'
    objs, stop = assets.salvage_json_array(text)
    assert [o["id"] for o in objs] == [1, 2]
    assert text[stop:].startswith('{"id": 3')


def _copy_asset(tmp_path, monkeypatch, name):
    src = assets.asset_dir(name)
    monkeypatch.setenv("SFTLOOP_HOME", str(tmp_path))
    dst = assets.asset_dir(name)
    shutil.copytree(src, dst)
    return dst


def test_corrupted_file_is_refused_with_a_clear_message(tmp_path, monkeypatch):
    dst = _copy_asset(tmp_path, monkeypatch, "mtbench")
    q = next(dst.rglob("question.jsonl"))
    data = bytearray(q.read_bytes())
    data[100] ^= 0x01  # same size, one bit flipped
    q.write_bytes(bytes(data))
    assets.verify("mtbench")  # size check alone cannot see it
    with pytest.raises(assets.AssetError, match=r"question.jsonl has sha256 .* \(corrupt\)"):
        assets.verify("mtbench", full=True)


def test_partial_file_is_refused(tmp_path, monkeypatch):
    dst = _copy_asset(tmp_path, monkeypatch, "ifbench")
    f = next(dst.rglob("IFBench_test.jsonl"))
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(assets.AssetError, match="partial file"):
        assets.path("ifbench")


def test_missing_asset_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SFTLOOP_HOME", str(tmp_path))
    with pytest.raises(assets.AssetError, match="just assets"):
        assets.path("minilm-l6-v2")


def test_fetch_refuses_a_corrupt_archive_and_deletes_it(tmp_path, monkeypatch):
    """A cached archive whose bytes changed is not trusted: fetch re-downloads; extraction checks every file."""
    monkeypatch.setenv("SFTLOOP_HOME", str(tmp_path))
    spec = assets.specs()["ifbench"]
    archive = tmp_path / "downloads" / spec.archive
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"not a wheel")
    stamp = assets.fetch("ifbench", log=lambda s: None)
    assert stamp["metadata"] == {"prompts": 294}
    assert assets.sha256_file(archive) == spec.archive_sha256


def test_asset_declarations_are_complete():
    for s in assets.specs().values():
        assert s.license and s.used_for and s.files and len(s.archive_sha256) == 64
        for f in s.files:
            assert len(f.sha256) == 64 and f.size > 0
    assert json.dumps(sorted(assets.specs())) == json.dumps(sorted([
        "bigbench-probes", "ifbench", "minilm-l6-v2", "mtbench", "sharegpt-v3-partial",
        "smollm2-135m-instruct", "tau2-support"]))
