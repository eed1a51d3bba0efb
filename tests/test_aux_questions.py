"""Discovered auxiliary questions (objectives/aux_questions.py): the fixed observation features, the GVF loss and
the agent loss against plain Python, its head and tabular refusal, and the 1-step meta-gradient against float64
finite differences (non-zero through a shared torso, exactly zero for a tabular agent)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import objectives
from lpg import envs
from lpg.envs.base import EnvSpec
from lpg.errors import InvalidConfigError
from lpg.networks import NetworkConfig, make_agent
from lpg.types import AgentOutput, Head, Rollout, empty_like_y
from objectives.aux_questions import GVF_HEAD, gvf_loss, observation_features
from objectives.losses import lambda_returns, log_prob

FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
SPEC = EnvSpec("tiny", "tiny", observation_shape=(3,), num_actions=2, max_episode_steps=10)


def _compiled(f, *args):
    return jax.jit(f).lower(*args).compile(compiler_options=FAST_COMPILE)


def _features(observation, input_size):
    return _compiled(lambda o: observation_features(o, input_size), observation)(observation)


def _rollout(rng, t, b, a, obs_shape=(3,), dtype=np.float32, observation=None) -> Rollout:
    discount = (rng.uniform(size=(t + 1, b)) > 0.2).astype(dtype)
    if observation is None:
        observation = rng.normal(size=(t + 1, b) + obs_shape).astype(dtype)
    return Rollout(
        observation=jnp.asarray(observation),
        action=jnp.asarray(rng.integers(0, a, size=(t + 1, b)), jnp.int32),
        reward=jnp.asarray(rng.normal(size=(t + 1, b)).astype(dtype)),
        discount=jnp.asarray(discount),
        done=jnp.asarray(discount == 0),
        behaviour_logits=jnp.asarray(rng.normal(size=(t + 1, b, a)).astype(dtype)),
        episode_return=jnp.zeros((t + 1, b), dtype),
    )


# --------------------------------------------------------------------------- plain-Python references


def ref_lambda_returns(r, d, v, lam):
    """G_t = r_t + d_t ((1 - lam) v_t + lam G_{t+1}), G_T = v[-1]; [T, B, Q] with loops."""
    r, d, v = (np.asarray(x, np.float64) for x in (r, d, v))
    out = np.zeros_like(r)
    for idx in np.ndindex(r.shape[1:]):
        g = v[(-1, *idx)]
        for t in reversed(range(r.shape[0])):
            g = r[(t, *idx)] + d[(t, *idx)] * ((1 - lam) * v[(t, *idx)] + lam * g)
            out[(t, *idx)] = g
    return out


def ref_question_net(eta, x):
    """tanh(hidden) then [tanh(cumulants), sigmoid(discounts)], numpy."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), eta["params"])
    h = np.tanh(x @ p["hidden"]["kernel"] + p["hidden"]["bias"])
    u = h @ p["out"]["kernel"] + p["out"]["bias"]
    q = u.shape[-1] // 2
    return np.tanh(u[..., :q]), 1.0 / (1.0 + np.exp(-u[..., q:]))


def ref_a2c_loss(rollout, logits, value, gamma, lam, value_weight, entropy_weight):
    reward, discount, action = (np.asarray(x) for x in (rollout.reward, rollout.discount, rollout.action))
    g = ref_lambda_returns(reward[1:], gamma * discount[1:], value[1:], lam)
    t_len, b_len = g.shape
    pg, ent = 0.0, 0.0
    for t in range(t_len):
        for b in range(b_len):
            x = np.asarray(logits[t, b], np.float64)
            lp = x - x.max() - math.log(np.exp(x - x.max()).sum())
            pg += -(g[t, b] - value[t, b]) * lp[action[t, b]]
            ent += -np.sum(np.exp(lp) * lp)
    n = t_len * b_len
    return pg / n + value_weight * 0.5 * np.mean((g - value[:-1]) ** 2) - entropy_weight * ent / n


# --------------------------------------------------------------------------- features and the GVF loss


def test_observation_features_are_fixed_random_projections():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(4, 2, 5, 2)).astype(np.float32)
    features = _features(jnp.asarray(obs), 6)
    projection = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (10, 6))) / math.sqrt(10)
    # The fixed N(0, 1/dim) matrix of the constant key 0, so the same at every call.
    np.testing.assert_allclose(features, obs.reshape(4, 2, 10) @ projection, rtol=1e-5, atol=1e-6)
    pixels = rng.integers(0, 256, size=(2, 1, 10)).astype(np.uint8)
    np.testing.assert_allclose(_features(jnp.asarray(pixels), 6), (pixels / 255.0) @ projection, rtol=1e-5, atol=1e-6)
    index = jnp.asarray([[0, 3], [3, 1]], jnp.int32)  # a tabular state index: one fixed vector per state
    embedded = np.asarray(_features(index, 6))
    assert embedded.shape == (2, 2, 6)
    np.testing.assert_array_equal(embedded[0, 1], embedded[1, 0])
    assert not np.allclose(embedded[0, 0], embedded[0, 1])


