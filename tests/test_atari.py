"""Atari-57 through envpool (skipped when envpool is not installed)."""

from __future__ import annotations

import time

import numpy as np
import pytest

envpool = pytest.importorskip("envpool")

import jax.numpy as jnp  # noqa: E402

from lpg import envs  # noqa: E402
from lpg.envs.atari import _MINIMAL_NUM_ACTIONS, ATARI_57, AtariEnv, make_atari  # noqa: E402

ATARI_NAMES = [name for name, _ in envs.list_envs(kind="atari")]


def _random_actions(rng, env, n=None):
    return rng.integers(0, env.num_actions, env.num_envs if n is None else n).astype(np.int32)


def _check_timestep(ts, batch, stack=4):
    assert ts.observation.shape == (batch, stack, 84, 84) and ts.observation.dtype == np.uint8
    assert ts.reward.shape == ts.discount.shape == ts.done.shape == (batch,)
    assert ts.reward.dtype == np.float32 and ts.discount.dtype == np.float32 and ts.done.dtype == np.bool_
    np.testing.assert_array_equal(ts.discount, (~ts.done).astype(np.float32))


def test_all_57_games_create_and_step():
    assert len(ATARI_NAMES) == 57
    assert all(f"{g}-v5" in envpool.list_all_envs() for g in ATARI_57)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for name in ATARI_NAMES:
        env = envs.make(name) if name == "atari/Pong" else make_atari(name, num_envs=1)
        assert isinstance(env, AtariEnv) and env.spec.name == name and env.spec.kind == "atari"
        assert env.spec.num_actions == int(env._pool.action_space.n) == _MINIMAL_NUM_ACTIONS[env.game], name
        ts = env.reset()
        _check_timestep(ts, env.num_envs)
        for _ in range(2):
            _check_timestep(env.step(_random_actions(rng, env)), env.num_envs)
        env.close()
    assert time.perf_counter() - start < 120.0  # about 30 s on a quiet 2-core machine; 70 s seen under load 7


def test_registry_default_is_the_standard_protocol():
    env = envs.make("atari/Breakout")
    cfg = env._pool.config
    assert env.num_envs == 8 and env.spec.observation_shape == (4, 84, 84) and env.spec.observation_dtype == "uint8"
    assert env.spec.max_episode_steps == 27000 and cfg["max_episode_steps"] == 27000
    assert cfg["frame_skip"] == 4 and cfg["stack_num"] == 4 and cfg["noop_max"] == 30
    assert cfg["reward_clip"] is False and cfg["episodic_life"] is False
    assert cfg["repeat_action_probability"] == 0.0 and cfg["gray_scale"] is True
    env.close()


def test_shapes_dtypes_and_jax_actions():
    env = make_atari("Pong", num_envs=3, full_action_space=True, sticky_actions=0.25)
    assert env.num_actions == 18
    ts = env.reset()
    _check_timestep(ts, 3)
    np.testing.assert_array_equal(ts.reward, 0.0)
    np.testing.assert_array_equal(ts.done, False)
    ts = env.step(jnp.array([0, 5, 17], jnp.int32))
    _check_timestep(ts, 3)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="lie in"):
        env.step(np.array([0, 1, 18]))
    env.close()


def test_step_before_reset_is_an_error():
    env = make_atari("Pong", num_envs=1)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(1, np.int32))
    env.close()


def _distinct(observations):
    return len({o.tobytes() for o in observations})


def test_noop_starts():
    # Freeway's cars move from the first frame, so the number of no-ops shows.
    random_start = make_atari("Freeway", num_envs=8, noop_max=30).reset().observation
    assert _distinct(random_start) >= 3
    fixed = [make_atari("Freeway", num_envs=8, noop_max=0, seed=s).reset().observation for s in (0, 123)]
    assert _distinct(np.concatenate(fixed)) == 1
    # A reset observation repeats its single frame over the whole stack.
    assert all((o == o[:1]).all() for o in random_start)


