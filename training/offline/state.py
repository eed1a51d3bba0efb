"""The state types of offline discovery: one lifetime, the whole run, an environment group."""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
from flax import struct

from lpg.envs.base import Environment
from lpg.networks import Agent
from lpg.rollout import ActorState

__all__ = ["EnvGroup", "LifetimeState", "OfflineState"]


@struct.dataclass
class LifetimeState:
    """One agent's lifetime (batched with a leading lifetime axis).

    Attributes:
      params: agent parameters theta.
      opt_state: the agent optimiser's state.
      actor: the environments the agent acts in.
      critic_params: the meta-critic's parameters (value head used; grad only).
      critic_opt_state: the meta-critic optimiser's state.
      key: PRNG key of the lifetime.
      update_count: int32 [], agent updates done in this lifetime.
      length: int32 [], agent updates after which this lifetime restarts
        (``OfflineConfig.lifetime_updates``, or drawn per lifetime when
        ``min_lifetime_updates`` is set; grad only).
      lr: float32 [], the lifetime's agent learning rate.
      hyper: the lifetime's per-lifetime hyper-parameters of the objective
        (``Objective.lifetime_hypers``), name -> float32 [].
    """

    params: Any
    opt_state: Any
    actor: ActorState
    critic_params: Any
    critic_opt_state: Any
    key: chex.PRNGKey
    update_count: chex.Array
    length: chex.Array
    lr: chex.Array
    hyper: dict[str, chex.Array]


@struct.dataclass
class OfflineState:
    """Everything that changes during offline discovery.

    Attributes:
      eta: the objective's meta-parameters (for ES: the search mean).
      meta_opt_state: meta-Adam state (grad; None for es).
      lifetimes: per environment group, a LifetimeState batched [L_g] (grad; () for es).
      es_state: the evosax state (es; None for grad).
      key: PRNG key.
      step: int32 [], meta-steps done.
    """

    eta: Any
    meta_opt_state: Any
    lifetimes: tuple
    es_state: Any
    key: chex.PRNGKey
    step: chex.Array


@dataclasses.dataclass(frozen=True, eq=False)
class EnvGroup:
    """One environment of the set with its agent and meta-critic networks.

    Attributes:
      name: the environment's name (metrics are keyed by it).
      env: the environment.
      agent: the agent network, with the heads the objective declares.
      critic: the meta-critic network (policy and value heads; the value is used).
      size: lifetimes (grad) or antithetic pairs (es) of this environment.
      offset: index of its first lifetime / pair.
      reference: (random return, A2C return) for ES fitness normalisation.
    """

    name: str
    env: Environment
    agent: Agent
    critic: Agent
    size: int
    offset: int
    reference: tuple[float, float] | None = None
