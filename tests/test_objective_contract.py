"""The Objective contract (``objectives/base.py``), checked for every objective of the ``objectives`` package.

Parametrised over the registry, so a new file under ``objectives/`` is covered
without editing this one. Per objective, on a small batch (T=4, B=3) from an
agent built with the objective's ``heads``:

* ``agent_loss`` is finite and gives the same value eagerly, under ``jax.jit``
  and under ``jax.vmap`` over two etas/rollouts;
* learned objectives: ``targets`` carry no gradient to the agent's outputs, and
  a 1-step meta-gradient (through one SGD step of the agent) is finite and
  nonzero, at ``init`` and at a perturbed eta;
* the objective checkpoint round trip keeps eta's arrays and the metadata;
* ``trains_value`` tells the truth: the loss has a gradient in the agent's
  value output exactly when the objective declares that it trains it.

Then ``learned_advantage`` specifics: it starts as A2C, and its advantage on a
hand-worked case.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import objectives
from lpg import checkpoint as ck
from lpg import envs
from lpg.envs.base import EnvSpec
from lpg.errors import InvalidConfigError
from lpg.networks import NetworkConfig, make_agent
from lpg.types import AgentOutput, Rollout, empty_like_y

T, B = 4, 3
NAMES = [name for name in objectives.names() if objectives.module_of(name).startswith("objectives.")]
# A vector-observation spec for most objectives; objectives that refuse it (check_env) get the first toy env they accept.
VECTOR_SPEC = EnvSpec("contract", "contract-test spec", observation_shape=(4,), num_actions=3, max_episode_steps=10)
NETWORK = NetworkConfig(torso="auto", hidden_sizes=(8,))
INNER_LR = 0.5  # the agent's SGD step in the meta-gradient check
PERTURBATION = 0.1


# Speed: random data comes from NumPy and every JAX computation but one eager loss is jitted (each eager JAX op
# compiles on first use, and an eager lax.scan on every call); jitted programs run once or twice, so they are
# compiled at XLA's lowest optimisation level, which halves their compile time (LPG's meta-gradient: 4.6 s -> 2.3 s
# CPU). The optimisation level changes no semantics that the jit-versus-eager check is after (tracing mistakes).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _compiled(f, *args):
    """``jax.jit(f)`` compiled for ``args``' shapes with ``FAST_COMPILE``."""
    return jax.jit(f).lower(*args).compile(compiler_options=FAST_COMPILE)


