"""Resume across `curate run` invocations: a driver killed mid-run (SIGKILL) or a run stopped by a failing
task leaves `<name>/.work`; the next run books the completed stages from their records, skips the shards
done before, and publishes the version a clean run publishes, byte for byte. A changed stage config
runs that stage and everything after it again; `--fresh` reuses nothing."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIX
from test_executors import sharded, version_files

from sftloop.curate import pipeline
from sftloop.curate.__main__ import main
from sftloop.curate.config import load_config

NAME = "fixture-mix"


def base(root: Path) -> Path:
    return root / "out" / NAME


def published(root: Path) -> Path:
    return base(root) / (base(root) / "LATEST").read_text().strip()


def cli(root: Path, cfg: Path, capsys, monkeypatch, *flags) -> tuple[int, str, pipeline.RunResult | None]:
    """`main(["run", ...])` in this process: exit code, stdout, and the pipeline's RunResult (to count skipped
    tasks)."""
    got: dict = {}
    real = pipeline.run

    def spy(*a, **k):
        got["res"] = real(*a, **k)
        return got["res"]

    monkeypatch.setattr(pipeline, "run", spy)
    try:
        rc = main(["run", str(cfg), "--root", str(root), "--quiet", *flags])
    finally:
        monkeypatch.setattr(pipeline, "run", real)
    return rc, capsys.readouterr().out, got.get("res")


def records(work: Path) -> list[int]:
    return sorted(int(p.name[6:8]) for p in (work / "records").glob("stage-??.json"))


def record(work: Path, i: int) -> dict:
    return json.loads((work / "records" / f"stage-{i:02d}.json").read_text())


def stage_names(cfg: Path) -> list[str]:
    return [s.name for s in load_config(cfg).stages]


def expected_line(work: Path, k: int, total: int) -> str:
    """The resume line for records 0..k-1 on disk and stage k's shard markers."""
    done = "no stage" if k == 0 else "stage 0" if k == 1 else f"stages 0-{k - 1}"
    line = f"resume: {done} complete from an earlier run"
    if k < total:
        line += f", stage {k}: {len(markers(work, k))} of {len(record(work, k - 1)['kept'])} shards done"
    return line


