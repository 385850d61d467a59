"""Curation benchmark (prints figures; not a timed test).

On the ShareGPT asset (17,671 conversations) and a 10x corpus made from it by seeded perturbation
(word swaps/deletions, so true near-duplicates exist):
- MinHash stage throughput (ours) vs the tutorial baseline (datasketch MinHash per row with a Python
  loop over shingles, MinHashLSH query+insert row by row), and the ratio;
- per-stage and end-to-end conversations/s of the (sharded) pipeline without embedding stages
  (`--full` includes them), on the asset and, in its own process, on the 10x corpus, with peak RSS;
- the tutorial five-filter funnel (row-by-row Python) vs ours with the same five stages, and the ratio;
- near-dup precision/recall against exact shingle Jaccard on sampled pairs;
- peak RSS.

    python bench/curate_bench.py [--scale 10] [--baseline-rows 3000]

`--minhash-only`: MinHash MB/s per core (asset, scaled corpus); with `--executor processes` also the
minhash_dedup stage's wall in the sharded pipeline, local vs processes, in the same run.

    python bench/curate_bench.py --minhash-only [--executor processes --workers 2] [--skip-minhash-scaled]

`--issue18`: issue 18's figures in one run, each next to its baseline from the same run and its target
(PASS/MISS): a per-row Python version of each of the default pipeline's nine non-embedding stages
(`per_row_steps`) and the tutorial five-filter funnel, both on the same rows; our nine stages; the full
default pipeline (both embedding stages) with a fresh embedding cache (`$SFTLOOP_CACHE` pointed at a
folder of this run's, never the user's) and then warm; the nine stages on the 10x corpus (peak RSS);
MinHash MB/s per core vs datatrove's 0.85; with `--executor processes` the same runs on the processes
executor, one shard per worker, and whether the dataset files are byte-identical to local's. Every
pipeline run is its own process. Figures also go to reports/curate-bench-<time>.json.

    python bench/curate_bench.py --issue18 [--executor processes] [--rows N] [--scale 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from sftloop import assets
from sftloop.progress import progress
from sftloop.settings import offline_env
from sftloop.procs import peak_rss_mb


def load_texts() -> list[str]:
    out = []
    with open(assets.path("sharegpt-v3-partial"), encoding="utf-8") as f:
        for line in f:
            conv = json.loads(line)["conversations"]
            out.append("\n\n".join(t.get("value") or "" for t in conv))
    return out


def perturb(text: str, rng: random.Random, rate: float) -> str:
    words = text.split()
    for _ in range(max(1, int(len(words) * rate))):
        if len(words) < 3:
            break
        i = rng.randrange(len(words) - 1)
        if rng.random() < 0.5:
            words[i], words[i + 1] = words[i + 1], words[i]
        else:
            del words[i]
    return " ".join(words)


def make_corpus(texts: list[str], scale: int, seed: int = 0) -> tuple[pl.Series, list[int]]:
    """Originals + (scale-1) perturbed copies each; returns texts (built copy by copy, so the
    corpus exists once, in Arrow memory) and each row's origin index."""
    rng = random.Random(seed)
    parts, origin = [pl.Series(texts)], list(range(len(texts)))
    for _ in range(scale - 1):
        parts.append(pl.Series([perturb(t, rng, rate=rng.choice([0.01, 0.03, 0.08, 0.2])) for t in texts]))
        origin.extend(range(len(texts)))
    return pl.concat(parts, rechunk=True), origin


