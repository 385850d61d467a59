"""The three review queues: their Argilla settings and how our rows become their records.

Record ids are chat-record ids (a pair's id joins its two ids), so pushing the same rows again
updates those records instead of adding new ones, and reviewers' responses stay attached.
"""

from __future__ import annotations

import json
SAMPLE_QA = "sample-qa"
NEAR_DUPS = "near-dups"
FAILURES = "failures"
QUEUES = (SAMPLE_QA, NEAR_DUPS, FAILURES)

GUIDELINES = {
    SAMPLE_QA: (
        "Read the whole conversation. **Keep** it when every assistant turn is correct, helpful and safe "
        "enough to train on; otherwise **reject** and say why. Rate overall quality 1 (useless) to 5 "
        "(excellent). If only the last assistant reply is wrong and you can fix it, write the corrected "
        "reply: it replaces the original in the next dataset version."
    ),
    NEAR_DUPS: (
        "Are the two conversations duplicates, i.e. would training on both teach nothing more than "
        "training on one? Paraphrases of the same request with the same answer are duplicates; the same "
        "template with different facts is not."
    ),
    FAILURES: (
        "A production answer was flagged (see *why*). Write the answer the model should have given. "
        "Discard the record if the flag is wrong or the request should not be answered."
    ),
}


def settings_for(queue: str):
    import argilla as rg

    terms = lambda name, title: rg.TermsMetadataProperty(name=name, title=title)  # noqa: E731
    if queue == SAMPLE_QA:
        return rg.Settings(
            guidelines=GUIDELINES[queue],
            fields=[rg.ChatField(name="conversation", title="Conversation", use_markdown=True)],
            questions=[
                rg.LabelQuestion(name="verdict", title="Keep or reject?", labels={"keep": "keep", "reject": "reject"}),
                rg.RatingQuestion(name="quality", title="Quality (1-5)", values=[1, 2, 3, 4, 5]),
                rg.TextQuestion(name="corrected_reply", title="Corrected last assistant reply (optional)",
                                required=False, use_markdown=True),
                rg.TextQuestion(name="reason", title="Reason (optional)", required=False),
            ],
            metadata=[terms("dataset", "dataset"), terms("version", "version"), terms("source", "source"),
                      terms("language", "language"), terms("length_bucket", "length"),
                      rg.IntegerMetadataProperty(name="tokens", title="tokens")],
            distribution=rg.TaskDistribution(min_submitted=1),
        )
    if queue == NEAR_DUPS:
        return rg.Settings(
            guidelines=GUIDELINES[queue],
            fields=[rg.ChatField(name="a", title="Conversation A", use_markdown=True),
                    rg.ChatField(name="b", title="Conversation B", use_markdown=True)],
            questions=[rg.LabelQuestion(name="duplicate", title="Duplicate?", labels={"yes": "yes", "no": "no"})],
            metadata=[terms("dataset", "dataset"), terms("version", "version"), terms("method", "method"),
                      rg.FloatMetadataProperty(name="similarity", title="similarity"),
                      rg.FloatMetadataProperty(name="threshold", title="threshold")],
            distribution=rg.TaskDistribution(min_submitted=1),
        )
    if queue == FAILURES:
        return rg.Settings(
            guidelines=GUIDELINES[queue],
            fields=[rg.ChatField(name="prompt", title="Prompt", use_markdown=True),
                    rg.TextField(name="bad_answer", title="Answer given", use_markdown=True),
                    rg.TextField(name="why", title="Why it was flagged")],
            questions=[rg.TextQuestion(name="corrected_answer", title="Corrected answer", use_markdown=True),
                       rg.TextQuestion(name="note", title="Note (optional)", required=False)],
            metadata=[terms("week", "week"), terms("reasons", "reasons"), terms("model", "model"),
                      rg.IntegerMetadataProperty(name="cluster", title="cluster"),
                      rg.FloatMetadataProperty(name="priority", title="priority")],
            distribution=rg.TaskDistribution(min_submitted=1),
        )
    raise ValueError(f"unknown queue {queue!r} (known: {', '.join(QUEUES)})")


def _chat(messages: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def last_assistant(messages: list[dict]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), "")


def sample_qa_record(row: dict, dataset: str, version: str, judge: dict[str, float] | None = None):
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
        fields={"conversation": _chat(row["messages"])},
        metadata={"dataset": dataset, "version": version, "source": row["source"],
                  "language": str(meta.get("lang", "unknown")), "length_bucket": row.get("length_bucket", "unknown"),
                  **({"tokens": int(tokens)} if tokens is not None else {})},
        suggestions=suggestions,
    )


def pair_id(a: str, b: str) -> str:
    return f"{min(a, b)}-{max(a, b)}"


def near_dup_record(pair: dict, a: dict, b: dict, dataset: str, version: str):
    import argilla as rg

    return rg.Record(
        id=pair_id(pair["id_a"], pair["id_b"]),
        fields={"a": _chat(a["messages"]), "b": _chat(b["messages"])},
        metadata={"dataset": dataset, "version": version, "method": pair["method"],
                  "similarity": round(float(pair["similarity"]), 4), "threshold": float(pair["threshold"])},
    )


def failure_record(row: dict):
    import argilla as rg

    why = "; ".join(row["reasons"])
    if row.get("cluster_terms"):
        why += f"\ncluster {row.get('cluster')}: {', '.join(row['cluster_terms'])}"
    return rg.Record(
        id=row["id"],
        fields={"prompt": _chat(row["messages"]), "bad_answer": row["response"] or "(empty)", "why": why},
        metadata={"week": row["week"], "reasons": list(row["reasons"]), "model": row.get("model") or "unknown",
                  "cluster": int(row.get("cluster") or 0), "priority": float(row.get("priority") or 0.0)},
    )
