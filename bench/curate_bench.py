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
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import polars as pl

from sftloop import assets
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
    import tempfile
    from pathlib import Path

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
    a = ap.parse_args()
    if a.minhash_only:
        texts = load_texts()
        minhash_mb_per_core(texts, "ShareGPT asset")
        big, _ = make_corpus(texts, a.scale)
        minhash_mb_per_core(big, f"{a.scale}x corpus")
        return
    if a.pipeline_10x:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "sharegpt-10x.jsonl"
            n = write_scaled_corpus(p, a.scale)
            print(f"{a.scale}x corpus: {n:,} conversations (every turn of each copy perturbed)")
            pipeline_rates(False, str(p), label=f"sharded pipeline on the {a.scale}x corpus, embedding stages excluded")
        print(f"peak RSS of the {a.scale}x pipeline run: {peak_rss_mb():,.0f} MB")
        return
    if not a.only_10x:
        import subprocess
        import sys
        from pathlib import Path

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
