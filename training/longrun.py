"""Long runs that survive: non-finite guards, periodic training checkpoints, exact resume, SIGINT/SIGTERM.

Two halves:

* **Inside jit** (``all_finite``, ``select_tree``, ``guarded_apply``): an update
  whose gradient (agent gradient, meta-gradient) or fitness is not finite is
  skipped: parameters and optimiser state keep their previous values, the
  step reports ``nonfinite_skipped = 1``. ``jnp.where`` with a true condition
  returns the new value bit for bit, so guarded runs equal unguarded ones
  whenever nothing is skipped.
* **On the host** (``LongRun``): wraps a chunked training loop. After each
  compiled chunk it counts consecutive skipped updates (and stops the run
  with ``NonFiniteError`` after ``max_nonfinite_skips`` of them, leaving the
  last good checkpoint intact), writes a training checkpoint (orbax, atomic)
  when ``checkpoint_interval_s`` has passed, and on SIGINT/SIGTERM writes one
  and raises ``RunInterrupted``. Checkpoints are only written at chunk
  boundaries of a chunk schedule fixed by the run's total length, so a run
  resumed from any checkpoint performs exactly the same computations as an
  uninterrupted one (bit-identical on CPU).
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lpg.errors import (
    InvalidConfigError,
    NonFiniteError,
    OutputDirError,
    RunInterrupted,
)
from training.guards import SKIP_KEY, all_finite, guarded_apply, select_tree  # noqa: F401  (re-exported)

# Options that control how a run is executed, not what it computes: not part of a run's identity in config.json,
# so the same command with --resume (or --no-progress) continues the run.
RUN_CONTROL_FIELDS = ("resume", "progress", "checkpoint_interval_s", "max_nonfinite_skips")


def run_identity(options: Any) -> dict[str, Any]:
    """The dataclass ``options`` as a dict without its run-control fields (what config.json records)."""
    return {k: v for k, v in dataclasses.asdict(options).items() if k not in RUN_CONTROL_FIELDS}


# --------------------------------------------------------------------------- signals


class _SignalHandlers:
    """Context manager installing ``self._handle`` for SIGINT and SIGTERM, restoring the previous handlers on exit.

    In a multi-process run the processes could see a signal at different steps
    and their collectives would no longer match: there (and outside the main
    thread) nothing is installed, signals keep their default action (stop at
    once) and a run resumes from its last periodic checkpoint.
    """

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and jax.process_count() == 1:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class StopSignals(_SignalHandlers):
    """Context manager: SIGINT/SIGTERM set ``self.signum`` instead of killing the run.

    The loop checks ``requested`` between chunks, saves a checkpoint and stops.
    A second signal while the first is pending raises ``KeyboardInterrupt`` at
    once (the user insists).
    """

    def __init__(self) -> None:
        super().__init__()
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum


class SignalStop(Exception):
    """SIGINT or SIGTERM arrived inside ``RaiseOnSignals``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class RaiseOnSignals(_SignalHandlers):
    """Context manager: SIGINT/SIGTERM raise ``SignalStop`` at once, for work that ``--resume`` redoes.

    Unlike ``StopSignals`` nothing waits for a boundary; unlike the defaults,
    SIGTERM becomes an exception (so the command can say how to resume) and a
    SIGINT ignored by the parent (``cmd &`` in a script) still stops the work.
    """

    def _handle(self, signum, frame) -> None:
        raise SignalStop(signum)


# --------------------------------------------------------------------------- host loop


def check_resumable(out: str | Path, resume: bool, what: str = "run") -> None:
    """With ``resume``, ``out`` must hold a run (its config.json); checked before anything is written."""
    if resume and not (Path(out) / "config.json").exists():
        raise InvalidConfigError(f"--resume: {str(out)!r} holds no {what} to resume; run without --resume to start")


def validate_longrun(checkpoint_interval_s: float, max_nonfinite_skips: int) -> None:
    if not checkpoint_interval_s >= 0:
        raise InvalidConfigError(f"--checkpoint-interval-s must be >= 0, got {checkpoint_interval_s}")
    if max_nonfinite_skips < 1:
        raise InvalidConfigError(f"--max-nonfinite-skips must be >= 1, got {max_nonfinite_skips}")


