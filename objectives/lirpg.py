"""LIRPG: learned intrinsic rewards for policy-gradient agents (Zheng, Oh and Singh 2018, "On Learning
Intrinsic Rewards for Policy Gradient Methods", NeurIPS).

The meta-parameters ``eta`` are the weights of an intrinsic reward network
``r_in(s, a)``. The agent is an actor-critic trained on the *mixed* reward

    r^mix_t = r^ex_t + lambda_in * r_in(s_t, a_t),

and ``eta`` is meta-learned so that the agent, after its update on the mixed
reward, does better on the *extrinsic* return (the paper's optimal-reward
view: the intrinsic reward is a means to better extrinsic performance, never
an end). In ``lpg.types`` layout (rlax names ``r_t = reward[1:]``, ``d_t =
discount[1:]``, ``s_t = observation[:-1]``, ``a_t = action[:-1]``):

Intrinsic reward (bounded by tanh, as in the paper):

    phi(s)        = fixed random features of s (below), [F];
    x_t           = [phi(s_t), onehot(a_t, max_actions)];
    r_in(s_t,a_t) = tanh(u . tanh(W x_t + b) + c),      eta = {W, b, u, c}.

The output layer (u, c) starts at zero, so ``r_in = 0`` at ``init`` and the agent starts
as a plain actor-critic on the extrinsic reward; the paper initialises it
randomly. ``phi`` is not learned: an index observation (tabular
environments) gets ``phi(s) = N(0, I_F)`` drawn from ``fold_in(key, s)``; any
other observation is flattened to ``x`` and projected, ``phi(s) = P^T x /
max(||x||, 1e-6)`` with ``P ~ N(0, 1)^{dim(x) x F}`` drawn from a fixed key
for that ``dim(x)``. So ``eta``'s shapes do not depend on the environment (an
objective checkpoint has one shape, and offline discovery trains one ``eta``
across environments), which the paper, with one network per domain, does
not need. Environments with more than ``max_actions`` actions are refused.

Two critics, as in the paper: the agent's own value head ``v`` estimates the
*extrinsic* return, and an extra head ``v_mix`` (declared through
``heads``: ``AgentOutput.extra["mix_value"]``, ``[..., 1]``) the mixed one.
With TD(lambda) returns (``objectives.losses.lambda_returns``; values
stop-gradiented),

    G^mix_t = r^mix_t + gamma d_t ((1 - lambda) v_mix(s_t+1) + lambda G^mix_t+1),   G^mix_T = v_mix(s_T),
    G^ex_t  = r^ex_t  + gamma d_t ((1 - lambda) v(s_t+1)     + lambda G^ex_t+1),    G^ex_T  = v(s_T),

the agent minimises (the paper's A2C variant)

    L(theta; eta) = -mean((G^mix_t - v_mix(s_t)) log pi(a_t|s_t))
                    + value_weight 0.5 mean((G^mix_t - v_mix(s_t))^2)
                    + value_weight 0.5 mean((G^ex_t - v(s_t))^2)
                    - entropy_weight mean(H(pi(.|s_t))).

The policy follows the mixed advantage only; the extrinsic critic is trained
alongside (its term does not depend on ``eta``) because the outer loss needs
it.

The outer (meta) loss is the framework's, untouched by ``r_in``: online
discovery (``training/meta_gradient.py``) evaluates its outer objective, the
policy gradient with extrinsic lambda-return advantages (Bonnet et al. 2022
eq. 4, built on ``agent_out.value``: here the extrinsic critic), on a fresh
rollout of the updated agent, i.e. the paper's

    eta <- eta + beta grad_eta J^ex(theta'),   theta' = theta - alpha grad_theta L(theta; eta);

offline discovery uses its own meta-critic on extrinsic rewards. This
objective adds no ``meta_regulariser``, so nothing intrinsic enters the outer
loss. (The paper reuses the inner batch with importance weights for
``J^ex(theta')``; here the fresh rollout of the updated agent is used.)
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp

from lpg.errors import InvalidConfigError
from lpg.types import AgentHeads, AgentOutput, Head, Rollout, assert_rollout_shapes
from lpg.validation import NON_NEGATIVE, POSITIVE_INT
from objectives import register
from objectives.a2c import clip_rewards
from objectives.base import ACTOR_CRITIC_RANGES, Eta, Hyper, Metrics, Objective, ObjectiveConfig, Supports
from objectives.losses import actor_critic_loss, fixed_random_features, lambda_returns

__all__ = ["LIRPG", "MIX_VALUE", "LIRPGConfig", "observation_features"]

MIX_VALUE = "mix_value"  # the extra head of the mixed-reward critic
FEATURE_SEED = 1804_06459  # the fixed key of phi (the paper's arXiv number)


@dataclasses.dataclass(frozen=True)
class LIRPGConfig(ObjectiveConfig):
    """The intrinsic reward network and the agent-loss weights.

    Attributes:
      hidden_size: width of r_in's hidden layer.
      feature_size: F, the number of fixed random observation features phi(s).
      max_actions: the one-hot action width of r_in's input; environments with more actions are refused.
      lambda_in: weight of the intrinsic reward in the mixed reward r_ex + lambda_in * r_in
        (0 = plain actor-critic with two critics; eta then gets no meta-gradient).
      gamma: discount of both returns.
      td_lambda: lambda of both TD(lambda) returns.
      value_weight: weight of each critic's loss.
      entropy_weight: weight of the entropy bonus.
      reward_clip: 0 = off; otherwise extrinsic rewards are clipped to [-reward_clip, reward_clip].

    hidden_size, feature_size and max_actions are integers >= 1; gamma and
    td_lambda lie in [0, 1]; lambda_in, the weights and reward_clip are >= 0.
    """

    OBJECTIVE = "lirpg"
    RANGES = {
        **ACTOR_CRITIC_RANGES,
        "hidden_size": POSITIVE_INT,
        "feature_size": POSITIVE_INT,
        "max_actions": POSITIVE_INT,
        "lambda_in": NON_NEGATIVE,
    }

    hidden_size: int = 32
    feature_size: int = 32
    max_actions: int = 18
    lambda_in: float = 0.1
    gamma: float = 0.99
    td_lambda: float = 0.95
    value_weight: float = 0.5
    entropy_weight: float = 0.01
    reward_clip: float = 0.0


def observation_features(observation: chex.Array, lead_ndim: int, feature_size: int, dtype) -> chex.Array:
    """phi(s): fixed random features ``[*lead, F]`` of observations ``[*lead, *obs_shape]`` (see the module docstring).

    An integer observation with no dimensions of its own is an index: ``N(0, I_F)`` from ``fold_in(key, s)``.
    Otherwise ``P^T x / max(||x||, 1e-6)`` of the flattened observation ``x``, ``P ~ N(0, 1)^{dim(x) x F}``
    (``objectives.losses.fixed_random_features`` with ``normalise="l2"``).
    """
    return fixed_random_features(observation, feature_size, FEATURE_SEED, lead_ndim, normalise="l2", dtype=dtype)


@register
class LIRPG(Objective):
    """Actor-critic on extrinsic + learned intrinsic reward, the intrinsic reward meta-learned (Zheng et al. 2018)."""

    name = "lirpg"
    description = (
        "LIRPG: actor-critic on r_ex + lambda_in * r_in(s, a), the intrinsic reward network meta-learned "
        "for the extrinsic return; two critics (Zheng, Oh, Singh 2018)."
    )
    Config = LIRPGConfig
    supports = Supports(online=True, offline=True)
    learned = True

    @property
    def heads(self) -> AgentHeads:
        return AgentHeads(extra=(Head(MIX_VALUE, 1),))

    def check_env(self, spec) -> None:
        if spec.num_actions > self.config.max_actions:
            raise InvalidConfigError(
                f"objective lirpg: {spec.name} has {spec.num_actions} actions, more than max_actions="
                f"{self.config.max_actions} (the one-hot width of the intrinsic reward network's input)"
            )

    def init(self, key: chex.PRNGKey) -> Eta:
        c = self.config
        fan_in = c.feature_size + c.max_actions
        return {
            "hidden": {
                "kernel": jax.random.normal(key, (fan_in, c.hidden_size), jnp.float32) / jnp.sqrt(fan_in),
                "bias": jnp.zeros((c.hidden_size,), jnp.float32),
            },
            "out": {"kernel": jnp.zeros((c.hidden_size,), jnp.float32), "bias": jnp.zeros((), jnp.float32)},
        }

    def intrinsic_reward(self, eta: Eta, observation: chex.Array, action: chex.Array) -> chex.Array:
        """r_in(s, a) in (-1, 1), shaped like ``action`` (``observation`` is ``[*action.shape, *obs_shape]``)."""
        c = self.config
        dtype = eta["hidden"]["kernel"].dtype
        phi = observation_features(observation, action.ndim, c.feature_size, dtype)
        x = jnp.concatenate([phi, jax.nn.one_hot(action, c.max_actions, dtype=dtype)], axis=-1)
        h = jnp.tanh(x @ eta["hidden"]["kernel"] + eta["hidden"]["bias"])
        return jnp.tanh(h @ eta["out"]["kernel"] + eta["out"]["bias"])

    def _terms(self, eta: Eta, rollout: Rollout, agent_out: AgentOutput) -> dict[str, chex.Array]:
        """r_in, G^mix, the mixed advantage and G^ex, each [T, B]; none carries gradient to ``agent_out``."""
        c = self.config
        num_actions = agent_out.logits.shape[-1]
        if num_actions > c.max_actions:
            raise InvalidConfigError(
                f"objective lirpg: the agent has {num_actions} actions, more than max_actions={c.max_actions}"
            )
        v_ex = jax.lax.stop_gradient(agent_out.value)
        v_mix = jax.lax.stop_gradient(agent_out.extra[MIX_VALUE][..., 0])
        r_ex = clip_rewards(rollout.reward[1:], c.reward_clip)
        r_in = self.intrinsic_reward(eta, rollout.observation[:-1], rollout.action[:-1])
        discount_t = c.gamma * rollout.discount[1:]
        mix_return = lambda_returns(r_ex + c.lambda_in * r_in, discount_t, v_mix[1:], c.td_lambda)
        return {
            "intrinsic_reward": r_in,
            "mix_return": mix_return,
            "mix_advantage": mix_return - v_mix[:-1],
            "ex_return": lambda_returns(r_ex, discount_t, v_ex[1:], c.td_lambda),
        }

    def targets(self, eta: Eta, rollout: Rollout, agent_out: AgentOutput) -> dict[str, chex.Array]:
        """r_in, the mixed return and advantage, and the extrinsic return, each [T, B] (no gradient to ``agent_out``)."""
        return self._terms(eta, rollout, agent_out)

    def agent_loss(
        self, eta: Eta, rollout: Rollout, agent_out: AgentOutput, hyper: Hyper | None = None
    ) -> tuple[chex.Array, Metrics]:
        """The loss L(theta; eta) of the module docstring.

        Metrics: ``actor_critic_loss``'s (there ``value_loss`` and ``mean_value`` are the mixed critic's), and
        ``ex_value_loss``, ``mean_ex_value``, ``mean_intrinsic_reward``, ``mean_abs_intrinsic_reward``.
        """
        del hyper
        assert_rollout_shapes(rollout)
        chex.assert_shape(agent_out.value, rollout.reward.shape)
        chex.assert_shape(agent_out.extra[MIX_VALUE], rollout.reward.shape + (1,))
        chex.assert_shape(agent_out.logits, rollout.behaviour_logits.shape)
        c = self.config
        terms = self._terms(eta, rollout, agent_out)
        loss, metrics = actor_critic_loss(
            agent_out.logits[:-1],
            agent_out.extra[MIX_VALUE][:-1, :, 0],
            rollout.action[:-1],
            terms["mix_return"],
            terms["mix_advantage"],
            c.value_weight,
            c.entropy_weight,
        )
        ex_value_loss = 0.5 * jnp.mean(jnp.square(terms["ex_return"] - agent_out.value[:-1]))
        loss = loss + c.value_weight * ex_value_loss
        r_in = terms["intrinsic_reward"]
        return loss, dict(
            metrics,
            loss=loss,
            ex_value_loss=ex_value_loss,
            mean_ex_value=jnp.mean(agent_out.value[:-1]),
            mean_intrinsic_reward=jnp.mean(r_in),
            mean_abs_intrinsic_reward=jnp.mean(jnp.abs(r_in)),
        )

    def describe_eta(self, eta: Eta) -> Metrics:
        out = eta["out"]
        return {
            # |r_in| <= tanh(|c| + ||u||_1) for every (s, a): the hidden units lie in (-1, 1).
            "r_in_bound": jnp.tanh(jnp.abs(out["bias"]) + jnp.sum(jnp.abs(out["kernel"]))),
            "out_bias": out["bias"],
            "out_norm": jnp.sqrt(jnp.sum(jnp.square(out["kernel"])) + jnp.square(out["bias"])),
            "param_norm": jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(eta))),
        }
