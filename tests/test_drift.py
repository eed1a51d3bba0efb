"""The zero-reward entropy-drift probe (evaluation/drift.py) and ``lpg inspect``: hand-worked values for a2c, a
plain reference for LPG's update, every objective of the package, and the command's output and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import objectives
from evaluation import drift
from lpg.cli import main
from objectives.losses import log_prob
from tests.test_bad_input import SHIPPED, assert_bad_input
from tests.test_objective_contract import NAMES  # the package's objectives (tests register their own too)


def grad_entropy(z: np.ndarray) -> np.ndarray:
    """dH/dz_b = -pi_b (log pi_b + H) for pi = softmax(z) (worked by hand)."""
    pi = np.exp(z - z.max())
    pi /= pi.sum()
    h = -np.sum(pi * np.log(pi))
    return -pi * (np.log(pi) + h)


def test_a2c_drift_is_its_entropy_bonus_alone():
    """Zero rewards and values: a2c's advantage and value loss are 0, so g = c dH/dz and dH = c |dH/dz|^2."""
    objective = objectives.make("a2c")
    c = objective.config.entropy_weight
    peaks = (0.0, 1.0, 3.0)
    rows = drift.entropy_drift(objective, objective.init(jax.random.PRNGKey(0)), num_actions=4, unroll_length=3,
                               peaks=peaks, num_envs=64)  # fmt: skip
    for peak, row in zip(peaks, rows, strict=True):
        z = np.array([peak, 0.0, 0.0, 0.0])
        gh = grad_entropy(z)
        pi0 = np.exp(peak) / (np.exp(peak) + 3)
        assert row.pi_likely == pytest.approx(pi0, rel=1e-5)
        assert row.entropy_drift == pytest.approx(c * np.sum(gh**2), rel=1e-4, abs=1e-9)
        assert row.likely_logit_drift == pytest.approx(c * (gh[0] - gh[1:].mean()), rel=1e-4, abs=1e-9)
    assert rows[0].entropy_drift == 0.0 and rows[1].entropy_drift > 0 and rows[2].entropy_drift > 0


def test_lpg_drift_follows_its_pi_hat():
    """LPG's agent update moves the logits by g = mean_t,b pi_hat_t (onehot(a_t) - pi) (Oh et al. eq. 1)."""
    objective, eta, _ = objectives.load(SHIPPED)
    T, B, A, peak = 5, 256, 6, 2.0
    key = jax.random.PRNGKey(3)
    (row,) = drift.entropy_drift(objective, eta, num_actions=A, unroll_length=T, peaks=(peak,), num_envs=B, key=key)
    z = jnp.zeros(A).at[0].set(peak)
    rollout = drift._zero_rollout(z, key, T, B, 0.0)
    agent_out = drift._fresh_agent(objective, A, (T + 1, B)).replace(logits=jnp.broadcast_to(z, (T + 1, B, A)))
    pi_hat, _ = objective.targets(eta, rollout, agent_out)
    actions = np.asarray(rollout.action[:-1])
    pi = np.asarray(jax.nn.softmax(z))
    g = np.mean(np.asarray(pi_hat)[..., None] * (np.eye(A)[actions] - pi), axis=(0, 1))
    assert row.entropy_drift == pytest.approx(float(grad_entropy(np.asarray(z)) @ g), rel=1e-4)
    assert row.likely_logit_drift == pytest.approx(g[0] - g[1:].mean(), rel=1e-4)
    assert np.allclose(np.exp(np.asarray(log_prob(agent_out.logits[:-1], rollout.action[:-1]))), pi[actions])


def test_shipped_objective_makes_the_policy_deterministic_at_atari_unroll():
    """lpg-toy-v1 at T = 5 and 6 actions: the entropy falls at every non-uniform peak (README's Atari collapse)."""
    objective, eta, _ = objectives.load(SHIPPED)
    rows = drift.entropy_drift(objective, eta, num_actions=6, unroll_length=5, peaks=(0.5, 1.0, 2.0, 3.0))
    assert all(r.entropy_drift < 0 and r.likely_logit_drift > 0 for r in rows), rows


@pytest.mark.parametrize("name", NAMES)
def test_every_objective_can_be_probed(name):
    """From the registry alone; the uniform policy is a fixed point of the entropy (dH/dz = 0 there)."""
    objective = objectives.make(name)
    rows = drift.entropy_drift(objective, objective.init(jax.random.PRNGKey(0)), num_actions=3, unroll_length=4,
                               peaks=(0.0, 2.0), num_envs=32)  # fmt: skip
    assert all(np.isfinite([r.entropy, r.pi_likely, r.entropy_drift, r.likely_logit_drift]).all() for r in rows)
    assert rows[0].entropy == pytest.approx(np.log(3)) and abs(rows[0].entropy_drift) < 1e-7


def test_inspect_prints_the_table(capsys):
    assert main(["inspect", str(SHIPPED), "--peaks", "0", "2", "--num-envs", "256"]) == 0
    out = capsys.readouterr().out
    assert "objective lpg, discovered on chain/short, gridworld/sparse" in out
    assert "| 2 | 1.324 | 0.596 | -0.01" in out and "the entropy falls at 1 of 1 non-uniform peaks" in out
    assert main(["inspect", "a2c", "--num-actions", "3", "--peaks", "1"]) == 0
    out = capsys.readouterr().out
    assert "| 1 | 0.975 | 0.576 | +0.00089 |" in out and "falls" not in out
    assert main(["inspect", "lpg", "--peaks", "1", "--num-envs", "64"]) == 0  # the name, not the package's folder
    assert capsys.readouterr().out.startswith("lpg: objective lpg\n")


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["inspect", "a2x"], "unknown objective or checkpoint folder 'a2x'; did you mean 'a2c'?"),
        (["inspect", "a2c", "--num-actions", "1"], "--num-actions must be an integer >= 2, got 1"),
        (["inspect", "a2c", "--unroll-length", "0"], "--unroll-length must be positive, got 0"),
        (["inspect", "a2c", "--peaks"], "--peaks needs at least one value"),
        (["inspect", "a2c", "--reward", "nan"], "--peaks and --reward must be finite numbers"),
        (["inspect", str(SHIPPED.parent)], "is not an objective checkpoint"),
    ],
)
def test_inspect_bad_input(capsys, args, phrase):
    assert_bad_input(capsys, args, phrase, None)
