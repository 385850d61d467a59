"""Mining on every executor: the same week mined in-process (`local`), on 2 spawned processes and on a
real local Ray cluster (2 CPUs, 127.0.0.1, no dashboard, every process it started gone at the end)
writes the same failures.parquet, drift.json and report.md (but for the executor line). Each run has
its own empty embedding cache, and `processes` its own empty judge-call cache, so those vectors and
grades are computed in the workers: the caches the runs leave behind are compared too (the workers'
vectors and logprobs are the in-process ones, bit for bit). The Ray run starts from the local run's
judge-call cache: a rerun grades nothing, on any executor (SmolLM2 grading is the slow part here)."""

import json
import os
import shutil
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import psutil
import pytest

from log_fixture import write_logs, write_reference
from sftloop.curate.executors import ExecutorConfig
from sftloop.curate.mine.parallel import judge_chunks
from sftloop.curate.mine.run import EXECUTOR_LINE, run
from sftloop.procs import running

WEEK = "2026-W47"
JUDGE_SAMPLE = 9  # graded rows: one more than the hf judge's batch of 8, so two judge chunks (8 + 1)
EXTRA = [  # more rows in the fixture's week, so embedding splits into several tasks
    ("How do I change the e-mail address on my account?", "Open Settings, then Account, and edit the address."),
    ("Can I get a refund for a damaged parcel?", "I'm sorry, but I cannot help with that."),
    ("Why was my card charged twice?", "Sure, here is how that works."),
    ("Where can I download my invoice?", "Invoices are under Orders > Invoices; click the PDF icon."),
    ("Is there a student discount?", "No."),
    ("How long does shipping to Canada take?", "Usually 5 to 8 business days."),
    ("Cancel my subscription please", "I'm sorry, but I cannot help with that."),
    ("The app crashes when I open my cart", "Please reinstall the app and try again."),
    ("Do you ship to Norway?", "Yes, we ship to Norway."),
    ("What payment methods do you accept?", "Cards, PayPal and bank transfer."),
    ("My discount code does not work", "Sure, here is how that works."),
    ("How do I delete my account?", "Go to Settings, Privacy, Delete account."),
]


