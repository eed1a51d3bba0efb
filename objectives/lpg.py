"""The Learned Policy Gradient objective (LPG; Oh et al. 2020, "Discovering
Reinforcement Learning Algorithms", Sec. 3 and Fig. 1).

The meta-network ``eta`` is a *backward* LSTM that reads, for every transition
``s_t --a_t--> s_t+1`` of a rollout, the input (Oh et al. 2020, Sec. 3.1)

    x_t = [r_t, d_t, gamma, pi(a_t|s_t), phi(y(s_t)), phi(y(s_t+1))]

where ``r_t = reward[t+1]``, ``d_t = discount[t+1]`` (0 at termination),
``gamma`` a constant input, ``pi(a_t|s_t)`` the agent's probability of the
action it took, ``y`` the agent's categorical prediction vector (softmax of its
m y-logits) and ``phi`` one shared MLP (m -> 16 -> 1). ``phi(y(s_t+1))`` is
zeroed where the episode terminated on arriving at ``s_t+1`` (as groove's
``models/lpg.py`` does). The LSTM runs from ``t = T-1`` down to ``0`` (reverse
``lax.scan`` via ``flax.linen.RNN(reverse=True, keep_order=True)``), so its
outputs at step t depend only on steps ``t..T-1``, like a return. Per step it
outputs ``pi_hat_t`` (a scalar that replaces the advantage) and ``y_hat_t``
(a softmax over m, the target of y).

Agent update (Oh et al. 2020, eq. 1):

    dtheta ∝ E[grad log pi(a_t|s_t) pi_hat_t - alpha_y grad KL(y(s_t) || y_hat_t)],

i.e. the agent minimises ``-mean(log pi(a_t|s_t) pi_hat_t) + alpha_y *
mean(KL(y_t || y_hat_t))``. Every agent-derived input of the meta-network is
stop-gradiented with respect to the agent's parameters, so the agent only
follows the targets; ``pi_hat`` and ``y_hat`` stay differentiable in ``eta``.

Meta-objective regularisers (Oh et al. 2020, eq. 2; GROOVE's tuned values):
``- beta1 H(y) + beta2 ||pi_hat||^2 + beta3 ||y_hat||^2`` come from
``meta_regulariser``; the policy entropy bonus ``beta0 H(pi)`` is part of the
trainer's policy-gradient meta-loss (``training/offline``), because it is not
LPG-specific; the objective gives its weight as ``meta_entropy_weight``.

``alpha_y`` is a per-lifetime hyper-parameter (``lifetime_hypers``): offline
discovery draws it log-uniformly in [0.25, 1] per lifetime by default.
"""

from __future__ import annotations

import dataclasses

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from lpg.types import AgentOutput, Rollout, assert_rollout_shapes
from lpg.validation import NON_NEGATIVE, POSITIVE_INT, UNIT
from objectives import register
from objectives.base import AgentHeads, Eta, Hyper, Metrics, Objective, ObjectiveConfig, Supports
from objectives.losses import entropy, log_prob

__all__ = ["LPG", "PAPER_HIDDEN_SIZE", "LPGConfig", "LPGNetwork", "lpg_inputs"]

PAPER_HIDDEN_SIZE = 256
ALPHA_Y_RANGE = (0.25, 1.0)  # per-lifetime range of alpha_y in offline discovery (log-uniform)


@dataclasses.dataclass(frozen=True)
class LPGConfig(ObjectiveConfig):
    """Hyper-parameters of the LPG objective.

    Attributes:
      hidden_size: width of the backward LSTM. The paper uses 256
        (``PAPER_HIDDEN_SIZE``, ``LPGConfig.paper()``); the default 32 is a
        CPU preset that meta-trains in minutes on toy MDPs.
      y_size: size m of the agent's categorical prediction vector y (30 in
        reimplementations of the paper; groove defaults to 8).
      phi_hidden: hidden width of the shared embedding MLP phi (m -> 16 -> 1).
      gamma: the constant discount fed to the network as an input.
      alpha_y: weight of the KL(y || y_hat) term of the agent's loss (used when
        a trainer does not pass its own per-lifetime value; GROOVE: 0.5).
      beta0: weight of the policy-entropy bonus of the meta-objective (applied
        by the trainer; GROOVE 0.05).
      beta1: weight of the y-entropy bonus of the meta-objective (GROOVE 0.001).
      beta2: weight of the L2 penalty on pi_hat (GROOVE 0.005).
      beta3: weight of the L2 penalty on y_hat (GROOVE 0.001).

    The sizes are integers >= 1, gamma lies in [0, 1] and the weights are >= 0.
    """

    OBJECTIVE = "lpg"
    RANGES = {
        "hidden_size": POSITIVE_INT,
        "y_size": POSITIVE_INT,
        "phi_hidden": POSITIVE_INT,
        "gamma": UNIT,
        **dict.fromkeys(("alpha_y", "beta0", "beta1", "beta2", "beta3"), NON_NEGATIVE),
    }

    hidden_size: int = 32
    y_size: int = 30
    phi_hidden: int = 16
    gamma: float = 0.99
    alpha_y: float = 0.5
    beta0: float = 0.05
    beta1: float = 0.001
    beta2: float = 0.005
    beta3: float = 0.001

    @classmethod
    def paper(cls) -> LPGConfig:
        """The paper-sized network (LSTM 256, m = 30)."""
        return cls(hidden_size=PAPER_HIDDEN_SIZE, y_size=30)


