"""LIRPG (objectives/lirpg.py): its agent loss against a NumPy reference, its start, its two critics, and its
1-step meta-gradient against finite differences in float64.

The registry-wide contract (jit, vmap, stop-gradient targets, a nonzero meta-gradient, the checkpoint round
trip) is in tests/test_objective_contract.py; online discovery in tests/test_online_checkpoints.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import objectives
from lpg.envs.base import EnvSpec
from lpg.errors import InvalidConfigError
from lpg.types import AgentOutput, Rollout, empty_like_y
from objectives.lirpg import FEATURE_SEED, MIX_VALUE, observation_features
from training.meta_gradient import pg_outer_objective

T, B, D, A = 3, 2, 3, 2
CONFIG = dict(
    hidden_size=4, feature_size=3, max_actions=3, lambda_in=0.5, gamma=0.9, td_lambda=0.8,
    value_weight=0.5, entropy_weight=0.01,
)  # fmt: skip


# As tests/test_objective_contract.py: programs compiled once run once, so compile them fast.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _compiled(f, *args):
    return jax.jit(f).lower(*args).compile(compiler_options=FAST_COMPILE)


def _rollout(seed: int, dtype=np.float32) -> Rollout:
    rng = np.random.default_rng(seed)
    discount = np.ones((T + 1, B), dtype)
    discount[2, 0] = 0.0  # an episode ends on the second transition of the first environment
    return jax.tree.map(
        jnp.asarray,
        Rollout(
            observation=rng.standard_normal((T + 1, B, D)).astype(dtype),
            action=rng.integers(0, A, (T + 1, B)).astype(np.int32),
            reward=rng.standard_normal((T + 1, B)).astype(dtype),
            discount=discount,
            done=discount == 0,
            behaviour_logits=np.zeros((T + 1, B, A), dtype),
            episode_return=np.zeros((T + 1, B), dtype),
        ),
    )


def _agent_output(seed: int) -> AgentOutput:
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(rng.standard_normal((T + 1, B, A)).astype(np.float32))
    value = jnp.asarray(rng.standard_normal((T + 1, B)).astype(np.float32))
    mix_value = jnp.asarray(rng.standard_normal((T + 1, B, 1)).astype(np.float32))
    return AgentOutput(logits=logits, value=value, y_logits=empty_like_y(logits), extra={MIX_VALUE: mix_value})


def _eta(objective, seed: int = 1, dtype=jnp.float32):
    """objective.init with a nonzero output layer (at init r_in = 0)."""
    rng = np.random.default_rng(seed)
    eta = objective.init(jax.random.PRNGKey(seed))
    eta["out"]["kernel"] = jnp.asarray(rng.standard_normal(eta["out"]["kernel"].shape))
    eta["out"]["bias"] = jnp.asarray(0.3)
    return jax.tree.map(lambda x: jnp.asarray(x, dtype), eta)


def _lambda_returns(r, d, v_next, lam):
    """G_t = r_t + d_t ((1 - lam) v_next_t + lam G_t+1), G_T = v_next[-1]: plain loops."""
    g = np.zeros_like(r)
    for b in range(r.shape[1]):
        acc = v_next[-1, b]
        for t in reversed(range(r.shape[0])):
            acc = r[t, b] + d[t, b] * ((1 - lam) * v_next[t, b] + lam * acc)
            g[t, b] = acc
    return g


def _reference(eta, rollout, out, c):
    """The loss of the module docstring, with NumPy and loops."""
    eta = jax.tree.map(lambda x: np.asarray(x, np.float64), eta)
    obs, act = np.asarray(rollout.observation, np.float64), np.asarray(rollout.action)
    projection = np.asarray(jax.random.normal(jax.random.PRNGKey(FEATURE_SEED), (D, c["feature_size"])), np.float64)
    r_in = np.zeros((T, B))
    for t in range(T):
        for b in range(B):
            phi = obs[t, b] @ projection / np.linalg.norm(obs[t, b])
            x = np.concatenate([phi, np.eye(c["max_actions"])[act[t, b]]])
            h = np.tanh(x @ eta["hidden"]["kernel"] + eta["hidden"]["bias"])
            r_in[t, b] = np.tanh(h @ eta["out"]["kernel"] + eta["out"]["bias"])
    r_ex = np.asarray(rollout.reward[1:], np.float64)
    d = c["gamma"] * np.asarray(rollout.discount[1:], np.float64)
    v_ex = np.asarray(out.value, np.float64)
    v_mix = np.asarray(out.extra[MIX_VALUE][..., 0], np.float64)
    g_mix = _lambda_returns(r_ex + c["lambda_in"] * r_in, d, v_mix[1:], c["td_lambda"])
    g_ex = _lambda_returns(r_ex, d, v_ex[1:], c["td_lambda"])
    logits = np.asarray(out.logits[:-1], np.float64)
    log_pi = logits - np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
    pg = ent = 0.0
    for t in range(T):
        for b in range(B):
            pg -= (g_mix[t, b] - v_mix[t, b]) * log_pi[t, b, act[t, b]]
            ent -= np.sum(np.exp(log_pi[t, b]) * log_pi[t, b])
    pg, ent = pg / (T * B), ent / (T * B)
    mix_value_loss = 0.5 * np.mean((g_mix - v_mix[:-1]) ** 2)
    ex_value_loss = 0.5 * np.mean((g_ex - v_ex[:-1]) ** 2)
    loss = pg + c["value_weight"] * (mix_value_loss + ex_value_loss) - c["entropy_weight"] * ent
    return loss, {"pg_loss": pg, "value_loss": mix_value_loss, "ex_value_loss": ex_value_loss, "entropy": ent}, r_in


def test_agent_loss_matches_a_numpy_reference():
    objective = objectives.make("lirpg", **CONFIG)
    eta, rollout, out = _eta(objective), _rollout(0), _agent_output(1)
    loss, metrics = _compiled(objective.agent_loss, eta, rollout, out)(eta, rollout, out)
    ref_loss, ref_metrics, r_in = _reference(eta, rollout, out, CONFIG)
    assert np.abs(r_in).max() > 0.05, "degenerate test: r_in is about 0"
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for key, value in ref_metrics.items():
        np.testing.assert_allclose(metrics[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(metrics["mean_abs_intrinsic_reward"], np.abs(r_in).mean(), rtol=1e-5)
    described = objective.describe_eta(eta)
    assert float(described["r_in_bound"]) >= np.abs(r_in).max()


def test_at_init_r_in_is_zero_and_the_policy_follows_the_mixed_critic_only():
    """At init: the loss is A2C's on the mixed critic plus the extrinsic critic's regression; nothing else."""
    objective = objectives.make("lirpg", **CONFIG)
    eta, rollout, out = objective.init(jax.random.PRNGKey(0)), _rollout(2), _agent_output(3)
    a2c = objectives.make("a2c", **{k: CONFIG[k] for k in ("gamma", "td_lambda", "value_weight", "entropy_weight")})

    def both(eta, out):
        loss, metrics = objective.agent_loss(eta, rollout, out)
        on_mix = out.replace(value=out.extra[MIX_VALUE][..., 0], extra={})
        a2c_loss, _ = a2c.agent_loss({}, rollout, on_mix)
        return loss, metrics, a2c_loss, objective.targets(eta, rollout, out)["intrinsic_reward"]

    loss, metrics, a2c_loss, r_in = _compiled(both, eta, out)(eta, out)
    np.testing.assert_array_equal(r_in, np.zeros((T, B)))
    np.testing.assert_allclose(loss, a2c_loss + CONFIG["value_weight"] * metrics["ex_value_loss"], rtol=1e-6)
    assert float(objective.describe_eta(eta)["r_in_bound"]) == 0.0
    # The extrinsic critic's gradient does not depend on eta (nothing intrinsic reaches it) ...
    grad_v = _compiled(jax.grad(lambda e, o: objective.agent_loss(e, rollout, o)[0], argnums=1), eta, out)
    np.testing.assert_allclose(grad_v(eta, out).value, grad_v(_eta(objective), out).value, rtol=0, atol=1e-7)
    # ... nor does the meta-objective get an intrinsic term from this objective.
    assert float(objective.meta_regulariser(eta, rollout, out)[0]) == 0.0


def test_features_are_fixed_scale_free_and_index_observations_get_one_row_per_state():
    vector = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 5)), jnp.float32)
    index = jnp.asarray([[0, 1, 7], [7, 0, 1]], jnp.int32)

    def features(vector, index):
        return [observation_features(x, 2, 4, jnp.float32) for x in (vector, 3.0 * vector, index)]

    phi, phi_scaled, rows = _compiled(features, vector, index)(vector, index)
    assert phi.shape == (2, 3, 4) and rows.shape == (2, 3, 4)
    np.testing.assert_allclose(phi_scaled, phi, rtol=1e-5)
    np.testing.assert_array_equal(rows[0, 0], rows[1, 1])
    np.testing.assert_array_equal(rows[0, 2], rows[1, 0])
    assert not np.allclose(rows[0, 0], rows[0, 1])


def test_environments_with_more_actions_than_max_actions_are_refused():
    objective = objectives.make("lirpg", max_actions=3)
    objective.check_env(EnvSpec("ok", "", observation_shape=(2,), num_actions=3, max_episode_steps=5))
    with pytest.raises(InvalidConfigError, match="max_actions=3"):
        objective.check_env(EnvSpec("big", "", observation_shape=(2,), num_actions=4, max_episode_steps=5))
    with pytest.raises(InvalidConfigError, match="lambda_in must be >= 0"):
        objectives.make("lirpg", lambda_in=-1.0)


def test_one_step_meta_gradient_matches_finite_differences_in_float64():
    """d/d eta of the outer loss (the framework's policy-gradient outer objective on extrinsic rewards) after one
    SGD step of a linear agent on the LIRPG loss, against central differences along random directions."""
    with jax.enable_x64(True):
        objective = objectives.make("lirpg", **CONFIG)
        eta = _eta(objective, dtype=jnp.float64)
        inner, outer_rollout = _rollout(4, np.float64), _rollout(5, np.float64)
        outer = pg_outer_objective(gamma=0.9, td_lambda=0.8)
        rng = np.random.default_rng(6)
        params = {
            "pi": jnp.asarray(rng.standard_normal((D, A))),
            "v": jnp.asarray(rng.standard_normal(D)),
            "mix": jnp.asarray(rng.standard_normal(D)),
        }

        def apply(p, obs):
            logits = obs @ p["pi"]
            return AgentOutput(logits, obs @ p["v"], empty_like_y(logits), {MIX_VALUE: (obs @ p["mix"])[..., None]})

        def meta_loss(eta):
            grads = jax.grad(lambda p: objective.agent_loss(eta, inner, apply(p, inner.observation))[0])(params)
            updated = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
            # The outer loss stop-gradients its baseline, the extrinsic critic; finite differences agree with the
            # meta-gradient only because that critic's update does not depend on eta (tested above).
            return outer.agent_loss({}, outer_rollout, apply(updated, outer_rollout.observation))[0]

        eps = 1e-6
        flat_eta, unravel = ravel_pytree(eta)
        directions = jnp.asarray(rng.standard_normal((3,) + flat_eta.shape))

        def check(eta, directions):
            along = jax.vmap(lambda du, sign: meta_loss(unravel(flat_eta + sign * eps * du)), in_axes=(0, None))
            return ravel_pytree(jax.grad(meta_loss)(eta))[0], along(directions, 1.0), along(directions, -1.0)

        grad, plus, minus = _compiled(check, eta, directions)(eta, directions)
        assert grad.dtype == jnp.float64 and np.all(np.isfinite(grad))
        assert np.abs(grad).max() > 1e-4, "degenerate test: zero meta-gradient"
        np.testing.assert_allclose(directions @ grad, (plus - minus) / (2 * eps), rtol=1e-6)
