"""STACX (objectives/stacx.py): rlax's V-trace advantage, the agent loss against plain Python, its heads and eta,
and the 1-step meta-gradient against float64 finite differences."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import objectives
from lpg.envs.base import EnvSpec
from lpg.errors import InvalidConfigError
from lpg.networks import NetworkConfig, make_agent
from lpg.types import AgentOutput, Head, Rollout, empty_like_y
from objectives.losses import lambda_returns, log_prob, vtrace_targets
from objectives.stacx import AUX_LOGITS, AUX_VALUE, META_PARAMETERS, leaky_vtrace_advantages

FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _compiled(f, *args):
    return jax.jit(f).lower(*args).compile(compiler_options=FAST_COMPILE)


# --------------------------------------------------------------------------- plain-Python references


def ref_leaky_vtrace(v_tm1, v_t, r, d, rho, alpha, lam, rho_bar):
    """Leaky V-trace as explicit sums (IMPALA eq. 1 with w = alpha min(rho_bar, rho) + (1 - alpha) rho, c = lam w),
    and rlax's advantage w_s (r_s + d_s (lam vs_{s+1} + (1 - lam) v_{s+1}) - v_s), vs_T = v_T."""
    v_tm1, v_t, r, d, rho = (np.asarray(x, np.float64) for x in (v_tm1, v_t, r, d, rho))
    t_len, b_len = r.shape
    vs, adv = np.zeros_like(r), np.zeros_like(r)
    for b in range(b_len):
        w = [alpha * min(rho_bar, rho[t, b]) + (1 - alpha) * rho[t, b] for t in range(t_len)]
        for s in range(t_len):
            acc, prod = 0.0, 1.0
            for t in range(s, t_len):
                acc += prod * w[t] * (r[t, b] + d[t, b] * v_t[t, b] - v_tm1[t, b])
                prod *= d[t, b] * lam * w[t]
            vs[s, b] = v_tm1[s, b] + acc
        for s in range(t_len):
            vs_next = vs[s + 1, b] if s + 1 < t_len else v_t[-1, b]
            bootstrap = lam * vs_next + (1 - lam) * v_t[s, b]
            adv[s, b] = w[s] * (r[s, b] + d[s, b] * bootstrap - v_tm1[s, b])
    return vs, adv


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max()
    return x - m - math.log(np.exp(x - m).sum())


def ref_stacx_loss(rollout, logits_per_head, values_per_head, hypers, rho_bar):
    """The sum over heads of g_p pg + g_v 0.5 (vs - v)^2 - g_e H, with loops over heads, time and batch."""
    action, reward, discount = (np.asarray(x) for x in (rollout.action, rollout.reward, rollout.discount))
    mu = np.asarray(rollout.behaviour_logits)
    t1, b_len = reward.shape
    t_len = t1 - 1
    total, per_head = 0.0, []
    for k, (logits, value) in enumerate(zip(logits_per_head, values_per_head)):
        h = {name: float(hypers[name][k]) for name in META_PARAMETERS}
        logits, value = np.asarray(logits, np.float64), np.asarray(value, np.float64)
        log_pi = np.zeros((t_len, b_len))
        rho = np.zeros((t_len, b_len))
        ent = np.zeros((t_len, b_len))
        for t in range(t_len):
            for b in range(b_len):
                lp = _log_softmax(logits[t, b])
                log_pi[t, b] = lp[action[t, b]]
                rho[t, b] = math.exp(lp[action[t, b]] - _log_softmax(mu[t, b])[action[t, b]])
                ent[t, b] = -float(np.sum(np.exp(lp) * lp))
        vs, adv = ref_leaky_vtrace(
            value[:-1], value[1:], reward[1:], h["gamma"] * discount[1:], rho, h["alpha"], h["td_lambda"], rho_bar
        )
        pg = -np.mean(adv * log_pi)
        value_loss = 0.5 * np.mean((vs - value[:-1]) ** 2)
        loss = h["policy_weight"] * pg + h["value_weight"] * value_loss - h["entropy_weight"] * np.mean(ent)
        per_head.append({"loss": loss, "pg_loss": pg, "value_loss": value_loss, "entropy": np.mean(ent)})
        total += loss
    return total, per_head


# --------------------------------------------------------------------------- the V-trace convention


