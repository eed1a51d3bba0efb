"""Offline discovery by evolution strategies (evosax; GROOVE's LPG-ES).

``2 x num_lifetimes`` members in antithetic pairs; member ``j`` and ``j + P/2``
(evosax's antithetic layout) share an environment, hyper-parameters and seed.
Each member trains a fresh agent for a (short) lifetime with its ``eta``
(``fitness``: the estimate); evosax's ``tell`` moves the search distribution
(the update). Fitness is the per-environment-normalised return
``(R - R_random) / score_scale(R_a2c, R_random)``, negated because
evosax minimises, where ``R_a2c`` is plain A2C on the same lifetime budget
and ``R_random`` the uniform-random policy's return, measured once at
start-up (``training.baselines.reference_returns``): the A2C-normalised score
the evaluation reports (its denominator floored: ``training.baselines``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lpg import distributed
from lpg.rollout import episode_stats
from objectives.base import Eta, Metrics
from training.baselines import score_scale
from training.guards import SKIP_KEY, guarded_apply
from training.offline.config import es_algorithm_class
from training.offline.population import Population
from training.offline.state import EnvGroup, OfflineState

__all__ = ["ESEstimator", "es_algorithm_class", "make_es_algorithm"]


def make_es_algorithm(name: str, population_size: int, solution: Any, std: float, lr: float):
    """Builds the evosax algorithm ``name`` for ``solution`` (a pytree); returns (algorithm, params).

    ``std`` replaces evosax's ``std_init`` (default 1.0, far too large for
    network weights); algorithms that take an optax optimiser get Adam(``lr``).
    """
    cls = es_algorithm_class(name)
    accepted = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {"population_size": population_size, "solution": solution}
    if "optimizer" in accepted:
        kwargs["optimizer"] = optax.adam(lr)
    if "std_schedule" in accepted:
        kwargs["std_schedule"] = optax.constant_schedule(std)
    algorithm = cls(**kwargs)
    params = algorithm.default_params
    if hasattr(params, "std_init"):
        params = params.replace(std_init=jnp.asarray(std, jnp.float32))
    return algorithm, params


def _strong(x: Any) -> chex.Array:
    """``x`` as a strongly typed array (Python scalars get the canonical dtype)."""
    dtype = x.dtype if hasattr(x, "dtype") else jax.dtypes.canonicalize_dtype(np.asarray(x).dtype)
    return jnp.asarray(x, dtype)


@dataclasses.dataclass(frozen=True, eq=False)
class ESEstimator:
    """Evolution strategies over ``eta``; ``init(key)`` and ``step(state)`` are pure.

    Attributes:
      population: the agents, their groups (each with its (random, A2C) reference returns) and updates.
      es: the evosax algorithm (population ``2 x num_lifetimes``).
      es_params: its parameters (``std_init`` set to ``config.es_std``).
    """

    population: Population
    es: Any
    es_params: Any

    @classmethod
    def create(cls, population: Population) -> ESEstimator:
        c = population.config
        solution = population.objective.init(jax.random.PRNGKey(0))
        es, es_params = make_es_algorithm(c.es_algorithm, 2 * c.num_lifetimes, solution, c.es_std, c.es_lr)
        return cls(population, es, es_params)

    @property
    def objective(self):
        return self.population.objective

    @property
    def config(self):
        return self.population.config

    @property
    def groups(self) -> tuple[EnvGroup, ...]:
        return self.population.groups

    @property
    def agent_steps_per_meta_step(self) -> int:
        """Environment steps of one generation: every member's whole lifetime."""
        c = self.config
        return 2 * c.num_lifetimes * c.lifetime_updates * c.num_envs * c.unroll_length

    # -- state -----------------------------------------------------------------
    def init(self, key: chex.PRNGKey) -> OfflineState:
        """A random objective as the search mean."""
        k_eta, _, k_es, key = jax.random.split(key, 4)
        eta = self.objective.init(k_eta)
        es_state = self.es.init(k_es, eta, self.es_params)
        # evosax keeps Python scalars (generation counter, best fitness) in its state;
        # make every leaf a strongly typed array so the jitted step never re-traces.
        es_state = jax.tree.map(_strong, es_state)
        return OfflineState(eta, None, (), es_state, key, jnp.zeros([], jnp.int32))

    @functools.cached_property
    def jit_init(self) -> Callable[[chex.PRNGKey], OfflineState]:
        return jax.jit(self.init)

    @functools.cached_property
    def jit_step(self) -> Callable[[OfflineState], tuple[OfflineState, Metrics]]:
        return jax.jit(self.step)

    # -- estimate ----------------------------------------------------------------
    def member_lifetime(self, group: EnvGroup, eta: Eta, key: chex.PRNGKey) -> tuple[chex.Array, chex.Array]:
        """Trains a fresh agent for ``lifetime_updates`` updates with ``eta``.

        Returns (mean episode return over the last ``es_fitness_fraction`` of
        the lifetime (NaN if none ended), episodes counted).
        """
        c, pop = self.config, self.population
        life = pop.init_lifetime(group, key)

        def body(carry, _):
            params, opt_state, actor, k = carry
            k, k_act = jax.random.split(k)
            actor, rollout = pop.act(group, params, actor, k_act)
            params, opt_state, _ = pop.agent_update(group, params, opt_state, eta, rollout, life.lr, life.hyper)
            return (params, opt_state, actor, k), episode_stats(rollout)

        carry = (life.params, life.opt_state, life.actor, life.key)
        _, stats = jax.lax.scan(body, carry, None, length=c.lifetime_updates)
        start = min(math.floor((1.0 - c.es_fitness_fraction) * c.lifetime_updates), c.lifetime_updates - 1)
        total = jnp.sum(stats["episode_return_sum"][start:])
        count = jnp.sum(stats["episode_count"][start:])
        return jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan), count

    def fitness(self, population: Eta, key: chex.PRNGKey) -> tuple[chex.Array, Metrics]:
        """The normalised score of every member [2 x num_lifetimes] (higher is better), and per-env metrics."""
        half = self.config.num_lifetimes
        pair_keys = jax.random.split(key, half)
        normalised = jnp.zeros((2 * half,), jnp.float32)
        metrics: dict[str, chex.Array] = {}
        for group in self.groups:
            pairs = np.arange(group.offset, group.offset + group.size)
            members = np.concatenate([pairs, pairs + half])  # evosax antithetic layout: j and j + P/2
            etas = jax.tree.map(lambda x, m=members: x[m], population)
            keys = pair_keys[np.concatenate([pairs, pairs])]  # a pair shares task instance and seed
            etas, keys = distributed.constrain_leading((etas, keys), 2 * group.size)  # members over devices
            returns, counts = jax.vmap(functools.partial(self.member_lifetime, group))(etas, keys)
            random_return, a2c_return = group.reference
            scale = score_scale(a2c_return, random_return)
            # No finished episode scores 0; a non-finite return (diverged agent) stays non-finite and skips the generation.
            score = jnp.where(counts == 0, 0.0, (returns - random_return) / scale)
            normalised = normalised.at[members].set(score)
            metrics[f"return/{group.name}"] = jnp.nanmean(returns)
            metrics[f"score/{group.name}"] = jnp.mean(score)
        return normalised, metrics

    # -- the step ------------------------------------------------------------------
    def step(self, state: OfflineState) -> tuple[OfflineState, Metrics]:
        """One generation: ask, score every member (``fitness``), tell."""
        key, k_ask, k_eval, k_tell = jax.random.split(state.key, 4)
        population, es_state = self.es.ask(k_ask, state.es_state, self.es_params)
        normalised, metrics = self.fitness(population, k_eval)
        fitness = -normalised  # evosax minimises
        es_state, _ = self.es.tell(k_tell, population, fitness, es_state, self.es_params)
        # evosax returns some leaves weakly typed (std); keep the state's types fixed (no re-trace).
        es_state = jax.tree.map(lambda new, old: jnp.asarray(new, old.dtype), es_state, state.es_state)
        # A non-finite fitness skips the generation (search state kept).
        es_state, skipped = guarded_apply(fitness, es_state, state.es_state)
        eta = self.es.get_mean(es_state)
        metrics[SKIP_KEY] = skipped
        metrics.update(
            fitness_mean=jnp.mean(normalised),
            fitness_max=jnp.max(normalised),
            fitness_min=jnp.min(normalised),
            meta_loss=-jnp.mean(normalised),
        )
        metrics.update(self.objective.describe_eta(eta))
        return state.replace(eta=eta, es_state=es_state, key=key, step=state.step + 1), metrics
