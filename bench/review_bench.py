"""Review-queue latency with the `sql` search engine (prints figures; not a timed test).

The sql engine has no index: each query reads the queue's records from SQLite and filters in Python.
This measures what an annotator waits for, at queue sizes review actually uses, on a fresh local
server: the UI's pending-queue page (POST /api/v1/me/datasets/{id}/records/search, 1 page of 10),
a text query, and the progress/metrics calls. No baseline in the same run: Elasticsearch cannot be
installed here, so the figures are absolute, and the docs say where the engine stops being enough.

    python bench/review_bench.py [--sizes 500 2000 8000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from sftloop.curate.review import serve


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 8000])
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    import argilla as rg

    home = Path(tempfile.mkdtemp(prefix="review-bench-"))
    run = serve.start(serve.ServerConfig(home=home, port=serve.free_port(), redis_port=serve.free_port()))
    key = serve.DEFAULTS["SFTLOOP_ARGILLA_ANNOTATOR_KEY"]
    try:
        client = rg.Argilla(api_url=run.url, api_key=serve.DEFAULTS["SFTLOOP_ARGILLA_OWNER_KEY"])
        print(f"{'records':>8} {'push s':>8} {'pending page ms':>16} {'text query ms':>14} {'metrics ms':>11}")
        for n in a.sizes:
            settings = rg.Settings(fields=[rg.ChatField(name="conversation")],
                                   questions=[rg.LabelQuestion(name="verdict", labels=["keep", "reject"])],
                                   metadata=[rg.TermsMetadataProperty(name="source")])
            ds = rg.Dataset(name=f"bench-{n}", workspace="sftloop", settings=settings, client=client).create()
            recs = [rg.Record(id=f"r{i}", fields={"conversation": [
                {"role": "user", "content": f"Question {i} about topic {i % 97}: how does it work in practice?"},
                {"role": "assistant", "content": "An answer with several sentences. " * 20 + f"Number {i}."}]},
                metadata={"source": f"s{i % 5}"}) for i in range(n)]
            t = time.perf_counter()
            ds.records.log(recs, batch_size=500)
            push_s = time.perf_counter() - t
            pending = {"filters": {"and": [{"type": "terms", "scope": {"entity": "response", "property": "status"},
                                            "values": ["pending"]}]}}
            text = {"query": {"text": {"q": "topic 42"}}}
            with httpx.Client(base_url=run.url, headers={"X-Argilla-Api-Key": key}, timeout=120) as c:
                def timed(fn) -> float:
                    fn()  # warm
                    xs = []
                    for _ in range(a.repeats):
                        t0 = time.perf_counter()
                        r = fn()
                        r.raise_for_status()
                        xs.append((time.perf_counter() - t0) * 1000)
                    return statistics.median(xs)

                url = f"/api/v1/me/datasets/{ds.id}/records/search"
                p = timed(lambda: c.post(url, params={"limit": 10, "include": "responses"}, json=pending))
                q = timed(lambda: c.post(url, params={"limit": 10}, json=text))
                m = timed(lambda: c.get(f"/api/v1/me/datasets/{ds.id}/metrics"))
            print(f"{n:>8} {push_s:>8.1f} {p:>16.0f} {q:>14.0f} {m:>11.0f}")
    finally:
        run.stop()


if __name__ == "__main__":
    main()
