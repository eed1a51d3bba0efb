"""The one Objective interface, shared by hand-designed and learned objectives.

An objective turns a rollout and the agent's outputs on it into the agent's
loss. Its meta-parameters ``eta`` are an explicit pytree (empty for
hand-designed objectives), so the same trainer, meta-gradient engine, ES loop,
checkpointing and evaluation serve every objective without knowing which one
it got (the design of DeepMind's disco_rl ``update_rules``).

Contract of ``agent_loss(eta, rollout, agent_out)``:

* ``rollout`` is a ``lpg.types.Rollout`` shaped ``[T+1, B, ...]``;
* ``agent_out`` is the *current* agent's ``AgentOutput`` on
  ``rollout.observation`` (``[T+1, B, ...]``), differentiable in the agent's
  parameters;
* the returned scalar loss is differentiable in the agent's parameters (the
  inner update) and in ``eta`` (meta-gradients through that update);
* whatever the objective feeds into a meta-network from the agent's outputs is
  stop-gradiented with respect to the agent's parameters where the method says
  so (LPG, FRODO), so the agent only follows the targets it is given.

Optional hooks: ``meta_regulariser`` adds method-specific terms to the outer
(meta) loss (FRODO's consistency loss, LPG's entropy and L2 terms), and
``describe_eta`` turns ``eta`` into named scalars for logging meta-parameter
trajectories.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import chex
import jax.numpy as jnp

from lpg.types import AgentOutput, Rollout
from lpg.validation import NON_NEGATIVE, UNIT, Range, check_ranges

Eta = Any  # a pytree of arrays
Metrics = dict[str, chex.Array]


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """Base of the objectives' frozen config dataclasses: every instance is range-checked.

    Subclasses set ``OBJECTIVE`` (the registered name, for messages) and
    ``RANGES`` (field name -> ``lpg.validation.Range``); building a config with
    a value outside its range (directly, by ``dataclasses.replace`` or by
    ``objectives.make(name, **overrides)``) raises ``InvalidConfigError``, e.g.
    ``objective a2c: gamma must be in [0, 1], got 2.0``. Checks that relate
    several fields extend ``__post_init__``.
    """

    OBJECTIVE: ClassVar[str] = ""
    RANGES: ClassVar[Mapping[str, Range]] = {}

    def __post_init__(self) -> None:
        check_ranges(f"objective {self.OBJECTIVE}", self, self.RANGES)


# The hyper-parameters shared by the actor-critic objectives (A2C, V-trace, MGRL, FRODO).
ACTOR_CRITIC_RANGES: Mapping[str, Range] = {
    "gamma": UNIT,
    "td_lambda": UNIT,
    "value_weight": NON_NEGATIVE,
    "entropy_weight": NON_NEGATIVE,
    "reward_clip": NON_NEGATIVE,
}


@dataclasses.dataclass(frozen=True)
class AgentHeads:
    """The heads an objective needs the agent network to have.

    Attributes:
      y_size: size m of the categorical prediction vector y(s) (LPG); 0 = none.
    """

    y_size: int = 0


class Objective(abc.ABC):
    """Base class of every objective.

    Subclasses set ``name`` and ``description`` (class attributes), hold their
    frozen config in ``self.config`` and implement ``init`` and ``agent_loss``.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    config: Any

    @property
    def heads(self) -> AgentHeads:
        """Heads the agent must provide (default: policy and value only)."""
        return AgentHeads()

    @property
    def is_learned(self) -> bool:
        """True when ``eta`` has meta-parameters to learn."""
        return False

    @abc.abstractmethod
    def init(self, key: chex.PRNGKey) -> Eta:
        """Initial meta-parameters (``{}`` for hand-designed objectives)."""

    @abc.abstractmethod
    def agent_loss(self, eta: Eta, rollout: Rollout, agent_out: AgentOutput) -> tuple[chex.Array, Metrics]:
        """The agent's loss (scalar) and metrics; see the module docstring."""

    def meta_regulariser(self, eta: Eta, rollout: Rollout, agent_out: AgentOutput) -> tuple[chex.Array, Metrics]:
        """Extra terms of the meta-objective (default: none)."""
        del eta, rollout, agent_out
        return jnp.zeros((), jnp.float32), {}

    def describe_eta(self, eta: Eta) -> Metrics:
        """Named scalar views of ``eta`` for logging (default: none)."""
        del eta
        return {}

    def config_dict(self) -> dict[str, Any]:
        """The objective's configuration as plain JSON-able values."""
        return dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else {}


class HandDesignedObjective(Objective):
    """An objective with fixed hyper-parameters (A2C, V-trace): ``eta`` is empty."""

    def __init__(self, config: Any):
        self.config = config

    def init(self, key: chex.PRNGKey) -> Eta:
        del key
        return {}