def baseline_minhash(texts: list[str], threshold: float = 0.8, num_perm: int = 128) -> tuple[float, int]:
    """The tutorial recipe: per-row MinHash, Python loop over shingles, LSH query then insert."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    dups = 0
    t = time.time()
    for i, text in enumerate(texts):
        words = text.lower().split()
        m = MinHash(num_perm=num_perm)
        for j in range(max(1, len(words) - 4)):
            m.update(" ".join(words[j:j + 5]).encode("utf-8"))
        if lsh.query(m):
            dups += 1
        else:
            lsh.insert(str(i), m)
    return len(texts) / (time.time() - t), dups


def ours_minhash(texts: list[str], threshold: float = 0.8) -> tuple[float, np.ndarray, object, np.ndarray]:
    from sftloop.curate.cluster import cluster_by_centers
    from sftloop.curate.minhash import near_duplicate_edges
    from sftloop.curate.text import jaccard_sorted

    s = texts if isinstance(texts, pl.Series) else pl.Series(texts)
    t = time.time()
    edges, sims, sets = near_duplicate_edges(s, threshold, chunk=5000)
    rank = s.str.len_chars().to_numpy().astype(float)
    rep = cluster_by_centers(len(texts), edges, rank, lambda i, j: jaccard_sorted(sets[i], sets[j]) >= threshold)
    return len(texts) / (time.time() - t), edges, sets, rep


def precision_recall(texts, origin, edges, sets, rep, threshold=0.8, n_pairs=3000, seed=0):
    from sftloop.curate.text import jaccard_sorted

    from sftloop.curate.minhash import ShingleSets

    rng = random.Random(seed)
    by_origin: dict[int, list[int]] = {}
    for i, o in enumerate(origin):
        by_origin.setdefault(o, []).append(i)
    # recall: sampled (original, copy) pairs whose true Jaccard >= threshold end up in one cluster
    cand = [(o, rng.choice(m[1:])) for o, m in by_origin.items() if len(m) > 1]
    rng.shuffle(cand)
    cand = cand[: n_pairs * 3]
    dropped = np.flatnonzero(rep != np.arange(len(rep)))
    sample = rng.sample(list(dropped), min(n_pairs, len(dropped)))
    need = np.array([x for pair in cand for x in pair] + [int(i) for i in sample] + [int(rep[i]) for i in sample])
    sets = ShingleSets(texts if isinstance(texts, pl.Series) else pl.Series(texts), 5, need)  # exact shingle sets of every row we score
    true_pairs = [(a, b) for a, b in cand if jaccard_sorted(sets[a], sets[b]) >= threshold][:n_pairs]

    def root(i):
        while rep[i] != i:
            i = rep[i]
        return i

    kept = rep == np.arange(len(rep))
    # a true near-duplicate pair is caught when the output no longer holds both rows
    caught = sum(1 for a, b in true_pairs if not (kept[a] and kept[b]))
    recall_cluster = caught / max(len(true_pairs), 1)
    same = sum(1 for a, b in true_pairs if root(a) == root(b))
    print(f"  (of the true pairs, {same / max(len(true_pairs), 1):.4f} share one representative)")
    edge_set = {(int(a), int(b)) for a, b in edges}
    # precision: sampled dropped rows vs their representative
    ok = sum(1 for i in sample if jaccard_sorted(sets[int(i)], sets[int(rep[i])]) >= threshold)
    return ok / max(len(sample), 1), recall_cluster, len(true_pairs), len(edge_set)


def pipeline_rates(full: bool, source: str = "asset:sharegpt-v3-partial", stages: list[str] | None = None,
                   label: str = "default pipeline") -> float:
    """Per-stage and end-to-end conversations/s of the (sharded) pipeline; returns end-to-end conv/s."""
    from sftloop.curate.config import load_config
    from sftloop.curate.pipeline import run

    cfg = load_config(Path(__file__).parents[1] / "curate" / "configs" / "default.toml")
    cfg.sources[0].path = source
    if stages is not None:
        cfg.stages = [st for st in cfg.stages if st.type in stages]
    elif not full:
        cfg.stages = [st for st in cfg.stages if st.type not in ("embed_dedup", "decontaminate")]
    t = time.time()
    with tempfile.TemporaryDirectory() as d:
        res = run(cfg, Path(d), progress=False)
    total = time.time() - t
    print(f"{label}: {res.rows_in:,} conversations, stages {[st.type for st in cfg.stages]}")
    for st in res.funnel:
        if st.seconds:
            print(f"  stage {st.stage:14} {st.rows_in / st.seconds:>10,.0f} conv/s  ({st.rows_in} in, {st.seconds:.1f}s)")
    rate = res.rows_in / total
    print(f"  end to end: {rate:,.0f} conv/s ({res.rows_in} rows, {total:.0f}s)")
    return rate


def human_label_agreement(path) -> None:
    """Reviewed near-dup pairs (`just review-pull near-dups`): how often our threshold agrees with people."""
    if not path.exists():
        print(f"human near-dup labels: none yet ({path} appears after `just review-pull near-dups`)")
        return
    df = pl.read_parquet(path)
    for (method,), g in df.group_by("method"):
        ours = g["similarity"] >= g["threshold"]
        agree = float((ours == g["duplicate"]).mean())
        print(f"human near-dup labels ({method}): {g.height} pairs, our threshold agrees on {agree:.3f}")


FUNNEL5 = ["min_words", "exact_dedup", "language", "parroting", "minhash_dedup"]


def baseline_funnel(convs: list[list[dict]]) -> float:
    """The tutorial five-filter funnel, row by row in Python: min words, exact dedup (a set of hashes),
    language (lingua per row), parroting (nltk jaccard_distance per row), MinHash LSH per row."""
    import hashlib

    from datasketch import MinHash, MinHashLSH
    from lingua import LanguageDetectorBuilder
    from nltk.metrics.distance import jaccard_distance

    detector = LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    seen: set[str] = set()
    kept = 0
    t = time.time()
    for i, conv in enumerate(convs):
        user = [m["value"] for m in conv if m.get("from") == "human"]
        bot = [m["value"] for m in conv if m.get("from") == "gpt"]
        if not user or not bot or len(user[0].split()) <= 4 or min(len(b.split()) for b in bot) <= 5:
            continue
        text = "\n\n".join(m.get("value") or "" for m in conv)
        h = hashlib.sha256(text.lower().encode()).hexdigest()
        if h in seen:
            continue
        seen.add(h)
        lang = detector.detect_language_of(text[:600])
        if lang is None or lang.iso_code_639_1.name.lower() != "en":
            continue
        if 1 - jaccard_distance(set(user[0].lower().split()), set(bot[0].lower().split())) >= 0.85:
            continue
        words = text.lower().split()
        m = MinHash(num_perm=128)
        for j in range(max(1, len(words) - 4)):
            m.update(" ".join(words[j:j + 5]).encode("utf-8"))
        if lsh.query(m):
            continue
        lsh.insert(str(i), m)
        kept += 1
    return len(convs) / (time.time() - t)


def write_scaled_corpus(path, scale: int, seed: int = 0) -> int:
    """The asset's conversations plus (scale-1) perturbed copies of each (every turn perturbed), as JSONL."""
    rng = random.Random(seed)
    n = 0
    with open(assets.path("sharegpt-v3-partial"), encoding="utf-8") as f:
        convs = [json.loads(line) for line in f]
    with open(path, "w", encoding="utf-8") as out:
        for copy in range(scale):
            for c in convs:
                turns = c["conversations"]
                if copy:
                    rate = rng.choice([0.01, 0.03, 0.08, 0.2])
                    turns = [{**t, "value": perturb(t.get("value") or "", rng, rate)} for t in turns]
                out.write(json.dumps({"id": f"{c.get('id')}-{copy}", "conversations": turns}) + "\n")
                n += 1
    return n


