"""Differentiable building blocks shared by the hand-designed objectives.

Every function works on time-major arrays shaped ``[T, B]`` (``[T, B, A]`` for
logits) in the rlax naming of ``lpg.types``: ``r_t = reward[1:]``,
``discount_t = discount[1:]`` (already multiplied by gamma), ``v_tm1 =
value[:-1]``, ``v_t = value[1:]``, ``a_tm1 = action[:-1]``.

Discount factors and trace parameters (gamma, lambda) may be Python floats or
traced ``jnp`` arrays broadcastable to ``[T, B]``: meta-gradient methods
(MGRL, Self-Tuning AC) differentiate through them, so nothing here
stop-gradients them. Return/advantage estimators do *not* stop-gradient their
outputs either (unlike rlax's default): callers pass stop-gradiented agent
values, so the targets are constants for the agent parameters but remain
differentiable in the meta-parameters.
"""

from __future__ import annotations

from typing import Union

import chex
import jax
import jax.numpy as jnp

Scalar = Union[float, chex.Array]

__all__ = [
    "actor_critic_loss",
    "entropy",
    "fixed_random_features",
    "lambda_returns",
    "log_prob",
    "masked_mean",
    "normalise",
    "vtrace_targets",
]


def normalise(x: chex.Array, eps: float = 1e-8) -> chex.Array:
    """``(x - mean(x)) / (std(x) + eps)`` over all of ``x``: advantages of unit scale (offline discovery's meta-objective)."""
    return (x - jnp.mean(x)) / (jnp.std(x) + eps)


def _as_time_batch(x: Scalar, shape: tuple[int, ...], dtype) -> chex.Array:
    """Broadcasts a scalar / array parameter to ``shape`` with ``dtype``."""
    return jnp.broadcast_to(jnp.asarray(x, dtype), shape)


def lambda_returns(r_t: chex.Array, discount_t: chex.Array, v_t: chex.Array, lambda_: Scalar = 1.0) -> chex.Array:
    """TD(lambda) returns (Sutton & Barto 2018, eq. 12.18; rlax.lambda_returns).

    Computes, backwards in time with a reverse ``lax.scan``,

        G_t = r_t + discount_t * ((1 - lambda_t) * v_t + lambda_t * G_{t+1}),

    bootstrapping with ``G_T = v_t[-1]`` (the value of the last state). With
    ``lambda_ = 1`` this is the discounted Monte-Carlo return bootstrapped at
    the end of the rollout; with ``lambda_ = 0`` the one-step TD target
    ``r_t + discount_t * v_t``.

    Args:
      r_t: [T, B] rewards on arriving at the next state.
      discount_t: [T, B] discounts (gamma times the env discount, 0 at episode
        ends).
      v_t: [T, B] values of the next states (callers stop-gradient them).
      lambda_: float or array broadcastable to [T, B]; may be traced.

    Returns:
      [T, B] lambda-returns, differentiable in ``discount_t``, ``lambda_``,
      ``r_t`` and ``v_t`` (no stop_gradient is applied).
    """
    chex.assert_rank([r_t, discount_t, v_t], 2)
    chex.assert_equal_shape([r_t, discount_t, v_t])
    dtype = jnp.result_type(r_t, discount_t, v_t, lambda_)
    r_t, discount_t, v_t = (jnp.asarray(x, dtype) for x in (r_t, discount_t, v_t))
    lambda_ = _as_time_batch(lambda_, r_t.shape, dtype)

    def body(acc, xs):
        r, d, v, lam = xs
        acc = r + d * ((1.0 - lam) * v + lam * acc)
        return acc, acc

    _, returns = jax.lax.scan(body, v_t[-1], (r_t, discount_t, v_t, lambda_), reverse=True)
    return returns


