"""Numerical tests of objectives.losses, A2C and V-trace."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import objectives
from lpg.errors import InvalidConfigError
from lpg.types import AgentOutput, Rollout, empty_like_y
from objectives import losses
from objectives.a2c import A2C, A2CConfig, a2c_loss
from objectives.vtrace import VTrace, VTraceConfig, vtrace_loss

T, B = 7, 3


# --------------------------------------------------------------------------- references


def ref_lambda_returns(r, d, v, lam):
    """Plain-Python double loop: G_t = r_t + d_t((1-lam) v_t + lam G_{t+1}), G_T = v_t[-1]."""
    r, d, v = (np.asarray(x, np.float64) for x in (r, d, v))
    t_len, b_len = r.shape
    out = np.zeros_like(r)
    for b in range(b_len):
        g = v[-1, b]
        for t in reversed(range(t_len)):
            g = r[t, b] + d[t, b] * ((1 - lam) * v[t, b] + lam * g)
            out[t, b] = g
    return out


def ref_mc_returns(r, d, v):
    """Discounted Monte-Carlo return bootstrapped with v_t[-1] (explicit sums)."""
    r, d, v = (np.asarray(x, np.float64) for x in (r, d, v))
    t_len, b_len = r.shape
    out = np.zeros_like(r)
    for b in range(b_len):
        for s in range(t_len):
            g, disc = 0.0, 1.0
            for t in range(s, t_len):
                g += disc * r[t, b]
                disc *= d[t, b]
            out[s, b] = g + disc * v[-1, b]
    return out


def ref_vtrace(v_tm1, v_t, r, d, rho, lam=1.0, rho_bar=1.0, pg_rho_bar=1.0, c_bar=1.0):
    """IMPALA eq. 1 as explicit sums:

    vs_s = v_s + sum_{t=s}^{T-1} (prod_{i=s}^{t-1} d_i c_i) delta_t,
    delta_t = min(rho_bar, rho_t) (r_t + d_t v_{t+1} - v_t), c_i = lam min(c_bar, rho_i).
    """
    v_tm1, v_t, r, d, rho = (np.asarray(x, np.float64) for x in (v_tm1, v_t, r, d, rho))
    t_len, b_len = r.shape
    vs = np.zeros_like(r)
    adv = np.zeros_like(r)
    for b in range(b_len):
        for s in range(t_len):
            acc, prod = 0.0, 1.0
            for t in range(s, t_len):
                delta = min(rho_bar, rho[t, b]) * (r[t, b] + d[t, b] * v_t[t, b] - v_tm1[t, b])
                acc += prod * delta
                prod *= d[t, b] * lam * min(c_bar, rho[t, b])
            vs[s, b] = v_tm1[s, b] + acc
        for s in range(t_len):
            vs_next = vs[s + 1, b] if s + 1 < t_len else v_t[-1, b]
            adv[s, b] = min(pg_rho_bar, rho[s, b]) * (r[s, b] + d[s, b] * vs_next - v_tm1[s, b])
    return vs, adv


def random_inputs(seed, t=T, b=B):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(t, b)).astype(np.float32)
    d = (0.9 * (rng.uniform(size=(t, b)) > 0.25)).astype(np.float32)
    d[t // 2, :] = 0.0  # a terminal in the middle for sure
    v_tm1 = rng.normal(size=(t, b)).astype(np.float32)
    v_t = rng.normal(size=(t, b)).astype(np.float32)
    rho = np.exp(rng.normal(scale=0.7, size=(t, b))).astype(np.float32)
    return r, d, v_tm1, v_t, rho


# --------------------------------------------------------------------------- lambda returns


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.95, 1.0])
@pytest.mark.parametrize("use_jit", [False, True])
def test_lambda_returns_matches_reference(lam, use_jit):
    r, d, _, v_t, _ = random_inputs(0)
    fn = jax.jit(losses.lambda_returns) if use_jit else losses.lambda_returns
    got = fn(r, d, v_t, lam)
    assert got.shape == (T, B)
    np.testing.assert_allclose(got, ref_lambda_returns(r, d, v_t, lam), rtol=1e-5, atol=1e-5)


def test_lambda_returns_special_cases():
    r, d, _, v_t, _ = random_inputs(1)
    np.testing.assert_allclose(losses.lambda_returns(r, d, v_t, 1.0), ref_mc_returns(r, d, v_t), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(losses.lambda_returns(r, d, v_t, 0.0), r + d * v_t, rtol=1e-6, atol=1e-6)


def test_lambda_returns_vmap_and_array_lambda():
    inputs = [random_inputs(s) for s in range(4)]
    r = np.stack([x[0] for x in inputs])
    d = np.stack([x[1] for x in inputs])
    v_t = np.stack([x[3] for x in inputs])
    lams = np.array([0.0, 0.5, 0.9, 1.0], np.float32)
    got = jax.jit(jax.vmap(losses.lambda_returns))(r, d, v_t, lams)
    for i in range(4):
        np.testing.assert_allclose(got[i], ref_lambda_returns(r[i], d[i], v_t[i], lams[i]), rtol=1e-5, atol=1e-5)
    # A [T, B] lambda array.
    lam_tb = np.random.default_rng(3).uniform(size=(T, B)).astype(np.float32)
    got = losses.lambda_returns(r[0], d[0], v_t[0], lam_tb)
    ref = np.zeros((T, B))
    for b in range(B):
        g = v_t[0][-1, b]
        for t in reversed(range(T)):
            g = r[0][t, b] + d[0][t, b] * ((1 - lam_tb[t, b]) * v_t[0][t, b] + lam_tb[t, b] * g)
            ref[t, b] = g
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_lambda_returns_hand_worked():
    # G_2 = 3 + 0.9 * (0.5*30 + 0.5*30) = 30     (bootstrap with v_t[-1] = 30)
    # G_1 = 2 + 0 * (...)                  = 2      (episode ends)
    # G_0 = 1 + 0.9 * (0.5*10 + 0.5*2)     = 6.4
    r = jnp.array([[1.0], [2.0], [3.0]])
    d = jnp.array([[0.9], [0.0], [0.9]])
    v_t = jnp.array([[10.0], [20.0], [30.0]])
    np.testing.assert_allclose(losses.lambda_returns(r, d, v_t, 0.5), [[6.4], [2.0], [30.0]], rtol=1e-6)


def test_lambda_returns_shape_check():
    with pytest.raises(AssertionError):
        losses.lambda_returns(jnp.zeros((3, 2)), jnp.zeros((3, 2)), jnp.zeros((3, 1)), 0.5)


# --------------------------------------------------------------------------- v-trace


@pytest.mark.parametrize(
    "lam,rho_bar,pg_rho_bar,c_bar",
    [(1.0, 1.0, 1.0, 1.0), (0.9, 1.0, 1.0, 1.0), (1.0, 2.0, 1.5, 0.8), (0.5, None, None, None)],
)
@pytest.mark.parametrize("use_jit", [False, True])
def test_vtrace_matches_reference(lam, rho_bar, pg_rho_bar, c_bar, use_jit):
    r, d, v_tm1, v_t, rho = random_inputs(5)

    def fn(v_tm1, v_t, r, d, rho):
        return losses.vtrace_targets(v_tm1, v_t, r, d, rho, lam, rho_bar, pg_rho_bar, c_bar)

    fn = jax.jit(fn) if use_jit else fn
    vs, adv = fn(v_tm1, v_t, r, d, rho)
    big = 1e9
    ref_vs, ref_adv = ref_vtrace(v_tm1, v_t, r, d, rho, lam, rho_bar or big, pg_rho_bar or big, c_bar or big)
    np.testing.assert_allclose(vs, ref_vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)


def test_vtrace_vmap():
    inputs = [random_inputs(s) for s in range(3)]
    r, d, v_tm1, v_t, rho = (np.stack([x[k] for x in inputs]) for k in range(5))
    vs, adv = jax.jit(jax.vmap(losses.vtrace_targets))(v_tm1, v_t, r, d, rho)
    for i in range(3):
        ref_vs, ref_adv = ref_vtrace(v_tm1[i], v_t[i], r[i], d[i], rho[i])
        np.testing.assert_allclose(vs[i], ref_vs, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(adv[i], ref_adv, rtol=1e-5, atol=1e-5)


def test_vtrace_hand_worked():
    # rho = [2, .5, 1] -> clipped rho = c = [1, .5, 1]
    # td   = [1*(1 + .5*2 - 1), .5*(1 + .5*3 - 2), 1*(1 + 0*4 - 3)] = [1, .25, -2]
    # vs-v : e2 = -2; e1 = .25 + .5*.5*(-2) = -.25; e0 = 1 + .5*1*(-.25) = .875
    # vs   = [1.875, 1.75, 1.0]
    # adv  = [1*(1 + .5*1.75 - 1), .5*(1 + .5*1.0 - 2), 1*(1 + 0*4 - 3)] = [.875, -.25, -2]
    v_tm1 = jnp.array([[1.0], [2.0], [3.0]])
    v_t = jnp.array([[2.0], [3.0], [4.0]])
    r = jnp.ones((3, 1))
    d = jnp.array([[0.5], [0.5], [0.0]])
    rho = jnp.array([[2.0], [0.5], [1.0]])
    vs, adv = losses.vtrace_targets(v_tm1, v_t, r, d, rho)
    np.testing.assert_allclose(vs, [[1.875], [1.75], [1.0]], rtol=1e-6)
    np.testing.assert_allclose(adv, [[0.875], [-0.25], [-2.0]], rtol=1e-6)


@pytest.mark.parametrize("lam", [1.0, 0.7])
def test_vtrace_on_policy_equals_lambda_returns(lam):
    r, d, _, _, _ = random_inputs(7)
    value = np.random.default_rng(8).normal(size=(T + 1, B)).astype(np.float32)  # one consistent value sequence
    v_tm1, v_t = value[:-1], value[1:]
    ones = np.ones_like(r)
    vs, adv = losses.vtrace_targets(v_tm1, v_t, r, d, ones, lam, 1.0, 1.0, 1.0)
    g = losses.lambda_returns(r, d, v_t, lam)
    np.testing.assert_allclose(vs, g, rtol=1e-5, atol=1e-5)
    if lam == 1.0:
        np.testing.assert_allclose(adv, g - v_tm1, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- policy terms


def test_entropy_and_log_prob():
    for a in (2, 5, 18):
        np.testing.assert_allclose(losses.entropy(jnp.zeros((2, 3, a))), np.full((2, 3), math.log(a)), rtol=1e-6)
    logits = jnp.array([[[math.log(3.0), 0.0]]])
    np.testing.assert_allclose(losses.log_prob(logits, jnp.array([[0]])), [[math.log(0.75)]], rtol=1e-6)
    np.testing.assert_allclose(losses.log_prob(logits, jnp.array([[1]])), [[math.log(0.25)]], rtol=1e-6)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    np.testing.assert_allclose(losses.entropy(logits), [[h]], rtol=1e-6)
    # Stable for huge / -inf logits.
    assert np.isfinite(losses.entropy(jnp.array([[[1e4, -1e4, 0.0]]]))).all()
    np.testing.assert_allclose(losses.entropy(jnp.array([[[0.0, -jnp.inf]]])), [[0.0]], atol=1e-7)


def test_actor_critic_loss_mask():
    logits = jnp.zeros((2, 1, 2))
    v = jnp.array([[0.0], [5.0]])
    a = jnp.zeros((2, 1), jnp.int32)
    targets = jnp.array([[1.0], [0.0]])
    adv = jnp.array([[2.0], [100.0]])
    mask = jnp.array([[1.0], [0.0]])
    loss, m = losses.actor_critic_loss(logits, v, a, targets, adv, 0.5, 0.0, mask)
    np.testing.assert_allclose(m["pg_loss"], 2.0 * math.log(2), rtol=1e-6)
    np.testing.assert_allclose(m["value_loss"], 0.5, rtol=1e-6)
    np.testing.assert_allclose(loss, 2.0 * math.log(2) + 0.25, rtol=1e-6)


# --------------------------------------------------------------------------- objectives


def tiny_rollout_and_output(agent_logits=None, value=(1.0, 2.0, 3.0)):
    """T=2, B=1, A=2. r_t = [1, 3], env discount_t = [1, 0], actions 0."""
    behaviour_logits = jnp.array([[[0.0, math.log(3.0)]], [[math.log(3.0), 0.0]], [[0.0, 0.0]]])
    rollout = Rollout(
        observation=jnp.zeros((3, 1, 1)),
        action=jnp.zeros((3, 1), jnp.int32),
        reward=jnp.array([[0.0], [1.0], [3.0]]),
        discount=jnp.array([[1.0], [1.0], [0.0]]),
        done=jnp.array([[False], [False], [True]]),
        behaviour_logits=behaviour_logits,
        episode_return=jnp.array([[0.0], [0.0], [4.0]]),
    )
    logits = jnp.zeros((3, 1, 2)) if agent_logits is None else agent_logits
    out = AgentOutput(logits=logits, value=jnp.array(value).reshape(3, 1), y_logits=empty_like_y(logits))
    return rollout, out


def test_a2c_agent_loss_hand_built():
    # gamma = .5, lambda = .5, v = [1, 2, 3]: discount_t = [.5, 0]
    # G_1 = 3; G_0 = 1 + .5 * (.5*2 + .5*3) = 2.25; adv = G - v_tm1 = [1.25, 1]
    # pg = log 2 * mean(adv) = 1.125 log 2; value = .5 * mean([1.5625, 1]) = .640625
    obj = objectives.make("a2c", gamma=0.5, td_lambda=0.5)
    assert isinstance(obj, A2C) and obj.init(jax.random.PRNGKey(0)) == {}
    rollout, out = tiny_rollout_and_output()
    loss, m = obj.agent_loss({}, rollout, out)
    expected = 1.125 * math.log(2) + 0.5 * 0.640625 - 0.01 * math.log(2)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(m["pg_loss"], 1.125 * math.log(2), rtol=1e-6)
    np.testing.assert_allclose(m["value_loss"], 0.640625, rtol=1e-6)
    np.testing.assert_allclose(m["entropy"], math.log(2), rtol=1e-6)
    np.testing.assert_allclose(m["mean_advantage"], 1.125, rtol=1e-6)
    # Jitted gives the same.
    loss_jit, _ = jax.jit(obj.agent_loss)({}, rollout, out)
    np.testing.assert_allclose(loss_jit, expected, rtol=1e-6)


def test_a2c_reward_clip():
    rollout, out = tiny_rollout_and_output()
    obj = A2C(A2CConfig(gamma=0.5, td_lambda=0.5, reward_clip=1.0))
    _, m = obj.agent_loss({}, rollout, out)
    # r_t = [1, 1]: G_1 = 1, G_0 = 1 + .5 * (.5*2 + .5*1) = 1.75; adv = [.75, -1]
    np.testing.assert_allclose(m["mean_advantage"], -0.125, rtol=1e-6)


def test_vtrace_agent_loss_hand_built():
    # pi = uniform, mu(a=0) = [.25, .75] -> rho = [2, 2/3] -> clipped [1, 2/3]
    # gamma = .5: discount_t = [.5, 0]; v = [1, 2, 3]; r_t = [1, 3]
    # td = [1*(1 + .5*2 - 1), 2/3*(3 - 2)] = [1, 2/3]; vs - v = [1 + .5*1*2/3, 2/3] = [4/3, 2/3]
    # vs = [7/3, 8/3]; adv = [1*(1 + .5*8/3 - 1), 2/3*(3 - 2)] = [4/3, 2/3]
    # pg = log 2 * mean(adv) = log 2; value = .5 * mean([16/9, 4/9]) = 5/9
    obj = objectives.make("vtrace", gamma=0.5)
    assert isinstance(obj, VTrace) and obj.init(jax.random.PRNGKey(0)) == {}
    rollout, out = tiny_rollout_and_output()
    loss, m = obj.agent_loss({}, rollout, out)
    expected = math.log(2) + 0.5 * 5 / 9 - 0.01 * math.log(2)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(m["value_loss"], 5 / 9, rtol=1e-6)
    np.testing.assert_allclose(m["mean_advantage"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(m["mean_rho"], (2 + 2 / 3) / 2, rtol=1e-6)


def test_value_gradient_matches_hand_value():
    # d loss / d v_tm1 = value_weight * (v_tm1 - G) / N; v_T gets no gradient (bootstrap is stop-gradiented).
    rollout, out = tiny_rollout_and_output()
    cfg = A2CConfig(gamma=0.5, td_lambda=0.5, value_weight=0.7)
    obj = A2C(cfg)

    def loss_of_value(value):
        return obj.agent_loss({}, rollout, out.replace(value=value))[0]

    grad = jax.grad(loss_of_value)(out.value)
    g = np.array([2.25, 3.0])
    v = np.array([1.0, 2.0])
    np.testing.assert_allclose(grad[:, 0], [*(0.7 * (v - g) / 2), 0.0], rtol=1e-6, atol=1e-7)

    # Same for V-trace with vs = [7/3, 8/3].
    vobj = VTrace(VTraceConfig(gamma=0.5, value_weight=0.7))
    vgrad = jax.grad(lambda value: vobj.agent_loss({}, rollout, out.replace(value=value))[0])(out.value)
    np.testing.assert_allclose(vgrad[:, 0], [*(0.7 * (v - np.array([7 / 3, 8 / 3])) / 2), 0.0], rtol=1e-6, atol=1e-7)


def test_policy_gradient_direction():
    # Positive advantages on action 0 -> gradient descent raises logit of action 0.
    rollout, out = tiny_rollout_and_output()
    obj = A2C(A2CConfig(gamma=0.5, td_lambda=0.5, entropy_weight=0.0))
    grad = jax.grad(lambda logits: obj.agent_loss({}, rollout, out.replace(logits=logits))[0])(out.logits)
    # d(-adv * log pi(0)) / d logit_0 = -adv * (1 - .5) ; adv = [1.25, 1], N = 2
    np.testing.assert_allclose(grad[:2, 0, 0], [-1.25 * 0.5 / 2, -1.0 * 0.5 / 2], rtol=1e-6)
    np.testing.assert_allclose(grad[2], 0.0)


@pytest.mark.parametrize("which", ["a2c", "vtrace"])
def test_meta_gradient_wrt_gamma_and_lambda_matches_finite_differences(which):
    with jax.enable_x64(True):  # float64 locally (jax.experimental.enable_x64 in older jax)
        rng = np.random.default_rng(11)
        t, b, a = 6, 2, 3
        disc = (rng.uniform(size=(t + 1, b)) > 0.2).astype(np.float64)
        rollout = Rollout(
            observation=jnp.zeros((t + 1, b, 1)),
            action=jnp.asarray(rng.integers(0, a, size=(t + 1, b)), jnp.int32),
            reward=jnp.asarray(rng.normal(size=(t + 1, b))),
            discount=jnp.asarray(disc),
            done=jnp.asarray(disc == 0),
            behaviour_logits=jnp.asarray(rng.normal(size=(t + 1, b, a))),
            episode_return=jnp.zeros((t + 1, b)),
        )
        logits = jnp.asarray(rng.normal(size=(t + 1, b, a)))
        out = AgentOutput(logits=logits, value=jnp.asarray(rng.normal(size=(t + 1, b))), y_logits=empty_like_y(logits))

        def f(gamma, lam):
            if which == "a2c":
                return a2c_loss(rollout, out, gamma, lam, 0.5, 0.01)[0]
            return vtrace_loss(rollout, out, gamma, lam, 1.0, 1.0, 1.0, 0.5, 0.01)[0]

        gamma0, lam0 = jnp.float64(0.9), jnp.float64(0.8)
        dg, dl = jax.jit(jax.grad(f, argnums=(0, 1)))(gamma0, lam0)
        assert dg.dtype == jnp.float64 and np.isfinite(dg) and np.isfinite(dl)
        eps = 1e-6
        fd_g = (f(gamma0 + eps, lam0) - f(gamma0 - eps, lam0)) / (2 * eps)
        fd_l = (f(gamma0, lam0 + eps) - f(gamma0, lam0 - eps)) / (2 * eps)
        np.testing.assert_allclose(dg, fd_g, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(dl, fd_l, rtol=1e-6, atol=1e-9)
        assert abs(float(dg)) > 1e-6  # gamma does matter


def test_config_overrides_and_registry():
    names = dict(objectives.list_objectives())
    assert "a2c" in names and "vtrace" in names
    obj = objectives.make("vtrace", rho_bar=2.0)
    assert obj.config.rho_bar == 2.0 and obj.config_dict()["c_bar"] == 1.0
    with pytest.raises(InvalidConfigError):
        objectives.make("a2c", no_such_field=1.0)
