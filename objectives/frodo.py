"""FRODO: a target network discovered online (Xu et al. 2020, "Meta-Gradient
Reinforcement Learning with an Objective Discovered Online").

The meta-parameters ``eta`` are the weights of a target network ``g_eta``: a
GRU run *backwards* in time over the rollout (a reverse ``lax.scan``), so the
target ``G_t`` depends only on steps ``t..T`` (like any return). Per-step
inputs at transition ``t`` (``lpg.types`` layout, rlax naming):

* ``r_t`` (``reward[t+1]``): the reward the return is made of;
* ``discount_t`` (``discount[t+1]``): where episodes end; the recurrent state
  is also multiplied by it, so nothing flows back across an episode boundary;
* ``v(s_t)`` and ``v(s_t+1)``, stop-gradiented: the agent's own estimates, to
  bootstrap from and to compare against (stop-gradiented so the agent only
  *follows* the targets, never moves them);
* the lambda-return ``G^lambda_t`` (from the same stop-gradiented values): a
  well-formed target the network can copy or correct.

Output: ``G_t = G^lambda_t + head(h_t)`` with the output layer zero-initialised,
so at the start ``G`` *is* the TD(lambda) return (A2C's target) and learning
is not crippled while ``eta`` is still random; the residual bootstraps exactly
like the lambda-return does (from ``v(s_T)`` at the rollout end).

The agent learns from ``G`` exactly as A2C learns from lambda-returns: policy
gradient with ``G - v``, value regression to ``G``, entropy bonus. The
meta-objective adds the consistency regulariser (Xu et al. 2020, eq. 7)
``c * mean((G_t - (r_t + gamma * discount_t * G_t+1))^2)``.
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
from objectives.losses import actor_critic_loss, lambda_returns

__all__ = ["Frodo", "FrodoConfig", "consistency_loss"]

NUM_INPUTS = 5


@dataclasses.dataclass(frozen=True)
class FrodoConfig(ObjectiveConfig):
    """FRODO's target network and agent-loss weights.

    Attributes:
      hidden_size: width of the backward GRU of the target network.
      gamma: discount of the base lambda-return and of the consistency term.
      td_lambda: lambda of the base lambda-return.
      value_weight: weight of the value loss (regression to G).
      entropy_weight: weight of the entropy bonus.
      consistency_weight: c of the consistency regulariser (0 disables it).
      reward_clip: 0 = off; otherwise rewards are clipped to [-reward_clip, reward_clip].

    hidden_size is an integer >= 1; gamma and td_lambda lie in [0, 1]; the
    weights and reward_clip are >= 0.
    """

    OBJECTIVE = "frodo"
    RANGES = {**ACTOR_CRITIC_RANGES, "hidden_size": POSITIVE_INT, "consistency_weight": NON_NEGATIVE}

    hidden_size: int = 32
    gamma: float = 0.99
    td_lambda: float = 0.95
    value_weight: float = 0.5
    entropy_weight: float = 0.01
    consistency_weight: float = 0.1
    reward_clip: float = 0.0


def consistency_loss(targets: chex.Array, r_t: chex.Array, discount_t: chex.Array) -> chex.Array:
    """``mean((G_t - (r_t + discount_t * G_t+1))^2)`` over t = 0..T-2 (Xu et al. 2020).

    Args:
      targets: [T, B] targets G_t.
      r_t: [T, B] rewards.
      discount_t: [T, B] discounts (gamma times the environment discount).
    """
    chex.assert_rank([targets, r_t, discount_t], 2)
    residual = targets[:-1] - (r_t[:-1] + discount_t[:-1] * targets[1:])
    return jnp.mean(jnp.square(residual))


class _Head(nn.Module):
    @nn.compact
    def __call__(self, h):
        return nn.Dense(1, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros)(h)[..., 0]


@register
class Frodo(Objective):
    """FRODO: targets from a backward-recurrent network learned online (Xu et al. 2020)."""

    name = "frodo"
    description = (
        "FRODO: targets G_t from a backward GRU target network learned online, "
        "consistency-regularised (Xu et al. 2020)."
    )
    Config = FrodoConfig
    supports = Supports(online=True, offline=True)
    learned = True

    def __init__(self, config: FrodoConfig | None = None):
        super().__init__(config)
        self._cell = nn.GRUCell(features=self.config.hidden_size)
        self._head = _Head()

    def init(self, key: chex.PRNGKey) -> Eta:
        cell_key, head_key = jax.random.split(key)
        h = jnp.zeros((1, self.config.hidden_size), jnp.float32)
        x = jnp.zeros((1, NUM_INPUTS), jnp.float32)
        return {"cell": self._cell.init(cell_key, h, x), "head": self._head.init(head_key, h)}

    def returns(self, eta: Eta, rollout: Rollout, value: chex.Array) -> tuple[chex.Array, chex.Array]:
        """(G [T, B], base lambda-return [T, B]) for a rollout; ``value`` [T+1, B] is stop-gradiented here."""
        c = self.config
        value = jax.lax.stop_gradient(value)
        r_t = clip_rewards(rollout.reward[1:], c.reward_clip)
        env_discount = rollout.discount[1:]
        base = lambda_returns(r_t, c.gamma * env_discount, value[1:], c.td_lambda)
        inputs = jnp.stack([r_t, env_discount, value[:-1], value[1:], base], axis=-1)  # [T, B, 5]
        dtype = jax.tree.leaves(eta)[0].dtype
        inputs = inputs.astype(dtype)
        h0 = jnp.zeros(r_t.shape[1:] + (c.hidden_size,), dtype)

        def body(h, xs):
            x, d = xs
            h, _ = self._cell.apply(eta["cell"], h * d[:, None], x)
            return h, h

        _, hs = jax.lax.scan(body, h0, (inputs, env_discount.astype(dtype)), reverse=True)
        return base + self._head.apply(eta["head"], hs), base

    def targets(self, eta: Eta, rollout: Rollout, agent_out: AgentOutput) -> chex.Array:
        """The targets G [T, B] the agent follows (no gradient to ``agent_out``)."""
        return self.returns(eta, rollout, agent_out.value)[0]

    def agent_loss(
        self, eta: Eta, rollout: Rollout, agent_out: AgentOutput, hyper: Hyper | None = None
    ) -> tuple[chex.Array, Metrics]:
        del hyper
        assert_rollout_shapes(rollout)
        chex.assert_shape(agent_out.value, rollout.reward.shape)
        c = self.config
        targets, base = self.returns(eta, rollout, agent_out.value)
        advantages = targets - jax.lax.stop_gradient(agent_out.value[:-1])
        loss, metrics = actor_critic_loss(
            agent_out.logits[:-1],
            agent_out.value[:-1],
            rollout.action[:-1],
            targets,
            advantages,
            c.value_weight,
            c.entropy_weight,
        )
        return loss, dict(metrics, mean_abs_residual=jnp.mean(jnp.abs(targets - base)))

    def meta_regulariser(self, eta: Eta, rollout: Rollout, agent_out: AgentOutput) -> tuple[chex.Array, Metrics]:
        c = self.config
        if not c.consistency_weight:
            return jnp.zeros((), jnp.float32), {}
        targets, _ = self.returns(eta, rollout, agent_out.value)
        r_t = clip_rewards(rollout.reward[1:], c.reward_clip)
        cons = consistency_loss(targets, r_t, c.gamma * rollout.discount[1:])
        return c.consistency_weight * cons, {"consistency": cons}

    def describe_eta(self, eta: Eta) -> Metrics:
        head = eta["head"]["params"]["Dense_0"]
        return {"head_norm": jnp.sqrt(jnp.sum(jnp.square(head["kernel"])) + jnp.square(head["bias"]).sum())}