DATATROVE_MB_S_PER_TASK = 0.85  # datatrove's published MinHash signature step, MB/s per task (one core)


def minhash_mb_per_core(texts: list[str] | pl.Series, label: str) -> float:
    """Our MinHash stage (signatures + LSH + verification + clustering) in MB of text per CPU-second:
    CPU time of this process, so threads count as the cores they use."""
    s = texts if isinstance(texts, pl.Series) else pl.Series(texts)
    mb = float(s.str.len_bytes().sum()) / 1e6
    c0, t0 = time.process_time(), time.time()
    rate, *_ = ours_minhash(s)
    cpu, wall = time.process_time() - c0, time.time() - t0
    per_core = mb / cpu
    print(f"MinHash {label}: {len(s):,} rows, {mb:,.1f} MB text, {wall:,.1f} s wall, {cpu:,.1f} CPU-s -> "
          f"{per_core:.2f} MB/s per core ({rate:,.0f} rows/s wall) vs datatrove's published "
          f"{DATATROVE_MB_S_PER_TASK} MB/s per task: {per_core / DATATROVE_MB_S_PER_TASK:.1f}x")
    return per_core


def minhash_stage_walls(source: str, label: str, executor: str, workers: int, shard_rows: int = 5_000) -> None:
    """The minhash_dedup stage alone in the sharded pipeline, on local and then on `executor`, same run:
    its wall time (signatures per shard, LSH by band range and verification in chunks as tasks,
    clustering on the driver) and the time of its `decide`, and what it dropped (must be equal)."""
    from sftloop.curate.config import load_config
    from sftloop.curate.pipeline import run
    from sftloop.curate.stages.dedup_minhash import MinHashDedup

    real, took = MinHashDedup.decide, {}

    def timed(self, *args):
        t = time.time()
        try:
            return real(self, *args)
        finally:
            took["decide"] = time.time() - t

    rows = {}
    MinHashDedup.decide = timed
    try:
        for kind in ("local", executor):
            cfg = load_config(Path(__file__).parents[1] / "curate" / "configs" / "default.toml")
            cfg.sources[0].path = source
            cfg.stages = [st for st in cfg.stages if st.type == "minhash_dedup"]
            cfg.executor, cfg.workers, cfg.shard_rows = kind, (workers or None) if kind != "local" else None, shard_rows
            with tempfile.TemporaryDirectory() as d:
                st = run(cfg, Path(d), progress=False).funnel[-1]
            rows[kind] = (st.seconds, took["decide"], st.dropped)
            print(f"minhash_dedup stage, {label}, {kind}" + (f" ({cfg.workers or 'all'} workers)" if kind != "local" else "")
                  + f": {st.rows_in:,} rows in shards of {shard_rows:,}, stage {st.seconds:,.1f} s wall, decide "
                  f"{took['decide']:,.1f} s, {st.dropped:,} dropped", flush=True)
    finally:
        MinHashDedup.decide = real
    (s0, d0, n0), (s1, d1, n1) = rows["local"], rows[executor]
    print(f"minhash_dedup stage, {label}: {executor} vs local {s0 / s1:.2f}x (stage), {d0 / d1:.2f}x (decide); "
          f"dropped {'the same' if n0 == n1 else f'DIFFERENT: {n0} vs {n1}'}")
    if n0 != n1:
        raise SystemExit(1)


# ---------------------------------------------------------------- issue 18: every target next to its baseline, one run

DEFAULT_CONFIG = Path(__file__).parents[1] / "curate" / "configs" / "default.toml"
ASSET = "asset:sharegpt-v3-partial"
EMBEDDING_STAGES = ("embed_dedup", "decontaminate")
RESULT = "RESULT-JSON "  # a child process's last line: its figures as JSON
SHORT_CHARS = 200  # detect_languages' default: a shorter prose remainder counts only when lingua is confident
GB = 1e9 / 2**20  # peak_rss_mb is MiB; the issue's "3 GB" read as 3e9 bytes (the stricter reading)


def default_stages(full: bool) -> list:
    from sftloop.curate.config import load_config

    stages = load_config(DEFAULT_CONFIG).stages
    return stages if full else [st for st in stages if st.type not in EMBEDDING_STAGES]


@lru_cache(maxsize=1)
def _clean_subs() -> list[tuple[re.Pattern, str]]:
    """`clean.clean_content`'s replacements, in its order, as `re` patterns for one string at a time."""
    from sftloop.curate.stages import clean as c

    subs = [(c.ZERO_WIDTH, ""), (c.CONTROL, " ")] + [(p, r"\1" if "(\\w)" in p else "") for p in c.BOILERPLATE]
    subs += [(c.HTML_WRAPPERS, ""), ("&nbsp;", " "), (r"\r\n?", "\n"), (r"[ \t]+\n", "\n"), (r"\n{3,}", "\n\n")]
    return [(re.compile(p), r) for p, r in subs]


