"""Discovered auxiliary questions (Veeriah et al. 2019, "Discovery of Useful Questions as Auxiliary Tasks",
NeurIPS 2019).

The meta-parameters ``eta`` are the weights of a question network ``q_eta``
that asks ``Q = num_questions`` general value function (GVF) questions: per
question ``i`` a cumulant ``c^i`` and a discount ``gamma^i``. The agent answers
them with an extra head on its shared torso (``heads``: ``Head("gvf", Q)``,
``AgentOutput.extra["gvf"]`` shaped ``[..., Q]``), and learning the answers
shapes the torso the policy and value heads use; the questions are learned by
meta-gradient so that this shaping helps the main task.

Question network. In the paper it reads future observations (Fig. 1); here
the question about the transition ``s_t -> s_t+1`` is a function of the one
observation it arrives at, ``s_t+1`` (``lpg.types`` layout:
``observation[1:]``), taken from the rollout, so nothing of the agent flows
into it (the question network is stop-gradiented with respect to the agent):

    x_t = P phi(s_t+1)                                  (fixed random features, see below)
    u_t = W2 tanh(W1 x_t + b1) + b2                     ([2Q]: W1, b1, W2, b2 are eta)
    c^i_t = tanh(u^i_t),  gamma^i_t = sigmoid(u^(Q+i)_t) * d_t,

with ``d_t = discount[1:]`` (0 where the episode ended, so no question looks
across an episode boundary; at an episode end ``s_t+1`` is the next episode's
first observation, the framework's auto-reset). Cumulants are squashed to
[-1, 1] (a choice made here, not the paper's), so every answer is bounded.

``eta``'s shapes cannot depend on the environment (``init(key)`` sees no
environment spec, and objective checkpoints are checked against ``init``'s
tree), so the question network reads ``input_size`` fixed (not learned)
random features of the observation: ``phi(s)`` is the flattened observation
(divided by 255 for ``uint8`` pixels) and ``P`` a fixed Gaussian matrix with
variance ``1 / dim(phi)``, generated from a constant key at trace time; an
index observation (tabular environments) gets a fixed Gaussian vector per
index instead. For observations of at most ``input_size`` numbers (Catch:
50) the projection loses nothing; for pixels it is a crude summary.

GVF answers ``y^i(s)`` (the agent's ``gvf`` head) regress on TD(lambda)
returns of the questions (``objectives.losses.lambda_returns``, per question),
bootstrapped from the stop-gradiented answers:

    G^i_t = c^i_t + gamma^i_t ((1 - lambda_q) sg(y^i(s_t+1)) + lambda_q G^i_t+1),   G^i_T = sg(y^i(s_T)),
    L_gvf = 0.5 mean_{t, b, i} (G^i_t - y^i(s_t))^2

(``lambda_q = gvf_lambda``; 1 gives n-step returns bootstrapped at the end of
the rollout, 0 one-step TD). The agent minimises A2C's loss
(``objectives.a2c.a2c_loss``, fixed hyper-parameters) plus the auxiliary loss:

    L(theta; eta) = L_A2C(theta) + aux_weight * L_gvf(theta; eta).

Meta-gradient: ``eta`` reaches the main task only through the agent's update
on ``L`` (``eta -> (c, gamma) -> G -> grad_theta L_gvf -> theta' -> L_outer(theta')``),
i.e. through the torso parameters that the ``gvf`` head shares with the policy
and value heads; ``L_outer`` is the command's outer loss on the main task
(``lpg discover online``: the policy gradient with lambda-return advantages,
``training.meta_gradient``). With a tabular
agent (one table row per state, ``--network.torso tabular``, the default on
index observations) no parameter is shared, so the meta-gradient is exactly
zero there; ``check_env`` refuses tabular environments for offline discovery.
"""

from __future__ import annotations

import dataclasses

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from lpg.errors import InvalidConfigError
from lpg.types import AgentHeads, AgentOutput, Head, Rollout, assert_rollout_shapes
from lpg.validation import NON_NEGATIVE, POSITIVE_INT, UNIT
from objectives import register
from objectives.a2c import a2c_loss
from objectives.base import ACTOR_CRITIC_RANGES, Eta, Hyper, Metrics, Objective, ObjectiveConfig, Supports
from objectives.losses import fixed_random_features, lambda_returns

