"""The environment interface: pure functions over explicit state.

An ``Environment`` holds only structure (its ``EnvSpec`` and static
configuration); all changing data lives in the ``state`` pytree that
``reset`` returns and ``step`` consumes, so both can be ``jit``-ed,
``vmap``-ped over a batch and ``lax.scan``-ned over time.

Per-task randomness ("environment seed": object layouts of the random
gridworlds, chain lengths of the delayed chains) is drawn by ``reset`` from its
key and kept in ``state`` across the automatic resets that ``step`` performs,
so one ``reset`` = one task instance for a whole lifetime.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import chex
import jax.numpy as jnp

from lpg.types import TimeStep

EnvState = Any

JAX_KINDS = ("toy", "gymnax")
"""Environment kinds whose ``reset``/``step`` are pure JAX (``jit``, ``vmap``, ``lax.scan``); ``atari`` is not."""


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Static description of an environment.

    Attributes:
      name: registry name, e.g. ``"gridworld/dense"``.
      description: one line shown by ``lpg envs``.
      observation_shape: shape of one observation.
      observation_dtype: ``"int32"`` for tabular environments whose observation
        is the index of the hot entry of a one-hot vector of size
        ``num_observations`` (stored as an index to save memory; the tabular
        torso looks it up in a table, which equals a linear layer on the one-hot),
        ``"float32"`` otherwise.
      num_observations: size of the one-hot observation space (tabular only).
      num_actions: number of discrete actions (1 for reward processes).
      max_episode_steps: episode cap; reaching it ends the episode.
      optimal_return: best achievable expected undiscounted episode return, if known.
      random_return: expected return of the uniform random policy, if known.
      kind: ``"toy"`` for this project's pure-JAX environments, ``"gymnax"`` for
        the gymnax library's games (pure JAX too, ``lpg.envs.gymnax_suite``),
        ``"atari"`` for envpool games (host-side, not jit-able).
    """

    name: str
    description: str
    observation_shape: tuple[int, ...]
    num_actions: int
    max_episode_steps: int
    observation_dtype: str = "float32"
    num_observations: int | None = None
    optimal_return: float | None = None
    random_return: float | None = None
    kind: str = "toy"

    @property
    def is_tabular(self) -> bool:
        return self.observation_dtype == "int32"

    @property
    def is_jax(self) -> bool:
        """Pure-JAX ``reset``/``step`` (kind toy or gymnax): usable wherever a jitted rollout is."""
        return self.kind in JAX_KINDS


class Environment(abc.ABC):
    """A pure-function environment with automatic reset.

    Subclasses implement ``spec``, ``reset`` and ``step``; they must be usable
    under ``jax.jit``, ``jax.vmap`` and ``jax.lax.scan``.
    """

    spec: EnvSpec

    @abc.abstractmethod
    def reset(self, key: chex.PRNGKey) -> tuple[EnvState, TimeStep]:
        """Draws a task instance and its first state.

        Returns ``(state, timestep)`` with reward 0, discount 1, done False.
        """

    @abc.abstractmethod
    def step(self, state: EnvState, action: chex.Array, key: chex.PRNGKey) -> tuple[EnvState, TimeStep]:
        """Takes ``action`` (int32 []) and returns the next state and timestep.

        When the episode ends (termination or the ``max_episode_steps`` cap),
        the returned timestep has the final reward, discount 0, done True and the
        *first observation of the next episode* (same task instance).
        """

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"{type(self).__name__}({self.spec.name!r})"


def first_timestep(observation: chex.Array) -> TimeStep:
    """The timestep that ``reset`` returns: reward 0, discount 1, not done."""
    return TimeStep(
        observation=observation,
        reward=jnp.zeros((), jnp.float32),
        discount=jnp.ones((), jnp.float32),
        done=jnp.zeros((), jnp.bool_),
    )