class LPGNetwork(nn.Module):
    """phi (shared MLP) + backward LSTM + output heads; see the module docstring.

    ``remat`` (default on) recomputes the LSTM's steps in the backward pass
    instead of storing them: the same values, less memory traffic (README,
    "Running fast on CPU").

    ``__call__(r_t, d_t, pi_a, y_t, y_tp1)`` takes time-major arrays
    ``[T, B]`` (``[T, B, m]`` for the y's) and returns ``(pi_hat [T, B],
    y_hat_logits [T, B, m])``.
    """

    hidden_size: int
    y_size: int
    phi_hidden: int
    gamma: float
    remat: bool = True

    @nn.compact
    def __call__(self, r_t, d_t, pi_a, y_t, y_tp1):
        phi = nn.Sequential(
            [nn.Dense(self.phi_hidden, name="phi_hidden"), nn.relu, nn.Dense(1, name="phi_out")], name="phi"
        )
        phi_t = phi(y_t)[..., 0]
        phi_tp1 = phi(y_tp1)[..., 0] * d_t  # zeroed where the episode terminated at s_t+1
        x = jnp.stack([r_t, d_t, jnp.full_like(r_t, self.gamma), pi_a, phi_t, phi_tp1], axis=-1)  # [T, B, 6]
        # remat (jax.checkpoint per step): the backward pass recomputes a step's gates from its (c, h)
        # instead of keeping a dozen stacked [T, B, H] residual buffers per pass, whose zero-filled copies
        # were about 30% of the offline meta-step's kernel time on CPU. Same parameters, same outputs.
        rnn = nn.RNN(
            (nn.remat(nn.OptimizedLSTMCell) if self.remat else nn.OptimizedLSTMCell)(self.hidden_size, name="lstm"),
            time_major=True,
            reverse=True,
            keep_order=True,
            name="backward",
        )
        zeros = jnp.zeros(x.shape[1:-1] + (self.hidden_size,), x.dtype)  # (c, h) in the input's dtype
        h = rnn(x, initial_carry=(zeros, zeros))  # [T, B, H]; h[t] depends on x[t:] only
        pi_hat = nn.Dense(1, name="pi_hat")(h)[..., 0]
        y_hat_logits = nn.Dense(self.y_size, name="y_hat")(h)
        return pi_hat, y_hat_logits


def lpg_inputs(rollout: Rollout, agent_out: AgentOutput) -> tuple[chex.Array, ...]:
    """The agent-derived and environment inputs of the meta-network, stop-gradiented.

    Returns ``(r_t, d_t, pi_a [T, B], y_t, y_tp1 [T, B, m])``.
    """
    sg = jax.lax.stop_gradient
    r_t = rollout.reward[1:]
    d_t = rollout.discount[1:]
    pi_a = jnp.exp(log_prob(sg(agent_out.logits[:-1]), rollout.action[:-1]))
    y = jax.nn.softmax(sg(agent_out.y_logits), axis=-1)
    return r_t, d_t, pi_a, y[:-1], y[1:]


