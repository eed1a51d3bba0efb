"""Tests of the pure-JAX toy environments on hand-worked cases."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lpg import envs
from lpg.envs.catch import Catch
from lpg.envs.gridworld import GridWorld, GridWorldState
from lpg.envs.snake import Snake, SnakeState
from lpg.errors import InvalidConfigError

TOY_ENVS = [name for name, _ in envs.list_envs(kind="toy")]


def _rollout(env, num_envs, num_steps, seed=0, policy=None):
    """jit(vmap(reset) + scan(vmap(step))): returns (first states, first timesteps, states, timesteps)."""

    def run(key):
        k_reset, k_run = jax.random.split(key)
        state, ts0 = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs))

        def body(state, key):
            k_act, k_step = jax.random.split(key)
            if policy is None:
                action = jax.random.randint(k_act, (num_envs,), 0, env.spec.num_actions)
            else:
                action = jax.vmap(policy)(state)
            state, ts = jax.vmap(env.step)(state, action, jax.random.split(k_step, num_envs))
            return state, (state, ts)

        _, (states, tss) = jax.lax.scan(body, state, jax.random.split(k_run, num_steps))
        return state, ts0, states, tss

    return jax.jit(run)(jax.random.PRNGKey(seed))


# ----------------------------------------------------------------------------- all envs
def test_expected_toy_envs_are_registered():
    expected = set(envs.ENV_SETS["toy"]) | {"mrp", "catch", "snake"}
    assert expected <= set(TOY_ENVS)


@pytest.mark.parametrize("name", TOY_ENVS)
def test_shapes_dtypes_and_ranges_under_jit_vmap_scan(name):
    env = envs.make(name)
    spec = env.spec
    num_envs, num_steps = 3, 25
    _, ts0, _states, ts = _rollout(env, num_envs, num_steps)
    assert ts0.observation.shape == (num_envs,) + spec.observation_shape
    assert ts.observation.shape == (num_steps, num_envs) + spec.observation_shape
    assert ts.observation.dtype == jnp.dtype(spec.observation_dtype)
    assert ts.reward.shape == ts.discount.shape == ts.done.shape == (num_steps, num_envs)
    assert ts.reward.dtype == jnp.float32 and ts.discount.dtype == jnp.float32 and ts.done.dtype == jnp.bool_
    np.testing.assert_array_equal(ts0.reward, 0.0)
    np.testing.assert_array_equal(ts0.discount, 1.0)
    assert not ts0.done.any()
    np.testing.assert_array_equal(ts.discount, np.where(ts.done, 0.0, 1.0))
    obs = np.asarray(ts.observation)
    if spec.is_tabular:
        assert spec.num_observations is not None
        assert obs.min() >= 0 and obs.max() < spec.num_observations
        assert (np.asarray(ts0.observation) < spec.num_observations).all()
    else:
        assert np.isfinite(obs).all()
    assert spec.kind == "toy" and spec.max_episode_steps > 0 and spec.num_actions >= 1
    if name == "snake":
        _check_snake_observations(obs.reshape((-1,) + spec.observation_shape))


# ----------------------------------------------------------------------------- chains
def test_chain_reward_depends_only_on_first_action():
    env = envs.make("chain/short")
    state0, _ = env.reset(jax.random.PRNGKey(0))
    length = 5
    seqs = np.array(list(itertools.product([0, 1], repeat=2 * length)), np.int32)  # two episodes

    def episode(correct, actions):
        state = state0.replace(length=jnp.int32(length), correct=correct)

        def body(state, xs):
            action, key = xs
            state, ts = env.step(state, action, key)
            return state, (ts, state)

        keys = jax.random.split(jax.random.PRNGKey(1), 2 * length)
        _, (ts, states) = jax.lax.scan(body, state, (actions, keys))
        return ts, states

    run = jax.jit(jax.vmap(episode, in_axes=(None, 0)))
    for correct in (0, 1):
        ts, states = run(jnp.int32(correct), jnp.asarray(seqs))
        reward, done, discount = np.asarray(ts.reward), np.asarray(ts.done), np.asarray(ts.discount)
        for _episode_index, first in ((0, 0), (1, length)):
            steps = slice(first, first + length)
            expected = np.where(seqs[:, first] == correct, 1.0, -1.0)
            np.testing.assert_array_equal(reward[:, first + length - 1], expected)
            np.testing.assert_array_equal(reward[:, steps][:, :-1], 0.0)
            np.testing.assert_array_equal(done[:, steps], [[False] * (length - 1) + [True]] * len(seqs))
            np.testing.assert_array_equal(discount[:, first + length - 1], 0.0)
        # Observations walk down the branch chosen by the first action, whatever follows.
        obs = np.asarray(ts.observation)
        branch_offset = 1 + seqs[:, :1] * env.max_length
        np.testing.assert_array_equal(obs[:, : length - 1], branch_offset + np.arange(length - 1))
        np.testing.assert_array_equal(obs[:, length - 1], 0)  # next episode's start
        np.testing.assert_array_equal(states.length, length)  # kept across the auto-reset


def test_chain_lengths_and_correct_actions_vary_per_seed():
    for name, max_length in (("chain/short", 30), ("chain/long", 50)):
        env = envs.make(name)
        states, _ = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), 400))
        lengths = np.asarray(states.length)
        assert lengths.min() == 5 and lengths.max() == max_length
        assert len(np.unique(lengths)) == max_length - 4
        assert set(np.unique(states.correct)) == {0, 1}
        assert env.spec.max_episode_steps == max_length
        assert env.spec.num_observations == 1 + 2 * max_length
        assert env.spec.optimal_return == 1.0 and env.spec.random_return == 0.0


def test_chain_episode_length_equals_chain_length_in_rollout():
    env = envs.make("chain/short_noisy")
    states0, _, _, ts = _rollout(env, 4, 100, seed=3)
    done = np.asarray(ts.done)
    reward = np.asarray(ts.reward)
    for b in range(4):
        ends = np.flatnonzero(done[:, b]) + 1  # steps taken at each episode end
        length = int(states0.length[b])
        np.testing.assert_array_equal(ends, np.arange(1, len(ends) + 1) * length)
    # Noisy chains: every reward is +1 or -1 (intermediate noise and terminal reward).
    assert set(np.unique(reward)) == {-1.0, 1.0}


def test_chain_distractor_observation():
    env = envs.make("chain/distractor")
    assert env.spec.observation_shape == (61 + 20,) and env.spec.observation_dtype == "float32"
    _, _ts0, _, ts = _rollout(env, 2, 30, seed=1)
    obs = np.asarray(ts.observation)
    np.testing.assert_array_equal(obs[..., :61].sum(-1), 1.0)
    bits = obs[..., 61:]
    assert set(np.unique(bits)) == {0.0, 1.0}
    assert 0.35 < bits.mean() < 0.65
    assert (bits[1:] != bits[:-1]).any(axis=-1).all()  # re-drawn every step


# ----------------------------------------------------------------------------- MRP
def test_mrp_rewards_and_episode_length():
    env = envs.make("mrp")
    assert env.spec.num_actions == 1 and env.spec.num_observations == 10
    _states0, ts0, _, ts = _rollout(env, 200, 100)
    np.testing.assert_array_equal(ts0.observation, 0)
    obs = np.asarray(ts.observation)
    reward = np.asarray(ts.reward)
    done = np.asarray(ts.done)
    leaving = np.concatenate([np.asarray(ts0.observation)[None], obs[:-1]])  # state left at each step
    np.testing.assert_array_equal(leaving, np.broadcast_to(np.arange(100)[:, None] % 10, leaving.shape))
    np.testing.assert_array_equal(done, leaving == 9)
    np.testing.assert_array_equal(reward[leaving % 2 == 0], np.float32(0.1))
    odd = reward[leaving % 2 == 1]
    assert odd.size == 10_000
    assert abs(odd.mean()) < 0.05 and abs(odd.std() - 1.0) < 0.05
    returns = reward.reshape(10, 10, 200).sum(1)
    assert abs(returns.mean() - 0.5) < 0.1


# ----------------------------------------------------------------------------- gridworlds
def _grid_state(agent, object_pos, present, t=0):
    return GridWorldState(
        object_pos=jnp.asarray(object_pos, jnp.int32),
        present=jnp.asarray(present, jnp.bool_),
        agent=jnp.int32(agent),
        t=jnp.int32(t),
    )


UP, DOWN, LEFT, RIGHT, STAY = range(5)


def test_gridworld_termination_on_pick_up():
    env = envs.make("gridworld/rand_small_sparse")  # 5x7, [1,1,1], 2x[-1,1,1]
    step = jax.jit(env.step)
    key = jax.random.PRNGKey(0)
    objects = [17, 0, 34]  # (2,3), (0,0), (4,6)
    state, ts = step(_grid_state(16, objects, [True] * 3, t=7), RIGHT, key)  # (2,2) -> (2,3)
    assert float(ts.reward) == 1.0 and bool(ts.done) and float(ts.discount) == 0.0
    np.testing.assert_array_equal(state.object_pos, objects)  # layout kept across the auto-reset
    assert bool(state.present.all()) and int(state.t) == 0 and int(state.agent) not in objects
    assert int(ts.observation) == int(state.agent) * 8 + 7
    state, ts = step(_grid_state(1, objects, [True] * 3, t=3), LEFT, key)  # (0,1) -> (0,0)
    assert float(ts.reward) == -1.0 and bool(ts.done) and float(ts.discount) == 0.0
    # An absent object gives nothing.
    state, ts = step(_grid_state(1, objects, [True, False, True], t=3), LEFT, key)
    assert float(ts.reward) == 0.0 and not bool(ts.done) and int(state.agent) == 0


def test_gridworld_sparse_pick_up_ends_episode():
    env = envs.make("gridworld/sparse")
    obj = int(env.fixed_layout[0])
    row, col = divmod(obj, 13)
    agent, action = (obj - 1, RIGHT) if col > 0 else (obj + 1, LEFT)
    if agent in env.fixed_layout:
        agent, action = (obj - 13, DOWN) if row > 0 else (obj + 13, UP)
    _, ts = jax.jit(env.step)(_grid_state(agent, env.fixed_layout, [True, True]), action, jax.random.PRNGKey(0))
    assert float(ts.reward) == 1.0 and bool(ts.done) and float(ts.discount) == 0.0


def test_gridworld_respawn_probability_one_and_zero():
    env = GridWorld("test/respawn", 3, 3, [[1, 0, 1], [1, 0, 0]], 100, random_layout=False, layout=[4, 8])
    step = jax.jit(env.step)
    key = jax.random.PRNGKey(0)
    # Pick up object 0 (cell 4) from cell 3: reward, no termination, object gone this step.
    state, ts = step(_grid_state(3, [4, 8], [True, True]), RIGHT, key)
    assert float(ts.reward) == 1.0 and not bool(ts.done)
    np.testing.assert_array_equal(state.present, [False, True])
    assert int(ts.observation) == 4 * 4 + 0b10
    # Respawn probability 1: back on the next step (the agent walks away).
    state, ts = step(state, LEFT, key)
    np.testing.assert_array_equal(state.present, [True, True])
    assert float(ts.reward) == 0.0 and int(ts.observation) == 3 * 4 + 0b11
    # Pick up object 1 (cell 8), respawn probability 0: never back.
    state, ts = step(_grid_state(5, [4, 8], [True, True]), DOWN, key)
    assert float(ts.reward) == 1.0
    state = state.replace(agent=jnp.int32(0))
    for i in range(30):
        state, ts = step(state, STAY, jax.random.PRNGKey(i))
        np.testing.assert_array_equal(state.present, [True, False])
        assert float(ts.reward) == 0.0


def test_gridworld_wall_keeps_position():
    env = GridWorld("test/walls", 3, 4, [[1, 0, 0]], 100, random_layout=False, layout=[5])
    step = jax.jit(env.step)
    key = jax.random.PRNGKey(0)
    for agent, action in ((0, UP), (0, LEFT), (3, UP), (3, RIGHT), (8, DOWN), (8, LEFT), (11, DOWN), (11, RIGHT)):
        state, ts = step(_grid_state(agent, [5], [True], t=2), action, key)
        assert int(state.agent) == agent and int(state.t) == 3 and not bool(ts.done)
        assert int(ts.observation) == agent * 2 + 1
    moves = {UP: 2, DOWN: 10, LEFT: 5, RIGHT: 7, STAY: 6}  # from cell 6 = (1, 2)
    for action, target in moves.items():
        state, _ = step(_grid_state(6, [0], [True]), action, key)
        assert int(state.agent) == target


def test_gridworld_episode_cap():
    env = envs.make("gridworld/sparse")  # cap 50
    free = next(c for c in range(169) if c not in env.fixed_layout)
    step = jax.jit(env.step)
    state, ts = step(_grid_state(free, env.fixed_layout, [True, True], t=48), STAY, jax.random.PRNGKey(0))
    assert not bool(ts.done) and int(state.t) == 49
    state, ts = step(state, STAY, jax.random.PRNGKey(0))
    assert bool(ts.done) and float(ts.discount) == 0.0 and float(ts.reward) == 0.0 and int(state.t) == 0


def test_gridworld_layouts():
    # Random layouts differ across reset keys, objects on distinct cells, agent never on an object.
    env = envs.make("gridworld/rand_dense")
    states, ts = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), 16))
    pos = np.asarray(states.object_pos)
    assert len({tuple(p) for p in pos}) == 16
    assert all(len(set(p)) == 4 for p in pos)
    assert all(a not in p for a, p in zip(np.asarray(states.agent), pos))
    np.testing.assert_array_equal(ts.observation, np.asarray(states.agent) * 16 + 15)
    # Fixed layouts do not depend on the key.
    fixed = envs.make("gridworld/dense")
    states, _ = jax.jit(jax.vmap(fixed.reset))(jax.random.split(jax.random.PRNGKey(0), 4))
    np.testing.assert_array_equal(states.object_pos, np.broadcast_to(fixed.fixed_layout, (4, 4)))
    np.testing.assert_array_equal(envs.make("gridworld/dense").fixed_layout, fixed.fixed_layout)
    # Random layouts stay fixed across auto-resets.
    env = envs.make("gridworld/rand_small_sparse")
    states0, _, states, ts = _rollout(env, 8, 300)
    assert np.asarray(ts.done).sum(0).min() >= 3
    np.testing.assert_array_equal(states.object_pos, np.broadcast_to(states0.object_pos, states.object_pos.shape))
    agent, pos = np.asarray(states.agent), np.asarray(states.object_pos)
    new_episode = np.asarray(states.t) == 0
    assert not (new_episode & (agent[..., None] == pos).any(-1)).any()


# ----------------------------------------------------------------------------- catch
def test_catch():
    env = Catch()
    assert env.spec.observation_shape == (10, 5) and env.spec.random_return == pytest.approx(-0.6)

    def follow(state):
        return jnp.sign(state.ball_col - state.paddle_col).astype(jnp.int32) + 1

    states0, ts0, states, ts = _rollout(env, 16, 27, policy=follow)
    obs0 = np.asarray(ts0.observation)
    np.testing.assert_array_equal(obs0.sum((1, 2)), 2.0)
    np.testing.assert_array_equal(obs0[:, 9, 2], 1.0)
    np.testing.assert_array_equal(obs0[:, 0].argmax(-1), states0.ball_col)
    done = np.asarray(ts.done)
    np.testing.assert_array_equal(done, np.broadcast_to((np.arange(27) % 9 == 8)[:, None], done.shape))
    np.testing.assert_array_equal(np.asarray(ts.reward), np.where(done, 1.0, 0.0))
    assert len(np.unique(states.ball_col)) > 1

    # Always left: caught only when the ball falls in column 0.
    states0, _, _, ts = _rollout(env, 32, 9, seed=1, policy=lambda s: jnp.int32(0))
    np.testing.assert_array_equal(ts.reward[-1], np.where(np.asarray(states0.ball_col) == 0, 1.0, -1.0))


# ----------------------------------------------------------------------------- snake
def _check_snake_observations(obs):
    body, head, tail, fruit, order = (obs[..., i] for i in range(5))
    np.testing.assert_array_equal(head.sum((1, 2)), 1.0)
    np.testing.assert_array_equal(fruit.sum((1, 2)), 1.0)
    np.testing.assert_array_equal(tail.sum((1, 2)), 1.0)
    assert (body[head == 1] == 1).all() and (body[tail == 1] == 1).all() and (body[fruit == 1] == 0).all()
    assert (order[head == 1] == 1).all()
    length = body.sum((1, 2))
    np.testing.assert_allclose(order.sum((1, 2)), (length + 1) / 2, rtol=1e-5)  # sum_k k/L, k=1..L
    np.testing.assert_allclose(order[tail == 1], 1 / length, rtol=1e-5)


def _snake_state(cells, fruit, t):
    """A snake whose body is ``cells`` (tail first, head last), the head entered at step t."""
    entered = np.full(144, -(10**6), np.int32)
    for i, (r, c) in enumerate(cells):
        entered[r * 12 + c] = t - (len(cells) - 1 - i)
    hr, hc = cells[-1]
    return SnakeState(
        entered=jnp.asarray(entered),
        head=jnp.int32(hr * 12 + hc),
        fruit=jnp.int32(fruit[0] * 12 + fruit[1]),
        length=jnp.int32(len(cells)),
        t=jnp.int32(t),
    )


S_UP, S_RIGHT, S_DOWN, S_LEFT = range(4)


def test_snake():
    env = Snake()
    assert env.spec.observation_shape == (12, 12, 5) and env.spec.optimal_return == 143
    step = jax.jit(env.step)
    observe = jax.jit(env.observation)
    key = jax.random.PRNGKey(0)
    # Eating: +1, grows, new fruit on an empty cell.
    state, ts = step(_snake_state([(5, 5)], (5, 6), t=0), S_RIGHT, key)
    assert float(ts.reward) == 1.0 and not bool(ts.done) and int(state.length) == 2
    obs = np.asarray(ts.observation)
    _check_snake_observations(obs[None])
    assert obs[5, 6, 1] == 1 and obs[5, 5, 2] == 1 and obs[..., 0].sum() == 2
    assert obs[5, 5, 0] == 1 and obs[5, 6, 0] == 1 and obs[5, 5, 4] == 0.5
    state, ts = step(state, S_RIGHT, key)  # no fruit at (5, 7) unless drawn there
    if int(state.fruit) != 5 * 12 + 7:
        obs = np.asarray(ts.observation)
        assert float(ts.reward) == 0.0 and obs[..., 0].sum() == 2 and obs[5, 7, 1] == 1 and obs[5, 6, 2] == 1
    # Leaving the board ends the episode.
    state, ts = step(_snake_state([(1, 3), (0, 3)], (5, 5), t=9), S_UP, key)
    assert bool(ts.done) and float(ts.discount) == 0.0 and float(ts.reward) == 0.0
    assert int(state.length) == 1 and int(state.t) == 0
    _check_snake_observations(np.asarray(ts.observation)[None])
    state, ts = step(_snake_state([(3, 11)], (5, 5), t=2), S_RIGHT, key)
    assert bool(ts.done)
    # Biting the body ends the episode; moving into the vacating tail does not.
    u_shape = [(3, 4), (4, 4), (4, 5), (5, 5), (5, 4)]
    _, ts = step(_snake_state(u_shape, (10, 10), t=4), S_UP, key)
    assert bool(ts.done) and float(ts.discount) == 0.0
    state, ts = step(_snake_state(u_shape[1:], (10, 10), t=4), S_UP, key)
    assert not bool(ts.done) and int(state.head) == 4 * 12 + 4
    _check_snake_observations(np.asarray(ts.observation)[None])
    _check_snake_observations(np.asarray(observe(_snake_state(u_shape, (10, 10), t=4)))[None])


def test_mrp_noisy_states_are_a_parameter():
    from lpg.envs.mrp import MRP

    env = MRP(noisy_states=(0, 4))
    state, _ = env.reset(jax.random.PRNGKey(0))
    rewards = []
    for t in range(10):
        state, step = env.step(state, jnp.zeros((), jnp.int32), jax.random.PRNGKey(t + 1))
        rewards.append(float(step.reward))
    deterministic = [r for i, r in enumerate(rewards) if i not in (0, 4)]
    assert deterministic == pytest.approx([0.1] * 8) and rewards[0] != 0.1 and rewards[4] != 0.1
    assert env.spec.optimal_return == pytest.approx(0.8) and "states 0, 4" in env.spec.description
    with pytest.raises(InvalidConfigError, match=r"noisy states must lie in 0\.\.9"):
        MRP(noisy_states=(10,))


def test_chain_length_range_is_a_parameter():
    from lpg.envs.chain import DelayedChain

    env = DelayedChain("chain/fixed", max_length=7, min_length=7)
    lengths = {int(env.reset(jax.random.PRNGKey(k))[0].length) for k in range(20)}
    assert lengths == {7}
    with pytest.raises(InvalidConfigError, match="1 <= min_length <= max_length"):
        DelayedChain("chain/bad", max_length=3, min_length=4)