def per_row_steps(stages: list, tokenizer: str) -> list[tuple[str, Callable[[list[dict]], list[dict] | None]]]:
    """The default pipeline's non-embedding stages as the tutorial writes them: one function per stage, called
    row by row in Python (messages in, messages or None out), with each stage's own config values. Where our
    stage is already a per-row rule (truncation, refusal, role repair, parroting) the same function is called;
    `token_limit` is train's per-prefix search (bench/token_limit_bench.py's baseline: longest prefix first,
    each prefix rendered and tokenized alone); `minhash_dedup` is datasketch per row (query, then insert)."""
    import hashlib
    import unicodedata

    from datasketch import MinHash, MinHashLSH
    from nltk.metrics.distance import jaccard_distance
    from transformers import AutoTokenizer

    from sftloop.assets import resolve_model
    from sftloop.curate.language import _confident, detector, prose
    from sftloop.curate.stages.clean import fix_roles
    from sftloop.curate.stages.filters import _word_set
    from sftloop.rules import refusal_match, truncation_reason
    from sftloop.schema import content_id

    if str(Path(__file__).parent) not in sys.path:  # imported from elsewhere (tests)
        sys.path.insert(0, str(Path(__file__).parent))
    from token_limit_bench import baseline_keep

    tok = AutoTokenizer.from_pretrained(resolve_model(tokenizer))
    det = detector(False)
    subs = _clean_subs()

    def texts(msgs: list[dict], role: str) -> list[str]:
        return [m["content"] for m in msgs if m["role"] == role]

    def make(st) -> Callable[[list[dict]], list[dict] | None]:
        if st.type == "clean":
            def clean(msgs):
                out = []
                for m in msgs:
                    c = unicodedata.normalize("NFKC", m["content"]) if st.nfkc else m["content"]
                    for p, r in subs:
                        c = p.sub(r, c)
                    out.append({"role": m["role"], "content": c.strip()})
                fixed, _, _ = fix_roles(out)
                if fixed is not None:
                    content_id(fixed)  # the stage recomputes the id from the cleaned content
                return fixed
            return clean
        if st.type == "exact_dedup":
            seen: dict[str, set[bytes]] = {k: set() for k in st.keys}
            key_text = {"conversation": lambda msgs: "\x1e".join(f"{m['role']}\x1f{m['content']}" for m in msgs),
                        "first_user": lambda msgs: (texts(msgs, "user") or [""])[0]}

            def exact(msgs):
                for k in st.keys:
                    h = hashlib.sha1(" ".join(key_text[k](msgs).lower().split()).encode()).digest()
                    if h in seen[k]:
                        return None
                    seen[k].add(h)
                return msgs
            return exact
        if st.type == "min_words":
            def min_words(msgs):
                users, bots = texts(msgs, "user"), texts(msgs, "assistant")
                u = min((len(t.split()) for t in users), default=0) if st.all_user_turns else (
                    len(users[0].split()) if users else 0)
                ok = u > st.user_min and min((len(t.split()) for t in bots), default=0) > st.assistant_min
                return msgs if ok else None
            return min_words
        if st.type == "truncated":
            def truncated(msgs):
                bots = texts(msgs, "assistant")
                return None if any(truncation_reason(t) for t in (bots[-1:] if st.last_turn_only else bots)) else msgs
            return truncated
        if st.type == "refusal":
            def refusal(msgs):
                bots = texts(msgs, "assistant")
                hit = any(refusal_match(t) for t in (bots[-1:] if st.scope == "last" else bots))
                return None if hit and st.mode == "filter" else msgs
            return refusal
        if st.type == "parroting":
            def parroting(msgs):
                for prev, cur in zip(msgs, msgs[1:]):
                    if prev["role"] == "user" and cur["role"] == "assistant":
                        a, b = _word_set(prev["content"]), _word_set(cur["content"])
                        if a and b and 1 - jaccard_distance(a, b) >= st.threshold:
                            return None
                return msgs
            return parroting
        if st.type == "language":
            def language(msgs):
                p = prose("\n\n".join(m["content"] for m in msgs if m["role"] in ("user", "assistant")))[:st.max_chars]
                n = len(p.strip())
                lang = None if n < st.min_chars else (
                    _confident(det.compute_language_confidence_values(p)) if n < SHORT_CHARS else det.detect_language_of(p))
                code = "und" if lang is None else lang.iso_code_639_1.name.lower()
                return msgs if code in st.allowed or (code == "und" and not st.drop_undetermined) else None
            return language
        if st.type == "token_limit":
            def token_limit(msgs):
                keep = baseline_keep(tok, msgs, st.max_tokens)
                if keep is None or (st.mode == "drop" and keep < len(msgs)):
                    return None
                return msgs[:keep]
            return token_limit
        if st.type == "minhash_dedup":
            lsh = MinHashLSH(threshold=st.threshold, num_perm=st.num_perm)
            counter = iter(range(1 << 62))

            def minhash(msgs):
                words = "\n\n".join(m["content"] for m in msgs).lower().split()
                m = MinHash(num_perm=st.num_perm)
                for j in range(max(1, len(words) - st.ngram + 1)):
                    m.update(" ".join(words[j:j + st.ngram]).encode("utf-8"))
                if lsh.query(m):
                    return None
                lsh.insert(str(next(counter)), m)
                return msgs
            return minhash
        raise ValueError(f"no per-row baseline for stage {st.type!r}")

    return [(st.type, make(st)) for st in stages]


