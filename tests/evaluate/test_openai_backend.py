"""The `openai` backend against a server that ignores `logprobs`: `transformers serve` running the
SmolLM2 asset on 127.0.0.1. This is the judge's constrained-text fallback; chat, logprob verdicts,
prompt log-likelihoods, LoRA selection and the cache against a real vLLM server are in
tests/sftloop/test_vllm.py."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from sftloop.backends import BackendError, Cache, OpenAIBackend
from sftloop.evaluate.judge import LABELS, _conv, prompt
from sftloop.assets import path
from sftloop.registry import ModelEntry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    model = str(path("smollm2-135m-instruct"))
    exe = os.path.join(os.path.dirname(sys.executable), "transformers")
    proc = subprocess.Popen([exe, "serve", model, "--host", "127.0.0.1", "--port", str(port)],
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            assert proc.poll() is None, "transformers serve exited"
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("server did not come up in 180 s")
    yield ModelEntry(endpoint=url + "/v1", model=model)
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_judge_verdict_without_logprobs_uses_constrained_text(server, tmp_path):
    b = OpenAIBackend(server, Cache(tmp_path / "c.sqlite"), timeout=120, max_retries=1)
    conv = _conv(prompt("pairwise-v1").format(question="What is 2+2?", answer_a="4", answer_b="5"))
    (lp,) = b.next_token_logprobs([conv], LABELS)
    # either one parsed label (0.0, the rest -inf) or {} = an error the judge never counts as a win
    assert lp == {} or (sorted(lp.values())[-1] == 0.0 and sum(v == 0.0 for v in lp.values()) == 1)


def test_dead_endpoint_is_a_clear_error_after_bounded_retries(tmp_path):
    entry = ModelEntry(endpoint=f"http://127.0.0.1:{free_port()}/v1", model="x")
    b = OpenAIBackend(entry, Cache(tmp_path / "c.sqlite"), timeout=2, max_retries=1)
    t = time.time()
    with pytest.raises(BackendError, match="127.0.0.1"):
        b.chat([[{"role": "user", "content": "hi"}]])
    assert time.time() - t < 30
