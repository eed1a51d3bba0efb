"""``lpg plot RUN [RUN ...]``: one logged quantity of several runs on one figure (and in one CSV)."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from pathlib import Path
from typing import Annotated

import tyro

from lpg.errors import InvalidConfigError
from lpg.run_io import check_output_file, plot_lines, read_metrics, write_text_atomic

__all__ = ["PlotCommand", "PlotOptions", "read_rows", "run_curves"]


@dataclasses.dataclass(frozen=True)
class PlotOptions:
    """What ``lpg plot`` needs (the command is this dataclass; Python users may build it too)."""

    runs: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run folders holding a metrics.jsonl (lpg train, lpg discover online/offline, lpg evaluate's Atari agents in OUT/agents/GAME-seedN), or a curve.csv (the records in results/, whose x is frames)."""
    y: str = "episode_return"
    """The logged quantity to plot (Atari: score_last20; discovery: eta_distance, entropy, ...)."""
    x: str = "step"
    """The quantity on the x axis (step: environment steps, emulator frames on Atari, meta-steps offline; wall_s: run time)."""
    labels: tuple[str, ...] = ()
    """One legend label per run (default: each run's folder name)."""
    title: str = ""
    """Figure title (default: the y quantity)."""
    out: str = "runs/plot.png"
    """The figure (PNG); its folder is created."""
    csv: str | None = None
    """Also write the plotted points to this CSV file (columns run, label and the x and y quantities)."""


def read_rows(run: str) -> list[dict[str, object]]:
    """The rows of ``run/metrics.jsonl``, or else of ``run/curve.csv`` (numbers where a cell parses as one)."""
    rows = read_metrics(run)
    path = Path(run) / "curve.csv"
    if rows or not path.is_file():
        return rows
    with path.open(newline="") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _parse(cell: str) -> object:
    try:
        return float(cell)
    except (TypeError, ValueError):
        return cell


def run_curves(runs: tuple[str, ...], x: str, y: str) -> list[list[tuple[float, float]]]:
    """The ``(x, y)`` points of each run's rows (``read_rows``) that log both as finite numbers.

    Raises:
      InvalidConfigError: a run has no metrics.jsonl or curve.csv, or none of its rows logs ``x`` and ``y``.
    """
    curves = []
    for run in runs:
        rows = read_rows(run)
        if not rows:
            raise InvalidConfigError(
                f"{run!r} holds no metrics.jsonl (nor a curve.csv); give run folders of lpg train, discover or "
                "evaluate, or a record of results/"
            )
        points = [(float(r[x]), float(r[y])) for r in rows if _number(r.get(x)) and _number(r.get(y))]
        if not points:
            logged = sorted({k for r in rows for k, v in r.items() if _number(v)})
            raise InvalidConfigError(f"{run!r} logs no {x!r} with {y!r}; it logs: {', '.join(logged)}")
        curves.append(points)
    return curves


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class PlotCommand(PlotOptions):
    """Plot one logged quantity of several runs against steps (or another logged quantity) on one figure.

    Reads each RUN/metrics.jsonl (or RUN/curve.csv), draws one line per run into
    --out (PNG), optionally writes the points to --csv, and prints per run the
    number of points, the last x and y, and the highest y. Any run folder of
    this project works: lpg train, lpg discover online/offline, lpg evaluate's
    Atari agents, and the records in results/ (plot those with --x frames).
    """

    def run(self) -> int:
        if not self.runs:
            raise InvalidConfigError("give at least one RUN folder")
        if self.labels and len(self.labels) != len(self.runs):
            raise InvalidConfigError(
                f"--labels gives {len(self.labels)} label(s) for {len(self.runs)} RUN folder(s); give one per RUN"
            )
        labels = self.labels or tuple(Path(run).name or run for run in self.runs)
        if self.csv and Path(self.csv).resolve() == Path(self.out).resolve():
            raise InvalidConfigError("--csv and --out name the same file")
        curves = run_curves(self.runs, self.x, self.y)
        figure = check_output_file(self.out)
        table = check_output_file(self.csv) if self.csv else None
        plot_lines(
            figure,
            [(label, [p[0] for p in points], [p[1] for p in points]) for label, points in zip(labels, curves)],
            title=self.title or self.y,
            xlabel=self.x,
            ylabel=self.y,
        )
        if table is not None:
            _write_csv(table, (self.x, self.y), self.runs, labels, curves)
        width = max(len(label) for label in labels)
        for label, points in zip(labels, curves):
            last_x, last_y = points[-1]
            print(f"{label:<{width}}  {len(points):>6} points  last {self.x} {last_x:g}: {self.y} {last_y:.4g}"
                  f"  (highest {max(p[1] for p in points):.4g})")  # fmt: skip
        print(f"figure: {figure}" + (f"; points: {table}" if table is not None else ""))
        return 0


def _write_csv(path: Path, keys: tuple[str, str], runs: tuple[str, ...], labels: tuple[str, ...], curves: list) -> None:
    """Columns run, label, X, Y; written atomically (``write_text_atomic``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", "label", *keys])
    for run, label, points in zip(runs, labels, curves):
        writer.writerows([run, label, repr(px), repr(py)] for px, py in points)
    write_text_atomic(path, buffer.getvalue())