def per_row_funnel(lines: list[str], stages: list, tokenizer: str) -> dict:
    """The per-row baseline over raw JSONL lines: wall (tokenizer and lingua loads included, as in our
    run), conv/s, rows kept, and each stage's rows in and seconds."""
    from sftloop.curate.sources import SHAREGPT_ROLES

    t0 = time.perf_counter()
    steps = per_row_steps(stages, tokenizer)
    names = ["read"] + [n for n, _ in steps]
    secs, seen = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0)
    clock, kept = time.perf_counter, 0
    for line in progress(lines, total=len(lines), desc="per-row baseline", unit="conv"):
        t = clock()
        seen["read"] += 1
        try:  # our reader's rules: an unknown role or a non-string value quarantines the row; empty turns go
            msgs = [{"role": SHAREGPT_ROLES[str(m.get("from", "")).strip().lower()], "content": m["value"] + ""}
                    for m in json.loads(line)["conversations"]]
            msgs = [m for m in msgs if m["content"].strip()]
        except (KeyError, TypeError, ValueError, AttributeError):
            msgs = None
        secs["read"] += clock() - t
        for name, fn in steps:
            if msgs is None:
                break
            t = clock()
            seen[name] += 1
            msgs = fn(msgs)
            secs[name] += clock() - t
        kept += msgs is not None
    wall = time.perf_counter() - t0
    return {"rows": len(lines), "kept": kept, "wall_s": wall, "conv_s": len(lines) / wall,
            "stages": [{"stage": n, "rows_in": seen[n], "seconds": secs[n]} for n in names]}


def _embedder_counts() -> dict:
    """Vectors computed / served from the cache by this process's embedder (the driver's)."""
    from sftloop.curate.shard_tasks import _CACHES

    embs = [c["emb"] for c in _CACHES.values() if "emb" in c]
    return {"computed": sum(e.computed for e in embs), "cached": sum(e.cached for e in embs)} if embs else {}


def one_pipeline(spec: dict) -> dict:
    """One pipeline run in this process (the driver): run + finalise (the dataset files), its figures."""
    import hashlib

    from sftloop.curate.config import load_config
    from sftloop.curate.pipeline import finalise, run
    from sftloop.settings import cache_dir

    cfg = load_config(DEFAULT_CONFIG)
    cfg.sources[0].path, cfg.sources[0].limit = spec["source"], spec.get("rows") or None
    if not spec["full"]:
        cfg.stages = [st for st in cfg.stages if st.type not in EMBEDDING_STAGES]
    cfg.executor, cfg.workers = spec["executor"], spec.get("workers")
    cfg.shard_rows = spec.get("shard_rows") or cfg.shard_rows
    cached_before = len(list(cache_dir("embeddings").rglob("*.parquet")))
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        res = run(cfg, Path(d), progress=False)
        t_run = time.perf_counter() - t
        parts = finalise(cfg, res, Path(d) / "parts")
        wall = time.perf_counter() - t
        hashes = {k: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for k, p in sorted(parts.items())}
        kept = sum(pl.scan_parquet(parts[k]).select(pl.len()).collect().item() for k in ("train", "val", "test"))
    tasks = [x for ts in res.tasks.values() for x in ts]
    return {"label": spec["label"], "source": spec["source"], "executor": cfg.executor, "shard_rows": cfg.shard_rows,
            "shards": min((len(v) for v in res.tasks.values() if v), default=0),  # a GlobalStage: 2 tasks a shard
            "rows": res.rows_in, "kept": kept,
            "run_s": t_run, "wall_s": wall, "conv_s": res.rows_in / wall, "stage_types": [st.type for st in cfg.stages],
            "stages": [{"stage": st.stage, "rows_in": st.rows_in, "seconds": st.seconds} for st in res.funnel],
            "peak_rss_mb": peak_rss_mb(), "task_peak_rss_mb": max((x.peak_rss_mb for x in tasks), default=0.0),
            "cache_dir": str(cache_dir("embeddings")), "cache_files_before": cached_before,
            "embedder": _embedder_counts(), "embed_dedup": res.reports.get("embed_dedup", {}), "parts_sha256": hashes}


def child(spec: dict, cache: Path | None = None) -> dict:
    """`one_pipeline` (or the 10x MinHash) in its own process: its model loads and peak RSS are its own;
    `cache` points `$SFTLOOP_CACHE` (so the embedding cache) at a folder of this run's."""
    env = dict(os.environ) | ({"SFTLOOP_CACHE": str(cache)} if cache else {})
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env, stdout=subprocess.PIPE,
                         text=True)
    lines = out.stdout.splitlines()
    print("\n".join(x for x in lines if not x.startswith(RESULT)), flush=True)
    res = next((x for x in reversed(lines) if x.startswith(RESULT)), None)
    if out.returncode or res is None:
        raise SystemExit(f"{spec['label']}: the child process failed (exit {out.returncode})")
    return json.loads(res[len(RESULT):])


def child_main(spec: dict) -> None:
    if spec.get("minhash_scale"):
        big, _ = make_corpus(load_texts(), spec["minhash_scale"])
        r = {"label": spec["label"], "mb_s_per_core": minhash_mb_per_core(big, f"{spec['minhash_scale']}x corpus"),
             "peak_rss_mb": peak_rss_mb()}
    else:
        r = one_pipeline(spec)
        print(f"{r['label']}: {r['rows']:,} conv, {r['shards']} shard(s) of {r['shard_rows']:,}, {r['executor']}: "
              f"{r['conv_s']:,.0f} conv/s ({r['wall_s']:.1f} s; run {r['run_s']:.1f} s), peak RSS {r['peak_rss_mb']:,.0f} MB"
              + (f", embedder {r['embedder']}" if r["embedder"] else ""))
    print(RESULT + json.dumps(r))