__all__ = ["GVF_HEAD", "AuxQuestions", "AuxQuestionsConfig", "gvf_loss", "observation_features"]

GVF_HEAD = "gvf"  # AgentOutput.extra key of the answers
_FEATURE_KEY = 0  # seed of the fixed random observation features


@dataclasses.dataclass(frozen=True)
class AuxQuestionsConfig(ObjectiveConfig):
    """The question network, the GVF loss and A2C's hyper-parameters.

    Attributes:
      num_questions: GVF questions Q (cumulant and discount each), answered by the agent's ``gvf`` head.
      hidden_size: width of the question network's hidden layer.
      input_size: number of fixed random observation features the question network reads.
      gvf_lambda: lambda of the answers' TD(lambda) targets (1 = n-step returns to the rollout's end).
      aux_weight: weight of the GVF loss in the agent's loss.
      gamma: A2C's discount.
      td_lambda: A2C's lambda.
      value_weight: A2C's value-loss weight.
      entropy_weight: A2C's entropy weight.
      reward_clip: 0 = off; otherwise rewards are clipped to [-reward_clip, reward_clip].

    num_questions, hidden_size and input_size are integers >= 1; gvf_lambda,
    gamma and td_lambda lie in [0, 1]; the weights and reward_clip are >= 0.
    """

    OBJECTIVE = "aux_questions"
    RANGES = {
        **ACTOR_CRITIC_RANGES,
        "num_questions": POSITIVE_INT,
        "hidden_size": POSITIVE_INT,
        "input_size": POSITIVE_INT,
        "gvf_lambda": UNIT,
        "aux_weight": NON_NEGATIVE,
    }

    num_questions: int = 8
    hidden_size: int = 32
    input_size: int = 64
    gvf_lambda: float = 1.0
    aux_weight: float = 0.5
    gamma: float = 0.99
    td_lambda: float = 0.95
    value_weight: float = 0.5
    entropy_weight: float = 0.01
    reward_clip: float = 0.0


def observation_features(observation: chex.Array, input_size: int, lead_ndim: int = 2) -> chex.Array:
    """Fixed random features ``[*lead, input_size]`` of observations ``[*lead, *obs_shape]`` (float32).

    An integer observation with no trailing axes is a state index: each index
    gets its own fixed N(0, 1) vector. Otherwise the observation is flattened
    (``uint8`` divided by 255) and multiplied by a fixed N(0, 1/dim) matrix.
    Both come from a constant key, so they are the same at every call
    (``objectives.losses.fixed_random_features``).
    """
    return fixed_random_features(observation, input_size, _FEATURE_KEY, lead_ndim, normalise="sqrt_dim")


def gvf_loss(
    answers: chex.Array, cumulants: chex.Array, discounts: chex.Array, lambda_
) -> tuple[chex.Array, chex.Array]:
    """``(0.5 mean((G - y)^2), G)`` of the answers ``y`` [T+1, B, Q] to questions ``(c, gamma)`` [T, B, Q].

    ``G`` [T, B, Q] are the TD(lambda) returns of each question bootstrapped
    from ``stop_gradient(y)`` (``lambda_returns`` with the question's cumulants
    and discounts); ``G`` carries no gradient to ``answers`` and keeps the
    gradient to the cumulants and discounts.
    """
    chex.assert_rank([answers, cumulants, discounts], 3)
    chex.assert_equal_shape([cumulants, discounts])
    t, b, q = cumulants.shape
    chex.assert_shape(answers, (t + 1, b, q))
    sg_answers = jax.lax.stop_gradient(answers)
    flat = lambda x: x.reshape(t, b * q)  # each question is a column of lambda_returns
    returns = lambda_returns(flat(cumulants), flat(discounts), flat(sg_answers[1:]), lambda_).reshape(t, b, q)
    return 0.5 * jnp.mean(jnp.square(returns - answers[:-1])), returns


