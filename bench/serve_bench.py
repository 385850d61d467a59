"""Serving benchmark: in-process `hf` backend vs a vLLM server (prints figures; not a timed test).

- generation: N prompts x T new tokens, greedy, tokens/s both ways (hf: batches of 8 in this process;
  vLLM: 16 concurrent requests) and the ratio;
- the demo-profile gate, `hf` vs vLLM, each with an empty call cache: wall time, model calls per
  second, the verdict and every rule's status side by side (identical answers give identical
  judgments); then the vLLM gate once more on its now-filled cache;
- `--startup`: vLLM start time, eager and compiled (torch.compile), cold (empty `VLLM_CACHE_ROOT`)
  and warm;
- `--probes N`: N probe (choice) pairs of the gate's BIG-bench tasks, prompt log-likelihoods: one prompt
  per request vs several per request, with vLLM's own core binding (`auto`) and with serve's
  (`serve.omp_bind`), next to the `hf` backend, same run.

The gate runs on a registry written to a temporary folder (candidate = RUN's adapter, prod and the
judge = the base), so the repo's models.toml and any `just serve` of other users are untouched.

    python bench/serve_bench.py [--run runs/<id>] [--dtype float32] [--eager] [--startup] [--skip-gate]
    python bench/serve_bench.py --probes 128 [--dtype float32]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

from sftloop import registry, serve
from sftloop.settings import offline_env, repo_root

PROMPTS = ["Explain how to reset a forgotten password.", "Write a short apology for a late delivery.",
           "What are three ways to save energy at home?", "Summarise what a refund policy is.",
           "How do I track my order?", "Give two tips for a job interview.",
           "What is the difference between a virus and bacteria?", "Describe a good customer support reply."]


def fresh_cache() -> None:
    os.environ["SFTLOOP_CACHE"] = tempfile.mkdtemp(prefix="sftloop-bench-cache-")


def write_registry(tmp: Path, run: Path) -> Path:
    reg = tmp / "models.toml"
    reg.write_text('[models.prod]\nbase_model = "smollm2-135m-instruct"\n[models.base]\nbase_model = "smollm2-135m-instruct"\n')
    registry.put("candidate", registry.ModelEntry(base_model="smollm2-135m-instruct", adapter=str(run / "adapter"),
                                                  run=str(run)), reg)
    return reg


def tokens_per_s(name: str, root: Path, reg: Path, n: int, new: int) -> tuple[float, float, list[str]]:
    from transformers import AutoTokenizer

    from sftloop.backends import Cache, backend_for

    fresh_cache()
    b = backend_for(name, root, Cache(), reg)
    if hasattr(b, "concurrency"):
        b.concurrency = 16
    convs = [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)] + f" (case {i})"}] for i in range(n)]
    if b.kind == "hf":
        _ = b.model  # load outside the timing
    t0 = time.perf_counter()
    out = b.chat(convs, new)
    s = time.perf_counter() - t0
    tok = AutoTokenizer.from_pretrained(registry.resolve_local(registry.get("prod", reg), root)[0])
    ntok = sum(len(tok.encode(o, add_special_tokens=False)) for o in out)
    return ntok / s, s, out


def gate(root: Path, reg: Path, profile: str) -> dict:
    from sftloop.evaluate.gate import evaluate_gate

    t0 = time.perf_counter()
    res = evaluate_gate("candidate", "prod", root, profile=profile, registry_path=reg, log=lambda *_: None)
    s = time.perf_counter() - t0
    calls = res.details.get("calls", {})
    return {"seconds": s, "verdict": res.verdict, "exit": res.exit_code, "backends": res.details.get("backends"),
            "model_calls": calls.get("model_calls"), "from_cache": calls.get("from_cache"),
            "calls_per_s": (calls.get("model_calls") or 0) / s, "by_kind": calls.get("by_kind"),
            "rules": {c.name: c.outcome for c in res.checks}, "values": {c.name: c.value for c in res.checks}, "examples": res.details.get("examples")}


def startup(root: Path, reg: Path, dtype: str) -> dict:
    out = {}
    for eager in (True, False):
        cache_root = tempfile.mkdtemp(prefix="vllm-cache-")
        for when in ("cold", "warm"):
            os.environ["VLLM_CACHE_ROOT"] = cache_root
            cfg = serve.ServeConfig(dtype=dtype, enforce_eager=eager)
            servers = serve.start(["candidate", "prod"], cfg, root, reg)
            out[f"{'eager' if eager else 'compiled'} {when}"] = servers[0].seconds
            serve.stop(reg)
    os.environ.pop("VLLM_CACHE_ROOT", None)
    return out


def probe_pairs(n: int) -> list[tuple[str, str]]:
    import random

    from sftloop import assets
    from sftloop.evaluate import probes as P

    items = [it for t in P.TASKS for it in P.load_task(assets.path("bigbench-probes"), t, 20)]
    pairs = [(it["context"].rstrip(" "), " " + c) for it in items for c in it["choices"]]
    random.Random(0).shuffle(pairs)
    return pairs[:n]


def probes(root: Path, reg: Path, n: int, dtype: str) -> dict:
    """Seconds for n prompt log-likelihoods per setting, the same pairs: a base-only server with vLLM's own
    core binding (`auto`) and with serve's, one vs 8 prompts per request; a LoRA server (base + adapter)
    with vLLM's LoRA ops and with the grouped ones; the hf backend for both models."""
    from sftloop.backends import Cache, HFBackend, backend_for

    pairs, out, vals = probe_pairs(n), {"pairs": n}, {}

    def timed(key: str, b, per: int = 8) -> None:
        if hasattr(b, "loglik_per_request"):
            b.loglik_per_request = per
        t0 = time.perf_counter()
        vals[key] = b.loglik(pairs)
        out[key] = time.perf_counter() - t0
        print(f"probes: {key}: {out[key]:.1f} s ({n / out[key]:.1f} pairs/s)", flush=True)

    def fresh(name: str):
        return backend_for(name, root, Cache(Path(tempfile.mkdtemp()) / "c.sqlite"), reg)

    settings = [("auto", ["prod"], "grouped"), (serve.omp_bind(), ["prod"], "grouped"),
                (serve.omp_bind(), ["candidate", "prod"], "vllm"), (serve.omp_bind(), ["candidate", "prod"], "grouped")]
    for bind, names, ops in settings:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind
        serve.start(names, serve.ServeConfig(dtype=dtype, enforce_eager=True, lora_ops=ops), root, reg,
                    log=lambda *_: None)
        try:
            fresh("prod").loglik(pairs[:16])  # warm-up
            where = f"bind={bind}" + (f" lora server ({ops} ops)" if len(names) > 1 else " base server")
            for name in names:
                for per in ((1, 8) if len(names) == 1 else (8,)):
                    timed(f"vllm {where} {name} prompts/request={per}", fresh(name), per)
        finally:
            serve.stop(reg)
            os.environ.pop("VLLM_CPU_OMP_THREADS_BIND")
    for name in ("prod", "candidate"):
        h = HFBackend(registry.get(name, reg), root, Cache(Path(tempfile.mkdtemp()) / "c.sqlite"))
        _ = h.model
        timed(f"hf {name}", h)
    out["largest_abs_diff_vs_hf"] = {k: max(abs(a[0] - b[0]) for a, b in zip(v, vals["hf " + k.split()[-2]]))
                                     for k, v in vals.items() if k.startswith("vllm")}
    print(json.dumps(out, indent=2), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, help="a training run (default: the newest under runs/)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--eager", action="store_true")
    ap.add_argument("--startup", action="store_true")
    ap.add_argument("--skip-gate", action="store_true")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--only", choices=["vllm", "hf"], help="one side only (the other's figures from an earlier run)")
    ap.add_argument("--probes", type=int, metavar="N", help="only the probe log-likelihood comparison on N pairs")
    a = ap.parse_args()
    offline_env()
    root = repo_root()
    run = a.run or max((root / "runs").glob("*/adapter"), key=lambda p: p.stat().st_mtime).parent
    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    reg = write_registry(tmp, run.resolve())
    res: dict = {"run": str(run), "dtype": a.dtype, "eager": a.eager, "cpus": os.cpu_count(),
                 "load_before": os.getloadavg()}
    print(f"serve_bench: run {run}, dtype {a.dtype}, {'eager' if a.eager else 'compiled'}", flush=True)
    out = root / "reports" / f"serve-bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every step: a later failure keeps what was measured
        out.write_text(json.dumps(res, indent=2, default=str))

    if a.probes:
        res["probes"] = probes(root, reg, a.probes, a.dtype)
        save()
        print(f"written {out}")
        return
    # vLLM first: a server that cannot start fails the script before the long in-process gate
    v_out: list[str] = []
    hf_out: list[str] = []
    if a.only != "hf":
        servers = serve.start(["candidate", "prod", "base"], serve.ServeConfig(dtype=a.dtype, enforce_eager=a.eager),
                              root, reg)
        res["server_start_s"] = servers[0].seconds
        try:
            res["vllm_gen_tok_s"], res["vllm_gen_s"], v_out = tokens_per_s("prod", root, reg, a.prompts, a.new_tokens)
            print(f"vLLM generation: {res['vllm_gen_tok_s']:.1f} tok/s", flush=True)
            save()
            if not a.skip_gate:
                fresh_cache()
                res["gate_vllm"] = gate(root, reg, a.profile)
                print(f"vLLM gate: {res['gate_vllm']['seconds']:.0f} s, {res['gate_vllm']['verdict']}", flush=True)
                save()
                res["gate_vllm_cached"] = gate(root, reg, a.profile)  # same cache, filled by the run above
        finally:
            serve.stop(reg)
    if a.only != "vllm":
        os.environ["SFTLOOP_BACKEND"] = "hf"
        res["hf_gen_tok_s"], res["hf_gen_s"], hf_out = tokens_per_s("prod", root, reg, a.prompts, a.new_tokens)
        print(f"hf generation: {res['hf_gen_tok_s']:.1f} tok/s", flush=True)
        save()
        if not a.skip_gate:
            fresh_cache()
            res["gate_hf"] = gate(root, reg, a.profile)
            print(f"hf gate: {res['gate_hf']['seconds']:.0f} s, {res['gate_hf']['verdict']}", flush=True)
            save()
        os.environ.pop("SFTLOOP_BACKEND")
    if a.only:
        save()
        print(json.dumps(res, indent=2, default=str)[:4000])
        return

    res["gen_identical"] = sum(x == y for x, y in zip(hf_out, v_out))
    print(f"greedy answers identical: {res['gen_identical']}/{a.prompts}", flush=True)
    if a.startup:
        res["startup_s"] = startup(root, reg, a.dtype)
    res["load_after"] = os.getloadavg()
    res["gen_speedup"] = res["vllm_gen_tok_s"] / res["hf_gen_tok_s"]
    if not a.skip_gate:
        gh, gv = res["gate_hf"], res["gate_vllm"]
        res["gate_speedup"] = gh["seconds"] / gv["seconds"]
        res["rules_identical"] = gh["rules"] == gv["rules"] and gh["verdict"] == gv["verdict"]
        res["rules_differing"] = {k: (gh["rules"][k], gv["rules"].get(k)) for k in gh["rules"] if gh["rules"][k] != gv["rules"].get(k)}
        fin = lambda x: isinstance(x, float) and math.isfinite(x)  # noqa: E731
        res["rule_values_largest_diff"] = max((abs(gh["values"][k] - gv["values"][k]) for k in gh.get("values", {})
                                               if fin(gh["values"][k]) and fin(gv["values"].get(k))), default=None)
        res["cached_rules_identical"] = (res["gate_vllm_cached"]["rules"] == gv["rules"]
                                         and res["gate_vllm_cached"]["verdict"] == gv["verdict"])
        res["answers_identical"] = sum(x["candidate"] == y["candidate"] and x["prod"] == y["prod"]
                                       for x, y in zip(gh["examples"] or [], gv["examples"] or []))
    save()
    print(json.dumps({k: v for k, v in res.items() if not k.startswith("gate_")}, indent=2, default=str))
    for k in ("gate_hf", "gate_vllm", "gate_vllm_cached"):
        if k in res:
            g = res[k]
            print(f"{k}: {g['seconds']:.0f} s, {g['model_calls']} calls ({g['calls_per_s']:.1f}/s), "
                  f"{g['from_cache']} cached, verdict {g['verdict']}, backends {g['backends']}")
    print(f"written {out}")


if __name__ == "__main__":
    main()
