"""Training on several processes (DDP, or FSDP when the config asks): launch, ranks, row balance, gathering.

`python -m sftloop.train run CONFIG --nproc N` re-enters the same trainer as N torchrun workers
(`torch.distributed.run`, static rendezvous on 127.0.0.1). Each worker reads RANK/WORLD_SIZE; the
process group is `gloo` on CPU and `nccl` on GPUs. Data parallelism is transformers.Trainer's
(accelerate shards the batches: rank r takes batches r, r+W, ... of the same seeded permutation).
What this module adds around it:

- `balance_rows`: the packed rows are split (one conversation moved to a row of its own) until their
  number is a multiple of world_size × per_device_batch, so no rank ever repeats a row to fill its
  last batch (accelerate's even_batches would) and the ranks' rows are disjoint and cover the epoch.
- the loss is normalised by the *global* number of trained tokens of the step (Trainer's
  `average_tokens_across_devices`, set explicitly in the trainer); tests/train/test_distributed.py
  checks the gradient against one process on the whole batch with very uneven tokens per rank.
- `gather_monitor`: rank 0 gets the token counts, trained rows (per rank) and per-step losses of
  every rank for the report; only rank 0 writes the report, run.json and the registry.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def active() -> bool:
    return world_size() > 1


def init() -> None:
    """Start the process group for a torchrun worker (idempotent; Trainer/accelerate reuse it)."""
    if not active() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nproc: int, worker_argv: list[str]) -> int:
    """Run `python -m sftloop.train <worker_argv>` as `nproc` torchrun workers on this machine; 0 on success."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args([
        f"--nproc-per-node={nproc}", "--nnodes=1", "--master-addr=127.0.0.1", f"--master-port={free_port()}",
        "--module", "sftloop.train", *worker_argv])
    try:
        run(args)
    except ChildFailedError as e:
        print(f"train: a worker failed: {e.format_msg().strip().splitlines()[-1] if e.failures else e}", file=sys.stderr)
        return 1
    return 0


@dataclass
class BalanceReport:
    rows_before: int
    rows_after: int
    multiple: int


def balance_rows(rows: list, multiple: int) -> tuple[list, BalanceReport]:
    """Split packed rows (PackedRow) until len(rows) % multiple == 0: each split moves the last
    conversation of the row holding the most conversations to a new row. Raises ValueError when there
    are fewer conversations than needed (a rank would have to repeat a row)."""
    from sftloop.train.packing import PackedRow

    before = len(rows)
    rows = [PackedRow(list(r.input_ids), list(r.labels), list(r.position_ids), list(r.seq_lens)) for r in rows]
    while len(rows) % multiple:
        r = max(rows, key=lambda x: len(x.seq_lens))
        if len(r.seq_lens) < 2:
            raise ValueError(f"{before} packed rows ({sum(len(x.seq_lens) for x in rows)} conversations) cannot be "
                             f"divided among {multiple} batch slots (world size × per_device_batch) without repeating "
                             "rows: use fewer processes or a smaller per_device_batch")
        n = r.seq_lens.pop()
        new = PackedRow(r.input_ids[-n:], r.labels[-n:], r.position_ids[-n:], [n])
        del r.input_ids[-n:], r.labels[-n:], r.position_ids[-n:]
        rows.append(new)
    return rows, BalanceReport(before, len(rows), multiple)


def allreduce_seconds(numel: int, reps: int = 5) -> float:
    """Mean wall time of one all-reduce of `numel` float32 (the trainable gradient size) on this group."""
    if not dist.is_initialized():
        return 0.0
    dev = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    t = torch.ones(numel, dtype=torch.float32, device=dev)
    dist.all_reduce(t)  # warm-up
    barrier()
    t0 = time.perf_counter()
    for _ in range(reps):
        dist.all_reduce(t)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def gather_monitor(monitor) -> dict:
    """Merge every rank's Monitor counters into rank 0's (tokens summed, trained rows united, per-step
    losses averaged over ranks: each rank's loss is already world_size × its share of the global
    token-normalised loss). Called by all ranks; returns the per-rank view for run.json."""
    if not dist.is_initialized():
        return {"world_size": 1}
    mine = {"rank": rank(), "tokens": dict(monitor.tokens), "rows": sorted(monitor.rows_seen),
            "step_losses": dict(monitor.step_losses)}
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, mine)
    if is_main():
        for k in monitor.tokens:
            monitor.tokens[k] = sum(p["tokens"][k] for p in parts)
        monitor.rows_seen = set().union(*(p["rows"] for p in parts))
        steps = sorted(set().union(*(p["step_losses"] for p in parts)))
        # the Monitor's own accumulator form: [sum, n, scaled]; scaled=True returns the sum as the step loss
        monitor._step_loss = {s: [sum(p["step_losses"][s] for p in parts if s in p["step_losses"]) /
                                  sum(1 for p in parts if s in p["step_losses"]), 1, True] for s in steps}
    seen = [set(p["rows"]) for p in parts]
    overlap = sum(len(a & b) for i, a in enumerate(seen) for b in seen[i + 1:])
    return {"world_size": len(parts), "backend": dist.get_backend(),
            "rows_per_rank": [len(p["rows"]) for p in parts],
            "trained_tokens_per_rank": [p["tokens"]["trained"] for p in parts],
            "rows_by_rank": [p["rows"] for p in parts], "rows_overlap": overlap}