def _perturb(tree, seed: int, scale: float = PERTURBATION):
    """``tree`` plus Gaussian noise of standard deviation ``scale`` (same dtypes)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda x: jnp.asarray(np.asarray(x) + scale * rng.standard_normal(x.shape).astype(x.dtype)), tree
    )


def _spec_for(objective) -> EnvSpec:
    for spec in itertools.chain([VECTOR_SPEC], (envs.make_spec(name) for name, _ in envs.list_envs("toy"))):
        try:
            objective.check_env(spec)
        except InvalidConfigError:
            continue
        return spec
    raise AssertionError(f"objective {objective.name!r} accepts no toy environment")


def _rollout(spec: EnvSpec, seed: int) -> Rollout:
    rng = np.random.default_rng(seed)
    shape = (T + 1, B) + spec.observation_shape
    if spec.is_tabular:
        obs = rng.integers(0, spec.num_observations, shape).astype(np.int32)
    else:
        obs = rng.standard_normal(shape).astype(np.float32)
    discount = (rng.uniform(size=(T + 1, B)) > 0.25).astype(np.float32)
    rollout = Rollout(
        observation=obs,
        action=rng.integers(0, spec.num_actions, (T + 1, B)).astype(np.int32),
        reward=rng.standard_normal((T + 1, B)).astype(np.float32),
        discount=discount,
        done=discount == 0,
        behaviour_logits=rng.standard_normal((T + 1, B, spec.num_actions)).astype(np.float32),
        episode_return=np.zeros((T + 1, B), np.float32),
    )
    return jax.tree.map(jnp.asarray, rollout)


def _agent_output(num_actions: int, seed: int) -> AgentOutput:
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(rng.standard_normal((T + 1, B, num_actions)).astype(np.float32))
    value = jnp.asarray(rng.standard_normal((T + 1, B)).astype(np.float32))
    return AgentOutput(logits=logits, value=value, y_logits=jnp.zeros((T + 1, B, 0), jnp.float32))


@functools.cache
def _setup(name: str):
    """(objective, agent apply, params, two rollouts, the agent's outputs on them, eta at init, eta perturbed).

    Built once per objective and session.
    """
    objective = objectives.make(name)
    spec = _spec_for(objective)
    agent = make_agent(spec, NETWORK, heads=objective.heads)
    # Random agent parameters of the right shapes (no compilation of agent.init; a tabular agent would start at 0).
    shapes = jax.eval_shape(agent.init, jax.random.PRNGKey(1))
    params = _perturb(jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), shapes), seed=2, scale=0.5)
    rollouts = (_rollout(spec, 3), _rollout(spec, 4))
    key = jax.random.PRNGKey(5)
    eta = _compiled(objective.init, key)(key)
    # Zero-initialised output heads (FRODO, learned_advantage) leave part of eta without effect at init.
    eta_perturbed = _perturb(eta, seed=6)
    apply = _compiled(agent.apply, params, rollouts[0].observation)
    outs = tuple(apply(params, r.observation) for r in rollouts)
    return objective, agent.apply, params, rollouts, outs, eta, eta_perturbed


def _float_leaves_sum(tree) -> jax.Array:
    return sum(jnp.sum(x) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating))


@pytest.mark.parametrize("name", NAMES)
def test_agent_loss_is_finite_and_the_same_under_jit_and_vmap(name):
    objective, _, _, (r1, r2), (o1, o2), _, eta = _setup(name)
    eta2 = _perturb(eta, seed=7) if objective.is_learned else eta

    def loss(e, rollout, out):
        return objective.agent_loss(e, rollout, out)[0]

    eager, metrics = objective.agent_loss(eta, r1, o1)
    assert np.shape(eager) == () and np.isfinite(float(eager))
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    jitted = _compiled(loss, eta, r1, o1)
    per_item = np.array([jitted(eta, r1, o1), jitted(eta2, r2, o2)])
    assert np.all(np.isfinite(per_item))
    np.testing.assert_allclose(per_item[0], eager, rtol=1e-5, atol=1e-6)

    def stack(a, b):
        return jax.tree.map(lambda x, y: np.stack([x, y]), a, b)

    batched_args = (stack(eta, eta2), stack(r1, r2), stack(o1, o2))
    batched = _compiled(jax.vmap(loss), *batched_args)(*batched_args)
    np.testing.assert_allclose(batched, per_item, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_targets_carry_no_gradient_to_the_agent_outputs(name):
    objective, _, _, (rollout, _), (out, _), _, eta = _setup(name)
    if not objective.is_learned:
        pytest.skip("hand-designed: no meta-network, no targets")
    if jax.eval_shape(objective.targets, eta, rollout, out) is None:
        pytest.skip(f"{name} exposes no targets (its eta are hyper-parameters of a hand-designed loss)")
    grads = _compiled(jax.grad(lambda o: _float_leaves_sum(objective.targets(eta, rollout, o))), out)(out)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        np.testing.assert_array_equal(
            g, np.zeros_like(g), err_msg=f"gradient reaches agent_out{jax.tree_util.keystr(path)}"
        )


@pytest.mark.parametrize("name", NAMES)
def test_one_step_meta_gradient_is_finite_and_nonzero(name):
    objective, apply, params, (inner, outer_rollout), _, eta0, eta_perturbed = _setup(name)
    if not objective.is_learned:
        # Provably absent: a hand-designed objective's eta is the empty pytree.
        assert jax.tree.leaves(eta0) == []
        pytest.skip("hand-designed: eta is empty, there is no meta-gradient")
    outer = objectives.make("a2c")  # policy gradient + value regression, so value-only objectives count too

    def meta_loss(eta):
        grads = jax.grad(lambda p: objective.agent_loss(eta, inner, apply(p, inner.observation))[0])(params)
        updated = jax.tree.map(lambda p, g: p - INNER_LR * g, params, grads)
        out = apply(updated, outer_rollout.observation)
        return outer.agent_loss({}, outer_rollout, out)[0]

    meta_gradient = _compiled(jax.grad(meta_loss), eta0)
    for label, eta in (("init", eta0), ("perturbed", eta_perturbed)):
        leaves = jax.tree.leaves(meta_gradient(eta))
        assert all(np.all(np.isfinite(g)) for g in leaves), f"non-finite meta-gradient at {label} eta"
        assert any(np.any(g != 0) for g in leaves), f"meta-gradient is zero for every leaf at {label} eta"


@pytest.mark.parametrize("name", NAMES)
def test_trains_value_declaration_matches_the_loss(name):
    objective, _, _, (rollout, _), (out, _), _, eta = _setup(name)
    grad = _compiled(jax.grad(lambda v: objective.agent_loss(eta, rollout, out.replace(value=v))[0]), out.value)
    moves_value = bool(np.any(np.asarray(grad(out.value)) != 0))
    assert moves_value == objective.trains_value, (
        f"{name} declares trains_value={objective.trains_value}, but its loss "
        f"{'has' if moves_value else 'has no'} gradient in the agent's value"
    )


@pytest.mark.parametrize("name", NAMES)
def test_objective_checkpoint_round_trip(name, tmp_path):
    objective, *_, eta = _setup(name)
    path = ck.save_objective(tmp_path / "objective", objective, eta, {"method": "contract-test"})
    loaded, loaded_eta, meta = objectives.load(path)
    assert loaded.name == name and type(loaded) is type(objective)
    assert loaded.config == objective.config and loaded.heads == objective.heads
    assert meta["objective"]["name"] == name and meta["method"] == "contract-test"
    assert meta["agent_heads"] == objective.heads.to_json()
    assert jax.tree.structure(loaded_eta) == jax.tree.structure(eta)
    for a, b in zip(jax.tree.leaves(loaded_eta), jax.tree.leaves(eta)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --------------------------------------------------------------------------- learned_advantage

ACTOR_CRITIC = dict(gamma=0.9, td_lambda=0.8, value_weight=0.5, entropy_weight=0.01)


def test_learned_advantage_starts_as_a2c():
    learned = objectives.make("learned_advantage", **ACTOR_CRITIC)
    a2c = objectives.make("a2c", **ACTOR_CRITIC)
    rollout = _rollout(VECTOR_SPEC, 1)
    out = _agent_output(VECTOR_SPEC.num_actions, 2)
    key = jax.random.PRNGKey(3)
    eta = _compiled(learned.init, key)(key)

    def both(eta):
        def loss_and_grad(objective, e):
            return jax.value_and_grad(lambda o: objective.agent_loss(e, rollout, o), has_aux=True)(out)

        return loss_and_grad(learned, eta), loss_and_grad(a2c, {})

    both = _compiled(both, eta)
    ((loss, metrics), grad), ((a2c_loss, a2c_metrics), a2c_grad) = both(eta)
    np.testing.assert_allclose(loss, a2c_loss, atol=1e-6, rtol=0)
    for key, value in a2c_metrics.items():
        np.testing.assert_allclose(metrics[key], value, atol=1e-6, rtol=0, err_msg=key)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(a2c_grad)):  # the update at init is A2C's, too
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    described = learned.describe_eta(eta)
    assert float(described["out_norm"]) == 0.0 and float(described["param_norm"]) > 0.0
    assert float(learned.meta_regulariser(eta, rollout, out)[0]) == 0.0
    # A nonzero residual changes the policy-gradient term only.
    ((moved, moved_metrics), _), _ = both(_perturb(eta, seed=4))
    assert abs(float(moved) - float(loss)) > 1e-6
    np.testing.assert_allclose(moved_metrics["value_loss"], metrics["value_loss"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(moved_metrics["entropy"], metrics["entropy"], atol=1e-6, rtol=0)


def test_learned_advantage_on_a_hand_worked_case():
    """T=2, B=1, gamma = lambda = 0.5, the episode ends on the second transition (v(s_2) = 4 is not bootstrapped).

    G_1 = r_2 + 0 = 2;  G_0 = r_1 + gamma * ((1 - lambda) * v(s_1) + lambda * G_1) = 1 + 0.5 * (0.5 + 1) = 1.75.
    A2C's advantages: G - v(s_t) = [1.75 - 0.5, 2 - 1] = [1.25, 1.0]; with the output bias set to 0.25
    (output kernel 0) the residual is 0.25 at every step: [1.5, 1.25].
    """
    objective = objectives.make("learned_advantage", gamma=0.5, td_lambda=0.5, hidden_size=4)
    rollout = Rollout(
        observation=jnp.zeros((3, 1, 1)),
        action=jnp.zeros((3, 1), jnp.int32),
        reward=jnp.array([[0.0], [1.0], [2.0]]),
        discount=jnp.array([[1.0], [1.0], [0.0]]),
        done=jnp.array([[False], [False], [True]]),
        behaviour_logits=jnp.zeros((3, 1, 2)),
        episode_return=jnp.zeros((3, 1)),
    )
    logits = jnp.zeros((3, 1, 2))
    out = AgentOutput(logits=logits, value=jnp.array([[0.5], [1.0], [4.0]]), y_logits=empty_like_y(logits))
    key = jax.random.PRNGKey(0)
    eta = _compiled(objective.init, key)(key)
    with_bias = jax.tree.map(lambda x: x, eta)
    with_bias["params"]["out"]["bias"] = jnp.full_like(eta["params"]["out"]["bias"], 0.25)

    def advantages_and_loss(eta):
        return objective.targets(eta, rollout, out), objective.agent_loss(eta, rollout, out)[1]["pg_loss"]

    advantages_and_loss = _compiled(advantages_and_loss, eta)
    advantages, _ = advantages_and_loss(eta)
    np.testing.assert_allclose(advantages[:, 0], [1.25, 1.0], atol=1e-6)
    advantages, pg_loss = advantages_and_loss(with_bias)
    np.testing.assert_allclose(advantages[:, 0], [1.5, 1.25], atol=1e-6)
    # Uniform policy over 2 actions: pg_loss = -mean(A * log 0.5).
    np.testing.assert_allclose(pg_loss, -np.mean([1.5, 1.25]) * np.log(0.5), atol=1e-6)
