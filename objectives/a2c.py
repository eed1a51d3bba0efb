"""Advantage actor-critic with TD(lambda) targets (A2C; Mnih et al. 2016).

The hand-designed baseline: value targets are lambda-returns computed from the
agent's own (stop-gradiented) values, advantages are ``G_t - v(s_t)``, and the
loss is the actor-critic loss of ``objectives.losses.actor_critic_loss``
(Bonnet et al. 2022, eq. 3). ``a2c_loss`` is reused by the meta-learned
variants (MGRL, Self-Tuning AC), which pass eta-derived, traced
hyper-parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Union

import chex
import jax
import jax.numpy as jnp

from lpg.types import AgentOutput, Rollout, assert_rollout_shapes
from objectives import register
from objectives.base import ACTOR_CRITIC_RANGES, Eta, HandDesignedObjective, Hyper, Metrics, ObjectiveConfig
from objectives.losses import actor_critic_loss, lambda_returns, normalise

Scalar = Union[float, chex.Array]

__all__ = ["A2C", "A2CConfig", "a2c_loss", "clip_rewards"]


@dataclasses.dataclass(frozen=True)
class A2CConfig(ObjectiveConfig):
    """Hyper-parameters of A2C.

    Attributes:
      gamma: discount factor applied on top of the environment discount.
      td_lambda: lambda of the TD(lambda) value targets (1 = Monte-Carlo
        bootstrapped at the end of the rollout, 0 = one-step TD).
      value_weight: weight of the value (critic) loss.
      entropy_weight: weight of the entropy bonus.
      reward_clip: 0 = off; otherwise rewards are clipped to
        [-reward_clip, reward_clip] before computing targets (Atari).
      normalise_advantages: scale the policy-gradient advantages of each
        rollout to zero mean and unit standard deviation (the value targets
        are unchanged); off for A2C, on in offline discovery's meta-objective
        and in the outer loss of online meta-gradients with a critic of their own.

    gamma and td_lambda lie in [0, 1]; the weights and reward_clip are >= 0.
    """

    OBJECTIVE = "a2c"
    RANGES = ACTOR_CRITIC_RANGES

    gamma: float = 0.99
    td_lambda: float = 0.95
    value_weight: float = 0.5
    entropy_weight: float = 0.01
    reward_clip: float = 0.0
    normalise_advantages: bool = False


def clip_rewards(r_t: chex.Array, reward_clip: float) -> chex.Array:
    """Clips rewards to [-reward_clip, reward_clip]; ``reward_clip`` 0 = unchanged.

    ``reward_clip`` is a static Python number (a config value, never traced).
    """
    if reward_clip:
        if reward_clip < 0:
            raise ValueError(f"reward_clip must be >= 0, got {reward_clip}")
        return jnp.clip(r_t, -reward_clip, reward_clip)
    return r_t


def a2c_loss(
    rollout: Rollout,
    agent_out: AgentOutput,
    gamma: Scalar,
    td_lambda: Scalar,
    value_weight: Scalar,
    entropy_weight: Scalar,
    reward_clip: float = 0.0,
    normalise_advantages: bool = False,
) -> tuple[chex.Array, Metrics]:
    """A2C loss of ``agent_out`` (shaped [T+1, B, ...]) on ``rollout``.

    ``G = lambda_returns(r_t, gamma * discount[1:], stop_gradient(v_t), td_lambda)``,
    advantages ``G - stop_gradient(v_tm1)``, then ``actor_critic_loss``.
    ``gamma``, ``td_lambda``, ``value_weight`` and ``entropy_weight`` may be
    traced arrays (scalars or broadcastable to [T, B] for gamma/td_lambda);
    the loss is differentiable in them. ``reward_clip`` is a static float;
    ``normalise_advantages`` (static) rescales the advantages with ``normalise``.

    Returns:
      (scalar loss, metrics).
    """
    assert_rollout_shapes(rollout)
    chex.assert_shape(agent_out.value, rollout.reward.shape)
    chex.assert_shape(agent_out.logits, rollout.behaviour_logits.shape)

    r_t = clip_rewards(rollout.reward[1:], reward_clip)
    discount_t = gamma * rollout.discount[1:]
    value = agent_out.value
    sg_value = jax.lax.stop_gradient(value)
    targets = lambda_returns(r_t, discount_t, sg_value[1:], td_lambda)
    advantages = targets - sg_value[:-1]
    if normalise_advantages:
        advantages = normalise(advantages)
    loss, metrics = actor_critic_loss(
        agent_out.logits[:-1], value[:-1], rollout.action[:-1], targets, advantages, value_weight, entropy_weight
    )
    return loss, metrics


@register
class A2C(HandDesignedObjective):
    """Advantage actor-critic with TD(lambda) targets."""

    name = "a2c"
    description = "Advantage actor-critic with TD(lambda) value targets (hand-designed baseline)."
    Config = A2CConfig

    def agent_loss(
        self, eta: Eta, rollout: Rollout, agent_out: AgentOutput, hyper: Hyper | None = None
    ) -> tuple[chex.Array, Metrics]:
        del eta, hyper
        c = self.config
        return a2c_loss(
            rollout, agent_out, c.gamma, c.td_lambda, c.value_weight, c.entropy_weight, c.reward_clip,
            c.normalise_advantages,
        )  # fmt: skip