def test_rlax_advantage_against_impala_on_the_hand_worked_case():
    """T = 3, v = 0, r = [0.68, -0.47, 1.66], d = gamma = 0.9, rho = 1, lambda = 0.5.

    vs - v:  e2 = 1.66;  e1 = -0.47 + 0.9 * 0.5 * 1.66 = 0.277;  e0 = 0.68 + 0.45 * 0.277 = 0.80465.
    IMPALA (losses.vtrace_targets): A_s = r_s + d vs_{s+1} - v_s = [0.68 + 0.9 * 0.277, -0.47 + 0.9 * 1.66, 1.66]
                                                                = [0.9293, 1.024, 1.66].
    rlax:  A_s = r_s + d (lambda vs_{s+1} + (1 - lambda) v_{s+1}) - v_s = [0.68 + 0.45 * 0.277, -0.47 + 0.45 * 1.66, 1.66]
                                                                       = [0.80465, 0.277, 1.66].
    """
    zeros = np.zeros((3, 1))
    r = np.array([[0.68], [-0.47], [1.66]])
    d = np.full((3, 1), 0.9)
    ones = np.ones((3, 1))
    vs, rlax_adv = leaky_vtrace_advantages(zeros, zeros, r, d, ones, alpha=0.7, lambda_=0.5)
    impala_vs, impala_adv = vtrace_targets(zeros, zeros, r, d, ones, lambda_=0.5)
    np.testing.assert_allclose(vs[:, 0], [0.80465, 0.277, 1.66], atol=1e-6)
    np.testing.assert_allclose(impala_vs, vs, atol=1e-7)  # the targets are the same; only the advantage differs
    np.testing.assert_allclose(rlax_adv[:, 0], [0.80465, 0.277, 1.66], atol=1e-6)
    np.testing.assert_allclose(impala_adv[:, 0], [0.9293, 1.024, 1.66], atol=1e-6)
    np.testing.assert_allclose(np.round(np.asarray(rlax_adv[:, 0]), 3), [0.805, 0.277, 1.660], atol=1e-9)
    np.testing.assert_allclose(np.round(np.asarray(impala_adv[:, 0]), 3), [0.929, 1.024, 1.660], atol=1e-9)
    ref_vs, ref_adv = ref_leaky_vtrace(zeros, zeros, r, d, ones, 0.7, 0.5, 1.0)
    np.testing.assert_allclose(rlax_adv, ref_adv, atol=1e-6)
    np.testing.assert_allclose(vs, ref_vs, atol=1e-6)
    # At lambda = 1 the two forms agree.
    _, rlax_1 = leaky_vtrace_advantages(zeros, zeros, r, d, ones, alpha=0.7, lambda_=1.0)
    np.testing.assert_allclose(rlax_1, vtrace_targets(zeros, zeros, r, d, ones, lambda_=1.0)[1], atol=1e-6)


@pytest.mark.parametrize("alpha,lam,rho_bar", [(1.0, 1.0, 1.0), (0.6, 0.5, 1.0), (0.0, 0.8, 1.0), (0.3, 0.7, 1.5)])
def test_leaky_vtrace_advantages_match_plain_python(alpha, lam, rho_bar):
    rng = np.random.default_rng(3)
    t, b = 6, 3
    r = rng.normal(size=(t, b))
    d = 0.9 * (rng.uniform(size=(t, b)) > 0.2)
    value = rng.normal(size=(t + 1, b))
    rho = np.exp(rng.normal(scale=0.7, size=(t, b)))
    vs, adv = leaky_vtrace_advantages(value[:-1], value[1:], r, d, rho, alpha, lam, rho_bar)
    ref_vs, ref_adv = ref_leaky_vtrace(value[:-1], value[1:], r, d, rho, alpha, lam, rho_bar)
    np.testing.assert_allclose(vs, ref_vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)


