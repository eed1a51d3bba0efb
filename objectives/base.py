"""The one Objective interface, shared by hand-designed and learned objectives.

An objective turns a rollout and the agent's outputs on it into the agent's
loss. Its meta-parameters ``eta`` are an explicit pytree (empty for
hand-designed objectives), so the same trainer, meta-gradient engine, ES loop,
checkpointing and evaluation serve every objective without knowing which one
it got (the design of DeepMind's disco_rl ``update_rules``: a rule declares
the agent heads it needs, and learned and hand-made rules share one interface).

An objective is one file under ``objectives/``: a config dataclass
(``ObjectiveConfig``, with a declared range per numeric field), an
``Objective`` subclass with ``name``, ``description``, ``Config`` and
``supports``, and the ``@register`` decorator. Everything downstream (the
command line, training, online and offline discovery, checkpoints,
evaluation, the contract tests in ``tests/test_objective_contract.py``) finds
it through the registry (``objectives/__init__.py``).

Contract of ``agent_loss(eta, rollout, agent_out, hyper=None)``:

* ``rollout`` is a ``lpg.types.Rollout`` shaped ``[T+1, B, ...]``;
* ``agent_out`` is the *current* agent's ``AgentOutput`` on
  ``rollout.observation`` (``[T+1, B, ...]``), with the heads the objective
  declares (``heads``), differentiable in the agent's parameters;
* ``hyper`` maps the objective's per-lifetime hyper-parameters
  (``lifetime_hypers``, e.g. LPG's ``alpha_y``) to values, possibly traced
  (offline discovery draws one per lifetime); a missing name takes the
  config's value;
* the returned scalar loss is differentiable in the agent's parameters (the
  inner update) and in ``eta`` (meta-gradients through that update);
* whatever the objective feeds into a meta-network from the agent's outputs is
  stop-gradiented with respect to the agent's parameters where the method says
  so (LPG, FRODO), so the agent only follows the targets it is given
  (``targets`` exposes them; the contract test checks the stop-gradient).

Optional hooks: ``meta_regulariser`` adds method-specific terms to the outer
(meta) loss (FRODO's consistency loss, LPG's entropy and L2 terms),
``trains_value`` declares whether the loss trains the agent's value head
(online meta-gradients need values for their outer loss),
``meta_entropy_weight`` is the policy-entropy bonus of offline discovery's
meta-objective (LPG's beta0), ``describe_eta`` turns ``eta`` into named
scalars for logging meta-parameter trajectories, and ``check_env`` refuses
environments the objective cannot work on.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import chex
import jax.numpy as jnp

from lpg.errors import InvalidConfigError
from lpg.types import AgentHeads, AgentOutput, Head, Rollout
from lpg.validation import NON_NEGATIVE, UNIT, Config, Range, check_ranges

__all__ = [
    "ACTOR_CRITIC_RANGES",
    "DEFAULT_META_ENTROPY_WEIGHT",
    "AgentHeads",
    "Eta",
    "HandDesignedObjective",
    "Head",
    "Hyper",
    "Metrics",
    "Objective",
    "ObjectiveConfig",
    "Supports",
]

Eta = Any  # a pytree of arrays
Metrics = dict[str, chex.Array]
Hyper = Mapping[str, Any]  # per-lifetime hyper-parameter name -> value (a float or a traced scalar)

# The policy-entropy bonus of offline discovery's meta-objective, for objectives that do not set their own
# (Oh et al. 2020, eq. 2: beta0; GROOVE's tuned value).
DEFAULT_META_ENTROPY_WEIGHT = 0.05


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig(Config):
    """Base of the objectives' frozen config dataclasses: every instance is range-checked.

    Subclasses set ``OBJECTIVE`` (the registered name, for messages) and
    ``RANGES`` (field name -> ``lpg.validation.Range``); building a config with
    a value outside its range (directly, by ``dataclasses.replace`` or by
    ``objectives.make(name, **overrides)``) raises ``InvalidConfigError``, e.g.
    ``objective a2c: gamma must be in [0, 1], got 2.0``. Checks that relate
    several fields go in ``check()``.
    """

    OBJECTIVE: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check_ranges(f"objective {self.OBJECTIVE}", self, self.RANGES)
        self.check()


# The hyper-parameters shared by the actor-critic objectives (A2C, V-trace, MGRL, FRODO).
ACTOR_CRITIC_RANGES: Mapping[str, Range] = {
    "gamma": UNIT,
    "td_lambda": UNIT,
    "value_weight": NON_NEGATIVE,
    "entropy_weight": NON_NEGATIVE,
    "reward_clip": NON_NEGATIVE,
}


@dataclasses.dataclass(frozen=True)
class Supports:
    """What the commands may do with an objective.

    Attributes:
      train: ``lpg train`` trains fresh agents with it from scratch (hand-designed
        objectives; a learned one would be trained at its untrained ``eta``).
      online: ``lpg discover online`` meta-learns its ``eta`` inside one lifetime.
      offline: ``lpg discover offline`` meta-learns its ``eta`` across lifetimes.

    Every objective can be evaluated frozen from a checkpoint (``lpg evaluate``).
    """

    train: bool = False
    online: bool = False
    offline: bool = False

    def names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name)]


class Objective(abc.ABC):
    """Base class of every objective.

    Subclasses set the class attributes ``name``, ``description``, ``Config``
    (their ``ObjectiveConfig`` subclass) and ``supports``, and implement
    ``init`` and ``agent_loss``; learned ones set ``learned = True``.
    ``Objective(config)`` holds the frozen config in ``self.config``
    (``Config()`` when None).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[ObjectiveConfig]]
    supports: ClassVar[Supports] = Supports()
    learned: ClassVar[bool] = False
    trains_value: ClassVar[bool] = True
    """Whether ``agent_loss`` trains the agent's value head ``AgentOutput.value``. Online meta-gradients
    score the updated agent with lambda-return advantages; for an objective that leaves the value head
    untouched (LPG, whose agents predict ``y`` instead) they train a critic of their own for those
    advantages (``MetaGradConfig.outer_critic``). The contract test checks the declaration."""

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    # -- what the objective needs ------------------------------------------------
    @property
    def heads(self) -> AgentHeads:
        """Heads the agent must provide besides policy and value (default: none)."""
        return AgentHeads()

    @property
    def is_learned(self) -> bool:
        """True when ``eta`` has meta-parameters to learn."""
        return self.learned

    def lifetime_hypers(self) -> Mapping[str, tuple[float, float]]:
        """Per-lifetime hyper-parameters of ``agent_loss`` and their default (low, high) ranges.

        Offline discovery draws each log-uniformly per lifetime (LPG's
        ``alpha_y``, Oh et al. 2020 App. C); elsewhere the config's value is used.
        """
        return {}

    def hyper(self, hyper: Hyper | None) -> dict[str, Any]:
        """The per-lifetime hyper-parameters: ``hyper``'s values over the config's own.

        Raises:
          InvalidConfigError: ``hyper`` names one the objective does not declare.
        """
        names = self.lifetime_hypers()
        values = {name: getattr(self.config, name) for name in names}
        for name, value in dict(hyper or {}).items():
            if name not in names:
                raise InvalidConfigError(
                    f"objective {self.name!r} has no per-lifetime hyper-parameter {name!r} "
                    f"(it has: {', '.join(names) or 'none'})"
                )
            values[name] = value
        return values

    @property
    def meta_entropy_weight(self) -> float:
        """Weight of the policy-entropy bonus in offline discovery's meta-objective (LPG: beta0)."""
        return DEFAULT_META_ENTROPY_WEIGHT

    def check_env(self, spec: Any) -> None:
        """Raises ``InvalidConfigError`` when the objective cannot work on ``spec`` (an ``EnvSpec``); default: any."""
        del spec

    # -- the objective ---------------------------------------------------------
    @abc.abstractmethod
    def init(self, key: chex.PRNGKey) -> Eta:
        """Initial meta-parameters (``{}`` for hand-designed objectives)."""

    @abc.abstractmethod
    def agent_loss(
        self, eta: Eta, rollout: Rollout, agent_out: AgentOutput, hyper: Hyper | None = None
    ) -> tuple[chex.Array, Metrics]:
        """The agent's loss (scalar) and metrics; see the module docstring."""

    def targets(self, eta: Eta, rollout: Rollout, agent_out: AgentOutput) -> Any:
        """What a learned objective's meta-network produces for the agent to follow (a pytree), or None.

        Where the method stop-gradients the meta-network's inputs (LPG, FRODO),
        these targets carry no gradient to ``agent_out`` (checked by the contract test).
        """
        del eta, rollout, agent_out
        return None

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
    """An objective with fixed hyper-parameters (A2C, V-trace): ``eta`` is empty; ``lpg train`` uses it."""

    supports = Supports(train=True)

    def init(self, key: chex.PRNGKey) -> Eta:
        del key
        return {}