def vtrace_targets(
    v_tm1: chex.Array,
    v_t: chex.Array,
    r_t: chex.Array,
    discount_t: chex.Array,
    rho_tm1: chex.Array,
    lambda_: Scalar = 1.0,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
) -> tuple[chex.Array, chex.Array]:
    """V-trace value targets and policy-gradient advantages (IMPALA, Espeholt et al. 2018, eq. 1).

    With clipped importance weights ``rho_bar_s = min(rho_bar, rho_s)`` and
    ``c_s = lambda_s * min(c_bar, rho_s)`` (lambda as in rlax / IMPALA
    Remark 2), the targets satisfy the recursion (IMPALA Remark 1)

        vs_s = v_s + delta_s + discount_s * c_s * (vs_{s+1} - v_{s+1}),
        delta_s = rho_bar_s * (r_s + discount_s * v_{s+1} - v_s),

    equivalent to eq. 1: ``vs_s = v_s + sum_{t>=s} (prod_{i=s}^{t-1}
    discount_i c_i) delta_t``, with ``vs_T = v_T`` (``v_t[-1]``). It is
    computed with a reverse ``lax.scan``. The policy-gradient advantage is

        A_s = min(pg_rho_bar, rho_s) * (r_s + discount_s * vs_{s+1} - v_s),

    where ``vs_{s+1}`` of the last step is ``v_t[-1]``.

    Args:
      v_tm1: [T, B] values of the states the actions were taken in.
      v_t: [T, B] values of the next states.
      r_t: [T, B] rewards.
      discount_t: [T, B] discounts (gamma times the env discount).
      rho_tm1: [T, B] importance ratios pi(a_tm1) / mu(a_tm1) (callers
        stop-gradient them).
      lambda_: float or array broadcastable to [T, B] (trace mixing); may be
        traced.
      clip_rho_threshold: rho-bar; ``None`` = no clipping.
      clip_pg_rho_threshold: rho-bar of the policy-gradient advantage; ``None``
        = no clipping.
      clip_c_threshold: c-bar; ``None`` = no clipping.

    Returns:
      (vs [T, B], pg_advantages [T, B]); no stop_gradient is applied, so both
      stay differentiable in ``discount_t`` and ``lambda_``.
    """
    chex.assert_rank([v_tm1, v_t, r_t, discount_t, rho_tm1], 2)
    chex.assert_equal_shape([v_tm1, v_t, r_t, discount_t, rho_tm1])
    dtype = jnp.result_type(v_tm1, v_t, r_t, discount_t, rho_tm1, lambda_)
    v_tm1, v_t, r_t, discount_t, rho_tm1 = (jnp.asarray(x, dtype) for x in (v_tm1, v_t, r_t, discount_t, rho_tm1))
    lambda_ = _as_time_batch(lambda_, r_t.shape, dtype)

    def clip(x, threshold):
        return x if threshold is None else jnp.minimum(x, threshold)

    clipped_rho_tm1 = clip(rho_tm1, clip_rho_threshold)
    c_tm1 = clip(rho_tm1, clip_c_threshold) * lambda_
    clipped_pg_rho_tm1 = clip(rho_tm1, clip_pg_rho_threshold)

    td_errors = clipped_rho_tm1 * (r_t + discount_t * v_t - v_tm1)

    def body(acc, xs):
        td, d, c = xs
        acc = td + d * c * acc
        return acc, acc

    init = jnp.zeros_like(v_t[-1])
    _, vs_minus_v = jax.lax.scan(body, init, (td_errors, discount_t, c_tm1), reverse=True)
    vs_tm1 = v_tm1 + vs_minus_v
    vs_t = jnp.concatenate([vs_tm1[1:], v_t[-1:]], axis=0)
    pg_advantages = clipped_pg_rho_tm1 * (r_t + discount_t * vs_t - v_tm1)
    return vs_tm1, pg_advantages


def log_prob(logits: chex.Array, actions: chex.Array) -> chex.Array:
    """log pi(a) of a categorical policy, via ``log_softmax``.

    Args:
      logits: [T, B, A] (any leading shape ``[...]``, A last).
      actions: int [T, B] (the leading shape of ``logits``).

    Returns:
      [T, B] log-probabilities of ``actions``.
    """
    chex.assert_equal_shape_prefix([logits, actions], actions.ndim)
    chex.assert_rank(logits, actions.ndim + 1)
    log_pi = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(log_pi, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]


def entropy(logits: chex.Array) -> chex.Array:
    """Entropy H(pi) = -sum_a pi(a) log pi(a) of a categorical policy.

    Args:
      logits: [T, B, A] (any leading shape, A last); ``-inf`` logits allowed.

    Returns:
      [T, B] entropies (log A for uniform logits).
    """
    chex.assert_rank(logits, {1, 2, 3, 4})
    log_pi = jax.nn.log_softmax(logits, axis=-1)
    pi = jnp.exp(log_pi)
    safe_log_pi = jnp.where(pi > 0, log_pi, 0.0)
    return -jnp.sum(pi * safe_log_pi, axis=-1)


