"""The 10-state Markov reward process of Xu et al. 2018 ("Meta-Gradient
Reinforcement Learning"), as used by Bonnet et al. 2022 ("One Step at a Time:
Pros and Cons of Multi-Step Meta-Gradient Reinforcement Learning", App. B.1).

States 0..9 are visited left to right, one per step. The transition leaving
state i gives reward 0.1 if i is even and a fresh N(0, 1) sample if i is odd.
The episode ends after leaving state 9 (10 steps per episode) and restarts at
state 0. There is one (ignored) action. Observation: the int32 state index
(``num_observations = 10``). Expected return 5 * 0.1 = 0.5 for every policy.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct

from lpg.envs import register
from lpg.envs.base import Environment, EnvSpec, first_timestep
from lpg.types import TimeStep

NUM_STATES = 10


@struct.dataclass
class MRPState:
    """Attributes: position: int32 [], the current state index 0..9."""

    position: chex.Array


class MRP(Environment):
    """The Xu et al. 2018 10-state MRP (see the module docstring)."""

    def __init__(self, name: str = "mrp"):
        self.spec = EnvSpec(
            name=name,
            description=_DESCRIPTION,
            observation_shape=(),
            num_actions=1,
            max_episode_steps=NUM_STATES,
            observation_dtype="int32",
            num_observations=NUM_STATES,
            optimal_return=0.5,
            random_return=0.5,
        )

    def reset(self, key: chex.PRNGKey) -> tuple[MRPState, TimeStep]:
        del key
        state = MRPState(position=jnp.zeros((), jnp.int32))
        return state, first_timestep(state.position)

    def step(self, state: MRPState, action: chex.Array, key: chex.PRNGKey) -> tuple[MRPState, TimeStep]:
        del action
        noise = jax.random.normal(key, (), jnp.float32)
        reward = jnp.where(state.position % 2 == 0, jnp.float32(0.1), noise).astype(jnp.float32)
        position = state.position + 1
        done = position >= NUM_STATES
        position = jnp.where(done, 0, position).astype(jnp.int32)
        return MRPState(position=position), TimeStep(
            observation=position,
            reward=reward,
            discount=jnp.where(done, 0.0, 1.0).astype(jnp.float32),
            done=done,
        )


_DESCRIPTION = (
    "10-state Markov reward process, N(0,1) rewards on odd states (Xu et al. 2018; Bonnet et al. 2022, App. B.1)"
)
register("mrp", MRP, _DESCRIPTION)
