"""Self-tuning actor-critic (STAC; Zahavy et al. 2020, "A Self-Tuning Actor-Critic Algorithm").

Every differentiable hyper-parameter of the inner loss is a meta-parameter,
squashed and scaled as in STAC: ``h = sigmoid(eta_h) * outer_h``, where
``outer_h`` is the hyper-parameter's scale (the value the outer loss uses for
the loss weights; 1 for gamma and lambda). ``eta_h`` starts at
``logit(init_h / outer_h)`` so the product starts at ``init_h``.

Meta-parameters: gamma, lambda, value weight, entropy weight; with
``base="vtrace"`` also the leaky V-trace coefficient ``alpha`` (STAC eq. for
leaky V-trace): importance weights ``alpha * min(rho_bar, rho) + (1 - alpha) * rho``
are used both in the TD errors and (times lambda) in the traces, and in the
policy-gradient advantage (``rho`` stop-gradiented, ``alpha`` differentiable).
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp

from lpg.errors import InvalidConfigError
from lpg.types import AgentOutput, Rollout, assert_rollout_shapes
from lpg.validation import NON_NEGATIVE, POSITIVE, Range, check_value
from objectives import register
from objectives.a2c import a2c_loss, clip_rewards
from objectives.base import Eta, Hyper, Metrics, Objective, ObjectiveConfig, Supports
from objectives.losses import actor_critic_loss, log_prob, vtrace_targets
from objectives.mgrl import logit

__all__ = ["SelfTuning", "SelfTuningConfig", "leaky_vtrace_loss"]

_NAMES = ("gamma", "td_lambda", "value_weight", "entropy_weight", "alpha")
_AT_MOST_ONE = Range(0.0, 1.0, open_low=True)  # scales of gamma, lambda and alpha, which are at most 1


def _names(base: str) -> tuple[str, ...]:
    """The meta-learned hyper-parameters of ``base`` (alpha only with vtrace)."""
    return _NAMES if base == "vtrace" else _NAMES[:4]


@dataclasses.dataclass(frozen=True)
class SelfTuningConfig(ObjectiveConfig):
    """STAC meta-parameters: initial values and outer scales.

    Attributes:
      base: "a2c" (lambda-returns) or "vtrace" (leaky V-trace targets).
      gamma: initial discount.
      td_lambda: initial lambda.
      value_weight: initial value-loss weight.
      entropy_weight: initial entropy weight.
      alpha: initial leaky V-trace coefficient (vtrace only; 1 = plain V-trace).
      gamma_scale: outer scale of gamma (gamma = sigmoid(eta) * gamma_scale).
      td_lambda_scale: outer scale of lambda.
      value_weight_scale: outer scale of the value weight (STAC's g_v outer).
      entropy_weight_scale: outer scale of the entropy weight.
      alpha_scale: outer scale of alpha.
      rho_bar: V-trace clipping threshold of the importance weights (vtrace only).
      reward_clip: 0 = off; otherwise rewards are clipped to [-reward_clip, reward_clip].

    The scales of gamma, lambda and alpha lie in (0, 1], those of the weights
    are > 0, and each initial value lies strictly between 0 and its scale;
    rho_bar is > 0 and reward_clip >= 0.
    """

    OBJECTIVE = "self_tuning"
    RANGES = {
        "gamma_scale": _AT_MOST_ONE,
        "td_lambda_scale": _AT_MOST_ONE,
        "alpha_scale": _AT_MOST_ONE,
        "value_weight_scale": POSITIVE,
        "entropy_weight_scale": POSITIVE,
        "rho_bar": POSITIVE,
        "reward_clip": NON_NEGATIVE,
    }

    base: str = "a2c"
    gamma: float = 0.99
    td_lambda: float = 0.95
    value_weight: float = 0.5
    entropy_weight: float = 0.01
    alpha: float = 0.9
    gamma_scale: float = 1.0
    td_lambda_scale: float = 1.0
    value_weight_scale: float = 1.0
    entropy_weight_scale: float = 0.02
    alpha_scale: float = 1.0
    rho_bar: float = 1.0
    reward_clip: float = 0.0

    def check(self) -> None:
        if self.base not in ("a2c", "vtrace"):
            raise InvalidConfigError(f"objective self_tuning: base must be a2c or vtrace, got {self.base!r}")
        for name in _NAMES:  # alpha too with base a2c, where it is unused
            scale = getattr(self, f"{name}_scale")
            check_value(
                "objective self_tuning",
                f"initial {name}",
                getattr(self, name),
                Range(0.0, scale, open_low=True, open_high=True),
            )


def leaky_vtrace_loss(
    rollout: Rollout,
    agent_out: AgentOutput,
    gamma,
    td_lambda,
    alpha,
    rho_bar: float,
    value_weight,
    entropy_weight,
    reward_clip: float = 0.0,
):
    """V-trace actor-critic loss with leaky importance weights (STAC); ``alpha`` may be traced."""
    assert_rollout_shapes(rollout)
    a_tm1 = rollout.action[:-1]
    logits_tm1 = agent_out.logits[:-1]
    log_rho = log_prob(logits_tm1, a_tm1) - log_prob(rollout.behaviour_logits[:-1], a_tm1)
    rho = jax.lax.stop_gradient(jnp.exp(log_rho))
    leaky = alpha * jnp.minimum(rho, rho_bar) + (1.0 - alpha) * rho
    sg_value = jax.lax.stop_gradient(agent_out.value)
    vs, pg_adv = vtrace_targets(
        sg_value[:-1],
        sg_value[1:],
        clip_rewards(rollout.reward[1:], reward_clip),
        gamma * rollout.discount[1:],
        leaky,
        lambda_=td_lambda,
        clip_rho_threshold=None,
        clip_pg_rho_threshold=None,
        clip_c_threshold=None,
    )
    loss, metrics = actor_critic_loss(logits_tm1, agent_out.value[:-1], a_tm1, vs, pg_adv, value_weight, entropy_weight)
    return loss, dict(metrics, mean_rho=rho.mean())


@register
class SelfTuning(Objective):
    """Self-tuning actor-critic: all loss hyper-parameters meta-learned (Zahavy et al. 2020)."""

    name = "self_tuning"
    description = (
        "Self-tuning actor-critic (STAC): gamma, lambda, loss weights (and leaky V-trace alpha) "
        "as sigmoid(eta) x outer scale."
    )
    Config = SelfTuningConfig
    supports = Supports(online=True, offline=True)
    learned = True

    def init(self, key: chex.PRNGKey) -> Eta:
        del key
        c = self.config
        return {
            name: jnp.asarray(logit(getattr(c, name) / getattr(c, f"{name}_scale")), jnp.float32)
            for name in _names(c.base)
        }

    def hyper_parameters(self, eta: Eta) -> dict[str, chex.Array]:
        c = self.config
        return {name: jax.nn.sigmoid(eta[name]) * getattr(c, f"{name}_scale") for name in _names(c.base)}

    def agent_loss(
        self, eta: Eta, rollout: Rollout, agent_out: AgentOutput, hyper: Hyper | None = None
    ) -> tuple[chex.Array, Metrics]:
        del hyper
        c = self.config
        h = self.hyper_parameters(eta)
        if c.base == "a2c":
            return a2c_loss(
                rollout, agent_out, h["gamma"], h["td_lambda"], h["value_weight"], h["entropy_weight"], c.reward_clip
            )
        return leaky_vtrace_loss(
            rollout,
            agent_out,
            h["gamma"],
            h["td_lambda"],
            h["alpha"],
            c.rho_bar,
            h["value_weight"],
            h["entropy_weight"],
            c.reward_clip,
        )

    def describe_eta(self, eta: Eta) -> Metrics:
        return self.hyper_parameters(eta)

