"""Queues pushed with the SDK, answered through the API the UI uses, pulled into a new dataset version."""

import json
from pathlib import Path

import polars as pl
import pytest

from sftloop.curate.review import push
from sftloop.curate.review.__main__ import main
from sftloop.curate.review.pull import pull
from .review_helpers import ANNOTATOR_KEY, OWNER_KEY, records_by_external_id, respond


def _rows(vdir: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(vdir / f"{s}.parquet") for s in ("train", "val")])


def test_first_push_is_quiet_describes_questions_and_shows_our_id(endpoint, curated, recwarn, caplog):
    """A normal first push (new workspace queue): no SDK warnings ("Dataset ... not found", batch size
    normalised), every question has a one-line description, every record carries our id as a field."""
    import logging

    import argilla as rg

    _, vdir = curated
    caplog.set_level(logging.WARNING)
    out = push.push_sample_qa(endpoint, vdir, size=5, seed=2)
    assert out["pushed"] == 5
    # ResourceWarnings (a socket collected late, anyone's) are hidden by Python by default: not what a user sees
    assert [str(w.message) for w in recwarn.list if not issubclass(w.category, ResourceWarning)] == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("argilla")] == []
    ds = rg.Argilla(api_url=endpoint.url, api_key=OWNER_KEY).datasets(name="sample-qa", workspace=endpoint.workspace)
    for q in ds.settings.questions:
        assert q.description and "\n" not in q.description, q.name
    recs = records_by_external_id(endpoint, OWNER_KEY, "sample-qa")
    assert recs and all(r["fields"]["record_id"] == rid for rid, r in recs.items())


def test_sample_qa_round_trip(endpoint, curated):
    root, vdir = curated
    out = push.push_sample_qa(endpoint, vdir, size=8, seed=1)
    assert out["pushed"] == 8 and sum(out["strata"].values()) == 8
    recs = records_by_external_id(endpoint, OWNER_KEY, "sample-qa")
    ids = sorted(recs)
    assert len(ids) == 8 and set(ids) <= set(_rows(vdir)["id"].to_list())  # record ids are chat-record ids
    keep_fix, reject, split_vote, draft_only, discarded = ids[:5]
    original = _rows(vdir).filter(pl.col("id") == keep_fix)["messages"][0][-1]["content"]
    respond(endpoint, ANNOTATOR_KEY, recs[keep_fix]["id"], {"verdict": "keep", "quality": 4, "corrected_reply": "A better reply."})
    respond(endpoint, OWNER_KEY, recs[keep_fix]["id"], {"verdict": "keep", "quality": 5})
    respond(endpoint, ANNOTATOR_KEY, recs[reject]["id"], {"verdict": "reject", "quality": 1, "reason": "wrong facts"})
    respond(endpoint, OWNER_KEY, recs[reject]["id"], {"verdict": "reject", "quality": 2})
    respond(endpoint, ANNOTATOR_KEY, recs[split_vote]["id"], {"verdict": "keep", "quality": 3})
    respond(endpoint, OWNER_KEY, recs[split_vote]["id"], {"verdict": "reject", "quality": 3})
    respond(endpoint, ANNOTATOR_KEY, recs[draft_only]["id"], {"verdict": "reject", "quality": 1}, status="draft")
    respond(endpoint, ANNOTATOR_KEY, recs[discarded]["id"], {"verdict": "reject"}, status="discarded")
    for rid in ids[5:]:
        respond(endpoint, ANNOTATOR_KEY, recs[rid]["id"], {"verdict": "keep", "quality": 4})

    path, change = pull("sample-qa", endpoint, root)
    assert path.parent == vdir.parent and path != vdir
    m = json.loads((path / "manifest.json").read_text())
    assert m["parent"] == vdir.name and m["change"]["queue"] == "sample-qa"
    assert change["applied"] == {"accepted": 4, "corrected": 1, "rejected": 2}  # a 1:1 split rejects
    assert change["reviewers"] == {"annotator": 6, "owner": 3}
    assert change["skipped_responses"] == {"discarded": 1, "draft": 1}
    kappa = change["agreement"]["verdict"]
    assert kappa["records_with_two_reviewers"] == 3 and kappa["observed_agreement"] == pytest.approx(2 / 3, abs=1e-3)
    assert -1 <= kappa["cohen_kappa"] <= 1
    new, ex = _rows(path), pl.read_parquet(path / "excluded.parquet")
    assert {reject, split_vote} <= set(ex.filter(pl.col("reason") == "review:rejected")["id"].to_list())
    assert reject not in new["id"].to_list() and draft_only in new["id"].to_list() and discarded in new["id"].to_list()
    fixed = new.filter(pl.col("id") == keep_fix)
    assert fixed["messages"][0][-1]["content"] == "A better reply."
    review = json.loads(fixed["meta"][0])["review"]
    assert review["original_reply"] == original and review["corrected_by"] == "annotator" and review["quality"] == 4.5
    assert "review" not in json.loads(new.filter(pl.col("id") == draft_only)["meta"][0])
    # nothing lost: the new version has every row of the parent
    before = _rows(vdir).height + pl.read_parquet(vdir / "excluded.parquet").height
    assert new.height + ex.height == before

    # pulling twice gives the same version; pushing again adds no records and keeps responses
    assert pull("sample-qa", endpoint, root)[0] == path
    push.push_sample_qa(endpoint, vdir, size=8, seed=1)
    again = records_by_external_id(endpoint, OWNER_KEY, "sample-qa")
    assert sorted(again) == ids
    assert pull("sample-qa", endpoint, root)[0] == path  # every response survived the re-push


