"""STACX: self-tuning actor-critic with auxiliary heads (Zahavy et al. 2020, "A Self-Tuning Actor-Critic
Algorithm", NeurIPS 2020).

STAC (``objectives/self_tuning.py``) meta-learns the hyper-parameters of a
leaky V-trace actor-critic loss; STACX adds ``num_aux`` auxiliary
policy-and-value head pairs on the agent's shared torso, each with its own
meta-learned hyper-parameters. Head ``k = 0`` is the main head (the agent's
``logits`` and ``value``, the only head that acts: the rollout's behaviour
policy ``mu`` is the main policy); heads ``k = 1..num_aux`` are the auxiliary
pairs, declared as two extra agent heads (``heads``)::

    AgentHeads(extra=(Head("aux_logits", num_aux, per_action=True),   # [..., num_aux, A]
                      Head("aux_value", num_aux)))                     # [..., num_aux]

The auxiliary heads never act: they learn off-policy from the main policy's
behaviour with leaky V-trace, and their losses shape the shared torso.

Meta-parameters (all arrays of shape ``[1 + num_aux]``, index 0 the main head):
``h_k = sigmoid(eta_h[k]) * outer_h`` for ``h`` in gamma, lambda, policy
weight ``g_p``, value weight ``g_v``, entropy weight ``g_e`` and leaky V-trace
``alpha`` (STAC's squashing; ``eta_h`` starts at ``logit(init_h / outer_h)``,
the same initial values for every head). Unlike ``self_tuning`` (Bonnet et
al.'s four meta-parameters), the policy weight is meta-learned too, as STAC
tunes every loss coefficient; an auxiliary head's ``g_p`` sets how much its
policy gradient shapes the torso. ``describe_eta`` names them ``main/gamma``,
``aux1/gamma``, ..., ``aux2/alpha``.

Per head ``k`` (``lpg.types`` layout, rlax names: ``r_t = reward[1:]``,
``d_t = gamma_k * discount[1:]``, ``v_tm1 = sg(v_k)[:-1]``, ``v_t =
sg(v_k)[1:]``, ``a_tm1 = action[:-1]``), with stop-gradiented importance ratios
``rho_t = sg(pi_k(a_t|s_t) / mu(a_t|s_t))`` and leaky weights (STAC)

    w_t = alpha_k * min(rho_bar, rho_t) + (1 - alpha_k) * rho_t,

the V-trace targets (IMPALA eq. 1 with ``c_t = lambda_k * w_t``; rlax
``leaky_vtrace``) are

    vs_t = v_t + w_t delta_t + d_t lambda_k w_t (vs_{t+1} - v_{t+1}),   vs_T = v_T,
    delta_t = r_t + d_t v_{t+1} - v_t,

and the policy-gradient advantage takes the lambda-mixed bootstrap of rlax's
``vtrace_td_error_and_advantage`` / ``leaky_vtrace_td_error_and_advantage``
(``q_bootstrap = lambda * vs_{t+1} + (1 - lambda) * v_{t+1}``, with ``v_T``
after the last step):

    A_t = w_t * (r_t + d_t * (lambda_k vs_{t+1} + (1 - lambda_k) v_{t+1}) - v_t).

Convention: the project's ``objectives.losses.vtrace_targets`` returns IMPALA's
advantage ``r_t + d_t vs_{t+1} - v_t`` for every lambda; the two agree at
lambda = 1 and differ below it (T = 3, v = 0, r = [0.68, -0.47, 1.66], d =
0.9, rho = 1, lambda = 0.5: IMPALA's ``[0.929, 1.024, 1.660]`` against rlax's
``[0.805, 0.277, 1.660]``). Only rlax's form reduces on-policy (rho = 1) to the
lambda-return advantage ``G^lambda_t - v_t`` that A2C uses, which is what a
meta-learned lambda should trade off, so STACX uses rlax's form
(``leaky_vtrace_advantages``; ``vs`` still comes from ``vtrace_targets``).
One ``rho_bar`` clips the TD, trace and policy-gradient weights alike (as
``self_tuning``; rlax clips the traces at 1, the same at the default
``rho_bar = 1``). ``tests/test_stacx.py`` checks both forms on that case and
against plain-Python loops.

The agent minimises the sum over heads (Zahavy et al. 2020, STACX):

    L(theta; eta) = sum_k [ -g_p,k mean(A^k_t log pi_k(a_t|s_t)) + g_v,k 0.5 mean((vs^k_t - v_k(s_t))^2)
                            - g_e,k mean(H(pi_k(.|s_t))) ].

The outer (meta) loss is the command's, on the main head only: ``lpg discover
online`` uses the policy gradient with lambda-return advantages at fixed outer
hyper-parameters, plus STAC's ``KL(pi_theta' || pi_theta)`` term with
``--stac-kl-weight`` (``training.meta_gradient``).
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp

from lpg.types import AgentHeads, AgentOutput, Head, Rollout, assert_rollout_shapes
from lpg.validation import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, Range, check_value
from objectives import register
from objectives.a2c import clip_rewards
from objectives.base import Eta, Hyper, Metrics, Objective, ObjectiveConfig, Supports
from objectives.losses import actor_critic_loss, log_prob, vtrace_targets
from objectives.mgrl import logit

__all__ = ["AUX_LOGITS", "AUX_VALUE", "STACX", "STACXConfig", "leaky_vtrace_advantages"]

AUX_LOGITS = "aux_logits"  # AgentOutput.extra keys of the auxiliary heads
AUX_VALUE = "aux_value"
META_PARAMETERS = ("gamma", "td_lambda", "policy_weight", "value_weight", "entropy_weight", "alpha")
_AT_MOST_ONE = Range(0.0, 1.0, open_low=True)  # scales of gamma, lambda and alpha


@dataclasses.dataclass(frozen=True)
class STACXConfig(ObjectiveConfig):
    """STACX: number of auxiliary heads, initial meta-parameters and their outer scales.

    Every head (main and auxiliary) starts at the same initial values; each
    then has its own meta-parameters.

    Attributes:
      num_aux: auxiliary policy-and-value head pairs (Zahavy et al.: 2); 0 = STAC
        with a meta-learned policy weight and rlax's V-trace advantage.
      gamma: initial discount.
      td_lambda: initial lambda (V-trace traces and the advantage's bootstrap).
      policy_weight: initial policy-gradient weight g_p (STAC's init: sigmoid(4.6) = 0.99 of its scale 1).
      value_weight: initial value-loss weight g_v.
      entropy_weight: initial entropy weight g_e.
      alpha: initial leaky V-trace coefficient (1 = plain V-trace, 0 = unclipped importance sampling).
      gamma_scale: outer scale of gamma (gamma = sigmoid(eta) * gamma_scale).
      td_lambda_scale: outer scale of lambda.
      policy_weight_scale: outer scale of the policy weight.
      value_weight_scale: outer scale of the value weight.
      entropy_weight_scale: outer scale of the entropy weight.
      alpha_scale: outer scale of alpha.
      rho_bar: clipping threshold of the importance weights (TD errors, traces, advantage).
      reward_clip: 0 = off; otherwise rewards are clipped to [-reward_clip, reward_clip].

    num_aux is an integer >= 0; the scales of gamma, lambda and alpha lie in
    (0, 1], those of the weights are > 0, and each initial value lies strictly
    between 0 and its scale; rho_bar is > 0 and reward_clip >= 0.
    """

    OBJECTIVE = "stacx"
    RANGES = {
        "num_aux": NON_NEGATIVE_INT,
        "gamma_scale": _AT_MOST_ONE,
        "td_lambda_scale": _AT_MOST_ONE,
        "alpha_scale": _AT_MOST_ONE,
        "policy_weight_scale": POSITIVE,
        "value_weight_scale": POSITIVE,
        "entropy_weight_scale": POSITIVE,
        "rho_bar": POSITIVE,
        "reward_clip": NON_NEGATIVE,
    }

    num_aux: int = 2
    gamma: float = 0.99
    td_lambda: float = 0.95
    policy_weight: float = 0.99
    value_weight: float = 0.5
    entropy_weight: float = 0.01
    alpha: float = 0.9
    gamma_scale: float = 1.0
    td_lambda_scale: float = 1.0
    policy_weight_scale: float = 1.0
    value_weight_scale: float = 1.0
    entropy_weight_scale: float = 0.02
    alpha_scale: float = 1.0
    rho_bar: float = 1.0
    reward_clip: float = 0.0

    def check(self) -> None:
        for name in META_PARAMETERS:
            scale = getattr(self, f"{name}_scale")
            check_value(
                "objective stacx",
                f"initial {name}",
                getattr(self, name),
                Range(0.0, scale, open_low=True, open_high=True),
            )


def leaky_vtrace_advantages(
    v_tm1: chex.Array,
    v_t: chex.Array,
    r_t: chex.Array,
    discount_t: chex.Array,
    rho_tm1: chex.Array,
    alpha,
    lambda_,
    rho_bar: float = 1.0,
) -> tuple[chex.Array, chex.Array]:
    """Leaky V-trace targets and rlax-form policy-gradient advantages, each [T, B].

    ``w = alpha * min(rho_bar, rho) + (1 - alpha) * rho``; ``vs`` =
    ``vtrace_targets`` with ``w`` as the (unclipped) importance weights, so
    ``c = lambda * w``; ``A_t = w_t (r_t + d_t (lambda vs_{t+1} + (1 - lambda)
    v_{t+1}) - v_t)`` with ``vs_T = v_T`` (rlax
    ``leaky_vtrace_td_error_and_advantage``). Nothing is stop-gradiented:
    callers pass stop-gradiented values and ratios; ``alpha``, ``lambda_`` and
    ``discount_t`` may be traced (meta-gradients flow through them).
    """
    chex.assert_rank([v_tm1, v_t, r_t, discount_t, rho_tm1], 2)
    chex.assert_equal_shape([v_tm1, v_t, r_t, discount_t, rho_tm1])
    leaky = alpha * jnp.minimum(rho_tm1, rho_bar) + (1.0 - alpha) * rho_tm1
    vs, _ = vtrace_targets(
        v_tm1,
        v_t,
        r_t,
        discount_t,
        leaky,
        lambda_=lambda_,
        clip_rho_threshold=None,
        clip_pg_rho_threshold=None,
        clip_c_threshold=None,
    )
    vs_t = jnp.concatenate([vs[1:], v_t[-1:]], axis=0)  # vs_{t+1}, with v_T after the last step
    q_bootstrap = lambda_ * vs_t + (1.0 - lambda_) * v_t
    advantages = leaky * (r_t + discount_t * q_bootstrap - v_tm1)
    return vs, advantages


def _head_loss(
    logits: chex.Array,
    value: chex.Array,
    h: dict[str, chex.Array],
    rollout: Rollout,
    rho_bar: float,
    reward_clip: float,
) -> tuple[chex.Array, Metrics]:
    """One head's weighted leaky V-trace actor-critic loss; ``logits`` [T+1, B, A], ``value`` [T+1, B]."""
    a_tm1 = rollout.action[:-1]
    logits_tm1 = logits[:-1]
    log_rho = log_prob(logits_tm1, a_tm1) - log_prob(rollout.behaviour_logits[:-1], a_tm1)
    rho = jax.lax.stop_gradient(jnp.exp(log_rho))
    sg_value = jax.lax.stop_gradient(value)
    vs, advantages = leaky_vtrace_advantages(
        sg_value[:-1],
        sg_value[1:],
        clip_rewards(rollout.reward[1:], reward_clip),
        h["gamma"] * rollout.discount[1:],
        rho,
        h["alpha"],
        h["td_lambda"],
        rho_bar,
    )
    _, metrics = actor_critic_loss(logits_tm1, value[:-1], a_tm1, vs, advantages, 1.0, 1.0)
    loss = (
        h["policy_weight"] * metrics["pg_loss"]
        + h["value_weight"] * metrics["value_loss"]
        - h["entropy_weight"] * metrics["entropy"]
    )
    return loss, dict(metrics, loss=loss, mean_rho=rho.mean())


@register
class STACX(Objective):
    """STAC with auxiliary policy-and-value heads, each with its own meta-learned hyper-parameters."""

    name = "stacx"
    description = (
        "STACX: STAC's leaky V-trace actor-critic plus num_aux auxiliary policy/value heads trained off-policy, "
        "each head with its own meta-learned gamma, lambda, loss weights and alpha (Zahavy et al. 2020)."
    )
    Config = STACXConfig
    supports = Supports(online=True, offline=True)
    learned = True

    @property
    def num_heads(self) -> int:
        return 1 + self.config.num_aux

    @property
    def heads(self) -> AgentHeads:
        k = self.config.num_aux
        if not k:
            return AgentHeads()
        return AgentHeads(extra=(Head(AUX_LOGITS, k, per_action=True), Head(AUX_VALUE, k)))

    def head_names(self) -> list[str]:
        return ["main"] + [f"aux{i}" for i in range(1, self.num_heads)]

    def init(self, key: chex.PRNGKey) -> Eta:
        del key
        c = self.config
        return {
            name: jnp.full((self.num_heads,), logit(getattr(c, name) / getattr(c, f"{name}_scale")), jnp.float32)
            for name in META_PARAMETERS
        }

    def hyper_parameters(self, eta: Eta) -> dict[str, chex.Array]:
        """Each head's hyper-parameters, ``{name: [1 + num_aux]}`` (index 0: the main head)."""
        c = self.config
        return {name: jax.nn.sigmoid(eta[name]) * getattr(c, f"{name}_scale") for name in META_PARAMETERS}

    def agent_loss(
        self, eta: Eta, rollout: Rollout, agent_out: AgentOutput, hyper: Hyper | None = None
    ) -> tuple[chex.Array, Metrics]:
        del hyper
        assert_rollout_shapes(rollout)
        chex.assert_shape(agent_out.value, rollout.reward.shape)
        chex.assert_shape(agent_out.logits, rollout.behaviour_logits.shape)
        c = self.config
        logits, value = agent_out.logits[None], agent_out.value[None]  # [H, T+1, B, ...], main head first
        if c.num_aux:
            aux_logits = jnp.moveaxis(agent_out.extra[AUX_LOGITS], -2, 0)  # [T+1, B, K, A] -> [K, T+1, B, A]
            aux_value = jnp.moveaxis(agent_out.extra[AUX_VALUE], -1, 0)  # [T+1, B, K] -> [K, T+1, B]
            logits = jnp.concatenate([logits, aux_logits.astype(logits.dtype)], axis=0)
            value = jnp.concatenate([value, aux_value.astype(value.dtype)], axis=0)
        h = self.hyper_parameters(eta)
        losses, per_head = jax.vmap(lambda lg, v, hk: _head_loss(lg, v, hk, rollout, c.rho_bar, c.reward_clip))(
            logits, value, h
        )
        metrics = {k: v[0] for k, v in per_head.items()}  # the main head's, under the usual names
        for i, head in enumerate(self.head_names()[1:], start=1):
            metrics.update({f"{head}/{k}": per_head[k][i] for k in ("loss", "value_loss", "entropy", "mean_rho")})
        total = jnp.sum(losses)
        metrics["loss"] = total
        metrics["main_loss"] = losses[0]
        return total, metrics

    def describe_eta(self, eta: Eta) -> Metrics:
        h = self.hyper_parameters(eta)
        return {f"{head}/{name}": h[name][i] for i, head in enumerate(self.head_names()) for name in META_PARAMETERS}
