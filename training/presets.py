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
    if spec.kind == "atari":
        opt = OptimizerConfig("rmsprop", 7e-4, max_grad_norm=0.5, b2=0.99, eps=1e-5)
        return TrainPreset(TrainConfig(num_envs=8, unroll_length=20, optimizer=opt), 10_000_000)
    if spec.is_tabular:
        return TrainPreset(
            TrainConfig(num_envs=32, unroll_length=20, optimizer=OptimizerConfig("adam", 3e-2)), 2_000_000
        )
    return TrainPreset(TrainConfig(num_envs=32, unroll_length=20, optimizer=OptimizerConfig("adam", 1e-3)), 1_000_000)


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
