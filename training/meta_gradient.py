"""Online meta-gradients through the agent's own updates: 1-step, n-step and mixing.

One meta-step (Bonnet et al. 2022, eq. 5 and eq. 10; Xu et al. 2018 for n = 1):

    theta^(0) = theta_t,  tau^(0) = the pending rollout (acted by theta_t)
    for i = 1..n:
        theta^(i) = theta^(i-1) + update(grad_theta L(theta^(i-1), eta, tau^(i-1)))   # ActorCriticTrainer.agent_update
        tau^(i)   ~ pi_theta^(i)                                                        # fresh rollout of the updated agent
        L'_i      = L'(theta^(i), eta', tau^(i)) + meta_regulariser(eta, tau^(i))        # outer (validation) loss
    n-step:  grad = d L'_n / d eta                                                      (eq. 5)
    mixing:  grad = (1-k)/(1-k^n) * sum_i k^(i-1) d L'_i / d eta                        (eq. 10)
    eta     <- Adam(clip(grad))
    theta_t+1 = theta^(1), pending rollout = tau^(1), environments continue after tau^(1)

The outer rollout of step i is the inner rollout of step i+1, and the kept agent
theta^(1) reuses tau^(1) as its next inner rollout, so no sample of the kept
trajectory is thrown away (online cross-validation). The look-ahead beyond
theta^(1) (updates and rollouts 2..n) is discarded. Meta-gradients flow
through the agent optimiser (``lpg.optim``: SGD, or Adam with its
second-moment denominator stop-gradiented); acting uses stop-gradiented
parameters (sampling is not differentiated).

The outer loss ``L'`` is ``outer_objective.agent_loss`` with the outer
objective's fixed hyper-parameters: Bonnet's eq. 4 (the policy gradient with
the outer targets' advantages) is an A2C outer objective with value and
entropy weights 0 (``pg_outer_objective``); the MRP study's eq. 2 is an A2C
outer objective with gamma = lambda = 1 and only a value weight. Optionally
the STAC term ``stac_kl_weight * KL(pi_theta^(i) || pi_theta_t)`` is added
(Zahavy et al. 2020). ``monte_carlo = K`` averages K independent estimates
(independent look-ahead rollouts from the same theta_t, Bonnet et al. eq. 9).

The outer advantages need a value estimate. By default it is the agent's own
value head, which the inner objective trains (A2C, FRODO, STAC, ...). An
objective whose loss leaves that head untouched (``Objective.trains_value``
False: LPG, whose agents predict ``y`` instead) would give advantages against
a value that stays at its initialisation (0), i.e. the rewards inside one
rollout and nothing beyond it; for such objectives the trainer keeps a critic
of its own (``MetaGradConfig.outer_critic``): a network of the agent's
architecture with its own parameters, regressed by TD(lambda) with the outer
loss's gamma and lambda on every kept inner rollout before the meta-gradient
is taken, the way offline discovery's meta-critic serves LPG (Oh et al. 2020).
It never acts and never touches the agent.

``inner_steps = 0`` is the fixed-meta-parameter baseline: the same step with
the meta-update switched off (eta stays at ``objective.init``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from lpg.errors import InvalidConfigError
from lpg.rollout import ActorState, episode_stats, unroll
from lpg.types import Rollout
from lpg.validation import AT_LEAST_ONE, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE_NUMBER, UNIT, Config, Range
from objectives.a2c import A2C, A2CConfig, clip_rewards
from objectives.base import Eta, Metrics, Objective
from objectives.losses import lambda_returns
from training.actor_critic import ActorCriticTrainer, LearnerState, host_loop
from training.guards import SKIP_KEY, guarded_apply

__all__ = [
    "MetaGradConfig",
    "MetaGradientTrainer",
    "MetaState",
    "check_outer_critic",
    "mixing_weights",
    "pg_outer_objective",
    "uses_own_critic",
]


ATARI_META_LEARNING_RATE = 1e-4  # Atari defaults of online discovery (lpg discover online atari/...)
ATARI_OUTER_ENTROPY_WEIGHT = 0.01


@dataclasses.dataclass(frozen=True)
class MetaGradConfig(Config):
    """How meta-gradients are estimated and applied.

    Attributes:
      inner_steps: n, inner updates looked ahead per meta-gradient (1 = Xu et
        al. 2018; n > 1 = Bonnet et al. eq. 5); 0 = no meta-learning (eta fixed).
      mix: use the mixing estimator (Bonnet et al. eq. 10) instead of plain n-step.
      mix_k: kappa of the mixing estimator; None = automatic, 1/(1-k) = n;
        k = 0 gives the 1-step meta-gradient exactly.
      meta_learning_rate: learning rate beta of the meta-optimiser (Adam).
      meta_b1: Adam first-moment decay of the meta-optimiser.
      meta_b2: Adam second-moment decay of the meta-optimiser.
      meta_grad_clip: clip each meta-gradient to this global norm (0 = off).
      monte_carlo: K, independent meta-gradient estimates averaged per meta-update.
      stac_kl_weight: weight of KL(pi_theta' || pi_theta) in the outer loss (0 = off).
      init_pull: weight w of an L2 pull of eta toward the eta its lifetime
        started from: each meta-gradient gets ``w * (eta - eta_start)`` added,
        the gradient of ``w / 2 * ||eta - eta_start||^2`` (0 = off). It keeps an
        objective that adapts online (``--init-objective``) near the saved one.
      remat: for n > 1, rematerialise each look-ahead step (agent update and
        rollout) in the backward pass (``jax.checkpoint``) instead of keeping its
        intermediate values. Same meta-gradient. Off by default: XLA's own
        account of the compiled estimate (``memory_analysis().temp_size_in_bytes``)
        shrinks with it for MLP agents (catch, 10-step: 4.4 MiB against 10.2 MiB)
        but grows for the Snake conv agent on CPU (3-step, 8 estimates under
        vmap: 4.27 GiB against 2.72 GiB), where the look-ahead is unrolled.
      outer_critic: which values the outer loss's advantages use: ``"agent"``,
        the agent's own value head; ``"own"``, a critic the trainer trains for
        itself (see the module docstring); ``"auto"`` (default), ``"own"``
        exactly when the inner objective does not train the agent's value
        head (``Objective.trains_value``), else ``"agent"``. Unused without
        meta-learning (``inner_steps = 0``).
      max_unrolled_lookahead: where the agent's rolled ``lax.scan`` is slow
        (``Agent.slow_rolled_scan``: conv torsos on CPU) the look-ahead's
        middle steps are unrolled for n up to this, and rolled beyond. Unrolled
        runs about 5x faster there, but its compile time and memory grow with
        n; rolled they stay flat. Snake, one batch of 8 estimates in a fresh
        process on the 2-core CPU: 5-step unrolled compiles in 94 s, runs in 10 s
        and peaks at 8.2 GB (rolled: 59 s, 54 s, 5.8 GB); 10-step unrolled did
        not compile in 20 minutes (the whole snake-variance experiment peaked
        at 17.8 GB with it), rolled it compiles in 63 s, runs in 134 s and
        peaks at 7.2 GB. Same meta-gradient either way.
        Other agents and backends always roll.
    """

    inner_steps: int = 1
    mix: bool = False
    mix_k: float | None = None
    meta_learning_rate: float = 1e-3
    meta_b1: float = 0.9
    meta_b2: float = 0.999
    meta_grad_clip: float = 0.0
    monte_carlo: int = 1
    stac_kl_weight: float = 0.0
    init_pull: float = 0.0
    remat: bool = False
    max_unrolled_lookahead: int = 5
    outer_critic: str = "auto"

    WHAT = "meta-gradient"
    RANGES = {
        "inner_steps": NON_NEGATIVE_INT,
        "mix_k": UNIT,
        "meta_learning_rate": POSITIVE_NUMBER,
        "meta_b1": Range(0.0, 1.0, open_high=True),
        "meta_b2": Range(0.0, 1.0, open_high=True),
        "meta_grad_clip": NON_NEGATIVE,
        "monte_carlo": AT_LEAST_ONE,
        "stac_kl_weight": NON_NEGATIVE,
        "init_pull": NON_NEGATIVE,
        "max_unrolled_lookahead": NON_NEGATIVE_INT,
    }

    def check(self) -> None:
        check_outer_critic(self.outer_critic, f"{self.WHAT}: outer_critic")

    def validate(self) -> None:
        """Kept for callers of the earlier API: a built config is already valid."""

    @property
    def kappa(self) -> float | None:
        """The mixing kappa in use (None without mixing)."""
        if not self.mix:
            return None
        return self.mix_k if self.mix_k is not None else 1.0 - 1.0 / max(self.inner_steps, 1)

    def weights(self) -> tuple[float, ...]:
        """Weights of the outer losses L'_1..L'_n (static Python floats)."""
        return mixing_weights(self.inner_steps, self.kappa) if self.mix else (0.0,) * (self.inner_steps - 1) + (1.0,)


OUTER_CRITICS = ("auto", "agent", "own")  # MetaGradConfig.outer_critic, --outer-critic


def check_outer_critic(value: str, name: str) -> None:
    """Raises ``InvalidConfigError`` ("NAME must be one of auto, agent, own, got ...") for an unknown outer critic."""
    if value not in OUTER_CRITICS:
        raise InvalidConfigError(f"{name} must be one of {', '.join(OUTER_CRITICS)}, got {value!r}")


def mixing_weights(n: int, kappa: float) -> tuple[float, ...]:
    """``(1-k)/(1-k^n) * k^(i-1)`` for i = 1..n (Bonnet et al. eq. 10); k = 1 gives 1/n each."""
    if n < 1:
        raise InvalidConfigError(f"mixing needs n >= 1, got {n}")
    if kappa == 1.0:
        return (1.0 / n,) * n
    norm = (1.0 - kappa) / (1.0 - kappa**n)
    return tuple(norm * kappa**i for i in range(n))  # Python: 0.0 ** 0 == 1.0


def pg_outer_objective(
    gamma: float = 0.99, td_lambda: float = 0.99, entropy_weight: float = 0.0, normalise_advantages: bool = False
) -> Objective:
    """Bonnet et al. eq. 4: the policy-gradient term with lambda-return advantages (plus an optional entropy bonus).

    ``normalise_advantages`` scales each rollout's advantages to unit standard deviation, as offline discovery's
    meta-objective does (``uses_own_critic``).
    """
    return A2C(
        A2CConfig(
            gamma=gamma,
            td_lambda=td_lambda,
            value_weight=0.0,
            entropy_weight=entropy_weight,
            normalise_advantages=normalise_advantages,
        )
    )


def uses_own_critic(config: MetaGradConfig, objective: Objective) -> bool:
    """Whether meta-gradients with ``config`` for ``objective`` score the agent against a critic of their own.

    ``config.outer_critic``: ``"agent"`` never, ``"own"`` always, ``"auto"`` exactly when the objective's loss
    leaves the agent's value head untrained (``Objective.trains_value``: LPG); never without meta-learning
    (``inner_steps = 0``). With its own critic the outer loss is best made offline discovery's meta-objective
    (Oh et al. 2020, eq. 2): normalised advantages and the objective's ``meta_entropy_weight``; that is the
    default of ``lpg discover online``.
    """
    if config.inner_steps == 0 or config.outer_critic == "agent":
        return False
    return config.outer_critic == "own" or not objective.trains_value


@struct.dataclass
class MetaState:
    """Everything that changes during one online meta-learning lifetime.

    Attributes:
      params: agent parameters theta_t.
      opt_state: the agent optimiser's state.
      actor: environments, positioned after the pending rollout.
      rollout: the pending rollout tau^(0), acted by theta_t, not yet learned from.
      eta: the objective's meta-parameters.
      eta_start: the eta this lifetime started from (``init_pull``'s anchor;
        ``eta_distance`` is measured from it).
      meta_opt_state: the meta-optimiser's state.
      key: PRNG key.
      update_count: int32 [], meta-steps (= kept agent updates) done.
      critic_params: the outer loss's own critic (``MetaGradientTrainer.uses_critic``), else None.
      critic_opt_state: its optimiser's state, else None.
    """

    params: Any
    opt_state: Any
    actor: ActorState
    rollout: Rollout
    eta: Eta
    eta_start: Eta
    meta_opt_state: Any
    key: chex.PRNGKey
    update_count: chex.Array
    critic_params: Any = None
    critic_opt_state: Any = None


def _kl(logits_p: chex.Array, logits_q: chex.Array) -> chex.Array:
    """KL(p || q) of categorical distributions given by logits, [..., A] -> [...]."""
    log_p = jax.nn.log_softmax(logits_p, axis=-1)
    log_q = jax.nn.log_softmax(logits_q, axis=-1)
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


@dataclasses.dataclass(frozen=True, eq=False)
class MetaGradientTrainer:
    """Online meta-gradient learning of ``trainer.objective``'s eta (see the module docstring).

    Hashed by identity, so methods are jitted with ``self`` static.

    Attributes:
      trainer: the inner actor-critic trainer (env, agent, objective at eta, agent optimiser).
      outer_objective: fixed outer objective eta' (its own ``init`` gives its eta).
      config: estimator and meta-optimiser settings.
      meta_optimizer: the meta-optimiser (Adam with clipping), built by ``create``.
    """

    trainer: ActorCriticTrainer
    outer_objective: Objective
    config: MetaGradConfig
    meta_optimizer: optax.GradientTransformation

    @classmethod
    def create(
        cls, trainer: ActorCriticTrainer, outer_objective: Objective, config: MetaGradConfig
    ) -> MetaGradientTrainer:
        config.validate()
        if config.inner_steps > 0 and not trainer.objective.is_learned:
            raise InvalidConfigError(f"objective {trainer.objective.name!r} has no meta-parameters to learn")
        chain = []
        if config.meta_grad_clip > 0:
            chain.append(optax.clip_by_global_norm(config.meta_grad_clip))
        chain.append(optax.adam(config.meta_learning_rate, b1=config.meta_b1, b2=config.meta_b2))
        mt = cls(trainer, outer_objective, config, optax.chain(*chain))
        if mt.uses_critic and not isinstance(outer_objective.config, A2CConfig):
            raise InvalidConfigError("an outer critic regresses the outer loss's lambda-returns: it needs an A2C outer objective")
        return mt

    @property
    def objective(self) -> Objective:
        return self.trainer.objective

    @property
    def uses_critic(self) -> bool:
        """Whether the outer loss's advantages use a critic of the trainer's own (``uses_own_critic``)."""
        return uses_own_critic(self.config, self.objective)

    def critic_update(self, critic_params: Any, critic_opt_state: Any, rollout: Rollout) -> tuple[Any, Any, chex.Array]:
        """One TD(lambda) regression step of the outer critic on ``rollout`` (the outer loss's gamma and lambda).

        ``0.5 mean((G_t - v(s_t))^2)`` with ``G = lambda_returns(r_t, gamma discount_t, v(s_t+1), lambda)``
        stop-gradiented, optimised by the agent's optimiser; returns (params, opt_state, loss).
        """
        c = self.outer_objective.config
        agent = self.trainer.agent

        def loss_fn(p):
            v = agent.apply(p, rollout.observation).value
            r_t = clip_rewards(rollout.reward[1:], c.reward_clip)
            targets = lambda_returns(r_t, c.gamma * rollout.discount[1:], jax.lax.stop_gradient(v[1:]), c.td_lambda)
            return 0.5 * jnp.mean(jnp.square(jax.lax.stop_gradient(targets) - v[:-1]))

        loss, grads = jax.value_and_grad(loss_fn)(critic_params)
        updates, critic_opt_state = self.trainer.optimizer.update(grads, critic_opt_state, critic_params)
        return optax.apply_updates(critic_params, updates), critic_opt_state, loss

    @property
    def env_steps_per_rollout(self) -> int:
        return self.trainer.config.num_envs * self.trainer.config.unroll_length

    @property
    def env_steps_per_meta_step(self) -> int:
        """Environment steps simulated per meta-step, look-ahead and Monte-Carlo samples included."""
        return (
            self.env_steps_per_rollout
            * max(self.config.inner_steps, 1)
            * (self.config.monte_carlo if self.config.inner_steps else 1)
        )

    # -- state -----------------------------------------------------------
    def init(self, key: chex.PRNGKey, eta: Eta | None = None) -> MetaState:
        """A fresh agent, its first (pending) rollout, and eta (``objective.init`` unless given)."""
        learner_key, eta_key, key = jax.random.split(key, 3)
        learner = self.trainer.init(learner_key)
        learner, rollout = self.trainer.act(learner)
        if eta is None:
            eta = self.objective.init(eta_key)
        critic_params = critic_opt_state = None
        if self.uses_critic:  # its own key, so the agent's random stream is the same with and without it
            critic_params = self.trainer.agent.init(jax.random.fold_in(eta_key, 1))
            critic_opt_state = self.trainer.optimizer.init(critic_params)
        return MetaState(
            params=learner.params,
            opt_state=learner.opt_state,
            actor=learner.actor,
            rollout=rollout,
            eta=eta,
            eta_start=eta,
            meta_opt_state=self.meta_optimizer.init(eta),
            key=learner.key,
            update_count=jnp.zeros([], jnp.int32),
            critic_params=critic_params,
            critic_opt_state=critic_opt_state,
        )

    # -- the meta-objective ---------------------------------------------
    def _act(self, params: Any, actor: ActorState, key: chex.PRNGKey) -> tuple[ActorState, Rollout]:
        t = self.trainer
        return unroll(t.env, t.agent.apply, jax.lax.stop_gradient(params), actor, key, t.config.unroll_length)

    def _outer_loss(
        self, eta: Eta, params: Any, params_before: Any, rollout: Rollout, critic_params: Any = None
    ) -> tuple[chex.Array, Metrics]:
        agent = self.trainer.agent
        out = agent.apply(params, rollout.observation)
        reg, reg_metrics = self.objective.meta_regulariser(eta, rollout, out)
        if critic_params is not None:  # the outer critic's values in place of the agent's value head
            value = agent.apply(critic_params, rollout.observation).value
            out = out.replace(value=jax.lax.stop_gradient(value))
        outer_eta = self.outer_objective.init(jax.random.PRNGKey(0))
        loss, metrics = self.outer_objective.agent_loss(outer_eta, rollout, out)
        metrics = {f"outer_{k}": v for k, v in metrics.items()}
        if self.config.stac_kl_weight:
            before = agent.apply(jax.lax.stop_gradient(params_before), rollout.observation)
            kl = jnp.mean(_kl(out.logits[:-1], before.logits[:-1]))
            loss = loss + self.config.stac_kl_weight * kl
            metrics["outer_kl"] = kl
        metrics.update({f"meta_reg_{k}": v for k, v in reg_metrics.items()})
        metrics["meta_regulariser"] = reg
        return loss + reg, metrics

    def meta_loss(self, eta: Eta, state: MetaState, key: chex.PRNGKey) -> tuple[chex.Array, dict[str, Any]]:
        """The weighted outer loss ``sum_i w_i L'_i`` of one look-ahead from ``state`` (a function of eta).

        Deterministic given ``key``; its gradient in eta is one meta-gradient
        estimate. Aux holds the kept update (theta^(1), its optimiser state),
        tau^(1), the environments after tau^(1), and metrics.
        """
        weights = self.config.weights()
        n = max(i + 1 for i, w in enumerate(weights) if w != 0.0)  # trailing zero weights need no look-ahead
        weights = weights[:n]
        keys = jax.random.split(key, n)
        t = self.trainer

        def advance(params, opt_state, actor, rollout, step_key):
            """One look-ahead step: the agent's update on ``rollout``, then its next rollout."""
            params, opt_state, inner = t.agent_update(params, opt_state, eta, rollout)
            actor, rollout = self._act(params, actor, step_key)
            return params, opt_state, actor, rollout, inner

        if self.config.remat and n > 1:
            advance = jax.checkpoint(advance)

        params1, opt1, actor1, rollout1, inner_metrics = advance(
            state.params, state.opt_state, state.actor, state.rollout, keys[0]
        )
        total = jnp.zeros((), jnp.result_type(float))
        outer_metrics: Metrics = {}
        if weights[0] != 0.0:
            loss1, outer_metrics = self._outer_loss(eta, params1, state.params, rollout1, state.critic_params)
            total = total + weights[0] * loss1

        if n > 1:
            mixing = any(w != 0.0 for w in weights[1:-1])

            def body(carry, xs):
                step_key, weight = xs
                params, opt_state, actor, rollout, _ = advance(*carry, step_key)
                carry = (params, opt_state, actor, rollout)
                if mixing:
                    loss, _ = self._outer_loss(eta, params, state.params, rollout, state.critic_params)
                    return carry, weight * loss
                return carry, jnp.zeros((), total.dtype)

            carry = (params1, opt1, actor1, rollout1)
            xs = (keys[1:-1], jnp.asarray(weights[1:-1], total.dtype))
            if n > 2:
                unroll = t.agent.slow_rolled_scan and n <= self.config.max_unrolled_lookahead
                carry, losses = jax.lax.scan(body, carry, xs, unroll=unroll)
                total = total + jnp.sum(losses)
            params, _, _, rollout, _ = advance(*carry, keys[-1])
            loss_n, metrics_n = self._outer_loss(eta, params, state.params, rollout, state.critic_params)
            total = total + weights[-1] * loss_n
            if not outer_metrics:
                outer_metrics = metrics_n

        aux = {
            "params": params1,
            "opt_state": opt1,
            "actor": actor1,
            "rollout": rollout1,
            "metrics": {**inner_metrics, **outer_metrics, "meta_loss": total},
        }
        return total, aux

    def meta_gradient(self, state: MetaState, key: chex.PRNGKey) -> tuple[Eta, dict[str, Any]]:
        """One meta-gradient estimate (``monte_carlo`` estimates averaged), not applied.

        Returns (grad of the meta-loss w.r.t. eta, aux of the first estimate
        with metrics averaged over estimates).
        """
        grad_fn = jax.grad(self.meta_loss, has_aux=True)
        k = self.config.monte_carlo
        if k == 1:
            return grad_fn(state.eta, state, key)
        grads, aux = jax.vmap(lambda kk: grad_fn(state.eta, state, kk))(jax.random.split(key, k))
        grads = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
        metrics = jax.tree.map(lambda m: jnp.mean(m, axis=0), aux.pop("metrics"))
        aux = jax.tree.map(lambda x: x[0], aux)
        return grads, dict(aux, metrics=metrics)

    def estimate(self, state: MetaState, key: chex.PRNGKey, num_estimates: int, batch_size: int = 8) -> Eta:
        """``num_estimates`` independent single meta-gradients at ``state`` (leading axis), for variance studies.

        Each estimate uses this trainer's estimator with one Monte-Carlo sample.
        Estimates are computed ``batch_size`` at a time under ``vmap`` (a
        10-step look-ahead of a conv agent for 32 estimates at once does not
        fit in memory); the result does not depend on ``batch_size``.
        """
        keys = jax.random.split(key, num_estimates)
        parts = [self._estimate_batch(state, keys[i : i + batch_size]) for i in range(0, num_estimates, batch_size)]
        return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *parts)

    @functools.partial(jax.jit, static_argnums=(0,))
    def _estimate_batch(self, state: MetaState, keys: chex.PRNGKey) -> Eta:
        grad_fn = jax.grad(self.meta_loss, has_aux=True)
        return jax.vmap(lambda kk: grad_fn(state.eta, state, kk)[0])(keys)

    def pulled(self, grads: Eta, eta: Eta, eta_start: Eta) -> Eta:
        """The meta-gradient plus ``init_pull * (eta - eta_start)``, the gradient of ``init_pull / 2 ||eta - eta_start||^2``."""
        if self.config.init_pull <= 0:
            return grads
        pull = self.config.init_pull
        return jax.tree.map(lambda g, e, e0: g + pull * (e - e0), grads, eta, eta_start)

    @staticmethod
    def eta_distance(eta: Eta, eta_start: Eta) -> chex.Array:
        """``||eta - eta_start||``, the global L2 distance the objective moved from its start (metric ``eta_distance``)."""
        return optax.tree.norm(jax.tree.map(jnp.subtract, eta, eta_start))

    # -- stepping --------------------------------------------------------
    def meta_step(self, state: MetaState) -> tuple[MetaState, Metrics]:
        """One kept agent update and (for inner_steps > 0) one meta-update of eta."""
        key, est_key, act_key = jax.random.split(state.key, 3)
        stats = episode_stats(state.rollout)
        if self.config.inner_steps == 0:
            params, opt_state, metrics = self.trainer.agent_update(
                state.params, state.opt_state, state.eta, state.rollout
            )
            actor, rollout = self._act(params, state.actor, act_key)
            eta, meta_opt_state = state.eta, state.meta_opt_state
            meta_grad_norm = jnp.zeros((), jnp.float32)
        else:
            critic_metrics = {}
            if self.uses_critic:  # the critic first learns from the inner rollout; the outer loss then uses it
                critic_params, critic_opt_state, critic_loss = self.critic_update(
                    state.critic_params, state.critic_opt_state, state.rollout
                )
                state = state.replace(critic_params=critic_params, critic_opt_state=critic_opt_state)
                critic_metrics = {"outer_critic_loss": critic_loss}
            grads, aux = self.meta_gradient(state, est_key)
            grads = self.pulled(grads, state.eta, state.eta_start)
            meta_grad_norm = optax.tree.norm(grads)
            updates, meta_opt_state = self.meta_optimizer.update(grads, state.meta_opt_state, state.eta)
            eta = optax.apply_updates(state.eta, updates)
            # A non-finite meta-gradient skips the meta-update (eta and meta-Adam kept).
            (eta, meta_opt_state), meta_skipped = guarded_apply(
                grads, (eta, meta_opt_state), (state.eta, state.meta_opt_state)
            )
            params = jax.lax.stop_gradient(aux["params"])
            opt_state = jax.lax.stop_gradient(aux["opt_state"])
            actor, rollout, metrics = aux["actor"], aux["rollout"], aux["metrics"]
            metrics = dict(metrics, **critic_metrics, nonfinite_meta_skipped=meta_skipped)
            metrics[SKIP_KEY] = jnp.maximum(metrics[SKIP_KEY], meta_skipped)
        eta_distance = self.eta_distance(eta, state.eta_start)
        metrics = dict(metrics, **stats, meta_grad_norm=meta_grad_norm, eta_distance=eta_distance)
        metrics.update({f"eta/{k}": v for k, v in self.objective.describe_eta(eta).items()})
        new_state = state.replace(
            params=params,
            opt_state=opt_state,
            actor=actor,
            rollout=rollout,
            eta=eta,
            meta_opt_state=meta_opt_state,
            key=key,
            update_count=state.update_count + 1,
        )
        return new_state, metrics

    @functools.partial(jax.jit, static_argnums=(0,))
    def jit_meta_step(self, state: MetaState) -> tuple[MetaState, Metrics]:
        return self.meta_step(state)

    def run(self, state: MetaState, num_steps: int) -> tuple[MetaState, Metrics]:
        """``num_steps`` meta-steps in one compiled ``lax.scan`` (a host loop for conv nets on CPU); metrics [num_steps]."""
        if self.trainer.agent.slow_rolled_scan:
            return host_loop(self.jit_meta_step, state, num_steps, axis=0)
        return self._run_scan(state, num_steps)

    @functools.partial(jax.jit, static_argnums=(0, 2))
    def _run_scan(self, state: MetaState, num_steps: int) -> tuple[MetaState, Metrics]:
        return jax.lax.scan(lambda s, _: self.meta_step(s), state, None, length=num_steps)

    @functools.partial(jax.jit, static_argnums=(0,))
    def init_seeds(self, keys: chex.PRNGKey, eta: Eta | None = None) -> MetaState:
        """Fresh lifetimes for a batch of keys [S] (leading seed axis); every one starts from ``eta`` when given."""
        if eta is None:
            return jax.vmap(self.init)(keys)
        return jax.vmap(self.init, in_axes=(0, None))(keys, eta)

    def run_seeds(self, states: MetaState, num_steps: int) -> tuple[MetaState, Metrics]:
        """``run`` for every seed under ``vmap``; metrics [S, num_steps]."""
        if self.trainer.agent.slow_rolled_scan:
            return host_loop(self._jit_meta_step_seeds, states, num_steps, axis=1)
        return self._run_seeds_scan(states, num_steps)

    @functools.partial(jax.jit, static_argnums=(0,))
    def _jit_meta_step_seeds(self, states: MetaState) -> tuple[MetaState, Metrics]:
        return jax.vmap(self.meta_step)(states)

    @functools.partial(jax.jit, static_argnums=(0, 2))
    def _run_seeds_scan(self, states: MetaState, num_steps: int) -> tuple[MetaState, Metrics]:
        return jax.vmap(lambda s: jax.lax.scan(lambda c, _: self.meta_step(c), s, None, length=num_steps))(states)

    def learner_state(self, state: MetaState) -> LearnerState:
        """The agent part of ``state`` as an ActorCriticTrainer LearnerState."""
        return LearnerState(state.params, state.opt_state, state.actor, state.key, state.update_count)
