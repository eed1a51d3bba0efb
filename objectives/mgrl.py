"""Meta-gradient RL for the return's gamma and lambda (Xu et al. 2018, "Meta-Gradient
Reinforcement Learning"), and the per-state discount variant of its MRP study
(Xu et al. 2018 Sec. 4.1; Bonnet et al. 2022, App. C.1).

* ``mgrl``: the A2C objective (``objectives.a2c.a2c_loss``) whose discount
  ``gamma = sigmoid(eta["gamma_logit"])`` and trace parameter
  ``lambda = sigmoid(eta["lambda_logit"])`` are meta-parameters; value and
  entropy weights stay fixed.
* ``mgrl_per_state_gamma``: a value-prediction objective for tabular
  observations (the 10-state MRP): one discount per state,
  ``gamma_i = sigmoid(eta["gamma_logits"][i])`` (initialised at 0.5), and the
  target of Bonnet et al. App. C.1

      g_eta(s_t) = sum_{u >= t, same episode} gamma_{s_u}^(u - t + 1) r_u,

  where ``r_u`` is the reward of the transition leaving ``s_u`` (``reward[u+1]``
  in ``lpg.types`` layout). The sum stops at the episode end and at the end of
  the rollout (no bootstrap: use rollouts aligned with the episodes, e.g. the
  MRP's 10-step episodes with ``unroll_length = 10``). The agent regresses
  ``v(s_t)`` on ``g_eta(s_t)``; with one action the policy term of the shared
  actor-critic loss is zero.
"""

from __future__ import annotations

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp

from lpg.errors import InvalidConfigError
from lpg.types import AgentOutput, Rollout, assert_rollout_shapes
from lpg.validation import NON_NEGATIVE, OPEN_UNIT, POSITIVE_INT
from objectives import register
from objectives.a2c import a2c_loss
from objectives.base import ACTOR_CRITIC_RANGES, Eta, Hyper, Metrics, Objective, ObjectiveConfig, Supports
from objectives.losses import actor_critic_loss

__all__ = ["MGRL", "MGRLConfig", "PerStateGamma", "PerStateGammaConfig", "logit", "per_state_gamma_targets"]


def logit(p: float) -> float:
    """Inverse of the sigmoid, for initialising sigmoid-parameterised meta-parameters."""
    if not 0.0 < p < 1.0:
        raise InvalidConfigError(f"a sigmoid-parameterised meta-parameter must start in (0, 1), got {p}")
    return math.log(p) - math.log1p(-p)


@dataclasses.dataclass(frozen=True)
class MGRLConfig(ObjectiveConfig):
    """A2C with meta-learned gamma and lambda.

    Attributes:
      gamma: initial discount (eta starts at logit(gamma)).
      td_lambda: initial lambda of the TD(lambda) targets.
      value_weight: fixed weight of the value loss.
      entropy_weight: fixed weight of the entropy bonus.
      reward_clip: 0 = off; otherwise rewards are clipped to [-reward_clip, reward_clip].

    gamma and td_lambda lie in (0, 1) (eta starts at their logits); the weights
    and reward_clip are >= 0.
    """

    OBJECTIVE = "mgrl"
    RANGES = {**ACTOR_CRITIC_RANGES, "gamma": OPEN_UNIT, "td_lambda": OPEN_UNIT}

    gamma: float = 0.99
    td_lambda: float = 0.95
    value_weight: float = 0.5
    entropy_weight: float = 0.01
    reward_clip: float = 0.0


@register
class MGRL(Objective):
    """A2C whose gamma and lambda are sigmoid-parameterised meta-parameters (Xu et al. 2018)."""

    name = "mgrl"
    description = "Meta-gradient RL: A2C with gamma and lambda learned online by meta-gradients (Xu et al. 2018)."
    Config = MGRLConfig
    supports = Supports(online=True, offline=True)
    learned = True

    def init(self, key: chex.PRNGKey) -> Eta:
        del key
        return {
            "gamma_logit": jnp.asarray(logit(self.config.gamma), jnp.float32),
            "lambda_logit": jnp.asarray(logit(self.config.td_lambda), jnp.float32),
        }

    def hyper_parameters(self, eta: Eta) -> dict[str, chex.Array]:
        return {"gamma": jax.nn.sigmoid(eta["gamma_logit"]), "td_lambda": jax.nn.sigmoid(eta["lambda_logit"])}

    def agent_loss(
        self, eta: Eta, rollout: Rollout, agent_out: AgentOutput, hyper: Hyper | None = None
    ) -> tuple[chex.Array, Metrics]:
        del hyper
        c = self.config
        h = self.hyper_parameters(eta)
        return a2c_loss(rollout, agent_out, h["gamma"], h["td_lambda"], c.value_weight, c.entropy_weight, c.reward_clip)

    def describe_eta(self, eta: Eta) -> Metrics:
        return self.hyper_parameters(eta)


