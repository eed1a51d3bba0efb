"""IMPALA actor-critic with V-trace off-policy corrections (Espeholt et al. 2018).

Importance ratios ``pi(a)/mu(a)`` compare the current agent's policy with the
behaviour policy that acted (``rollout.behaviour_logits``); they are
stop-gradiented. Value targets are the V-trace targets ``vs`` and the policy
gradient uses the V-trace advantages, both computed from stop-gradiented agent
values. ``vtrace_loss`` is reusable with traced (eta-derived)
hyper-parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Union

import chex
import jax

from lpg.types import AgentOutput, Rollout, assert_rollout_shapes
from lpg.validation import POSITIVE
from objectives import register
from objectives.a2c import clip_rewards
from objectives.base import ACTOR_CRITIC_RANGES, Eta, HandDesignedObjective, Hyper, Metrics, ObjectiveConfig
from objectives.losses import actor_critic_loss, log_prob, vtrace_targets

Scalar = Union[float, chex.Array]

__all__ = ["VTrace", "VTraceConfig", "vtrace_loss"]


@dataclasses.dataclass(frozen=True)
class VTraceConfig(ObjectiveConfig):
    """Hyper-parameters of the IMPALA / V-trace actor-critic.

    Attributes:
      gamma: discount factor applied on top of the environment discount.
      td_lambda: lambda multiplying the trace coefficients c (IMPALA Remark 2).
      rho_bar: clipping threshold of the importance weights in the TD errors.
      c_bar: clipping threshold of the trace coefficients c.
      pg_rho_bar: clipping threshold of the importance weights of the
        policy-gradient advantage.
      value_weight: weight of the value (critic) loss.
      entropy_weight: weight of the entropy bonus.
      reward_clip: 0 = off; otherwise rewards are clipped to
        [-reward_clip, reward_clip] before computing targets (Atari).

    gamma and td_lambda lie in [0, 1]; the clipping thresholds are > 0; the
    weights and reward_clip are >= 0.
    """

    OBJECTIVE = "vtrace"
    RANGES = {**ACTOR_CRITIC_RANGES, "rho_bar": POSITIVE, "c_bar": POSITIVE, "pg_rho_bar": POSITIVE}

    gamma: float = 0.99
    td_lambda: float = 1.0
    rho_bar: float = 1.0
    c_bar: float = 1.0
    pg_rho_bar: float = 1.0
    value_weight: float = 0.5
    entropy_weight: float = 0.01
    reward_clip: float = 0.0


def vtrace_loss(
    rollout: Rollout,
    agent_out: AgentOutput,
    gamma: Scalar,
    td_lambda: Scalar,
    rho_bar: float,
    c_bar: float,
    pg_rho_bar: float,
    value_weight: Scalar,
    entropy_weight: Scalar,
    reward_clip: float = 0.0,
) -> tuple[chex.Array, Metrics]:
    """V-trace actor-critic loss of ``agent_out`` (shaped [T+1, B, ...]) on ``rollout``.

    ``rho_tm1 = stop_gradient(pi(a_tm1) / mu(a_tm1))``; ``vs, adv =
    vtrace_targets(sg(v_tm1), sg(v_t), r_t, gamma * discount[1:], rho_tm1,
    td_lambda, rho_bar, pg_rho_bar, c_bar)``; then ``actor_critic_loss``.
    ``gamma``, ``td_lambda`` and the weights may be traced; ``reward_clip`` is
    a static float.

    Returns:
      (scalar loss, metrics).
    """
    assert_rollout_shapes(rollout)
    chex.assert_shape(agent_out.value, rollout.reward.shape)
    chex.assert_shape(agent_out.logits, rollout.behaviour_logits.shape)

    a_tm1 = rollout.action[:-1]
    logits_tm1 = agent_out.logits[:-1]
    log_rho = log_prob(logits_tm1, a_tm1) - log_prob(rollout.behaviour_logits[:-1], a_tm1)
    rho_tm1 = jax.lax.stop_gradient(jax.numpy.exp(log_rho))

    r_t = clip_rewards(rollout.reward[1:], reward_clip)
    discount_t = gamma * rollout.discount[1:]
    value = agent_out.value
    sg_value = jax.lax.stop_gradient(value)
    vs, pg_adv = vtrace_targets(
        sg_value[:-1],
        sg_value[1:],
        r_t,
        discount_t,
        rho_tm1,
        lambda_=td_lambda,
        clip_rho_threshold=rho_bar,
        clip_pg_rho_threshold=pg_rho_bar,
        clip_c_threshold=c_bar,
    )
    loss, metrics = actor_critic_loss(logits_tm1, value[:-1], a_tm1, vs, pg_adv, value_weight, entropy_weight)
    metrics = dict(metrics, mean_rho=rho_tm1.mean(), max_rho=rho_tm1.max())
    return loss, metrics


@register
class VTrace(HandDesignedObjective):
    """IMPALA actor-critic with V-trace corrections."""

    name = "vtrace"
    description = "IMPALA actor-critic with V-trace off-policy corrected targets and advantages."
    Config = VTraceConfig

    def agent_loss(
        self, eta: Eta, rollout: Rollout, agent_out: AgentOutput, hyper: Hyper | None = None
    ) -> tuple[chex.Array, Metrics]:
        del eta, hyper
        c = self.config
        return vtrace_loss(
            rollout,
            agent_out,
            c.gamma,
            c.td_lambda,
            c.rho_bar,
            c.c_bar,
            c.pg_rho_bar,
            c.value_weight,
            c.entropy_weight,
            c.reward_clip,
        )
