"""A real Argilla for the review tests: Redis + argilla-server (our `sql` search engine) + worker,
on free loopback ports in a temporary home, stopped by PID at the end of the session."""

import json
import random
import textwrap

import pytest

from sftloop.curate.review import serve
from .review_helpers import OWNER_KEY


@pytest.fixture(scope="session")
def argilla(tmp_path_factory):
    home = tmp_path_factory.mktemp("argilla-home")
    cfg = serve.ServerConfig(home=home, port=serve.free_port(), redis_port=serve.free_port())
    run = serve.start(cfg)
    try:
        yield run
    finally:
        run.stop()
        assert all(p.poll() is not None for p in run.procs.values()), "a review-server process outlived stop()"


@pytest.fixture
def endpoint(argilla, request):
    """An owner endpoint on a workspace of this test's own (both users in it), so tests do not share queues."""
    import argilla as rg

    from sftloop.curate.review.client import Endpoint

    name = "t-" + request.node.name.replace("_", "-")[:40].lower()
    client = rg.Argilla(api_url=argilla.url, api_key=OWNER_KEY)
    ws = next((w for w in client.workspaces if w.name == name), None) or rg.Workspace(name=name, client=client).create()
    for user in ("owner", "annotator"):
        if user not in {u.username for u in ws.users}:
            ws.add_user(user)
    return Endpoint(url=argilla.url, api_key=OWNER_KEY, workspace=name)



TOPICS = ["sourdough bread", "a python decorator", "tax deductions for freelancers", "the french revolution",
          "marathon training", "composting at home", "a wedding toast", "black holes", "kubernetes pods",
          "watering succulents", "negotiating a salary", "the krebs cycle", "learning the guitar",
          "a cover letter", "saving for retirement", "brewing green tea", "a bash for loop", "jet lag",
          "rust ownership", "painting a room", "photosynthesis", "a haiku about autumn", "caring for a puppy",
          "the stock market", "public speaking", "sql joins", "the roman empire", "a resume summary"]


def conversations(n_dups: int = 4) -> list[dict]:
    rng = random.Random(7)
    rows = []
    for i, t in enumerate(TOPICS):
        user = f"Can you explain {t} to me in a few clear steps, please? I am a beginner and want practical advice."
        words = [f"Step {k}: think about {t} from angle {k} and practise it daily with patience and care." for k in range(1, 9)]
        rows.append({"messages": [{"role": "user", "content": user},
                                  {"role": "assistant", "content": " ".join(words)}]})
    for i in range(n_dups):  # near duplicates: a few words changed in a long reply
        base = rows[i]["messages"]
        ws = base[1]["content"].split()
        for _ in range(3 + i):
            ws[rng.randrange(len(ws))] = "indeed"
        rows.append({"messages": [{"role": "user", "content": base[0]["content"] + " Thanks!"},
                                  {"role": "assistant", "content": " ".join(ws)}]})
    return rows


@pytest.fixture(scope="session")
def curated(tmp_path_factory):
    """A small curated dataset version (clean, exact and MinHash dedup with borderline pairs)."""
    from sftloop.curate.__main__ import main

    root = tmp_path_factory.mktemp("review-root")
    (root / "models.toml").write_text('[models.base]\nbase_model = "smollm2-135m-instruct"\n')
    src = root / "chat.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in conversations()) + "\n")
    cfg = root / "c.toml"
    cfg.write_text(textwrap.dedent(f"""
        name = "review-fixture"
        [[sources]]
        name = "chat"
        format = "messages"
        path = "{src}"
        [[stages]]
        type = "clean"
        [[stages]]
        type = "exact_dedup"
        [[stages]]
        type = "minhash_dedup"
        threshold = 0.8
        borderline_margin = 0.15
        [split]
        val_fraction = 0.2
    """))
    assert main(["run", str(cfg), "--root", str(root), "--quiet"]) == 0
    base = root / "data" / "datasets" / "review-fixture"
    return root, base / (base / "LATEST").read_text().strip()
