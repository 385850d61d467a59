"""Scale benchmark (prints figures; not a timed test). Sections are added by subcommand.

`curate`: the default pipeline (embedding stages excluded unless `--full`) on a scaled ShareGPT corpus
(bench/curate_bench.py's `write_scaled_corpus`: the asset plus perturbed copies), once per executor
(`local`, `processes`, `ray` with a local 2-CPU cluster on 127.0.0.1), each in its own process so
its driver's peak RSS is its own. Prints wall time, per-stage conv/s, the speed-up over `local`,
driver peak RSS, the largest task peak RSS, the GlobalStage features size, whether every executor
wrote the same parts (sha256), and a per-million-rows extrapolation.

    python bench/scale_bench.py curate [--scale 10] [--rows N] [--shard-rows 10000] [--workers 2] [--full]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from curate_bench import peak_rss_mb, write_scaled_corpus  # noqa: E402

from sftloop.settings import offline_env  # noqa: E402

EXECUTORS = ("local", "processes", "ray")


def one_run(source: str, executor: str, shard_rows: int, workers: int, full: bool) -> dict:
    """One pipeline run (in this process, which is the driver) and its figures."""
    from sftloop.curate.config import load_config
    from sftloop.curate.pipeline import finalise, run

    cfg = load_config(Path(__file__).parents[1] / "curate" / "configs" / "default.toml")
    cfg.sources[0].path = source
    cfg.shard_rows, cfg.executor, cfg.workers = shard_rows, executor, workers
    if not full:
        cfg.stages = [st for st in cfg.stages if st.type not in ("embed_dedup", "decontaminate")]
    t = time.time()
    with tempfile.TemporaryDirectory() as d:
        res = run(cfg, Path(d), progress=False)
        parts = finalise(cfg, res, Path(d) / "parts")
        digest = hashlib.sha256(b"".join(hashlib.sha256(parts[k].read_bytes()).digest() for k in sorted(parts)))
    wall = time.time() - t
    stages = [{"stage": st.stage, "rows_in": st.rows_in, "seconds": st.seconds} for st in res.funnel]
    tasks = [t for ts in res.tasks.values() for t in ts]
    return {"executor": executor, "rows": res.rows_in, "shards": len(res.tasks[next(iter(res.tasks))]) if res.tasks else 0,
            "wall": wall, "stages": stages, "driver_rss_mb": peak_rss_mb(),
            "task_rss_mb": max((t.peak_rss_mb for t in tasks), default=0.0),
            "features_bytes": max(res.features_bytes.values(), default=0),
            "parts_sha256": digest.hexdigest()[:16]}


def curate_section(a: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "corpus.jsonl"
        n = write_scaled_corpus(src, a.scale)
        if a.rows and a.rows < n:
            lines = src.read_text(encoding="utf-8").splitlines(keepends=True)[: a.rows]
            src.write_text("".join(lines), encoding="utf-8")
            n = a.rows
        print(f"curate on a {a.scale}x ShareGPT corpus, {n:,} conversations, shards of {a.shard_rows:,} rows, "
              f"{a.workers} workers; embedding stages {'included' if a.full else 'excluded'}")
        runs = []
        for ex in EXECUTORS:
            cmd = [sys.executable, __file__, "curate-one", str(src), ex, str(a.shard_rows), str(a.workers)]
            out = subprocess.run(cmd + (["--full"] if a.full else []), capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{ex}: failed\n{out.stderr[-3000:]}")
                continue
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"{ex}: {json.dumps(runs[-1])}", flush=True)
    if not runs:
        return
    base = runs[0]
    print("\n| executor | rows | shards | wall s | vs local | driver peak RSS MB | task peak RSS MB | features MB | parts sha256 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        print(f"| {r['executor']} | {r['rows']:,} | {r['shards']} | {r['wall']:.1f} | {base['wall'] / r['wall']:.2f}x | "
              f"{r['driver_rss_mb']:,.0f} | {r['task_rss_mb']:,.0f} | {r['features_bytes'] / 1e6:.1f} | "
              f"`{r['parts_sha256']}` |")
    print("\nper stage, conv/s (speed-up over local):\n")
    print("| stage | " + " | ".join(r["executor"] for r in runs) + " |")
    print("|---|" + "---:|" * len(runs))
    for i, st in enumerate(base["stages"]):
        cells = []
        for r in runs:
            s = r["stages"][i]
            rate = s["rows_in"] / s["seconds"] if s["seconds"] else float("nan")
            ratio = st["seconds"] / s["seconds"] if s["seconds"] else float("nan")
            cells.append(f"{rate:,.0f} ({ratio:.2f}x)")
        print(f"| {st['stage']} | " + " | ".join(cells) + " |")
    print("\nextrapolated per million rows (linear in rows; the driver holds the features of one GlobalStage):\n")
    print("| executor | wall per 1M rows | features per 1M rows | shards per 1M rows |")
    print("|---|---:|---:|---:|")
    for r in runs:
        k = 1e6 / r["rows"]
        print(f"| {r['executor']} | {r['wall'] * k / 60:,.0f} min | {r['features_bytes'] * k / 1e6:,.0f} MB | "
              f"{1e6 / a.shard_rows:,.0f} |")
    same = len({r["parts_sha256"] for r in runs}) == 1
    print(f"\nparts identical across executors: {same}")


def main() -> None:
    offline_env()
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("curate")
    c.add_argument("--scale", type=int, default=10)
    c.add_argument("--rows", type=int, default=None, help="only the first N conversations of the scaled corpus")
    c.add_argument("--shard-rows", type=int, default=10_000)
    c.add_argument("--workers", type=int, default=2)
    c.add_argument("--full", action="store_true")
    o = sub.add_parser("curate-one")  # one executor in its own process (driver RSS is its own)
    o.add_argument("source")
    o.add_argument("executor", choices=EXECUTORS)
    o.add_argument("shard_rows", type=int)
    o.add_argument("workers", type=int)
    o.add_argument("--full", action="store_true")
    a = ap.parse_args()
    if a.cmd == "curate":
        curate_section(a)
    else:
        print(json.dumps(one_run(a.source, a.executor, a.shard_rows, a.workers, a.full)))


if __name__ == "__main__":
    main()
