"""A learned return function (Wang, Ye and Liu 2019, "Beyond Exponentially Discounted Sum: Automatic Learning
of Return Function", arXiv:1905.11591).

Wang et al. observe that the exponentially discounted sum is only one of many
return functions from which the same optimal policy follows, and that others
can make it much faster to learn (e.g. a long-delayed reward at a maze exit,
which exponential discounting fades along the path). They replace it by a
general weighted sum of the future rewards whose weights a meta-learner
produces, and learn the meta-learner end to end by meta-gradients through the
agent's update, so that the updated agent does better on the true return.

This file keeps the idea in its simplest well-defined form: the weights
depend on the lag only (no state-dependent weights, which the paper's
meta-network can produce), and the bootstrap from the agent's values stays
that of TD(lambda). In ``lpg.types`` layout (rlax names ``r_t = reward[1:]``,
``d_t = discount[1:]``, 0 where the episode ended; transitions ``t = 0..T-1``):

    D_t,k      = prod_{j=0}^{k-1} d_{t+j}                  (D_t,0 = 1; 0 once the episode of t has ended)
    R^eta_t    = sum_{k=0}^{T-1-t} w_k D_t,k r_{t+k}        (the learned weighting of the rollout's rewards)
    B^lambda_t = the TD(lambda) return of zero rewards:
                 B_t = gamma d_t ((1 - lambda) v(s_t+1) + lambda B_t+1),   B_T = v(s_T)   (values stop-gradiented)
    G^eta_t    = R^eta_t + B^lambda_t

with ``eta = {"lag_weights": (w_0, ..., w_{K-1})}``, ``K = max_lag``; a lag
``k >= K`` (rollouts longer than K) continues geometrically,
``w_k = w_{K-1} (gamma lambda)^(k-K+1)``. ``eta`` starts at ``w_k = (gamma
lambda)^k``. The TD(lambda) return is linear in rewards and values,

    G^lambda_t = sum_k (gamma lambda)^k D_t,k r_{t+k} + B^lambda_t,

so at ``init`` ``G^eta`` *is* A2C's lambda-return and the agent loss is
A2C's. ``D`` cuts the sum at episode ends (the rewards of the next episode
never count), and the rollout end cuts it too (the bootstrap takes over).
The agent learns from ``G^eta`` as A2C from ``G^lambda``:

    L = -mean((G^eta_t - v(s_t)) log pi(a_t|s_t)) + value_weight 0.5 mean((G^eta_t - v(s_t))^2)
        - entropy_weight mean(H(pi(.|s_t))),

and ``eta`` is meta-learned online (``lpg discover online``: the outer loss is
the policy gradient with the extrinsic lambda-return advantages) or offline
(``lpg discover offline``).
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp

from lpg.types import AgentOutput, Rollout, assert_rollout_shapes
from lpg.validation import POSITIVE_INT
from objectives import register
from objectives.a2c import clip_rewards
from objectives.base import ACTOR_CRITIC_RANGES, Eta, Hyper, Metrics, Objective, ObjectiveConfig, Supports
from objectives.losses import actor_critic_loss, lambda_returns

__all__ = ["LearnedReturn", "LearnedReturnConfig", "weighted_reward_sum"]


@dataclasses.dataclass(frozen=True)
class LearnedReturnConfig(ObjectiveConfig):
    """The learned reward weights and the agent-loss weights.

    Attributes:
      max_lag: K, the number of learned per-lag weights w_0..w_{K-1} (longer lags decay geometrically from w_{K-1}).
      gamma: discount of the initial weights and of the bootstrap.
      td_lambda: lambda of the initial weights and of the bootstrap.
      value_weight: weight of the value loss (regression to G^eta).
      entropy_weight: weight of the entropy bonus.
      reward_clip: 0 = off; otherwise rewards are clipped to [-reward_clip, reward_clip].

    max_lag is an integer >= 1; gamma and td_lambda lie in [0, 1]; the weights
    and reward_clip are >= 0.
    """

    OBJECTIVE = "learned_return"
    RANGES = {**ACTOR_CRITIC_RANGES, "max_lag": POSITIVE_INT}

    max_lag: int = 20
    gamma: float = 0.99
    td_lambda: float = 0.95
    value_weight: float = 0.5
    entropy_weight: float = 0.01
    reward_clip: float = 0.0


def weighted_reward_sum(weights: chex.Array, r_t: chex.Array, env_discount_t: chex.Array) -> chex.Array:
    """``R_t = sum_{k=0}^{T-1-t} weights[k] D_t,k r_{t+k}`` with ``D_t,k = prod_{j<k} d_{t+j}``.

    Args:
      weights: [T] per-lag weights.
      r_t: [T, B] rewards.
      env_discount_t: [T, B] environment discounts (0 where an episode ended; no gamma).

    Returns:
      [T, B], differentiable in ``weights`` and ``r_t``; computed by a ``lax.scan`` over the lags, O(T^2 B).
    """
    chex.assert_rank([r_t, env_discount_t], 2)
    chex.assert_equal_shape([r_t, env_discount_t])
    t = r_t.shape[0]
    chex.assert_shape(weights, (t,))
    dtype = jnp.result_type(weights, r_t, env_discount_t)
    r_pad = jnp.concatenate([r_t, jnp.zeros_like(r_t)]).astype(dtype)  # lags past the rollout end add nothing
    d_pad = jnp.concatenate([env_discount_t, jnp.zeros_like(env_discount_t)]).astype(dtype)

    def body(carry, k):
        alive, total = carry  # alive[t] = D_t,k
        total = total + weights[k] * alive * jax.lax.dynamic_slice_in_dim(r_pad, k, t)
        return (alive * jax.lax.dynamic_slice_in_dim(d_pad, k, t), total), None

    start = (jnp.ones(r_t.shape, dtype), jnp.zeros(r_t.shape, dtype))
    (_, total), _ = jax.lax.scan(body, start, jnp.arange(t))
    return total


@register
class LearnedReturn(Objective):
    """A2C whose return weighs the rollout's rewards by meta-learned per-lag weights (Wang et al. 2019)."""

    name = "learned_return"
    description = (
        "Learned return: G_t = sum_k w_k r_t+k (cut at episode ends) + TD(lambda) bootstrap, per-lag weights w "
        "meta-learned, A2C's lambda-return at init (Wang, Ye, Liu 2019)."
    )
    Config = LearnedReturnConfig
    supports = Supports(online=True, offline=True)
    learned = True

    def init(self, key: chex.PRNGKey) -> Eta:
        del key
        c = self.config
        decay = c.gamma * c.td_lambda
        return {"lag_weights": jnp.asarray([decay**k for k in range(c.max_lag)], jnp.float32)}

    def lag_weights(self, eta: Eta, num_steps: int) -> chex.Array:
        """w_0..w_{num_steps-1}: eta's K weights, continued geometrically past lag K-1."""
        w = eta["lag_weights"]
        k = w.shape[0]
        if num_steps <= k:
            return w[:num_steps]
        decay = self.config.gamma * self.config.td_lambda
        tail = w[k - 1] * decay ** jnp.arange(1, num_steps - k + 1, dtype=w.dtype)
        return jnp.concatenate([w, tail])

    def returns(self, eta: Eta, rollout: Rollout, value: chex.Array) -> tuple[chex.Array, chex.Array]:
        """(G^eta [T, B], A2C's lambda-return G^lambda [T, B]); ``value`` [T+1, B] is stop-gradiented here."""
        c = self.config
        value = jax.lax.stop_gradient(value)
        r_t = clip_rewards(rollout.reward[1:], c.reward_clip)
        env_discount = rollout.discount[1:]
        discount_t = c.gamma * env_discount
        bootstrap = lambda_returns(jnp.zeros_like(r_t), discount_t, value[1:], c.td_lambda)
        weights = self.lag_weights(eta, r_t.shape[0])
        learned = weighted_reward_sum(weights, r_t, env_discount) + bootstrap
        return learned, lambda_returns(r_t, discount_t, value[1:], c.td_lambda)

    def targets(self, eta: Eta, rollout: Rollout, agent_out: AgentOutput) -> chex.Array:
        """The return G^eta [T, B] the critic regresses to and the actor's advantage is built on (no gradient to ``agent_out``)."""
        return self.returns(eta, rollout, agent_out.value)[0]

    def agent_loss(
        self, eta: Eta, rollout: Rollout, agent_out: AgentOutput, hyper: Hyper | None = None
    ) -> tuple[chex.Array, Metrics]:
        del hyper
        assert_rollout_shapes(rollout)
        chex.assert_shape(agent_out.value, rollout.reward.shape)
        chex.assert_shape(agent_out.logits, rollout.behaviour_logits.shape)
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
        return loss, dict(metrics, mean_abs_return_change=jnp.mean(jnp.abs(targets - base)))

    def describe_eta(self, eta: Eta) -> Metrics:
        w = eta["lag_weights"]
        width = len(str(w.shape[0] - 1))  # w_00..w_19: names that sort by lag
        return {f"w_{k:0{width}d}": w[k] for k in range(w.shape[0])}
