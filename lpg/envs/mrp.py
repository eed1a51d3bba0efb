"""The 10-state Markov reward process of Xu et al. 2018 ("Meta-Gradient
Reinforcement Learning"), as used by Bonnet et al. 2022 ("One Step at a Time:
Pros and Cons of Multi-Step Meta-Gradient Reinforcement Learning", App. B.1).

States 0..9 are visited left to right, one per step. The transition leaving
state i gives a fresh N(0, 1) sample if i is one of the *noisy* states (by
default the odd ones, as in the paper; ``MRP(noisy_states=...)`` picks
others) and 0.1 otherwise.
The episode ends after leaving state 9 (10 steps per episode) and restarts at
state 0. There is one (ignored) action. Observation: the int32 state index
(``num_observations = 10``). Expected return 0.1 per deterministic state
(0.5 with the default pattern) for every policy.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct

from lpg.envs import register
from lpg.envs.base import Environment, EnvSpec, first_timestep
from lpg.errors import InvalidConfigError
from lpg.types import TimeStep

NUM_STATES = 10
ODD_STATES = (1, 3, 5, 7, 9)


@struct.dataclass
class MRPState:
    """Attributes: position: int32 [], the current state index 0..9."""

    position: chex.Array


class MRP(Environment):
    """The Xu et al. 2018 10-state MRP (see the module docstring).

    Args:
      name: the environment's name.
      noisy_states: the states whose reward is N(0, 1) (default: the odd ones);
        every other state gives 0.1.
    """

    def __init__(self, name: str = "mrp", noisy_states: tuple[int, ...] = ODD_STATES):
        noisy_states = tuple(sorted({int(i) for i in noisy_states}))
        if any(not 0 <= i < NUM_STATES for i in noisy_states):
            raise InvalidConfigError(f"MRP noisy states must lie in 0..{NUM_STATES - 1}, got {noisy_states}")
        self.noisy_states = noisy_states
        self._noisy = jnp.asarray([i in noisy_states for i in range(NUM_STATES)])
        expected = 0.1 * (NUM_STATES - len(noisy_states))
        description = _DESCRIPTION if noisy_states == ODD_STATES else _DESCRIPTION.replace(
            "odd states", f"states {', '.join(map(str, noisy_states)) or 'none'}"
        )
        self.spec = EnvSpec(
            name=name,
            description=description,
            observation_shape=(),
            num_actions=1,
            max_episode_steps=NUM_STATES,
            observation_dtype="int32",
            num_observations=NUM_STATES,
            optimal_return=expected,
            random_return=expected,
        )

    def reset(self, key: chex.PRNGKey) -> tuple[MRPState, TimeStep]:
        del key
        state = MRPState(position=jnp.zeros((), jnp.int32))
        return state, first_timestep(state.position)

    def step(self, state: MRPState, action: chex.Array, key: chex.PRNGKey) -> tuple[MRPState, TimeStep]:
        del action
        noise = jax.random.normal(key, (), jnp.float32)
        reward = jnp.where(self._noisy[state.position], noise, jnp.float32(0.1)).astype(jnp.float32)
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
