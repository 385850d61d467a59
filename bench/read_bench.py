"""Reader benchmark (prints figures; not a timed test): what the bad-input checks cost.

On the ShareGPT asset's JSONL (17,671 conversations, 121 MB), in one process, same order every run:
- baseline: binary lines, `json.loads(line.decode("utf-8"))`, the sharegpt parser (a bad byte or a
  BOM would stop it; no size check);
- ours: `sftloop.schema.iter_jsonl` with the sharegpt parser: detected encoding, undecodable-byte
  markers, row-size limit, quarantine;
and the same file as a `.json` array through `curate.sources` (span-wise decoding and checks), and as
a dataset Parquet file read by the `records` parser: baseline `iter_batches` + `to_pylist` + the
parser, ours `iter_parquet` (adds the per-row size check).

    python bench/read_bench.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from sftloop import assets
from sftloop.settings import offline_env


def main() -> None:
    offline_env()
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    from sftloop.curate.sources import SourceConfig, parse_records, parse_sharegpt, read_source
    from sftloop.schema import QuarantineWriter, ReadStats, iter_jsonl, iter_parquet, write_parquet

    path = assets.path("sharegpt-v3-partial")
    src = SourceConfig(name="sharegpt", format="sharegpt", path=str(path))

    def parse(obj):
        return parse_sharegpt(obj, src)

    def baseline() -> int:
        n = 0
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    try:
                        parse(json.loads(line.decode("utf-8")))
                        n += 1
                    except ValueError:
                        pass
        return n

    def ours() -> int:
        st = ReadStats(str(path))
        return sum(1 for _ in iter_jsonl(path, st, QuarantineWriter(None), parse))

    with tempfile.TemporaryDirectory() as d:
        arr = Path(d) / "sharegpt.json"
        with open(path, encoding="utf-8") as f, open(arr, "w", encoding="utf-8") as out:
            out.write("[\n" + ",\n".join(line.rstrip("\n") for line in f if line.strip()) + "\n]\n")

        def ours_array() -> int:
            return len(read_source(SourceConfig(name="s", format="sharegpt", path=str(arr)), QuarantineWriter(None))[0])

        pq_path = Path(d) / "records.parquet"
        write_parquet([parse(json.loads(line)) for line in open(path, encoding="utf-8") if line.strip()
                       and _ok(parse, line)], pq_path)
        rsrc = SourceConfig(name="r", format="records", path=str(pq_path))

        def parquet_baseline() -> int:
            import pyarrow.parquet as pq

            return sum(1 for b in pq.ParquetFile(pq_path).iter_batches(batch_size=4096) for o in b.to_pylist()
                       if parse_records(o, rsrc))

        def parquet_ours() -> int:
            st = ReadStats(str(pq_path))
            return sum(1 for _ in iter_parquet(pq_path, st, QuarantineWriter(None), lambda o: parse_records(o, rsrc)))

        rows = {}
        for name, fn in (("baseline jsonl (utf-8 only, no checks)", baseline), ("ours jsonl", ours),
                         ("ours json array", ours_array), ("baseline parquet (no size check)", parquet_baseline),
                         ("ours parquet", parquet_ours)):
            best = float("inf")
            for _ in range(a.repeat):
                t = time.perf_counter()
                n = fn()
                best = min(best, time.perf_counter() - t)
            rows[name] = (n, best)
    print(f"{path.name}: {path.stat().st_size / 1e6:.0f} MB, best of {a.repeat}")
    print("| reader | rows parsed | seconds | rows/s | vs its baseline |\n|---|---:|---:|---:|---:|")
    for name, (n, s) in rows.items():
        base = rows["baseline parquet (no size check)" if "parquet" in name else "baseline jsonl (utf-8 only, no checks)"][1]
        print(f"| {name} | {n:,} | {s:.2f} | {n / s:,.0f} | {s / base:.2f}x |")


def _ok(parse, line: str) -> bool:
    try:
        parse(json.loads(line))
        return True
    except ValueError:
        return False


if __name__ == "__main__":
    main()
