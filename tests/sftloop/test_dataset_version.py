"""The dataset-version contract: resolving specs, declared parts, the typed manifest, derived versions."""

import json

import polars as pl
import pytest

from sftloop.dataset_version import (PARTS, DatasetNotFound, DatasetVersion, Manifest, UnknownPart, dataset_lock,
                                     DatasetLocked, write_derived)
from sftloop.schema import PARQUET_SCHEMA, content_id


def _rows(n: int) -> pl.DataFrame:
    rows = []
    for i in range(n):
        msgs = [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]
        rows.append({"id": content_id(msgs), "messages": msgs, "source": "t", "meta": "{}", "weight": 1.0})
    return pl.DataFrame(rows, schema=PARQUET_SCHEMA)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / "data" / "datasets").mkdir(parents=True)
    monkeypatch.setenv("SFTLOOP_ROOT", str(root))
    return root


def test_relative_spec_resolves_against_the_repo_root_not_the_cwd(repo, tmp_path, monkeypatch):
    v = write_derived(repo / "data" / "datasets" / "d", {"train": _rows(3), "val": _rows(1)}, {"step": "test"}, name="d")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data" / "datasets" / "d").mkdir(parents=True)  # a decoy under the cwd
    monkeypatch.chdir(elsewhere)
    got = DatasetVersion.resolve("data/datasets/d")
    assert got.path == v.path and got.path.is_relative_to(repo)
    assert DatasetVersion.resolve(f"data/datasets/d/{v.version}").path == v.path
    with pytest.raises(DatasetNotFound, match="not a dataset version"):
        DatasetVersion.resolve("data/datasets/missing")


def test_parts_are_declared_and_an_unknown_part_is_a_clear_error(repo):
    v = write_derived(repo / "data" / "datasets" / "d", {"train": _rows(3), "val": _rows(1)}, {"step": "test"}, name="d")
    assert v.parts == ["train", "val", "excluded"] and set(v.parts) <= set(PARTS)
    assert v.read("train").height == 3 and v.splits().height == 4
    with pytest.raises(UnknownPart, match=r"unknown dataset part 'tran' \(known: train, val, test, excluded"):
        v.read("tran")
    with pytest.raises(DatasetNotFound, match="no part 'test'"):
        v.read("test")
    with pytest.raises(UnknownPart):
        write_derived(repo / "data" / "datasets" / "d", {"tain": _rows(1)}, {"step": "x"}, name="d")


def test_manifest_round_trip_and_lineage(repo):
    base = repo / "data" / "datasets" / "d"
    v1 = write_derived(base, {"train": _rows(3)}, {"step": "one"}, name="d")
    v2 = write_derived(base, {"train": _rows(2)}, {"step": "two"}, parent=v1)
    assert (base / "LATEST").read_text().strip() == v2.version  # LATEST moved to the newest
    assert v2.manifest.parent == v1.version and v2.lineage() == [v2.version, v1.version]
    assert v2.manifest.counts == {"train": 2, "excluded": 0, "quarantined": 0}
    again = Manifest.model_validate_json((v2.path / "manifest.json").read_text())
    assert again == v2.manifest and again.dump() == json.loads((v2.path / "manifest.json").read_text())
    # the same change on the same parent is the same version
    assert write_derived(base, {"train": _rows(2)}, {"step": "two"}, parent=v1).version == v2.version


def test_an_old_manifest_still_reads_and_keeps_unknown_keys(repo):
    old = repo / "data" / "datasets" / "old" / "abc123"
    old.mkdir(parents=True)
    _rows(2).write_parquet(old / "train.parquet")
    (old / "manifest.json").write_text(json.dumps({"name": "old", "version": "abc123", "counts": {"train": 2},
                                                   "tokenizer": {"tokenizer": "t", "legacy": 1}, "retired_key": [1, 2]}))
    v = DatasetVersion.resolve(old)
    assert v.manifest.tokenizer.tokenizer == "t" and v.manifest.parent is None and v.manifest.system_prompts == {}
    assert v.manifest.dump()["retired_key"] == [1, 2] and v.manifest.dump()["tokenizer"]["legacy"] == 1
    d = write_derived(old.parent, {"train": v.read("train").head(1)}, {"step": "x"}, parent=v)
    assert json.loads((d.path / "manifest.json").read_text())["retired_key"] == [1, 2] and d.manifest.parent == "abc123"


def test_a_second_writer_is_refused_and_a_failed_write_publishes_nothing(repo):
    base = repo / "data" / "datasets" / "d"
    v1 = write_derived(base, {"train": _rows(1)}, {"step": "one"}, name="d")
    with dataset_lock(base):
        import subprocess
        import sys

        code = ("from pathlib import Path; from sftloop.dataset_version import dataset_lock\n"
                f"with dataset_lock(Path({str(base)!r})): pass")
        err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stderr
        assert DatasetLocked.__name__ in err and "being written by another run" in err

    def bad(tmp, m):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_derived(base, {"train": _rows(5)}, {"step": "two"}, parent=v1, checklist=bad)
    assert (base / "LATEST").read_text().strip() == v1.version
    assert not [p for p in base.iterdir() if p.name.startswith(".writing")]
