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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class ProgressBar:
    """Context manager: ``with ProgressBar("train catch", total=N, unit="steps") as bar: bar.update(n, "ret 0.5")``.

    A resumed run calls ``bar.resume_from(n)`` first: the bar starts at ``n``
    and the rate and ETA count only the work done in this process.
    """

    def __init__(self, description: str, total: int, unit: str = "steps", *, enabled: bool = True, plain_every_s: float = 10.0):
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
        self._progress = None
        self._task = None

    def __enter__(self) -> "ProgressBar":
        self._start = time.perf_counter()
        if self._interactive:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(f"{self.unit}"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=self._console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, rate="", status="")
        return self

    def resume_from(self, done: int) -> None:
        """Starts the bar at ``done`` (restored from a checkpoint), left out of the rate and ETA."""
        self.done = self._resumed_at = int(done)
        self._start = time.perf_counter()
        if self._progress is not None:
            self._progress.reset(self._task, completed=self.done, rate="", status="")

    def rate(self) -> float:
        """Units per second done by this process (a resumed run's restored work left out)."""
        elapsed = time.perf_counter() - self._start
        return (self.done - self._resumed_at) / elapsed if elapsed > 0 else 0.0

    def update(self, advance: int, status: str = "") -> None:
        self.done += int(advance)
        elapsed = time.perf_counter() - self._start
        rate = self.rate()
        rate_text = f"{rate:,.0f} {self.unit}/s"
        if self._progress is not None:
            self._progress.update(self._task, advance=advance, rate=rate_text, status=status)
        elif self.enabled and (time.perf_counter() - self._last_plain >= self._plain_every_s or self.done >= self.total):
            self._last_plain = time.perf_counter()
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            print(
                f"{self.description}: {self.done:,}/{self.total:,} {self.unit} ({100 * self.done / max(self.total, 1):.0f}%), "
                f"{rate_text}, elapsed {elapsed:.0f}s, ETA {eta:.0f}s {status}",
                file=sys.stderr,
                flush=True,
            )

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
