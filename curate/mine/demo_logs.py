"""`just demo-logs`: production-like logs for the mining demo, made by the real prod model.

Prompts the model never trained on: first user turns of the curated dataset's validation split
(held out of training) and customer-support requests from the tau2 retail/airline tasks (a third of
them asking for a JSON answer, some with planted PII). The prod model answers them through
`evaluate.file_tasks.generate_rows` (in-process); the judge grades them with `grade_rows`.
User feedback is SIMULATED from the judge score plus noise (below the 35th percentile of the
scores: thumbs down, above the 65th: thumbs up, for 60% of rows) (every row says so in
`feedback_simulated`, and the mining report repeats it). Timestamps spread over `weeks` ISO weeks
ending with 2026-W47, plus a few rows in W48, so the default mining week is W47; support requests
(harder for a 135M model) are more frequent in the last week, which shows up as a judge-score trend.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from pathlib import Path

import polars as pl

from sftloop.curate.model_calls import generate, judge_scores
from sftloop import assets
from sftloop.dataset_version import DatasetVersion
from sftloop.progress import progress, stage
from sftloop.schema import content_id

LAST_WEEK_MONDAY = dt.datetime(2026, 11, 16, tzinfo=dt.timezone.utc)  # ISO 2026-W47
JSON_ASK = ' Answer only with a JSON object with the keys "intent" and "reply".'
CHUNK = 16  # rows per model call: a progress step
PII = [" You can reach me at {name}@example.com.", " My phone number is +1 415 555 01{k:02d}.", ""]


def _first_person(text: str) -> str:
    t = re.sub(r"\bYou are\b", "I am", text)
    t = re.sub(r"\byou are\b", "I am", t)
    t = re.sub(r"\bYou\b", "I", t)
    t = re.sub(r"\byou\b", "I", t)
    t = re.sub(r"\bYour\b", "My", t)
    t = re.sub(r"\byour\b", "my", t)
    return re.sub(r"\s+", " ", t).strip()


def support_prompts(n: int, rng: random.Random) -> list[dict]:
    root = assets.path("tau2-support")
    tasks = []
    for domain in ("retail", "airline"):
        for t in json.loads((root / domain / "tasks.json").read_text()):
            reason = ((t.get("user_scenario") or {}).get("instructions") or {}).get("reason_for_call")
            if isinstance(reason, str) and 20 < len(reason) < 600:
                tasks.append((domain, _first_person(reason)))
    rng.shuffle(tasks)
    out = []
    for k, (domain, text) in enumerate(tasks[:n]):
        wants_json = k % 3 == 0
        pii = PII[k % len(PII)].format(name=f"customer{k}", k=k % 100)
        out.append({"category": domain, "prompt": text + pii + (JSON_ASK if wants_json else ""), "expects_json": wants_json})
    return out


def chat_prompts(version_dir: Path, n: int, rng: random.Random) -> list[dict]:
    val = pl.read_parquet(version_dir / "val.parquet")
    firsts = [next((m["content"] for m in msgs if m["role"] == "user"), "") for msgs in val["messages"].to_list()]
    firsts = [f for f in firsts if 15 < len(f) < 500]
    rng.shuffle(firsts)
    return [{"category": "chat", "prompt": p, "expects_json": False} for p in firsts[:n]]


def _timestamp(rng: random.Random, week_offset: int) -> str:
    t = LAST_WEEK_MONDAY - dt.timedelta(weeks=week_offset) + dt.timedelta(seconds=rng.randrange(7 * 86400))
    return t.isoformat().replace("+00:00", "Z")


def _in_chunks(fn, rows: pl.DataFrame, desc: str, size: int = CHUNK) -> pl.DataFrame:
    """`fn` over `rows` in chunks of `size` (a multiple of the backend's batch of 8, so batches are the same as
    in one call): a progress line with an ETA off a TTY, a bar on one."""
    parts = [rows.slice(s, size) for s in range(0, rows.height, size)]
    return pl.concat([fn(p) for p in progress(parts, total=len(parts), desc=desc, unit="batch")])


def make_demo_logs(root: Path, dataset: Path, out: Path, model: str = "prod", judge: str = "base",
                   n_chat: int = 48, n_support: int = 48, weeks: int = 4, seed: int = 0,
                   max_new_tokens: int = 96, progress_cmd: str = "demo-logs") -> Path:
    """Write `out/logs.jsonl`; prints a line per stage (prompts, answers, grades) and progress with an ETA."""
    rng = random.Random(seed)
    with stage(progress_cmd, "prompts") as st:
        version = DatasetVersion.resolve(dataset, root).path
        items = chat_prompts(version, n_chat, rng) + support_prompts(n_support, rng)
        st.detail = f"{len(items)} from {version} and tau2"
    for k, it in enumerate(items):
        it["request_id"] = f"demo-{k:05d}-{content_id([{'role': 'user', 'content': it['prompt']}])[:8]}"
        it["messages"] = [{"role": "user", "content": it["prompt"]}]
    rows = pl.DataFrame({"id": [i["request_id"] for i in items], "messages": [i["messages"] for i in items]})
    with stage(progress_cmd, f"{model} answers {rows.height} prompts"):
        gen = _in_chunks(lambda part: generate(part, model, root, max_new_tokens), rows, f"{progress_cmd}: {model} answers")
    answers = dict(zip(*gen.select("id", "response").to_dict(as_series=False).values()))
    graded = pl.DataFrame({"id": rows["id"], "messages": [i["messages"] + [{"role": "assistant", "content": answers[i["request_id"]] or "(empty)"}]
                                                          for i in items]})
    with stage(progress_cmd, f"{judge} grades {graded.height} answers") as st:
        grades = _in_chunks(lambda part: judge_scores(part, judge, root), graded, f"{progress_cmd}: {judge} grades")
        scores = {r["id"]: r["score"] for r in grades.iter_rows(named=True) if r["graded"]}
        st.detail = f"{len(scores)} graded"
    out.mkdir(parents=True, exist_ok=True)
    # feedback relative to this judge's own scale (SmolLM2 grades everything between ~1.1 and ~2.3)
    ranked = sorted(scores.values())
    low, high = (ranked[int(0.35 * len(ranked))], ranked[int(0.65 * len(ranked))]) if ranked else (0.0, 0.0)
    spread = (ranked[-1] - ranked[0]) / 4 if ranked else 0.0
    lines = []
    for it in items:
        # the last full week gets more support traffic; one row in every six lands in the current week (W48)
        support = it["category"] != "chat"
        offset = 0 if (support and rng.random() < 0.5) else rng.randrange(weeks)
        if rng.random() < 1 / 6:
            offset = -1
        score = scores.get(it["request_id"])
        noisy = None if score is None else score + rng.gauss(0, spread)
        feedback = None
        if noisy is not None and rng.random() < 0.6:  # many users never click
            feedback = "thumbs_down" if noisy < low else ("thumbs_up" if noisy > high else None)
        lines.append({
            "request_id": it["request_id"], "timestamp": _timestamp(rng, offset), "model": model,
            "messages": it["messages"], "response": answers[it["request_id"]], "latency_ms": round(rng.uniform(80, 900), 1),
            "user_feedback": feedback, "feedback_simulated": True,
            "automated_score": None if score is None else round((score - 1) / 4, 4),
            "expects_json": it["expects_json"], "category": it["category"],
        })
    lines.sort(key=lambda r: r["timestamp"])
    path = out / "logs.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines))
    return path
