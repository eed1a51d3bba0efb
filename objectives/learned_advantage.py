"""A learned advantage: A2C whose policy-gradient advantage is corrected by a meta-learned MLP.

The meta-parameters ``eta`` are the weights of a per-step MLP ``g_eta``. Its
inputs at transition ``t`` (``lpg.types`` layout; rlax names ``r_t =
reward[1:]``, ``d_t = discount[1:]``, ``v_tm1 = value[:-1]``, ``v_t =
value[1:]``) are

    x_t = [r_t, d_t, v(s_t), v(s_t+1), log pi(a_t|s_t)],

the values and log-probability stop-gradiented, so the agent only *follows*
the advantage and never moves it (d_t is 0 where the episode terminated).
With the TD(lambda) return of A2C,

    G_t    = r_t + gamma d_t ((1 - lambda) v(s_t+1) + lambda G_t+1),   G_T = v(s_T),
    A_eta  = (G_t - v(s_t)) + g_eta(x_t),

and ``g_eta``'s output layer zero-initialised (as FRODO's residual head), so
at ``init`` ``A_eta`` *is* A2C's advantage and the agent loss equals A2C's.
The agent minimises

    L = -mean(A_eta log pi(a_t|s_t)) + value_weight 0.5 mean((G_t - v(s_t))^2) - entropy_weight mean(H(pi(.|s_t))):

the value still regresses to the lambda-return; only the policy follows
``eta``. The meta-objective adds ``residual_weight * mean(g_eta(x_t)^2)``,
a pull towards A2C's advantage (like LPG's ``beta2`` penalty on ``pi_hat``).

A meta-learned function in place of a hand-designed RL target is the idea of
FRODO (Xu et al. 2020, "Meta-Gradient Reinforcement Learning with an Objective
Discovered Online"; here for the advantage, not the return) and of LPG's
``pi_hat`` (Oh et al. 2020, "Discovering Reinforcement Learning Algorithms";
here per step, without recurrence, and anchored at A2C). ``eta`` is learned
online (``lpg discover online``) or offline (``lpg discover offline``).
"""

from __future__ import annotations

import dataclasses

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from lpg.types import AgentOutput, Rollout, assert_rollout_shapes
from lpg.validation import NON_NEGATIVE, POSITIVE_INT
from objectives import register
from objectives.a2c import clip_rewards
from objectives.base import ACTOR_CRITIC_RANGES, Eta, Hyper, Metrics, Objective, ObjectiveConfig, Supports
from objectives.losses import actor_critic_loss, lambda_returns, log_prob

__all__ = ["LearnedAdvantage", "LearnedAdvantageConfig"]

NUM_INPUTS = 5


@dataclasses.dataclass(frozen=True)
class LearnedAdvantageConfig(ObjectiveConfig):
    """The advantage network and the agent-loss weights.

    Attributes:
      hidden_size: width of the two hidden layers of ``g_eta``.
      gamma: discount of the base lambda-return.
      td_lambda: lambda of the base lambda-return.
      value_weight: weight of the value loss (regression to the lambda-return).
      entropy_weight: weight of the entropy bonus.
      residual_weight: weight of the meta-regulariser mean(g_eta^2) (0 disables it).
      reward_clip: 0 = off; otherwise rewards are clipped to [-reward_clip, reward_clip].

    hidden_size is an integer >= 1; gamma and td_lambda lie in [0, 1]; the
    weights and reward_clip are >= 0.
    """

    OBJECTIVE = "learned_advantage"
    RANGES = {**ACTOR_CRITIC_RANGES, "hidden_size": POSITIVE_INT, "residual_weight": NON_NEGATIVE}

    hidden_size: int = 32
    gamma: float = 0.99
    td_lambda: float = 0.95
    value_weight: float = 0.5
    entropy_weight: float = 0.01
    residual_weight: float = 0.01
    reward_clip: float = 0.0


