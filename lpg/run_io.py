"""Output folders of runs: config, metrics (JSONL + TensorBoard), summary, plots.

Every command that runs something writes into one ``--out`` folder:

* ``config.json``: the full configuration of the run;
* ``metrics.jsonl``: one JSON object per logged point;
* ``events.out.tfevents.*``: the same scalars for TensorBoard;
* ``summary.json``: the final numbers (written last, atomically);
* ``*.png``: plots.

``RunDir.prepare`` checks the folder *before* anything runs: an unwritable
folder, or one that already holds a different run, is a ``OutputDirError`` and
nothing is written. Logging stays outside jit: trainers return metric pytrees
and the host writes them here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lpg.errors import OutputDirError


def to_jsonable(value: Any) -> Any:
    """Converts dataclasses, numpy/jax scalars and arrays, tuples and paths to JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        array = np.asarray(value)
        return to_jsonable(array.tolist()) if array.ndim else to_jsonable(array.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    return value


def write_text_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to a temporary file in the same folder, then renames it into place.

    An interrupted write leaves the old file (or none), never a half-written one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """Writes JSON to a temporary file in the same folder, then renames it into place."""
    write_text_atomic(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


def check_output_file(out: str | os.PathLike) -> Path:
    """Validates a single output file (``lpg bench ... --out FILE``) *before* a long measurement.

    Creates missing parent folders (removed again if the check fails) and
    probes that a file can be written there; the result is then written with
    ``write_json_atomic``, so an interrupted run leaves no half-written file.

    Raises:
      OutputDirError: ``out`` is a folder, or its folder cannot be created or written.
    """
    path = Path(out)
    if path.is_dir():
        raise OutputDirError(f"--out {str(path)!r} is a folder; give a file name such as {str(path / 'bench.json')!r}")
    try:
        make_writable_folder(path.parent)
    except OSError as e:
        raise OutputDirError(f"cannot write {str(path)!r}: {e.strerror or e}; choose a writable --out") from None
    return path


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON trees differ (keys only in one included), e.g. ``['options.seed']``.

    Names what makes an output folder "a different run", so a user resuming
    with a changed flag sees which one.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        paths = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                paths.append(where)
            else:
                paths.extend(config_differences(old[key], new[key], where))
        return paths
    return [] if old == new else [prefix or "(root)"]


def finished_run(
    out: str | os.PathLike | None,
    config: Any,
    *,
    resume: bool,
    matches: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any] | None:
    """The summary of run ``config`` when ``out`` already holds it finished; checked before anything runs.

    A run is finished when its ``config.json`` equals ``config`` and its
    ``summary.json`` (written last) exists and, where given, ``matches(summary)``
    (e.g. the same number of meta-steps, for runs that ``--resume`` can extend).
    With ``resume`` the stored summary is returned and a note goes to stderr,
    so the caller returns it instead of training again (its numbers, wall time
    and files stay as they were). Without ``resume`` a finished run is an
    ``OutputDirError``: running it again would only repeat it into the same files.

    Returns None when ``out`` holds no finished run of ``config``.
    """
    if out is None:
        return None
    path = Path(out)
    try:
        same = json.loads((path / "config.json").read_text()) == to_jsonable(config)
        summary = json.loads((path / "summary.json").read_text()) if same else None
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or (matches is not None and not matches(summary)):
        return None
    if not resume:
        raise OutputDirError(
            f"output folder {str(path)!r} already holds this run, finished; add --resume to show its results again, or choose a new --out"
        )
    print(
        f"lpg: {str(path)!r} already holds this run, finished; nothing to do (its files are kept as they were)",
        file=sys.stderr,
    )
    return summary


def read_metrics(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of ``folder/metrics.jsonl`` (none when the file does not exist)."""
    path = Path(folder) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class RunDir:
    """One run's output folder. Create with ``RunDir.prepare(out, config)``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._tb = None
        self._metrics_file = None
        self.metrics_rows = len(self.read_metrics())  # rows in metrics.jsonl (a resumed run's included)

    @classmethod
    def prepare(cls, out: str | os.PathLike, config: Any, *, allow_existing_same: bool = True) -> RunDir:
        """Validates ``out`` and writes ``config.json``.

        ``allow_existing_same=False`` (commands without ``--resume``) also refuses
        a folder that holds this same run's results (``metrics.jsonl`` or
        ``summary.json``): running again would append to them.

        Raises:
          OutputDirError: ``out`` is a file, cannot be created or written, or
            holds a different run (its ``config.json`` differs from ``config``).
        """
        path = Path(out)
        config_json = to_jsonable(config)
        if path.exists() and not path.is_dir():
            raise OutputDirError(f"output folder {str(path)!r} is a file; choose a new --out")
        existing = path / "config.json"
        if existing.exists():
            try:
                previous = json.loads(existing.read_text())
            except (OSError, ValueError):
                previous = None
            if (
                previous == config_json
                and not allow_existing_same
                and any((path / f).exists() for f in ("metrics.jsonl", "summary.json"))
            ):
                raise OutputDirError(
                    f"output folder {str(path)!r} already holds the results of this run; choose a new --out or delete it"
                )
            if previous != config_json:
                differing = config_differences(previous, config_json) if isinstance(previous, dict) else []
                shown = ", ".join(differing[:4]) + (f" and {len(differing) - 4} more" if len(differing) > 4 else "")
                raise OutputDirError(
                    f"output folder {str(path)!r} already holds a different run"
                    + (f" (its config.json differs in {shown})" if shown else "")
                    + "; choose a new --out or delete it"
                )
        elif path.is_dir() and any(p for p in path.iterdir() if not p.name.startswith(".")):
            raise OutputDirError(
                f"output folder {str(path)!r} is not empty and holds no run of this framework; choose a new --out"
            )
        try:
            make_writable_folder(path)
        except OSError as e:
            raise OutputDirError(
                f"cannot write to output folder {str(path)!r}: {e.strerror or e}; choose a writable --out"
            ) from None
        run = cls(path)
        write_json_atomic(path / "config.json", config_json)
        return run

    # -- metrics ---------------------------------------------------------
    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Appends one point to metrics.jsonl and TensorBoard (scalars only there)."""
        row = {"step": int(step), **to_jsonable(dict(metrics))}
        if self._metrics_file is None:
            self._metrics_file = open(self.path / "metrics.jsonl", "a", buffering=1)  # noqa: SIM115 (kept open)
        self._metrics_file.write(json.dumps(row) + "\n")
        self.metrics_rows += 1
        self._tensorboard_row(row)

    def _tensorboard_row(self, row: Mapping[str, Any]) -> None:
        tb = self._tensorboard()
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                tb.add_scalar(key, value, int(row["step"]))

    def truncate_metrics(self, rows: int | None) -> None:
        """Keeps the first ``rows`` rows of metrics.jsonl (None: all) and rewrites the TensorBoard events from them.

        A resumed run calls it with the rows logged up to its checkpoint, so
        rows logged after the checkpoint (and before the kill) are not repeated.
        """
        self.close()
        kept = self.read_metrics()
        if rows is not None:
            kept = kept[: int(rows)]
        for events in self.path.glob("events.out.tfevents.*"):
            events.unlink()
        path = self.path / "metrics.jsonl"
        if kept or path.exists():
            write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in kept))
        self.metrics_rows = len(kept)
        for row in kept:
            self._tensorboard_row(row)

    def _tensorboard(self):
        if self._tb is None:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(logdir=str(self.path), flush_secs=10)
        return self._tb

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        path = self.path / "summary.json"
        write_json_atomic(path, summary)
        return path

    def close(self) -> None:
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)


def make_writable_folder(folder: Path) -> None:
    """Creates ``folder`` (and missing parents) and probes that a file can be written in it.

    On ``OSError`` it first removes, deepest first, exactly the folders it made
    (a folder that existed before, empty or not, is never touched), then re-raises.
    """
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError:
        for created in made:
            try:
                created.rmdir()
            except OSError:
                break
        raise


def plot_lines(
    path: Path,
    series: Iterable[tuple[str, Iterable[float], Iterable[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    hlines: Iterable[tuple[str, float]] = (),
) -> Path:
    """Saves a line plot of ``(label, x, y)`` series (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, xs, ys in series:
        ax.plot(list(xs), list(ys), label=label)
    for label, y in hlines:
        ax.axhline(y, linestyle="--", linewidth=1, color="grey", label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_bars(
    path: Path,
    labels: list[str],
    values: list[float | None],
    *,
    title: str,
    ylabel: str,
    hlines: Iterable[tuple[str, float, str]] = (),
) -> Path:
    """Saves a bar chart, one annotated bar per label (None is drawn as 0 and marked n/a).

    ``hlines``: ``(label, y, linestyle)`` reference lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(labels) + 2.0), 4.2))
    xs = list(range(len(labels)))
    heights = [0.0 if v is None else v for v in values]
    ax.bar(xs, heights, color="tab:blue")
    for x, v, h in zip(xs, values, heights):
        ax.annotate("n/a" if v is None else f"{v:.2f}", (x, h), ha="center", va="bottom", fontsize=8)
    for label, y, style in hlines:
        ax.axhline(y, linestyle=style, linewidth=1, color="grey", label=label)
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
