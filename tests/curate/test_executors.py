"""Executors: the fixture pipeline gives the same bytes and version on local, processes and a real
local Ray cluster (2 CPUs, 127.0.0.1, stopped at the end); a killed Ray worker is retried; stage code
that raises names its shard and row; a rerun on the same work dir skips completed shards."""

import os
import signal
import threading
import time
from pathlib import Path

import polars as pl
import psutil
import pytest
from conftest import FIX
from test_pipeline import STAGES, write_config

from sftloop.curate import pipeline
from sftloop.curate.config import load_config
from sftloop.curate.executors import LocalExecutor
from sftloop.curate.shard_tasks import StageFailure
from sftloop.curate.stages.base import merge_counters, merge_info
from sftloop.procs import running


ROW_AND_DEDUP = STAGES.split('[[stages]]\ntype = "embed_dedup"')[0]  # every row stage kind + exact/MinHash dedup
WITH_EMBED = ROW_AND_DEDUP + '[[stages]]\ntype = "embed_dedup"\n'  # + MiniLM features computed in the workers
# three near-duplicate pairs (one or two words changed): minhash_dedup has candidates in every band-range task
NEAR_DUPS = (f'[[sources]]\nname = "near-dups"\nformat = "messages"\n'
             f'path = "{Path(__file__).parents[1] / "fixtures" / "minhash" / "near_dups.jsonl"}"\n')


def sharded(tmp_path, fix, rows=4, stages=ROW_AND_DEDUP, extra_sources=""):
    """The fixture pipeline in shards of `rows` rows (decontaminate's sharding is test_pipeline's: it is
    the slowest stage per shard and has no executor-specific path)."""
    cfg = write_config(tmp_path, fix, extra_sources, stages=stages)
    cfg.write_text(cfg.read_text().replace('name = "fixture-mix"', f'name = "fixture-mix"\nshard_rows = {rows}'))
    return cfg


def version_files(v: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(v.iterdir())}


def run_with(tmp_path, cfg, *flags) -> Path:
    from sftloop.curate.__main__ import main

    root = tmp_path / f"root{len(list(tmp_path.glob('root*')))}"
    root.mkdir()
    assert main(["run", str(cfg), "--root", str(root), "--quiet", *flags]) == 0
    base = root / "out" / "fixture-mix"
    return base / (base / "LATEST").read_text().strip()


def _connections(p: psutil.Process) -> list:
    try:
        return p.net_connections(kind="inet")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