@contextmanager
def _cache(path: Path):
    """`$SFTLOOP_CACHE` for one run (the embedding cache and the judge's call cache): empty at the start."""
    old = os.environ.get("SFTLOOP_CACHE")
    os.environ["SFTLOOP_CACHE"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            del os.environ["SFTLOOP_CACHE"]
        else:
            os.environ["SFTLOOP_CACHE"] = old


def _fixture(tmp: Path) -> Path:
    write_logs(tmp)
    rows = [{"request_id": f"extra-{i}", "timestamp": f"2026-11-1{8 + i % 2}T0{i % 10}:30:00Z", "model": "prod",
             "prompt": p, "response": r, "latency_ms": 50, "user_feedback": "thumbs_down" if i % 5 == 0 else None,
             "automated_score": 0.7, "category": "account"} for i, (p, r) in enumerate(EXTRA)]
    (tmp / "extra.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp / "models.toml").write_text('[models.base]\nbase_model = "smollm2-135m-instruct"\n')
    return write_reference(tmp)


def _mine(tmp: Path, name: str, executor: ExecutorConfig | None) -> Path:
    from sftloop.curate.embed import Embedder

    with _cache(tmp / f"cache-{name}"):
        # batch_size 4: several embedding batches, so several tasks (the in-process run batches the same)
        return run(str(tmp / "*.jsonl"), tmp / f"reports-{name}", week=WEEK, reference=tmp / "ref", root=tmp,
                   embedder=Embedder(batch_size=4, progress=False), judge="base", judge_sample=JUDGE_SAMPLE,
                   judge_threshold=1.5,
                   executor=executor)


def _vectors(cache: Path) -> dict[str, bytes]:
    df = pl.concat([pl.read_parquet(p) for p in sorted((cache / "embeddings").rglob("*.parquet"))])
    return {k: pl.Series(v).cast(pl.Float32).to_numpy().tobytes() for k, v in zip(df["key"], df["vec"].to_list())}


def _calls(cache: Path) -> dict[str, str]:
    with sqlite3.connect(cache / "evaluate" / "calls.sqlite") as db:
        return dict(db.execute("SELECT key, value FROM calls").fetchall())


def _report(out: Path) -> tuple[list[str], str]:
    lines = (out / "report.md").read_text().splitlines()
    executor = [x for x in lines if x.startswith(EXECUTOR_LINE)]
    assert len(executor) == 1, lines
    return [x for x in lines if not x.startswith(EXECUTOR_LINE)], executor[0]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mine-executors")
    _fixture(tmp)
    out = _mine(tmp, "local", None)
    fails = pl.read_parquet(out / "failures.parquet")
    # the week has judge-flagged and unflagged rows, clusters and drift: something that could differ
    assert fails.height >= 8 and any("soft:judge_low" in r for r in fails["reasons"].to_list())
    assert fails["cluster"].n_unique() > 1 and fails["judge_score"].drop_nulls().len() > 0
    judged = json.loads((out / "drift.json").read_text())["judge_this_week"]
    assert judged["graded"] == JUDGE_SAMPLE and 0 < judged["below_threshold"] < JUDGE_SAMPLE
    _, line = _report(out)
    assert line.startswith(f"{EXECUTOR_LINE}local (in-process); seconds: ") and "tasks" not in line
    return tmp, out


def _assert_same(tmp: Path, a: Path, b: Path, name: str) -> str:
    assert (a / "failures.parquet").read_bytes() == (b / "failures.parquet").read_bytes()
    assert (a / "drift.json").read_text() == (b / "drift.json").read_text()
    body_a, _ = _report(a)
    body_b, line = _report(b)
    assert body_a == body_b
    vec_local, vec_other = _vectors(tmp / "cache-local"), _vectors(tmp / f"cache-{name}")
    assert len(vec_local) == 19 and vec_other == vec_local  # 18 prompts of the week + 1 reference prompt
    calls_local, calls_other = _calls(tmp / "cache-local"), _calls(tmp / f"cache-{name}")
    assert len(calls_local) == JUDGE_SAMPLE * 4 and calls_other == calls_local  # 3 aspects + hallucination a row
    return line


def test_processes_mine_the_same_failures_as_local(local):
    tmp, out_local = local
    out = _mine(tmp, "processes", ExecutorConfig(kind="processes", workers=2))
    line = _assert_same(tmp, out_local, out, "processes")
    # 18 prompts in 5 batches of 4 + the reference prompt: 6 tasks; 9 graded rows: judge chunks of 8 and 1
    assert line.startswith(f"{EXECUTOR_LINE}processes (2 workers); embedding 6 tasks in ") and "judge grading 2 tasks" in line


LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def _listening(procs) -> set[str]:
    """The addresses the processes listen on (TCP)."""
    out = set()
    for p in procs:
        try:
            out |= {c.laddr.ip for c in p.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture(scope="module")
def ray_cluster(local):
    """A real local Ray cluster for this module, bound to 127.0.0.1 (its workers get this run's cache
    through the environment it starts with); every process it started is gone afterwards (stopped by
    PID if need be). `_node_ip_address="127.0.0.1"` alone is not enough: Ray replaces a loopback address
    with the machine's own and its GCS and raylets listen on every interface, unless local-only mode is
    on (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read when ray is imported)."""
    tmp, _ = local
    shutil.copytree(tmp / "cache-local" / "evaluate", tmp / "cache-ray" / "evaluate")  # the judge's calls: a rerun
    import ray

    from sftloop.curate.executors import init_local_ray

    with _cache(tmp / "cache-ray"):
        before = {p.pid for p in psutil.Process().children(recursive=True)}  # the processes run's resource tracker
        shutdown = init_local_ray(2)
        started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        try:
            yield ray
        finally:
            shutdown()

    left = running(started)  # shutdown() stops by PID whatever outlived ray.shutdown()
    assert not left, f"still running after ray.shutdown() and kill by PID: {[p.pid for p in left]}"


def test_ray_mines_the_same_failures_as_local(local, ray_cluster):
    tmp, out_local = local
    assert [n["NodeManagerAddress"] for n in ray_cluster.nodes()] == ["127.0.0.1"]
    out = _mine(tmp, "ray", ExecutorConfig(kind="ray"))  # the cluster this process started: used, left running
    listening = _listening(psutil.Process().children(recursive=True))  # GCS, raylet and the task workers
    assert listening and listening <= LOOPBACK, listening
    line = _assert_same(tmp, out_local, out, "ray")
    assert line.startswith(f"{EXECUTOR_LINE}ray (2 CPUs); embedding 6 tasks in ") and "judge grading 2 tasks" in line
    assert ray_cluster.is_initialized()


@pytest.mark.parametrize("n,workers,chunks", [(18, 2, [(0, 16), (16, 2)]), (5, 2, [(0, 5)]), (40, 2, [(0, 24), (24, 16)]),
                                              (40, 16, [(i, 8) for i in range(0, 40, 8)])])
def test_judge_chunks_are_whole_judge_batches_one_per_worker(n, workers, chunks):
    assert judge_chunks(n, workers, 8) == chunks


@pytest.mark.parametrize("flags", [["--executor", "dask"], ["--executor", "processes", "--workers", "0"]])
def test_mine_cli_rejects_an_unknown_executor_or_no_workers(flags, capsys):
    from sftloop.curate.mine.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["run", "logs.jsonl", *flags])
    assert e.value.code == 2
    assert ("--executor" if "dask" in flags else "--workers") in capsys.readouterr().err
