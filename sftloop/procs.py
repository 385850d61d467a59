"""Facts about processes that several packages need (the lock, the serve state, shard tasks, benchmarks)."""

from __future__ import annotations

import resource

import psutil


def pid_alive(pid: int) -> bool:
    """A process with this PID exists (psutil: also True when it belongs to another user)."""
    return psutil.pid_exists(pid)


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not getrusage's ru_maxrss: Linux carries that over
    from the parent across fork+exec, so a child started by a 2.7 GB parent would report 2.7 GB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running; a zombie has exited (only its parent's wait is missing), so it is not."""
    out = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def stop_survivors(procs: list[psutil.Process], grace_s: float = 10.0) -> list[psutil.Process]:
    """Wait up to `grace_s` for processes that were asked to stop, kill by PID those still running,
    and return any that survive even that (empty when all are gone)."""
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in running(alive):
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(running(alive), timeout=grace_s)
    return running(alive)