@dataclasses.dataclass(frozen=True)
class PerStateGammaConfig(ObjectiveConfig):
    """Per-state discounts for value prediction on a tabular reward process.

    Attributes:
      num_states: number of states (observations are int32 indices below it).
      gamma_init: initial discount of every state (Bonnet et al.: 0.5).
      value_weight: weight of the value loss 0.5 * (g_eta - v)^2.
      entropy_weight: weight of the entropy bonus (0 for a reward process).

    num_states is an integer >= 1, gamma_init lies in (0, 1) and the weights are >= 0.
    """

    OBJECTIVE = "mgrl_per_state_gamma"
    RANGES = {
        "num_states": POSITIVE_INT,
        "gamma_init": OPEN_UNIT,
        "value_weight": NON_NEGATIVE,
        "entropy_weight": NON_NEGATIVE,
    }

    num_states: int = 10
    gamma_init: float = 0.5
    value_weight: float = 1.0
    entropy_weight: float = 0.0


def per_state_gamma_targets(
    gammas: chex.Array, obs_tm1: chex.Array, r_t: chex.Array, discount_t: chex.Array
) -> chex.Array:
    """Bonnet et al. App. C.1 targets ``g(s_t) = sum_{u>=t} gamma_{s_u}^(u-t+1) r_u`` within an episode.

    Args:
      gammas: [num_states] per-state discounts (differentiable).
      obs_tm1: int [T, B] states s_t the transitions leave.
      r_t: [T, B] rewards of those transitions.
      discount_t: [T, B] environment discounts (0 where the transition ends an episode).

    Returns:
      [T, B] targets; the sum is cut at episode ends and at the rollout end.
    """
    chex.assert_rank([obs_tm1, r_t, discount_t], 2)
    num_steps = r_t.shape[0]
    gamma_u = gammas[obs_tm1]  # [T, B], discount of the state whose reward it is
    ends = 1.0 - discount_t  # transition u ends an episode
    ends_before = jnp.cumsum(ends, axis=0) - ends  # [T, B]: episode ends among transitions < u
    t_idx = jnp.arange(num_steps)[:, None]
    u_idx = jnp.arange(num_steps)[None, :]
    ahead = u_idx >= t_idx  # [T(t), T(u)]
    power = jnp.where(ahead, u_idx - t_idx + 1, 1).astype(gamma_u.dtype)  # [T, T]
    same_episode = ends_before[None, :, :] == ends_before[:, None, :]  # [t, u, B]
    mask = ahead[:, :, None] & same_episode
    terms = jnp.power(gamma_u[None, :, :], power[:, :, None]) * r_t[None, :, :]
    return jnp.sum(jnp.where(mask, terms, 0.0), axis=1)


@register
class PerStateGamma(Objective):
    """Value prediction with one meta-learned discount per state (Bonnet et al. 2022, App. C.1).

    It supports no discovery command: its outer loss is a value regression
    (Bonnet et al. eq. 2), not the policy-gradient outer loss of ``lpg discover
    online``; ``lpg experiment mrp-gamma`` runs it.
    """

    name = "mgrl_per_state_gamma"
    description = (
        "Per-state discounts gamma_i = sigmoid(eta_i) of a value-prediction target "
        "(MRP of Xu et al. 2018; Bonnet et al. 2022); run by `lpg experiment mrp-gamma`."
    )
    Config = PerStateGammaConfig
    learned = True

    def check_env(self, spec) -> None:
        """Needs tabular observations (state indices) below ``num_states``."""
        if not spec.is_tabular or spec.num_observations != self.config.num_states:
            raise InvalidConfigError(
                f"objective {self.name}: needs a tabular environment with num_states = {self.config.num_states} "
                f"states; {spec.name} has {spec.num_observations or 'non-tabular'} observations"
            )

    def init(self, key: chex.PRNGKey) -> Eta:
        del key
        return {"gamma_logits": jnp.full((self.config.num_states,), logit(self.config.gamma_init), jnp.float32)}

    def targets(self, eta: Eta, rollout: Rollout, agent_out: AgentOutput | None = None) -> chex.Array:
        """``g_eta(s_t)`` [T, B] (no agent output enters it)."""
        del agent_out
        gammas = jax.nn.sigmoid(eta["gamma_logits"])
        return per_state_gamma_targets(gammas, rollout.observation[:-1], rollout.reward[1:], rollout.discount[1:])

    def agent_loss(
        self, eta: Eta, rollout: Rollout, agent_out: AgentOutput, hyper: Hyper | None = None
    ) -> tuple[chex.Array, Metrics]:
        del hyper
        assert_rollout_shapes(rollout)
        chex.assert_shape(agent_out.value, rollout.reward.shape)
        targets = self.targets(eta, rollout)
        value = agent_out.value
        advantages = targets - jax.lax.stop_gradient(value[:-1])
        c = self.config
        return actor_critic_loss(
            agent_out.logits[:-1],
            value[:-1],
            rollout.action[:-1],
            targets,
            advantages,
            c.value_weight,
            c.entropy_weight,
        )

    def describe_eta(self, eta: Eta) -> Metrics:
        gammas = jax.nn.sigmoid(eta["gamma_logits"])
        return {f"gamma_{i}": gammas[i] for i in range(self.config.num_states)}