def markers(work: Path, i: int) -> list[Path]:
    return sorted((work / f"stage-{i:02d}").glob(".*.done.json"))


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The sharded fixture pipeline (every row stage kind + exact and MinHash dedup, shards of 4 rows), run clean."""
    from sftloop.curate.__main__ import main as run_main

    tmp = tmp_path_factory.mktemp("resume")
    cfg = sharded(tmp, FIX)
    root = tmp / "clean"
    assert run_main(["run", str(cfg), "--root", str(root), "--quiet"]) == 0
    assert not (base(root) / ".work").exists()  # removed once published
    return cfg, published(root)


@pytest.fixture
def broken_truncated(monkeypatch):
    """A fake bug in a real stage: `truncated` raises on every shard after the first while `broken` is set."""
    from sftloop.curate.stages.filters import Truncated

    real = Truncated.apply
    state = {"broken": True, "calls": 0}

    def apply(self, df, ctx):
        state["calls"] += 1
        if state["broken"] and state["calls"] > 1:
            raise RuntimeError("fake bug")
        return real(self, df, ctx)

    monkeypatch.setattr(Truncated, "apply", apply)
    return state


def assert_resumed(res: pipeline.RunResult, names: list[str], k: int, done_in_k: int) -> None:
    """Stages before k were not run (every task taken from their records), stage k skipped exactly the shards
    done before, and every later stage ran all its tasks."""
    assert res.resumed is not None and res.resumed.stages == k
    assert all(t.skipped for n in names[:k] for t in res.tasks[n])
    assert sum(t.skipped for t in res.tasks[names[k]] if t.features is None) == done_in_k
    assert not any(t.skipped for n in names[k + 1:] for t in res.tasks[n])


def test_a_driver_killed_mid_run_resumes_to_the_clean_runs_version(tmp_path, clean, capsys, monkeypatch):
    cfg, v_clean = clean
    names = stage_names(cfg)
    root = tmp_path / "killed"
    work = base(root) / ".work"
    lang = names.index("language")  # killed once `language` wrote a shard: `token_limit` has its tokenizer to load
    err = tmp_path / "killed.err"
    with open(err, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "sftloop.curate", "run", str(cfg), "--root", str(root), "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=fh)
    try:
        deadline = time.time() + 300
        while not markers(work, lang) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, f"the run ended before it could be killed: {err.read_text()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)  # by PID
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (base(root) / "LATEST").exists()  # killed before publishing
    k = len(records(work))
    assert records(work) == list(range(k)) and lang <= k < len(names)
    line = expected_line(work, k, len(names))
    done_in_k = len(markers(work, k))

    rc, out, res = cli(root, cfg, capsys, monkeypatch)
    assert rc == 0
    assert [ln for ln in out.splitlines() if ln.startswith("resume:")] == [line]
    assert_resumed(res, names, k, done_in_k)
    v = published(root)
    assert v.name == v_clean.name
    assert version_files(v) == version_files(v_clean)  # train/val/test/excluded parquet, manifest, funnel: same bytes
    assert not work.exists()


def test_a_failed_task_fake_then_a_rerun_resumes_and_completes(tmp_path, clean, capsys, monkeypatch, broken_truncated):
    cfg, v_clean = clean
    names = stage_names(cfg)
    j = names.index("truncated")
    root = tmp_path / "failed"
    work = base(root) / ".work"
    rc, out, _ = cli(root, cfg, capsys, monkeypatch)
    assert rc == 1 and f"kept in {work}" in out
    assert records(work) == list(range(j)) and len(markers(work, j)) == 1  # its first shard completed
    shards = len(record(work, j - 1)["kept"])
    assert shards >= 2

    broken_truncated["broken"] = False  # the bug is fixed
    rc, out, res = cli(root, cfg, capsys, monkeypatch)
    assert rc == 0
    assert f"resume: stages 0-{j - 1} complete from an earlier run, stage {j}: 1 of {shards} shards done\n" in out
    assert_resumed(res, names, j, 1)
    assert res.resumed.tasks_skipped == 1
    v = published(root)
    assert v.name == v_clean.name and version_files(v) == version_files(v_clean)
    assert not work.exists()


def test_a_changed_stage_or_fresh_reuses_no_stale_work(tmp_path, clean, capsys, monkeypatch, broken_truncated):
    cfg, v_clean = clean
    names = stage_names(cfg)
    j = names.index("truncated")
    root = tmp_path / "changed"
    work = base(root) / ".work"
    assert cli(root, cfg, capsys, monkeypatch)[0] == 1  # stopped in `truncated`, its first shard done
    assert len(markers(work, j)) == 1
    shards = len(record(work, j - 1)["kept"])
    broken_truncated["broken"] = False

    changed = tmp_path / "changed.toml"  # `truncated` changed: the shard it did under the old config is stale
    changed.write_text(cfg.read_text().replace('type = "truncated"\n', 'type = "truncated"\nlast_turn_only = false\n'))
    rc, out, res = cli(root, changed, capsys, monkeypatch)
    assert rc == 0
    assert f"resume: stages 0-{j - 1} complete from an earlier run, stage {j}: 0 of {shards} shards done\n" in out
    assert_resumed(res, names, j, 0)
    assert res.resumed.tasks_skipped == 0
    rc, _, fresh = cli(tmp_path / "changed-clean", changed, capsys, monkeypatch)
    assert rc == 0 and fresh.resumed is None
    v, v_fresh = published(root), published(tmp_path / "changed-clean")
    assert v.name == v_fresh.name != v_clean.name
    assert version_files(v) == version_files(v_fresh)

    broken_truncated["broken"] = True  # fails again (on its first shard now), then --fresh discards that work
    assert cli(root, cfg, capsys, monkeypatch)[0] == 1 and records(work) == list(range(j))
    broken_truncated["broken"] = False
    rc, out, res = cli(root, cfg, capsys, monkeypatch, "--fresh")
    assert rc == 0 and "resume:" not in out and res.resumed is None
    assert not any(t.skipped for ts in res.tasks.values() for t in ts)
    assert published(root).name == v_clean.name
    again, first = version_files(published(root)), version_files(v_clean)
    m_again, m_first = (json.loads(f.pop("manifest.json")) for f in (again, first))
    assert m_again.pop("parent") == v.name and m_first.pop("parent") is None  # the version LATEST named before
    assert again == first and m_again == m_first