def test_gvf_loss_matches_plain_python_and_stops_the_gradient_to_the_answers():
    rng = np.random.default_rng(1)
    t, b, q, lam = 5, 2, 3, 0.6
    answers = rng.normal(size=(t + 1, b, q))
    cumulants = rng.normal(size=(t, b, q))
    discounts = rng.uniform(size=(t, b, q)) * (rng.uniform(size=(t, b, 1)) > 0.2)
    loss, returns = gvf_loss(jnp.asarray(answers), jnp.asarray(cumulants), jnp.asarray(discounts), lam)
    ref = ref_lambda_returns(cumulants, discounts, answers[1:], lam)
    np.testing.assert_allclose(returns, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, 0.5 * np.mean((ref - answers[:-1]) ** 2), rtol=1e-5)
    grad = jax.grad(lambda y: gvf_loss(y, jnp.asarray(cumulants), jnp.asarray(discounts), lam)[0])(jnp.asarray(answers))
    np.testing.assert_allclose(grad[:-1], -(ref - answers[:-1]) / ref.size, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(grad[-1], 0.0)  # the bootstrap answer is a target, not a prediction


# --------------------------------------------------------------------------- the agent loss


def test_agent_loss_matches_a_plain_python_reference():
    t, b, a, q = 5, 2, 2, 3
    objective = objectives.make(
        "aux_questions", num_questions=q, hidden_size=4, input_size=5, gvf_lambda=0.7, aux_weight=0.3, gamma=0.9
    )
    rng = np.random.default_rng(2)
    rollout = _rollout(rng, t, b, a)
    eta = _compiled(objective.init, jax.random.PRNGKey(3))(jax.random.PRNGKey(3))
    logits = rng.normal(size=(t + 1, b, a)).astype(np.float32)
    value = rng.normal(size=(t + 1, b)).astype(np.float32)
    answers = rng.normal(size=(t + 1, b, q)).astype(np.float32)
    out = AgentOutput(
        logits=jnp.asarray(logits),
        value=jnp.asarray(value),
        y_logits=empty_like_y(jnp.asarray(logits)),
        extra={GVF_HEAD: jnp.asarray(answers)},
    )

    def loss_targets_features(eta, rollout, out):
        features = observation_features(rollout.observation[1:], objective.config.input_size)
        return objective.agent_loss(eta, rollout, out), objective.targets(eta, rollout, out), features

    (loss, metrics), targets, features = _compiled(loss_targets_features, eta, rollout, out)(eta, rollout, out)

    c = objective.config
    features = np.asarray(features, np.float64)  # checked by test_observation_features_are_fixed_random_projections
    cumulants, discounts = ref_question_net(eta, features)
    discounts = discounts * np.asarray(rollout.discount[1:])[..., None]
    returns = ref_lambda_returns(cumulants, discounts, answers[1:], c.gvf_lambda)
    ref_gvf = 0.5 * np.mean((returns - answers[:-1]) ** 2)
    ref_a2c = ref_a2c_loss(rollout, logits, value, c.gamma, c.td_lambda, c.value_weight, c.entropy_weight)
    np.testing.assert_allclose(metrics["gvf_loss"], ref_gvf, rtol=1e-5)
    np.testing.assert_allclose(metrics["a2c_loss"], ref_a2c, rtol=1e-5)
    np.testing.assert_allclose(loss, ref_a2c + 0.3 * ref_gvf, rtol=1e-5)
    np.testing.assert_allclose(metrics["mean_gvf_discount"], discounts.mean(), rtol=1e-5)
    np.testing.assert_allclose(targets, returns, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- heads, environments and config


def test_the_gvf_head_the_tabular_refusal_and_describe_eta():
    objective = objectives.make("aux_questions", num_questions=3)
    assert objective.heads.extra == (Head(GVF_HEAD, 3),)
    agent = make_agent(SPEC, NetworkConfig(torso="mlp", hidden_sizes=(8,)), heads=objective.heads)
    out = jax.eval_shape(agent.apply, jax.eval_shape(agent.init, jax.random.PRNGKey(0)), jnp.zeros((5, 2, 3)))
    assert out.extra[GVF_HEAD].shape == (5, 2, 3)
    objective.check_env(envs.make_spec("catch"))
    with pytest.raises(InvalidConfigError, match="shares no parameters with its policy and value"):
        objective.check_env(envs.make_spec("chain/short"))
    key = jax.random.PRNGKey(0)
    described = _compiled(lambda k: objective.describe_eta(objective.init(k)), key)(key)
    assert set(described) == {"param_norm"} | {f"q{i}/{k}" for i in (1, 2, 3) for k in ("cumulant0", "discount0")}
    assert all(0 < float(described[f"q{i}/discount0"]) < 1 for i in (1, 2, 3))


def test_every_numeric_config_field_is_range_checked():
    config = objectives.make("aux_questions").config
    fields = [f for f, v in vars(config).items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert len(fields) == 10
    for field in fields:
        with pytest.raises(InvalidConfigError, match=rf"^objective aux_questions: {field} must be .*, got nan$"):
            objectives.make("aux_questions", **{field: math.nan})


# --------------------------------------------------------------------------- the meta-gradient


def _meta_setup(torso: str, seed: int):
    """(objective, eta, meta_loss, frozen_meta_loss) for one SGD step (lr 0.5) of a tiny float64 agent.

    The outer loss is A2C's policy-gradient term (``lpg discover online``'s); ``frozen_meta_loss(eta, eta_at)``
    is the same loss with its stop-gradiented advantages computed at ``eta_at``, which is what the meta-gradient
    differentiates (finite differences of the plain outer loss would also see the advantages move).
    """
    t, b, lr, gamma, lam = 5, 3, 0.5, 0.9, 0.8
    objective = objectives.make("aux_questions", num_questions=2, hidden_size=4, input_size=4, aux_weight=1.0)
    rng = np.random.default_rng(seed)
    if torso == "tabular":
        spec = EnvSpec("tiny", "tiny", (), SPEC.num_actions, 10, observation_dtype="int32", num_observations=4)
        obs = [rng.integers(0, 4, size=(t + 1, b)).astype(np.int32) for _ in range(2)]
    else:
        spec, obs = SPEC, [None, None]
    dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
    agent = make_agent(spec, NetworkConfig(torso=torso, hidden_sizes=(6,)), heads=objective.heads)
    shapes = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
    params = jax.tree.map(lambda x: jnp.asarray(rng.normal(scale=0.7, size=x.shape)), shapes)
    inner, outer_rollout = (_rollout(rng, t, b, spec.num_actions, (3,), dtype, o) for o in obs)
    shapes = jax.eval_shape(objective.init, jax.random.PRNGKey(1))
    eta = jax.tree.map(lambda x: jnp.asarray(rng.normal(scale=0.5, size=x.shape)), shapes)
    outer = objectives.make("a2c", gamma=gamma, td_lambda=lam, value_weight=0.0, entropy_weight=0.0)

    def outer_out(eta):
        grads = jax.grad(lambda p: objective.agent_loss(eta, inner, agent.apply(p, inner.observation))[0])(params)
        updated = jax.tree.map(lambda p, g: p - lr * g, params, grads)
        return agent.apply(updated, outer_rollout.observation)

    def meta_loss(eta):
        return outer.agent_loss({}, outer_rollout, outer_out(eta))[0]

    def frozen_meta_loss(eta, eta_at):
        value = outer_out(eta_at).value
        r_t, d_t = outer_rollout.reward[1:], gamma * outer_rollout.discount[1:]
        advantages = lambda_returns(r_t, d_t, value[1:], lam) - value[:-1]
        return -jnp.mean(advantages * log_prob(outer_out(eta).logits[:-1], outer_rollout.action[:-1]))

    return objective, eta, meta_loss, frozen_meta_loss


def test_one_step_meta_gradient_matches_float64_finite_differences():
    """Directional derivatives of the 1-step meta-loss along random directions of the question network's weights."""
    with jax.enable_x64(True):
        _, eta, meta_loss, frozen_meta_loss = _meta_setup("mlp", seed=4)
        loss, grad = _compiled(jax.value_and_grad(meta_loss), eta)(eta)
        f = _compiled(frozen_meta_loss, eta, eta)
        np.testing.assert_allclose(f(eta, eta), loss, rtol=1e-12)
        leaves, treedef = jax.tree.flatten(eta)
        assert all(g.dtype == jnp.float64 for g in jax.tree.leaves(grad))
        assert all(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grad))  # every layer of eta matters
        rng = np.random.default_rng(5)
        eps = 1e-6
        for _ in range(4):
            direction = jax.tree.unflatten(treedef, [jnp.asarray(rng.normal(size=x.shape)) for x in leaves])
            plus = jax.tree.map(lambda x, u: x + eps * u, eta, direction)
            minus = jax.tree.map(lambda x, u: x - eps * u, eta, direction)
            fd = (f(plus, eta) - f(minus, eta)) / (2 * eps)
            analytic = sum(jnp.vdot(g, u) for g, u in zip(jax.tree.leaves(grad), jax.tree.leaves(direction)))
            np.testing.assert_allclose(analytic, fd, rtol=1e-5, atol=1e-10)
            assert abs(float(analytic)) > 1e-7


def test_the_meta_gradient_is_zero_for_a_tabular_agent():
    """One table row per state: the GVF columns share nothing with the policy and value, so eta cannot matter."""
    _, eta, meta_loss, _ = _meta_setup("tabular", seed=6)
    grad = _compiled(jax.grad(meta_loss), eta)(eta)
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grad))
