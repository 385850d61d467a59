"""Decontamination against everything the gate evaluates, read through `evaluate.evalsets` (the gate's
own reader): golden items (every turn + reference), MT-Bench (both turns + reference answers), IFBench
prompts, every BIG-bench probe item (question, targets, choices) and the judge-calibration pairs.

Every turn of a training row (user and assistant) is checked, after the matching normal form
(`curate.text.normalise_for_match`: NFKC, case, punctuation, markdown, quotes, re-wrapped lines):

1. **n-gram containment** — an eval text of >= `ngram` words hits a turn holding >= `containment` of
   its distinct word `ngram`-grams; a shorter one hits when its whole normalised word span occurs in
   the turn (n adapts down to the text's length).
2. **answers with their question** — prompts under `min_words` words, answers (references, calibration
   answers) under `answer_min_words` ("Sure, I can help.") and every probe target/choice ("109",
   "plausible") are too generic to count alone: they count only in a row that also holds >= `evidence`
   (and >= `min_distinctive`) of the item question's distinctive words: rare in English (wordfreq Zipf
   < `rare_zipf`), not a number, in at most `common_items` eval items ("whiskers", "Murray"; never
   "account", "plus" or "29").
3. **embedding** (MiniLM, cached) — (a) every user turn of <= `whole_turn_words` words, whole, against
   every question; (b) a turn of any role and length holding >= `lexical_gate` (and >= `min_distinctive`)
   of a question's distinctive words: its sentence windows (1-3 sentences) holding one of them, against
   that question whole and in 3-sentence windows. Cosine >= `embed_threshold` hits. The lexical gate
   bounds the cost (only candidate windows are embedded) and stops generic look-alikes.

A normalised standalone text other than a prompt shared by more than `template_items` items (the
golden set's common system prompt) identifies none of them and is ignored (`templates_ignored` in the
report). The dropped row's reason says the method, role and turn (`decontaminate:ngram:assistant-turn2`),
its `rep_id` is the eval item id, and the stage report lists the items hit per method.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field

from sftloop.curate.embed import similar_pairs, static_vectors, token_ids
from sftloop.curate.stages.base import Context, StageConfig, StageResult
from sftloop.curate.text import normalise_for_match, normalise_texts, sentence_windows, sentences, shingle_hashes, word_hashes
from sftloop.evaluate import evalsets

STANDALONE_KINDS = ("prompt", "system", "reference", "response")  # targets/choices only count with the question
ANSWER_KINDS = ("reference", "response")  # answers stand alone only from `answer_min_words` words ("Sure, I can help.")
METHOD_ORDER = ("ngram", "answer", "embedding")
# Chosen on bench/decontam_bench.py --prefilter-study 1000 (docs/benchmarks.md): recall of the rows MiniLM on
# every text drops, with the best-window static vector, at 0.5 / 0.55 / 0.6 / 0.65: 0.9989 / 0.9979 / 0.9954 /
# 0.9911 overall, 0.9932 / 0.9898 / 0.9795 / 0.9659 on model paraphrases (the hardest disguise); 0.6 with the
# whole-turn vector (before) 0.9872, heavy rewording in chit-chat 0.9377
PREFILTER_THRESHOLD = 0.55
WINDOW_PREFILTER_THRESHOLD = 0.6  # (b)'s candidate windows: see docs/benchmarks.md for the study at 0.55 / 0.6 / 0.65


@dataclass
class EvalTexts:
    """The eval side, prepared once per set selection: unique normalised texts and who owns them."""

    items: list[evalsets.EvalItem]
    text: list[str] = field(default_factory=list)       # original (first owner's) text
    norm: list[str] = field(default_factory=list)
    n_words: list[int] = field(default_factory=list)
    standalone: list[bool] = field(default_factory=list)
    is_prompt: list[bool] = field(default_factory=list)
    owners: list[list[int]] = field(default_factory=list)  # item indices
    templates: list[str] = field(default_factory=list)  # ignored texts shared by many items (previews)
    distinctive: dict[int, set[str]] = field(default_factory=dict)  # prompt tid -> distinctive words


def _hash_words(words: list[str]) -> np.ndarray:
    return pl.Series(words, dtype=pl.String).hash(seed=1).to_numpy()


@lru_cache(maxsize=4)
def prepare(eval_sets: tuple[str, ...], min_words: int, answer_min_words: int, template_items: int,
            common_items: int, rare_zipf: float) -> EvalTexts:
    items = evalsets.load(list(eval_sets))
    raw = [(k, t.kind, t.text) for k, it in enumerate(items) for t in it.texts if t.text.strip()]
    norms = normalise_texts([t for _, _, t in raw])
    by_norm: dict[str, int] = {}
    et = EvalTexts(items)
    for (k, kind, text), nm in zip(raw, norms):
        if not nm:
            continue
        tid = by_norm.get(nm)
        if tid is None:
            tid = by_norm[nm] = len(et.norm)
            et.text.append(text)
            et.norm.append(nm)
            et.n_words.append(len(nm.split()))
            need = answer_min_words if kind in ANSWER_KINDS else min_words
            et.standalone.append(kind in STANDALONE_KINDS and et.n_words[-1] >= need)
            et.is_prompt.append(kind == "prompt")
            et.owners.append([])
        elif kind == "prompt":
            et.is_prompt[tid] = True
        if not et.owners[tid] or et.owners[tid][-1] != k:
            et.owners[tid].append(k)
    for tid, own in enumerate(et.owners):
        if len(own) > template_items and et.standalone[tid] and not et.is_prompt[tid]:  # shared by many items: a template, not an item
            et.owners[tid] = []
            et.templates.append(et.text[tid][:60])
    # distinctive words: rare in English (wordfreq Zipf < `rare_zipf`) and in the prompts of at most
    # `common_items` items, not a number, so "account", "plus" or "29" never count as evidence but
    # "whiskers" or "Murray" do
    from wordfreq import zipf_frequency

    item_freq: Counter[str] = Counter()
    for tid, nm in enumerate(et.norm):
        if et.is_prompt[tid] and et.owners[tid]:
            item_freq.update({w: len(et.owners[tid]) for w in set(nm.split())})
    rare = {w for w in item_freq
            if item_freq[w] <= common_items and not w.isdigit() and zipf_frequency(w, "en") < rare_zipf}
    for tid, nm in enumerate(et.norm):
        if et.is_prompt[tid] and et.owners[tid]:
            et.distinctive[tid] = set(nm.split()) & rare
    return et


class Decontaminate(StageConfig):
    type: Literal["decontaminate"] = "decontaminate"
    eval_sets: list[str] = Field(default_factory=lambda: list(evalsets.SETS))
    ngram: int = Field(8, ge=3)
    containment: float = Field(0.5, gt=0, le=1)
    min_words: int = Field(4, ge=1)
    answer_min_words: int = Field(12, ge=1)
    template_items: int = Field(10, ge=1)
    common_items: int = Field(50, ge=1)
    rare_zipf: float = Field(4.5, gt=0)
    evidence: float = Field(0.6, gt=0, le=1)
    lexical_gate: float = Field(0.4, gt=0, le=1)
    min_distinctive: int = Field(2, ge=1)
    embed_threshold: float | None = Field(0.88, gt=0, le=1)
    whole_turn_words: int = Field(100, ge=0)
    # The prefilter: MiniLM embeds only (a) the short user turns whose static vector (embed.static_vectors,
    # idf and mean from the eval texts; the best of the turn and its sentence windows) is within
    # `prefilter_threshold` of a question's and (b) the candidate windows within
    # `window_prefilter_threshold` of a window of their candidate question, and of the eval side only the
    # questions (and question windows) of those near pairs; "none" embeds every one (the reference).
    # Excluded from the version id like embed_dedup's: it changes cost; it dropped the same rows as "none"
    # on the demo input and on reworded eval prompts (docs/benchmarks.md, tests/curate/test_decontaminate.py)
    prefilter: Literal["static", "none"] = Field("static", exclude=True)
    prefilter_threshold: float = Field(PREFILTER_THRESHOLD, gt=-1, le=1, exclude=True)
    window_prefilter_threshold: float = Field(WINDOW_PREFILTER_THRESHOLD, gt=-1, le=1, exclude=True)

    def eval_texts(self) -> EvalTexts:
        return prepare(tuple(self.eval_sets), self.min_words, self.answer_min_words, self.template_items,
                       self.common_items, self.rare_zipf)

    def apply(self, df: pl.DataFrame, ctx: Context) -> StageResult:
        et = self.eval_texts()
        if not et.norm or df.is_empty():
            return StageResult.split(df, None).reported(ctx, self.name, *self._report(et, {}))
        turns = (df.select(pl.col("messages")).with_row_index("row").explode("messages")
                 .with_columns(turn=pl.int_range(pl.len()).over("row") + 1)
                 .select("row", "turn", role=pl.col("messages").struct.field("role"),
                         content=pl.col("messages").struct.field("content").fill_null(""))
                 .with_columns(norm=normalise_for_match(pl.col("content"))))
        t_row = turns["row"].to_numpy()
        doc, wh = word_hashes(turns["norm"], lowercase=False)
        best: dict[int, tuple[int, str, int, float]] = {}  # row -> (method rank, item id, doc, score)

        def hit(d: int, item: int, method: str, score: float) -> None:
            # ties (the same score in two turns or for two items) go to the earliest turn, then the smallest
            # item id: hits arrive in Polars group-by order, which varies from run to run (measured: one
            # ShareGPT row's reason flipped between user-turn1 and user-turn3 across identical runs)
            r, iid = int(t_row[d]), et.items[item].id
            cand = (METHOD_ORDER.index(method), -score, d, iid)
            if r not in best or cand < (best[r][0], -best[r][3], best[r][2], best[r][1]):
                best[r] = (METHOD_ORDER.index(method), iid, d, score)

        # 1 + 2: n-gram containment / whole-span match, per turn
        cont = self._containment(et, doc, wh)
        evid = self._evidence(et, doc, wh)
        ev_row: dict[tuple[int, int], float] = defaultdict(float)  # (row, item) -> best evidence share
        for d, tid, share, n in evid.iter_rows():
            if n < self.min_distinctive:  # an answer needs >= 2 distinctive question words with it
                continue
            for it in et.owners[tid]:
                key = (int(t_row[d]), it)
                ev_row[key] = max(ev_row[key], share)
        for d, tid, c in cont.iter_rows():
            if et.standalone[tid]:
                for it in et.owners[tid]:
                    hit(d, it, "ngram", c)
            else:
                for it in et.owners[tid]:
                    if ev_row.get((int(t_row[d]), it), 0.0) >= self.evidence:
                        hit(d, it, "answer", c)
        # 3: embedding on sentence windows of lexical candidates
        embedded = whole_n = whole_embedded = wins_n = wins_embedded = 0
        if self.embed_threshold is not None:
            embedded, whole_n, whole_embedded, wins_n, wins_embedded = self._embedding(et, evid, turns, t_row, best, ctx, hit)
        counters, info = self._report(et, best, embedded)
        counters.update(short_user_turns=whole_n, short_user_turns_embedded=whole_embedded,
                        candidate_windows=wins_n, candidate_windows_embedded=wins_embedded)
        info["prefilter"] = (f"static@{self.prefilter_threshold}/{self.window_prefilter_threshold}"
                             if self.prefilter == "static" else "none")
        reasons: list[str | None] = [None] * df.height
        rep: list[str | None] = [None] * df.height
        roles, tno = turns["role"].to_list(), turns["turn"].to_list()
        for r, (m, item_id, d, _) in best.items():
            reasons[r] = f"decontaminate:{METHOD_ORDER[m]}:{roles[d]}-turn{tno[d]}"
            rep[r] = item_id
        tagged = df.with_columns(_why=pl.Series(reasons, dtype=pl.String), _item=pl.Series(rep, dtype=pl.String))
        res = StageResult.split(tagged, pl.col("_why"), pl.col("_item"))
        res.kept = res.kept.drop("_why", "_item", strict=False)
        return res.reported(ctx, self.name, counters, info)

    def _containment(self, et: EvalTexts, doc: np.ndarray, wh: np.ndarray) -> pl.DataFrame:
        """(doc, tid, containment) for every turn a text hits: >= `containment` of its n-grams (long
        texts) or its whole span (texts shorter than `ngram`)."""
        live = [t for t in range(len(et.norm)) if et.owners[t]]
        n_of = {t: min(self.ngram, et.n_words[t]) for t in live}
        ed, ewh = word_hashes(pl.Series([et.norm[t] for t in live]), lowercase=False)
        out = []
        for n in sorted(set(n_of.values())):
            sel = np.array([n_of[t] == n for t in live])
            keep = sel[ed]
            e_doc, e_h = shingle_hashes(ed[keep], ewh[keep], n)
            tids = np.asarray(live)[e_doc]
            eframe = pl.DataFrame({"tid": tids, "h": e_h}).unique()
            total = eframe.group_by("tid").len().rename({"len": "n_sh"})
            r_doc, r_h = shingle_hashes(doc, wh, n)
            rframe = pl.DataFrame({"doc": r_doc, "h": r_h}).unique()
            m = (rframe.join(eframe, on="h", how="inner").group_by("doc", "tid").len()
                 .join(total, on="tid").with_columns(c=pl.col("len") / pl.col("n_sh")))
            need = self.containment if n == self.ngram else 1.0
            out.append(m.filter(pl.col("c") >= need - 1e-9).select("doc", "tid", "c"))
        return pl.concat(out) if out else pl.DataFrame(schema={"doc": pl.Int64, "tid": pl.Int64, "c": pl.Float64})

    def _evidence(self, et: EvalTexts, doc: np.ndarray, wh: np.ndarray) -> pl.DataFrame:
        """(doc, tid, share): the share of a question's distinctive words a turn holds (>= 1 word)."""
        tids = [t for t, ws in et.distinctive.items() if ws]
        words = [w for t in tids for w in sorted(et.distinctive[t])]
        dframe = pl.DataFrame({"tid": np.repeat(tids, [len(et.distinctive[t]) for t in tids]).astype(np.int64),
                               "h": _hash_words(words)})
        total = dframe.group_by("tid").len().rename({"len": "n_dw"})
        rframe = pl.DataFrame({"doc": doc, "h": wh}).unique()
        return (rframe.join(dframe, on="h", how="inner").group_by("doc", "tid").len().join(total, on="tid")
                .select("doc", "tid", share=pl.col("len") / pl.col("n_dw"), n=pl.col("len"), n_dw=pl.col("n_dw")))\
            .filter((pl.col("share") >= min(self.evidence, self.lexical_gate))
                    & (pl.col("n") >= pl.min_horizontal(pl.col("n_dw"), pl.lit(self.min_distinctive)))).drop("n_dw")

    def _embedding(self, et: EvalTexts, evid: pl.DataFrame, turns: pl.DataFrame, t_row: np.ndarray,
                   best: dict, ctx: Context, hit) -> tuple[int, int, int, int, int]:
        """Two checks, rows already hit skipped: (a) every user turn of <= `whole_turn_words` words, whole,
        against every question; (b) sentence windows of lexical candidates (a turn holding >= `lexical_gate`
        of a question's distinctive words, any role, any length) against that question, whole and in
        3-sentence windows. Returns (row texts embedded, short user turns, of them embedded by MiniLM,
        candidate windows, of them embedded by MiniLM). The eval texts embedded are no counter: a shard
        embeds the questions of its own near pairs, so their sum would change with the shard size."""
        done = set(best)
        contents, roles = turns["content"].to_list(), turns["role"].to_list()
        n_words = turns["norm"].str.count_matches(r"\S+").to_list()
        prompt_tids = [t for t in range(len(et.norm)) if et.is_prompt[t] and et.owners[t]]
        whole = [d for d in range(len(contents)) if roles[d] == "user" and 0 < n_words[d] <= self.whole_turn_words
                 and int(t_row[d]) not in done]
        cand = evid.filter((pl.col("share") >= self.lexical_gate) & (pl.col("n") >= self.min_distinctive))
        pairs = [(int(d), int(t)) for d, t in zip(cand["doc"], cand["tid"]) if int(t_row[d]) not in done]
        want: dict[int, set[str]] = defaultdict(set)
        for d, t in pairs:
            want[d] |= et.distinctive[t]
        # (b) windows holding at least one distinctive word of a candidate question
        flat = [(d, w) for d in want for w in dict.fromkeys(w for _, w in sentence_windows(contents[d]))]
        kept: dict[int, list[str]] = defaultdict(list)
        for (d, w), nm in zip(flat, normalise_texts([w for _, w in flat])):
            if want[d] & set(nm.split()):
                kept[d].append(w)
        item_wins: dict[int, list[str]] = {t: [et.text[t]] for t in prompt_tids}
        for _, t in pairs:
            s = sentences(et.text[t])
            if len(s) > 3 and len(item_wins[t]) == 1:
                item_wins[t] += [" ".join(s[i:i + 3]) for i in range(0, len(s) - 2, 2)]
        windows = [w for d in kept for w in kept[d]]
        if not whole and not windows:
            return 0, 0, 0, 0, 0
        emb = ctx.embedder()
        order = list(item_wins)
        i_at, item_texts = {}, []
        for t in order:
            i_at[t] = (len(item_texts), len(item_texts) + len(item_wins[t]))
            item_texts += item_wins[t]
        heads = np.array([i_at[t][0] for t in prompt_tids], dtype=np.int64)
        r_at, k = {}, 0
        for d in kept:
            r_at[d] = (k, k + len(kept[d]))
            k += len(kept[d])
        cand, need = list(range(len(whole))), list(range(len(windows)))
        item_need = np.ones(len(item_texts), dtype=bool)
        if self.prefilter == "static" and item_texts:
            # The prefilter on both sides: MiniLM embeds only (a) the short user turns whose static vector is
            # within `prefilter_threshold` of a question's, (b) the windows within it of a window of one of
            # their row's candidate questions, and the eval texts of those near pairs; every other text keeps
            # a zero vector (similarity 0, never a hit). So a pair under the static threshold is never a hit
            # (before, a turn or window near one question was also compared with every other): the eval
            # side was embedded whole (ShareGPT asset: 3,198 texts, 33 s of a fresh 194 s stage)
            item_need[:] = False
            ids_i = token_ids(ctx.embedding_model, item_texts, emb.max_seq_length)
            si = static_vectors(ctx.embedding_model, ids_i, ref=ids_i)
            if whole and len(heads):  # idf and mean from the questions, as before
                # a turn's static vector is its best window's (the whole turn and its 1-3 sentence windows):
                # chit-chat around a reworded question ("Hi there! Which is 52 plus 96? Thanks a lot in
                # advance.") dominates the bag of the whole turn but not its middle sentence (measured:
                # bench/decontam_bench.py --prefilter-study, docs/benchmarks.md)
                owner, texts = [], []
                for k, d in enumerate(whole):
                    for w in dict.fromkeys([contents[d]] + [w for _, w in sentence_windows(contents[d])]):
                        owner.append(k)
                        texts.append(w)
                ids_h = [ids_i[h] for h in heads]
                sv = static_vectors(ctx.embedding_model, token_ids(ctx.embedding_model, texts, emb.max_seq_length),
                                    ref=ids_h)
                near_a = similar_pairs(sv, static_vectors(ctx.embedding_model, ids_h, ref=ids_h),
                                       self.prefilter_threshold)
                cand = sorted({owner[int(i)] for i in near_a[:, 0]})
                item_need[heads[np.unique(near_a[:, 1].astype(np.int64))]] = True
            need = []
            if windows:
                sw = static_vectors(ctx.embedding_model, token_ids(ctx.embedding_model, windows, emb.max_seq_length),
                                    ref=ids_i)
                near = np.zeros(len(windows), dtype=bool)
                for d, t in pairs:
                    if d in r_at:
                        a, b = r_at[d]
                        c, e = i_at[t]
                        close = (sw[a:b] @ si[c:e].T).max(axis=1) >= self.window_prefilter_threshold
                        if close.any():
                            near[a:b] |= close
                            item_need[c:e] = True
                need = np.flatnonzero(near).tolist()
        picked = np.flatnonzero(item_need).tolist()
        vecs = emb.encode([item_texts[i] for i in picked])  # (0, dim) when none: nothing computed
        iv = np.zeros((len(item_texts), vecs.shape[1]), dtype=np.float32)
        iv[picked] = vecs
        # (a) whole short user turns against every question (its whole text: the first row of its windows)
        wv = emb.encode([contents[whole[i]] for i in cand])
        if cand and len(heads):
            for i, j, sim in similar_pairs(wv, iv[heads], self.embed_threshold):
                for it in et.owners[prompt_tids[int(j)]]:
                    hit(whole[cand[int(i)]], it, "embedding", float(sim))
        # (b) candidate windows against their candidate question
        rv = np.zeros((len(windows), iv.shape[1]), dtype=np.float32)
        if need:
            rv[need] = emb.encode([windows[i] for i in need])
        for d, t in pairs:
            if d in r_at:
                a, b = r_at[d]
                c, e = i_at[t]
                sim = float((rv[a:b] @ iv[c:e].T).max())
                if sim >= self.embed_threshold:
                    for it in et.owners[t]:
                        hit(d, it, "embedding", sim)
        return len(cand) + len(need), len(whole), len(cand), len(windows), len(need)

    def _report(self, et: EvalTexts, best: dict, embedded: int = 0) -> tuple[dict, dict]:
        """This shard's (counters, info): the runner sums counters over shards (rows dropped, windows
        embedded, hits per method and item) and keeps info once (the eval sets, the same in every shard)."""
        info = {"eval_sets": list(self.eval_sets), "eval_items": len(et.items), "templates_ignored": et.templates}
        rep: dict = {"rows_dropped": len(best), "windows_embedded": embedded, "by_method": {}, "items_hit": {}}
        for m, item_id, _, _ in best.values():
            method = METHOD_ORDER[m]
            rep["by_method"][method] = rep["by_method"].get(method, 0) + 1
            per = rep["items_hit"].setdefault(item_id, {})
            per[method] = per.get(method, 0) + 1
        rep["items_hit"] = dict(sorted(rep["items_hit"].items()))
        return rep, info