class _AdvantageNet(nn.Module):
    hidden_size: int

    @nn.compact
    def __call__(self, x):
        for _ in range(2):
            x = jnp.tanh(nn.Dense(self.hidden_size)(x))
        return nn.Dense(1, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros, name="out")(x)[..., 0]


@register
class LearnedAdvantage(Objective):
    """A2C with a meta-learned residual on its policy-gradient advantage."""

    name = "learned_advantage"
    description = (
        "Learned advantage: A2C's lambda-return advantage plus a meta-learned per-step MLP residual, "
        "zero at init (FRODO/LPG-style learned target; Xu et al. 2020, Oh et al. 2020)."
    )
    Config = LearnedAdvantageConfig
    supports = Supports(online=True, offline=True)
    learned = True

    def __init__(self, config: LearnedAdvantageConfig | None = None):
        super().__init__(config)
        self._net = _AdvantageNet(self.config.hidden_size)

    def init(self, key: chex.PRNGKey) -> Eta:
        return self._net.init(key, jnp.zeros((1, NUM_INPUTS), jnp.float32))

    def advantages(self, eta: Eta, rollout: Rollout, agent_out: AgentOutput) -> tuple[chex.Array, ...]:
        """(learned advantage, lambda-return, residual g_eta), each [T, B]; none carries gradient to ``agent_out``."""
        c = self.config
        value = jax.lax.stop_gradient(agent_out.value)
        log_pi = jax.lax.stop_gradient(log_prob(agent_out.logits[:-1], rollout.action[:-1]))
        r_t = clip_rewards(rollout.reward[1:], c.reward_clip)
        d_t = rollout.discount[1:]
        base = lambda_returns(r_t, c.gamma * d_t, value[1:], c.td_lambda)
        dtype = jax.tree.leaves(eta)[0].dtype
        inputs = jnp.stack([r_t, d_t, value[:-1], value[1:], log_pi], axis=-1).astype(dtype)  # [T, B, 5]
        residual = self._net.apply(eta, inputs)
        return base - value[:-1] + residual, base, residual

    def targets(self, eta: Eta, rollout: Rollout, agent_out: AgentOutput) -> chex.Array:
        """The learned advantage A_eta [T, B] the policy follows (no gradient to ``agent_out``)."""
        return self.advantages(eta, rollout, agent_out)[0]

    def agent_loss(
        self, eta: Eta, rollout: Rollout, agent_out: AgentOutput, hyper: Hyper | None = None
    ) -> tuple[chex.Array, Metrics]:
        del hyper
        assert_rollout_shapes(rollout)
        chex.assert_shape(agent_out.value, rollout.reward.shape)
        chex.assert_shape(agent_out.logits, rollout.behaviour_logits.shape)
        c = self.config
        advantages, base, residual = self.advantages(eta, rollout, agent_out)
        loss, metrics = actor_critic_loss(
            agent_out.logits[:-1],
            agent_out.value[:-1],
            rollout.action[:-1],
            base,
            advantages,
            c.value_weight,
            c.entropy_weight,
        )
        return loss, dict(metrics, mean_abs_residual=jnp.mean(jnp.abs(residual)))

    def meta_regulariser(self, eta: Eta, rollout: Rollout, agent_out: AgentOutput) -> tuple[chex.Array, Metrics]:
        if not self.config.residual_weight:
            return jnp.zeros((), jnp.float32), {}
        residual_l2 = jnp.mean(jnp.square(self.advantages(eta, rollout, agent_out)[2]))
        return self.config.residual_weight * residual_l2, {"residual_l2": residual_l2}

    def describe_eta(self, eta: Eta) -> Metrics:
        out = eta["params"]["out"]
        return {
            "out_norm": jnp.sqrt(jnp.sum(jnp.square(out["kernel"])) + jnp.sum(jnp.square(out["bias"]))),
            "param_norm": jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(eta))),
        }
