"""Numbers of the LPG objective: causality of its targets, gradients vs finite differences."""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import objectives
from lpg.types import AgentOutput, Rollout
from objectives.lpg import LPG, LPGConfig

T, B, A, M = 6, 3, 4, 5


def _rollout(key, dtype=jnp.float32) -> Rollout:
    ks = jax.random.split(key, 4)
    done = jax.random.bernoulli(ks[0], 0.25, (T + 1, B))
    return Rollout(
        observation=jax.random.randint(ks[1], (T + 1, B), 0, 7),
        action=jax.random.randint(ks[2], (T + 1, B), 0, A),
        reward=jax.random.normal(ks[3], (T + 1, B), dtype),
        discount=jnp.where(done, 0.0, 1.0).astype(dtype),
        done=done,
        behaviour_logits=jnp.zeros((T + 1, B, A), dtype),
        episode_return=jnp.zeros((T + 1, B), dtype),
    )


def _agent_out(key, dtype=jnp.float32) -> AgentOutput:
    k1, k2, k3 = jax.random.split(key, 3)
    return AgentOutput(
        logits=jax.random.normal(k1, (T + 1, B, A), dtype),
        value=jax.random.normal(k2, (T + 1, B), dtype),
        y_logits=jax.random.normal(k3, (T + 1, B, M), dtype),
    )


@pytest.fixture(scope="module")
def lpg_objective() -> LPG:
    return LPG(LPGConfig(hidden_size=8, y_size=M))


def test_registered_and_heads():
    objective = objectives.make("lpg", y_size=7)
    assert objective.heads.y_size == 7
    assert objective.is_learned


@pytest.mark.parametrize("t", [0, 2, T - 1])
def test_targets_depend_only_on_present_and_future(lpg_objective, t):
    """Perturbing transition t (its reward, action and agent outputs at s_t) changes
    the targets at step t and leaves every target after t unchanged."""
    eta = lpg_objective.init(jax.random.PRNGKey(0))
    rollout, out = _rollout(jax.random.PRNGKey(1)), _agent_out(jax.random.PRNGKey(2))
    pi_hat, y_hat = jax.jit(lpg_objective.targets)(eta, rollout, out)
    perturbed_rollout = rollout.replace(
        reward=rollout.reward.at[t + 1].add(3.0), action=rollout.action.at[t].set((rollout.action[t] + 1) % A)
    )
    perturbed_out = out.replace(logits=out.logits.at[t].add(1.5), y_logits=out.y_logits.at[t].add(2.0))
    pi_hat2, y_hat2 = jax.jit(lpg_objective.targets)(eta, perturbed_rollout, perturbed_out)
    np.testing.assert_array_equal(np.asarray(pi_hat[t + 1 :]), np.asarray(pi_hat2[t + 1 :]))
    np.testing.assert_array_equal(np.asarray(y_hat[t + 1 :]), np.asarray(y_hat2[t + 1 :]))
    assert np.all(np.abs(np.asarray(pi_hat[t] - pi_hat2[t])) > 1e-6)
    assert np.all(np.abs(np.asarray(y_hat[t] - y_hat2[t])).max(-1) > 1e-6)


def test_phi_of_next_y_zeroed_at_termination(lpg_objective):
    """Where the episode terminated on arriving at s_t+1, y(s_t+1) does not affect the targets."""
    eta = lpg_objective.init(jax.random.PRNGKey(0))
    rollout, out = _rollout(jax.random.PRNGKey(3)), _agent_out(jax.random.PRNGKey(4))
    rollout = rollout.replace(discount=rollout.discount.at[T].set(0.0))  # last transition terminates
    pi_hat, _ = lpg_objective.targets(eta, rollout, out)
    pi_hat2, _ = lpg_objective.targets(eta, rollout, out.replace(y_logits=out.y_logits.at[T].add(5.0)))
    np.testing.assert_allclose(np.asarray(pi_hat), np.asarray(pi_hat2), rtol=0, atol=0)


def _tabular_apply(params, obs):
    row = params["table"][obs]
    return AgentOutput(logits=row[..., :A], value=row[..., A], y_logits=row[..., A + 1 :])


