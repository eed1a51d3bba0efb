"""LPG's tabular gridworlds (Oh et al. 2020, "Discovering Reinforcement Learning
Algorithms", Appendix A.1 (tabular gridworlds) and A.2 (random gridworlds)).

A gridworld holds K objects, each described by ``[reward, P(terminate on
pick-up), P(respawn per step)]``. The agent moves with 5 actions

    0: up (row - 1), 1: down (row + 1), 2: left (col - 1), 3: right (col + 1), 4: stay

and moving into the border (or, in a procedural level, a wall) leaves it in
place. Dynamics of one ``step``:

1. the agent moves;
2. if the cell it now occupies holds a *present* object, the agent receives
   the object's reward, the object disappears and the episode terminates with
   the object's termination probability (standing still on a cell where an
   object has just respawned also picks it up);
3. every object that was absent *before* this step reappears at its own
   position with its respawn probability (so a picked-up object stays absent
   for at least one observation);
4. the episode ends on termination or when ``max_episode_steps`` steps have
   been taken (discount 0 in both cases) and the environment auto-resets.

Each episode starts with every object present and the agent at a uniformly
random cell that holds no object.

Observation: the one-hot of (agent cell, object-presence bit pattern), given as
the int32 index ``agent_cell * 2**K + sum_k present_k * 2**k`` with
``agent_cell = row * width + col``; ``num_observations = H * W * 2**K``.

Layouts. The *fixed* gridworlds (``gridworld/dense`` ...) place their objects at
distinct cells drawn ONCE, at construction, with
``numpy.random.RandomState(zlib.crc32(name)).choice(H * W, K, replace=False)``
(the paper does not publish its layouts; this makes ours deterministic per
name). The *random* gridworlds (``gridworld/rand_*``) draw K distinct object
cells in ``reset(key)`` (per environment seed) and keep them across the
automatic resets of ``step``. The *procedural* gridworlds
(``lpg.envs.procedural``) draw everything per task instance: size, walls,
objects and their parameters, and the episode cap.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from lpg.envs import register
from lpg.envs.base import Environment, EnvSpec, first_timestep
from lpg.types import TimeStep

# (d_row, d_col) of actions up, down, left, right, stay.
_MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1], [0, 0]], np.int32)


@struct.dataclass
class GridWorldState:
    """State of one gridworld.

    Attributes:
      object_pos: int32 [K], flat cell index (row * width + col) of each object.
      present: bool [K], whether each object is currently on the board.
      agent: int32 [], flat cell index of the agent.
      t: int32 [], steps taken in the current episode.
      level: the task instance's object parameters, walls and episode cap when
        ``reset`` draws them (``lpg.envs.procedural``); None when they are the
        environment's constants.
    """

    object_pos: chex.Array
    present: chex.Array
    agent: chex.Array
    t: chex.Array
    level: Level | None = None


@struct.dataclass
class Level:
    """One drawn gridworld level: what a fixed gridworld holds as constants.

    Attributes:
      rewards, term_probs, respawn_probs: float32 [K], per object.
      active: bool [K], objects that exist in this level (the others are
        never present: absent at every episode start, respawn probability 0).
      walls: bool [H * W], cells the agent cannot enter.
      cap: int32 [], this level's episode cap.
    """

    rewards: chex.Array
    term_probs: chex.Array
    respawn_probs: chex.Array
    active: chex.Array
    walls: chex.Array
    cap: chex.Array


class GridWorld(Environment):
    """A parameterised LPG gridworld (see the module docstring)."""

    def __init__(
        self,
        name: str,
        height: int,
        width: int,
        objects: Sequence[Sequence[float]],
        max_episode_steps: int,
        random_layout: bool,
        description: str = "",
        layout: Sequence[int] | None = None,
    ):
        """Builds a gridworld.

        Args:
          name: registry name (also seeds the fixed layout).
          height, width: grid size.
          objects: K triples ``[reward, P(terminate), P(respawn)]``.
          max_episode_steps: episode cap.
          random_layout: draw object cells in ``reset`` (True) or use a fixed layout.
          description: one-line description for the spec.
          layout: explicit flat object cells for a fixed layout (default: drawn
            from ``RandomState(zlib.crc32(name))``).
        """
        objects = np.asarray(objects, np.float32).reshape(-1, 3)
        self.height, self.width = int(height), int(width)
        self.num_cells = self.height * self.width
        self.num_objects = int(objects.shape[0])
        if self.num_objects > self.num_cells - 1:
            raise ValueError("too many objects for the grid")
        self.rewards = objects[:, 0]
        self.term_probs = objects[:, 1]
        self.respawn_probs = objects[:, 2]
        self.random_layout = bool(random_layout)
        if layout is None:
            rng = np.random.RandomState(zlib.crc32(name.encode()))
            layout = rng.choice(self.num_cells, self.num_objects, replace=False)
        self.fixed_layout = np.asarray(layout, np.int32)
        if len(set(self.fixed_layout.tolist())) != self.num_objects:
            raise ValueError("object cells must be distinct")
        self.spec = EnvSpec(
            name=name,
            description=description,
            observation_shape=(),
            num_actions=5,
            max_episode_steps=int(max_episode_steps),
            observation_dtype="int32",
            num_observations=self.num_cells * 2**self.num_objects,
        )

    # -- helpers ---------------------------------------------------------
    def observation(self, state: GridWorldState) -> chex.Array:
        bits = jnp.sum(state.present.astype(jnp.int32) * (2 ** jnp.arange(self.num_objects, dtype=jnp.int32)))
        return (state.agent * (2**self.num_objects) + bits).astype(jnp.int32)

    def _new_episode(self, u: chex.Array, object_pos: chex.Array, level: Level | None = None) -> GridWorldState:
        """All (active) objects present; the agent at the j-th free cell, j = floor(u * #free).

        Free cells hold no (active) object and no wall.
        """
        if level is None:
            free = ~jnp.zeros((self.num_cells,), jnp.bool_).at[object_pos].set(True)
            num_free = self.num_cells - self.num_objects
            present = jnp.ones((self.num_objects,), jnp.bool_)
        else:
            free = ~jnp.zeros((self.num_cells,), jnp.bool_).at[object_pos].set(level.active) & ~level.walls
            num_free = jnp.sum(free)
            present = level.active
        j = jnp.minimum((u * num_free).astype(jnp.int32), num_free - 1)
        agent = jnp.argmax(jnp.cumsum(free) > j).astype(jnp.int32)
        return GridWorldState(object_pos=object_pos, present=present, agent=agent, t=jnp.zeros((), jnp.int32), level=level)

    # -- Environment API -------------------------------------------------
    def reset(self, key: chex.PRNGKey) -> tuple[GridWorldState, TimeStep]:
        k_layout, k_agent = jax.random.split(key)
        if self.random_layout:
            object_pos = jax.random.permutation(k_layout, self.num_cells)[: self.num_objects].astype(jnp.int32)
        else:
            object_pos = jnp.asarray(self.fixed_layout)
        state = self._new_episode(jax.random.uniform(k_agent), object_pos)
        return state, first_timestep(self.observation(state))

    def step(self, state: GridWorldState, action: chex.Array, key: chex.PRNGKey) -> tuple[GridWorldState, TimeStep]:
        # One draw per step: u[0] termination, u[1:K+1] respawns, u[K+1] next start cell.
        u = jax.random.uniform(key, (self.num_objects + 2,))
        row, col = state.agent // self.width, state.agent % self.width
        move = jnp.asarray(_MOVES)[jnp.clip(action, 0, 4)]
        row = jnp.clip(row + move[0], 0, self.height - 1)
        col = jnp.clip(col + move[1], 0, self.width - 1)
        agent = (row * self.width + col).astype(jnp.int32)
        level = state.level
        if level is None:
            rewards, term_probs = jnp.asarray(self.rewards), jnp.asarray(self.term_probs)
            respawn_probs, cap = jnp.asarray(self.respawn_probs), self.spec.max_episode_steps
        else:
            rewards, term_probs, respawn_probs, cap = level.rewards, level.term_probs, level.respawn_probs, level.cap
            agent = jnp.where(level.walls[agent], state.agent, agent)  # walls block like the border

        hit = state.present & (state.object_pos == agent)  # at most one (distinct cells)
        reward = jnp.sum(jnp.where(hit, rewards, 0.0)).astype(jnp.float32)
        p_term = jnp.sum(jnp.where(hit, term_probs, 0.0))
        terminated = u[0] < p_term
        respawn = ~state.present & (u[1 : self.num_objects + 1] < respawn_probs)
        present = (state.present & ~hit) | respawn
        t = state.t + 1
        done = terminated | (t >= cap)

        next_state = GridWorldState(object_pos=state.object_pos, present=present, agent=agent, t=t, level=level)
        reset_state = self._new_episode(u[self.num_objects + 1], state.object_pos, level)
        next_state = jax.tree_util.tree_map(lambda r, n: jnp.where(done, r, n), reset_state, next_state)
        return next_state, TimeStep(
            observation=self.observation(next_state),
            reward=reward,
            discount=jnp.where(done, 0.0, 1.0).astype(jnp.float32),
            done=done,
        )


# name -> (height, width, objects, cap, random_layout)
_DENSE = [[1, 0, 0.05]] * 2 + [[-1, 0.5, 0.1], [-1, 0, 0.5]]
_LONG_HORIZON = [[1, 0, 0.01]] * 2 + [[-1, 0.5, 1]] * 2
GRIDWORLDS: dict[str, tuple[int, int, list, int, bool]] = {
    "gridworld/dense": (11, 11, _DENSE, 500, False),
    "gridworld/sparse": (13, 13, [[1, 1, 0], [-1, 1, 0]], 50, False),
    "gridworld/long_horizon": (11, 11, _LONG_HORIZON, 1000, False),
    "gridworld/longer_horizon": (7, 9, [[1, 0.1, 0.01]] * 2 + [[-1, 0.8, 1]] * 5, 2000, False),
    "gridworld/long_dense": (11, 11, [[1, 0, 0.005]] * 4, 2000, False),
    "gridworld/rand_dense": (11, 11, _DENSE, 500, True),
    "gridworld/rand_long_horizon": (11, 11, _LONG_HORIZON, 1000, True),
    "gridworld/rand_small": (5, 7, [[1, 0, 0.05]] * 2 + [[-1, 0.5, 0.1]] * 2, 500, True),
    "gridworld/rand_small_sparse": (5, 7, [[1, 1, 1]] + [[-1, 1, 1]] * 2, 50, True),
    "gridworld/rand_very_dense": (11, 11, [[1, 0, 1]], 2000, True),
}


def _describe(name: str) -> str:
    h, w, objects, cap, rand = GRIDWORLDS[name]
    layout = "random layout per seed" if rand else "fixed layout"
    count = f"{len(objects)} object{'' if len(objects) == 1 else 's'}"
    return f"LPG gridworld {h}x{w}, {count}, {layout}, cap {cap} (Oh et al. 2020, App. A)"


def make_gridworld(name: str) -> GridWorld:
    """Builds the registered gridworld ``name``."""
    h, w, objects, cap, rand = GRIDWORLDS[name]
    return GridWorld(name, h, w, objects, cap, rand, description=_describe(name))


for _name in GRIDWORLDS:
    register(_name, lambda _n=_name: make_gridworld(_n), _describe(_name))
