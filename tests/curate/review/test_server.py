"""The review server: our `sql` search engine inside a real argilla-server."""

import json
import subprocess

import argilla as rg
import pytest

from sftloop.curate.review import serve
from sftloop.curate.review.client import Endpoint, ReviewError, check
from .review_helpers import ANNOTATOR_KEY, OWNER_KEY, search


def test_sql_engine_implements_exactly_the_abstract_methods():
    out = subprocess.run([serve.argilla_python(), serve.LAUNCH, "check"], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert len(info["abstract"]) == 19
    assert set(info["abstract"]) == set(info["implemented"]), "argilla-server's SearchEngine changed: update sql_search"
    assert set(info["defined_on_class"]) == set(info["implemented"])
    assert "sql" in info["registered"]


def test_version_endpoint_users_and_keys(argilla):
    assert check(Endpoint(argilla.url, OWNER_KEY, "sftloop"))["role"] == "owner"
    assert check(Endpoint(argilla.url, ANNOTATOR_KEY, "sftloop"))["role"] == "annotator"
    with pytest.raises(ReviewError, match="refused the API key"):
        check(Endpoint(argilla.url, "wrong-key-123", "sftloop"))
    with pytest.raises(ReviewError, match="cannot reach Argilla"):
        check(Endpoint(f"http://127.0.0.1:{serve.free_port()}", OWNER_KEY, "sftloop", timeout=2), retries=1)


def test_search_filters_sort_paging_progress_and_similarity(endpoint):
    """What the UI relies on: text query, metadata filter, sort, paging, per-user pending, progress, vectors."""
    client = rg.Argilla(api_url=endpoint.url, api_key=OWNER_KEY)
    settings = rg.Settings(
        fields=[rg.TextField(name="text")],
        questions=[rg.LabelQuestion(name="label", labels=["a", "b"])],
        metadata=[rg.TermsMetadataProperty(name="colour"), rg.IntegerMetadataProperty(name="size")],
        vectors=[rg.VectorField(name="v", dimensions=3)],
    )
    ds = rg.Dataset(name="search-check", workspace=endpoint.workspace, settings=settings, client=client).create()
    rows = [("red apple pie", "red", 3, [1, 0, 0]), ("green apple", "green", 1, [0.9, 0.1, 0]),
            ("red car", "red", 7, [0, 1, 0]), ("blue sky", "blue", 5, [0, 0, 1]), ("red red rose", "red", 2, [0, 0.8, 0.2])]
    ds.records.log([rg.Record(id=f"r{i}", fields={"text": t}, metadata={"colour": c, "size": s}, vectors={"v": v},
                              suggestions=[rg.Suggestion("label", "a" if i % 2 == 0 else "b", score=i / 10)])
                    for i, (t, c, s, v) in enumerate(rows)])
    ext = lambda res: [i["record"]["external_id"] for i in res["items"]]  # noqa: E731

    res = search(endpoint, OWNER_KEY, "search-check", {"query": {"text": {"q": "red"}}})
    assert res["total"] == 3 and ext(res)[0] == "r4"  # two occurrences of "red" score highest
    assert search(endpoint, OWNER_KEY, "search-check", {"query": {"text": {"q": "red apple"}}})["total"] == 1  # AND
    metadata_filter = {"filters": {"and": [{"type": "terms", "scope": {"entity": "metadata", "metadata_property": "colour"},
                                            "values": ["red"]}]},
                       "sort": [{"scope": {"entity": "metadata", "metadata_property": "size"}, "order": "desc"}]}
    assert ext(search(endpoint, OWNER_KEY, "search-check", metadata_filter)) == ["r2", "r0", "r4"]
    ranged = {"filters": {"and": [{"type": "range", "scope": {"entity": "metadata", "metadata_property": "size"},
                                   "ge": 2, "le": 5}]}}
    assert sorted(ext(search(endpoint, OWNER_KEY, "search-check", ranged))) == ["r0", "r3", "r4"]
    by_suggestion = {"filters": {"and": [{"type": "terms", "scope": {"entity": "suggestion", "question": "label",
                                                                      "property": "value"}, "values": ["a"]}]},
                     "sort": [{"scope": {"entity": "suggestion", "question": "label", "property": "score"}, "order": "desc"}]}
    assert ext(search(endpoint, OWNER_KEY, "search-check", by_suggestion)) == ["r4", "r2", "r0"]
    page = search(endpoint, OWNER_KEY, "search-check", {}, offset=2, limit=2)
    assert page["total"] == 5 and len(page["items"]) == 2

    # a response by the annotator takes the record out of the annotator's pending queue, not the owner's
    rid = {i["record"]["external_id"]: i["record"]["id"] for i in search(endpoint, OWNER_KEY, "search-check")["items"]}
    from .review_helpers import respond

    respond(endpoint, ANNOTATOR_KEY, rid["r1"], {"label": "a"})
    pending = {"filters": {"and": [{"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": ["pending"]}]}}
    assert search(endpoint, ANNOTATOR_KEY, "search-check", pending)["total"] == 4
    assert search(endpoint, OWNER_KEY, "search-check", pending)["total"] == 5
    submitted = {"filters": {"and": [{"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": ["submitted"]}]}}
    assert ext(search(endpoint, ANNOTATOR_KEY, "search-check", submitted)) == ["r1"]
    answered_a = {"filters": {"and": [{"type": "terms", "scope": {"entity": "response", "question": "label"}, "values": ["a"]}]}}
    assert ext(search(endpoint, ANNOTATOR_KEY, "search-check", answered_a)) == ["r1"]
    ds_id = str(ds.id)
    from .review_helpers import ui_api

    with ui_api(endpoint.url, ANNOTATOR_KEY) as c:
        assert c.get(f"/api/v1/me/datasets/{ds_id}/metrics").json()["responses"] == {
            "total": 5, "submitted": 1, "discarded": 0, "draft": 0, "pending": 4}
        progress = c.get(f"/api/v1/datasets/{ds_id}/progress").json()
    assert progress["total"] == 5 and progress["completed"] == 1 and progress["pending"] == 4
    with ui_api(endpoint.url, OWNER_KEY) as c:
        metrics = c.get(f"/api/v1/metadata-properties/{ds.settings.metadata['colour'].id}/metrics").json()
    assert metrics["values"][0] == {"term": "red", "count": 3}

    # similarity: exact cosine, most similar first, the query record itself excluded
    sim = search(endpoint, OWNER_KEY, "search-check",
                 {"query": {"vector": {"name": "v", "record_id": rid["r0"], "order": "most_similar"}}}, limit=2)
    assert ext(sim)[0] == "r1" and "r0" not in ext(sim) and sim["items"][0]["query_score"] > 0.99


def test_review_server_command_stops_every_process_on_ctrl_c(tmp_path):
    """`just review-server`: banner with the UI URL and PIDs; SIGINT (Ctrl-C) stops Redis, server and worker."""
    import ast
    import os
    import signal
    import sys
    import time

    port, rport = serve.free_port(), serve.free_port()
    p = subprocess.Popen([sys.executable, "-m", "sftloop.curate.review", "server", "--port", str(port), "--redis-port", str(rport),
                          "--home", str(tmp_path / "argilla")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.time() + 120
    while time.time() < deadline:
        line = p.stdout.readline()
        lines.append(line)
        if "Ctrl-C" in line or not line:
            break
    banner = "".join(lines)
    assert f"Argilla UI: http://127.0.0.1:{port}" in banner and "annotator" in banner, banner
    pids = ast.literal_eval(banner.split("pids ", 1)[1].split(";", 1)[0])
    assert set(pids) == {"redis", "server", "worker"}
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=30) == 0
    time.sleep(0.5)
    for name, pid in pids.items():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        with open(f"/proc/{pid}/status") as f:  # a zombie is dead too (reaped by init later)
            assert "zombie" in f.read(), f"{name} (pid {pid}) still running"
