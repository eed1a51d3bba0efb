"""The run harness: one run's folder, config, resume, signals, checkpoints, progress, metrics and summary.

Every command that runs something (``lpg train``, ``lpg discover online|offline``,
``lpg evaluate``, Atari runs, experiments) wires its own state and step into
one ``Run``::

    run = Run(out, config, what="train catch", resume=resume, checkpoint_interval_s=60)
    if (summary := run.stored()) is not None:      # this run, already finished
        return summary
    ... validate and build everything (nothing is written before this point) ...
    with run.open(total=total, label="train catch (a2c)", progress_unit="steps"):
        done, state, extra = run.start(state)      # restored on --resume
        for size in run.remaining(schedule, done):
            state, metrics = step(state, size); done += size
            run.count_skips(done, metrics["nonfinite_skipped"])
            run.log(step_value, row); run.advance(units, status)
            run.checkpoint(done, state, extra=..., history=..., final=done == total)
        return run.finish(summary)

What it guarantees:

* **Nothing half-written on bad input**: ``open`` checks the folder before
  writing (``lpg.run_io.RunDir.prepare``): an unwritable folder, or one holding
  a different run, is an ``OutputDirError``. A folder holding this run,
  unfinished (a checkpoint or logged metrics), needs ``--resume``; finished,
  ``stored`` returns its summary with ``--resume`` and refuses it without.
* **Exact resume**: ``start`` restores the newest training checkpoint (orbax,
  atomic); checkpoints are written only at the boundaries of a chunk schedule
  fixed by the run's length (``remaining``), so a resumed run does the same
  computations as an uninterrupted one. ``metrics.jsonl`` is cut back to the
  rows logged up to the restored checkpoint and the TensorBoard events are
  rewritten from them, so after any kill and ``--resume`` every file equals an
  uninterrupted run's. A run killed before its first checkpoint restarts from
  the beginning with ``--resume``.
* **Signals**: SIGINT/SIGTERM write a checkpoint at the next chunk boundary and
  raise ``RunInterrupted`` (exit 128 + signal); a second one stops at once.
* **Non-finite guards, host side**: ``count_skips`` counts updates skipped
  inside jit (``training.guards``) and stops the run with ``NonFiniteError``
  after ``max_nonfinite_skips`` in a row, leaving the last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lpg import distributed
from lpg.errors import CheckpointError, InvalidConfigError, NonFiniteError, OutputDirError, RunInterrupted
from lpg.progress import ProgressBar
from lpg.run_io import RunDir, finished_run, to_jsonable

__all__ = [
    "METRICS_ROWS",
    "RUN_CONTROL_FIELDS",
    "RaiseOnSignals",
    "Run",
    "SignalStop",
    "StopSignals",
    "run_identity",
    "validate_longrun",
]

# Options that control how a run is executed, not what it computes: not part of a run's identity in config.json,
# so the same command with --resume (or --no-progress) continues the run.
RUN_CONTROL_FIELDS = ("resume", "progress", "checkpoint_interval_s", "max_nonfinite_skips")
METRICS_ROWS = "_metrics_rows"  # checkpoint extra: rows of metrics.jsonl written up to the checkpoint


def run_identity(options: Any) -> dict[str, Any]:
    """The dataclass ``options`` as a dict without its run-control fields (what config.json records)."""
    return {k: v for k, v in dataclasses.asdict(options).items() if k not in RUN_CONTROL_FIELDS}


def validate_longrun(checkpoint_interval_s: float, max_nonfinite_skips: int) -> None:
    if not checkpoint_interval_s >= 0:
        raise InvalidConfigError(f"--checkpoint-interval-s must be >= 0, got {checkpoint_interval_s}")
    if max_nonfinite_skips < 1:
        raise InvalidConfigError(f"--max-nonfinite-skips must be >= 1, got {max_nonfinite_skips}")


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


# --------------------------------------------------------------------------- the run


class Run:
    """One run of a command: see the module docstring.

    Args:
      out: the output folder.
      config: the run's identity (JSON-able; written to config.json). The same
        command with ``--resume`` or ``--no-progress`` must give the same config.
      what: the command's name for messages (``"train catch"``).
      unit: what ``done`` counts (for messages): ``updates``, ``meta-steps``, ...
      resume: continue the run in ``out``.
      progress: show a progress bar on stderr.
      checkpoint_interval_s: minimum seconds between periodic checkpoints
        (0 = at every chunk boundary); the last one and SIGINT/SIGTERM always write one.
      max_nonfinite_skips: consecutive skipped updates (of any one seed) that stop the run.
      matches: for ``stored``: a finished run counts only if ``matches(summary)``
        (e.g. the same number of meta-steps, for runs that ``--resume`` can extend).
      checkpoints: a folder name under ``out`` for training checkpoints
        (None: the run keeps no training checkpoints).
    """

    def __init__(
        self,
        out: str | Path,
        config: Any,
        *,
        what: str,
        unit: str = "updates",
        resume: bool = False,
        progress: bool = True,
        checkpoint_interval_s: float = 60.0,
        max_nonfinite_skips: int = 10,
        matches: Callable[[dict[str, Any]], bool] | None = None,
        checkpoints: str | None = "training_state",
    ) -> None:
        validate_longrun(checkpoint_interval_s, max_nonfinite_skips)
        self.out = Path(out)
        self.config = config
        self.what = what
        self.unit = unit
        self.resume = resume
        self.show_progress = progress
        self.interval_s = float(checkpoint_interval_s)
        self.max_skips = int(max_nonfinite_skips)
        self.matches = matches
        self.checkpoint_dir = self.out / checkpoints if checkpoints else None
        self.signals = StopSignals()
        self.total_skips = 0
        self.dir: RunDir | None = None
        self.bar: ProgressBar | None = None
        self._consecutive: np.ndarray | None = None
        self._last_save = time.monotonic()
        self._last_saved_step: int | None = None
        self._started = time.perf_counter()
        self.wall_before = 0.0
        # Called as hook(done, state, extra) just before each training checkpoint is written, so that what a
        # command saves beside it (e.g. online discovery's objective/) is never newer than the checkpoint.
        self.save_hooks: list[Callable[[int, Any, Mapping[str, Any]], None]] = []

    @classmethod
    def from_options(cls, options: Any, config: Any, *, what: str, **kwargs: Any) -> Run:
        """A run with the run-control options of a command (``out``, ``resume``, ``progress``,
        ``checkpoint_interval_s``, ``max_nonfinite_skips``; those it lacks keep their defaults)."""
        for name in ("resume", "progress", "checkpoint_interval_s", "max_nonfinite_skips"):
            if hasattr(options, name):
                kwargs.setdefault(name, getattr(options, name))
        return cls(options.out, config, what=what, **kwargs)

    # -- before anything runs --------------------------------------------------------
    def stored(self) -> dict[str, Any] | None:
        """The summary of this run when ``out`` already holds it finished (``--resume``); else None.

        Raises:
          OutputDirError: it is finished and ``resume`` was not given.
        """
        return distributed.on_primary(lambda: finished_run(self.out, self.config, resume=self.resume, matches=self.matches))

    def _checkpoints(self):
        from lpg import checkpoint

        return distributed.primary_checkpoints(checkpoint)

    def _has_checkpoint(self) -> bool:
        return self.checkpoint_dir is not None and self._checkpoints().latest_training_step(self.checkpoint_dir) is not None

    def _same_config(self) -> bool:
        try:
            return json.loads((self.out / "config.json").read_text()) == to_jsonable(self.config)
        except (OSError, ValueError):
            return False

    def check_resume(self) -> None:
        """With ``resume``, ``out`` must hold this run; without it, ``out`` must not hold it unfinished.

        Called by ``open`` (and by commands that want the check before they build anything).

        Raises:
          CheckpointError: ``--resume`` with no run in ``out``.
          OutputDirError: an unfinished run of this config in ``out`` without ``--resume``.
        """
        has_config = (self.out / "config.json").exists()
        if has_config and not self._same_config():
            return  # a different run: opening the folder says so (``RunDir.prepare``)
        if self.resume and not has_config and not self._has_checkpoint():
            where = self.checkpoint_dir if self.checkpoint_dir is not None else self.out
            raise CheckpointError(
                f"--resume: no training checkpoint in {str(where)!r} and no run to resume; run without --resume to start"
            )
        if not self.resume and has_config and (self._has_checkpoint() or _has_rows(self.out)):
            raise OutputDirError(
                f"{str(self.out)!r} already holds a {self.what} run; add --resume to continue it, or choose a new --out"
            )

    def open(self, *, total: int, label: str | None = None, progress_unit: str | None = None) -> Run:
        """Checks and prepares the folder, writes config.json; use as ``with run.open(...):``.

        ``total`` is the run's length in progress units (``progress_unit``,
        default ``unit``), shown by the progress bar.
        """
        distributed.on_primary(self.check_resume)
        self.dir = distributed.prepare_run_dir(self.out, self.config)
        self.bar = ProgressBar(label or self.what, total, progress_unit or self.unit, enabled=self.show_progress)
        return self

    def __enter__(self) -> Run:
        self._started = time.perf_counter()
        self.signals.__enter__()
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.bar.__exit__(*exc)
        finally:
            self.signals.__exit__(*exc)
            if self.dir is not None:
                self.dir.close()

    # -- start ---------------------------------------------------------------------
    def start(self, state: Any) -> tuple[int, Any, dict[str, Any]]:
        """``(done, state, extra)``: restored from the newest checkpoint with ``--resume``, else ``(0, state, {})``.

        metrics.jsonl is cut back to the rows logged up to that checkpoint (to
        none on a fresh start) and the TensorBoard events rewritten from them.
        """
        done, extra, rows = 0, {}, 0
        if self.resume and self._has_checkpoint():
            restored = self._checkpoints().restore_training_state(self.checkpoint_dir, state)
            done, state, extra = restored
            rows = extra.pop(METRICS_ROWS, None)
            self.total_skips = int(extra.get("nonfinite_skips", 0))
            consecutive = extra.get("consecutive_skips")
            self._consecutive = None if consecutive is None else np.asarray(consecutive, np.int64)
            self._last_saved_step = done
            self.wall_before = float(extra.get("wall_s", 0.0))
        elif self.resume and self.checkpoint_dir is not None:
            print(
                f"lpg: {str(self.out)!r} holds no training checkpoint (the run stopped before its first one); "
                "starting it again from the beginning",
                file=sys.stderr,
            )
        self.dir.truncate_metrics(rows)
        return done, state, extra

    def session_s(self) -> float:
        """Seconds of this session (since ``open``'s ``with`` began)."""
        return time.perf_counter() - self._started

    def wall(self) -> float:
        """Seconds of every session of this run (a resumed run's earlier ones included)."""
        return self.wall_before + time.perf_counter() - self._started

    @staticmethod
    def remaining(schedule: list[int], done: int) -> list[int]:
        """The chunks of ``schedule`` after ``done`` units (``done`` must be a chunk boundary)."""
        boundaries = np.cumsum([0, *schedule])
        index = int(np.searchsorted(boundaries, done))
        if index >= len(boundaries) or boundaries[index] != done:
            raise InvalidConfigError(
                f"--resume: the checkpoint at {done} updates is not a chunk boundary of this run; "
                "was it written with other settings?"
            )
        return list(schedule[index:])

    # -- per chunk -----------------------------------------------------------------
    def log(self, step: int, row: Mapping[str, Any]) -> None:
        """Appends one row to metrics.jsonl and TensorBoard."""
        self.dir.log(step, row)

    def advance(self, units: int, status: str = "") -> None:
        """Moves the progress bar by ``units`` (skipped updates are appended to ``status``)."""
        skipped = f", skipped {self.total_skips}" if self.total_skips else ""
        self.bar.update(units, status + skipped)

    def resume_progress(self, done_units: int) -> None:
        """Starts the progress bar at ``done_units`` (work restored from a checkpoint, left out of the rate)."""
        self.bar.resume_from(done_units)

    def count_skips(self, done: int, skipped: np.ndarray) -> int:
        """Counts skipped updates of a chunk; ``skipped`` [S, chunk] (or [chunk]) of 0/1. Returns the chunk's count.

        Raises:
          NonFiniteError: some seed skipped ``max_nonfinite_skips`` updates in a row.
        """
        skipped = np.asarray(skipped) > 0
        if skipped.ndim == 0:
            skipped = skipped[None, None]
        elif skipped.ndim == 1:
            skipped = skipped[None]
        if self._consecutive is None or self._consecutive.shape[0] != skipped.shape[0]:
            self._consecutive = np.zeros(skipped.shape[0], np.int64)
        for column in skipped.T:
            self._consecutive = np.where(column, self._consecutive + 1, 0)
            if self._consecutive.max() >= self.max_skips:
                last = (
                    "no checkpoint was written"
                    if self._last_saved_step is None
                    else f"the last good checkpoint ({self._last_saved_step} {self.unit}) is in {str(self.checkpoint_dir)!r}"
                )
                kind = "gradients or fitness" if "offline" in self.what else "gradients"
                raise NonFiniteError(
                    f"{self.what}: {self.max_skips} consecutive updates had non-finite {kind} (around {done} {self.unit}); "
                    f"stopped; {last}; lower the learning rate or raise --max-nonfinite-skips"
                )
        count = int(skipped.sum())
        self.total_skips += count
        return count

    def checkpoint(
        self,
        done: int,
        state: Any,
        *,
        extra: Mapping[str, Any] | None = None,
        history: Mapping[str, np.ndarray] | None = None,
        final: bool = False,
        lazy_state: Callable[[], Any] | None = None,
        replace: bool = False,
    ) -> None:
        """Writes a checkpoint when due (interval passed, ``final``, a stop signal arrived); then raises
        ``RunInterrupted`` if a signal arrived.

        ``lazy_state()``, when given, builds the state only when a checkpoint is written.
        """
        due = final or self.signals.requested or self.interval_s == 0
        due = due or time.monotonic() - self._last_save >= self.interval_s
        if due:
            self.save(done, lazy_state() if lazy_state is not None else state, extra=extra, history=history, replace=replace)
        self.raise_if_interrupted(done)

    def save(
        self,
        done: int,
        state: Any,
        *,
        extra: Mapping[str, Any] | None = None,
        history: Mapping[str, np.ndarray] | None = None,
        replace: bool = False,
    ) -> None:
        """Writes a training checkpoint of ``done`` units now (with the wall time, skip counts and metrics rows)."""
        payload = {"wall_s": self.wall(), **dict(extra or {})}
        payload["nonfinite_skips"] = self.total_skips
        payload["consecutive_skips"] = None if self._consecutive is None else self._consecutive.tolist()
        payload[METRICS_ROWS] = self.dir.metrics_rows
        if distributed.is_primary():
            for hook in self.save_hooks:
                hook(done, state, payload)
        self._checkpoints().save_training_state(
            self.checkpoint_dir, done, state, payload, history=history, replace=replace
        )
        self._last_save = time.monotonic()
        self._last_saved_step = done

    @property
    def last_saved_step(self) -> int | None:
        """``done`` of the newest checkpoint saved or restored by this run (None before the first)."""
        return self._last_saved_step

    @property
    def interrupted(self) -> bool:
        """A stop signal arrived (the loop should checkpoint and stop at its next boundary)."""
        return self.signals.requested

    def raise_if_interrupted(self, done: int) -> None:
        """Raises RunInterrupted when SIGINT/SIGTERM arrived (call after saving a checkpoint)."""
        if self.signals.requested:
            name = signal.Signals(self.signals.signum).name
            where = f"checkpoint saved in {str(self.checkpoint_dir)!r}" if self.checkpoint_dir else "progress saved"
            raise RunInterrupted(
                f"{self.what} stopped by {name} after {done} {self.unit}; {where}; "
                "continue with the same command plus --resume",
                signum=self.signals.signum,
            )

    # -- the end -----------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.dir.path

    def read_metrics(self) -> list[dict[str, Any]]:
        return self.dir.read_metrics()

    def finish(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        """Writes summary.json (last: it marks the run finished) and returns the summary."""
        self.dir.write_summary(summary)
        return dict(summary)


def _has_rows(out: Path) -> bool:
    metrics = out / "metrics.jsonl"
    return metrics.exists() and metrics.stat().st_size > 0
