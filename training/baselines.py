"""Reference returns of an environment: the uniform-random policy and plain A2C.

They make returns comparable across environments: the A2C-normalised score
``(R - R_random) / score_scale(R_a2c, R_random)`` of evaluation
(``evaluation.evaluate``) and the fitness of offline discovery by ES
(``training.offline.es``). Every function takes an ``Environment`` value or a
registered name.

``score_scale`` is ``R_a2c - R_random`` floored at
``max(MIN_SCORE_SCALE, MIN_SCORE_FRACTION * |R_random|)``. Without the floor
the score's sign flips when A2C does worse than random (an objective worse
than both, ``R = -1`` with ``R_a2c = -0.5`` and ``R_random = -0.038``, would
score ``(-1 + 0.038) / (-0.5 + 0.038) = 2.08``) and blows up when A2C barely
beats random; with it the score is increasing in ``R`` and bounded by
``|R - R_random| / floor`` (the example scores -9.62). ``a2c_beats_random``
says whether A2C cleared the floor, i.e. whether a score of 1 means "as good as
A2C"; reports mark the environments where it did not.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from lpg import envs as envs_lib
from lpg.envs.base import Environment
from lpg.networks import make_agent
from lpg.optim import OptimizerConfig
from lpg.rollout import episode_stats, reset_actors, unroll
from lpg.types import AgentOutput
from training.actor_critic import ActorCriticTrainer, TrainConfig
from training.loop import final_return
from training.presets import default_preset

__all__ = [
    "MIN_SCORE_FRACTION",
    "MIN_SCORE_SCALE",
    "a2c_beats_random",
    "a2c_return",
    "random_policy_return",
    "random_return",
    "reference_returns",
    "score_scale",
    "uniform_policy",
]

# The floor of the score's denominator: at least MIN_SCORE_SCALE return units and MIN_SCORE_FRACTION of the
# random policy's |return| (Pong's random return is about -20.7: A2C must beat it by 2.07 points, not by 0.1).
MIN_SCORE_SCALE = 0.1
MIN_SCORE_FRACTION = 0.1

_REFERENCE_CACHE: dict[tuple, tuple[float, float]] = {}


def _score_floor(random_return: float) -> float:
    return max(MIN_SCORE_SCALE, MIN_SCORE_FRACTION * abs(random_return))


def score_scale(a2c_return: float, random_return: float) -> float:
    """The A2C-normalised score's denominator: ``a2c_return - random_return``, floored (module docstring)."""
    return max(a2c_return - random_return, _score_floor(random_return))


def a2c_beats_random(a2c_return: float, random_return: float) -> bool:
    """Whether A2C beat the random policy by at least the floor of ``score_scale``."""
    return a2c_return - random_return >= _score_floor(random_return)


def uniform_policy(num_actions: int, obs_ndim: int):
    """An ``apply_fn(params, obs)`` of the uniform-random policy (zero logits, zero value, no y head)."""

    def apply(params, obs):
        del params
        lead = obs.shape[: obs.ndim - obs_ndim]
        logits = jnp.zeros((*lead, num_actions), jnp.float32)
        return AgentOutput(logits=logits, value=jnp.zeros(lead, jnp.float32), y_logits=jnp.zeros((*lead, 0), jnp.float32))

    return apply


def random_return(env: Environment | str, num_envs: int = 64, num_steps: int = 2000, seed: int = 0) -> float:
    """Expected episode return of the uniform-random policy (the spec's, or measured on one long unroll)."""
    env = envs_lib.get(env)
    if env.spec.random_return is not None:
        return float(env.spec.random_return)
    num_steps = max(num_steps, 2 * env.spec.max_episode_steps)
    apply = uniform_policy(env.spec.num_actions, len(env.spec.observation_shape))

    @jax.jit
    def run(key):
        k_reset, k_run = jax.random.split(key)
        actor = reset_actors(env, k_reset, num_envs)
        _, rollout = unroll(env, apply, None, actor, k_run, num_steps)
        return episode_stats(rollout)

    stats = run(jax.random.PRNGKey(seed))
    count = float(stats["episode_count"])
    return float(stats["episode_return_sum"]) / count if count else 0.0


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _random_rollouts(env: Environment, num_envs: int, unroll_length: int, num_unrolls: int, keys: jax.Array):
    apply_fn = uniform_policy(env.spec.num_actions, len(env.spec.observation_shape))

    def one_seed(key):
        reset_key, key = jax.random.split(key)
        actor = reset_actors(env, reset_key, num_envs)

        def body(actor, unroll_key):
            actor, rollout = unroll(env, apply_fn, None, actor, unroll_key, unroll_length)
            return actor, episode_stats(rollout)

        _, stats = jax.lax.scan(body, actor, jax.random.split(key, num_unrolls))
        return jax.tree.map(jnp.sum, stats)

    return jax.vmap(one_seed)(keys)


def random_policy_return(env: Environment | str, config: TrainConfig, steps: int, keys: jax.Array) -> np.ndarray:
    """Mean return of the uniform-random policy's completed episodes, per key [S] (NaN: none completed).

    Acts ``config.num_envs`` environments for about ``steps`` steps each (whole rollouts).
    """
    env = envs_lib.get(env)
    num_unrolls = max(1, math.ceil(steps / config.steps_per_update))
    stats = jax.device_get(_random_rollouts(env, config.num_envs, config.unroll_length, num_unrolls, keys))
    total, count = np.asarray(stats["episode_return_sum"], np.float64), np.asarray(stats["episode_count"], np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def a2c_return(
    env: Environment | str,
    num_envs: int,
    unroll_length: int,
    updates: int,
    seeds: int = 4,
    fraction: float = 0.5,
    seed: int = 0,
    optimizer: OptimizerConfig | None = None,
) -> float:
    """Mean episode return of plain A2C in the last ``fraction`` of ``updates`` updates,
    averaged over ``seeds`` agents (``optimizer`` None = the environment preset's)."""
    import objectives

    env = envs_lib.get(env)
    preset = default_preset(env.spec)
    config = TrainConfig(num_envs, unroll_length, optimizer or preset.config.optimizer)
    trainer = ActorCriticTrainer.create(env, make_agent(env.spec), objectives.make("a2c"), config, total_updates=updates)
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(seed, seed + seeds))
    _, metrics = trainer.run_seeds(trainer.init_seeds(keys), {}, updates)
    per_seed = final_return(jax.tree.map(np.asarray, metrics), fraction)
    finite = per_seed[np.isfinite(per_seed)]
    return float(finite.mean()) if finite.size else random_return(env)


def reference_returns(
    environments: dict[str, Environment],
    num_envs: int,
    unroll_length: int,
    updates: int,
    fraction: float,
    optimizer: OptimizerConfig,
    seeds: int = 4,
) -> dict[str, tuple[float, float]]:
    """(random, A2C) returns of each environment on one lifetime budget (cached per process and environment)."""
    out = {}
    for name, env in environments.items():
        cache_key = (env, num_envs, unroll_length, updates, fraction, seeds, repr(optimizer))
        if cache_key not in _REFERENCE_CACHE:
            a2c = a2c_return(env, num_envs, unroll_length, updates, seeds, fraction, optimizer=optimizer)
            _REFERENCE_CACHE[cache_key] = (random_return(env), a2c)
        out[name] = _REFERENCE_CACHE[cache_key]
    return out
