"""Plain actor-critic training with any objective, compiled end to end.

One update = one rollout of ``unroll_length`` steps in ``num_envs``
environments, then one optimiser step on ``objective.agent_loss``. The
objective's ``eta`` is an argument of every function, so the same code trains
an agent with A2C, V-trace, or a frozen learned objective, and the
meta-gradient trainers differentiate ``agent_update`` with respect to ``eta``.

``run`` is ``jit(lax.scan(update))`` (a host loop over the jitted update for
conv nets on CPU, see ``host_loop``); several seeds are a ``vmap`` of ``init``
and ``run`` over keys (``init_seeds`` / ``run_seeds``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from lpg.envs.base import Environment
from lpg.networks import Agent
from lpg.optim import OptimizerConfig, make_optimizer
from lpg.rollout import ActorState, episode_stats, reset_actors, unroll
from lpg.types import Rollout
from lpg.validation import POSITIVE_COUNT, Config
from objectives.base import Eta, Metrics, Objective
from training.guards import SKIP_KEY, guarded_apply


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """Batch shape and optimiser of plain actor-critic training.

    Attributes:
      num_envs: environments acted in in parallel (batch size B).
      unroll_length: steps per rollout (T); one update per rollout.
      optimizer: the agent's optimiser.
    """

    WHAT = "training"
    RANGES = {"num_envs": POSITIVE_COUNT, "unroll_length": POSITIVE_COUNT}

    num_envs: int = 32
    unroll_length: int = 20
    optimizer: OptimizerConfig = OptimizerConfig()

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.unroll_length

    def validate(self) -> None:
        """Kept for callers of the earlier API: a built config is already valid."""


@struct.dataclass
class LearnerState:
    """Everything that changes while one agent learns.

    Attributes:
      params: agent network parameters theta.
      opt_state: the agent optimiser's state.
      actor: the environments being acted in.
      key: PRNG key for acting.
      update_count: int32 [], updates done so far.
    """

    params: Any
    opt_state: Any
    actor: ActorState
    key: chex.PRNGKey
    update_count: chex.Array


@dataclasses.dataclass(frozen=True, eq=False)
class ActorCriticTrainer:
    """Structure of one agent's training: environment, agent, objective, optimiser.

    Hashed by identity, so its methods can be jitted with ``self`` static.
    """

    env: Environment
    agent: Agent
    objective: Objective
    config: TrainConfig
    optimizer: optax.GradientTransformation

    @classmethod
    def create(
        cls, env: Environment, agent: Agent, objective: Objective, config: TrainConfig, total_updates: int | None = None
    ) -> ActorCriticTrainer:
        return cls(env, agent, objective, config, make_optimizer(config.optimizer, total_updates))

    def init(self, key: chex.PRNGKey) -> LearnerState:
        """A fresh agent (parameters, optimiser state, environments)."""
        params_key, env_key, key = jax.random.split(key, 3)
        params = self.agent.init(params_key)
        actor = reset_actors(self.env, env_key, self.config.num_envs)
        return LearnerState(params, self.optimizer.init(params), actor, key, jnp.zeros([], jnp.int32))

    def loss(self, params: Any, eta: Eta, rollout: Rollout) -> tuple[chex.Array, Metrics]:
        agent_out = self.agent.apply(params, rollout.observation)
        return self.objective.agent_loss(eta, rollout, agent_out)

    def agent_update(self, params: Any, opt_state: Any, eta: Eta, rollout: Rollout) -> tuple[Any, Any, Metrics]:
        """theta' = theta + optimiser(grad_theta L(theta, eta, rollout)); differentiable in eta.

        A non-finite gradient skips the update (theta and the optimiser state
        are kept; metric ``nonfinite_skipped`` = 1, see training/longrun.py).
        """
        grads, metrics = jax.grad(self.loss, has_aux=True)(params, eta, rollout)
        updates, new_opt_state = self.optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        (params, opt_state), skipped = guarded_apply(grads, (new_params, new_opt_state), (params, opt_state))
        metrics = dict(metrics, grad_norm=optax.tree.norm(grads), **{SKIP_KEY: skipped})
        return params, opt_state, metrics

    def act(self, state: LearnerState) -> tuple[LearnerState, Rollout]:
        """One rollout with the current parameters."""
        key, unroll_key = jax.random.split(state.key)
        actor, rollout = unroll(
            self.env, self.agent.apply, state.params, state.actor, unroll_key, self.config.unroll_length
        )
        return state.replace(actor=actor, key=key), rollout

    def update(self, state: LearnerState, eta: Eta) -> tuple[LearnerState, Metrics]:
        """One rollout and one agent update."""
        state, rollout = self.act(state)
        params, opt_state, metrics = self.agent_update(state.params, state.opt_state, eta, rollout)
        metrics = dict(metrics, **episode_stats(rollout))
        return state.replace(params=params, opt_state=opt_state, update_count=state.update_count + 1), metrics

    def run(self, state: LearnerState, eta: Eta, num_updates: int) -> tuple[LearnerState, Metrics]:
        """``num_updates`` updates; metrics stacked [num_updates].

        One compiled ``lax.scan``, or a host loop over the jitted update when
        the agent's gradient is slow inside a rolled scan (conv nets on CPU).
        """
        if self.agent.slow_rolled_scan:
            return host_loop(lambda s: self.jit_update(s, eta), state, num_updates, axis=0)
        return self._run_scan(state, eta, num_updates)

    @functools.partial(jax.jit, static_argnums=(0,))
    def jit_update(self, state: LearnerState, eta: Eta) -> tuple[LearnerState, Metrics]:
        return self.update(state, eta)

    @functools.partial(jax.jit, static_argnums=(0, 3))
    def _run_scan(self, state: LearnerState, eta: Eta, num_updates: int) -> tuple[LearnerState, Metrics]:
        return jax.lax.scan(lambda s, _: self.update(s, eta), state, None, length=num_updates)

    @functools.partial(jax.jit, static_argnums=(0,))
    def init_seeds(self, keys: chex.PRNGKey) -> LearnerState:
        """Fresh agents for a batch of keys [S]: a LearnerState with a leading seed axis."""
        return jax.vmap(self.init)(keys)

    def run_seeds(self, states: LearnerState, eta: Eta, num_updates: int) -> tuple[LearnerState, Metrics]:
        """``run`` for every seed under ``vmap`` (same eta); metrics [S, num_updates]."""
        if self.agent.slow_rolled_scan:
            return host_loop(lambda s: self._jit_update_seeds(s, eta), states, num_updates, axis=1)
        return self._run_seeds_scan(states, eta, num_updates)

    @functools.partial(jax.jit, static_argnums=(0,))
    def _jit_update_seeds(self, states: LearnerState, eta: Eta) -> tuple[LearnerState, Metrics]:
        return jax.vmap(lambda s: self.update(s, eta))(states)

    @functools.partial(jax.jit, static_argnums=(0, 3))
    def _run_seeds_scan(self, states: LearnerState, eta: Eta, num_updates: int) -> tuple[LearnerState, Metrics]:
        return jax.vmap(lambda s: jax.lax.scan(lambda c, _: self.update(c, eta), s, None, length=num_updates))(states)


def host_loop(step: Callable[[Any], tuple[Any, Metrics]], state: Any, length: int, axis: int) -> tuple[Any, Metrics]:
    """Applies a jitted ``step`` ``length`` times from Python; metrics stacked along ``axis``.

    The replacement for ``lax.scan`` where a rolled scan is slow (conv-net
    gradients on CPU); same results, one dispatch per step.
    """
    collected = []
    for _ in range(length):
        state, metrics = step(state)
        collected.append(metrics)
    return state, jax.tree.map(lambda *xs: jnp.stack(xs, axis=axis), *collected)
