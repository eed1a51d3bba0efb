"""Progress display for long runs (rich), written to stderr.

Shows a bar with done/total, rate, elapsed time and ETA, plus a short status
line of the latest metrics. Disabled automatically when stderr is not a
terminal unless ``force`` is given; then a plain line is printed at most every
``plain_every_s`` seconds, so logs of batch jobs still show progress.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Column


class ProgressBar:
    """Context manager: ``with ProgressBar("train catch", total=N, unit="steps") as bar: bar.update(n, "ret 0.5")``.

    A resumed run calls ``bar.resume_from(n)`` first: the bar starts at ``n``
    and the rate and ETA count only the work done in this process. The first
    update of a run usually includes compilation, so once a second update has
    arrived the rate and ETA count only the work after the first; before that
    the plain line shows the ETA as ``?``.
    """

    def __init__(
        self, description: str, total: int, unit: str = "steps", *, enabled: bool = True, plain_every_s: float = 10.0
    ):
        self.description = description
        self.total = int(total)
        self.unit = unit
        self.done = 0
        self._resumed_at = 0
        self.enabled = enabled
        self._console = Console(stderr=True)
        self._interactive = enabled and self._console.is_terminal
        self._plain_every_s = plain_every_s
        self._last_plain = 0.0
        self._start = time.perf_counter()
        self._first_update: tuple[float, int] | None = None  # (time, done) at the first update of this process
        self._show_elapsed = True  # in the interactive line (left out in narrow terminals)
        self._progress = None
        self._task = None

    def __enter__(self) -> ProgressBar:
        self._start = time.perf_counter()
        if self._interactive:
            # One line at any terminal width: the numbers keep theirs, description, bar and status give way.
            width = self._console.width
            numbers = len(self._numbers_text(self.total, 10**7, 10**5, 10**5))
            if numbers + 10 > width:  # leave the elapsed time out
                self._show_elapsed = False
                numbers = len(self._numbers_text(self.total, 10**7, 10**5, 10**5))
            bar = 20 if width >= 120 else (10 if width >= 100 else 0)
            description = min(len(self.description), max(8, width // 4), max(8, width - numbers - bar - 3))
            status = width - description - bar - numbers - 4
            columns = [
                TextColumn(
                    "[bold]{task.description}",
                    table_column=Column(no_wrap=True, overflow="ellipsis", max_width=description),
                )
            ]
            if bar:
                columns.append(BarColumn(bar_width=bar))
            columns.append(TextColumn("{task.fields[numbers]}", table_column=Column(no_wrap=True)))
            if status >= 8:
                columns.append(
                    TextColumn(
                        "{task.fields[status]}",
                        table_column=Column(no_wrap=True, overflow="ellipsis", max_width=status),
                    )
                )
            self._progress = Progress(
                *columns,
                console=self._console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                self.description, total=self.total, numbers=self._numbers_text(0, None, 0, None), status=""
            )
        return self

    def resume_from(self, done: int) -> None:
        """Starts the bar at ``done`` (restored from a checkpoint), left out of the rate and ETA."""
        self.done = self._resumed_at = int(done)
        self._start = time.perf_counter()
        self._first_update = None
        if self._progress is not None:
            self._progress.reset(
                self._task, completed=self.done, numbers=self._numbers_text(self.done, None, 0, None), status=""
            )

    def rate(self) -> float:
        """Units per second done by this process (a resumed run's restored work left out)."""
        elapsed = time.perf_counter() - self._start
        return (self.done - self._resumed_at) / elapsed if elapsed > 0 else 0.0

    def steady_rate(self) -> float | None:
        """Units per second since this process's first update (compilation left out); None before a second one."""
        if self._first_update is None:
            return None
        since, done_then = self._first_update
        elapsed = time.perf_counter() - since
        return (self.done - done_then) / elapsed if elapsed > 0 and self.done > done_then else None

    def eta_s(self) -> float | None:
        """Seconds left at the steady rate; None while it is unknown."""
        rate = self.steady_rate()
        return (self.total - self.done) / rate if rate else None

    def update(self, advance: int, status: str = "") -> None:
        self.done += int(advance)
        now = time.perf_counter()
        if self._first_update is None:
            self._first_update = (now, self.done)
        elapsed = now - self._start
        steady = self.steady_rate()
        rate = steady if steady is not None else self.rate()  # before a second update: the rate including compilation
        if self._progress is not None:
            numbers = self._numbers_text(self.done, rate, elapsed, self.eta_s())
            self._progress.update(self._task, advance=advance, numbers=numbers, status=status)
        elif self.enabled and (now - self._last_plain >= self._plain_every_s or self.done >= self.total):
            self._last_plain = now
            eta = self.eta_s()
            print(
                f"{self.description}: {self.done:,}/{self.total:,} {self.unit} ({100 * self.done / max(self.total, 1):.0f}%), "
                f"{rate:,.0f} {self.unit}/s, elapsed {elapsed:.0f}s, ETA {'?' if eta is None else f'{eta:.0f}s'} {status}",
                file=sys.stderr,
                flush=True,
            )

    def _numbers_text(self, done: int, rate: float | None, elapsed: float, eta: float | None) -> str:
        """``1,500,000/2,000,000 steps 1,665,443 steps/s 0:00:01 ETA 0:00:01`` (``?`` for an unknown rate or ETA)."""
        rate_text = "?" if rate is None else f"{rate:,.0f}"
        elapsed_text = f"{_clock(elapsed)} " if self._show_elapsed else ""
        return f"{done:,}/{self.total:,} {self.unit} {rate_text} {self.unit}/s {elapsed_text}ETA {'?' if eta is None else _clock(eta)}"

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()


def _clock(seconds: float) -> str:
    """``h:mm:ss``."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
