"""Tests of the procedural gridworlds (lpg/envs/procedural.py): drawn levels, walls, caps, level kept per lifetime."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lpg import envs
from lpg.envs.gridworld import GridWorldState, Level
from lpg.envs.procedural import ProceduralGridWorld, connected_from
from lpg.rollout import reset_actors

UP, DOWN, LEFT, RIGHT, STAY = range(5)


def _bfs(walkable: np.ndarray, start: int, width: int) -> set[int]:
    """Plain-Python 4-connected flood fill from ``start`` over a flat walkable mask."""
    height = walkable.size // width
    seen, todo = {start}, collections.deque([start])
    while todo:
        c = todo.popleft()
        r, k = divmod(c, width)
        for dr, dk in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            rr, kk = r + dr, k + dk
            n = rr * width + kk
            if 0 <= rr < height and 0 <= kk < width and walkable[n] and n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def _levels(name, n=64, seed=0):
    env = envs.make(name)
    states, ts = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(seed), n))
    return env, jax.tree.map(np.asarray, states), np.asarray(ts.observation)


def test_connected_from_matches_breadth_first_search():
    rng = np.random.default_rng(0)
    fill = jax.jit(connected_from, static_argnums=(2, 3))
    for _ in range(20):
        walkable = rng.random(7 * 9) < 0.6
        start = int(rng.choice(np.flatnonzero(walkable)))
        got = np.flatnonzero(np.asarray(fill(jnp.int32(start), jnp.asarray(walkable), 7, 9)))
        assert set(got.tolist()) == _bfs(walkable, start, 9)


@pytest.mark.parametrize("name", ["gridworld/procedural", "gridworld/procedural_small"])
def test_drawn_levels_are_valid(name):
    env, s, obs = _levels(name)
    lv, size = s.level, env.width
    lo, hi = env.size_range
    for i in range(len(s.agent)):
        walls, active = lv.walls[i], lv.active[i]
        walkable = ~walls
        rows, cols = np.nonzero(walkable.reshape(size, size))
        assert rows.max() < hi and cols.max() < hi  # inside the board
        # Every walkable cell (objects included) is reachable from the agent.
        assert _bfs(walkable, int(s.agent[i]), size) == set(np.flatnonzero(walkable).tolist())
        k = int(active.sum())
        assert 1 <= k <= env.num_objects and active[:k].all()  # the first k slots are the active ones
        pos = s.object_pos[i]
        assert len(set(pos.tolist())) == env.num_objects and walkable[pos[active]].all()
        assert int(s.agent[i]) not in pos[active].tolist() and walkable[s.agent[i]]
        assert walkable.sum() >= k + 1
        np.testing.assert_array_equal(s.present[i], active)
        rew, term, resp = lv.rewards[i], lv.term_probs[i], lv.respawn_probs[i]
        assert 0 <= rew[0] < 1 and (np.abs(rew) < 1).all()
        assert (term[active] >= env.term_range[0]).all() and (term[active] <= env.term_range[1]).all()
        assert (resp[active] >= env.respawn_range[0]).all() and (resp[active] <= env.respawn_range[1]).all()
        assert (rew[~active] == 0).all() and (term[~active] == 0).all() and (resp[~active] == 0).all()
        assert env.cap_range[0] <= int(lv.cap[i]) <= env.cap_range[1]
        bits = sum(1 << j for j in range(env.num_objects) if active[j])
        assert int(obs[i]) == int(s.agent[i]) * 2**env.num_objects + bits
    # Levels differ across keys: sizes span the range, object counts and caps vary.
    heights = {int(np.nonzero((~w).reshape(size, size).any(1))[0].max()) + 1 for w in lv.walls}
    assert max(heights) > lo and len({int(a.sum()) for a in lv.active}) > 1 and len(set(lv.cap.tolist())) > 30
    assert env.spec.num_observations == size * size * 2**env.num_objects


def test_episode_caps_are_mostly_longer_than_a_rollout():
    # log-uniform in [20, 750]: P(cap > 40) = log(751/40) / log(751/20) = 0.81.
    _, s, _ = _levels("gridworld/procedural", n=2000, seed=1)
    frac = (s.level.cap > 40).mean()
    assert 0.76 < frac < 0.86


def _hand_level(env: ProceduralGridWorld, walls, cap, rewards=(1.0, -1.0, 0.0, 0.0, 0.0), active=2):
    k = env.num_objects
    act = np.arange(k) < active
    return Level(
        rewards=jnp.asarray(rewards, jnp.float32),
        term_probs=jnp.zeros((k,), jnp.float32),
        respawn_probs=jnp.where(jnp.asarray(act), 1.0, 0.0).astype(jnp.float32),
        active=jnp.asarray(act),
        walls=jnp.asarray(walls),
        cap=jnp.int32(cap),
    )


def test_walls_block_and_the_level_cap_ends_episodes():
    env = envs.make("gridworld/procedural")  # 10x10 board, 5 object slots
    walls = np.zeros(100, bool)
    walls[[12, 21]] = True  # around cell 11 = (1, 1): up is cell 1, left is cell 10
    walls[60:] = True
    level = _hand_level(env, walls, cap=6)
    objects = jnp.asarray([13, 2, 50, 51, 52], jnp.int32)

    def state(agent, t=0, present=(True, True, False, False, False)):
        return GridWorldState(objects, jnp.asarray(present), jnp.int32(agent), jnp.int32(t), level)

    step = jax.jit(env.step)
    key = jax.random.PRNGKey(0)
    # From cell 11 = (1, 1): down (cell 21) and right (cell 12) are walls, so the agent stays.
    for action, target in ((DOWN, 11), (RIGHT, 11), (UP, 1), (LEFT, 10), (STAY, 11)):
        s, ts = step(state(11), action, key)
        assert int(s.agent) == target and int(s.t) == 1, (action, int(s.agent))
    s, ts = step(state(59), DOWN, key)  # row 6 and below are walls
    assert int(s.agent) == 59
    s, ts = step(state(14), LEFT, key)  # onto object 0 at cell 13: reward 1, no termination
    assert float(ts.reward) == 1.0 and not bool(ts.done)
    assert int(ts.observation) == 13 * 32 + 0b10  # object 0 gone, object 1 still there
    s, ts = step(state(3, t=4), DOWN, key)  # from cell 3 = (0, 3) down onto object 0 again, at t = 5
    assert float(ts.reward) == 1.0 and not bool(ts.done) and int(s.t) == 5
    s, ts = step(s, STAY, key)  # t reaches the level's cap of 6
    assert bool(ts.done) and float(ts.discount) == 0.0 and int(s.t) == 0
    # After the auto-reset: same level, active objects back, inactive ones absent, agent on a free cell.
    np.testing.assert_array_equal(s.present, [True, True, False, False, False])
    assert s.level is not None and int(s.level.cap) == 6
    assert not walls[int(s.agent)] and int(s.agent) not in (13, 2)
    # Inactive slots never respawn.
    for i in range(20):
        s, _ = step(s, STAY, jax.random.PRNGKey(i))
        assert not np.asarray(s.present[2:]).any()


def test_one_level_per_lifetime():
    env = envs.make("gridworld/procedural")
    actor = jax.jit(reset_actors, static_argnums=(0, 2))(env, jax.random.PRNGKey(3), 8)
    lv = jax.tree.map(np.asarray, actor.env_state.level)
    for leaf in jax.tree.leaves(lv):
        np.testing.assert_array_equal(leaf, np.broadcast_to(leaf[0], leaf.shape))  # the 8 envs share the level

    def run(state, keys):
        def body(s, k):
            a = jax.random.randint(k, (8,), 0, 5)
            s, ts = jax.vmap(env.step)(s, a, jax.random.split(k, 8))
            return s, ts.done

        return jax.lax.scan(body, state, keys)

    state, done = jax.jit(run)(actor.env_state, jax.random.split(jax.random.PRNGKey(4), 1500))
    assert np.asarray(done).sum() >= 8  # episodes ended and auto-reset ...
    for a, b in zip(jax.tree.leaves(jax.tree.map(np.asarray, state.level)), jax.tree.leaves(lv)):
        np.testing.assert_array_equal(a, b)  # ... on the same level


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size_range": (1, 4)},
        {"size_range": (6, 4)},
        {"max_objects": 0},
        {"size_range": (2, 4), "max_objects": 4},
        {"cap_range": (0, 10)},
        {"term_range": (0.0, 1.0)},
        {"respawn_range": (0.5, 1.5)},
        {"num_walls": 100},
    ],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        ProceduralGridWorld("test/procedural", **kwargs)