class _QuestionNet(nn.Module):
    num_questions: int
    hidden_size: int

    @nn.compact
    def __call__(self, x):
        h = jnp.tanh(nn.Dense(self.hidden_size, name="hidden")(x))
        u = nn.Dense(2 * self.num_questions, name="out")(h)
        return jnp.tanh(u[..., : self.num_questions]), jax.nn.sigmoid(u[..., self.num_questions :])


@register
class AuxQuestions(Objective):
    """A2C plus GVF auxiliary tasks whose cumulants and discounts a question network discovers (Veeriah et al. 2019)."""

    name = "aux_questions"
    description = (
        "Discovered auxiliary questions: A2C plus aux_weight x a TD(lambda) loss of a GVF head answering "
        "num_questions questions (cumulants, discounts) of a meta-learned question network (Veeriah et al. 2019)."
    )
    Config = AuxQuestionsConfig
    supports = Supports(online=True, offline=True)
    learned = True

    def __init__(self, config: AuxQuestionsConfig | None = None):
        super().__init__(config)
        self._net = _QuestionNet(self.config.num_questions, self.config.hidden_size)

    @property
    def heads(self) -> AgentHeads:
        return AgentHeads(extra=(Head(GVF_HEAD, self.config.num_questions),))

    def check_env(self, spec) -> None:
        """Refuses tabular environments: a tabular agent shares no torso, so the questions get no meta-gradient."""
        if spec.is_tabular:
            raise InvalidConfigError(
                f"objective {self.name}: {spec.name} has index observations, learned by a tabular agent whose "
                "GVF head shares no parameters with its policy and value, so the questions get no meta-gradient; "
                "use an environment with vector or image observations"
            )

    def init(self, key: chex.PRNGKey) -> Eta:
        return self._net.init(key, jnp.zeros((1, self.config.input_size), jnp.float32))

    def questions(self, eta: Eta, rollout: Rollout) -> tuple[chex.Array, chex.Array]:
        """Cumulants and discounts ``[T, B, Q]`` of each transition (discounts times the environment's)."""
        dtype = jax.tree.leaves(eta)[0].dtype
        features = observation_features(rollout.observation[1:], self.config.input_size).astype(dtype)
        cumulants, discounts = self._net.apply(eta, features)
        return cumulants, discounts * rollout.discount[1:, :, None].astype(dtype)

    def targets(self, eta: Eta, rollout: Rollout, agent_out: AgentOutput) -> chex.Array:
        """The answers' targets G [T, B, Q] (no gradient to ``agent_out``)."""
        cumulants, discounts = self.questions(eta, rollout)
        return gvf_loss(agent_out.extra[GVF_HEAD], cumulants, discounts, self.config.gvf_lambda)[1]

    def agent_loss(
        self, eta: Eta, rollout: Rollout, agent_out: AgentOutput, hyper: Hyper | None = None
    ) -> tuple[chex.Array, Metrics]:
        del hyper
        assert_rollout_shapes(rollout)
        c = self.config
        loss, metrics = a2c_loss(
            rollout, agent_out, c.gamma, c.td_lambda, c.value_weight, c.entropy_weight, c.reward_clip
        )
        cumulants, discounts = self.questions(eta, rollout)
        aux, _ = gvf_loss(agent_out.extra[GVF_HEAD], cumulants, discounts, c.gvf_lambda)
        total = loss + c.aux_weight * aux
        return total, dict(
            metrics,
            loss=total,
            a2c_loss=loss,
            gvf_loss=aux,
            mean_cumulant=jnp.mean(cumulants),
            mean_gvf_discount=jnp.mean(discounts),
        )

    def describe_eta(self, eta: Eta) -> Metrics:
        """The norm of eta, and each question's cumulant and discount at the all-zero feature input."""
        cumulants, discounts = self._net.apply(eta, jnp.zeros((self.config.input_size,), jax.tree.leaves(eta)[0].dtype))
        out = {"param_norm": jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(eta)))}
        for i in range(self.config.num_questions):
            out[f"q{i + 1}/cumulant0"] = cumulants[i]
            out[f"q{i + 1}/discount0"] = discounts[i]
        return out