def test_auto_reset_convention_on_time_limit():
    # 40 frames = 10 agent steps: every episode is truncated after exactly 10 steps.
    env = make_atari("Pong", num_envs=4, max_episode_frames=40, noop_max=30)
    assert env.spec.max_episode_steps == 10
    rng = np.random.default_rng(0)
    prev = env.reset()
    done_steps = []
    for t in range(1, 36):
        ts, info = env.step_with_info(_random_actions(rng, env))
        _check_timestep(ts, 4)
        if ts.done.any():
            done_steps.append(t)
            assert ts.done.all(), "all envs started together and have the same time limit"
            np.testing.assert_array_equal(ts.discount, 0.0)
            assert info.truncated.all() and info.game_over.all()
            # The observation is already the first one of the next episode.
            assert all((o == o[:1]).all() for o in ts.observation)
        else:
            np.testing.assert_array_equal(ts.discount, 1.0)
            assert not info.truncated.any() and not info.game_over.any()
            # Within an episode the frame stack shifts by one frame per step.
            np.testing.assert_array_equal(ts.observation[:, :-1], prev.observation[:, 1:])
        prev = ts
    # No extra "reset step": episodes are exactly 10 steps long back to back.
    assert done_steps == [10, 20, 30]
    assert len(env.pop_game_scores()) == 12 and env.pop_game_scores() == []


def test_auto_reset_first_step_of_new_episode_continues_the_reset_observation():
    env = make_atari("Pong", num_envs=2, max_episode_frames=20, noop_max=30)
    rng = np.random.default_rng(1)
    env.reset()
    for _ in range(5):
        ts = env.step(_random_actions(rng, env))
    assert ts.done.all()
    nxt = env.step(_random_actions(rng, env))
    assert not nxt.done.any()
    np.testing.assert_array_equal(nxt.observation[:, :-1], ts.observation[:, 1:])


def test_episodic_life_reports_full_game_scores():
    env = make_atari("Breakout", num_envs=2, episodic_life=True, seed=3)
    rng = np.random.default_rng(3)
    env.reset()
    life_returns = [[], []]
    game_scores = [[], []]
    lives_lost = [0, 0]
    prev_lives = None
    for _ in range(4000):
        ts, info = env.step_with_info(_random_actions(rng, env))
        for i in range(2):
            if ts.done[i]:
                assert ts.discount[i] == 0.0
                life_returns[i].append(float(info.episode_return[i]))
                if info.game_over[i]:
                    game_scores[i].append((float(info.game_score[i]), sum(life_returns[i])))
                    life_returns[i] = []
                else:
                    lives_lost[i] += 1
                    assert info.lives[i] < prev_lives[i]
            else:
                assert not info.game_over[i]
        prev_lives = info.lives
        if all(game_scores):
            break
    assert all(game_scores), "a random Breakout game should end within 4000 steps"
    assert min(lives_lost) >= 4  # 5 lives: the learning episodes end at each life loss
    for scores in game_scores:
        for game_score, sum_of_lives in scores:
            assert game_score == pytest.approx(sum_of_lives)
    assert sorted(env.pop_game_scores()) == sorted(s for scores in game_scores for s, _ in scores)


def test_without_episodic_life_a_life_loss_is_not_an_episode_end():
    env = make_atari("Breakout", num_envs=1, seed=3)
    rng = np.random.default_rng(3)
    env.reset()
    lives = []
    for _ in range(4000):
        ts, info = env.step_with_info(_random_actions(rng, env))
        if ts.done[0]:
            assert info.game_over[0] and info.game_score[0] == info.episode_return[0]
            assert not info.truncated[0]
            break
        lives.append(int(info.lives[0]))
    else:
        pytest.fail("a random Breakout game should end within 4000 steps")
    assert lives[0] == 5 and min(lives) == 1  # lives were lost without ending the episode


def test_rewards_are_not_clipped():
    env = make_atari("SpaceInvaders", num_envs=4, seed=1)
    rng = np.random.default_rng(1)
    env.reset()
    rewards = np.concatenate([env.step(_random_actions(rng, env)).reward for _ in range(400)])
    assert rewards.max() > 1.0  # invaders are worth 5 to 30 points


@pytest.mark.parametrize("variant", ["python_api", "xla_loop", "xla_per_call", "atari_env"])
def test_benchmark_variants_run(variant):
    from lpg.envs.atari import benchmark

    result = benchmark(variant, num_envs=2, num_steps=10)
    assert result["variant"] == variant and result["env_steps_per_s"] > 0 and result["cpu_us_per_env_step"] > 0