def test_near_dup_pairs_round_trip(endpoint, curated):
    root, vdir = curated
    pairs = pl.read_parquet(vdir / "borderline_pairs.parquet")
    assert pairs.height >= 2 and set(pairs["method"]) == {"minhash"}
    assert ((pairs["similarity"] - pairs["threshold"]).abs() <= 0.15 + 1e-9).all()
    out = push.push_near_dups(endpoint, vdir)
    assert out["pushed"] == pairs.height
    recs = records_by_external_id(endpoint, OWNER_KEY, "near-dups")
    sims = {f"{a}-{b}": s for a, b, s in pairs.select("id_a", "id_b", "similarity").iter_rows()}
    for rid, rec in recs.items():  # reviewers say "duplicate" exactly when the pair is above 0.8
        respond(endpoint, ANNOTATOR_KEY, rec["id"], {"duplicate": "yes" if sims[rid] >= 0.8 else "no"})
    path, summary = pull("near-dups", endpoint, root)
    labels = pl.read_parquet(path)
    assert labels.height == pairs.height and labels["duplicate"].to_list() == [sims[f"{a}-{b}"] >= 0.8 for a, b in
                                                                              labels.select("id_a", "id_b").iter_rows()]
    assert summary["by_method"]["minhash"]["accuracy"] == 1.0


def test_failures_queue_dedups_and_pulls_mined_records(endpoint, tmp_path):
    failures = pl.DataFrame({
        "id": ["f1", "f2"], "week": ["2026-W46", "2026-W46"],
        "messages": [[{"role": "user", "content": "Return my order as JSON"}], [{"role": "user", "content": "Cancel my order"}]],
        "response": ["not json", ""], "reasons": [["format:invalid_json"], ["behaviour:empty", "hard:thumbs_down"]],
        "cluster": [0, 1], "cluster_terms": [["json"], ["cancel"]], "priority": [2.0, 3.0], "model": ["prod", "prod"]})
    assert push.push_failures(endpoint, failures)["pushed"] == 2
    again = push.push_failures(endpoint, failures)
    assert again == {"queue": "failures", "pushed": 0, "already_queued": 2}
    recs = records_by_external_id(endpoint, OWNER_KEY, "failures")
    respond(endpoint, ANNOTATOR_KEY, recs["f1"]["id"], {"corrected_answer": '{"order": "A1", "status": "shipped"}'})
    respond(endpoint, ANNOTATOR_KEY, recs["f2"]["id"], {"corrected_answer": "x"}, status="discarded")
    path, change = pull("failures", endpoint, tmp_path, weight=3.0)
    train = pl.read_parquet(path / "train.parquet")
    assert train.height == 1 and train["source"][0] == "mined:2026-W46" and train["weight"][0] == 3.0
    assert train["messages"][0][-1] == {"role": "assistant", "content": '{"order": "A1", "status": "shipped"}'}
    assert json.loads(train["meta"][0])["review"]["original_answer"] == "not json"
    assert (path.parent / "LATEST").read_text().strip() == path.name


def test_server_down_or_wrong_key_exits_nonzero_and_writes_nothing(argilla, curated, capsys, monkeypatch):
    root, vdir = curated
    before = sorted(p.name for p in vdir.parent.iterdir())
    from sftloop.curate.review.serve import free_port

    monkeypatch.setenv("ARGILLA_API_KEY", OWNER_KEY)
    assert main(["--url", f"http://127.0.0.1:{free_port()}", "--root", str(root), "push", "sample-qa", str(vdir)]) == 2
    assert "cannot reach Argilla" in capsys.readouterr().err
    monkeypatch.setenv("ARGILLA_API_KEY", "not-a-valid-key")
    assert main(["--url", argilla.url, "--root", str(root), "pull", "sample-qa"]) == 2
    assert "refused the API key" in capsys.readouterr().err
    assert sorted(p.name for p in vdir.parent.iterdir()) == before


def test_sample_qa_shows_the_judge_grade_as_a_suggestion(endpoint, curated):
    root, vdir = curated
    out = push.push_sample_qa(endpoint, vdir, size=3, seed=9, judge="base", root=root)
    assert out["judge_suggestions"] == 3
    import argilla as rg

    ds = rg.Argilla(api_url=endpoint.url, api_key=OWNER_KEY).datasets(name="sample-qa", workspace=endpoint.workspace)
    recs = list(ds.records(with_suggestions=True))
    assert len(recs) == 3
    for r in recs:
        s = r.suggestions["quality"]
        assert s.agent == "judge" and s.value in (1, 2, 3, 4, 5)
