"""Mined failures → review rows: ids, near-dup collapse (within the week and against the queue), priority."""

import polars as pl

from sftloop.curate.mine.queue import failures_for_review


def _failures():
    prompts = ["Where is my refund for order 123?", "Where is my refund for order 123??", "How do I reset my password?",
               "What are your opening hours on Sunday?"]
    return pl.DataFrame({"request_id": [f"r{i}" for i in range(4)], "week": ["2026-W47"] * 4, "prompt": prompts,
                         "messages": [[{"role": "user", "content": p}] for p in prompts],
                         "response": ["I'm sorry, I cannot help.", "", "Click the link.", "We are open."],
                         "reasons": [["behaviour:refusal"], ["behaviour:empty", "hard:thumbs_down"],
                                     ["behaviour:truncated"], ["soft:judge_low"]],
                         "cluster": [0, 0, 1, 2]})


def test_priority_ids_and_near_dup_collapse():
    out = failures_for_review(_failures())
    # the two refund prompts are near-duplicates: the one with the stronger reason (thumbs-down) is kept
    assert out["request_id"].to_list() == ["r1", "r3", "r2"]
    assert out["priority"].to_list() == [2 * 3.0, 1 * 2.0, 1 * 1.0]  # cluster size x strongest reason weight
    assert out.filter(pl.col("request_id") == "r1")["duplicates"][0] == 1
    assert out["id"].n_unique() == 3 and all(len(i) == 16 for i in out["id"])


def test_prompts_already_queued_are_not_pushed_again():
    out = failures_for_review(_failures(), queued_prompts=["How do I reset my password?!", "Something unrelated entirely."])
    assert out.filter(pl.col("already_queued"))["request_id"].to_list() == ["r2"]
    assert not failures_for_review(_failures())["already_queued"].any()