def masked_mean(x: chex.Array, mask: chex.Array | None = None) -> chex.Array:
    """Mean of ``x`` [T, B], weighted by ``mask`` [T, B] if given (0-safe)."""
    if mask is None:
        return jnp.mean(x)
    chex.assert_equal_shape([x, mask])
    mask = mask.astype(x.dtype)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def actor_critic_loss(
    logits_tm1: chex.Array,
    v_tm1: chex.Array,
    a_tm1: chex.Array,
    targets_tm1: chex.Array,
    pg_advantages: chex.Array,
    value_weight: Scalar,
    entropy_weight: Scalar,
    mask: chex.Array | None = None,
) -> tuple[chex.Array, dict[str, chex.Array]]:
    """Advantage actor-critic loss (Mnih et al. 2016; Bonnet et al. 2022, eq. 3).

        L = -mean(A_t log pi(a_t|s_t))
            + value_weight * 0.5 * mean((G_t - v(s_t))^2)
            - entropy_weight * mean(H(pi(.|s_t))).

    IMPORTANT: ``targets_tm1`` and ``pg_advantages`` are used as given, with
    no stop_gradient inside this function. They must already be computed from
    stop-gradiented agent values (``jax.lax.stop_gradient(agent_out.value)``),
    so they are constants for the agent parameters, yet they stay
    differentiable in the meta-parameters (gamma, lambda, ...) they were built
    from, which meta-gradient methods need.

    Args:
      logits_tm1: [T, B, A] current policy logits at s_t.
      v_tm1: [T, B] current value estimates v(s_t) (differentiable).
      a_tm1: int [T, B] actions taken.
      targets_tm1: [T, B] value targets G_t (see above).
      pg_advantages: [T, B] advantages A_t (see above).
      value_weight: scalar weight of the value loss (may be traced).
      entropy_weight: scalar weight of the entropy bonus (may be traced).
      mask: optional [T, B] weights of valid steps (default: all valid).

    Returns:
      (scalar loss, metrics dict of scalars).
    """
    chex.assert_rank([v_tm1, a_tm1, targets_tm1, pg_advantages], 2)
    chex.assert_equal_shape([v_tm1, a_tm1, targets_tm1, pg_advantages])
    chex.assert_shape(logits_tm1, v_tm1.shape + (None,))

    log_pi_a = log_prob(logits_tm1, a_tm1)
    pg_loss = -masked_mean(pg_advantages * log_pi_a, mask)
    td = targets_tm1 - v_tm1
    value_loss = 0.5 * masked_mean(jnp.square(td), mask)
    ent = masked_mean(entropy(logits_tm1), mask)
    loss = pg_loss + value_weight * value_loss - entropy_weight * ent
    metrics = {
        "loss": loss,
        "pg_loss": pg_loss,
        "value_loss": value_loss,
        "entropy": ent,
        "mean_advantage": masked_mean(pg_advantages, mask),
        "mean_abs_advantage": masked_mean(jnp.abs(pg_advantages), mask),
        "mean_target": masked_mean(targets_tm1, mask),
        "mean_value": masked_mean(v_tm1, mask),
        "mean_abs_td_error": masked_mean(jnp.abs(td), mask),
    }
    return loss, metrics


def fixed_random_features(
    observation: chex.Array, size: int, seed: int, lead_ndim: int = 2, normalise: str = "sqrt_dim", dtype=jnp.float32
) -> chex.Array:
    """Fixed random features ``[*lead, size]`` of observations ``[*lead, *obs_shape]``.

    The inputs of the small networks that learned objectives put over observations
    (LIRPG's intrinsic reward, the auxiliary-question network), the same for any
    observation type and at every call (the key is the constant ``seed``):

    * an integer observation with no axes of its own is a state index ``s``: its
      feature is ``N(0, I)`` drawn from ``fold_in(key, s)``;
    * otherwise ``x`` is the flattened observation (``uint8`` divided by 255) and
      the feature is ``x @ P`` with ``P ~ N(0, 1)^{dim(x) x size}``, divided by
      ``sqrt(dim(x))`` (``normalise="sqrt_dim"``) or by ``max(||x||, 1e-6)``
      (``normalise="l2"``: unit-norm input, the same scale for any observation).
    """
    if normalise not in ("sqrt_dim", "l2"):
        raise ValueError(f"normalise must be 'sqrt_dim' or 'l2', not {normalise!r}")
    key = jax.random.PRNGKey(seed)
    lead = observation.shape[:lead_ndim]
    if observation.ndim == lead_ndim and jnp.issubdtype(observation.dtype, jnp.integer):
        draw = jax.vmap(lambda s: jax.random.normal(jax.random.fold_in(key, s), (size,), dtype))
        return draw(observation.reshape(-1)).reshape(lead + (size,))
    x = observation.reshape(lead + (-1,)).astype(dtype)
    if observation.dtype == jnp.uint8:
        x = x / 255.0
    projected = x @ jax.random.normal(key, (x.shape[-1], size), dtype)
    if normalise == "l2":
        return projected / jnp.maximum(jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True)), 1e-6)
    return projected / jnp.sqrt(jnp.asarray(x.shape[-1], dtype))
