"""Several meta-steps in one compiled call, and how many the next call runs.

Every call of a jitted meta-step has a fixed cost outside the step's own
work (dispatch, fresh output buffers, the host waiting for the result before
it can log). For 32 lifetimes x 8 environments on chain/short on 2 CPU cores
that was about an eighth of the meta-step (README, "Running fast on CPU").
``multi_step`` compiles up to ``max_steps`` meta-steps in one
``lax.fori_loop`` whose trip count is an argument: every chunk length shares
one compiled program, so a run's results do not depend on how it was cut
into chunks (a resumed run repeats an uninterrupted one bit for bit).

``ChunkSizes`` picks the next chunk's length: never past the next boundary
where the host must act (an evaluation, a checkpoint, the end), and either a
fixed number or, with ``steps_per_call = 0`` (auto), as many as fit in about
``AUTO_TARGET_S`` seconds, measured on the previous calls (at most
``AUTO_MAX_STEPS``), so the progress bar and Ctrl-C stay responsive.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from objectives.base import Metrics

__all__ = ["AUTO_MAX_STEPS", "AUTO_TARGET_S", "ChunkSizes", "multi_step"]

AUTO_MAX_STEPS = 16
"""Most meta-steps one call runs when the chunk length is chosen automatically."""
AUTO_TARGET_S = 1.0
"""Seconds one call aims at when the chunk length is chosen automatically."""


def multi_step(step: Callable[[Any], tuple[Any, Metrics]], max_steps: int):
    """``jit((state, n) -> (state, metrics))``: ``n`` (<= ``max_steps``) applications of ``step``.

    ``metrics`` holds every metric of ``step`` stacked on a leading axis of
    length ``max_steps``; rows ``n`` and later are zeros. ``step`` is traced
    once: it is jitted, so the loop's body reuses the trace that gave the
    metrics' shapes (tracing a two-environment meta-step twice took 2.5 s).
    """
    step = jax.jit(step)

    def run(state, n):
        _, shapes = jax.eval_shape(step, state)
        buffers = jax.tree.map(lambda s: jnp.zeros((max_steps, *s.shape), s.dtype), shapes)

        def body(i, carry):
            state, buffers = carry
            state, metrics = step(state)
            return state, jax.tree.map(lambda b, m: b.at[i].set(m), buffers, metrics)

        return jax.lax.fori_loop(0, n, body, (state, buffers))

    return jax.jit(run)


@dataclasses.dataclass
class ChunkSizes:
    """The length of the next chunk of meta-steps.

    Attributes:
      steps_per_call: a fixed chunk length, or 0 for auto (about
        ``AUTO_TARGET_S`` seconds per call, at most ``AUTO_MAX_STEPS``).
      step_s: seconds per meta-step measured on the last call (auto only;
        the first call, which compiles, is not measured).
    """

    steps_per_call: int = 0
    step_s: float | None = None
    _calls: int = 0

    @property
    def max_steps(self) -> int:
        """The compiled program's bound on a chunk's length."""
        return self.steps_per_call or AUTO_MAX_STEPS

    def next(self, done: int, total: int, *every: int) -> int:
        """Meta-steps of the next call after ``done`` of ``total``: not past ``total`` or a multiple of any ``every``."""
        limit = min([total - done] + [e - done % e for e in every if e > 0])
        if self.steps_per_call:
            wanted = self.steps_per_call
        elif self.step_s is None:
            wanted = 1  # the first call compiles and the second is timed
        else:
            wanted = min(AUTO_MAX_STEPS, max(1, int(AUTO_TARGET_S / self.step_s)))
        return max(1, min(wanted, limit))

    def observe(self, steps: int, seconds: float) -> None:
        """Records that a call ran ``steps`` meta-steps in ``seconds`` (the first call is ignored)."""
        self._calls += 1
        if self._calls > 1:
            self.step_s = seconds / steps
