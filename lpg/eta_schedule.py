"""The meta-parameters' trajectory over an online run, recorded and replayed.

Online discovery adapts ``eta`` inside one agent's lifetime; meta-parameters
such as MGRL's discount or STACX's loss weights then form a *schedule* that
made sense next to the agent that co-adapted with them (Xu et al. 2018: gamma
and lambda move as the agent learns). An objective checkpoint written by
``lpg discover online`` keeps that schedule in its metadata (``eta_schedule``)
when ``eta`` is small enough to store as numbers (at most
``MAX_SCHEDULE_SIZE`` of them: the hyper-parameter objectives; a network's
weights are not recorded), one point per logged chunk: ``{"total_updates": U,
"points": [{"update": u, "eta": ...}]}``, the eta of the run's first seed
(the one the checkpoint saves) after ``u`` of its ``U`` updates.

``lpg evaluate --eta-schedule replay`` plays it back in a new lifetime by
progress: at the start of each chunk of its own updates, a fresh agent uses
the recorded ``eta`` whose fraction of its run (``u / U``) is the latest not
past the new lifetime's fraction. The default, ``final``, uses the last eta
throughout, as for any other objective.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from lpg.errors import CheckpointError

MAX_SCHEDULE_SIZE = 256  # numbers in eta; larger eta (networks) are not recorded


def schedulable(eta: Any) -> bool:
    """Whether an ``eta`` (one seed's) is small enough to be recorded as a schedule."""
    return sum(int(np.size(x)) for x in jax.tree.leaves(eta)) <= MAX_SCHEDULE_SIZE


def schedule_point(update: int, eta: Any) -> dict[str, Any]:
    """One JSON-able point of a schedule: ``eta`` (one seed's) after ``update`` updates."""
    return {"update": int(update), "eta": jax.tree.map(lambda x: np.asarray(x).tolist(), eta)}


def schedule_record(points: list[dict[str, Any]] | None, total_updates: int) -> dict[str, Any] | None:
    """The metadata record of a run's points (None where nothing was recorded); ``EtaSchedule.from_record`` reads it."""
    return None if points is None else {"total_updates": int(total_updates), "points": points}


@dataclasses.dataclass(frozen=True)
class EtaSchedule:
    """Meta-parameters by fraction of a lifetime: ``etas[i]`` from ``fractions[i]`` on (``fractions[0] == 0``)."""

    fractions: tuple[float, ...]
    etas: tuple[Any, ...]

    @classmethod
    def from_record(cls, record: Mapping[str, Any], template: Any) -> EtaSchedule:
        """Rebuilds a recorded schedule with the tree, shapes and dtypes of ``template`` (the checkpoint's eta)."""
        try:
            total = int(record["total_updates"])
            points = sorted(record["points"], key=lambda p: int(p["update"]))
            fractions = tuple(int(p["update"]) / total for p in points)
            etas = tuple(
                jax.tree.map(lambda t, v: np.asarray(v, np.asarray(t).dtype).reshape(np.shape(t)), template, p["eta"])
                for p in points
            )
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as error:
            raise CheckpointError(f"the checkpoint's eta_schedule is malformed ({error})") from None
        if not points or fractions[0] != 0.0 or total <= 0:
            raise CheckpointError("the checkpoint's eta_schedule is malformed (it must start at update 0)")
        return cls(fractions, etas)

    def at(self, fraction: float) -> Any:
        """The eta in force at ``fraction`` of a lifetime (the latest point not past it)."""
        return self.etas[max(0, bisect.bisect_right(self.fractions, fraction) - 1)]

    def map(self, fn: Callable[[Any], Any]) -> EtaSchedule:
        """The same schedule with ``fn`` applied to every point's eta tree."""
        return EtaSchedule(self.fractions, tuple(jax.tree.map(fn, eta) for eta in self.etas))
