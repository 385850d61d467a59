"""What long commands print: one line per stage, and progress with an ETA.

On a TTY `progress()` is a tqdm bar; otherwise (CI, `| tee log`, a busy shared machine) it prints
a plain line at most every `every_s` seconds and a summary line at the end, so a log shows that
work is moving without hundreds of carriage-return frames. `stage()` prints `<cmd>: <name> ...`
when a stage starts and `<cmd>: <name> done in 12.3 s (<detail>)` when it ends.

    with stage("gate", "golden answers") as s:
        for batch in progress(batches, total=len(batches), desc="gate: golden", unit="batch"):
            ...
        s.detail = "38 items"
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


def is_tty() -> bool:
    return sys.stderr.isatty()


def quiet_library_bars() -> None:
    """Off a TTY, transformers' own tqdm bars ("Loading weights", shown when a load is slow, e.g. on a busy
    machine) are switched off at run time, so a log gets our stage lines and no carriage-return frames.
    Called where a model is loaded: the HF_HUB_DISABLE_PROGRESS_BARS variable only counts if it is set
    before transformers is first imported, which a library caller cannot promise."""
    if is_tty():
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _fmt(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
             every_s: float = 30.0) -> Iterator[T]:
    """Yield `items`, showing progress on stderr: a tqdm bar on a TTY, else a line every `every_s`
    seconds (done/total, rate, ETA) and one summary line at the end."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if is_tty():
        from tqdm.auto import tqdm
        yield from tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True)
        return
    start = last = time.monotonic()
    n = 0
    for item in items:
        yield item
        n += 1
        now = time.monotonic()
        if now - last >= every_s and n != total:  # the last item gets the summary line, not both
            last = now
            rate = n / (now - start)
            eta = f", ETA {_fmt((total - n) / rate)}" if total and rate > 0 else ""
            of = f"/{total}" if total else ""
            print(f"{desc}: {n}{of} {unit} ({rate:.2f} {unit}/s{eta})", file=sys.stderr, flush=True)
    took = time.monotonic() - start
    if took >= 1.0:
        print(f"{desc}: {n} {unit} in {_fmt(took)}", file=sys.stderr, flush=True)


@dataclass
class Stage:
    name: str
    detail: str = ""


@contextmanager
def stage(cmd: str, name: str) -> Iterator[Stage]:
    """Print `<cmd>: <name> ...` on start and `<cmd>: <name> done in N s (detail)` at the end (or
    `failed after N s` when it raises)."""
    s = Stage(name)
    print(f"{cmd}: {name} ...", file=sys.stderr, flush=True)
    start = time.monotonic()
    try:
        yield s
    except BaseException:
        print(f"{cmd}: {name} failed after {_fmt(time.monotonic() - start)}", file=sys.stderr, flush=True)
        raise
    extra = f" ({s.detail})" if s.detail else ""
    print(f"{cmd}: {name} done in {_fmt(time.monotonic() - start)}{extra}", file=sys.stderr, flush=True)
