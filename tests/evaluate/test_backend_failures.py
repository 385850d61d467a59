"""Nothing bad is cached, every error names the endpoint or the cache file: the `openai` backend against
FAKE endpoints on 127.0.0.1 (tests/evaluate/fake_openai.py) and a corrupted SQLite cache."""

from __future__ import annotations

import time

import pytest

from sftloop.backends import BackendError, Cache, Deadline, OpenAIBackend
from sftloop.evaluate.judge import LABELS
from fake_openai import FakeOpenAI
from sftloop.registry import ModelEntry

HI = [[{"role": "user", "content": "hi"}]]


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI() as f:
        yield f


def backend(fake, model, tmp_path, **kw):
    return OpenAIBackend(ModelEntry(endpoint=fake.url, model=model), Cache(tmp_path / "calls.sqlite"), **kw)


def test_fake_null_content_is_an_error_and_cache_unchanged(fake, tmp_path):
    b = backend(fake, "null", tmp_path, max_retries=0)
    before = b.cache.rows()
    with pytest.raises(BackendError, match=r"null content") as e:
        b.chat(HI)
    assert fake.url in str(e.value) and "model null" in str(e.value)
    assert b.cache.rows() == before == 0
    with pytest.raises(BackendError):  # a rerun asks again: nothing was cached
        b.chat(HI)
    assert b.cache.rows() == 0


def test_fake_good_answer_is_cached(fake, tmp_path):
    b = backend(fake, "cand", tmp_path)
    assert b.chat(HI)[0].startswith("Candidate (turn 1)")
    assert b.cache.rows() == 1 and b.chat(HI) and b.cache.hits == 1


def test_fake_judge_logprobs_without_verdict_tokens_give_no_verdict(fake, tmp_path):
    assert backend(fake, "judge-noverdict", tmp_path).next_token_logprobs(HI, LABELS) == [{}]
    (lp,) = backend(fake, "judge-constant", tmp_path).next_token_logprobs(HI, LABELS)
    assert lp["A"] > -1 and lp["B"] == lp["C"] == -1e9


def test_fake_hanging_endpoint_cancels_queued_requests_at_the_deadline(fake, tmp_path):
    b = backend(fake, "hang", tmp_path, timeout=30, max_retries=0, concurrency=2, deadline=Deadline(2))
    n0 = len(fake.requests)
    t = time.monotonic()
    with pytest.raises(BackendError, match="deadline of 2 s passed") as e:
        b.chat([[{"role": "user", "content": f"q{i}"}] for i in range(10)])
    assert time.monotonic() - t < 8 and fake.url in str(e.value)
    time.sleep(0.5)
    assert len(fake.requests) - n0 <= 2  # the 8 queued requests never started


def test_corrupt_cache_error_names_the_file(tmp_path):
    p = tmp_path / "calls.sqlite"
    p.write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(BackendError, match=str(p)):
        Cache(p).get("k")
