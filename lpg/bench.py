"""Throughput benchmark of the pure-JAX environments (kinds toy and gymnax).

Each environment is ``vmap``-ped over ``num_envs`` copies and stepped
``num_steps`` times with uniformly random actions inside one jitted
``lax.scan``. Compile time is excluded (the jitted function is run once
before timing) and the result is waited for with ``block_until_ready``.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from lpg import envs as envs_lib
from lpg.errors import InvalidConfigError


def require_jax_envs(names: list[str], command: str) -> list[str]:
    """``names`` when each is a pure-JAX environment (toy or gymnax), for the benchmark ``command``.

    Raises:
      UnknownNameError: an unknown name (with a "did you mean").
      InvalidConfigError: an Atari game, pointing to ``lpg bench atari``.
    """
    for name in names:
        spec = envs_lib.make_spec(name)
        if spec.kind == "atari":
            game = name.split("/", 1)[1]
            raise InvalidConfigError(
                f"{command} measures pure-JAX environments; {name} is an Atari game: use `lpg bench atari --game {game}`"
            )
        if not spec.is_jax:
            raise InvalidConfigError(f"{command} measures pure-JAX environments; {name} is {spec.kind}")
    return names


def _make_runner(env: envs_lib.Environment, num_envs: int, num_steps: int):
    num_actions = env.spec.num_actions

    def run(key):
        k_reset, k_run = jax.random.split(key)
        state, _ = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs))

        def body(state, key):
            k_act, k_step = jax.random.split(key)
            actions = jax.random.randint(k_act, (num_envs,), 0, num_actions, jnp.int32)
            state, timestep = jax.vmap(env.step)(state, actions, jax.random.split(k_step, num_envs))
            return state, jnp.sum(timestep.reward)

        state, rewards = jax.lax.scan(body, state, jax.random.split(k_run, num_steps))
        return jnp.sum(rewards)

    return jax.jit(run)


def bench_envs(
    names: list[str] | None = None, num_envs: int = 1024, num_steps: int = 1000, seed: int = 0
) -> list[dict]:
    """Measures environment steps per second of each pure-JAX environment.

    Args:
      names: environment names (default: every registered one of kind toy, then gymnax).
      num_envs: environments stepped in parallel under ``jax.vmap``.
      num_steps: steps of the ``lax.scan``.
      seed: PRNG seed.

    Returns:
      One dict per environment: ``{"env", "num_envs", "steps_per_s"}`` where
      ``steps_per_s = num_envs * num_steps / seconds`` (compile time excluded).

    Raises:
      UserInputError: a name is unknown or not a pure-JAX environment (``require_jax_envs``).
    """
    if names is None:
        names = [name for kind in envs_lib.JAX_KINDS for name, _ in envs_lib.list_envs(kind=kind)]
    require_jax_envs(names, "lpg bench envs")
    results = []
    for i, name in enumerate(names):
        env = envs_lib.make(name)
        run = _make_runner(env, num_envs, num_steps)
        key = jax.random.PRNGKey(seed + i)
        run(key).block_until_ready()  # compile (and warm up)
        start = time.perf_counter()
        run(jax.random.fold_in(key, 1)).block_until_ready()
        seconds = time.perf_counter() - start
        results.append({"env": name, "num_envs": num_envs, "steps_per_s": num_envs * num_steps / seconds})
    return results
