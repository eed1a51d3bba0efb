"""The gymnax adapter (lpg/envs/gymnax_suite.py): specs, auto-reset, discounts, batching, torso, training."""

from __future__ import annotations

import json

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lpg import envs
from lpg.bench import bench_envs, require_jax_envs
from lpg.cli import main
from lpg.envs.gymnax_suite import _GAMES, GymnaxEnv
from lpg.networks import make_agent

GYMNAX_ENVS = [name for name, _ in envs.list_envs(kind="gymnax")]
REQUIRED = {
    *(f"{game}-MinAtar" for game in ("Asterix", "Breakout", "Freeway", "SpaceInvaders", "Seaquest")),
    *(f"{game}-bsuite" for game in ("Catch", "DeepSea", "MemoryChain", "UmbrellaChain", "DiscountingChain")),
    "CartPole-v1",
    "Acrobot-v1",
    "MountainCar-v0",
}


def _scan(env, num_envs, num_steps, policy, seed=0):
    """jit(vmap(reset) + scan(vmap(step))) with ``policy(key, obs) -> actions [B]``.

    Returns (first timesteps [B], timesteps [T, B], gymnax states [T, B], step keys [T, B]).
    """

    def run(key):
        k_reset, k_run = jax.random.split(key)
        state, ts0 = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs))

        def body(carry, key):
            state, obs = carry
            k_act, k_step = jax.random.split(key)
            step_keys = jax.random.split(k_step, num_envs)
            state, ts = jax.vmap(env.step)(state, policy(k_act, obs), step_keys)
            return (state, ts.observation), (ts, state, step_keys)

        _, (ts, states, keys) = jax.lax.scan(body, (state, ts0.observation), jax.random.split(k_run, num_steps))
        return ts0, ts, states, keys

    return jax.jit(run)(jax.random.PRNGKey(seed))


def _uniform(num_actions, num_envs):
    return lambda key, obs: jax.random.randint(key, (num_envs,), 0, num_actions, jnp.int32)


