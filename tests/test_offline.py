"""Offline discovery: meta-gradient averaging, ES direction, end-to-end steps at toy size."""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import objectives
from lpg.errors import InvalidConfigError, UnknownNameError
from training.offline import OfflineConfig, make_es_algorithm, make_estimator, split_evenly

TINY = dict(envs=("chain/short",), num_lifetimes=3, num_envs=2, unroll_length=5, lifetime_updates=4, inner_updates=1)
REFS = {"chain/short": (0.0, 1.0)}


@pytest.fixture(scope="module")
def objective():
    return objectives.make("lpg", hidden_size=8, y_size=4)


def _finite(tree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(tree))


def test_split_evenly():
    assert split_evenly(7, 3) == [3, 2, 2]
    assert sum(split_evenly(16, 5)) == 16


def test_config_validation(objective):
    with pytest.raises(UnknownNameError):
        OfflineConfig(method="sgd").validate()
    with pytest.raises(InvalidConfigError):
        OfflineConfig(envs=("a", "b", "c"), num_lifetimes=2).validate()
    with pytest.raises(InvalidConfigError):
        OfflineConfig(lr_range=(2.0, 1.0)).validate()


def test_grad_meta_gradient_is_mean_over_lifetimes_and_step_runs(objective):
    """The meta-gradient equals the mean of meta-gradients computed lifetime by lifetime;
    then grad steps run end to end with finite eta, and lifetimes restart."""
    trainer = make_estimator(objective, OfflineConfig(method="grad", **TINY))
    state = trainer.jit_init(jax.random.PRNGKey(0))
    meta_grad, per_lifetime, _, _ = jax.jit(trainer.meta_gradient)(state)
    group = trainer.groups[0]
    single = jax.jit(lambda eta, life: jax.grad(lambda e: trainer.lifetime_meta_loss(group, e, life)[0])(eta))
    separate = [single(state.eta, jax.tree.map(lambda x, i=i: x[i], state.lifetimes[0])) for i in range(group.size)]
    expected = jax.tree.map(lambda *xs: sum(xs) / len(xs), *separate)
    for got, want in zip(jax.tree.leaves(meta_grad), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-4, atol=1e-7)
    for i in range(group.size):  # per-lifetime gradients are not averaged over anything else
        for got, want in zip(jax.tree.leaves(jax.tree.map(lambda x, i=i: x[i], per_lifetime)), jax.tree.leaves(separate[i])):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-4, atol=1e-7)
    assert float(optax_norm(meta_grad)) > 0

    ages0 = np.asarray(state.lifetimes[0].update_count)
    for _ in range(3):
        state, metrics = trainer.jit_step(state)
    assert int(state.step) == 3
    assert _finite(state.eta) and np.isfinite(float(metrics["meta_loss"]))
    ages = np.asarray(state.lifetimes[0].update_count)
    assert np.all(ages < TINY["lifetime_updates"])  # restarted when they reached their length
    assert not np.array_equal(ages, ages0)


def test_drawn_lifetime_lengths(objective):
    """min_lifetime_updates draws each lifetime's length in range; a lifetime restarts at its own length."""
    for bad in (dict(min_lifetime_updates=9), dict(min_lifetime_updates=1, inner_updates=2)):
        with pytest.raises(InvalidConfigError, match="min_lifetime_updates"):
            OfflineConfig(**{**TINY, "lifetime_updates": 8, **bad})
    with pytest.raises(InvalidConfigError, match="es scores"):
        OfflineConfig(**{**TINY, "method": "es", "min_lifetime_updates": 2})
    config = dict(TINY, num_lifetimes=64, lifetime_updates=250)
    fixed = make_estimator(objective, OfflineConfig(**config)).jit_init(jax.random.PRNGKey(0))
    drawn_trainer = make_estimator(objective, OfflineConfig(**config, min_lifetime_updates=10))
    drawn = drawn_trainer.jit_init(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(fixed.lifetimes[0].length, 250)
    lengths = np.asarray(drawn.lifetimes[0].length)
    assert lengths.min() >= 10 and lengths.max() <= 250 and len(set(lengths.tolist())) > 30
    # log-uniform: about half the lengths below the geometric mean sqrt(10 * 250) = 50.
    assert 0.3 < np.mean(lengths < 50) < 0.7
    # The other per-lifetime draws are those of a fixed-length run.
    np.testing.assert_array_equal(fixed.lifetimes[0].lr, drawn.lifetimes[0].lr)
    # Restart: lifetimes at or past their own length are replaced, the others kept.
    lives = drawn.lifetimes[0].replace(update_count=jnp.asarray(np.minimum(lengths, 60), jnp.int32))
    (after,) = drawn_trainer.restart_finished((lives,), jax.random.PRNGKey(1))
    restarted = np.asarray(after.update_count) == 0
    np.testing.assert_array_equal(restarted, lengths <= 60)
    assert not np.array_equal(np.asarray(after.length)[restarted], lengths[restarted])


def optax_norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def test_es_antithetic_step_moves_mean_towards_higher_fitness():
    """Open_ES with antithetic pairs on f(w) = -||w - 1||^2 (evosax minimises ||w - 1||^2)."""
    solution = {"w": jnp.zeros(5), "b": jnp.zeros(())}
    es, params = make_es_algorithm("Open_ES", 16, solution, std=0.1, lr=0.05)
    state = es.init(jax.random.PRNGKey(0), solution, params)
    population, _ = es.ask(jax.random.PRNGKey(1), state, params)
    flat = jax.vmap(lambda p: jax.flatten_util.ravel_pytree(p)[0])(population)
    np.testing.assert_allclose(np.asarray(flat[:8] + flat[8:]), 0.0, atol=1e-6)  # pairs j, j + P/2 mirror the mean

    def loss(p):
        return jnp.sum(jnp.square(p["w"] - 1.0)) + jnp.square(p["b"] - 1.0)

    before = float(loss(es.get_mean(state)))
    for i in range(3):
        population, state = es.ask(jax.random.PRNGKey(10 + i), state, params)
        state, _ = es.tell(jax.random.PRNGKey(20 + i), population, jax.vmap(loss)(population), state, params)
        after = float(loss(es.get_mean(state)))
        assert after < before
        before = after


def test_es_step_runs_end_to_end(objective):
    trainer = make_estimator(objective, OfflineConfig(method="es", **TINY), references=REFS)
    state = trainer.jit_init(jax.random.PRNGKey(0))
    eta0 = state.eta
    for _ in range(2):
        state, metrics = trainer.jit_step(state)
    assert int(state.step) == 2 and _finite(state.eta)
    assert np.isfinite(float(metrics["fitness_mean"]))
    moved = sum(float(jnp.sum(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(state.eta), jax.tree.leaves(eta0)))
    assert moved > 0
