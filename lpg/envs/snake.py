"""Snake on a 12 x 12 board, as used by Bonnet et al. 2022 ("One Step at a
Time: Pros and Cons of Multi-Step Meta-Gradient Reinforcement Learning",
App. B.2; the Jumanji Snake environment), in pure JAX.

The snake starts with length 1 (its head) at a uniformly random cell and one
fruit lies at a uniformly random other cell. Actions: 0 up, 1 right, 2 down,
3 left. When the head enters the fruit cell the reward is +1, the snake grows
by one (its tail stays in place for that step) and a new fruit appears at a
uniformly random empty cell. The episode ends when the head leaves the board,
when it enters a cell of its own body (the tail cell, which moves away in the
same step, does not count unless the snake is eating), when the board is full
(length 144, return 143, the maximum) or after 5000 steps.

Representation: ``entered[c]`` is the episode step at which the head last
entered cell c (a large negative number if never), so cell c is part of the
body at step t iff ``t - entered[c] < length``; the age ``t - entered[c]`` is
0 at the head and ``length - 1`` at the tail. This makes a step O(cells) with
no dynamic-length buffers, which vmaps well.

Observation: float32 [12, 12, 5] with channels
  0 body  (every cell of the snake, head and tail included),
  1 head, 2 tail (equal to the head when length is 1), 3 fruit,
  4 order: ``(length - age) / length`` on the body, in (0, 1] (1 at the head,
    1/length at the tail), 0 elsewhere.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from lpg.envs import register
from lpg.envs.base import Environment, EnvSpec, first_timestep
from lpg.types import TimeStep

SIZE = 12
NUM_CELLS = SIZE * SIZE
MAX_STEPS = 5000
_NEVER = -(10**6)
# (d_row, d_col) of actions up, right, down, left.
_MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]], np.int32)


def _nth_true(mask: chex.Array, u: chex.Array, count: chex.Array) -> chex.Array:
    """The flat index of a uniformly random True entry of ``mask`` (``count`` of them), from u ~ U[0, 1)."""
    j = jnp.minimum((u * count).astype(jnp.int32), jnp.maximum(count - 1, 0))
    return jnp.argmax(jnp.cumsum(mask) > j).astype(jnp.int32)


@struct.dataclass
class SnakeState:
    """State of one snake game.

    Attributes:
      entered: int32 [144], step at which the head last entered each (flat) cell.
      head: int32 [], flat cell of the head.
      fruit: int32 [], flat cell of the fruit.
      length: int32 [], number of cells of the snake.
      t: int32 [], steps taken in the current episode.
    """

    entered: chex.Array
    head: chex.Array
    fruit: chex.Array
    length: chex.Array
    t: chex.Array


class Snake(Environment):
    """Snake 12x12 (see the module docstring)."""

    def __init__(self, name: str = "snake"):
        self.spec = EnvSpec(
            name=name,
            description=_DESCRIPTION,
            observation_shape=(SIZE, SIZE, 5),
            num_actions=4,
            max_episode_steps=MAX_STEPS,
            optimal_return=float(NUM_CELLS - 1),
        )

    @staticmethod
    def observation(state: SnakeState) -> chex.Array:
        age = state.t - state.entered
        body = age < state.length
        cells = jnp.arange(NUM_CELLS)
        length = state.length.astype(jnp.float32)
        channels = jnp.stack(
            [
                body.astype(jnp.float32),
                (cells == state.head).astype(jnp.float32),
                (body & (age == state.length - 1)).astype(jnp.float32),
                (cells == state.fruit).astype(jnp.float32),
                jnp.where(body, (length - age) / length, 0.0).astype(jnp.float32),
            ],
            axis=-1,
        )
        return channels.reshape(SIZE, SIZE, 5)

    @staticmethod
    def _new_episode(u_head: chex.Array, u_fruit: chex.Array) -> SnakeState:
        head = jnp.minimum((u_head * NUM_CELLS).astype(jnp.int32), NUM_CELLS - 1)
        fruit = _nth_true(jnp.arange(NUM_CELLS) != head, u_fruit, NUM_CELLS - 1)
        return SnakeState(
            entered=jnp.full((NUM_CELLS,), _NEVER, jnp.int32).at[head].set(0),
            head=head,
            fruit=fruit,
            length=jnp.ones((), jnp.int32),
            t=jnp.zeros((), jnp.int32),
        )

    def reset(self, key: chex.PRNGKey) -> tuple[SnakeState, TimeStep]:
        u = jax.random.uniform(key, (2,))
        state = self._new_episode(u[0], u[1])
        return state, first_timestep(self.observation(state))

    def step(self, state: SnakeState, action: chex.Array, key: chex.PRNGKey) -> tuple[SnakeState, TimeStep]:
        u = jax.random.uniform(key, (3,))  # new fruit, next-episode head, next-episode fruit
        move = jnp.asarray(_MOVES)[jnp.clip(action, 0, 3)]
        row = state.head // SIZE + move[0]
        col = state.head % SIZE + move[1]
        off_board = (row < 0) | (row >= SIZE) | (col < 0) | (col >= SIZE)
        head = (jnp.clip(row, 0, SIZE - 1) * SIZE + jnp.clip(col, 0, SIZE - 1)).astype(jnp.int32)
        t = state.t + 1
        # Body at step t without growth: the tail cell (age length-1 at t-1) is vacated.
        collision = ~off_board & ((t - state.entered[head]) < state.length)
        eat = ~off_board & (head == state.fruit)
        length = state.length + eat.astype(jnp.int32)
        entered = state.entered.at[head].set(jnp.where(off_board, state.entered[head], t))
        body = (t - entered) < length
        full = length >= NUM_CELLS
        new_fruit = _nth_true(~body, u[0], NUM_CELLS - length)
        fruit = jnp.where(eat & ~full, new_fruit, state.fruit).astype(jnp.int32)
        done = off_board | collision | full | (t >= MAX_STEPS)
        next_state = SnakeState(entered=entered, head=head, fruit=fruit, length=length, t=t)
        next_state = jax.tree_util.tree_map(
            lambda r, n: jnp.where(done, r, n), self._new_episode(u[1], u[2]), next_state
        )
        return next_state, TimeStep(
            observation=self.observation(next_state),
            reward=eat.astype(jnp.float32),
            discount=jnp.where(done, 0.0, 1.0).astype(jnp.float32),
            done=done,
        )


_DESCRIPTION = "Snake 12x12, +1 per fruit, max return 143 (Bonnet et al. 2022, App. B.2; Jumanji)"
register("snake", Snake, _DESCRIPTION)
