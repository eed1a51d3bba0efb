"""The learned return (objectives/learned_return.py): A2C at init, its return on a hand-worked case and against a
NumPy reference, and its 1-step meta-gradient against finite differences in float64.

The registry-wide contract (jit, vmap, stop-gradient targets, a nonzero meta-gradient, the checkpoint round
trip) is in tests/test_objective_contract.py; online discovery in tests/test_online_checkpoints.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import objectives
from lpg.types import AgentOutput, Rollout, empty_like_y
from training.meta_gradient import pg_outer_objective

T, B, D, A = 4, 3, 3, 2
ACTOR_CRITIC = dict(gamma=0.9, td_lambda=0.8, value_weight=0.5, entropy_weight=0.01)
# As tests/test_objective_contract.py: programs compiled once run once, so compile them fast.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _compiled(f, *args):
    return jax.jit(f).lower(*args).compile(compiler_options=FAST_COMPILE)


def _rollout(seed: int, dtype=np.float32) -> Rollout:
    rng = np.random.default_rng(seed)
    discount = np.ones((T + 1, B), dtype)
    discount[2, 0] = discount[4, 1] = discount[1, 2] = 0.0  # episode ends, one of them on the last transition
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
    return AgentOutput(logits=logits, value=value, y_logits=empty_like_y(logits))


@pytest.mark.parametrize("max_lag", [2, 20], ids=["lags-continued", "lags-learned"])
def test_at_init_the_return_loss_and_update_are_a2cs(max_lag):
    """max_lag 2 < T: lags 2.. continue geometrically from w_1, so the init return is still the lambda-return."""
    learned = objectives.make("learned_return", max_lag=max_lag, **ACTOR_CRITIC)
    a2c = objectives.make("a2c", **ACTOR_CRITIC)
    rollout, out = _rollout(0), _agent_output(1)
    eta = learned.init(jax.random.PRNGKey(0))

    def both(eta):
        def loss_and_grad(objective, e):
            return jax.value_and_grad(lambda o: objective.agent_loss(e, rollout, o), has_aux=True)(out)

        return loss_and_grad(learned, eta), loss_and_grad(a2c, {})

    ((loss, metrics), grad), ((a2c_loss, a2c_metrics), a2c_grad) = _compiled(both, eta)(eta)
    np.testing.assert_allclose(loss, a2c_loss, atol=1e-6, rtol=0)
    for key, value in a2c_metrics.items():
        np.testing.assert_allclose(metrics[key], value, atol=1e-6, rtol=0, err_msg=key)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(a2c_grad)):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    assert float(metrics["mean_abs_return_change"]) < 1e-6
    described = learned.describe_eta(eta)
    assert list(described) == [f"w_{k:02d}" if max_lag > 10 else f"w_{k}" for k in range(max_lag)]
    np.testing.assert_allclose([float(v) for v in described.values()], 0.72 ** np.arange(max_lag), rtol=1e-6)


def test_the_return_on_a_hand_worked_case():
    """T=3, B=1, gamma = 0.5, lambda = 1; the episode ends on the second transition; w = (1, 2, 3).

    d = discount[1:] = (1, 0, 1), r = reward[1:] = (1, 2, 3), v(s_3) = 4.
    Reward part R_t = sum_k w_k D_t,k r_t+k, D cut by d_1 = 0:
      R_0 = 1*1 + 2*2 + 3*0*3 = 5;  R_1 = 1*2 + 2*0*3 = 2;  R_2 = 1*3 = 3.
    Bootstrap (lambda = 1): B_2 = gamma d_2 v(s_3) = 2;  B_1 = gamma d_1 B_2 = 0;  B_0 = gamma d_0 B_1 = 0.
    G = (5, 2, 5). (A2C's lambda-return, w = (1, 0.5, 0.25): (1 + 0.5*2, 2, 3 + 2) = (2, 2, 5).)
    """
    objective = objectives.make("learned_return", gamma=0.5, td_lambda=1.0, max_lag=3)
    rollout = Rollout(
        observation=jnp.zeros((4, 1, 1)),
        action=jnp.zeros((4, 1), jnp.int32),
        reward=jnp.array([[0.0], [1.0], [2.0], [3.0]]),
        discount=jnp.array([[1.0], [1.0], [0.0], [1.0]]),
        done=jnp.array([[False], [False], [True], [False]]),
        behaviour_logits=jnp.zeros((4, 1, 2)),
        episode_return=jnp.zeros((4, 1)),
    )
    logits = jnp.zeros((4, 1, 2))
    out = AgentOutput(logits=logits, value=jnp.array([[0.0], [0.0], [0.0], [4.0]]), y_logits=empty_like_y(logits))
    eta = objective.init(jax.random.PRNGKey(0))
    targets = _compiled(lambda e: objective.targets(e, rollout, out), eta)
    np.testing.assert_allclose(targets(eta)[:, 0], [2.0, 2.0, 5.0], atol=1e-6)
    np.testing.assert_allclose(targets({"lag_weights": jnp.array([1.0, 2.0, 3.0])})[:, 0], [5.0, 2.0, 5.0], atol=1e-6)


def _reference_returns(w, r, d, v_next, gamma, lam):
    """G_t = sum_k w_k (prod_{j<k} d_t+j) r_t+k + the zero-reward TD(lambda) return: plain loops."""
    num_steps, batch = r.shape
    g = np.zeros_like(r)
    for b in range(batch):
        bootstrap = v_next[-1, b]
        for t in reversed(range(num_steps)):
            bootstrap = gamma * d[t, b] * ((1 - lam) * v_next[t, b] + lam * bootstrap)
            alive, total = 1.0, 0.0
            for k in range(num_steps - t):
                total += w[k] * alive * r[t + k, b]
                alive *= d[t + k, b]
            g[t, b] = total + bootstrap
    return g


def test_agent_loss_matches_a_numpy_reference():
    objective = objectives.make("learned_return", max_lag=3, **ACTOR_CRITIC)
    rollout, out = _rollout(2), _agent_output(3)
    eta = {"lag_weights": jnp.asarray([0.7, -0.2, 1.3], jnp.float32)}
    w = np.array([0.7, -0.2, 1.3, 1.3 * 0.72])  # lag 3 >= max_lag: w_2 * (gamma lambda)
    r, d = np.asarray(rollout.reward[1:], np.float64), np.asarray(rollout.discount[1:], np.float64)
    v = np.asarray(out.value, np.float64)
    g = _reference_returns(w, r, d, v[1:], 0.9, 0.8)
    log_pi = np.asarray(jax.nn.log_softmax(out.logits[:-1]), np.float64)
    a = np.asarray(rollout.action[:-1])
    pg_loss = -np.mean((g - v[:-1]) * np.take_along_axis(log_pi, a[..., None], -1)[..., 0])
    value_loss = 0.5 * np.mean((g - v[:-1]) ** 2)
    entropy = -np.mean(np.sum(np.exp(log_pi) * log_pi, -1))

    def run(eta):
        return objective.targets(eta, rollout, out), objective.agent_loss(eta, rollout, out)

    targets, (loss, metrics) = _compiled(run, eta)(eta)
    np.testing.assert_allclose(targets, g, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["pg_loss"], pg_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["value_loss"], value_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, pg_loss + 0.5 * value_loss - 0.01 * entropy, rtol=1e-5, atol=1e-6)


def test_one_step_meta_gradient_matches_finite_differences_in_float64():
    """d/d eta of the outer loss (the framework's policy-gradient outer objective, baseline held fixed) after one SGD
    step of a linear agent on the learned-return loss, against a central difference per lag weight."""
    with jax.enable_x64(True):
        objective = objectives.make("learned_return", max_lag=3, **ACTOR_CRITIC)
        eta = {"lag_weights": jnp.asarray([0.9, 0.5, 0.4], jnp.float64)}
        inner, outer_rollout = _rollout(4, np.float64), _rollout(5, np.float64)
        outer = pg_outer_objective(gamma=0.9, td_lambda=0.8)
        rng = np.random.default_rng(6)
        params = {"pi": jnp.asarray(rng.standard_normal((D, A))), "v": jnp.asarray(rng.standard_normal(D))}

        def apply(p, obs):
            logits = obs @ p["pi"]
            return AgentOutput(logits, obs @ p["v"], empty_like_y(logits))

        def meta_loss(w):
            e = {"lag_weights": w}
            grads = jax.grad(lambda p: objective.agent_loss(e, inner, apply(p, inner.observation))[0])(params)
            updated = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
            # The updated policy with the critic before the update: the outer loss stop-gradients its values, so
            # its meta-gradient ignores how eta moves them; holding them fixed makes the outer loss a function
            # whose derivative is that meta-gradient, which finite differences can check.
            out = apply(updated, outer_rollout.observation)
            return outer.agent_loss({}, outer_rollout, out.replace(value=outer_rollout.observation @ params["v"]))[0]

        eps = 1e-6
        steps = eps * jnp.eye(3)

        def check(w):
            return jax.grad(meta_loss)(w), jax.vmap(meta_loss)(w + steps), jax.vmap(meta_loss)(w - steps)

        w = eta["lag_weights"]
        grad, plus, minus = _compiled(check, w)(w)
        assert grad.dtype == jnp.float64 and np.all(np.isfinite(grad))
        assert np.all(np.abs(grad) > 1e-5), "degenerate test: a lag weight gets no meta-gradient"
        np.testing.assert_allclose(grad, (plus - minus) / (2 * eps), rtol=1e-6)
