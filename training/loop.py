"""Host side of plain training: compiled chunks of updates, and the final-return statistic.

``train_loop`` runs ``trainer.run_seeds`` in compiled chunks so the host can
show progress, log metrics and write checkpoints between them (logging stays
outside jit). Checkpoints are only written at the boundaries of the chunk
schedule ``chunk_sizes`` fixes for a run's length, so a resumed run does the
same computations as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from lpg.eta_schedule import EtaSchedule
from training.actor_critic import ActorCriticTrainer, LearnerState
from training.guards import SKIP_KEY

__all__ = ["FINAL_FRACTION", "chunk_sizes", "final_return", "merge_history", "train_loop"]

FINAL_FRACTION = 0.1  # final_return: episodes completed in the last 10 % of steps


def chunk_sizes(total: int, target_chunks: int = 50) -> list[int]:
    """Splits ``total`` updates into at most two distinct chunk lengths (two compiles)."""
    if total <= 0:
        return []
    size = max(1, math.ceil(total / target_chunks))
    full, rest = divmod(total, size)
    return [size] * full + ([rest] if rest else [])


def final_return(metrics: dict[str, np.ndarray], fraction: float = FINAL_FRACTION) -> np.ndarray:
    """Mean undiscounted return of the episodes completed in the last ``fraction`` of updates, per seed [S].

    NaN for a seed that completed no episode in that window.
    """
    sums, counts = metrics["episode_return_sum"], metrics["episode_count"]
    num_updates = sums.shape[1]
    start = min(math.floor((1.0 - fraction) * num_updates), num_updates - 1)
    total, count = sums[:, start:].sum(axis=1), counts[:, start:].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def merge_history(previous: dict[str, np.ndarray] | None, chunks: list[dict[str, np.ndarray]], axis: int = 1):
    """Concatenates per-chunk metric arrays [S, chunk] (after ``previous``, the restored history) along ``axis``."""
    parts = ([dict(previous)] if previous else []) + list(chunks)
    if not parts:
        return {}
    return {k: np.concatenate([np.asarray(p[k]) for p in parts], axis=axis) for k in parts[0]}


def train_loop(
    trainer: ActorCriticTrainer,
    eta: Any,
    states: LearnerState,
    num_updates: int,
    *,
    on_chunk: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    run: Any = None,
    start: int = 0,
    history: dict[str, np.ndarray] | None = None,
    checkpoint_extra: Callable[[], dict[str, Any]] | None = None,
) -> tuple[LearnerState, dict[str, np.ndarray]]:
    """Runs ``num_updates`` updates of every seed; returns final states and metrics [S, U].

    ``eta`` is the objective's meta-parameters, or an ``lpg.eta_schedule.EtaSchedule``
    replayed by progress: each chunk uses ``eta.at(updates_done / num_updates)``.

    ``on_chunk(updates_done, chunk_metrics)`` is called after each chunk with
    that chunk's metrics as numpy arrays [S, chunk]. With a ``run``
    (``lpg.harness.Run``) skipped updates are counted and training checkpoints
    written between chunks; a resumed run passes the restored ``start``
    (updates done) and ``history`` (their metrics) and runs the rest of the same
    chunk schedule.
    """
    collected: list[dict[str, np.ndarray]] = []
    done = start
    schedule = chunk_sizes(num_updates)
    for size in run.remaining(schedule, start) if run is not None else schedule:
        chunk_eta = eta.at(done / num_updates) if isinstance(eta, EtaSchedule) else eta
        states, metrics = trainer.run_seeds(states, chunk_eta, size)
        metrics = jax.tree.map(np.asarray, jax.device_get(metrics))
        collected.append(metrics)
        done += size
        if run is not None:
            run.count_skips(done, metrics[SKIP_KEY])
        if on_chunk is not None:
            on_chunk(done, metrics)
        if run is not None:
            extra = checkpoint_extra() if checkpoint_extra is not None else None
            run.checkpoint(done, states, extra=extra, history=merge_history(history, collected), final=done == num_updates)
    return states, merge_history(history, collected)
