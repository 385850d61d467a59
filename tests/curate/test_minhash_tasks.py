"""MinHash LSH by band range and verification in chunks as executor tasks (issue 17.1): the same
candidates, edges, similarities and dropped rows as the single-process code, whatever the number of
tasks, on real text: 2,000 ShareGPT conversations from the asset plus perturbed copies and chains of
copies (copy of a copy of a copy: rows similar to their neighbours but not to the chain's start,
which is what makes clustering ask for pairs that are not LSH candidates)."""

import json
import random

import numpy as np
import polars as pl
import pytest

from sftloop import assets
from sftloop.curate.cluster import cluster_by_centers
from sftloop.curate.executors import ProcessExecutor
from sftloop.curate.minhash import EMPTY, band_params, lsh_candidates, verify_candidates
from sftloop.curate.minhash_tasks import band_ranges, lsh_candidates_tasks, pair_sims_tasks
from sftloop.curate.shard_tasks import ShardTexts
from sftloop.curate.stages.base import Context, borderline_pairs, keep_rank
from sftloop.curate.stages.dedup_minhash import MinHashDedup
from sftloop.curate.text import contents, jaccard_sorted

ROWS = 2_000
ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def _perturb(text: str, rng: random.Random, rate: float) -> str:
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


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(frame, texts Series, ShardTexts over 3 Parquet shards of it, the stage's features, signatures)."""
    rng = random.Random(0)
    convs = []
    with open(assets.path("sharegpt-v3-partial"), encoding="utf-8") as f:
        for line in f:
            turns = [{"role": ROLES.get(t.get("from"), "user"), "content": t.get("value") or ""}
                     for t in json.loads(line)["conversations"]]
            if turns:
                convs.append(turns)
            if len(convs) == ROWS:
                break
    rows = list(convs)
    for k in range(0, 600):  # one perturbed copy each, at a range of rates
        rate = rng.choice([0.01, 0.03, 0.08, 0.2])
        rows.append([{**t, "content": _perturb(t["content"], rng, rate)} for t in convs[k]])
    for k in range(600, 800):  # chains: each copy perturbs the previous one
        prev = convs[k]
        for _ in range(4):
            prev = [{**t, "content": _perturb(t["content"], rng, 0.02)} for t in prev]
            rows.append(prev)
    df = pl.DataFrame({"_row": np.arange(len(rows), dtype=np.uint32), "id": [f"r{i}" for i in range(len(rows))],
                       "messages": rows, "weight": [rng.choice([1.0, 1.0, 3.0]) for _ in rows]},
                      schema={"_row": pl.UInt32, "id": pl.String,
                              "messages": pl.List(pl.Struct({"role": pl.String, "content": pl.String})),
                              "weight": pl.Float64})
    d = tmp_path_factory.mktemp("minhash-shards")
    shards = []
    for i, lo in enumerate(range(0, df.height, 1_200)):
        shards.append(str(d / f"{i:05d}.parquet"))
        df.slice(lo, 1_200).write_parquet(shards[-1])
    texts = df.select(t=contents(None))["t"]
    feats = MinHashDedup().features(df, Context(progress=False))
    return df, texts, ShardTexts(tuple(shards), df["_row"].to_numpy()), feats, feats["_sig"].to_numpy()


@pytest.fixture(scope="module")
def single_process(corpus):
    """The single-process path: `lsh_candidates`, then `verify_candidates` (floor 0.75: the stage's default
    threshold minus its borderline margin) on the in-memory texts."""
    *_, sig = corpus
    cand = lsh_candidates(sig, 0.8)
    edges, sims, sets = verify_candidates(cand, corpus[1], 0.75)
    return cand, edges, sims, sets


def _reference_lsh(sig: np.ndarray, threshold: float, max_bucket: int = 64) -> np.ndarray:
    """The loop over buckets that `band_candidates` replaced (a Polars self-join per band), kept here as
    the reference it must match."""
    bands, rows = band_params(threshold, sig.shape[1])
    idx = np.flatnonzero(~(sig == EMPTY).all(axis=1)).astype(np.int64)
    pairs = []
    for bi in range(bands):
        block = sig[idx, bi * rows:(bi + 1) * rows]
        mult = np.random.RandomState(1000 + bi).randint(1, 1 << 62, size=rows, dtype=np.uint64) | np.uint64(1)
        with np.errstate(over="ignore"):
            key = (block * mult[None, :]).sum(axis=1, dtype=np.uint64)
        groups = pl.DataFrame({"k": key, "i": idx}).group_by("k").agg(pl.col("i")).filter(
            pl.col("i").list.len() > 1)["i"].to_list()
        for members in groups:
            m = np.array(sorted(members))
            if len(m) <= max_bucket:
                ii, jj = np.triu_indices(len(m), 1)
                pairs.append(np.stack([m[ii], m[jj]], axis=1))
            else:
                pairs.append(np.stack([np.full(len(m) - 1, m[0]), m[1:]], axis=1))
    return np.unique(np.concatenate(pairs), axis=0) if pairs else np.zeros((0, 2), dtype=np.int64)


class Calls:
    """An in-process mapper (Context.map's signature) that records each step: desc, items, results."""

    def __init__(self):
        self.log: list[tuple[str, list, list]] = []

    def __call__(self, fn, items, desc):
        out = [fn(x) for x in items]
        self.log.append((desc, list(items), out))
        return out


def test_band_range_tasks_give_the_single_process_candidates(corpus, single_process, tmp_path):
    *_, sig = corpus
    ref = _reference_lsh(sig, 0.8)
    assert len(ref) > 1_000
    assert np.array_equal(single_process[0], ref)
    bands = band_params(0.8, sig.shape[1])[0]
    for tasks in (1, 2, 5, bands, 40):
        calls = Calls()
        got = lsh_candidates_tasks(sig, 0.8, tmp_path, calls, tasks)
        assert got.dtype == ref.dtype and np.array_equal(got, ref), f"{tasks} tasks"
        (desc, items, counts), = calls.log
        assert len(items) == min(tasks, bands) and [t.hi - t.lo for t in items] == [
            hi - lo for lo, hi in band_ranges(bands, tasks)]
        assert sorted({b for t in items for b in range(t.lo, t.hi)}) == list(range(bands))
        assert [len(np.load(t.out)) for t in items] == counts
        if tasks > 1:  # candidates come from every band range, and no range alone has them all
            assert all(c > 0 for c in counts) and max(counts) < len(ref)


def test_chunked_verification_gives_the_single_process_edges_and_sims(corpus, single_process, tmp_path):
    shard_texts = corpus[2]
    cand, edges, sims, _ = single_process
    assert 100 < len(edges) < len(cand)  # some candidates fail verification
    for tasks, max_pairs in ((1, 500_000), (3, 97)):
        calls = Calls()
        got = pair_sims_tasks(cand, shard_texts, 5, tmp_path, calls, tasks, max_pairs=max_pairs)
        keep = got >= 0.75
        assert np.array_equal(cand[keep], edges) and np.array_equal(got[keep], sims), (tasks, max_pairs)
        (_, items, _), = calls.log
        assert len(items) == max(tasks, -(-len(cand) // max_pairs))
        assert sum(t.hi - t.lo for t in items) == len(cand)


class _Recording(ProcessExecutor):
    """The real process pool, recording each step's description and task count."""

    def __init__(self, workers):
        super().__init__(workers)
        self.steps: list[tuple[str, int]] = []

    def map(self, fn, items, desc):
        self.steps.append((desc, len(items)))
        return super().map(fn, items, desc)


def test_the_stage_on_a_process_pool_drops_exactly_what_the_single_process_stage_drops(corpus, single_process):
    """The stage's decide on a real process pool (2 workers) against what the stage did before it ran tasks:
    every candidate verified in one process, clustering with the shingle sets."""
    _, _, shard_texts, feats, _ = corpus
    cand, edges, sims, sets = single_process
    stage = MinHashDedup()
    rep = cluster_by_centers(feats.height, edges[sims >= 0.8], keep_rank(feats),
                             lambda i, j: jaccard_sorted(sets[i], sets[j]) >= 0.8)
    dup = rep != np.arange(len(rep))
    assert dup.sum() > 300
    ex = _Recording(2)
    try:
        pool = Context(progress=False, executor=ex)
        dropped = stage.decide(feats, pool, shard_texts)
    finally:
        ex.close()
    assert dropped["_row"].to_list() == feats["_row"].to_numpy()[dup].tolist()
    assert dropped["rep_id"].to_list() == feats["id"].to_numpy()[rep[dup]].tolist()
    assert pool.reports["minhash_dedup"] == {"candidate_edges_verified": int((sims >= 0.8).sum()),
                                             "clusters_with_duplicates": len(np.unique(rep[dup]))}
    ids = feats["id"].to_numpy()
    (border,) = pool.borderline
    assert border.equals(borderline_pairs(ids, edges.tolist(), sims.tolist(), "minhash", 0.8, 0.05))
    assert border.height > 0
    descs = [d for d, _ in ex.steps]
    assert ex.steps[:2] == [("minhash_dedup: LSH band ranges", 2), ("minhash_dedup: verify candidates", 2)]
    # the chains made clustering ask for pairs that were not candidates: computed by tasks, then clustered again
    assert "minhash_dedup: verify cluster-1" in descs