@register
class LPG(Objective):
    """LPG: a backward LSTM produces the agent's policy and y targets."""

    name = "lpg"
    description = "Learned Policy Gradient: backward-LSTM meta-network outputs pi_hat and y_hat (Oh et al. 2020)."
    Config = LPGConfig
    supports = Supports(online=True, offline=True)
    learned = True
    trains_value = False  # the agent predicts y instead; its value head is never trained

    def __init__(self, config: LPGConfig | None = None):
        super().__init__(config)
        c = self.config
        self.network = LPGNetwork(c.hidden_size, c.y_size, c.phi_hidden, c.gamma)

    @property
    def heads(self) -> AgentHeads:
        return AgentHeads(y_size=self.config.y_size)

    def lifetime_hypers(self) -> dict[str, tuple[float, float]]:
        """``alpha_y``, drawn log-uniformly in [0.25, 1] per lifetime (geometric mean 0.5, the default)."""
        return {"alpha_y": ALPHA_Y_RANGE}

    @property
    def meta_entropy_weight(self) -> float:
        return self.config.beta0

    def init(self, key: chex.PRNGKey) -> Eta:
        m = self.config.y_size
        t, b = 2, 1
        z = jnp.zeros((t, b), jnp.float32)
        return self.network.init(key, z, z, z, jnp.zeros((t, b, m)), jnp.zeros((t, b, m)))

    def targets(self, eta: Eta, rollout: Rollout, agent_out: AgentOutput) -> tuple[chex.Array, chex.Array]:
        """``(pi_hat [T, B], y_hat_logits [T, B, m])`` for a rollout ``[T+1, B]``."""
        assert_rollout_shapes(rollout)
        chex.assert_shape(agent_out.y_logits, rollout.reward.shape + (self.config.y_size,))
        return self.network.apply(eta, *lpg_inputs(rollout, agent_out))

    def agent_loss(
        self, eta: Eta, rollout: Rollout, agent_out: AgentOutput, hyper: Hyper | None = None
    ) -> tuple[chex.Array, Metrics]:
        """``L = -mean(log pi(a_t|s_t) pi_hat_t) + alpha_y mean(KL(y_t || y_hat_t))`` (Oh et al. 2020, eq. 1).

        ``alpha_y`` is ``hyper["alpha_y"]`` (possibly traced, per lifetime) or
        the config's; differentiable in the agent's parameters and in eta.
        """
        alpha_y = self.hyper(hyper)["alpha_y"]
        pi_hat, y_hat_logits = self.targets(eta, rollout, agent_out)
        log_pi_a = log_prob(agent_out.logits[:-1], rollout.action[:-1])
        log_y = jax.nn.log_softmax(agent_out.y_logits[:-1], axis=-1)
        log_y_hat = jax.nn.log_softmax(y_hat_logits, axis=-1)
        kl = jnp.sum(jnp.exp(log_y) * (log_y - log_y_hat), axis=-1)
        pg_loss = -jnp.mean(log_pi_a * pi_hat)
        kl_loss = jnp.mean(kl)
        loss = pg_loss + alpha_y * kl_loss
        metrics = {
            "loss": loss,
            "pg_loss": pg_loss,
            "kl_y": kl_loss,
            "mean_pi_hat": jnp.mean(pi_hat),
            "mean_abs_pi_hat": jnp.mean(jnp.abs(pi_hat)),
            "entropy": jnp.mean(entropy(agent_out.logits[:-1])),
        }
        return loss, metrics

    def meta_regulariser(self, eta: Eta, rollout: Rollout, agent_out: AgentOutput) -> tuple[chex.Array, Metrics]:
        """``-beta1 H(y) + beta2 mean(pi_hat^2) + beta3 mean(||y_hat||^2)`` (Oh et al. 2020, eq. 2).

        ``H(y)`` is the entropy of the agent's y (differentiable in the agent's
        parameters, hence in eta through the agent's updates); ``pi_hat`` and
        ``y_hat`` (probabilities) are the meta-network's outputs on ``rollout``.
        """
        c = self.config
        pi_hat, y_hat_logits = self.targets(eta, rollout, agent_out)
        y_hat = jax.nn.softmax(y_hat_logits, axis=-1)
        h_y = jnp.mean(entropy(agent_out.y_logits[:-1]))
        l2_pi = jnp.mean(jnp.square(pi_hat))
        l2_y = jnp.mean(jnp.sum(jnp.square(y_hat), axis=-1))
        reg = -c.beta1 * h_y + c.beta2 * l2_pi + c.beta3 * l2_y
        return reg, {"y_entropy": h_y, "pi_hat_l2": l2_pi, "y_hat_l2": l2_y}

    def describe_eta(self, eta: Eta) -> Metrics:
        leaves = jax.tree.leaves(eta)
        sq = sum(jnp.sum(jnp.square(x)) for x in leaves)
        return {"eta_norm": jnp.sqrt(sq)}