def test_on_policy_the_advantage_is_the_lambda_return_advantage_of_a2c():
    rng = np.random.default_rng(4)
    t, b, lam = 6, 3, 0.6
    r = rng.normal(size=(t, b)).astype(np.float32)
    d = (0.9 * (rng.uniform(size=(t, b)) > 0.2)).astype(np.float32)
    value = rng.normal(size=(t + 1, b)).astype(np.float32)
    vs, adv = leaky_vtrace_advantages(value[:-1], value[1:], r, d, np.ones_like(r), 0.4, lam)
    g = lambda_returns(r, d, value[1:], lam)
    np.testing.assert_allclose(vs, g, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv, g - value[:-1], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- the agent loss


def _rollout(rng, t, b, a, obs_shape=(1,), dtype=np.float32) -> Rollout:
    discount = (rng.uniform(size=(t + 1, b)) > 0.2).astype(dtype)
    return Rollout(
        observation=jnp.asarray(rng.normal(size=(t + 1, b) + obs_shape).astype(dtype)),
        action=jnp.asarray(rng.integers(0, a, size=(t + 1, b)), jnp.int32),
        reward=jnp.asarray(rng.normal(size=(t + 1, b)).astype(dtype)),
        discount=jnp.asarray(discount),
        done=jnp.asarray(discount == 0),
        behaviour_logits=jnp.asarray(rng.normal(size=(t + 1, b, a)).astype(dtype)),
        episode_return=jnp.zeros((t + 1, b), dtype),
    )


def test_agent_loss_matches_a_plain_python_reference():
    t, b, a, k = 5, 2, 3, 2
    rng = np.random.default_rng(0)
    objective = objectives.make("stacx", num_aux=k, rho_bar=1.2, alpha=0.6, td_lambda=0.7)
    rollout = _rollout(rng, t, b, a)
    logits = rng.normal(size=(t + 1, b, a)).astype(np.float32)
    value = rng.normal(size=(t + 1, b)).astype(np.float32)
    aux_logits = rng.normal(size=(t + 1, b, k, a)).astype(np.float32)
    aux_value = rng.normal(size=(t + 1, b, k)).astype(np.float32)
    out = AgentOutput(
        logits=jnp.asarray(logits),
        value=jnp.asarray(value),
        y_logits=empty_like_y(jnp.asarray(logits)),
        extra={AUX_LOGITS: jnp.asarray(aux_logits), AUX_VALUE: jnp.asarray(aux_value)},
    )
    eta0 = objective.init(jax.random.PRNGKey(0))
    eta = {name: x + jnp.asarray(rng.normal(scale=0.5, size=x.shape), x.dtype) for name, x in eta0.items()}
    loss, metrics = _compiled(objective.agent_loss, eta, rollout, out)(eta, rollout, out)
    hypers = {name: np.asarray(v) for name, v in objective.hyper_parameters(eta).items()}
    assert len({float(hypers["gamma"][i]) for i in range(k + 1)}) == k + 1  # every head has its own values
    ref, per_head = ref_stacx_loss(
        rollout,
        [logits] + [aux_logits[:, :, i] for i in range(k)],
        [value] + [aux_value[:, :, i] for i in range(k)],
        hypers,
        rho_bar=1.2,
    )
    np.testing.assert_allclose(loss, ref, rtol=1e-5)
    np.testing.assert_allclose(metrics["main_loss"], per_head[0]["loss"], rtol=1e-5)
    for key in ("pg_loss", "value_loss", "entropy"):
        np.testing.assert_allclose(metrics[key], per_head[0][key], rtol=1e-5, err_msg=key)
    for i in range(1, k + 1):
        np.testing.assert_allclose(metrics[f"aux{i}/loss"], per_head[i]["loss"], rtol=1e-5)
        np.testing.assert_allclose(metrics[f"aux{i}/value_loss"], per_head[i]["value_loss"], rtol=1e-5)


# --------------------------------------------------------------------------- heads, eta and config


def test_heads_eta_and_describe_eta():
    objective = objectives.make("stacx")
    assert objective.config.num_aux == 2
    assert objective.heads.extra == (Head(AUX_LOGITS, 2, per_action=True), Head(AUX_VALUE, 2))
    spec = EnvSpec("tiny", "tiny", observation_shape=(4,), num_actions=3, max_episode_steps=10)
    agent = make_agent(spec, NetworkConfig(torso="mlp", hidden_sizes=(8,)), heads=objective.heads)
    out = jax.eval_shape(agent.apply, jax.eval_shape(agent.init, jax.random.PRNGKey(0)), jnp.zeros((5, 2, 4)))
    assert out.logits.shape == (5, 2, 3) and out.extra[AUX_LOGITS].shape == (5, 2, 2, 3)
    assert out.extra[AUX_VALUE].shape == (5, 2, 2)
    eta = objective.init(jax.random.PRNGKey(0))
    assert set(eta) == set(META_PARAMETERS) and all(x.shape == (3,) for x in eta.values())
    described = objective.describe_eta(eta)
    heads = ("main", "aux1", "aux2")
    assert set(described) == {f"{h}/{n}" for h in heads for n in META_PARAMETERS}
    c = objective.config
    for h in heads:
        for name in META_PARAMETERS:
            assert float(described[f"{h}/{name}"]) == pytest.approx(getattr(c, name), rel=1e-5)
    assert objectives.make("stacx", num_aux=0).heads.extra == ()
    assert set(objectives.make("stacx", num_aux=0).describe_eta(objectives.make("stacx", num_aux=0).init(None))) == {
        f"main/{n}" for n in META_PARAMETERS
    }


def test_every_numeric_config_field_is_range_checked():
    config = objectives.make("stacx").config
    fields = [
        f
        for f in vars(config)
        if isinstance(getattr(config, f), (int, float)) and not isinstance(getattr(config, f), bool)
    ]
    assert len(fields) == 15
    for field in fields:
        with pytest.raises(InvalidConfigError, match=rf"^objective stacx: (initial )?{field} must be .*, got nan$"):
            objectives.make("stacx", **{field: math.nan})
    with pytest.raises(InvalidConfigError, match=r"initial entropy_weight must be in \(0, 0.02\), got 0.05"):
        objectives.make("stacx", entropy_weight=0.05)
    with pytest.raises(InvalidConfigError, match=r"num_aux must be an integer >= 0, got 1.5"):
        objectives.make("stacx", num_aux=1.5)


# --------------------------------------------------------------------------- the meta-gradient


def test_one_step_meta_gradient_matches_float64_finite_differences():
    """d/d eta of the outer loss after one SGD step of a tiny MLP agent on STACX's loss, every component.

    The outer loss is A2C's policy-gradient term on the main head (``lpg discover online``'s). Its advantages are
    stop-gradiented, so the meta-gradient treats them as constants while finite differences would see them move
    with eta: the reference freezes them at eta (as the engine's own check, tests/test_meta_gradient.py). The
    auxiliary heads' meta-parameters reach that loss only through the shared torso.
    """
    with jax.enable_x64(True):
        t, b, a, lr = 5, 3, 3, 0.5
        objective = objectives.make("stacx", rho_bar=1.0)
        spec = EnvSpec("tiny", "tiny", observation_shape=(3,), num_actions=a, max_episode_steps=10)
        agent = make_agent(spec, NetworkConfig(torso="mlp", hidden_sizes=(6,)), heads=objective.heads)
        rng = np.random.default_rng(1)
        shapes = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
        params = jax.tree.map(lambda x: jnp.asarray(rng.normal(scale=0.7, size=x.shape)), shapes)
        inner, outer_rollout = (_rollout(rng, t, b, a, (3,), np.float64) for _ in range(2))
        eta0 = objective.init(jax.random.PRNGKey(0))
        eta = {
            name: jnp.asarray(np.asarray(x, np.float64) + rng.normal(scale=0.5, size=x.shape))
            for name, x in eta0.items()
        }
        outer = objectives.make("a2c", gamma=0.9, td_lambda=0.8, value_weight=0.0, entropy_weight=0.0)

        def outer_out(eta):
            grads = jax.grad(lambda p: objective.agent_loss(eta, inner, agent.apply(p, inner.observation))[0])(params)
            updated = jax.tree.map(lambda p, g: p - lr * g, params, grads)
            return agent.apply(updated, outer_rollout.observation)

        def meta_loss(eta):
            return outer.agent_loss({}, outer_rollout, outer_out(eta))[0]

        def frozen_meta_loss(eta, eta_at):
            """The outer loss with its advantages G^lambda - v computed at ``eta_at`` (held fixed)."""
            value = outer_out(eta_at).value
            r_t, d_t = outer_rollout.reward[1:], 0.9 * outer_rollout.discount[1:]
            advantages = lambda_returns(r_t, d_t, value[1:], 0.8) - value[:-1]
            log_pi = log_prob(outer_out(eta).logits[:-1], outer_rollout.action[:-1])
            return -jnp.mean(advantages * log_pi)

        loss, grad = _compiled(jax.value_and_grad(meta_loss), eta)(eta)
        f = _compiled(frozen_meta_loss, eta, eta)
        np.testing.assert_allclose(f(eta, eta), loss, rtol=1e-12)
        eps = 1e-6
        for name in META_PARAMETERS:
            assert grad[name].dtype == jnp.float64
            for i in range(objective.num_heads):
                step = jnp.zeros_like(eta[name]).at[i].set(eps)
                fd = (f({**eta, name: eta[name] + step}, eta) - f({**eta, name: eta[name] - step}, eta)) / (2 * eps)
                np.testing.assert_allclose(grad[name][i], fd, rtol=1e-5, atol=1e-10, err_msg=f"{name}[{i}]")
        for i in range(1, objective.num_heads):  # auxiliary heads shape the torso, so their eta matters
            assert max(abs(float(grad[name][i])) for name in META_PARAMETERS) > 1e-5, f"aux{i}"
