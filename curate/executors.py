"""Where the pipeline's per-shard tasks run: in this process, on all local cores, or on a Ray cluster.

The pipeline list, the stages and their code are the same whatever the executor; the unit of work
is one Parquet shard. An executor only maps a top-level function over task descriptions and
returns the results in task order (the driver merges them in shard order, so every executor writes
the same bytes). Infrastructure failures (a worker process that dies, a Ray node lost, OOM kills)
are retried a bounded number of times; an exception raised by the task itself (stage code) is not
retried and fails the run.

- `local`: in this process, one shard after another (the default; today's path).
- `processes`: a `concurrent.futures` pool of spawned processes, one per core by default.
- `ray`: Ray tasks (`max_retries` for dead workers, `retry_exceptions=False`); `address = "auto"` or
  a `ray://` URL joins a running cluster, none starts a local one bound to 127.0.0.1 and stops it
  when the run ends. A cluster already initialised in this process (`ray.init` by the caller) is used
  as it is and left running.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, Literal, Protocol, TypeVar

import psutil
from pydantic import BaseModel, ConfigDict, Field

from sftloop.procs import stop_survivors
from sftloop.progress import progress

T = TypeVar("T")
R = TypeVar("R")

ExecutorKind = Literal["local", "processes", "ray"]


class ExecutorConfig(BaseModel):
    """How a run is executed (not part of the dataset version: every executor gives the same bytes)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    kind: ExecutorKind = "local"
    address: str | None = None  # ray: "auto", "ray://host:10001" or "host:6379"; None starts a local cluster
    workers: int | None = Field(None, ge=1)  # processes / a local Ray cluster: default all cores
    max_retries: int = Field(3, ge=0)  # per task, infrastructure failures only


class InfrastructureError(RuntimeError):
    """A task could not be run (its worker kept dying) after the bounded retries."""


class Executor(Protocol):
    kind: str

    def map(self, fn: Callable[[T], R], items: Sequence[T], desc: str) -> list[R]: ...

    def close(self) -> None: ...


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class LocalExecutor:
    kind = "local"

    def map(self, fn: Callable[[T], R], items: Sequence[T], desc: str) -> list[R]:
        it = progress(items, total=len(items), desc=desc, unit="shard") if len(items) > 1 else items
        return [fn(x) for x in it]

    def close(self) -> None:
        pass


class ProcessExecutor:
    """All local cores. Spawned (not forked) workers: polars and tokenizers keep thread pools that a
    fork would copy in an undefined state. A pool broken by a dying worker is replaced and the tasks
    that had not returned are submitted again, at most `max_retries` times."""

    kind = "processes"

    def __init__(self, workers: int | None = None, max_retries: int = 3):
        self.workers = workers or _cores()
        self.max_retries = max_retries
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
        return self._pool

    def map(self, fn: Callable[[T], R], items: Sequence[T], desc: str) -> list[R]:
        results: dict[int, R] = {}
        tries = dict.fromkeys(range(len(items)), 0)
        todo = list(range(len(items)))
        ticks = iter(progress(range(len(items)), total=len(items), desc=desc, unit="shard")) if len(items) > 1 else None
        while todo:
            pool = self._get_pool()
            futs: dict[Future, int] = {pool.submit(fn, items[i]): i for i in todo}
            todo = []
            pending = set(futs)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    i = futs[f]
                    try:
                        results[i] = f.result()
                    except BrokenProcessPool as e:
                        tries[i] += 1
                        if tries[i] > self.max_retries:
                            raise InfrastructureError(f"{desc}: task {i} failed {tries[i]} times: worker died ({e})") from e
                        todo.append(i)
                        continue
                    if ticks is not None:
                        next(ticks, None)
            if todo:  # the pool is broken: a fresh one for the tasks that did not return
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
        if ticks is not None:
            for _ in ticks:  # the summary line
                pass
        return [results[i] for i in range(len(items))]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def init_local_ray(workers: int | None = None) -> Callable[[], None]:
    """Start a Ray cluster on this machine only, every server listening on 127.0.0.1; returns the
    function that shuts it down. `_node_ip_address="127.0.0.1"` alone is not enough with Ray 2.60: it
    swaps a loopback address for the machine's own and its GCS and raylet listen on every interface
    unless local-only mode is on (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, read when ray is imported, so the
    constant is set too). Tests start their clusters through this as well."""
    old = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    from ray._private import ray_constants

    was = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    ray.init(num_cpus=workers or _cores(), include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False)
    started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]

    def shutdown() -> None:  # and the settings as they were, so a later `address` run can join a cluster
        ray.shutdown()
        stop_survivors(started)  # a Ray process can outlive ray.shutdown(): what we started is stopped by PID
        ray_constants.ENABLE_RAY_CLUSTER = was
        if old is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = old
    return shutdown


class RayExecutor:
    kind = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, max_retries: int = 3):
        import ray

        self.ray = ray
        self.max_retries = max_retries
        self.started = False
        if not ray.is_initialized():
            if address is None:  # a local cluster for this run only, bound to 127.0.0.1, stopped in close()
                self._shutdown = init_local_ray(workers)
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
                self._shutdown = ray.shutdown
            self.started = True
        self._remote: dict[Callable, Any] = {}

    def map(self, fn: Callable[[T], R], items: Sequence[T], desc: str) -> list[R]:
        ray = self.ray
        if fn not in self._remote:
            self._remote[fn] = ray.remote(max_retries=self.max_retries, retry_exceptions=False)(fn)
        remote = self._remote[fn]
        refs = [remote.remote(x) for x in items]
        index = {r: i for i, r in enumerate(refs)}
        results: dict[int, R] = {}
        pending = list(refs)
        ticks = iter(progress(range(len(items)), total=len(items), desc=desc, unit="shard")) if len(items) > 1 else None
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for r in done:
                try:
                    results[index[r]] = ray.get(r)
                except ray.exceptions.RayTaskError as e:  # raised by the task's own code: not retried
                    cause = e.as_instanceof_cause()
                    for p in pending:
                        ray.cancel(p)
                    raise cause from None
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                        ray.exceptions.OutOfMemoryError, ray.exceptions.ObjectLostError) as e:
                    for p in pending:
                        ray.cancel(p)
                    raise InfrastructureError(f"{desc}: task {index[r]} failed after {self.max_retries} retries: "
                                              f"{type(e).__name__}: {e}") from e
                if ticks is not None:
                    next(ticks, None)
        if ticks is not None:
            for _ in ticks:
                pass
        return [results[i] for i in range(len(items))]

    def close(self) -> None:
        if self.started:
            self._shutdown()
            self.started = False


def make_executor(cfg: ExecutorConfig) -> Executor:
    if cfg.kind == "processes":
        return ProcessExecutor(cfg.workers, cfg.max_retries)
    if cfg.kind == "ray":
        return RayExecutor(cfg.address, cfg.workers, cfg.max_retries)
    return LocalExecutor()