def _rate(run: dict, stage: str) -> float | None:
    st = next((s for s in run["stages"] if s["stage"] == stage), None)
    return st["rows_in"] / st["seconds"] if st and st["seconds"] > 0 else None


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def issue18(a: argparse.Namespace) -> None:
    """Every figure of issue 18 in one run, each next to its baseline from this run and its target."""
    import math
    import shutil
    from datetime import datetime, timezone

    from sftloop.curate.executors import _cores
    from sftloop.settings import repo_root

    started = datetime.now(timezone.utc)
    cores = _cores()
    with open(assets.path("sharegpt-v3-partial"), encoding="utf-8") as f:
        lines = [x for x in f if x.strip()]  # file lines (str.splitlines would also split at U+2028 inside strings)
    n = min(a.rows or len(lines), len(lines))
    lines = lines[:n]
    nine_stages = default_stages(full=False)
    print(f"# issue 18 benchmark: ShareGPT asset, {n:,} conversations, {cores} cores, started {started:%Y-%m-%d %H:%M} UTC")
    if cores != 2:
        print(f"  note: the issue's targets are for 2 cores; this process may use {cores}")
    rep: dict = {"started": started.isoformat(), "cores": cores, "rows": n, "argv": sys.argv[1:]}
    tmp = Path(tempfile.mkdtemp(prefix="curate-bench-"))  # this run's caches and corpus; removed at the end
    try:
        print("\n## baselines, row by row in Python, in this process")
        base9 = per_row_funnel(lines, nine_stages, load_tokenizer_name())
        print(f"per-row baseline of our nine non-embedding stages: {base9['conv_s']:,.1f} conv/s "
              f"({base9['wall_s']:.0f} s, {base9['kept']:,} kept)")
        convs = [json.loads(x)["conversations"] for x in lines]
        t = time.perf_counter()
        base5 = {"rows": n, "conv_s": baseline_funnel(convs)}
        base5["wall_s"] = time.perf_counter() - t
        print(f"tutorial five-filter funnel ({', '.join(FUNNEL5)}): {base5['conv_s']:,.1f} conv/s ({base5['wall_s']:.0f} s)")
        rep["baseline_nine_per_row"], rep["baseline_five_filter"] = base9, base5
        sys.stdout.flush()

        print("\n## ours, each run in its own process (model loads and peak RSS its own)")
        asset = {"source": ASSET, "rows": n, "executor": "local"}
        runs = {"nine": child(asset | {"label": "nine non-embedding stages", "full": False})}
        runs["fresh"] = child(asset | {"label": "full default pipeline, fresh embedding cache", "full": True},
                              cache=tmp / "cache-local")
        runs["warm"] = child(asset | {"label": "full default pipeline, warm embedding cache", "full": True},
                             cache=tmp / "cache-local")
        if a.executor == "processes":
            workers = a.workers or cores
            proc = asset | {"executor": "processes", "workers": workers,
                            "shard_rows": math.ceil(runs["nine"]["rows"] / workers)}
            runs["p_nine"] = child(proc | {"label": "nine stages, processes", "full": False})
            runs["p_fresh"] = child(proc | {"label": "full pipeline, processes, fresh cache", "full": True},
                                    cache=tmp / "cache-processes")
            runs["p_warm"] = child(proc | {"label": "full pipeline, processes, warm cache", "full": True},
                                   cache=tmp / "cache-processes")
        if a.scale > 1:
            p = tmp / f"sharegpt-{a.scale}x.jsonl"
            m = write_scaled_corpus(p, a.scale)
            print(f"{a.scale}x corpus: {m:,} conversations (every turn of each copy perturbed)")
            runs["big"] = child({"source": str(p), "executor": "local", "full": False,
                                 "label": f"nine stages on the {a.scale}x corpus"})
            p.unlink()
        rep["runs"] = runs

        print("\n## MinHash MB/s per core")
        mh = {"asset": minhash_mb_per_core(load_texts()[:n], "ShareGPT asset")}
        if a.scale > 1 and not a.skip_minhash_scaled:
            mh["scaled"] = child({"label": f"MinHash, {a.scale}x corpus", "minhash_scale": a.scale})["mb_s_per_core"]
        rep["minhash_mb_s_per_core"] = mh
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rep["targets"] = targets = issue18_targets(base9, base5, runs, mh, a.scale)
    print_issue18(base9, runs, targets, started, n)
    out = Path(repo_root()) / "reports" / f"curate-bench-{started:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rep, indent=1))
    print(f"\nfigures written to {out}")


def load_tokenizer_name() -> str:
    from sftloop.curate.config import load_config

    return load_config(DEFAULT_CONFIG).tokenizer


