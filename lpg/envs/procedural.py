"""Procedural gridworlds: a new level per task instance (per lifetime).

LPG's gridworlds (``lpg.envs.gridworld``) fix the grid, the objects' rewards
and probabilities and the episode cap; the random ones draw only where the
objects sit. A discovered objective meta-trained on a handful of them sees a
handful of tasks. GROOVE (Jackson et al. 2023, "Discovering General
Reinforcement Learning Algorithms with Adversarial Environment Design",
Sec. 5 and App. B) meta-trains LPG on a *generator* of gridworld levels
instead; ``gridworld/procedural`` follows its level generator (groove
``environments/gridworld/configs.py``; the defaults are its ranges):

* grid height and width uniform in ``size_range`` (default 4-10), inside a
  padded ``max x max`` board whose outer cells are walls;
* ``num_walls`` (default 15) wall cells drawn on the padded board, so a small
  level holds fewer of them; only the walkable cells connected to a random
  seed cell are kept (the rest become walls), so every object is reachable
  (groove does not ensure this); if fewer than ``K + 1`` cells stay
  connected, the level has no interior walls;
* ``K`` objects, uniform in ``1..max_objects``, on distinct walkable cells;
  rewards uniform in (-1, 1) with the first one positive (so every level has
  something worth reaching); termination and respawn probabilities
  log-uniform in ``term_range`` and ``respawn_range``;
* an episode cap log-uniform in ``cap_range`` (default 20-750): most episodes
  are longer than an agent's rollout, so carrying credit across a rollout
  boundary through the agent's own predictions has to be learned.

Everything is drawn by ``reset(key)`` and kept in the state
(``GridWorldState.level``) across automatic resets, so one ``reset`` is one
level for a whole lifetime, and the parallel environments of one agent (which
share the reset key) play the same level. The dynamics are the gridworld's
(``GridWorld.step``), with walls blocking moves like the border.

Observation: as in LPG's gridworlds, the index of the one-hot of
(agent cell on the padded board, presence bits of the ``max_objects`` slots):
``num_observations = max**2 * 2**max_objects`` (3,200 by default); a level
uses the part of the table its size and object count reach.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from lpg.envs import register
from lpg.envs.base import first_timestep
from lpg.envs.gridworld import GridWorld, GridWorldState, Level
from lpg.sampling import log_uniform


def connected_from(seed: chex.Array, walkable: chex.Array, height: int, width: int) -> chex.Array:
    """bool [H * W]: the walkable cells 4-connected to cell ``seed`` (a flood fill, H * W rounds)."""
    grid = walkable.reshape(height, width)
    reached = jnp.zeros((height, width), jnp.bool_).at[seed // width, seed % width].set(True) & grid

    def grow(_, r):
        padded = jnp.pad(r, 1)
        near = padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
        return r | (near & grid)

    return jax.lax.fori_loop(0, height * width, grow, reached).reshape(-1)


class ProceduralGridWorld(GridWorld):
    """A gridworld whose level is drawn per task instance (see the module docstring)."""

    def __init__(
        self,
        name: str,
        size_range: tuple[int, int] = (4, 10),
        max_objects: int = 5,
        cap_range: tuple[int, int] = (20, 750),
        term_range: tuple[float, float] = (0.01, 1.0),
        respawn_range: tuple[float, float] = (1e-3, 0.1),
        num_walls: int = 15,
        description: str = "",
    ):
        low, high = size_range
        if not 2 <= low <= high:
            raise ValueError(f"size_range must satisfy 2 <= low <= high, got {size_range}")
        if not 1 <= max_objects < low * low:
            raise ValueError(f"max_objects must be in 1..{low * low - 1} for a smallest grid of {low}x{low}")
        if not 1 <= cap_range[0] <= cap_range[1]:
            raise ValueError(f"cap_range must satisfy 1 <= low <= high, got {cap_range}")
        for label, (lo, hi) in (("term_range", term_range), ("respawn_range", respawn_range)):
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"{label} must satisfy 0 < low <= high <= 1, got {(lo, hi)}")
        if not 0 <= num_walls < high * high:
            raise ValueError(f"num_walls must be in 0..{high * high - 1} on a {high}x{high} board, got {num_walls}")
        # The static objects only fix K (and a placeholder layout); each level draws its own.
        super().__init__(
            name, high, high, [[0.0, 0.0, 0.0]] * max_objects, cap_range[1], True, description, list(range(max_objects))
        )
        self.size_range, self.cap_range = (int(low), int(high)), (int(cap_range[0]), int(cap_range[1]))
        self.term_range, self.respawn_range = tuple(map(float, term_range)), tuple(map(float, respawn_range))
        self.num_walls = int(num_walls)

    def draw_level(self, key: chex.PRNGKey) -> tuple[chex.Array, Level]:
        """Draws one level: the object cells int32 [K] and their ``Level``."""
        k_size, k_walls, k_seed, k_num, k_cells, k_rew, k_term, k_resp, k_cap = jax.random.split(key, 9)
        size = jax.random.randint(k_size, (2,), self.size_range[0], self.size_range[1] + 1)
        cell = jnp.arange(self.num_cells)
        inside = (cell // self.width < size[0]) & (cell % self.width < size[1])
        walls = jax.random.permutation(k_walls, self.num_cells)[: self.num_walls]
        walkable = inside & ~jnp.zeros((self.num_cells,), jnp.bool_).at[walls].set(True)
        seed = jnp.argmax(jnp.where(walkable, jax.random.uniform(k_seed, (self.num_cells,)), -1.0))
        reached = connected_from(seed, walkable, self.height, self.width)
        num_objects = jax.random.randint(k_num, (), 1, self.num_objects + 1)
        walkable = jnp.where(jnp.sum(reached) >= num_objects + 1, reached, inside)
        # K distinct cells, walkable ones first (there are more than num_objects of them).
        rank = jax.random.uniform(k_cells, (self.num_cells,)) + jnp.where(walkable, 0.0, 2.0)
        object_pos = jnp.argsort(rank)[: self.num_objects].astype(jnp.int32)
        active = jnp.arange(self.num_objects) < num_objects
        rewards = jax.random.uniform(k_rew, (self.num_objects,), minval=-1.0, maxval=1.0)
        rewards = rewards.at[0].set(jnp.abs(rewards[0]))
        level = Level(
            rewards=jnp.where(active, rewards, 0.0),
            term_probs=jnp.where(active, log_uniform(k_term, *self.term_range, (self.num_objects,)), 0.0),
            respawn_probs=jnp.where(active, log_uniform(k_resp, *self.respawn_range, (self.num_objects,)), 0.0),
            active=active,
            walls=~walkable,
            cap=jnp.floor(log_uniform(k_cap, self.cap_range[0], self.cap_range[1] + 1)).astype(jnp.int32),
        )
        return object_pos, level

    def reset(self, key: chex.PRNGKey) -> tuple[GridWorldState, object]:
        k_level, k_agent = jax.random.split(key)
        object_pos, level = self.draw_level(k_level)
        state = self._new_episode(jax.random.uniform(k_agent), object_pos, level)
        return state, first_timestep(self.observation(state))


PROCEDURAL = {
    "gridworld/procedural": {},
    "gridworld/procedural_small": {"size_range": (4, 6), "max_objects": 3, "cap_range": (20, 200), "num_walls": 5},
}


def _describe(name: str) -> str:
    env = ProceduralGridWorld(name, **PROCEDURAL[name])
    (lo, hi), (c_lo, c_hi) = env.size_range, env.cap_range
    return (
        f"procedural gridworld: a new level per seed, {lo}-{hi} a side, walls, 1-{env.num_objects} objects, "
        f"cap {c_lo}-{c_hi} (after GROOVE, Jackson et al. 2023)"
    )


def make_procedural(name: str) -> ProceduralGridWorld:
    """Builds the registered procedural gridworld ``name``."""
    return ProceduralGridWorld(name, **PROCEDURAL[name], description=_describe(name))


for _name in PROCEDURAL:
    register(_name, lambda _n=_name: make_procedural(_n), _describe(_name))