@pytest.fixture(scope="module")
def ray_cluster():
    """A real local Ray cluster for this module; every process it started is gone afterwards."""
    import ray

    from sftloop.curate.executors import init_local_ray

    before = {p.pid for p in psutil.Process().children(recursive=True)}  # e.g. multiprocessing's resource tracker
    shutdown = init_local_ray(2)
    started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    listening = {c.laddr.ip.removeprefix("::ffff:") for p in started for c in _connections(p)
                 if c.status == psutil.CONN_LISTEN}  # an IPv4-mapped IPv6 socket counts as its IPv4 address
    assert listening and listening <= {"127.0.0.1", "::1"}, f"Ray servers listen beyond loopback: {sorted(listening)}"
    yield ray
    shutdown()

    left = running(started)  # shutdown() stops by PID whatever outlived ray.shutdown()
    assert not left, f"still running after ray.shutdown() and kill by PID: {[p.pid for p in left]}"


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The sharded fixture pipeline (with embed_dedup: MiniLM features computed in the workers) run locally."""
    tmp = tmp_path_factory.mktemp("executors")
    cfg = sharded(tmp, FIX, stages=WITH_EMBED, extra_sources=NEAR_DUPS)
    return tmp, cfg, run_with(tmp, cfg)


def test_local_processes_and_ray_give_byte_identical_datasets(local_run, ray_cluster):
    tmp, cfg, v_local = local_run
    files = version_files(v_local)
    excluded = pl.read_parquet(v_local / "excluded.parquet")
    assert len(files) > 5 and (excluded["reason"] == "near_dup:minhash").sum() == 3
    v_proc = run_with(tmp, cfg, "--executor", "processes", "--workers", "2")
    v_ray = run_with(tmp, cfg, "--executor", "ray")
    assert v_proc.name == v_ray.name == v_local.name
    assert version_files(v_proc) == files
    assert version_files(v_ray) == files


def _kill_one_ray_task_worker(stop: threading.Event, killed: list[int]) -> None:
    while not stop.is_set() and not killed:
        for p in psutil.Process().children(recursive=True):
            try:
                title = " ".join(p.cmdline())
            except psutil.Error:
                continue
            if title.startswith("ray::run_row_task") or title.startswith("ray::run_features_task"):
                os.kill(p.pid, signal.SIGKILL)
                killed.append(p.pid)
                return
        time.sleep(0.02)


def test_a_ray_worker_killed_mid_run_is_retried_and_the_run_completes(local_run, ray_cluster):
    tmp, cfg, v_local = local_run
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_one_ray_task_worker, args=(stop, killed), daemon=True)
    killer.start()
    try:
        v = run_with(tmp, cfg, "--executor", "ray")
    finally:
        stop.set()
        killer.join(5)
    assert killed, "no Ray task worker was seen running, so none was killed"
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == psutil.STATUS_ZOMBIE
    assert v.name == v_local.name and version_files(v) == version_files(v_local)


def test_stage_code_that_raises_fake_names_the_shard_and_the_row(tmp_path, fix, monkeypatch):
    """A fake bug in a real stage (min_words raises on one id): the run stops naming stage, shard and row."""
    from sftloop.curate.stages.filters import MinWords

    cfg = load_config(sharded(tmp_path, fix))
    real = MinWords.apply
    bad = {}

    def broken(self, df, ctx):
        if "_row" in df.columns and 7 in df["_row"].to_list():
            bad.setdefault("id", df.filter(pl.col("_row") == 7)["id"][0])
            raise ValueError("boom")
        return real(self, df, ctx)

    monkeypatch.setattr(MinWords, "apply", broken)
    with pytest.raises(StageFailure) as e:
        pipeline.run(cfg, tmp_path / "work", progress=False, executor=LocalExecutor())
    msg = str(e.value)
    assert "stage min_words failed on shard" in msg and ".parquet" in msg
    assert f"_row=7 id={bad['id']!r}" in msg and "ValueError: boom" in msg


def test_a_rerun_on_the_same_work_dir_skips_completed_shards(tmp_path, fix):
    cfg = load_config(sharded(tmp_path, fix))
    first = pipeline.run(cfg, tmp_path / "work", progress=False)
    again = pipeline.run(cfg, tmp_path / "work", progress=False)
    last = cfg.stages[-1].name  # minhash_dedup: features are recomputed (removed after use), splits are not
    splits = [t for t in again.tasks[last] if t.features is None]
    assert splits and not any(t.skipped for t in first.tasks[last])
    assert all(t.skipped for t in splits)  # its outputs and markers were still there
    assert [(s.stage, s.rows_out, s.reasons) for s in again.funnel] == [(s.stage, s.rows_out, s.reasons)
                                                                       for s in first.funnel]
    assert again.reports == first.reports


def test_stage_reports_sum_counters_and_keep_info_once():
    a = merge_counters({}, {"rows": 2, "by_method": {"exact": 1}}, "s")
    assert merge_counters(a, {"rows": 3, "by_method": {"exact": 1, "ngram": 2}}, "s") == {
        "rows": 5, "by_method": {"exact": 2, "ngram": 2}}
    assert merge_info({"max_tokens": 512}, {"max_tokens": 512}) == {"max_tokens": 512}
    with pytest.raises(AssertionError, match="max_tokens differs between shards"):
        merge_info({"max_tokens": 512}, {"max_tokens": 256}, "token_limit")
    with pytest.raises(TypeError, match="put it in info"):
        merge_counters({"tokenizer": "a"}, {"tokenizer": "b"}, "token_limit")
