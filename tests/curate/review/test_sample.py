import json

import polars as pl
import pytest

from sftloop.curate.review.pull import best_threshold, cohen_kappa
from sftloop.curate.review.queues import Decision
from sftloop.curate.review.sample import length_bucket, stratified_sample
from sftloop.schema import PARQUET_SCHEMA


def _frame(spec: dict[tuple[str, int], int]) -> pl.DataFrame:
    rows = []
    for (source, tokens), n in spec.items():
        for i in range(n):
            rows.append({"id": f"{source}-{tokens}-{i}", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                         "source": source, "meta": json.dumps({"n_tokens": tokens}), "weight": 1.0})
    return pl.DataFrame(rows, schema=PARQUET_SCHEMA)


def test_stratified_sample_is_proportional_covers_every_stratum_and_is_seeded():
    df = _frame({("a", 50): 600, ("a", 300): 300, ("b", 50): 90, ("b", 900): 10})
    s = stratified_sample(df, 100, seed=3)
    counts = dict(((src, b), n) for src, b, n in s.group_by("source", "length_bucket").len().iter_rows())
    assert s.height == 100 and s["id"].n_unique() == 100
    assert counts == {("a", "short"): 60, ("a", "medium"): 30, ("b", "short"): 9, ("b", "long"): 1}
    assert stratified_sample(df, 100, seed=3)["id"].to_list() == s["id"].to_list()
    assert stratified_sample(df, 100, seed=4)["id"].to_list() != s["id"].to_list()
    tiny = stratified_sample(df, 4, seed=0)  # one per stratum even when proportions would round to zero
    assert tiny.group_by("source", "length_bucket").len().height == 4
    assert stratified_sample(df, 5000).height == df.height
    assert [length_bucket(n) for n in (0, 127, 128, 511, 512)] == ["short", "short", "medium", "medium", "long"]


def test_cohen_kappa_and_threshold_tuning():
    d = lambda rid, a, b: Decision(rid, {}, {}, {"u1": {"v": a}, "u2": {"v": b}})  # noqa: E731
    perfect = [d("1", "keep", "keep"), d("2", "reject", "reject"), d("3", "keep", "keep")]
    assert cohen_kappa(perfect, "v")["cohen_kappa"] == 1.0
    mixed = [d("1", "keep", "keep"), d("2", "reject", "keep"), d("3", "keep", "reject"), d("4", "reject", "reject")]
    k = cohen_kappa(mixed, "v")
    assert k["observed_agreement"] == 0.5 and k["cohen_kappa"] == 0.0
    assert cohen_kappa([Decision("1", {}, {}, {"u1": {"v": "keep"}})], "v")["records_with_two_reviewers"] == 0
    t = best_threshold([0.70, 0.74, 0.78, 0.82, 0.86], [False, False, True, True, True])
    assert t["threshold"] == 0.78 and t["accuracy"] == 1.0


def test_review_modules_do_not_import_the_pipeline():
    """Pulling a queue needs the dataset-version contract, not curate's pipeline or its writer."""
    import subprocess
    import sys

    code = ("import sys, sftloop.curate.review.pull, sftloop.curate.review.push, sftloop.curate.review.queues\n"
            "print(sorted(m for m in sys.modules if m in ('sftloop.curate.write', 'sftloop.curate.pipeline', "
            "'sftloop.curate.config', 'sftloop.curate.sources')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_queue_is_declared_once():
    """The CLIs' choices and pull's dispatch come from QUEUES (settings are checked against a real Argilla
    in test_push_pull: the SDK needs a server to build them)."""
    from sftloop.curate.review.__main__ import main
    from sftloop.curate.review.queues import QUEUES, Queue

    assert list(QUEUES) == ["sample-qa", "near-dups", "failures"]
    assert all(isinstance(q, Queue) and q.name == name and q.guidelines for name, q in QUEUES.items())
    with pytest.raises(SystemExit):
        main(["push", "no-such-queue"])
