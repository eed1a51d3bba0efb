"""``lpg inspect OBJECTIVE``: what a saved (or registered) objective does to a policy on zero-reward steps."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Annotated, Any

import jax
import tyro

import objectives
from evaluation.drift import DEFAULT_ACTIONS, DEFAULT_PEAKS, DEFAULT_ROLLOUTS, entropy_drift, format_drift_table
from lpg.errors import InvalidConfigError, unknown_name_error
from lpg.validation import POSITIVE_COUNT, Config, Range

__all__ = ["InspectCommand", "InspectOptions", "load_or_make"]


@dataclasses.dataclass(frozen=True)
class InspectOptions(Config):
    """What ``lpg inspect`` needs (the command is this dataclass; Python users may build it too)."""

    objective: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="OBJECTIVE")]
    """An objective checkpoint folder (checkpoints/lpg-toy-v1, RUN/objective) or a registered objective's name (a2c; learned ones at their initialisation; a name wins over a folder of that name, ./NAME is the folder)."""
    num_actions: int = DEFAULT_ACTIONS
    """Actions of the probe's policy (Pong's minimal set: 6; MinAtar Breakout: 3)."""
    unroll_length: int = 5
    """Steps per rollout the objective reads (Atari's default T = 5; the toy and MinAtar presets use 20)."""
    peaks: tuple[float, ...] = DEFAULT_PEAKS
    """Logits of action 0 over the others' (0 = uniform policy), one table row each."""
    num_envs: int = DEFAULT_ROLLOUTS
    """Rollouts per peak (the Monte-Carlo sample)."""
    reward: float = 0.0
    """The reward of every step (0: nothing happens)."""
    seed: int = 0
    """Random seed of the sampled actions (and of a registered objective's initialisation)."""

    RANGES = {"num_actions": Range(2, integer=True), "unroll_length": POSITIVE_COUNT, "num_envs": POSITIVE_COUNT}
    FLAGS = True

    def check(self) -> None:
        if not self.peaks:
            raise InvalidConfigError("--peaks needs at least one value")
        if not all(math.isfinite(p) for p in (*self.peaks, self.reward)):
            raise InvalidConfigError("--peaks and --reward must be finite numbers")


def load_or_make(source: str, seed: int = 0) -> tuple[objectives.Objective, Any, dict[str, Any]]:
    """``(objective, eta, metadata)`` of a registered objective at ``init(seed)``, or of a checkpoint folder.

    A registered name wins over a folder of the same name (``lpg`` is also the package's folder): ``./lpg``
    names the folder.

    Raises:
      CheckpointError: ``source`` is a folder that holds no valid objective checkpoint.
      UnknownNameError: ``source`` is neither a folder nor a registered name.
    """
    if source in objectives.names():  # a name wins: `./lpg` names the folder
        objective = objectives.make(source)
        return objective, objective.init(jax.random.PRNGKey(seed)), {"objective": source}
    if Path(source).is_dir():
        return objectives.load(source)
    raise unknown_name_error(
        "objective or checkpoint folder",
        source,
        objectives.names(),
        "give a checkpoint folder or choose " + ", ".join(objectives.names()),
    )


@dataclasses.dataclass(frozen=True)
class InspectCommand(InspectOptions):
    """Probe an objective without an environment: the entropy drift it gives a policy on zero-reward steps.

    One state, a softmax policy whose action 0 has logit PEAK over the others',
    NUM_ENVS rollouts of UNROLL_LENGTH steps with every reward REWARD and no
    episode end, a fresh agent's other heads (values 0, y uniform). Prints, per
    peak, the policy's entropy, pi(a_0), the entropy's first-order change per
    unit gradient step on the logits along the objective's agent update (dH < 0:
    the objective makes the policy more deterministic where nothing happens)
    and the growth of action 0's logit over the others' (evaluation/drift.py).
    Writes nothing.
    """

    def run(self) -> int:
        objective, eta, meta = load_or_make(self.objective, self.seed)
        rows = entropy_drift(
            objective,
            eta,
            num_actions=self.num_actions,
            unroll_length=self.unroll_length,
            peaks=self.peaks,
            num_envs=self.num_envs,
            reward=self.reward,
            key=jax.random.PRNGKey(self.seed),
        )
        trained_on = meta.get("envs")
        if isinstance(trained_on, list):
            trained_on = ", ".join(map(str, trained_on))
        where = f", discovered on {trained_on}" if trained_on else ""
        print(f"{self.objective}: objective {objective.name}{where}")
        print(
            f"probe: {self.num_actions} actions, {self.num_envs} rollouts x {self.unroll_length} steps, "
            f"reward {self.reward:g} everywhere"
        )
        print(format_drift_table(rows))
        falling = [r for r in rows if r.peak != 0 and r.entropy_drift < 0]
        if falling:
            print(f"the entropy falls at {len(falling)} of {sum(r.peak != 0 for r in rows)} non-uniform peaks")
        return 0
