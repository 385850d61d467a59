"""Decontamination benchmark (prints figures; not a timed test).

Plants eval texts from every set the gate evaluates (`evaluate.evalsets`: golden, MT-Bench, IFBench,
BIG-bench probes, judge-calibration pairs) into ShareGPT conversations under our own disguises, mixes
them with >= 1,000 clean ShareGPT rows, runs the `decontaminate` stage once on the whole frame and
prints recall per disguise, the false-positive rate on the clean rows, and which eval items were hit
(and missed) per disguise.

Disguises: verbatim user turn; re-wrapped lines (+ one hyphenated break); inside a longer user
message; a later user turn; an assistant turn; case/punctuation/markdown changes; light rewording
(our own deterministic synonym swaps from a small table, dropped filler words, one adjacent-word
swap: no WordNet data offline); the answer in the reply (an MT-Bench / golden reference answer or
calibration response of >= 12 words as the assistant turn after an unrelated question; a shorter
answer or a probe target after the reworded question).

`--stage-time` also times the stage on the default pipeline's rows at that point (default config,
without `embed_dedup` to save CPU) against the stage before this change (commit f14a3a7), each with
an empty embedding cache, and the new stage again with a warm cache.

`--prefilter-study N` only measures the static prefilter against fp32 MiniLM on every text
(`prefilter = "none"`) on N eval prompts under heavier disguises (`study_frame`); `--paraphrase MODEL`
adds a paraphrase of each by that registry entry (through `just serve MODEL` when it is up; the calls
are cached per backend, so a rerun on the same backend reuses them).

    python bench/decontam_bench.py [--clean 2000] [--per-set 24] [--stage-time]
    python bench/decontam_bench.py --prefilter-study 1000 [--paraphrase base]
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
import types
from collections import defaultdict
from pathlib import Path

import polars as pl

from sftloop import assets
from sftloop.schema import PARQUET_SCHEMA, ChatRecord
from sftloop.settings import offline_env

ROOT = Path(__file__).parents[1]
BASELINE_COMMIT = "f14a3a7"
DISGUISES = ["verbatim", "rewrapped", "inside_longer", "later_user_turn", "assistant_turn", "case_punct",
             "rewording", "answer_in_reply"]

# ShareGPT rows found contaminated by hand when checking the flagged clean rows (origin id -> why);
# they are excluded from the clean set and reported.
REAL_CONTAMINATION: dict[str, str] = {}

SYNONYMS = {
    "write": "compose", "compose": "write", "create": "make", "make": "create", "describe": "explain",
    "explain": "describe", "provide": "give", "give": "provide", "list": "enumerate", "short": "brief",
    "brief": "short", "story": "tale", "essay": "article", "article": "essay", "poem": "verse", "help": "assist",
    "use": "employ", "using": "employing", "include": "contain", "including": "containing", "answer": "response",
    "response": "reply", "question": "query", "important": "significant", "good": "fine", "big": "large",
    "large": "big", "small": "little", "quick": "fast", "fast": "quick", "begin": "start", "start": "begin",
    "end": "finish", "finish": "end", "show": "display", "find": "locate", "choose": "pick", "pick": "choose",
    "select": "choose", "discuss": "talk about", "imagine": "picture", "suppose": "assume", "assume": "suppose",
    "example": "instance", "examples": "instances", "ensure": "make sure", "words": "terms", "word": "term",
    "sentence": "line", "sentences": "lines", "paragraph": "passage", "paragraphs": "passages", "people": "folks",
    "person": "individual", "friend": "pal", "buy": "purchase", "purchase": "buy", "order": "purchase",
    "want": "would like", "need": "require", "can": "could", "tell": "inform", "about": "regarding",
    "happy": "glad", "sad": "unhappy", "idea": "notion", "ideas": "notions", "way": "manner", "ways": "manners",
    "problem": "issue", "issue": "problem", "help me": "assist me", "also": "additionally", "then": "next",
    "what": "which", "today": "now", "received": "got", "refund": "reimbursement", "account": "profile",
    "password": "passcode", "delivery": "shipment", "package": "parcel", "cancel": "call off",
    "email": "e-mail", "statement": "claim", "plausible": "believable", "date": "day", "book": "volume",
    "travel": "trip", "blog": "weblog", "post": "entry", "recent": "latest", "highlighting": "featuring",
    "experiences": "moments", "attractions": "sights", "engaging": "captivating", "describe the": "depict the",
}
FILLER = {"the", "a", "an", "please", "very", "really", "just", "that", "some", "also"}


def reword(text: str, rng: random.Random) -> str:
    """Light deterministic rewording: synonym swaps (<= 1 in 4 words), a dropped filler word or two,
    one adjacent-word swap."""
    words = text.split()
    core = [re.sub(r"^\W+|\W+$", "", w) for w in words]
    idx = [i for i, c in enumerate(core) if c.lower() in SYNONYMS]
    rng.shuffle(idx)
    for i in idx[: max(1, len(words) // 4)]:
        c = core[i]
        rep = SYNONYMS[c.lower()]
        rep = rep.capitalize() if c[:1].isupper() else rep
        words[i] = words[i].replace(c, rep, 1)
    drops = [i for i, c in enumerate(core) if c.lower() in FILLER]
    for i in sorted(rng.sample(drops, min(len(drops), max(1, len(words) // 15))), reverse=True):
        del words[i]
    if len(words) > 6:
        j = rng.randrange(1, len(words) - 2)
        words[j], words[j + 1] = words[j + 1], words[j]
    return " ".join(words)


def rewrap(text: str, rng: random.Random) -> str:
    words = text.split()
    out, line = [], []
    width = rng.randint(5, 9)
    for w in words:
        line.append(w)
        if len(line) >= width:
            out.append(" ".join(line))
            line = []
    if line:
        out.append(" ".join(line))
    joined = "\n".join(out)
    long = [w for w in re.findall(r"[A-Za-z]{9,}", joined)]
    if long:
        w = rng.choice(long)
        joined = joined.replace(w, w[:4] + "-\n" + w[4:], 1)
    return joined


def case_punct(text: str, rng: random.Random) -> str:
    words = []
    for w in text.split():
        r = rng.random()
        w = w.upper() if r < 0.15 else w.lower() if r < 0.5 else w.title() if r < 0.6 else w
        words.append(w)
    s = " ".join(words).replace(",", "").replace(".", " !").replace("?", "??").replace("'", "’").replace('"', "“")
    return "**" + s.replace(":", " -") + "**" if rng.random() < 0.5 else "- " + s.replace(";", ",")


def sharegpt_rows(n_skip: int = 0) -> list[dict]:
    """Cleaned (the pipeline's `clean` stage) ShareGPT conversations of user/assistant turns up to
    6,000 characters (the default pipeline keeps <= 1,024 tokens), in a seeded order."""
    from sftloop.curate.sources import SourceConfig, parse_sharegpt
    from sftloop.curate.stages.base import Context
    from sftloop.curate.stages.clean import Clean

    src = SourceConfig(name="sharegpt", format="sharegpt", path="asset:sharegpt-v3-partial")
    rows = []
    with open(assets.path("sharegpt-v3-partial"), encoding="utf-8") as f:
        for line in f:
            try:
                rec = parse_sharegpt(json.loads(line), src)
            except Exception:  # noqa: BLE001 - the source quarantines these; the bench just skips them
                continue
            rows.append(rec.to_row())
    df = pl.DataFrame(rows, schema=PARQUET_SCHEMA).with_row_index("_row")
    df = Clean().apply(df, Context(progress=False)).kept
    tot = df.select(pl.col("messages").list.eval(pl.element().struct.field("content").str.len_chars()).list.sum())
    df = df.filter((tot.to_series() <= 6000) & (pl.col("messages").list.len() >= 2))
    df = df.sample(fraction=1.0, shuffle=True, seed=0)
    return [{"id": r["id"], "origin": json.loads(r["meta"] or "{}").get("origin_id"), "messages": r["messages"]}
            for r in df.iter_rows(named=True)]


def pick(items, per_set: int) -> list:
    by: dict[str, list] = defaultdict(list)
    for it in items:
        by[it.set].append(it)
    out = []
    for s, its in by.items():
        if s == "probes":  # spread over the tasks
            tasks: dict[str, list] = defaultdict(list)
            for it in its:
                tasks[it.id.rsplit("-", 1)[0]].append(it)
            k = max(1, per_set // len(tasks))
            for t in sorted(tasks):
                out += random.Random(f"{s}{t}").sample(tasks[t], k)
        else:
            out += random.Random(s).sample(its, min(per_set, len(its)))
    return out


def plant(it, disguise: str, hosts: list[dict], k: int) -> tuple[list[tuple[str, str]], str] | None:
    """(conversation, planted text) or None when the item has nothing for this disguise."""
    rng = random.Random(f"{it.set}:{it.id}:{disguise}")
    h1, h2 = hosts[k % len(hosts)], hosts[(k + 7) % len(hosts)]
    u1 = next(m["content"] for m in h1["messages"] if m["role"] == "user")
    a1 = next(m["content"] for m in h1["messages"] if m["role"] == "assistant")
    u2 = next(m["content"] for m in h2["messages"] if m["role"] == "user")
    a2 = next(m["content"] for m in h2["messages"] if m["role"] == "assistant")
    prompts = it.of("prompt")
    q = prompts[rng.randrange(len(prompts))] if it.set == "mtbench" else prompts[0]
    if disguise == "verbatim":
        return [("user", q), ("assistant", a1)], q
    if disguise == "rewrapped":
        return [("user", rewrap(q, rng)), ("assistant", a1)], q
    if disguise == "inside_longer":
        return [("user", f"{u1[:400]}\n\nAlso, {q}\n\n{u2[:400]}"), ("assistant", a1)], q
    if disguise == "later_user_turn":
        return [("user", u1), ("assistant", a1), ("user", q), ("assistant", a2)], q
    if disguise == "assistant_turn":
        return [("user", u1), ("assistant", f"Here is an example you could use:\n\n{q}\n\n{a1[:400]}")], q
    if disguise == "case_punct":
        return [("user", case_punct(q, rng)), ("assistant", a1)], q
    if disguise == "rewording":
        return [("user", reword(q, rng)), ("assistant", a1)], q
    if disguise == "answer_in_reply":
        refs = it.of("reference") or it.of("response")
        if refs and len(refs[0].split()) >= 12:
            return [("user", u1), ("assistant", refs[0])], refs[0]
        if refs:  # a short answer ("A is the grandfather of C.") is only contamination with its question
            return [("user", reword(q, rng)), ("assistant", refs[0])], refs[0]
        targets = it.of("target")
        if targets:
            return [("user", reword(q, rng)), ("assistant", f"The answer is {targets[0]}.")], targets[0]
        return None
    raise ValueError(disguise)


def build_frame(convs: list[list[tuple[str, str]]]) -> pl.DataFrame:
    rows = [ChatRecord.model_validate({"messages": [{"role": r, "content": c} for r, c in conv], "source": "bench"}).to_row()
            for conv in convs]
    return pl.DataFrame(rows, schema=PARQUET_SCHEMA).with_row_index("_row")


def recall_run(n_clean: int, per_set: int) -> None:
    from sftloop.curate.stages.base import Context
    from sftloop.curate.stages.decontaminate import Decontaminate

    stage = Decontaminate()
    items = stage.eval_texts().items
    share = sharegpt_rows()
    clean = [r for r in share if r["origin"] not in REAL_CONTAMINATION][:n_clean]
    hosts = share[n_clean: n_clean + 3000]
    chosen = pick(items, per_set)
    planted, convs = [], []
    for k, it in enumerate(chosen):
        for dis in DISGUISES:
            got = plant(it, dis, hosts, k)
            if got is not None:
                convs.append(got[0])
                planted.append((dis, it))
    convs += [[(m["role"], m["content"]) for m in r["messages"]] for r in clean]
    df = build_frame(convs)
    ctx = Context(progress=False)
    t = time.time()
    res = stage.apply(df, ctx)
    secs = time.time() - t
    dropped = {int(r): (reason, rep) for r, reason, rep in res.dropped.iter_rows()}
    # an item whose planted text is identical to another item's (a shared logical-deduction paragraph,
    # a repeated calibration question) may be reported under that other id: still the same text
    from sftloop.curate.text import normalise_texts

    same: dict[str, set[str]] = defaultdict(set)
    for it in items:
        for nm in normalise_texts([t.text for t in it.texts]):
            same[nm].add(it.id)
    print(f"eval sets {stage.eval_sets}: {len(items)} items; sampled {len(chosen)} "
          f"({', '.join(f'{s} {sum(i.set == s for i in chosen)}' for s in stage.eval_sets)})")
    print(f"frame: {len(planted)} planted rows + {len(clean)} clean ShareGPT rows; stage {secs:.1f}s, "
          f"{ctx.reports['decontaminate']['windows_embedded']} windows embedded\n")
    print("| disguise | planted | recall | by method |")
    print("|---|---:|---:|---|")
    per: dict[str, list] = defaultdict(list)
    other: dict[str, list] = defaultdict(list)
    for row, (dis, it) in enumerate(planted):
        got = dropped.get(row)
        ok = got is not None  # every planted row is contaminated: caught is caught
        if ok and not (got[1] == it.id or any(it.id in ids and got[1] in ids for ids in same.values())):
            other[dis].append(f"{it.id}->{got[1]}")  # caught under an item whose text overlaps this one's
        per[dis].append((it, ok, got[0].split(":")[1] if got else None))
    for dis in DISGUISES:
        xs = per[dis]
        methods = defaultdict(int)
        for _, ok, m in xs:
            if ok:
                methods[m] += 1
        print(f"| {dis} | {len(xs)} | {sum(ok for _, ok, _ in xs) / len(xs):.3f} | "
              f"{', '.join(f'{m} {c}' for m, c in sorted(methods.items()))} |")
    fp = [(r - len(planted), dropped[r]) for r in dropped if r >= len(planted)]
    print(f"\nfalse positives: {len(fp)} of {len(clean)} clean rows = {len(fp) / len(clean):.2%}")
    for k, (reason, rep) in fp:
        first = next(m["content"] for m in clean[k]["messages"] if m["role"] == "user")
        print(f"  FP {clean[k]['origin']} {reason} -> {rep}: {first[:160]!r}")
    if REAL_CONTAMINATION:
        print(f"excluded as real contamination (checked by hand): {REAL_CONTAMINATION}")
    print("\nitems hit / missed per disguise:")
    for dis in DISGUISES:
        hit = [f"{it.id}({m})" for it, ok, m in per[dis] if ok]
        miss = [it.id for it, ok, _ in per[dis] if not ok]
        print(f"  {dis}: hit {len(hit)}: {' '.join(hit)}")
        print(f"  {dis}: MISSED {len(miss)}: {' '.join(miss)}")
        if other[dis]:
            print(f"  {dis}: caught under another item with overlapping text: {' '.join(other[dis])}")


def _old_stage():
    """The stage as of BASELINE_COMMIT (whole first user turn embedding, user-turn 13-grams), from git."""
    def src(path):
        return subprocess.run(["git", "show", f"{BASELINE_COMMIT}:{path}"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
    ev = types.ModuleType("old_evalsets")
    sys.modules["old_evalsets"] = ev
    exec(compile(src("curate/evalsets.py"), "old_evalsets", "exec"), ev.__dict__)
    st = types.ModuleType("old_decontaminate")
    sys.modules["old_decontaminate"] = st
    st.__dict__["evalsets"] = ev
    exec(compile(src("curate/stages/decontaminate.py").replace("from sftloop.curate import evalsets\n", ""),
                 "old_decontaminate", "exec"), st.__dict__)
    return st.Decontaminate(eval_sets=["mtbench", "ifbench", "golden"])


def stage_time() -> None:
    from sftloop.curate.config import load_config
    from sftloop.curate.pipeline import run
    from sftloop.curate.stages.base import Context
    from sftloop.curate.stages.decontaminate import Decontaminate

    cfg = load_config(ROOT / "curate" / "configs" / "default.toml")
    cfg.stages = [st for st in cfg.stages if st.type not in ("embed_dedup", "decontaminate")]
    with tempfile.TemporaryDirectory() as d:
        res = run(cfg, Path(d), progress=False)
        df = pl.concat([pl.read_parquet(p) for p in res.shards])
    print(f"\nstage time on the default pipeline's rows before decontaminate (without embed_dedup): {df.height:,} rows")
    for label, make in (("before (f14a3a7: 13-grams of user turns, first user turn embedded)", _old_stage),
                        ("now, empty embedding cache", Decontaminate), ("now, warm embedding cache", None)):
        if make is None:
            ctx = Context(progress=False)  # same SFTLOOP_CACHE as the previous run
            stage = Decontaminate()
        else:
            os.environ["SFTLOOP_CACHE"] = tempfile.mkdtemp(prefix="decontam-bench-cache-")
            ctx = Context(progress=False)
            stage = make()
        t = time.time()
        r = stage.apply(df, ctx)
        rep = ctx.reports[stage.name]
        print(f"  {label}: {time.time() - t:.1f}s, dropped {r.dropped.height} "
              f"({dict(r.dropped.group_by('reason').len().iter_rows())}), windows embedded {rep.get('windows_embedded', '-')}")


PARAPHRASE_PROMPT = ("Rewrite the following request in your own words so that it asks for the same thing. "
                     "Reply with the rewritten request only.\n\n{q}")
CHATTY = [("Hi there! ", " Thanks a lot in advance."), ("Quick question: ", ""), ("", " Please be detailed."),
          ("Hey, I need some help with something. ", " I really appreciate it!")]


def heavy(text: str, rng: random.Random) -> str:
    """Heavier than `reword`: two rounds of it, a fifth of the remaining words dropped, sentences in
    another order, chit-chat around it."""
    t = reword(reword(text, rng), rng)
    s = re.split(r"(?<=[.!?])\s+", t)
    if len(s) > 1:
        rng.shuffle(s)
    words = " ".join(s).split()
    keep = [w for w in words if rng.random() > 0.2] or words
    pre, post = rng.choice(CHATTY)
    return pre + " ".join(keep) + post


def study_frame(n_prompts: int, paraphrase: str | None) -> tuple[pl.DataFrame, list[str], int, int]:
    """The prefilter study's frame, (frame, disguise per row, prompts, prompts eligible):
    `n_prompts` eval prompts of <= `whole_turn_words` words under disguises heavier than `reword`
    (two rounds of it with dropped words and chit-chat, the first 60 %, chit-chat around it, a model
    paraphrase), each as the user turn of a row whose reply is a real ShareGPT reply, plus 2,000 clean
    ShareGPT rows."""
    from sftloop.curate.stages.decontaminate import Decontaminate

    st = Decontaminate()
    et = st.eval_texts()
    heads = [t for t in range(len(et.norm)) if et.is_prompt[t] and et.owners[t]]
    short = [t for t in heads if et.n_words[t] <= st.whole_turn_words]
    pool = random.Random(0).sample(short, min(n_prompts, len(short)))
    share = sharegpt_rows()
    clean, hosts = share[:2000], share[2000:]
    disg: list[tuple[str, str]] = []
    for t in pool:
        q, rng = et.text[t], random.Random(f"study:{t}")
        disg.append(("reword", reword(q, rng)))
        disg.append(("heavy", heavy(q, rng)))
        w = q.split()
        if len(w) >= 10:
            disg.append(("first_60pct", " ".join(w[: int(len(w) * 0.6)])))
        pre, post = rng.choice(CHATTY)
        disg.append(("chit_chat", pre + q + post))
    if paraphrase:
        from sftloop.backends import Cache, backend_for

        b = backend_for(paraphrase, ROOT, Cache())
        t0 = time.time()
        outs = b.chat([[{"role": "user", "content": PARAPHRASE_PROMPT.format(q=et.text[t])}] for t in pool],
                      max_new_tokens=120)
        print(f"paraphrases: {len(outs)} by {paraphrase} ({b.kind}) in {time.time() - t0:.0f} s")
        disg += [("paraphrase", o.strip().strip('"')) for t, o in zip(pool, outs)
                 if o.strip() and o.strip().lower() != et.text[t].lower()]
    convs = []
    for k, (_, text) in enumerate(disg):
        reply = next(m["content"] for m in hosts[k % len(hosts)]["messages"] if m["role"] == "assistant")
        convs.append([("user", text), ("assistant", reply)])
    convs += [[(m["role"], m["content"]) for m in r["messages"]] for r in clean]
    return build_frame(convs), [d for d, _ in disg] + ["clean"] * len(clean), len(pool), len(short)


def prefilter_study(n_prompts: int, paraphrase: str | None, variants: dict | None = None) -> None:
    """The static prefilter against fp32 MiniLM on every text (`prefilter = "none"`), at the stage level,
    on `study_frame`: prints per disguise the rows the reference drops and the recall / precision of the
    fast path's dropped set against them, and the texts each path had MiniLM embed."""
    from sftloop.curate.stages.base import Context
    from sftloop.curate.stages.decontaminate import Decontaminate

    st = Decontaminate()
    df, kinds, n_pool, n_short = study_frame(n_prompts, paraphrase)
    paths = {"none": Decontaminate(prefilter="none")} | (variants or {"static": st})
    got = {}
    for name, stage in paths.items():
        ctx = Context(progress=False)
        t0 = time.time()
        res = stage.apply(df, ctx)
        rep = ctx.reports["decontaminate"]
        got[name] = {int(r) for r in res.dropped["_row"]}
        print(f"{name}: {time.time() - t0:.0f} s, {len(got[name])} dropped, short user turns embedded "
              f"{rep.get('short_user_turns_embedded')} of {rep.get('short_user_turns')}, windows "
              f"{rep.get('candidate_windows_embedded')} of {rep.get('candidate_windows')}")
    print(f"\n{n_pool} of {n_short} eval prompts of <= {st.whole_turn_words} words; frame {df.height} rows")
    fast = [n for n in paths if n != "none"]
    print("| disguise | rows | dropped by the reference | " + " | ".join(f"{n}: recall / precision" for n in fast) + " |")
    print("|---|---:|---:|" + "---|" * len(fast))
    for kind in list(dict.fromkeys(kinds)) + ["all"]:
        rows = {i for i, k in enumerate(kinds) if kind in (k, "all")}
        ref = got["none"] & rows
        cells = []
        for n in fast:
            f = got[n] & rows
            rec = len(f & ref) / len(ref) if ref else float("nan")
            prec = len(f & ref) / len(f) if f else float("nan")
            cells.append(f"{rec:.4f} / {prec:.4f}")
        print(f"| {kind} | {len(rows)} | {len(ref)} | " + " | ".join(cells) + " |")

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clean", type=int, default=2000)
    ap.add_argument("--per-set", type=int, default=24)
    ap.add_argument("--stage-time", action="store_true")
    ap.add_argument("--prefilter-study", type=int, metavar="N", help="only the prefilter recall study on N eval prompts")
    ap.add_argument("--paraphrase", metavar="MODEL", help="with --prefilter-study: registry entry that paraphrases")
    a = ap.parse_args()
    offline_env()
    if a.prefilter_study:
        prefilter_study(a.prefilter_study, a.paraphrase)
        return
    recall_run(a.clean, a.per_set)
    if a.stage_time:
        stage_time()


if __name__ == "__main__":
    main()