def issue18_targets(base9: dict, base5: dict, runs: dict, mh: dict, scale: int) -> list[dict]:
    """One row per figure: ours, its baseline from this run, the target, PASS/MISS."""
    nine = runs["nine"]["conv_s"]
    rows = [
        {"figure": "nine non-embedding stages vs the per-row version of the same nine stages",
         "ours": f"{nine:,.0f} conv/s", "baseline": f"{base9['conv_s']:,.1f} conv/s",
         "ratio": nine / base9["conv_s"], "target": ">= 10x", "ok": nine / base9["conv_s"] >= 10},
        {"figure": "nine non-embedding stages vs the tutorial five-filter funnel (the issue's baseline: 5 of the 9)",
         "ours": f"{nine:,.0f} conv/s", "baseline": f"{base5['conv_s']:,.1f} conv/s",
         "ratio": nine / base5["conv_s"], "target": ">= 10x", "ok": nine / base5["conv_s"] >= 10},
    ]
    for key, what in (("fresh", "fresh"), ("warm", "warm")):
        r = runs[key]
        rows.append({"figure": f"full default pipeline (11 stages), {what} embedding cache, end to end",
                     "ours": f"{r['conv_s']:,.0f} conv/s", "baseline": f"{base9['conv_s']:,.1f} conv/s (per-row nine)",
                     "ratio": r["conv_s"] / base9["conv_s"], "target": ">= 300 conv/s" if key == "fresh" else "-",
                     "ok": r["conv_s"] >= 300 if key == "fresh" else None})
    rows.append({"figure": "fresh and warm cache write the same dataset files",
                 "ours": "same" if runs["fresh"]["parts_sha256"] == runs["warm"]["parts_sha256"] else "DIFFERENT",
                 "baseline": "-", "ratio": None, "target": "same",
                 "ok": runs["fresh"]["parts_sha256"] == runs["warm"]["parts_sha256"]})
    if "big" in runs:
        b = runs["big"]
        rows.append({"figure": f"peak RSS, nine stages on the {scale}x corpus ({b['rows']:,} conv, own process)",
                     "ours": f"{b['peak_rss_mb']:,.0f} MB ({b['peak_rss_mb'] / GB:.2f} GB)",
                     "baseline": f"{b['conv_s']:,.0f} conv/s there", "ratio": None, "target": "< 3 GB",
                     "ok": b["peak_rss_mb"] < 3 * GB})
    for key, label in (("asset", "ShareGPT asset"), ("scaled", f"{scale}x corpus")):
        if key in mh:
            rows.append({"figure": f"MinHash MB/s per core, {label}", "ours": f"{mh[key]:.2f} MB/s",
                         "baseline": f"datatrove {DATATROVE_MB_S_PER_TASK} MB/s (published)",
                         "ratio": mh[key] / DATATROVE_MB_S_PER_TASK, "target": f">= {DATATROVE_MB_S_PER_TASK}",
                         "ok": mh[key] >= DATATROVE_MB_S_PER_TASK})
    for key, local in (("p_nine", "nine"), ("p_fresh", "fresh"), ("p_warm", "warm")):
        if key in runs:
            p, l = runs[key], runs[local]
            same = p["parts_sha256"] == l["parts_sha256"]
            rows.append({"figure": f"processes ({p['shards']} shards of {p['shard_rows']:,}) vs local, {runs[local]['label']}",
                         "ours": f"{p['conv_s']:,.0f} conv/s, files {'byte-identical' if same else 'DIFFERENT'}",
                         "baseline": f"local {l['conv_s']:,.0f} conv/s", "ratio": p["conv_s"] / l["conv_s"],
                         "target": "faster and byte-identical", "ok": same and p["conv_s"] > l["conv_s"]})
    return rows


def print_issue18(base9: dict, runs: dict, targets: list[dict], started, n: int) -> None:
    cols = [("per-row", base9)] + [(k, runs[k]) for k in ("nine", "fresh", "warm", "p_nine", "p_fresh", "p_warm", "big")
                                   if k in runs]
    stages = list(dict.fromkeys(s["stage"] for _, r in cols for s in r["stages"]))
    print(f"\n## per-stage conversations/s (rows in / stage seconds), {n:,} conversations"
          + (f"; `big` = {runs['big']['rows']:,} conv" if "big" in runs else ""))
    print("| stage | " + " | ".join(k for k, _ in cols) + " | nine / per-row |")
    print("|---|" + "---:|" * (len(cols) + 1))
    for s in stages:
        rates = [_rate(r, s) for _, r in cols]
        ratio = rates[1] / rates[0] if rates[0] and rates[1] else None
        print(f"| {s} | " + " | ".join(f"{x:,.0f}" if x else "-" for x in rates) + f" | {f'{ratio:.1f}x' if ratio else '-'} |")
    print("| **end to end** | " + " | ".join(f"**{r['conv_s']:,.0f}**" for _, r in cols)
          + f" | **{runs['nine']['conv_s'] / base9['conv_s']:.1f}x** |")
    print("| wall s | " + " | ".join(f"{r['wall_s']:,.0f}" for _, r in cols) + " | |")
    print("| rows kept | " + " | ".join(f"{r['kept']:,}" for _, r in cols) + " | |")
    print(f"\n## issue 18 targets (one run, started {started:%Y-%m-%d %H:%M} UTC; baselines from this run)")
    print("| figure | ours | baseline | ratio | target | |")
    print("|---|---:|---:|---:|---|---|")
    for t in targets:
        ratio = f"{t['ratio']:.1f}x" if t["ratio"] is not None else "-"
        verdict = "-" if t["ok"] is None else _verdict(t["ok"])
        print(f"| {t['figure']} | {t['ours']} | {t['baseline']} | {ratio} | {t['target']} | {verdict} |")


