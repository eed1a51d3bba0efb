"""Online objectives (mgrl, mgrl_per_state_gamma, self_tuning, frodo) and the online experiments at toy size."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import objectives
from lpg.errors import InvalidConfigError, UnknownNameError
from lpg.types import AgentOutput, Rollout, empty_like_y
from objectives.frodo import consistency_loss
from objectives.losses import lambda_returns
from objectives.mgrl import per_state_gamma_targets

T, B, A = 6, 3, 3


def _rollout(key, num_obs=None, discount=None):
    k = jax.random.split(key, 6)
    obs = jax.random.randint(k[0], (T + 1, B), 0, num_obs) if num_obs else jax.random.normal(k[0], (T + 1, B, 4))
    if discount is None:
        discount = (jax.random.uniform(k[1], (T + 1, B)) > 0.25).astype(jnp.float32)
    rollout = Rollout(
        observation=obs,
        action=jax.random.randint(k[2], (T + 1, B), 0, A),
        reward=jax.random.normal(k[3], (T + 1, B)),
        discount=discount,
        done=discount == 0,
        behaviour_logits=jax.random.normal(k[4], (T + 1, B, A)),
        episode_return=jnp.zeros((T + 1, B)),
    )
    logits = jax.random.normal(k[5], (T + 1, B, A))
    out = AgentOutput(
        logits=logits, value=jax.random.normal(jax.random.fold_in(key, 9), (T + 1, B)), y_logits=empty_like_y(logits)
    )
    return rollout, out


@pytest.mark.parametrize(
    "name,overrides",
    [
        ("mgrl", {}),
        ("self_tuning", {}),
        ("self_tuning", {"base": "vtrace"}),
        ("frodo", {}),
        ("mgrl_per_state_gamma", {"num_states": 5}),
    ],
)
def test_agent_loss_is_differentiable_in_eta(name, overrides):
    objective = objectives.make(name, **overrides)
    assert objective.is_learned
    rollout, out = _rollout(jax.random.PRNGKey(0), num_obs=5 if name == "mgrl_per_state_gamma" else None)
    eta = objective.init(jax.random.PRNGKey(1))
    if name == "frodo":  # a non-zero residual head, so every eta leaf gets a gradient
        eta = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.PRNGKey(2), x.shape), eta)
    grads = jax.grad(lambda e: objective.agent_loss(e, rollout, out)[0])(eta)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert sum(float(jnp.sum(jnp.abs(g))) for g in leaves) > 0
    described = objective.describe_eta(eta)
    assert described and all(np.isfinite(float(v)) for v in described.values())
    if name in ("mgrl", "self_tuning"):
        assert described["gamma"] == pytest.approx(0.99, abs=1e-5)


def test_self_tuning_starts_at_the_configured_values_and_validates():
    objective = objectives.make(
        "self_tuning", base="vtrace", td_lambda=0.99, value_weight=0.5, entropy_weight=0.01, alpha=0.9
    )
    described = objective.describe_eta(objective.init(jax.random.PRNGKey(0)))
    for k, v in dict(gamma=0.99, td_lambda=0.99, value_weight=0.5, entropy_weight=0.01, alpha=0.9).items():
        assert float(described[k]) == pytest.approx(v, rel=1e-5)
    with pytest.raises(InvalidConfigError):
        objectives.make("self_tuning", base="ppo")
    with pytest.raises(InvalidConfigError):
        objectives.make("self_tuning", entropy_weight=0.05)  # above its outer scale 0.02
    with pytest.raises(InvalidConfigError):
        objectives.make("mgrl", gamma=1.0)


def test_per_state_gamma_targets_match_bonnet_app_c1():
    rollout, _ = _rollout(jax.random.PRNGKey(3), num_obs=4)
    gammas = jnp.array([0.9, 0.2, 0.6, 0.99])
    got = per_state_gamma_targets(gammas, rollout.observation[:-1], rollout.reward[1:], rollout.discount[1:])
    obs, r, d = (np.asarray(x) for x in (rollout.observation[:-1], rollout.reward[1:], rollout.discount[1:]))
    want = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            for u in range(t, T):
                want[t, b] += float(gammas[obs[u, b]]) ** (u - t + 1) * r[u, b]
                if d[u, b] == 0:
                    break
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_consistency_is_zero_for_bellman_targets_and_positive_otherwise():
    rollout, out = _rollout(jax.random.PRNGKey(4))
    r_t, discount_t = rollout.reward[1:], 0.9 * rollout.discount[1:]
    bellman = lambda_returns(r_t, discount_t, out.value[1:], 1.0)  # G_t = r_t + d_t G_t+1 exactly
    assert float(consistency_loss(bellman, r_t, discount_t)) == pytest.approx(0.0, abs=1e-10)
    assert float(consistency_loss(bellman + 0.1 * jnp.arange(T)[:, None], r_t, discount_t)) > 1e-4
    frodo = objectives.make("frodo", consistency_weight=0.0)
    assert float(frodo.meta_regulariser(frodo.init(jax.random.PRNGKey(0)), rollout, out)[0]) == 0.0
    frodo = objectives.make("frodo", consistency_weight=2.0)
    eta = jax.tree.map(lambda x: x + 0.3, frodo.init(jax.random.PRNGKey(0)))
    reg, metrics = frodo.meta_regulariser(eta, rollout, out)
    assert float(reg) == pytest.approx(2.0 * float(metrics["consistency"])) and float(reg) > 0
    g = jax.grad(lambda e: frodo.meta_regulariser(e, rollout, out)[0])(eta)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g))


def test_frodo_targets_start_at_the_lambda_return_and_are_causal_backwards():
    frodo = objectives.make("frodo", hidden_size=8, gamma=0.9, td_lambda=0.8)
    rollout, out = _rollout(jax.random.PRNGKey(5))
    eta = frodo.init(jax.random.PRNGKey(0))
    targets, base = frodo.returns(eta, rollout, out.value)
    np.testing.assert_allclose(targets, base, rtol=1e-6)
    np.testing.assert_allclose(
        base, lambda_returns(rollout.reward[1:], 0.9 * rollout.discount[1:], out.value[1:], 0.8), rtol=1e-6
    )
    eta = jax.tree.map(lambda x: x + 0.2 * jax.random.normal(jax.random.PRNGKey(1), x.shape), eta)

    def g(reward):
        return frodo.returns(eta, rollout.replace(reward=reward), out.value)[0]

    jac = np.asarray(jax.jacobian(g)(rollout.reward))  # [T, B, T+1, B]: dG_t / d reward[k] (r_{k-1})
    for t in range(T):
        # G_t uses transitions t..T-1, i.e. reward[t+1..T]; never reward[0..t].
        assert np.all(jac[t, :, : t + 1, :] == 0.0)
    assert np.any(jac[0, :, 1:, :] != 0.0)


def test_registry_errors():
    with pytest.raises(UnknownNameError):
        objectives.make("frodoo")
    with pytest.raises(InvalidConfigError):
        objectives.make("frodo", hidden=3)


# --------------------------------------------------------------------------- experiments at toy size


def test_mrp_gamma_runs_end_to_end(tmp_path):
    from training.online import run_experiment

    out = tmp_path / "mrp"
    summary = run_experiment(
        "mrp-gamma", str(out), inner_steps=2, mix=True, monte_carlo=2, steps=6, seeds=2, progress=False
    )
    assert len(summary["gammas"]) == 10 and all(0 < g < 1 for g in summary["gammas"])
    saved = json.loads((out / "summary.json").read_text())
    assert saved["gammas"] == summary["gammas"] and (out / "gammas.png").exists()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows and "eta/gamma_3" in rows[-1] and rows[-1]["env_steps_consumed"] == 6 * 2 * 2 * 320


def test_catch_frodo_runs_end_to_end(tmp_path):
    import dataclasses

    from training.online import catch_frodo_preset, run_catch_frodo

    preset = dataclasses.replace(
        catch_frodo_preset(), steps=320, num_seeds=2, num_envs=4, unroll_length=10, hidden_sizes=(8,), hidden_size=4
    )
    summary = run_catch_frodo(preset, str(tmp_path / "catch"), progress=False)
    assert {"frodo_return", "a2c_return", "frodo_return_per_seed", "a2c_return_per_seed"} <= set(summary)
    assert len(summary["a2c_return_per_seed"]) == 2 and (tmp_path / "catch" / "learning_curve.png").exists()


def test_snake_experiments_run_end_to_end(tmp_path):
    import dataclasses

    from training.online import SnakeVariancePreset, run_snake_metagrad, run_snake_variance, snake_metagrad_preset

    tiny = dataclasses.replace(
        snake_metagrad_preset(), steps=2 * 2 * 4, num_envs=2, unroll_length=4, num_seeds=1, inner_steps=1
    )
    summary = run_snake_metagrad(tiny, str(tmp_path / "metagrad"), progress=False)
    assert set(summary["final_meta_parameters"]) == {"gamma", "td_lambda", "value_weight", "entropy_weight"}
    assert "final_return" in summary and (tmp_path / "metagrad" / "meta_parameters.png").exists()
    # The variance study's code path, on Catch to keep the test short (Snake's conv net compiles slowly).
    variance = SnakeVariancePreset(snake=tiny, num_checkpoints=2, num_estimates=3, estimators=("1", "2-mix"))
    summary = run_snake_variance(variance, str(tmp_path / "variance"), progress=False, env="catch")
    assert set(summary["std_ratio"]) == {"1", "2-mix"} and summary["std_ratio"]["1"] == pytest.approx(1.0)
    assert all(np.isfinite(v) for v in summary["std_ratio"].values())


def test_experiment_and_discover_errors(tmp_path):
    from lpg.commands.discover_online import OnlineOptions, discover_online
    from training.online import run_experiment

    with pytest.raises(UnknownNameError):
        run_experiment("mrp-gama", str(tmp_path / "x"))
    with pytest.raises(InvalidConfigError):
        run_experiment("mrp-gamma", str(tmp_path / "x"), inner_steps=0)
    with pytest.raises(UnknownNameError):
        discover_online(OnlineOptions("catch", "a2cc", out=str(tmp_path / "y")))
    with pytest.raises(InvalidConfigError, match="does not support `lpg discover online`"):
        discover_online(OnlineOptions("catch", "a2c", out=str(tmp_path / "y")))
    with pytest.raises(InvalidConfigError):
        discover_online(OnlineOptions("catch", "mgrl", steps=0, out=str(tmp_path / "y")))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_discover_online_takes_the_agent_setup_flags(tmp_path):
    """--num-envs/--unroll-length/--learning-rate/--optimizer replace the preset's batch shape and inner optimiser."""
    from lpg.cli import main

    out = tmp_path / "run"
    args = [
        "discover",
        "online",
        "catch",
        "--objective",
        "mgrl",
        "--steps",
        "300",
        "--num-envs",
        "4",
        "--unroll-length",
        "5",
        "--learning-rate",
        "0.02",
        "--optimizer",
        "sgd",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())["train_config"]
    assert (config["num_envs"], config["unroll_length"]) == (4, 5)
    assert (config["optimizer"]["name"], config["optimizer"]["learning_rate"]) == ("sgd", 0.02)
    assert json.loads((out / "summary.json").read_text())["steps"] == 300  # 15 updates of 4 envs x 5 steps


def test_mrp_gamma_reports_and_plots_the_noisy_states_of_the_mrp_it_ran_on(tmp_path):
    from lpg.envs.mrp import MRP
    from training.online import MRPGammaPreset, run_mrp_gamma

    preset = MRPGammaPreset(inner_steps=1, monte_carlo=1, num_updates=2, num_envs=4)
    summary = run_mrp_gamma(preset, str(tmp_path / "run"), progress=False, env=MRP(noisy_states=(0, 2, 3)))
    assert summary["noisy_states"] == [0, 2, 3] and len(summary["gammas"]) == 10
    gammas = np.asarray(summary["gammas"])
    assert summary["noisy_max"] == pytest.approx(gammas[[0, 2, 3]].max())
    assert summary["deterministic_min"] == pytest.approx(gammas[[1, 4, 5, 6, 7, 8, 9]].min())
    assert (tmp_path / "run" / "gammas.png").stat().st_size > 1000
