"""Default training set-ups per environment (what ``lpg train ENV`` uses).

Each preset gives the batch shape, the agent optimiser and a default step
budget chosen so the default run finishes in minutes on 2 CPU cores. Values
were tuned on this project's hardware; see README for the measured returns.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lpg.envs.base import EnvSpec
from lpg.optim import OptimizerConfig
from training.actor_critic import TrainConfig


@dataclasses.dataclass(frozen=True)
class TrainPreset:
    """A default set-up: training config and default number of environment steps."""

    config: TrainConfig
    steps: int


def default_preset(spec: EnvSpec) -> TrainPreset:
    """The preset for ``spec``: by name first, then by kind of observation."""
    if spec.name == "catch":
        return TrainPreset(TrainConfig(num_envs=16, unroll_length=10, optimizer=OptimizerConfig("adam", 3e-3)), 100_000)
    if spec.name == "snake":
        opt = OptimizerConfig("adam", 6e-4, schedule="linear", max_grad_norm=10.0)
        return TrainPreset(TrainConfig(num_envs=32, unroll_length=20, optimizer=opt), 2_000_000)
    if spec.name.startswith("chain/"):
        steps = 1_000_000 if "long" in spec.name else 500_000
        return TrainPreset(TrainConfig(num_envs=32, unroll_length=20, optimizer=OptimizerConfig("adam", 3e-2)), steps)
    if spec.name == "mrp":
        return TrainPreset(TrainConfig(num_envs=32, unroll_length=10, optimizer=OptimizerConfig("adam", 1e-2)), 100_000)
    if spec.kind == "gymnax":
        return _gymnax_preset(spec.name.removeprefix("gymnax/"))
    if spec.kind == "atari":
        opt = OptimizerConfig("rmsprop", 7e-4, max_grad_norm=0.5, b2=0.99, eps=1e-5)
        return TrainPreset(TrainConfig(num_envs=8, unroll_length=20, optimizer=opt), 10_000_000)
    if spec.is_tabular:
        return TrainPreset(
            TrainConfig(num_envs=32, unroll_length=20, optimizer=OptimizerConfig("adam", 3e-2)), 2_000_000
        )
    return TrainPreset(TrainConfig(num_envs=32, unroll_length=20, optimizer=OptimizerConfig("adam", 1e-3)), 1_000_000)


def _gymnax_preset(game: str) -> TrainPreset:
    """A2C baselines for the gymnax games (``lpg.envs.gymnax_suite``); README lists the measured returns.

    MinAtar: 64 environments x T = 20 with the MinAtar conv torso, Adam with
    the step size annealed linearly to 0 and gradients clipped at norm 0.5
    (Breakout, 1M steps: 5.25; 16 environments 5.47 but 1.8x the wall time;
    Adam 5e-4: 4.31); classic control and bsuite: small batches that finish
    in about a minute on 2 CPU cores.
    """
    if game.endswith("-MinAtar"):
        opt = OptimizerConfig("adam", 1e-3, schedule="linear", max_grad_norm=0.5)
        return TrainPreset(TrainConfig(num_envs=64, unroll_length=20, optimizer=opt), 3_000_000)
    if game == "Catch-bsuite":
        return TrainPreset(TrainConfig(num_envs=16, unroll_length=10, optimizer=OptimizerConfig("adam", 3e-3)), 100_000)
    if game.endswith("-bsuite"):
        return TrainPreset(TrainConfig(num_envs=32, unroll_length=20, optimizer=OptimizerConfig("adam", 1e-3)), 300_000)
    # CartPole-v1, Acrobot-v1, MountainCar-v0. CartPole, 3 seeds: 493 with 16 x 10 against 146 with 32 x 20
    # (more updates in the same steps); Adam 3e-3 collapsed to 25. Acrobot's policy collapses to one action
    # (entropy 0, return -500) at 1e-3 and 1e-4; 3e-4: -163 (3 seeds: -231, -96, -163).
    opt = OptimizerConfig("adam", 3e-4 if game == "Acrobot-v1" else 1e-3, max_grad_norm=0.5)
    return TrainPreset(TrainConfig(num_envs=16, unroll_length=10, optimizer=opt), 500_000)


AGENT_SETUP_FIELDS = ("num_envs", "unroll_length", "learning_rate", "optimizer")  # the flags override_agent_setup takes


def override_agent_setup(
    config: Any,
    *,
    num_envs: int | None = None,
    unroll_length: int | None = None,
    learning_rate: float | None = None,
    optimizer: str | None = None,
) -> Any:
    """``config`` with the batch shape and optimiser the user gave (None keeps a field); validated.

    ``config`` is a ``TrainConfig`` (toy environments) or a
    ``training.atari.AtariRunConfig``; ``lpg train``, ``lpg discover online`` and
    ``lpg evaluate`` apply their ``--num-envs``, ``--unroll-length``,
    ``--learning-rate`` and ``--optimizer`` through this one function.

    Raises:
      InvalidConfigError: a non-positive batch size or unroll length, or an
        invalid optimiser (unknown name, non-positive learning rate, ...).
    """
    opt = config.optimizer
    if learning_rate is not None:
        opt = dataclasses.replace(opt, learning_rate=learning_rate)
    if optimizer is not None:
        opt = dataclasses.replace(opt, name=optimizer)
    return dataclasses.replace(
        config,
        num_envs=config.num_envs if num_envs is None else num_envs,
        unroll_length=config.unroll_length if unroll_length is None else unroll_length,
        optimizer=opt,
    )


def agent_setup_flags(options: Any) -> dict[str, Any]:
    """The ``AGENT_SETUP_FIELDS`` of a command's options that the user gave (not None)."""
    return {k: getattr(options, k) for k in AGENT_SETUP_FIELDS if getattr(options, k) is not None}
