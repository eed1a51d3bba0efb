"""What both offline estimators share: environment groups of agents, their updates, their lifetimes.

Heterogeneous environments (different observation and action sizes) are
handled by *grouping*: lifetimes (ES pairs) are split evenly over the
environments of the set, in order, and each environment's group is one
``vmap`` inside the same jitted step with the same ``eta``. So "each lifetime
draws an environment" is a stratified draw; task instances (random layouts,
chain lengths) are still drawn per lifetime from the environment's reset key.
Per-lifetime agent learning rates and objective hyper-parameters
(``Objective.lifetime_hypers``) are drawn log-uniformly per lifetime (Oh et
al. 2020, App. C; GROOVE).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lpg.envs.base import Environment
from lpg.errors import InvalidConfigError
from lpg.networks import NetworkConfig, make_agent
from lpg.optim import OptimizerConfig, make_optimizer
from lpg.rollout import ActorState, reset_actors, unroll
from lpg.sampling import log_uniform
from lpg.types import Rollout
from objectives.base import Eta, Objective
from training.guards import SKIP_KEY, guarded_apply
from training.offline.config import OfflineConfig
from training.offline.state import EnvGroup, LifetimeState

__all__ = ["Population", "log_uniform", "split_evenly", "tree_where"]


def split_evenly(total: int, parts: int) -> list[int]:
    """Sizes of ``parts`` consecutive groups covering ``total`` (differ by at most 1)."""
    base, rest = divmod(total, parts)
    return [base + (1 if i < rest else 0) for i in range(parts)]


def tree_where(cond: chex.Array, a: Any, b: Any) -> Any:
    """Leaf-wise ``where(cond, a, b)`` with ``cond`` [L] broadcast over each leaf's trailing axes."""

    def pick(x, y):
        c = jnp.reshape(cond, cond.shape + (1,) * (x.ndim - cond.ndim))
        return jnp.where(c, x, y)

    return jax.tree.map(pick, a, b)


@dataclasses.dataclass(frozen=True, eq=False)
class Population:
    """The agents of offline discovery: environment groups, agent optimiser, lifetimes.

    Hashed by identity, so methods can be jitted with ``self`` static.

    Attributes:
      objective: the objective being discovered.
      config: the discovery set-up.
      groups: one ``EnvGroup`` per environment of ``config.envs``.
      agent_tx: the agents' optimiser at learning rate 1 (each lifetime scales by its own).
      hyper_ranges: per-lifetime hyper-parameter ranges of the objective (log-uniform).
    """

    objective: Objective
    config: OfflineConfig
    groups: tuple[EnvGroup, ...]
    agent_tx: optax.GradientTransformation
    hyper_ranges: dict[str, tuple[float, float]]

    @classmethod
    def create(
        cls,
        objective: Objective,
        config: OfflineConfig,
        environments: dict[str, Environment],
        network: NetworkConfig = NetworkConfig(),
        group_sizes: list[int] | None = None,
        references: dict[str, tuple[float, float]] | None = None,
    ) -> Population:
        """Builds the groups (``environments[name]`` for each of ``config.envs``) and the agent optimiser."""
        if not objective.is_learned:
            raise InvalidConfigError(f"objective {objective.name!r} has no meta-parameters to discover")
        names = list(config.envs)
        sizes = group_sizes or split_evenly(config.num_lifetimes, len(names))
        groups, offset = [], 0
        for name, size in zip(names, sizes):
            env = environments[name]
            objective.check_env(env.spec)
            agent = make_agent(env.spec, network, heads=objective.heads)
            critic = make_agent(env.spec, network)
            ref = tuple(references[name]) if references is not None else None
            groups.append(EnvGroup(name, env, agent, critic, size, offset, ref))
            offset += size
        agent_opt = OptimizerConfig(config.agent_optimizer, 1.0, max_grad_norm=config.agent_max_grad_norm)
        ranges = config.lifetime_ranges(objective.lifetime_hypers())
        return cls(objective, config, tuple(groups), make_optimizer(agent_opt), ranges)

    # -- agents --------------------------------------------------------------
    def _agent_loss(self, group: EnvGroup, params: Any, eta: Eta, rollout: Rollout, hyper: dict[str, chex.Array]):
        agent_out = group.agent.apply(params, rollout.observation)
        return self.objective.agent_loss(eta, rollout, agent_out, hyper)

    def agent_update(self, group: EnvGroup, params, opt_state, eta, rollout, lr, hyper):
        """theta' = theta - lr * optimiser(grad_theta L(theta, eta)); differentiable in eta.

        A non-finite gradient skips the update (metric ``nonfinite_skipped``, ``training.guards``).
        """
        grads, metrics = jax.grad(functools.partial(self._agent_loss, group), has_aux=True)(params, eta, rollout, hyper)
        updates, new_opt_state = self.agent_tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, jax.tree.map(lambda u: lr * u, updates))
        (params, opt_state), skipped = guarded_apply(grads, (new_params, new_opt_state), (params, opt_state))
        return params, opt_state, dict(metrics, **{SKIP_KEY: skipped})

    def act(self, group: EnvGroup, params, actor: ActorState, key) -> tuple[ActorState, Rollout]:
        """One rollout of ``unroll_length`` steps (sampling is not differentiated)."""
        return unroll(group.env, group.agent.apply, jax.lax.stop_gradient(params), actor, key, self.config.unroll_length)

    def init_lifetime(self, group: EnvGroup, key: chex.PRNGKey, age: chex.Array | int = 0) -> LifetimeState:
        """A fresh agent, meta-critic, task instance, learning rate and hyper-parameters."""
        c = self.config
        k_params, k_critic, k_env, k_lr, k_hyper, key = jax.random.split(key, 6)
        params = group.agent.init(k_params)
        critic_params = group.critic.init(k_critic)
        actor = reset_actors(group.env, k_env, c.num_envs)
        hyper = {
            name: log_uniform(k_hyper if i == 0 else jax.random.fold_in(k_hyper, i), low, high)
            for i, (name, (low, high)) in enumerate(self.hyper_ranges.items())
        }
        critic_tx = optax.adam(c.critic_lr)
        length = jnp.asarray(c.lifetime_updates, jnp.int32)
        if c.min_lifetime_updates:  # its own stream (fold_in), so fixed-length runs keep their draws
            drawn = log_uniform(jax.random.fold_in(k_lr, 1), c.min_lifetime_updates, c.lifetime_updates)
            length = jnp.clip(jnp.round(drawn), c.min_lifetime_updates, c.lifetime_updates).astype(jnp.int32)
        return LifetimeState(
            params=params,
            opt_state=self.agent_tx.init(params),
            actor=actor,
            critic_params=critic_params,
            critic_opt_state=critic_tx.init(critic_params),
            key=key,
            update_count=jnp.asarray(age, jnp.int32),
            length=length,
            lr=log_uniform(k_lr, *c.lr_range),
            hyper=hyper,
        )

    def init_group(self, group: EnvGroup, key: chex.PRNGKey, staggered: bool) -> LifetimeState:
        """Fresh lifetimes of a group [L_g]; ``staggered``: ages spread over the lifetime in multiples of K."""
        c = self.config
        keys = jax.random.split(key, group.size)
        ages = np.zeros(group.size, np.int64)
        if staggered:  # so lifetime restarts are spread out
            ages = (np.arange(group.size) * c.lifetime_updates // group.size) // c.inner_updates * c.inner_updates
        return jax.vmap(functools.partial(self.init_lifetime, group))(keys, jnp.asarray(ages, jnp.int32))
