"""bsuite Catch (Osband et al. 2020, "Behaviour Suite for Reinforcement
Learning", catch experiment), in pure JAX.

A 10 x 5 board. The ball starts in the top row at a uniformly random column
and falls one row per step; the paddle sits in the bottom row and starts in
the middle column. Actions: 0 left, 1 stay, 2 right (clipped at the borders);
the paddle moves first, then the ball falls (as in bsuite). When the ball
reaches the bottom row (after 9 steps) the reward is +1 if the paddle is under
it, else -1, and the episode ends. Observation: float32 [10, 5] with 1.0 at
the ball and at the paddle.

Random return, exactly: the ball column is uniform and independent of the
paddle, so P(catch) = sum_c P(paddle = c) / 5 = 1/5 for any policy that ignores
the ball, hence E[return] = 2 / 5 - 1 = -0.6.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct

from lpg.envs import register
from lpg.envs.base import Environment, EnvSpec, first_timestep
from lpg.types import TimeStep

ROWS, COLUMNS = 10, 5


@struct.dataclass
class CatchState:
    """Attributes: ball_row, ball_col, paddle_col: int32 []."""

    ball_row: chex.Array
    ball_col: chex.Array
    paddle_col: chex.Array


class Catch(Environment):
    """bsuite Catch (see the module docstring)."""

    def __init__(self, name: str = "catch"):
        self.spec = EnvSpec(
            name=name,
            description=_DESCRIPTION,
            observation_shape=(ROWS, COLUMNS),
            num_actions=3,
            max_episode_steps=ROWS - 1,
            optimal_return=1.0,
            random_return=-0.6,
        )

    @staticmethod
    def observation(state: CatchState) -> chex.Array:
        board = jnp.zeros((ROWS, COLUMNS), jnp.float32)
        board = board.at[state.ball_row, state.ball_col].set(1.0)
        return board.at[ROWS - 1, state.paddle_col].set(1.0)

    @staticmethod
    def _new_episode(key: chex.PRNGKey) -> CatchState:
        return CatchState(
            ball_row=jnp.zeros((), jnp.int32),
            ball_col=jax.random.randint(key, (), 0, COLUMNS, jnp.int32),
            paddle_col=jnp.full((), COLUMNS // 2, jnp.int32),
        )

    def reset(self, key: chex.PRNGKey) -> tuple[CatchState, TimeStep]:
        state = self._new_episode(key)
        return state, first_timestep(self.observation(state))

    def step(self, state: CatchState, action: chex.Array, key: chex.PRNGKey) -> tuple[CatchState, TimeStep]:
        paddle = jnp.clip(state.paddle_col + jnp.clip(action, 0, 2) - 1, 0, COLUMNS - 1).astype(jnp.int32)
        ball_row = state.ball_row + 1
        done = ball_row >= ROWS - 1
        reward = jnp.where(done, jnp.where(paddle == state.ball_col, 1.0, -1.0), 0.0).astype(jnp.float32)
        next_state = CatchState(ball_row=ball_row, ball_col=state.ball_col, paddle_col=paddle)
        next_state = jax.tree_util.tree_map(lambda r, n: jnp.where(done, r, n), self._new_episode(key), next_state)
        return next_state, TimeStep(
            observation=self.observation(next_state),
            reward=reward,
            discount=jnp.where(done, 0.0, 1.0).astype(jnp.float32),
            done=done,
        )


_DESCRIPTION = "bsuite Catch 10x5, +1/-1 at the bottom row (Osband et al. 2020)"
register("catch", Catch, _DESCRIPTION)