def test_registry_sets_and_listing(capsys):
    assert set(GYMNAX_ENVS) == {f"gymnax/{game}" for game in REQUIRED} == {f"gymnax/{game}" for game in _GAMES}
    assert set(envs.ENV_SETS["gymnax"]) == set(GYMNAX_ENVS)
    assert envs.resolve_env_spec("minatar") == [
        f"gymnax/{g}-MinAtar" for g in ("Asterix", "Breakout", "Freeway", "SpaceInvaders", "Seaquest")
    ]
    assert envs.resolve_env_spec("gymnax/*-bsuite") == [n for n in GYMNAX_ENVS if n.endswith("-bsuite")]
    assert set(GYMNAX_ENVS).isdisjoint(name for name, _ in envs.list_envs(kind="toy"))
    assert main(["envs", "--kind", "gymnax"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[: len(GYMNAX_ENVS)]] == GYMNAX_ENVS
    assert all(envs.make_spec(name).is_jax for name in GYMNAX_ENVS)
    assert require_jax_envs(GYMNAX_ENVS, "lpg bench envs") == GYMNAX_ENVS


@pytest.mark.parametrize("name", GYMNAX_ENVS)
def test_static_spec_matches_gymnax_and_shapes(name):
    """The spec (written down so listing skips the slow gymnax import) is what gymnax says; shapes of reset and step."""
    env = envs.make(name)
    spec = env.spec
    game_env, params = gymnax.make(name.removeprefix("gymnax/"))
    assert spec.kind == "gymnax" and spec.observation_dtype == "float32"
    assert spec.num_actions == game_env.num_actions
    assert spec.max_episode_steps == int(params.max_steps_in_episode)
    assert spec.observation_shape == tuple(game_env.observation_space(params).shape)
    key = jax.random.PRNGKey(0)
    state, ts0 = jax.eval_shape(env.reset, key)
    _, ts = jax.eval_shape(env.step, state, jnp.int32(0), key)
    for t in (ts0, ts):
        assert t.observation.shape == spec.observation_shape and t.observation.dtype == jnp.float32
        assert t.reward.shape == t.discount.shape == t.done.shape == ()
        assert t.reward.dtype == t.discount.dtype == jnp.float32 and t.done.dtype == jnp.bool_
    torso = make_agent(spec).network.torso
    assert torso == ("minatar_conv" if name.endswith("-MinAtar") else "mlp")


def test_minatar_observation_values_and_conv_torso():
    env = GymnaxEnv("Breakout-MinAtar")  # a fresh instance: its gymnax game is first built inside the jit below
    ts0, ts, _, _ = _scan(env, 2, 30, _uniform(3, 2))
    obs = np.concatenate([np.asarray(ts0.observation)[None], np.asarray(ts.observation)])
    assert obs.shape == (31, 2, 10, 10, 4) and obs.dtype == np.float32
    assert set(np.unique(obs)) <= {0.0, 1.0}
    assert obs[..., 0].sum(axis=(-1, -2)).min() == 1  # channel 0: the paddle, one cell, always
    # Used eagerly after that traced first use (a leaked tracer of the action set would raise here).
    state, first = env.reset(jax.random.PRNGKey(3))
    _, after = env.step(state, jnp.int32(2), jax.random.PRNGKey(4))
    assert first.observation.shape == after.observation.shape == (10, 10, 4)

    agent = make_agent(env.spec)
    params = agent.init(jax.random.PRNGKey(0))["params"]
    assert params["Conv_0"]["kernel"].shape == (3, 3, 4, 16)  # 3x3/16, valid padding: 10x10 -> 8x8
    assert params["Dense_0"]["kernel"].shape == (8 * 8 * 16, 128)
    out = agent.apply({"params": params}, jnp.asarray(obs[:3]))
    assert out.logits.shape == (3, 2, 3) and out.value.shape == (3, 2)
    assert (agent.chunk_size, agent.slow_rolled_scan) == ((0, True) if jax.default_backend() == "cpu" else (0, False))


def test_auto_reset_and_discount_at_termination():
    """CartPole pushed left always falls within a few dozen steps: reward 1, done, discount 0, and a fresh start."""
    env = GymnaxEnv("CartPole-v1")
    game_env, params = env.gymnax_env
    num_envs, num_steps = 3, 80
    ts0, ts, states, keys = _scan(env, num_envs, num_steps, lambda key, obs: jnp.zeros((num_envs,), jnp.int32))
    done = np.asarray(ts.done)
    assert done.any(axis=0).all() and done.sum() >= 2 * num_envs  # every environment ended episodes, some twice
    np.testing.assert_array_equal(ts.discount, np.where(done, 0.0, 1.0))
    np.testing.assert_array_equal(ts.reward, 1.0)  # CartPole pays 1 on every step, the last one too
    time = np.asarray(states.time)
    np.testing.assert_array_equal(time[done], 0)  # the state restarted
    previous = np.concatenate([np.zeros((1, num_envs), np.int64), time[:-1]])
    np.testing.assert_array_equal(time[~done], previous[~done] + 1)
    lengths = [np.diff(np.flatnonzero(np.r_[True, done[:, b]])) for b in range(num_envs)]
    assert all(8 <= n < 60 for row in lengths for n in row[:-1] if n)  # termination, long before the 500-step cap
    # The observation that arrives with done is exactly the reset observation gymnax draws from the step key.
    for t, b in zip(*np.nonzero(done)):
        _, reset_key = jax.random.split(keys[t, b])
        expected, _ = game_env.reset_env(reset_key, params)
        np.testing.assert_allclose(ts.observation[t, b], expected, rtol=0, atol=0)
        assert np.abs(np.asarray(ts.observation[t, b])).max() <= 0.05  # CartPole starts within +-0.05
    # Episode returns (the sum of rewards between dones) are the episode lengths.
    assert float(ts0.reward.sum()) == 0.0 and bool(ts0.discount.min() == 1.0) and not ts0.done.any()


def test_truncation_at_the_time_limit_gives_discount_zero():
    """max_steps_in_episode=5: a CartPole episode cannot fall that fast, so every episode is cut at step 5."""
    env = GymnaxEnv("CartPole-v1", max_steps_in_episode=5)
    assert env.spec.max_episode_steps == 5
    num_envs, num_steps = 4, 20
    _, ts, states, _ = _scan(env, num_envs, num_steps, _uniform(2, num_envs))
    expected_done = np.zeros((num_steps, num_envs), bool)
    expected_done[4::5] = True
    np.testing.assert_array_equal(ts.done, expected_done)
    np.testing.assert_array_equal(ts.discount, np.where(expected_done, 0.0, 1.0))  # truncation: discount 0 too
    np.testing.assert_array_equal(ts.reward, 1.0)
    np.testing.assert_array_equal(states.time, np.tile((np.arange(num_steps) + 1) % 5, (num_envs, 1)).T)
    assert np.abs(np.asarray(ts.observation)[4::5]).max() <= 0.05  # fresh starts after the cut


@pytest.mark.parametrize(
    ("name", "num_steps", "tolerance"),
    [("Catch-bsuite", 450, 0.06), ("MemoryChain-bsuite", 300, 0.06), ("DiscountingChain-bsuite", 400, 0.01)],
)
def test_random_returns_and_episode_ends(name, num_steps, tolerance):
    """A vmapped batch of 64 under the uniform policy: the spec's random_return, episodes of the right length."""
    env = envs.make(f"gymnax/{name}")
    num_envs = 64
    _, ts, _, _ = _scan(env, num_envs, num_steps, _uniform(env.spec.num_actions, num_envs), seed=1)
    reward, done = np.asarray(ts.reward), np.asarray(ts.done)
    returns, lengths = [], []
    for b in range(num_envs):
        ends = np.flatnonzero(done[:, b])
        starts = np.r_[0, ends[:-1] + 1]
        returns += [reward[s : e + 1, b].sum() for s, e in zip(starts, ends)]
        lengths += list(ends - starts + 1)
    expected_length = {"Catch-bsuite": 9, "MemoryChain-bsuite": 6, "DiscountingChain-bsuite": 100}[name]
    assert set(lengths) == {expected_length}
    assert abs(np.mean(returns) - env.spec.random_return) < tolerance, (np.mean(returns), len(returns))
    np.testing.assert_array_equal(ts.discount, np.where(done, 0.0, 1.0))


def test_bench_envs_measures_a_gymnax_env():
    (row,) = bench_envs(["gymnax/Catch-bsuite"], num_envs=8, num_steps=20)
    assert row["env"] == "gymnax/Catch-bsuite" and row["num_envs"] == 8 and row["steps_per_s"] > 0


def test_lpg_train_learns_gymnax_catch(tmp_path, capsys):
    out = tmp_path / "catch"
    assert (
        main(
            [
                "train",
                "gymnax/Catch-bsuite",
                "--objective",
                "a2c",
                "--steps",
                "40000",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env"] == "gymnax/Catch-bsuite" and summary["steps"] == 40_000
    assert summary["random_return"] == -0.6
    assert summary["final_return"] > 0.3  # random: -0.6; the preset reaches about 1 by 100k steps


def test_presets_per_game():
    from training.presets import default_preset

    def preset(name):
        p = default_preset(envs.make_spec(name))
        return p.config.num_envs, p.config.unroll_length, p.config.optimizer.learning_rate, p.steps

    for game in envs.ENV_SETS["minatar"]:
        assert preset(game) == (64, 20, 1e-3, 3_000_000)
        assert default_preset(envs.make_spec(game)).config.optimizer.schedule == "linear"
    assert preset("gymnax/CartPole-v1") == (16, 10, 1e-3, 500_000)
    assert preset("gymnax/Acrobot-v1") == (16, 10, 3e-4, 500_000)
    assert preset("gymnax/Catch-bsuite") == preset("catch") == (16, 10, 3e-3, 100_000)
    assert preset("gymnax/DeepSea-bsuite") == (32, 20, 1e-3, 300_000)
