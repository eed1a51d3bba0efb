"""LPG's delayed chain MDPs (Oh et al. 2020, "Discovering Reinforcement Learning
Algorithms", Appendix A.3).

Two actions. Only the FIRST action of an episode matters: it chooses a branch
(A for action 0, B for action 1) and the agent then walks down that branch for
the rest of the chain whatever it does. The episode terminates after
``length`` steps with reward +1 if the first action was the correct one, else
-1. Intermediate rewards are 0, or, in the noisy variants, an independent
random +1/-1 (equally likely) at every non-terminal step. The chain length
(uniform in ``[5, max_length]``) and the correct action (uniform in {0, 1}) are
drawn per environment seed in ``reset(key)`` and kept across automatic resets.

Observation: the index of (branch, position) with the start state at 0 and
position p >= 1 of branch b in {A=0, B=1} at ``1 + b * max_length + (p - 1)``
(int32, ``num_observations = 1 + 2 * max_length``). ``chain/distractor`` adds 20
random bits re-drawn uniformly at every step; its observation is the float32
vector ``concat(one_hot(index, 1 + 2 * max_length), bits)``.
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

MIN_LENGTH = 5


@struct.dataclass
class ChainState:
    """State of one delayed chain.

    Attributes:
      length: int32 [], chain length (steps per episode) of this task.
      correct: int32 [], the correct first action of this task.
      branch: int32 [], 0 at the start state, 1 + first action afterwards.
      t: int32 [], steps taken in the current episode (= position on the branch).
    """

    length: chex.Array
    correct: chex.Array
    branch: chex.Array
    t: chex.Array


class DelayedChain(Environment):
    """A delayed chain MDP (see the module docstring).

    Args:
      name: the environment's name.
      max_length: the longest chain; each task draws its length uniformly from
        ``min_length..max_length`` at reset.
      noisy: +-1 rewards on every non-terminal step.
      num_distractors: random bits appended to a one-hot observation (0: the state index).
      description: the one-line description ``lpg envs`` shows.
      min_length: the shortest chain (default ``MIN_LENGTH``, as in LPG).
    """

    def __init__(
        self,
        name: str,
        max_length: int,
        noisy: bool = False,
        num_distractors: int = 0,
        description: str = "",
        min_length: int = MIN_LENGTH,
    ):
        if not 1 <= int(min_length) <= int(max_length):
            raise InvalidConfigError(f"chain lengths must satisfy 1 <= min_length <= max_length, got {min_length}, {max_length}")
        self.min_length = int(min_length)
        self.max_length = int(max_length)
        self.noisy = bool(noisy)
        self.num_distractors = int(num_distractors)
        self.num_states = 1 + 2 * self.max_length
        if self.num_distractors:
            spec_obs = dict(observation_shape=(self.num_states + self.num_distractors,), observation_dtype="float32")
        else:
            spec_obs = dict(observation_shape=(), observation_dtype="int32", num_observations=self.num_states)
        self.spec = EnvSpec(
            name=name,
            description=description,
            num_actions=2,
            max_episode_steps=self.max_length,
            optimal_return=1.0,
            random_return=0.0,
            **spec_obs,
        )

    def state_index(self, state: ChainState) -> chex.Array:
        index = 1 + (state.branch - 1) * self.max_length + (state.t - 1)
        return jnp.where(state.branch == 0, 0, index).astype(jnp.int32)

    def observation(self, state: ChainState, key: chex.PRNGKey) -> chex.Array:
        index = self.state_index(state)
        if not self.num_distractors:
            return index
        bits = jax.random.bernoulli(key, 0.5, (self.num_distractors,)).astype(jnp.float32)
        return jnp.concatenate([jax.nn.one_hot(index, self.num_states, dtype=jnp.float32), bits])

    def reset(self, key: chex.PRNGKey) -> tuple[ChainState, TimeStep]:
        k_len, k_correct, k_obs = jax.random.split(key, 3)
        state = ChainState(
            length=jax.random.randint(k_len, (), self.min_length, self.max_length + 1, jnp.int32),
            correct=jax.random.randint(k_correct, (), 0, 2, jnp.int32),
            branch=jnp.zeros((), jnp.int32),
            t=jnp.zeros((), jnp.int32),
        )
        return state, first_timestep(self.observation(state, k_obs))

    def step(self, state: ChainState, action: chex.Array, key: chex.PRNGKey) -> tuple[ChainState, TimeStep]:
        k_noise, k_obs = jax.random.split(key)
        action = jnp.clip(action, 0, 1).astype(jnp.int32)
        branch = jnp.where(state.branch == 0, action + 1, state.branch)
        t = state.t + 1
        done = t >= state.length
        terminal_reward = jnp.where(branch - 1 == state.correct, 1.0, -1.0)
        if self.noisy:
            step_reward = jnp.where(jax.random.bernoulli(k_noise, 0.5), 1.0, -1.0)
        else:
            step_reward = jnp.zeros(())
        reward = jnp.where(done, terminal_reward, step_reward).astype(jnp.float32)
        next_state = ChainState(
            length=state.length,
            correct=state.correct,
            branch=jnp.where(done, 0, branch).astype(jnp.int32),
            t=jnp.where(done, 0, t).astype(jnp.int32),
        )
        return next_state, TimeStep(
            observation=self.observation(next_state, k_obs),
            reward=reward,
            discount=jnp.where(done, 0.0, 1.0).astype(jnp.float32),
            done=done,
        )


# name -> (max_length, noisy, num_distractors)
CHAINS = {
    "chain/short": (30, False, 0),
    "chain/short_noisy": (30, True, 0),
    "chain/long": (50, False, 0),
    "chain/long_noisy": (50, True, 0),
    "chain/distractor": (30, False, 20),
}


def _describe(name: str) -> str:
    max_length, noisy, distractors = CHAINS[name]
    extra = (", noisy rewards" if noisy else "") + (f", {distractors} distractor bits" if distractors else "")
    return f"LPG delayed chain, length {MIN_LENGTH}..{max_length}{extra} (Oh et al. 2020, App. A.3)"


def make_chain(name: str) -> DelayedChain:
    """Builds the registered chain ``name``."""
    max_length, noisy, distractors = CHAINS[name]
    return DelayedChain(name, max_length, noisy, distractors, description=_describe(name))


for _name in CHAINS:
    register(_name, lambda _n=_name: make_chain(_n), _describe(_name))