class LongRun:
    """Host side of a resumable, guarded run whose state is checkpointed in ``directory``.

    Usage::

        with LongRun(run.path / "training_state", resume=..., ...) as guard:
            done, state, extra = guard.start(state)           # restores on --resume
            for size in LongRun.remaining(schedule, done):    # the same fixed chunk schedule
                state, metrics = step(state, size); done += size
                guard.count_skips(done, metrics[SKIP_KEY])    # NonFiniteError after too many in a row
                guard.after_chunk(done, state, extra=..., history=..., final=done == total)

    Args:
      directory: the training-checkpoint folder (``<out>/training_state``).
      resume: continue from the newest checkpoint; without it an existing
        checkpoint is an error (the folder holds a run to resume).
      checkpoint_interval_s: minimum seconds between periodic checkpoints
        (0 = after every chunk).
      max_nonfinite_skips: consecutive skipped updates (of any one seed) that stop the run.
      what: the command's name for messages.
      unit: what ``done`` counts (for messages).
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        resume: bool,
        checkpoint_interval_s: float,
        max_nonfinite_skips: int,
        what: str,
        unit: str = "updates",
    ) -> None:
        validate_longrun(checkpoint_interval_s, max_nonfinite_skips)
        self.directory = Path(directory)
        self.resume = resume
        self.interval_s = float(checkpoint_interval_s)
        self.max_skips = int(max_nonfinite_skips)
        self.what = what
        self.unit = unit
        self.signals = StopSignals()
        self.total_skips = 0
        self._consecutive: np.ndarray | None = None
        self._last_save = time.monotonic()
        self._last_saved_step: int | None = None

    def __enter__(self) -> LongRun:
        self.signals.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.signals.__exit__(*exc)

    # -- start -------------------------------------------------------------
    def start(self, state: Any) -> tuple[int, Any, dict[str, Any]]:
        """(done, state, extra): restored from the newest checkpoint with --resume, else (0, state, {})."""
        from lpg import checkpoint

        existing = checkpoint.latest_training_step(self.directory)
        if not self.resume:
            if existing is not None:
                raise OutputDirError(
                    f"{str(self.directory.parent)!r} already holds a {self.what} run; add --resume to continue it, or choose a new --out"
                )
            return 0, state, {}
        if existing is None:
            raise InvalidConfigError(
                f"--resume: no training checkpoint in {str(self.directory)!r}; run without --resume to start"
            )
        step, state, extra = checkpoint.restore_training_state(self.directory, state)
        self.total_skips = int(extra.get("nonfinite_skips", 0))
        consecutive = extra.get("consecutive_skips")
        self._consecutive = None if consecutive is None else np.asarray(consecutive, np.int64)
        self._last_saved_step = step
        return step, state, extra

    @staticmethod
    def remaining(schedule: list[int], done: int) -> list[int]:
        """The chunks of ``schedule`` after ``done`` units (``done`` must be a chunk boundary)."""
        boundaries = np.cumsum([0] + list(schedule))
        index = int(np.searchsorted(boundaries, done))
        if index >= len(boundaries) or boundaries[index] != done:
            raise InvalidConfigError(
                f"--resume: the checkpoint at {done} updates is not a chunk boundary of this run; was it written with other settings?"
            )
        return list(schedule[index:])

    # -- per chunk -----------------------------------------------------------
    def count_skips(self, done: int, skipped: np.ndarray) -> int:
        """Counts skipped updates of a chunk; ``skipped`` [S, chunk] (or [chunk]) of 0/1. Returns the chunk's count.

        Raises:
          NonFiniteError: some seed skipped ``max_nonfinite_skips`` updates in a row.
        """
        skipped = np.asarray(skipped) > 0
        if skipped.ndim == 1:
            skipped = skipped[None]
        if self._consecutive is None or self._consecutive.shape[0] != skipped.shape[0]:
            self._consecutive = np.zeros(skipped.shape[0], np.int64)
        for column in skipped.T:
            self._consecutive = np.where(column, self._consecutive + 1, 0)
            if self._consecutive.max() >= self.max_skips:
                last = (
                    "no checkpoint was written"
                    if self._last_saved_step is None
                    else (
                        f"the last good checkpoint ({self._last_saved_step} {self.unit}) is in {str(self.directory)!r}"
                    )
                )
                raise NonFiniteError(
                    f"{self.what}: {self.max_skips} consecutive updates had non-finite {'gradients or fitness' if 'offline' in self.what else 'gradients'} "
                    f"(around {done} {self.unit}); stopped; {last}; lower the learning rate or raise --max-nonfinite-skips"
                )
        count = int(skipped.sum())
        self.total_skips += count
        return count

    def after_chunk(
        self,
        done: int,
        state: Any,
        *,
        extra: Mapping[str, Any] | None = None,
        history: Mapping[str, np.ndarray] | None = None,
        final: bool = False,
        lazy_state: Callable[[], Any] | None = None,
    ) -> None:
        """Writes a checkpoint when due (interval passed, ``final``, a stop signal arrived); raises RunInterrupted on a signal.

        ``lazy_state()``, when given, builds the state only when a checkpoint is written.
        """
        due = (
            final
            or self.signals.requested
            or self.interval_s == 0
            or time.monotonic() - self._last_save >= self.interval_s
        )
        if due:
            self.save(done, lazy_state() if lazy_state is not None else state, extra=extra, history=history)
        self.raise_if_interrupted(done)

    def raise_if_interrupted(self, done: int) -> None:
        """Raises RunInterrupted when SIGINT/SIGTERM arrived (call after saving a checkpoint)."""
        if self.signals.requested:
            name = signal.Signals(self.signals.signum).name
            raise RunInterrupted(
                f"{self.what} stopped by {name} after {done} {self.unit}; checkpoint saved in {str(self.directory)!r}; "
                f"continue with the same command plus --resume",
                signum=self.signals.signum,
            )

    def save(
        self,
        done: int,
        state: Any,
        *,
        extra: Mapping[str, Any] | None = None,
        history: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        from lpg import checkpoint

        payload = dict(extra or {})
        payload["nonfinite_skips"] = self.total_skips
        payload["consecutive_skips"] = None if self._consecutive is None else self._consecutive.tolist()
        checkpoint.save_training_state(self.directory, done, state, payload, history=history)
        self.mark_saved(done)

    @property
    def last_saved_step(self) -> int | None:
        """``done`` of the newest checkpoint saved or restored by this run (None before the first)."""
        return self._last_saved_step

    def mark_saved(self, done: int) -> None:
        """Records that a checkpoint of ``done`` units exists (for loops that write their own)."""
        self._last_save = time.monotonic()
        self._last_saved_step = done


def merge_history(
    previous: Mapping[str, np.ndarray] | None, chunks: list[dict[str, np.ndarray]], axis: int = 1
) -> dict[str, np.ndarray]:
    """Concatenates per-chunk metric arrays [S, chunk] (after ``previous``, the restored history) along ``axis``."""
    parts = ([dict(previous)] if previous else []) + list(chunks)
    if not parts:
        return {}
    return {k: np.concatenate([np.asarray(p[k]) for p in parts], axis=axis) for k in parts[0]}
