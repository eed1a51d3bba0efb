"""Throughput benchmark of the pure-JAX toy environments.

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


def require_toy_envs(names: list[str], command: str) -> list[str]:
    """``names`` when each is a toy environment, for the benchmark ``command`` (e.g. ``lpg bench envs``).

    Raises:
      UnknownNameError: an unknown name (with a "did you mean").
      InvalidConfigError: an Atari game, pointing to ``lpg bench atari``.
    """
    for name in names:
        kind = envs_lib.make_spec(name).kind
        if kind == "atari":
            game = name.split("/", 1)[1]
            raise InvalidConfigError(
                f"{command} measures toy environments; {name} is an Atari game: use `lpg bench atari --game {game}`"
            )
        if kind != "toy":
            raise InvalidConfigError(f"{command} measures toy environments; {name} is {kind}")
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
    """Measures environment steps per second of each toy environment.

    Args:
      names: toy environment names (default: every registered ``kind == "toy"`` one).
      num_envs: environments stepped in parallel under ``jax.vmap``.
      num_steps: steps of the ``lax.scan``.
      seed: PRNG seed.

    Returns:
      One dict per environment: ``{"env", "num_envs", "steps_per_s"}`` where
      ``steps_per_s = num_envs * num_steps / seconds`` (compile time excluded).

    Raises:
      UserInputError: a name is unknown or not a toy environment (``require_toy_envs``).
    """
    if names is None:
        names = [name for name, _ in envs_lib.list_envs(kind="toy")]
    require_toy_envs(names, "lpg bench envs")
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
