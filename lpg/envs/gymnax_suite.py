"""gymnax environments (Lange 2022, github.com/RobertTLange/gymnax) as ``gymnax/<id>``.

A thin adapter from gymnax's ``reset(key, params)`` / ``step(key, state, action,
params)`` to this project's ``Environment`` (``lpg.envs.base``): the gymnax
library runs the games (MinAtar, bsuite, classic control; nothing is
re-implemented here), the adapter fixes the interface:

* ``reset(key) -> (state, first_timestep)``, ``step(state, action, key) ->
  (state, timestep)``; ``state`` is gymnax's own state pytree and the default
  ``EnvParams`` of the game are fixed per adapter (closed over as constants),
  so both can be ``jit``-ed, ``vmap``-ped and ``lax.scan``-ned.
* Automatic reset: gymnax's ``step`` already resets on episode end and returns
  the next episode's first observation, with ``terminated`` and ``truncated``
  (the ``max_steps_in_episode`` time limit) reported apart. The adapter
  passes that observation on with the final reward and ``done = terminated or
  truncated``.
* Discount: 0 on every episode end, termination *and* truncation; 1 otherwise.
  This is the project's convention (``lpg.types``, and the toy environments'
  ``max_episode_steps`` cap): a ``TimeStep`` carries no final observation,
  and the observation that arrives with ``done`` is already the next
  episode's first, so a truncated step has nothing correct to bootstrap
  from (bootstrapping from the fresh start, discount 1, would credit the
  ended episode with the value of an unrelated state). For several games the
  time limit *is* the end of the game, so discount 0 is exact there:
  Freeway-MinAtar (2500 steps; gymnax's Freeway never terminates otherwise,
  as in MinAtar), DiscountingChain-bsuite (100 steps, the time is in the
  observation), DeepSea-bsuite (the cap equals the depth, 8, at which it also
  terminates). For CartPole-v1 (500), Acrobot-v1 (500), MountainCar-v0 (200)
  and the 1000-step cap of the other MinAtar games the cap is a truncation of
  a time-less task, and discount 0 there biases values near the cap
  (downwards for CartPole's +1 per step); the episode return that training
  reports is unaffected. (Tried on Acrobot-v1, A2C, 3 seeds: discount 1 at
  truncation instead did not change the outcome, -500 either way at Adam 1e-3.)
* Observations are float32 (MinAtar's ``[10, 10, C]`` channel grids of 0/1,
  bsuite's boards and vectors, classic control's state vectors); rewards are
  float32 (UmbrellaChain's integer rewards are cast).

Task instances: gymnax draws everything at each episode's reset (ball
directions, car speeds, contexts), and nothing persists across episodes, so
one ``reset`` key fixes only the first episode. DeepSea's action mapping is
fixed per game (gymnax's default mapping key), as in bsuite.

Specs are static (``_GAMES``) so that listing and ``make_spec`` do not import
gymnax, which takes seconds (it imports seaborn and pandas); the library is
imported and the game built on first ``reset``/``step``. ``tests/test_gymnax.py``
checks every static entry against gymnax itself.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp

from lpg.envs import register
from lpg.envs.base import Environment, EnvSpec, first_timestep
from lpg.types import TimeStep

PREFIX = "gymnax/"


@dataclasses.dataclass(frozen=True)
class _Game:
    """Static facts of one gymnax game (checked against gymnax by the tests)."""

    observation_shape: tuple[int, ...]
    num_actions: int
    max_steps: int  # gymnax's default EnvParams.max_steps_in_episode
    description: str
    random_return: float | None = None
    optimal_return: float | None = None


_GAMES: dict[str, _Game] = {
    # MinAtar (Young & Tian 2019): 10x10 grids with one channel per object kind.
    "Asterix-MinAtar": _Game((10, 10, 4), 5, 1000, "MinAtar Asterix: collect gold, dodge enemies"),
    "Breakout-MinAtar": _Game((10, 10, 4), 3, 1000, "MinAtar Breakout: paddle, ball, three rows of bricks"),
    "Freeway-MinAtar": _Game(
        (10, 10, 7), 3, 2500, "MinAtar Freeway: cross the road between the cars; the cap ends the game"
    ),
    "SpaceInvaders-MinAtar": _Game((10, 10, 6), 4, 1000, "MinAtar SpaceInvaders: shoot the descending aliens"),
    "Seaquest-MinAtar": _Game((10, 10, 10), 6, 1000, "MinAtar Seaquest: shoot enemies, rescue divers, mind oxygen"),
    # bsuite (Osband et al. 2020).
    "Catch-bsuite": _Game((10, 5), 3, 1000, "bsuite Catch 10x5, +1/-1 when the ball lands", -0.6, 1.0),
    "DeepSea-bsuite": _Game((8, 8), 2, 8, "bsuite DeepSea 8x8: exploration, +1 only at the far corner"),
    "MemoryChain-bsuite": _Game((3,), 2, 1000, "bsuite MemoryChain: recall a bit shown 5 steps earlier", 0.0, 1.0),
    "UmbrellaChain-bsuite": _Game(
        (3,), 2, 100, "bsuite UmbrellaChain: first action decides the +1/-1 after 10 noisy steps", 0.0, 1.0
    ),
    "DiscountingChain-bsuite": _Game(
        (2,), 5, 100, "bsuite DiscountingChain: first action picks a reward 1-100 steps later", 1.02, 1.1
    ),
    # Classic control (OpenAI gym / gymnasium dynamics).
    "CartPole-v1": _Game((4,), 2, 500, "classic control CartPole-v1: +1 per step while the pole stays up", None, 500.0),
    "Acrobot-v1": _Game((6,), 3, 500, "classic control Acrobot-v1: -1 per step until the tip swings up"),
    "MountainCar-v0": _Game(
        (2,), 3, 200, "classic control MountainCar-v0: -1 per step until the car reaches the hilltop"
    ),
}
"""The registered games. Random returns are exact where given: Catch -0.6 (a ball-ignoring policy catches
with probability 1/5), MemoryChain and UmbrellaChain 0 (the deciding action is right with probability 1/2,
UmbrellaChain's noise has mean 0), DiscountingChain (4 * 1 + 1.1) / 5 = 1.02 (every first action's reward
arrives within the 100 steps)."""

MINATAR = tuple(name for name in _GAMES if name.endswith("-MinAtar"))


def _import_gymnax():
    import gymnax  # seconds to import (seaborn, pandas): only when a game is first built

    return gymnax


class GymnaxEnv(Environment):
    """One gymnax game behind the ``Environment`` interface (see the module docstring).

    Args:
      env_id: the gymnax id, e.g. ``"Breakout-MinAtar"`` (registered as ``gymnax/Breakout-MinAtar``).
      **params: overrides of the game's default gymnax ``EnvParams``, e.g.
        ``max_steps_in_episode=20``; the spec's ``max_episode_steps`` follows.
    """

    def __init__(self, env_id: str, **params: Any):
        if env_id not in _GAMES:
            raise ValueError(f"no gymnax game {env_id!r} registered here; known: {', '.join(_GAMES)}")
        game = _GAMES[env_id]
        self.env_id = env_id
        self._param_overrides = dict(params)
        self.spec = EnvSpec(
            name=PREFIX + env_id,
            description=_description(env_id),
            observation_shape=game.observation_shape,
            num_actions=game.num_actions,
            max_episode_steps=int(params.get("max_steps_in_episode", game.max_steps)),
            optimal_return=game.optimal_return,
            random_return=game.random_return,
            kind="gymnax",
        )

    @functools.cached_property
    def gymnax_env(self) -> tuple[Any, Any]:
        """``(env, params)``: the gymnax environment and its ``EnvParams`` (built on first use).

        First use is often inside a ``jit`` trace; the arrays that gymnax's
        constructors build (e.g. MinAtar Breakout's action set) are computed
        eagerly all the same, so no tracer is cached.
        """
        gymnax = _import_gymnax()
        with jax.ensure_compile_time_eval():
            env, params = gymnax.make(self.env_id)
            if self._param_overrides:
                params = params.replace(**self._param_overrides)
        return env, params

    def reset(self, key: chex.PRNGKey) -> tuple[Any, TimeStep]:
        env, params = self.gymnax_env
        obs, state = env.reset(key, params)
        return state, first_timestep(jnp.asarray(obs, jnp.float32))

    def step(self, state: Any, action: chex.Array, key: chex.PRNGKey) -> tuple[Any, TimeStep]:
        env, params = self.gymnax_env
        obs, state, reward, terminated, truncated, _ = env.step(key, state, action, params)
        done = jnp.logical_or(terminated, truncated)
        return state, TimeStep(
            observation=jnp.asarray(obs, jnp.float32),
            reward=jnp.asarray(reward, jnp.float32),
            discount=jnp.where(done, 0.0, 1.0).astype(jnp.float32),
            done=done,
        )


def _description(env_id: str) -> str:
    game = _GAMES[env_id]
    return f"{game.description} (gymnax {env_id}, {game.max_steps}-step cap)"


for _id in _GAMES:
    register(PREFIX + _id, functools.partial(GymnaxEnv, _id), _description(_id), kind="gymnax")
