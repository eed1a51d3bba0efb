"""Where an objective drives a policy when nothing happens: its entropy drift on zero-reward rollouts.

A learned objective met on a new task mostly sees steps where nothing
happens (Pong's agent is rewarded once every few hundred frames). What it does
there decides whether the agent keeps exploring until the first reward or
commits to whatever it happens to do. This probe measures that, for any
objective of the registry, without an environment:

* one state, a policy ``pi = softmax(z)`` over ``A`` actions with logits
  ``z = (p, 0, ..., 0)`` (action 0 is the "likely" one; ``p`` is the peak),
  shared by every step of ``B`` rollouts of ``T`` steps;
* actions drawn from ``pi``, every reward ``reward`` (default 0), discount 1,
  no episode end; values, y logits and every extra head zero (a fresh agent's
  predictions: y uniform);
* the objective's agent loss ``L(z)`` on that rollout (``agent_loss``), and the
  update direction ``g = -dL/dz`` that one gradient step follows.

It reports, per peak, the policy's entropy ``H``, ``pi(a_0)``, the first-order
change of the entropy per unit step along the update, ``dH = grad_z H . g``, and
the growth of the likely action's logit over the others', ``g_0 - mean(g_1..)``.

``dH < 0`` at every peak means the objective alone makes the policy
deterministic where rewards are absent, from any start; a2c (zero advantage
with zero values and rewards, plus its entropy bonus) has ``dH > 0`` at every
peak but the uniform one. ``dH`` is per unit step of plain gradient descent on
the logits: an agent's optimiser and network scale it, not its sign.

The expectations are Monte-Carlo estimates over the ``T x B`` sampled actions
(default ``B`` = 4,096), with one key for every peak (common random numbers).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp

from lpg.types import AgentOutput, Rollout
from objectives.base import Eta, Hyper, Objective
from objectives.losses import entropy

__all__ = ["DEFAULT_ACTIONS", "DEFAULT_PEAKS", "DEFAULT_ROLLOUTS", "DriftRow", "entropy_drift", "format_drift_table"]

DEFAULT_PEAKS = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)  # logit of action 0 over the others': uniform to nearly deterministic
DEFAULT_ACTIONS = 6  # Pong's minimal action set
DEFAULT_ROLLOUTS = 4096  # rollouts per peak (the Monte-Carlo sample)


@dataclasses.dataclass(frozen=True)
class DriftRow:
    """The probe at one peak: entropy, pi(a_0), entropy drift per unit step, likely-logit growth."""

    peak: float
    entropy: float
    pi_likely: float
    entropy_drift: float
    likely_logit_drift: float


def _zero_rollout(z: chex.Array, key: chex.PRNGKey, unroll_length: int, num_envs: int, reward: float) -> Rollout:
    """``[T+1, B]`` rollout of the state-independent policy ``softmax(z)``: rewards ``reward``, discount 1."""
    shape = (unroll_length + 1, num_envs)
    return Rollout(
        observation=jnp.zeros(shape, jnp.int32),  # one tabular state, index 0
        action=jax.random.categorical(key, z, shape=shape).astype(jnp.int32),
        reward=jnp.full(shape, reward, jnp.float32).at[0].set(0.0),
        discount=jnp.ones(shape, jnp.float32),
        done=jnp.zeros(shape, bool),
        behaviour_logits=jnp.broadcast_to(z, shape + z.shape),
        episode_return=jnp.zeros(shape, jnp.float32),
    )


def _fresh_agent(objective: Objective, num_actions: int, shape: tuple[int, int]) -> AgentOutput:
    """A fresh agent's outputs on the rollout: every head zero (the logits are set per peak)."""
    heads = objective.heads
    extra = {
        h.name: jnp.zeros(shape + ((h.size, num_actions) if h.per_action else (h.size,)), jnp.float32)
        for h in heads.extra
    }
    return AgentOutput(
        logits=jnp.zeros(shape + (num_actions,), jnp.float32),
        value=jnp.zeros(shape, jnp.float32),
        y_logits=jnp.zeros(shape + (heads.y_size,), jnp.float32),
        extra=extra,
    )


def _probe_one(objective, eta, hyper, fresh, z, key, reward) -> chex.Array:
    """``[H, pi_0, dH, g_0 - mean(g_1..)]`` at logits ``z``; ``fresh`` gives the rollout's shape and zero heads."""
    unroll_length, num_envs = fresh.value.shape[0] - 1, fresh.value.shape[1]
    rollout = _zero_rollout(z, key, unroll_length, num_envs, reward)

    def loss(logits):
        agent_out = fresh.replace(logits=jnp.broadcast_to(logits, fresh.logits.shape))
        return objective.agent_loss(eta, rollout, agent_out, hyper)[0]

    g = -jax.grad(loss)(z)
    grad_h = jax.grad(entropy)(z)
    pi = jax.nn.softmax(z)
    return jnp.stack([entropy(z), pi[0], grad_h @ g, g[0] - jnp.mean(g[1:])])


@functools.lru_cache(maxsize=16)
def _probe(objective: Objective, reward: float):
    """The jitted probe of every peak for ``objective``; ``eta`` is an argument, so a new ``eta`` of the same
    shapes (each evaluation of a discovery run) reuses the compiled program."""
    one = lambda e, h, f, z, k: _probe_one(objective, e, h, f, z, k, reward)
    return jax.jit(jax.vmap(one, (None, None, None, 0, None)))


def entropy_drift(
    objective: Objective,
    eta: Eta,
    *,
    num_actions: int,
    unroll_length: int,
    peaks: Sequence[float] = DEFAULT_PEAKS,
    num_envs: int = DEFAULT_ROLLOUTS,
    reward: float = 0.0,
    key: chex.PRNGKey | None = None,
    hyper: Hyper | None = None,
) -> list[DriftRow]:
    """The probe of the module docstring at each peak (``num_actions >= 2``), one jitted program for all peaks."""
    if num_actions < 2:
        raise ValueError(f"num_actions must be at least 2, got {num_actions}")
    key = jax.random.PRNGKey(0) if key is None else key
    zs = jnp.zeros((len(peaks), num_actions), jnp.float32).at[:, 0].set(jnp.asarray(peaks, jnp.float32))
    fresh = _fresh_agent(objective, num_actions, (unroll_length + 1, num_envs))  # an argument: not constant-folded
    out = jax.device_get(_probe(objective, float(reward))(eta, hyper, fresh, zs, key))
    return [DriftRow(float(p), *(float(v) for v in row)) for p, row in zip(peaks, out, strict=True)]


def format_drift_table(rows: Sequence[DriftRow]) -> str:
    """A Markdown table of the rows (as ``lpg inspect`` prints it)."""
    lines = [
        "| peak | entropy | pi(a_0) | entropy drift dH | likely-logit drift |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.peak:g} | {r.entropy:.3f} | {r.pi_likely:.3f} | {r.entropy_drift:+.5f} | {r.likely_logit_drift:+.5f} |"
        for r in rows
    ]
    return "\n".join(lines)
