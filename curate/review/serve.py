"""Start and stop a local Argilla: Redis, argilla-server (with our `sql` search engine) and its worker.

argilla-server pins versions (fastapi, pydantic-settings, …) that do not belong in sftloop's
environment, so it lives in its own virtualenv (`.venv-argilla`, made by `just setup`); the
`argilla` SDK that our code imports is in the main one. Processes are started by PID and stopped
by PID (SIGTERM, then SIGKILL after a grace period); nothing is left running after `stop()`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sftloop import settings
from sftloop.curate.review.client import DEFAULTS, credential

LAUNCH = Path(__file__).resolve().parent / "server" / "launch.py"

def argilla_python() -> Path:
    return Path(os.environ.get("SFTLOOP_ARGILLA_PYTHON", settings.repo_root() / ".venv-argilla" / "bin" / "python"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerConfig:
    home: Path = field(default_factory=lambda: settings.home() / "argilla")
    host: str = "127.0.0.1"
    port: int = 6900
    redis_port: int = 6379
    search_engine: str = field(default_factory=lambda: os.environ.get("ARGILLA_SEARCH_ENGINE", "sql"))
    start_redis: bool = True  # False: use ARGILLA_REDIS_URL's Redis as is

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class Running:
    config: ServerConfig
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.config.url

    def pids(self) -> dict[str, int]:
        return {k: p.pid for k, p in self.procs.items()}

    def stop(self, grace: float = 10.0) -> None:
        for name in ("worker", "server", "redis"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in self.procs.values():
            if f.stdout:
                f.stdout.close()


def _env(cfg: ServerConfig) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "ARGILLA_HOME_PATH": str(cfg.home),
        "ARGILLA_DATABASE_URL": f"sqlite+aiosqlite:///{cfg.home / 'argilla.db'}?check_same_thread=False",
        "ARGILLA_SEARCH_ENGINE": cfg.search_engine,
        "ARGILLA_ENABLE_TELEMETRY": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    })
    if cfg.start_redis:
        env["ARGILLA_REDIS_URL"] = f"redis://{cfg.host}:{cfg.redis_port}/0"
    env.update({k: credential(k) for k in DEFAULTS})
    return env


def _wait(check, what: str, timeout: float, procs: dict[str, subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, p in procs.items():
            if p.poll() is not None:
                out = p.stdout.read().decode(errors="replace")[-3000:] if p.stdout else ""
                raise RuntimeError(f"review server: {name} exited with {p.returncode} while waiting for {what}:\n{out}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"review server: {what} not ready after {timeout:.0f} s")


def _redis_ping(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


def _version_ok(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/api/v1/version", timeout=2) as r:
        return r.status == 200


def start(cfg: ServerConfig, log_dir: Path | None = None, timeout: float = 120.0) -> Running:
    """Redis → migrations → users → server + worker; returns when /api/v1/version answers."""
    py = argilla_python()
    if not py.exists():
        raise FileNotFoundError(f"review server: {py} missing; run `just setup` (it creates .venv-argilla)")
    cfg.home.mkdir(parents=True, exist_ok=True)
    log_dir = log_dir or cfg.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = _env(cfg)
    run = Running(cfg)
    try:
        if cfg.start_redis:
            redis = shutil.which("redis-server")
            if redis is None:
                raise FileNotFoundError("review server: redis-server not found; `just setup` installs Debian's redis-server")
            run.procs["redis"] = subprocess.Popen(
                [redis, "--port", str(cfg.redis_port), "--bind", cfg.host, "--save", "", "--appendonly", "no",
                 "--dir", str(cfg.home)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )
            _wait(lambda: _redis_ping(cfg.host, cfg.redis_port), "redis", 20, run.procs)
        if not LAUNCH.exists():  # the plugin is not installed with the package: it lives in the checkout
            raise FileNotFoundError(f"review server: {LAUNCH} not found; run the review server from a sftloop "
                                    "checkout (`pip install -e .`), where curate/review/server/ lives")
        for step in ("migrate", "users"):
            r = subprocess.run([py, LAUNCH, step], env=env, capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                raise RuntimeError(f"review server: `{step}` failed:\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
        for name, args in (("server", ["server", cfg.host, str(cfg.port)]), ("worker", ["worker"])):
            log = open(log_dir / f"{name}.log", "ab")
            run.procs[name] = subprocess.Popen([py, LAUNCH, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        _wait(lambda: _version_ok(cfg.url), "argilla-server", timeout, {k: v for k, v in run.procs.items() if k != "worker"})
    except BaseException:
        run.stop()
        raise
    return run


def serve_forever(cfg: ServerConfig) -> None:
    """`just review-server`: start everything, print where to go, stop it all on Ctrl-C (or SIGTERM)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)  # also when started with SIGINT ignored (background jobs)
    signal.signal(signal.SIGTERM, interrupt)
    run = start(cfg)
    try:  # the banner is inside: a Ctrl-C right after "Ctrl-C stops them" must still stop everything
        print(f"Argilla UI: {cfg.url}  (search engine: {cfg.search_engine}, data: {cfg.home})")
        print(f"  owner     {credential('SFTLOOP_ARGILLA_OWNER')} / {credential('SFTLOOP_ARGILLA_OWNER_PASSWORD')}")
        print(f"  annotator {credential('SFTLOOP_ARGILLA_ANNOTATOR')} / {credential('SFTLOOP_ARGILLA_ANNOTATOR_PASSWORD')}")
        print(f"  pids {run.pids()}; Ctrl-C stops them", flush=True)
        while all(p.poll() is None for p in run.procs.values()):
            time.sleep(1)
        dead = {k: p.returncode for k, p in run.procs.items() if p.poll() is not None}
        print(f"review server: {dead} exited; stopping the rest (logs in {cfg.home / 'logs'})", file=sys.stderr)
    except KeyboardInterrupt:
        print("stopping")
    finally:
        run.stop()
