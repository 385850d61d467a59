"""What `train` prints: a line per stage, and training progress with an ETA.

On a TTY transformers' tqdm bar shows progress; otherwise (`| tee log`, CI, `just demo`) the bar
and Trainer's per-log dict lines are replaced by `ConsoleLog`: a line at most every `every_s`
seconds (step/total, smoothed loss, s/step, ETA), one line per evaluation, one at the end.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack

from transformers import TrainerCallback

from sftloop.progress import _fmt, stage
from sftloop.train.distributed import is_main


class Stages:
    """Sequential `sftloop.progress.stage` lines without nesting the code: `next(name)` ends the
    current stage (printing its `done in` line and detail) and starts the next."""

    def __init__(self, cmd: str):
        self.cmd = cmd
        self._stack = ExitStack()
        self._current = None

    def next(self, name: str) -> None:
        self.done()
        if not is_main():  # under torchrun only rank 0 speaks: one log, not one per process
            return
        self._current = self._stack.enter_context(stage(self.cmd, name))

    def detail(self, text: str) -> None:
        if self._current is not None:
            self._current.detail = text

    def done(self) -> None:
        self._stack.close()
        self._current = None


class ConsoleLog(TrainerCallback):
    """Plain progress lines for a non-TTY log (tqdm is off there)."""

    def __init__(self, every_s: float = 30.0, cmd: str = "train"):
        self.every_s = every_s
        self.cmd = cmd
        self._last = self._prev = 0.0
        self._train_s = 0.0  # time in optimizer steps only: evaluation pauses do not inflate the ETA
        self._first_step = 0
        self._loss: float | None = None  # EMA of logged train loss

    def _print(self, text: str) -> None:
        if not is_main():
            return
        print(f"{self.cmd}: {text}", file=sys.stderr, flush=True)

    def on_train_begin(self, args, state, control, **kw):
        self._last = self._prev = time.monotonic()
        self._train_s = 0.0
        self._first_step = state.global_step
        start = f" from step {state.global_step} (resumed)" if state.global_step else ""
        self._print(f"training {state.max_steps} optimizer steps{start}")

    def on_log(self, args, state, control, logs=None, **kw):
        loss = (logs or {}).get("loss")
        if loss is not None:
            self._loss = loss if self._loss is None else 0.7 * self._loss + 0.3 * loss

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        if metrics and "eval_loss" in metrics:
            self._print(f"eval loss {metrics['eval_loss']:.4f} at step {state.global_step}")
        self._prev = time.monotonic()

    def on_step_end(self, args, state, control, **kw):
        now = time.monotonic()
        self._train_s += now - self._prev
        self._prev = now
        if now - self._last < self.every_s and state.global_step < state.max_steps:
            return
        self._last = now
        done = state.global_step - self._first_step
        per_step = self._train_s / max(done, 1)
        left = max(state.max_steps - state.global_step, 0)
        loss = f", loss {self._loss:.3f} (smoothed)" if self._loss is not None else ""
        self._print(f"step {state.global_step}/{state.max_steps} ({state.global_step / max(state.max_steps, 1):.0%}){loss}, "
                    f"{per_step:.1f} s/step, ETA {_fmt(left * per_step)}")
