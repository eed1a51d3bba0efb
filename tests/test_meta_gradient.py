"""Numbers of the online meta-gradient engine (training.meta_gradient).

Each estimator (1-step, n-step, mixing) is checked against central finite
differences in float64 on a tiny problem: a 2-state / 2-action environment
with noisy rewards, a tabular agent with random initial parameters, the
``mgrl`` objective (gamma, lambda) inside, an A2C outer loss outside, and
both SGD and meta-Adam inner optimisers. For meta-Adam the finite differences
are taken of a Python-loop reference whose Adam denominators are frozen at
their values at eta (that is what stop-gradienting the denominator means);
the reference's value is also checked against the engine's.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import objectives
from lpg.envs.base import Environment, EnvSpec, first_timestep
from lpg.networks import make_agent
from lpg.optim import OptimizerConfig
from lpg.rollout import unroll
from lpg.types import TimeStep
from objectives.a2c import A2C, A2CConfig
from objectives.losses import actor_critic_loss, lambda_returns
from training.actor_critic import ActorCriticTrainer, TrainConfig
from training.meta_gradient import MetaGradConfig, MetaGradientTrainer, mixing_weights, uses_own_critic

T, B = 4, 3
LR = 0.5
B1, B2, EPS, EPS_ROOT = 0.9, 0.999, 1e-8, 1e-8


class TwoState(Environment):
    """Tiny MDP: action 1 moves to the other state with reward 1 + noise; action 0 stays with reward 0.2*noise."""

    def __init__(self):
        self.spec = EnvSpec("test/two_state", "tiny", (), 2, 5, "int32", 2)

    def reset(self, key):
        return jnp.zeros((), jnp.int32), first_timestep(jnp.zeros((), jnp.int32))

    def step(self, state, action, key):
        noise = jax.random.normal(key, ())
        reward = jnp.where(action == 1, 1.0 + noise, 0.2 * noise).astype(jnp.float32)
        nxt = jnp.where(action == 1, 1 - state, state).astype(jnp.int32)
        done = jax.random.uniform(jax.random.fold_in(key, 1)) < 0.2
        return nxt, TimeStep(nxt, reward, jnp.where(done, 0.0, 1.0).astype(jnp.float32), done)


def _setup(optimizer: str, config: MetaGradConfig, slow_rolled_scan: bool = False):
    env = TwoState()
    agent = dataclasses.replace(make_agent(env.spec), slow_rolled_scan=slow_rolled_scan)
    objective = objectives.make("mgrl", gamma=0.8, td_lambda=0.7, value_weight=0.5, entropy_weight=0.05)
    trainer = ActorCriticTrainer.create(
        env, agent, objective, TrainConfig(B, T, OptimizerConfig(optimizer, LR if optimizer == "sgd" else 0.1))
    )
    outer = A2C(A2CConfig(gamma=0.9, td_lambda=1.0, value_weight=0.5, entropy_weight=0.0))
    mt = MetaGradientTrainer.create(trainer, outer, config)
    state = mt.init(jax.random.PRNGKey(3))
    to64 = lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x
    state = state.replace(
        opt_state=jax.tree.map(to64, state.opt_state), meta_opt_state=jax.tree.map(to64, state.meta_opt_state)
    )
    table = jax.random.normal(jax.random.PRNGKey(7), state.params["params"]["table"].shape, jnp.float64)
    state = state.replace(params={"params": {"table": table}})
    state = state.replace(eta={"gamma_logit": jnp.float64(0.4), "lambda_logit": jnp.float64(-0.3)})
    return mt, state


def _ac_loss(params, agent, rollout, v_sg, gamma, lam, value_weight, entropy_weight):
    """A2C loss whose targets use the given (frozen) values ``v_sg`` [T+1, B]."""
    out = agent.apply(params, rollout.observation)
    targets = lambda_returns(rollout.reward[1:], gamma * rollout.discount[1:], v_sg[1:], lam)
    return actor_critic_loss(
        out.logits[:-1], out.value[:-1], rollout.action[:-1], targets, targets - v_sg[:-1], value_weight, entropy_weight
    )[0]


def _reference_meta_loss(mt, eta, state, key, weights, optimizer, frozen=None):
    """Python-loop reference of eq. 5 / eq. 10; returns (loss, frozen quantities).

    Every quantity the engine stop-gradients (agent values inside targets, inner
    and outer; Adam's second moments) is recorded, and taken from ``frozen``
    when given, so finite differences of this function measure exactly the
    meta-gradient the engine should compute.
    """
    tr = mt.trainer
    keys = jax.random.split(key, len(weights))
    params, actor, rollout = state.params, state.actor, state.rollout
    mu = jax.tree.map(jnp.zeros_like, params)
    nu = jax.tree.map(jnp.zeros_like, params)
    gamma, lam = jax.nn.sigmoid(eta["gamma_logit"]), jax.nn.sigmoid(eta["lambda_logit"])
    record = {"nu": [], "inner_v": [], "outer_v": []}
    total = 0.0
    for i, w in enumerate(weights):
        inner_v = tr.agent.apply(params, rollout.observation).value if frozen is None else frozen["inner_v"][i]
        record["inner_v"].append(inner_v)
        grads = jax.grad(_ac_loss)(params, tr.agent, rollout, inner_v, gamma, lam, 0.5, 0.05)
        if optimizer == "sgd":
            params = jax.tree.map(lambda p, g: p - LR * g, params, grads)
        else:
            mu = jax.tree.map(lambda m, g: B1 * m + (1 - B1) * g, mu, grads)
            nu = jax.tree.map(lambda v, g: B2 * v + (1 - B2) * jnp.square(g), nu, grads)
            nu = nu if frozen is None else frozen["nu"][i]
            record["nu"].append(nu)
            c = i + 1
            params = jax.tree.map(
                lambda p, m, v, c=c: p - 0.1 * (m / (1 - B1**c)) / (jnp.sqrt(v / (1 - B2**c) + EPS_ROOT) + EPS),
                params,
                mu,
                nu,
            )
        actor, rollout = unroll(tr.env, tr.agent.apply, jax.lax.stop_gradient(params), actor, keys[i], T)
        outer_v = tr.agent.apply(params, rollout.observation).value if frozen is None else frozen["outer_v"][i]
        record["outer_v"].append(outer_v)
        if w:
            total = total + w * _ac_loss(params, tr.agent, rollout, outer_v, 0.9, 1.0, 0.5, 0.0)
    return total, record


def _central_fd(f, eta, eps=1e-6):
    grads = {}
    for name in eta:
        plus = dict(eta, **{name: eta[name] + eps})
        minus = dict(eta, **{name: eta[name] - eps})
        grads[name] = (f(plus) - f(minus)) / (2 * eps)
    return grads


def _to32(state):
    cast = lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x
    return state.replace(
        **{k: jax.tree.map(cast, getattr(state, k)) for k in ("params", "opt_state", "eta", "meta_opt_state")}
    )


CASES = [
    ("sgd", MetaGradConfig(inner_steps=1)),
    ("sgd", MetaGradConfig(inner_steps=3)),
    ("adam", MetaGradConfig(inner_steps=3, mix=True)),
]


@pytest.mark.parametrize("optimizer,config", CASES, ids=["sgd-1", "sgd-3", "adam-3mix"])
def test_meta_gradient_matches_finite_differences(optimizer, config):
    with jax.enable_x64(True):
        mt, state = _setup(optimizer, config)
        key = jax.random.PRNGKey(11)
        grads, aux = jax.jit(mt.meta_gradient)(state, key)
        engine_loss = aux["metrics"]["meta_loss"]
        weights = config.weights()
        ref_loss, frozen = jax.jit(lambda eta: _reference_meta_loss(mt, eta, state, key, weights, optimizer))(state.eta)
        np.testing.assert_allclose(
            engine_loss, ref_loss, rtol=1e-10 if optimizer == "sgd" else 1e-5
        )  # Adam: float32 bias correction
        f = jax.jit(lambda eta: _reference_meta_loss(mt, eta, state, key, weights, optimizer, frozen)[0])
        fd = _central_fd(f, state.eta)
        for name in state.eta:
            assert np.isfinite(grads[name])
            assert abs(float(grads[name])) > 1e-6, "degenerate test: zero meta-gradient"
            np.testing.assert_allclose(grads[name], fd[name], rtol=1e-5, atol=1e-9, err_msg=name)


def test_mixing_weights():
    assert mixing_weights(1, 0.0) == (1.0,)
    w = mixing_weights(3, 2 / 3)
    np.testing.assert_allclose(sum(w), 1.0)
    np.testing.assert_allclose(w, np.array([1, 2 / 3, 4 / 9]) / (1 + 2 / 3 + 4 / 9))
    assert MetaGradConfig(inner_steps=5, mix=True).kappa == pytest.approx(0.8)  # 1/(1-k) = n
    assert MetaGradConfig(inner_steps=4).weights() == (0.0, 0.0, 0.0, 1.0)


def test_k0_mixing_equals_one_step_and_nstep_keeps_first_update():
    mt1, state = _setup("sgd", MetaGradConfig(inner_steps=1))
    mt0, _ = _setup("sgd", MetaGradConfig(inner_steps=4, mix=True, mix_k=0.0))
    mt4, _ = _setup("sgd", MetaGradConfig(inner_steps=4))
    state = _to32(state)
    key = jax.random.PRNGKey(5)
    g1, aux1 = jax.jit(mt1.meta_gradient)(state, key)
    g0, aux0 = jax.jit(mt0.meta_gradient)(state, key)
    chex.assert_trees_all_equal(g1, g0)
    chex.assert_trees_all_equal(aux1["params"], aux0["params"])

    # n-step: theta_t+1 = theta_t^(1) (the update at the old eta on the pending rollout),
    # the next pending rollout continues from the pending one, eta moves.
    new_state, metrics = jax.jit(mt4.meta_step)(state)
    expected, _, _ = mt4.trainer.agent_update(state.params, state.opt_state, state.eta, state.rollout)
    chex.assert_trees_all_close(new_state.params, expected, rtol=1e-6)
    np.testing.assert_array_equal(new_state.rollout.observation[0], state.rollout.observation[-1])
    assert int(new_state.update_count) == 1
    assert any(float(jnp.abs(new_state.eta[k] - state.eta[k])) > 0 for k in state.eta)
    assert all(np.isfinite(float(v)) for v in jax.tree.leaves(metrics))
    assert mt4.env_steps_per_meta_step == 4 * B * T


def test_run_monte_carlo_and_baseline_finite():
    mt, state = _setup("adam", MetaGradConfig(inner_steps=2, monte_carlo=2, meta_grad_clip=0.1, stac_kl_weight=0.1))
    state = _to32(state)
    _new_state, metrics = mt.run(state, 2)
    assert metrics["meta_grad_norm"].shape == (2,)
    assert np.all(np.isfinite(metrics["meta_grad_norm"])) and np.all(np.isfinite(metrics["outer_kl"]))
    assert set(metrics) >= {"eta/gamma", "eta/td_lambda", "episode_return_sum", "episode_count", "meta_loss"}
    grads = mt.estimate(state, jax.random.PRNGKey(0), 5, batch_size=2)
    assert grads["gamma_logit"].shape == (5,) and np.all(np.isfinite(grads["gamma_logit"]))
    chex.assert_trees_all_close(grads, mt.estimate(state, jax.random.PRNGKey(0), 5, batch_size=8), rtol=1e-5)

    base, _ = _setup("adam", MetaGradConfig(inner_steps=0))
    base_state = state
    out, _ = base.run(base_state, 2)
    chex.assert_trees_all_equal(out.eta, base_state.eta)


def _random_rollout_and_output(seed: int, t1: int, b: int, a: int):
    """A random never-ending rollout [t1, b] with ``a`` actions, and agent outputs whose logits are its behaviour logits."""
    from lpg.types import AgentOutput, Rollout

    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(t1, b, a)).astype(np.float32)
    rollout = Rollout(
        observation=np.zeros((t1, b, 1), np.float32),
        action=rng.integers(0, a, (t1, b)).astype(np.int32),
        reward=rng.normal(size=(t1, b)).astype(np.float32),
        discount=np.ones((t1, b), np.float32),
        done=np.zeros((t1, b), bool),
        behaviour_logits=logits,
        episode_return=np.zeros((t1, b), np.float32),
    )
    out = AgentOutput(
        logits=jnp.asarray(logits),
        value=jnp.asarray(rng.normal(size=(t1, b)).astype(np.float32)),
        y_logits=jnp.zeros((t1, b, 0)),
    )
    return rollout, out


def test_outer_entropy_weight_subtracts_that_multiple_of_the_mean_policy_entropy():
    """pg_outer_objective(..., entropy_weight=w) = the plain policy-gradient loss - w * mean_t,b H(pi(.|s_t))."""
    from training.meta_gradient import pg_outer_objective

    rollout, out = _random_rollout_and_output(seed=0, t1=6, b=3, a=4)
    logits = rollout.behaviour_logits
    plain, _ = pg_outer_objective(0.9, 0.8).agent_loss({}, rollout, out)
    with_entropy, _ = pg_outer_objective(0.9, 0.8, entropy_weight=0.3).agent_loss({}, rollout, out)
    p = np.exp(logits[:-1] - logits[:-1].max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    mean_entropy = float(np.mean(-(p * np.log(p)).sum(-1)))
    np.testing.assert_allclose(float(with_entropy), float(plain) - 0.3 * mean_entropy, rtol=1e-5, atol=1e-6)


def test_rematerialised_look_ahead_gives_the_same_meta_gradient_in_less_memory():
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(11)
        results = {}
        for remat in (True, False):
            mt, state = _setup("adam", MetaGradConfig(inner_steps=4, mix=True, remat=remat))
            compiled = jax.jit(mt.meta_gradient).lower(state, key).compile()
            results[remat] = (compiled(state, key)[0], compiled.memory_analysis().temp_size_in_bytes)
    chex.assert_trees_all_close(results[True][0], results[False][0], rtol=1e-12)
    # XLA's own account of the compiled program's scratch memory (22 vs 30 kB at n = 6 for this
    # tabular agent; the Snake conv look-ahead, unrolled on CPU, is the case where it grows instead).
    assert results[True][1] < results[False][1]


def _look_ahead_scan_unroll(mt, state, key) -> list:
    """The ``unroll`` of every scan of length n - 2 (the look-ahead's middle steps) in the meta-gradient's jaxpr."""
    n = mt.config.inner_steps
    found = []

    def visit(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "scan" and eqn.params["length"] == n - 2:
                found.append(eqn.params["unroll"])
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                visit(sub)

    visit(jax.make_jaxpr(mt.meta_gradient)(state, key).jaxpr)
    return found


@pytest.mark.parametrize("n, limit, unrolled", [(5, 5, True), (5, 4, False), (9, 5, False)])
def test_the_look_ahead_is_unrolled_up_to_the_limit_with_the_same_meta_gradient(n, limit, unrolled):
    # Only where the agent's rolled scan is slow (conv on CPU, forced here); an unroll of n - 2 or more is "unrolled".
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(5)
        grads = {}
        for slow in (True, False):
            mt, state = _setup("adam", MetaGradConfig(inner_steps=n, mix=True, max_unrolled_lookahead=limit), slow)
            unrolls = _look_ahead_scan_unroll(mt, state, key)
            assert len(unrolls) >= 1
            expect_unrolled = slow and unrolled
            assert all((u is True or u >= n - 2) == expect_unrolled for u in unrolls), unrolls
            grads[slow] = jax.jit(mt.meta_gradient)(state, key)[0]
    chex.assert_trees_all_close(grads[True], grads[False], rtol=1e-10)


def test_init_pull_adds_its_gradient_and_eta_distance_is_measured_from_the_start():
    free, state = _setup("sgd", MetaGradConfig(inner_steps=1))
    pulled, _ = _setup("sgd", MetaGradConfig(inner_steps=1, init_pull=3.0))
    fresh = free.init(jax.random.PRNGKey(0))
    chex.assert_trees_all_equal(fresh.eta_start, fresh.eta)  # a lifetime starts at its eta
    start = {"gamma_logit": jnp.float32(0.1), "lambda_logit": jnp.float32(0.9)}
    state = _to32(state).replace(eta_start=start)
    est_key = jax.random.split(state.key, 3)[1]  # the key meta_step estimates with
    g, _ = jax.jit(free.meta_gradient)(state, est_key)
    want = {k: g[k] + 3.0 * (state.eta[k] - start[k]) for k in g}  # + d/d eta of 3/2 ||eta - start||^2
    chex.assert_trees_all_close(pulled.pulled(g, state.eta, start), want, rtol=1e-6)
    chex.assert_trees_all_equal(free.pulled(g, state.eta, start), g)
    new, metrics = jax.jit(pulled.meta_step)(state)
    for k in g:  # Adam's first step moves each coordinate by the learning rate against its gradient's sign
        expected = float(state.eta[k]) - 1e-3 * float(np.sign(want[k]))
        np.testing.assert_allclose(float(new.eta[k]), expected, rtol=0, atol=1e-6)
    distance = np.sqrt(sum((float(new.eta[k]) - float(start[k])) ** 2 for k in g))
    np.testing.assert_allclose(float(metrics["eta_distance"]), distance, rtol=1e-5)
    chex.assert_trees_all_equal(new.eta_start, start)


def test_outer_critic_is_used_where_the_objective_leaves_the_value_head_untrained():
    env = TwoState()
    config = TrainConfig(B, T, OptimizerConfig("sgd", LR))
    outer = A2C(A2CConfig(gamma=0.9, td_lambda=0.8, value_weight=0.0))

    def uses_critic(name, **meta):
        objective = objectives.make(name)
        trainer = ActorCriticTrainer.create(env, make_agent(env.spec, heads=objective.heads), objective, config)
        return MetaGradientTrainer.create(trainer, outer, MetaGradConfig(**meta)).uses_critic

    assert uses_critic("lpg")  # auto: LPG's loss never trains the value head
    assert not uses_critic("mgrl")  # auto: the agent's own value head
    assert uses_critic("mgrl", outer_critic="own")
    assert not uses_critic("lpg", outer_critic="agent")
    assert not uses_critic("lpg", inner_steps=0)  # no meta-gradient, no outer loss, no critic
    with pytest.raises(objectives.InvalidConfigError, match="outer_critic"):
        MetaGradConfig(outer_critic="value")


def test_outer_critic_regresses_lambda_returns_and_replaces_the_agent_value_in_the_outer_loss():
    mt, state = _setup("sgd", MetaGradConfig(inner_steps=1, outer_critic="own"))
    plain, _ = _setup("sgd", MetaGradConfig(inner_steps=1))
    state = _to32(state)
    fresh = mt.init(jax.random.PRNGKey(3))
    assert plain.init(jax.random.PRNGKey(3)).critic_params is None
    chex.assert_trees_all_equal(fresh.params, plain.init(jax.random.PRNGKey(3)).params)  # same agent stream
    critic = {"params": {"table": jax.random.normal(jax.random.PRNGKey(11), state.params["params"]["table"].shape)}}
    rollout = state.rollout
    agent, c = mt.trainer.agent, mt.outer_objective.config

    # TD(lambda) regression, checked against a Python loop: loss and one SGD step.
    v = np.asarray(agent.apply(critic, rollout.observation).value, np.float64)
    r, d = np.asarray(rollout.reward, np.float64), np.asarray(rollout.discount, np.float64)
    g = v[T].copy()
    targets = np.zeros((T, B))
    for t in reversed(range(T)):
        g = r[t + 1] + c.gamma * d[t + 1] * ((1 - c.td_lambda) * v[t + 1] + c.td_lambda * g)
        targets[t] = g
    want_loss = 0.5 * np.mean((targets - v[:T]) ** 2)
    new_critic, _, loss = jax.jit(mt.critic_update)(critic, mt.trainer.optimizer.init(critic), rollout)
    np.testing.assert_allclose(float(loss), want_loss, rtol=1e-5)

    def ref(p):
        vv = agent.apply(p, rollout.observation).value
        return 0.5 * jnp.mean(jnp.square(jnp.asarray(targets, jnp.float32) - vv[:-1]))

    step = jax.tree.map(lambda p, gr: p - LR * gr, critic, jax.grad(ref)(critic))
    chex.assert_trees_all_close(new_critic, step, rtol=1e-5, atol=1e-6)

    # The outer loss is the A2C loss on the agent's outputs with the critic's values in place of its value head.
    out = agent.apply(state.params, rollout.observation)
    got, metrics = mt._outer_loss(state.eta, state.params, state.params, rollout, critic)
    want, _ = mt.outer_objective.agent_loss(
        {}, rollout, out.replace(value=agent.apply(critic, rollout.observation).value)
    )
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
    np.testing.assert_allclose(float(metrics["outer_mean_value"]), np.mean(v[:T]), rtol=1e-5)

    # A meta-step trains the critic on the inner rollout; the kept agent update (at the old eta) is unchanged.
    state = state.replace(critic_params=critic, critic_opt_state=mt.trainer.optimizer.init(critic))
    new, metrics = jax.jit(mt.meta_step)(state)
    ref_new, _ = jax.jit(plain.meta_step)(state.replace(critic_params=None, critic_opt_state=None))
    chex.assert_trees_all_close(new.params, ref_new.params, rtol=1e-6)
    chex.assert_trees_all_close(new.critic_params, new_critic, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["outer_critic_loss"]), want_loss, rtol=1e-5)
    assert not np.allclose(float(new.eta["gamma_logit"]) - float(state.eta["gamma_logit"]), 0.0)


def test_normalised_advantages_have_zero_mean_and_unit_spread_and_leave_the_value_targets():
    t1, b = 5, 4
    rollout, out = _random_rollout_and_output(seed=1, t1=t1, b=b, a=3)
    plain = A2C(A2CConfig(gamma=0.9, td_lambda=0.8, value_weight=0.5, entropy_weight=0.0))
    normed = A2C(A2CConfig(gamma=0.9, td_lambda=0.8, value_weight=0.5, entropy_weight=0.0, normalise_advantages=True))
    _, m_plain = plain.agent_loss({}, rollout, out)
    loss, m = normed.agent_loss({}, rollout, out)
    v, r = np.asarray(out.value, np.float64), rollout.reward.astype(np.float64)
    g, targets = v[-1], np.zeros((t1 - 1, b))
    for t in reversed(range(t1 - 1)):
        g = r[t + 1] + 0.9 * (0.2 * v[t + 1] + 0.8 * g)
        targets[t] = g
    adv = targets - v[:-1]
    adv = (adv - adv.mean()) / adv.std()
    p = np.exp(rollout.behaviour_logits[:-1] - rollout.behaviour_logits[:-1].max(-1, keepdims=True))
    logp = np.log(p / p.sum(-1, keepdims=True))
    logp_a = np.take_along_axis(logp, rollout.action[:-1, :, None], -1)[..., 0]
    want = -np.mean(adv * logp_a) + 0.5 * 0.5 * np.mean((targets - v[:-1]) ** 2)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(float(m["mean_advantage"]), 0.0, atol=1e-6)
    np.testing.assert_allclose(float(m["value_loss"]), float(m_plain["value_loss"]), rtol=1e-6)


@pytest.mark.parametrize(
    "objective, env, flags, want",
    [
        ("lpg", "catch", {}, (True, True, 0.05)),  # offline discovery's meta-objective: own critic, normalised, beta0
        ("frodo", "catch", {}, (False, False, 0.0)),  # Bonnet et al. eq. 4
        ("frodo", "atari/Pong", {}, (False, False, 0.01)),
        ("lpg", "catch", {"outer_critic": "agent"}, (False, False, 0.0)),  # the earlier outer loss
        ("frodo", "catch", {"outer_critic": "own"}, (True, True, 0.05)),
        ("lpg", "catch", {"outer_normalise": False, "outer_entropy_weight": 0.2}, (True, False, 0.2)),
        ("lpg", "catch", {"inner_steps": 0}, (False, False, 0.0)),  # frozen: no outer loss at all
    ],
)
def test_online_outer_loss_defaults_follow_the_critic(objective, env, flags, want):
    from lpg.commands.discover_online import OnlineOptions

    options = OnlineOptions(env, objective, out="unused", **flags)
    obj = objectives.make(objective)
    outer = options.outer_objective(obj).config
    own = uses_own_critic(options.meta_config(), obj)
    assert (own, outer.normalise_advantages, outer.entropy_weight) == want


def _look_ahead_rollouts(mt, state, key, n):
    """The rollouts the toy look-ahead acts from ``state`` with ``key``: tau^(0) (pending) .. tau^(n)."""
    tr, keys = mt.trainer, jax.random.split(key, n)
    params, opt_state, actor, rollouts = state.params, state.opt_state, state.actor, [state.rollout]
    for i in range(n):
        params, opt_state, _ = tr.agent_update(params, opt_state, state.eta, rollouts[-1])
        actor, rollout = unroll(tr.env, tr.agent.apply, params, actor, keys[i], T)
        rollouts.append(rollout)
    return rollouts


@pytest.mark.parametrize("config", [MetaGradConfig(inner_steps=1), MetaGradConfig(inner_steps=3, mix=True)])
def test_atari_window_meta_gradient_equals_the_look_ahead_one_on_the_same_rollouts(config):
    """Atari's look-ahead runs over rollouts already acted (training.atari.MetaLearner); given the rollouts the
    toy look-ahead acts (as data: acting is never differentiated), its loss and meta-gradient are the toy
    engine's, which the finite-difference test above checks."""
    from training.atari import MetaLearner

    with jax.enable_x64(True):
        mt, state = _setup("sgd", config)
        key = jax.random.PRNGKey(11)
        grads, aux = jax.jit(mt.meta_gradient)(state, key)
        rollouts = _look_ahead_rollouts(mt, state, key, config.inner_steps)
        learner = MetaLearner(mt)
        window_grad = jax.jit(jax.grad(learner.window_loss, has_aux=True))
        wgrads, (kept, metrics) = window_grad(
            state.eta, state.params, state.opt_state, tuple(rollouts[:-1]), rollouts[-1]
        )
        np.testing.assert_allclose(metrics["meta_loss"], aux["metrics"]["meta_loss"], rtol=1e-12)
        for name in state.eta:
            assert abs(float(grads[name])) > 1e-6, "degenerate test: zero meta-gradient"
            np.testing.assert_allclose(wgrads[name], grads[name], rtol=1e-10, err_msg=name)
        chex.assert_trees_all_close(kept[0][0], aux["params"], rtol=1e-12)  # theta^(1), the toy engine's kept update


def test_atari_window_learner_keeps_the_plain_agent_when_eta_is_held_still():
    """With eta held still (meta learning rate 1e-30) every re-done update in the window equals the plain one,
    so an n-step learner acts exactly as the plain learner on the same rollouts: the window and the parameters
    that acted each of its rollouts are kept in step, through meta-steps, plain steps and a checkpoint."""
    from training.atari import MetaLearner, PlainLearner

    with jax.enable_x64(True):  # the tiny problem's set-up is float64; the learners below run in float32
        mt, state = _setup("sgd", MetaGradConfig(inner_steps=3, mix=True, meta_learning_rate=1e-30))
    state = _to32(state)
    learner = MetaLearner(mt, meta_interval=2)
    learner.empty_rollout = jax.tree.map(jnp.zeros_like, state.rollout)
    learner.init(jax.random.PRNGKey(0))
    plain = PlainLearner(mt.trainer, learner.eta, overlap=False)
    plain.init(jax.random.PRNGKey(0))  # init splits its key first: give both the same parameters
    plain.params, plain.opt_state = learner.next_params, learner.next_opt_state
    actor, eta0 = state.actor, learner.eta
    for step in range(8):
        actor, rollout = unroll(
            mt.trainer.env, mt.trainer.agent.apply, plain.acting_params, actor, jax.random.PRNGKey(step), T
        )
        metrics = learner.learn(rollout)
        plain.learn(rollout)
        chex.assert_trees_all_close(learner.acting_params, plain.acting_params, rtol=1e-5, atol=1e-6)
        assert ("meta_grad_norm" in metrics) == (step in (3, 5, 7))  # a full window, every 2nd rollout
        if step in (1, 4):  # checkpoint round trips: 2 of 3 rollouts in the window; full, a plain step next
            restored = MetaLearner(mt, meta_interval=2)
            restored.init(jax.random.PRNGKey(1))
            restored.restore(learner.state())
            learner = restored
    assert float(metrics["meta_grad_norm"]) > 0
    chex.assert_trees_all_close(learner.eta, eta0, rtol=1e-12)