def test_agent_loss_gradient_matches_finite_differences(lpg_objective):
    """grad_theta of the agent loss = FD of -mean(log pi pi_hat) + alpha_y mean KL(y || y_hat)
    with the meta-network's inputs held at theta_0 (they are stop-gradiented), in float64."""
    with jax.enable_x64(True):
        objective = lpg_objective
        eta = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), objective.init(jax.random.PRNGKey(0)))
        rollout = _rollout(jax.random.PRNGKey(5), jnp.float64)
        params = {"table": jax.random.normal(jax.random.PRNGKey(6), (7, A + 1 + M), jnp.float64)}
        alpha_y = 0.7

        def loss(p):
            return objective.agent_loss(eta, rollout, _tabular_apply(p, rollout.observation), {"alpha_y": alpha_y})[0]

        grad = jax.jit(jax.grad(loss))(params)["table"]
        pi_hat, y_hat_logits = objective.targets(eta, rollout, _tabular_apply(params, rollout.observation))

        def loss_fixed_targets(table):
            out = _tabular_apply({"table": table}, rollout.observation)
            log_pi = jax.nn.log_softmax(out.logits[:-1])
            log_pi_a = jnp.take_along_axis(log_pi, rollout.action[:-1, :, None], -1)[..., 0]
            log_y = jax.nn.log_softmax(out.y_logits[:-1])
            kl = jnp.sum(jnp.exp(log_y) * (log_y - jax.nn.log_softmax(y_hat_logits)), -1)
            return -jnp.mean(log_pi_a * pi_hat) + alpha_y * jnp.mean(kl)

        loss_fixed_targets = jax.jit(loss_fixed_targets)
        assert abs(float(loss(params)) - float(loss_fixed_targets(params["table"]))) < 1e-12
        table = np.asarray(params["table"])
        eps = 1e-6
        rng = np.random.default_rng(0)
        for _ in range(12):
            i, j = rng.integers(table.shape[0]), rng.integers(table.shape[1])
            plus, minus = table.copy(), table.copy()
            plus[i, j] += eps
            minus[i, j] -= eps
            fd = (float(loss_fixed_targets(jnp.asarray(plus))) - float(loss_fixed_targets(jnp.asarray(minus)))) / (
                2 * eps
            )
            assert abs(fd - float(grad[i, j])) < 1e-7, (i, j, fd, float(grad[i, j]))

        # And the loss is differentiable in eta: grad_eta matches FD along a random direction.
        flat, unravel = jax.flatten_util.ravel_pytree(eta)
        direction = jax.random.normal(jax.random.PRNGKey(7), flat.shape, jnp.float64)
        direction = direction / jnp.linalg.norm(direction)

        def loss_eta(f):
            return objective.agent_loss(unravel(f), rollout, _tabular_apply(params, rollout.observation), {"alpha_y": alpha_y})[
                0
            ]

        loss_eta = jax.jit(loss_eta)
        analytic = float(jnp.dot(jax.jit(jax.grad(loss_eta))(flat), direction))
        fd = (float(loss_eta(flat + eps * direction)) - float(loss_eta(flat - eps * direction))) / (2 * eps)
        assert abs(fd - analytic) < 1e-6 * max(1.0, abs(analytic))


def test_meta_regulariser_terms(lpg_objective):
    eta = lpg_objective.init(jax.random.PRNGKey(0))
    rollout, out = _rollout(jax.random.PRNGKey(8)), _agent_out(jax.random.PRNGKey(9))
    reg, metrics = lpg_objective.meta_regulariser(eta, rollout, out)
    c = lpg_objective.config
    expected = -c.beta1 * metrics["y_entropy"] + c.beta2 * metrics["pi_hat_l2"] + c.beta3 * metrics["y_hat_l2"]
    np.testing.assert_allclose(float(reg), float(expected), rtol=1e-6)
    assert float(metrics["y_entropy"]) > 0


def test_rematerialised_lstm_gives_the_plain_lstms_targets_and_meta_gradient(lpg_objective):
    """remat (the default) changes what the backward pass stores, not what it computes: same parameter tree,
    same (pi_hat, y_hat) and the same gradient in eta, in float64, under vmap over lifetimes."""
    from objectives.lpg import LPGNetwork, lpg_inputs

    with jax.enable_x64(True):
        c = lpg_objective.config
        eta = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), lpg_objective.init(jax.random.PRNGKey(0)))
        keys = jax.random.split(jax.random.PRNGKey(1), 3)  # three lifetimes
        inputs = jax.vmap(lambda k: lpg_inputs(_rollout(k, jnp.float64), _agent_out(k, jnp.float64)))(keys)
        plain = LPGNetwork(c.hidden_size, c.y_size, c.phi_hidden, c.gamma, remat=False)
        assert lpg_objective.network.remat
        assert jax.tree.structure(plain.init(jax.random.PRNGKey(0), *jax.tree.map(lambda x: x[0], inputs))) == (
            jax.tree.structure(eta)
        )

        def loss(network, e):
            pi_hat, y_hat_logits = jax.vmap(lambda *x: network.apply(e, *x))(*inputs)
            return jnp.sum(pi_hat * jnp.arange(T)[:, None]) + jnp.sum(jnp.sin(y_hat_logits))

        for fn in (jax.grad, lambda f: jax.jit(jax.grad(f))):
            g_remat = fn(lambda e: loss(lpg_objective.network, e))(eta)
            g_plain = fn(lambda e: loss(plain, e))(eta)
            for a, b in zip(jax.tree.leaves(g_remat), jax.tree.leaves(g_plain)):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(loss(lpg_objective.network, eta), loss(plain, eta))