def main() -> None:
    offline_env()
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--baseline-rows", type=int, default=3000, help="rows the (slow) baseline runs on; rate is per row")
    ap.add_argument("--full", action="store_true", help="include the embedding stages in the end-to-end run")
    ap.add_argument("--base-rate", type=float, default=float("nan"), help=argparse.SUPPRESS)
    ap.add_argument("--only-10x", action="store_true", help="only the 10x corpus (its own process, so peak RSS is its own)")
    ap.add_argument("--pipeline-10x", action="store_true", help="only the sharded pipeline on the 10x corpus (own process)")
    ap.add_argument("--funnel-rows", type=int, default=3000, help="rows the tutorial five-filter funnel baseline runs on")
    ap.add_argument("--minhash-only", action="store_true", help="only MinHash MB/s per core (asset and the scaled corpus)")
    ap.add_argument("--issue18", action="store_true", help="every issue-18 figure next to its baseline from this run "
                    "(per-row baselines, nine stages, the full pipeline with a fresh and a warm embedding cache, "
                    "the scaled corpus's peak RSS, MinHash MB/s per core); reports/curate-bench-<time>.json")
    ap.add_argument("--rows", type=int, default=0, help="--issue18: the first N conversations of the asset (default all)")
    ap.add_argument("--executor", choices=["local", "processes"], default="local",
                    help="--issue18: also run the pipeline on the processes executor, one shard per worker; "
                         "--minhash-only: also the minhash_dedup stage's wall, local vs this executor")
    ap.add_argument("--workers", type=int, default=0, help="--issue18 --executor processes: workers (default: all cores)")
    ap.add_argument("--skip-minhash-scaled", action="store_true", help="--issue18, --minhash-only: MinHash on the asset only")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # one measurement in its own process (JSON spec)
    a = ap.parse_args()
    if a.child:
        child_main(json.loads(a.child))
        return
    if a.issue18:
        issue18(a)
        return
    if a.minhash_only:
        texts = load_texts()
        minhash_mb_per_core(texts, "ShareGPT asset")
        if a.executor != "local":
            minhash_stage_walls(ASSET, "ShareGPT asset", a.executor, a.workers)
        if a.skip_minhash_scaled:
            return
        big, _ = make_corpus(texts, a.scale)
        minhash_mb_per_core(big, f"{a.scale}x corpus")
        if a.executor != "local":
            del big
            with tempfile.TemporaryDirectory() as d:
                n = write_scaled_corpus(Path(d) / "scaled.jsonl", a.scale)
                minhash_stage_walls(str(Path(d) / "scaled.jsonl"), f"{a.scale}x corpus ({n:,} conversations)",
                                    a.executor, a.workers)
        return
    if a.pipeline_10x:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "sharegpt-10x.jsonl"
            n = write_scaled_corpus(p, a.scale)
            print(f"{a.scale}x corpus: {n:,} conversations (every turn of each copy perturbed)")
            pipeline_rates(False, str(p), label=f"sharded pipeline on the {a.scale}x corpus, embedding stages excluded")
        print(f"peak RSS of the {a.scale}x pipeline run: {peak_rss_mb():,.0f} MB")
        return
    if not a.only_10x:
        from sftloop.settings import repo_root

        human_label_agreement(Path(repo_root()) / "data" / "review" / "near-dups-labels.parquet")
        pipeline_rates(a.full)
        with open(assets.path("sharegpt-v3-partial"), encoding="utf-8") as f:
            convs = [json.loads(line)["conversations"] for line in f]
        base_f = baseline_funnel(convs[: a.funnel_rows])
        print(f"tutorial five-filter funnel (row by row), {a.funnel_rows} rows: {base_f:,.0f} conv/s")
        ours_f = pipeline_rates(False, stages=FUNNEL5, label="ours, the same five filters")
        print(f"five-filter funnel: ours {ours_f:,.0f} conv/s vs tutorial {base_f:,.0f} conv/s -> {ours_f / base_f:.1f}x")
        sys.stdout.flush()
    texts = load_texts()
    print(f"ShareGPT asset: {len(texts)} conversations")
    if not a.only_10x:
        base_rate, _ = baseline_minhash(texts[: a.baseline_rows])
        print(f"baseline MinHash (datasketch per row, Python shingle loop), {a.baseline_rows} rows: {base_rate:,.0f} rows/s")
        rate1, edges1, sets1, rep1 = ours_minhash(texts)
        print(f"ours MinHash stage, {len(texts)} rows: {rate1:,.0f} rows/s  -> {rate1 / base_rate:.1f}x baseline")
        minhash_mb_per_core(texts, "ShareGPT asset")
        print(f"peak RSS so far (pipeline + 1x): {peak_rss_mb():,.0f} MB; the {a.scale}x corpus runs in its own process:")
        sys.stdout.flush()
        r = subprocess.run([sys.executable, __file__, "--only-10x", "--scale", str(a.scale), "--base-rate", str(base_rate)])
        if r.returncode:
            raise SystemExit(r.returncode)
        r = subprocess.run([sys.executable, __file__, "--pipeline-10x", "--scale", str(a.scale)])
        raise SystemExit(r.returncode)
    base_rate = a.base_rate
    big, origin = make_corpus(texts, a.scale)
    del texts  # the corpus now lives once, in Arrow memory
    rate10, edges10, sets10, rep10 = ours_minhash(big)
    print(f"ours MinHash stage, {len(big)} rows ({a.scale}x perturbed): {rate10:,.0f} rows/s -> {rate10 / base_rate:.1f}x baseline")
    p, r, n_true, n_edges = precision_recall(big, origin, edges10, sets10, rep10)
    print(f"near-dup at Jaccard >= 0.8 on the {a.scale}x corpus: precision {p:.4f}, recall {r:.4f} "
          f"({n_true} true pairs sampled, {n_edges} verified edges)")
    print(f"peak RSS of the {a.scale}x run: {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
