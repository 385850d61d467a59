"""The three review queues, each declared once: its Argilla settings, how our rows become its records,
and how submitted decisions are applied. `QUEUES[name]` is all the CLIs (`review push|pull`, `mine run`)
know about a queue.

Record ids are chat-record ids (a pair's id joins its two ids), so pushing the same rows again
updates those records instead of adding new ones, and reviewers' responses stay attached. Every
record also shows our id as its first field (*Record id*): Argilla's UI names records by its own
UUID, and a reviewer must be able to cite a record by ours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from sftloop.dataset_version import DatasetVersion

SAMPLE_QA = "sample-qa"
NEAR_DUPS = "near-dups"
FAILURES = "failures"


@dataclass
class Decision:
    """One record's submitted answers (what `pull` applies)."""
    record_id: str
    metadata: dict
    fields: dict
    answers: dict[str, dict] = field(default_factory=dict)  # username -> {question: value}


Pushed = tuple[list, dict[str, Any]]  # (argilla records, what the push reports besides the count)


def _chat(messages: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _id_field():
    import argilla as rg

    return rg.TextField(name="record_id", title="Record id", description="Our record id: cite it in notes and issues.")


def _terms(name: str, title: str):
    import argilla as rg

    return rg.TermsMetadataProperty(name=name, title=title)


class Queue:
    name: ClassVar[str]
    guidelines: ClassVar[str]

    def settings(self):
        """The Argilla dataset settings (fields, questions with descriptions, metadata)."""
        raise NotImplementedError

    def records(self, source: Any, ds, **kw) -> Pushed:
        """Our rows → Argilla records; `ds` is the queue's Argilla dataset (what it already holds)."""
        raise NotImplementedError

    def apply(self, decisions: list[Decision], skipped: dict, root: Path, **kw) -> tuple[Path | None, dict]:
        """Submitted decisions → what they change (a dataset version, labels); the path written."""
        raise NotImplementedError


class SampleQA(Queue):
    name = SAMPLE_QA
    guidelines = (
        "Read the whole conversation. **Keep** it when every assistant turn is correct, helpful and safe "
        "enough to train on; otherwise **reject** and say why. Rate overall quality 1 (useless) to 5 "
        "(excellent). If only the last assistant reply is wrong and you can fix it, write the corrected "
        "reply: it replaces the original in the next dataset version."
    )

    def settings(self):
        import argilla as rg

        return rg.Settings(
            guidelines=self.guidelines,
            fields=[_id_field(), rg.ChatField(name="conversation", title="Conversation", use_markdown=True)],
            questions=[
                rg.LabelQuestion(name="verdict", title="Keep or reject?", labels={"keep": "keep", "reject": "reject"},
                                 description="Keep: every assistant turn is fit to train on. Reject: any turn is not."),
                rg.RatingQuestion(name="quality", title="Quality (1-5)", values=[1, 2, 3, 4, 5],
                                  description="1 useless, 3 acceptable, 5 excellent (the judge's grade, if any, is the suggestion)."),
                rg.TextQuestion(name="corrected_reply", title="Corrected last assistant reply (optional)",
                                required=False, use_markdown=True,
                                description="Only with Keep: this text replaces the last assistant reply in the next version."),
                rg.TextQuestion(name="reason", title="Reason (optional)", required=False,
                                description="Why you rejected or corrected it, in a few words."),
            ],
            metadata=[_terms("dataset", "dataset"), _terms("version", "version"), _terms("source", "source"),
                      _terms("language", "language"), _terms("length_bucket", "length"),
                      rg.IntegerMetadataProperty(name="tokens", title="tokens")],
            distribution=rg.TaskDistribution(min_submitted=1),
        )

    @staticmethod
    def record(row: dict, dataset: str, version: str, judge: dict[str, float] | None = None):
        """A curated row (id, messages, source, meta JSON) → an Argilla record; a judge score becomes a suggestion."""
        import argilla as rg

        meta = json.loads(row["meta"]) if isinstance(row.get("meta"), str) and row["meta"] else (row.get("meta") or {})
        tokens = meta.get("n_tokens")
        suggestions = []
        if judge and row["id"] in judge:
            score = int(min(5, max(1, round(judge[row["id"]]))))
            suggestions.append(rg.Suggestion(question_name="quality", value=score, agent="judge", type="model"))
        return rg.Record(
            id=row["id"],
            fields={"record_id": row["id"], "conversation": _chat(row["messages"])},
            metadata={"dataset": dataset, "version": version, "source": row["source"],
                      "language": str(meta.get("lang", "unknown")), "length_bucket": row.get("length_bucket", "unknown"),
                      **({"tokens": int(tokens)} if tokens is not None else {})},
            suggestions=suggestions,
        )

    def records(self, source: DatasetVersion, ds, size: int = 100, seed: int = 0,
                judge_scores: Path | None = None, judge: str | None = None, root: Path | None = None) -> Pushed:
        """Stratified sample of a version's kept rows. `judge` (a registry entry) grades the sample in-process;
        `judge_scores` reads grades made earlier (Parquet: id, score). Either becomes the suggestion on *quality*."""
        from sftloop.curate.review.sample import stratified_sample

        sample = stratified_sample(source.splits(), size, seed)
        scores = None
        if judge_scores is not None:
            js = pl.read_parquet(judge_scores)
            scores = dict(zip(js["id"].to_list(), js["score"].to_list()))
        if judge is not None:
            from sftloop.curate.model_calls import judge_scores as grade

            rows = pl.DataFrame({"id": sample["id"], "messages": [_up_to_last_answer(m) for m in sample["messages"].to_list()]})
            js = grade(rows, judge, root or Path.cwd())
            scores = {r["id"]: r["score"] for r in js.iter_rows(named=True) if r["graded"]}
        recs = [self.record(r, source.name, source.version, scores) for r in sample.iter_rows(named=True)]
        strata = sample.group_by("source", "length_bucket").len().sort("source", "length_bucket").iter_rows()
        return recs, {"strata": {f"{s}/{b}": c for s, b, c in strata}, "dataset": source.name,
                      "version": source.version, "judge_suggestions": len(scores or {})}

    def apply(self, decisions, skipped, root, version: str | None = None, **_):
        from sftloop.curate.review.pull import apply_sample_qa

        return apply_sample_qa(decisions, skipped, root, version)


def _up_to_last_answer(messages: list[dict]) -> list[dict]:
    k = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return _chat(messages[: k + 1])


def pair_id(a: str, b: str) -> str:
    return f"{min(a, b)}-{max(a, b)}"


class NearDups(Queue):
    name = NEAR_DUPS
    guidelines = (
        "Are the two conversations duplicates, i.e. would training on both teach nothing more than "
        "training on one? Paraphrases of the same request with the same answer are duplicates; the same "
        "template with different facts is not."
    )

    def settings(self):
        import argilla as rg

        return rg.Settings(
            guidelines=self.guidelines,
            fields=[_id_field(), rg.ChatField(name="a", title="Conversation A", use_markdown=True),
                    rg.ChatField(name="b", title="Conversation B", use_markdown=True)],
            questions=[rg.LabelQuestion(name="duplicate", title="Duplicate?", labels={"yes": "yes", "no": "no"},
                                        description="Yes when training on both teaches nothing more than training on one.")],
            metadata=[_terms("dataset", "dataset"), _terms("version", "version"), _terms("method", "method"),
                      rg.FloatMetadataProperty(name="similarity", title="similarity"),
                      rg.FloatMetadataProperty(name="threshold", title="threshold")],
            distribution=rg.TaskDistribution(min_submitted=1),
        )

    @staticmethod
    def record(pair: dict, a: dict, b: dict, dataset: str, version: str):
        import argilla as rg

        rid = pair_id(pair["id_a"], pair["id_b"])
        return rg.Record(
            id=rid,
            fields={"record_id": rid, "a": _chat(a["messages"]), "b": _chat(b["messages"])},
            metadata={"dataset": dataset, "version": version, "method": pair["method"],
                      "similarity": round(float(pair["similarity"]), 4), "threshold": float(pair["threshold"])},
        )

    def records(self, source: DatasetVersion, ds, limit: int | None = None, **_) -> Pushed:
        """Borderline near-duplicate pairs that curate recorded (the version's `borderline_pairs` part)."""
        from sftloop.curate.review.client import ReviewError

        if not source.has("borderline_pairs"):
            raise ReviewError(f"review: {source.file('borderline_pairs')} missing: curate this dataset with a "
                              "near-dup stage whose borderline_margin > 0")
        pairs = source.read("borderline_pairs")
        if limit is not None:  # closest to the threshold first: those are the informative labels
            pairs = pairs.with_columns(_d=(pl.col("similarity") - pl.col("threshold")).abs()).sort("_d", "id_a", "id_b").head(limit)
        rows = pl.concat([source.read(p).select("id", "messages") for p in ("train", "val", "test", "excluded") if source.has(p)])
        by_id = {r["id"]: r for r in rows.unique("id", keep="first").iter_rows(named=True)}
        recs = [self.record(p, by_id[p["id_a"]], by_id[p["id_b"]], source.name, source.version)
                for p in pairs.iter_rows(named=True) if p["id_a"] in by_id and p["id_b"] in by_id]
        return recs, {"dataset": source.name, "version": source.version}

    def apply(self, decisions, skipped, root, **_):
        from sftloop.curate.review.pull import apply_near_dups

        return apply_near_dups(decisions, skipped, root)


class Failures(Queue):
    name = FAILURES
    guidelines = (
        "A production answer was flagged (see *why*). Write the answer the model should have given. "
        "Discard the record if the flag is wrong or the request should not be answered."
    )

    def settings(self):
        import argilla as rg

        return rg.Settings(
            guidelines=self.guidelines,
            fields=[_id_field(), rg.ChatField(name="prompt", title="Prompt", use_markdown=True),
                    rg.TextField(name="bad_answer", title="Answer given", use_markdown=True),
                    rg.TextField(name="why", title="Why it was flagged")],
            questions=[rg.TextQuestion(name="corrected_answer", title="Corrected answer", use_markdown=True,
                                       description="The answer the model should have given; it becomes a training record."),
                       rg.TextQuestion(name="note", title="Note (optional)", required=False,
                                       description="Anything a curator should know (e.g. the flag was wrong).")],
            metadata=[_terms("week", "week"), _terms("reasons", "reasons"), _terms("model", "model"),
                      rg.IntegerMetadataProperty(name="cluster", title="cluster"),
                      rg.FloatMetadataProperty(name="priority", title="priority")],
            distribution=rg.TaskDistribution(min_submitted=1),
        )

    @staticmethod
    def record(row: dict):
        import argilla as rg

        why = "; ".join(row["reasons"])
        if row.get("cluster_terms"):
            why += f"\ncluster {row.get('cluster')}: {', '.join(row['cluster_terms'])}"
        return rg.Record(
            id=row["id"],
            fields={"record_id": row["id"], "prompt": _chat(row["messages"]), "bad_answer": row["response"] or "(empty)",
                    "why": why},
            metadata={"week": row["week"], "reasons": list(row["reasons"]), "model": row.get("model") or "unknown",
                      "cluster": int(row.get("cluster") or 0), "priority": float(row.get("priority") or 0.0)},
        )

    def records(self, source: pl.DataFrame, ds, embedder=None, **_) -> Pushed:
        """A mining report's failures (reports/mine-<week>/failures.parquet): ids, near-dup collapse and
        priority (`mine.queue.failures_for_review`); ids the queue holds and prompts within the near-dup
        threshold of one it holds are skipped, so a rerun of a week adds nothing twice."""
        from sftloop.curate.mine.queue import failures_for_review
        from sftloop.curate.review.client import existing_records

        have = existing_records(ds)
        rows = failures_for_review(source, embedder, queued_prompts=[last_user(f.get("prompt")) for f in have.values()])
        new = [r for r in rows.iter_rows(named=True) if r["id"] not in have and not r.get("already_queued")]
        return [self.record(r) for r in new], {"already_queued": rows.height - len(new)}

    def apply(self, decisions, skipped, root, weight: float = 3.0, **_):
        from sftloop.curate.review.pull import apply_failures

        return apply_failures(decisions, skipped, root, weight)


def last_user(messages) -> str:
    """The last turn's content of a record's chat field (dicts or SDK message objects)."""
    last = messages[-1] if messages else None
    return last.get("content", "") if isinstance(last, dict) else getattr(last, "content", "")


QUEUES: dict[str, Queue] = {q.name: q for q in (SampleQA(), NearDups(), Failures())}
