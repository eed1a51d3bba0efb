"""Offline objective discovery across many lifetimes (LPG, Oh et al. 2020).

Two ways to improve the objective's meta-parameters ``eta`` over a population
of agents learning on a set of toy MDPs; both are ``step(state) -> (state,
metrics)`` on one immutable ``OfflineState``, so ``OfflineConfig.method``
switches between them:

* ``grad`` (Oh et al. 2020, Sec. 3.2; GROOVE's reimplementation): every
  lifetime advances its agent by K updates with the objective at ``eta``
  (differentiable), then a policy-gradient meta-objective is evaluated on a
  *fresh* rollout of the updated agent, with advantages from a separate
  per-lifetime meta-critic (GAE, gamma 0.99, lambda 0.95, normalised per
  lifetime), minus ``beta0`` times the policy entropy, plus
  ``objective.meta_regulariser``. The meta-gradient is taken per lifetime
  (``vmap(grad)``) and averaged over the lifetime axis only, then applied
  with clipped meta-Adam. Lifetimes restart with fresh agents (new task
  instance, new hyper-parameters) when they have done ``lifetime_updates``
  updates; initial ages are staggered so restarts are spread out.
* ``es`` (evosax; groove's LPG-ES): ``2 x num_lifetimes`` members in
  antithetic pairs; member ``j`` and ``j + P/2`` (evosax's antithetic layout)
  share an environment, hyper-parameters and seed. Each member trains a
  fresh agent for a (short) lifetime with its ``eta``; fitness is the
  negated, per-environment-normalised return
  ``(R - R_random) / (R_a2c - R_random)`` where ``R_a2c`` is plain A2C on the
  same lifetime budget (measured once at start-up, see ``reference_returns``)
  and ``R_random`` the uniform-random policy's return (known for chains,
  measured otherwise): the same A2C-normalised score the evaluation reports.

Heterogeneous environments (different observation and action sizes) are
handled by *grouping*: lifetimes (ES pairs) are split evenly over the
environments of the set, in order, and each environment's group is one
``vmap`` inside the same jitted step with the same ``eta``. So "each lifetime
draws an environment" is a stratified draw; task instances (random layouts,
chain lengths) are still drawn per lifetime from the environment's reset key.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import signal
import time
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from lpg import distributed
from lpg import envs as envs_lib
from lpg.envs.base import Environment
from lpg.errors import InvalidConfigError, RunInterrupted, UnknownNameError
from lpg.networks import Agent, NetworkConfig, make_agent
from lpg.optim import OptimizerConfig, make_optimizer
from lpg.rollout import ActorState, episode_stats, reset_actors, unroll
from lpg.types import AgentOutput, Rollout
from objectives.base import Eta, Metrics, Objective
from objectives.losses import entropy, lambda_returns, log_prob
from training.longrun import SKIP_KEY, LongRun, RaiseOnSignals, SignalStop, guarded_apply, validate_longrun

METHODS = ("grad", "es")
# Floor (in return units) of the A2C - random denominator of ES fitness: short
# lifetimes in which A2C barely beats random would otherwise blow scores up.
MIN_SCORE_SCALE = 0.1


# --------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class OfflineConfig:
    """Offline discovery set-up (population, lifetimes, meta-optimiser, ES).

    Attributes:
      envs: environment names (already resolved from a spec); lifetimes are
        split evenly over them, in order.
      method: ``grad`` (meta-gradients through K agent updates) or ``es``
        (evolution strategies with evosax).
      num_lifetimes: grad: lifetimes trained in parallel (vmap); es: number of
        antithetic pairs (population = 2 x num_lifetimes). At least one per
        environment.
      num_envs: environments each agent acts in (batch B of a rollout).
      unroll_length: steps per rollout (T); one agent update per rollout.
      lifetime_updates: agent updates in one lifetime. grad: a lifetime
        restarts with a fresh agent when it reaches this (at least
        ``inner_updates``); es: the length of the lifetime each member is scored on.
      inner_updates: K, agent updates per meta-step (grad), differentiated
        through (Oh et al. 2020 / GROOVE: 5).
      agent_optimizer: the agents' optimiser, ``adam`` (meta-differentiable,
        denominator stop-gradiented; the default, because evaluation trains
        agents with the environment preset's Adam, lr 3e-2 for tabular ones)
        or ``sgd`` (LPG/GROOVE's choice for tabular agents, lr ~40).
      lr_range: (low, high) of the agent learning rate, drawn log-uniformly
        per lifetime; its geometric mean (default ~3.2e-2) is the learning
        rate used to evaluate the objective.
      alpha_y_range: (low, high) of the KL(y || y_hat) weight alpha_y, drawn
        log-uniformly per lifetime (used by objectives with
        ``agent_loss_with``, i.e. LPG; GROOVE: 0.5).
      agent_max_grad_norm: clip each agent gradient to this global norm (0 = off).
      meta_lr: meta-Adam learning rate (grad; GROOVE 1e-4 with 512 lifetimes;
        small CPU populations learn faster with ~1e-3).
      meta_grad_clip: global-norm clip of the meta-gradient (GROOVE 0.5).
      meta_entropy_weight: beta0, the policy-entropy bonus of the
        meta-objective; None = the objective's ``config.beta0`` if it has one,
        else 0.05 (GROOVE).
      critic_lr: Adam learning rate of the per-lifetime meta-critic (trained
        with TD(lambda) targets on every rollout of its lifetime).
      critic_gamma: discount of the meta-critic's GAE (0.99).
      critic_lambda: lambda of the meta-critic's GAE (0.95).
      es_algorithm: evosax algorithm name (``Open_ES``, ``SNES``, ``CMA_ES``, ...).
      es_std: standard deviation of ES perturbations (evosax's default 1.0 is
        far too large for network weights; groove uses 0.1).
      es_lr: learning rate of the ES mean (Adam; groove 1e-2), for algorithms
        that take an optax optimiser.
      es_fitness_fraction: fitness is the mean episode return in the last
        fraction of a member's lifetime.
      meta_steps: meta-steps (grad updates or ES generations) of a run.
      seed: random seed of the run.
    """

    envs: tuple[str, ...] = ("chain/short", "gridworld/sparse")
    method: str = "grad"
    num_lifetimes: int = 8
    num_envs: int = 16
    unroll_length: int = 20
    lifetime_updates: int = 200
    inner_updates: int = 5
    agent_optimizer: str = "adam"
    lr_range: tuple[float, float] = (1e-2, 1e-1)
    alpha_y_range: tuple[float, float] = (0.25, 1.0)
    agent_max_grad_norm: float = 0.0
    meta_lr: float = 1e-3
    meta_grad_clip: float = 0.5
    meta_entropy_weight: float | None = None
    critic_lr: float = 3e-2
    critic_gamma: float = 0.99
    critic_lambda: float = 0.95
    es_algorithm: str = "Open_ES"
    es_std: float = 0.05
    es_lr: float = 1e-2
    es_fitness_fraction: float = 0.5
    meta_steps: int = 200
    seed: int = 0

    def validate(self) -> None:
        if self.method not in METHODS:
            raise UnknownNameError(f"unknown discovery method {self.method!r}; choose grad or es")
        if not self.envs:
            raise InvalidConfigError("offline discovery needs at least one environment")
        for name, value in (
            ("num_lifetimes", self.num_lifetimes),
            ("num_envs", self.num_envs),
            ("unroll_length", self.unroll_length),
            ("lifetime_updates", self.lifetime_updates),
            ("inner_updates", self.inner_updates),
        ):
            if value <= 0:
                raise InvalidConfigError(f"{name} must be positive, got {value}")
        if self.num_lifetimes < len(self.envs):
            raise InvalidConfigError(
                f"num_lifetimes ({self.num_lifetimes}) must be at least the number of environments ({len(self.envs)})"
            )
        if self.meta_steps < 0:
            raise InvalidConfigError(f"meta_steps must be >= 0, got {self.meta_steps}")
        if self.agent_optimizer not in ("sgd", "adam"):
            raise InvalidConfigError(f"agent_optimizer must be sgd or adam, got {self.agent_optimizer!r}")
        for name, (lo, hi) in (("lr_range", self.lr_range), ("alpha_y_range", self.alpha_y_range)):
            if not (0 < lo <= hi):
                raise InvalidConfigError(f"{name} must satisfy 0 < low <= high, got {(lo, hi)}")
        for name, value in (
            ("meta_lr", self.meta_lr),
            ("critic_lr", self.critic_lr),
            ("es_std", self.es_std),
            ("es_lr", self.es_lr),
        ):
            if not value > 0:
                raise InvalidConfigError(f"{name} must be positive, got {value}")
        if not 0 < self.es_fitness_fraction <= 1:
            raise InvalidConfigError(f"es_fitness_fraction must be in (0, 1], got {self.es_fitness_fraction}")
        if self.meta_grad_clip < 0 or self.agent_max_grad_norm < 0:
            raise InvalidConfigError("gradient clips must be >= 0")
        if self.method == "grad" and self.lifetime_updates < self.inner_updates:
            raise InvalidConfigError(
                f"lifetime_updates ({self.lifetime_updates}) must be >= inner_updates ({self.inner_updates}): "
                "one meta-step advances every lifetime by inner_updates agent updates"
            )
        if self.method == "es":
            es_algorithm_class(self.es_algorithm)
        for name in self.envs:
            kind = envs_lib.make_spec(name).kind
            if kind != "toy":
                raise InvalidConfigError(f"offline discovery runs on toy environments; {name} is {kind}")

    @property
    def eval_learning_rate(self) -> float:
        """The geometric mean of ``lr_range``: the agent learning rate used to evaluate the objective."""
        return float(math.sqrt(self.lr_range[0] * self.lr_range[1]))

    @property
    def eval_alpha_y(self) -> float:
        return float(math.sqrt(self.alpha_y_range[0] * self.alpha_y_range[1]))

    def agent_optimizer_config(self) -> OptimizerConfig:
        """The agents' optimiser at the evaluation learning rate (what fresh agents use with the discovered objective)."""
        return OptimizerConfig(self.agent_optimizer, self.eval_learning_rate, max_grad_norm=self.agent_max_grad_norm)


# --------------------------------------------------------------------------- state


@struct.dataclass
class LifetimeState:
    """One lifetime of the grad method (batched with a leading lifetime axis).

    Attributes:
      params: agent parameters theta.
      opt_state: the agent optimiser's state.
      actor: the environments the agent acts in.
      critic_params: the meta-critic's parameters (value head used).
      critic_opt_state: the meta-critic optimiser's state.
      key: PRNG key of the lifetime.
      update_count: int32 [], agent updates done in this lifetime.
      lr: float32 [], the lifetime's agent learning rate.
      alpha_y: float32 [], the lifetime's KL weight.
    """

    params: Any
    opt_state: Any
    actor: ActorState
    critic_params: Any
    critic_opt_state: Any
    key: chex.PRNGKey
    update_count: chex.Array
    lr: chex.Array
    alpha_y: chex.Array


@struct.dataclass
class OfflineState:
    """Everything that changes during offline discovery.

    Attributes:
      eta: the objective's meta-parameters (for ES: the search mean).
      meta_opt_state: meta-Adam state (grad; None for es).
      lifetimes: per environment group, a LifetimeState batched [L_g] (grad; () for es).
      es_state: the evosax state (es; None for grad).
      key: PRNG key.
      step: int32 [], meta-steps done.
    """

    eta: Any
    meta_opt_state: Any
    lifetimes: tuple
    es_state: Any
    key: chex.PRNGKey
    step: chex.Array


@dataclasses.dataclass(frozen=True, eq=False)
class EnvGroup:
    """One environment of the set with its agent and meta-critic networks."""

    name: str
    env: Environment
    agent: Agent
    critic: Agent
    size: int  # lifetimes (grad) or antithetic pairs (es) of this environment
    offset: int  # index of its first lifetime / pair
    reference: tuple[float, float] | None = None  # (random return, A2C return) for ES normalisation


def split_evenly(total: int, parts: int) -> list[int]:
    """Sizes of ``parts`` consecutive groups covering ``total`` (differ by at most 1)."""
    base, rest = divmod(total, parts)
    return [base + (1 if i < rest else 0) for i in range(parts)]


def _log_uniform(key: chex.PRNGKey, low: float, high: float, shape=()) -> chex.Array:
    return jnp.exp(jax.random.uniform(key, shape, minval=math.log(low), maxval=math.log(high)))


def _tree_where(cond: chex.Array, a: Any, b: Any) -> Any:
    def pick(x, y):
        c = jnp.reshape(cond, cond.shape + (1,) * (x.ndim - cond.ndim))
        return jnp.where(c, x, y)

    return jax.tree.map(pick, a, b)


def _strong(x: Any) -> chex.Array:
    """``x`` as a strongly typed array (Python scalars get the canonical dtype)."""
    dtype = x.dtype if hasattr(x, "dtype") else jax.dtypes.canonicalize_dtype(np.asarray(x).dtype)
    return jnp.asarray(x, dtype)


def _normalise(x: chex.Array, eps: float = 1e-8) -> chex.Array:
    return (x - jnp.mean(x)) / (jnp.std(x) + eps)


def es_algorithm_class(name: str) -> type:
    """The evosax algorithm class called ``name``; UnknownNameError if evosax has none."""
    from evosax import algorithms as evo

    if name not in evo.algorithms:
        raise UnknownNameError(f"unknown evosax algorithm {name!r}; e.g. Open_ES, SNES, CMA_ES, Sep_CMA_ES, PGPE")
    return evo.algorithms[name]


def make_es_algorithm(name: str, population_size: int, solution: Any, std: float, lr: float):
    """Builds the evosax algorithm ``name`` for ``solution`` (a pytree); returns (algorithm, params).

    ``std`` replaces evosax's ``std_init`` (default 1.0, far too large for
    network weights); algorithms that take an optax optimiser get Adam(``lr``).
    """
    cls = es_algorithm_class(name)
    accepted = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {"population_size": population_size, "solution": solution}
    if "optimizer" in accepted:
        kwargs["optimizer"] = optax.adam(lr)
    if "std_schedule" in accepted:
        kwargs["std_schedule"] = optax.constant_schedule(std)
    algorithm = cls(**kwargs)
    params = algorithm.default_params
    if hasattr(params, "std_init"):
        params = params.replace(std_init=jnp.asarray(std, jnp.float32))
    return algorithm, params


# --------------------------------------------------------------------------- trainer


@dataclasses.dataclass(frozen=True, eq=False)
class OfflineTrainer:
    """Structure of offline discovery; ``init(key)`` and ``step(state)`` are pure.

    Create with ``OfflineTrainer.create(objective, config)``. Hashed by
    identity, so methods can be jitted with ``self`` static; ``jit_step`` is
    the step compiled once.
    """

    objective: Objective
    config: OfflineConfig
    groups: tuple[EnvGroup, ...]
    agent_tx: optax.GradientTransformation
    critic_tx: optax.GradientTransformation
    meta_tx: optax.GradientTransformation
    es: Any = None
    es_params: Any = None
    network: NetworkConfig = NetworkConfig()

    @classmethod
    def create(
        cls,
        objective: Objective,
        config: OfflineConfig,
        network: NetworkConfig = NetworkConfig(),
        references: dict[str, tuple[float, float]] | None = None,
    ) -> OfflineTrainer:
        """Builds the trainer. For ES, ``references[env] = (random, a2c)`` returns
        normalise fitness; missing ones are measured with ``reference_returns``."""
        config.validate()
        if not objective.is_learned:
            raise InvalidConfigError(f"objective {objective.name!r} has no meta-parameters to discover")
        names = list(config.envs)
        sizes = split_evenly(config.num_lifetimes, len(names))
        if config.method == "es":
            references = dict(references or {})
            missing = [n for n in names if n not in references]
            if missing:
                references.update(reference_returns(missing, config))
        groups, offset = [], 0
        for name, size in zip(names, sizes):
            env = envs_lib.make(name)  # a toy environment (checked by config.validate)
            agent = make_agent(env.spec, network, heads=objective.heads)
            critic = make_agent(env.spec, network)
            ref = tuple(references[name]) if config.method == "es" else None
            groups.append(EnvGroup(name, env, agent, critic, size, offset, ref))
            offset += size
        agent_tx = make_optimizer(
            OptimizerConfig(config.agent_optimizer, 1.0, max_grad_norm=config.agent_max_grad_norm)
        )
        critic_tx = optax.adam(config.critic_lr)
        chain = [optax.clip_by_global_norm(config.meta_grad_clip)] if config.meta_grad_clip > 0 else []
        meta_tx = optax.chain(*chain, optax.adam(config.meta_lr))
        es = es_params = None
        if config.method == "es":
            solution = objective.init(jax.random.PRNGKey(0))
            es, es_params = make_es_algorithm(
                config.es_algorithm, 2 * config.num_lifetimes, solution, config.es_std, config.es_lr
            )
        return cls(objective, config, tuple(groups), agent_tx, critic_tx, meta_tx, es, es_params, network)

    # -- properties --------------------------------------------------------
    @property
    def beta0(self) -> float:
        if self.config.meta_entropy_weight is not None:
            return float(self.config.meta_entropy_weight)
        return float(getattr(self.objective.config, "beta0", 0.05))

    @property
    def agent_steps_per_meta_step(self) -> int:
        """Environment steps taken by all agents in one meta-step."""
        c = self.config
        per_rollout = c.num_envs * c.unroll_length
        if c.method == "grad":
            return c.num_lifetimes * (c.inner_updates + 1) * per_rollout
        return 2 * c.num_lifetimes * c.lifetime_updates * per_rollout

    # -- agents --------------------------------------------------------------
    def _agent_loss(self, group: EnvGroup, params: Any, eta: Eta, rollout: Rollout, alpha_y: chex.Array):
        agent_out = group.agent.apply(params, rollout.observation)
        if hasattr(self.objective, "agent_loss_with"):
            return self.objective.agent_loss_with(eta, rollout, agent_out, alpha_y)
        return self.objective.agent_loss(eta, rollout, agent_out)

    def agent_update(self, group: EnvGroup, params, opt_state, eta, rollout, lr, alpha_y):
        """theta' = theta - lr * optimiser(grad_theta L(theta, eta)); differentiable in eta.

        A non-finite gradient skips the update (metric ``nonfinite_skipped``, training/longrun.py).
        """
        grads, metrics = jax.grad(functools.partial(self._agent_loss, group), has_aux=True)(
            params, eta, rollout, alpha_y
        )
        updates, new_opt_state = self.agent_tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, jax.tree.map(lambda u: lr * u, updates))
        (params, opt_state), skipped = guarded_apply(grads, (new_params, new_opt_state), (params, opt_state))
        return params, opt_state, dict(metrics, **{SKIP_KEY: skipped})

    def _act(self, group: EnvGroup, params, actor: ActorState, key) -> tuple[ActorState, Rollout]:
        return unroll(
            group.env, group.agent.apply, jax.lax.stop_gradient(params), actor, key, self.config.unroll_length
        )

    def init_lifetime(self, group: EnvGroup, key: chex.PRNGKey, age: chex.Array | int = 0) -> LifetimeState:
        """A fresh agent, meta-critic, task instance and hyper-parameters."""
        c = self.config
        k_params, k_critic, k_env, k_lr, k_alpha, key = jax.random.split(key, 6)
        params = group.agent.init(k_params)
        critic_params = group.critic.init(k_critic)
        actor = reset_actors(group.env, k_env, c.num_envs)
        return LifetimeState(
            params=params,
            opt_state=self.agent_tx.init(params),
            actor=actor,
            critic_params=critic_params,
            critic_opt_state=self.critic_tx.init(critic_params),
            key=key,
            update_count=jnp.asarray(age, jnp.int32),
            lr=_log_uniform(k_lr, *c.lr_range),
            alpha_y=_log_uniform(k_alpha, *c.alpha_y_range),
        )

    # -- init ----------------------------------------------------------------
    def init(self, key: chex.PRNGKey) -> OfflineState:
        """The initial state: a random objective and (grad) staggered fresh lifetimes."""
        c = self.config
        k_eta, k_life, k_es, key = jax.random.split(key, 4)
        eta = self.objective.init(k_eta)
        if c.method == "grad":
            lifetimes = []
            for g, group in enumerate(self.groups):
                keys = jax.random.split(jax.random.fold_in(k_life, g), group.size)
                # Stagger ages (multiples of K) so lifetime restarts are spread out.
                ages = (np.arange(group.size) * c.lifetime_updates // group.size) // c.inner_updates * c.inner_updates
                lifetimes.append(
                    jax.vmap(functools.partial(self.init_lifetime, group))(keys, jnp.asarray(ages, jnp.int32))
                )
            return OfflineState(eta, self.meta_tx.init(eta), tuple(lifetimes), None, key, jnp.zeros([], jnp.int32))
        es_state = self.es.init(k_es, eta, self.es_params)
        # evosax keeps Python scalars (generation counter, best fitness) in its state;
        # make every leaf a strongly typed array so the jitted step never re-traces.
        es_state = jax.tree.map(_strong, es_state)
        return OfflineState(eta, None, (), es_state, key, jnp.zeros([], jnp.int32))

    # -- the step ----------------------------------------------------------------
    def step(self, state: OfflineState) -> tuple[OfflineState, Metrics]:
        """One meta-step of the configured method (pure; jit it, or use ``jit_step``)."""
        if self.config.method == "grad":
            return self.grad_step(state)
        return self.es_step(state)

    @functools.cached_property
    def jit_init(self) -> Callable[[chex.PRNGKey], OfflineState]:
        return jax.jit(self.init)

    @functools.cached_property
    def jit_step(self) -> Callable[[OfflineState], tuple[OfflineState, Metrics]]:
        return jax.jit(self.step)

    # ---- grad ------------------------------------------------------------------
    def lifetime_meta_loss(self, group: EnvGroup, eta: Eta, life: LifetimeState):
        """Meta-loss of one lifetime after K agent updates with ``eta``; aux: the advanced lifetime.

        ``L = -mean(log pi_K(a|s) A_norm) - beta0 H(pi_K) + meta_regulariser``
        on a fresh rollout of the updated agent (Oh et al. 2020, eq. 2).
        """
        c = self.config

        def inner(carry, _):
            params, opt_state, actor, key = carry
            key, k = jax.random.split(key)
            actor, rollout = self._act(group, params, actor, k)
            params, opt_state, metrics = self.agent_update(
                group, params, opt_state, eta, rollout, life.lr, life.alpha_y
            )
            return (params, opt_state, actor, key), (rollout, metrics)

        (params, opt_state, actor, key), (rollouts, inner_metrics) = jax.lax.scan(
            inner, (life.params, life.opt_state, life.actor, life.key), None, length=c.inner_updates
        )
        key, k = jax.random.split(key)
        actor, rollout = self._act(group, params, actor, k)
        out = group.agent.apply(params, rollout.observation)
        value = jax.lax.stop_gradient(group.critic.apply(life.critic_params, rollout.observation).value)
        r_t, discount_t = rollout.reward[1:], c.critic_gamma * rollout.discount[1:]
        adv = lambda_returns(r_t, discount_t, value[1:], c.critic_lambda) - value[:-1]
        adv = _normalise(adv)
        logits = out.logits[:-1]
        pg_loss = -jnp.mean(log_prob(logits, rollout.action[:-1]) * adv)
        ent = jnp.mean(entropy(logits))
        reg, reg_metrics = self.objective.meta_regulariser(eta, rollout, out)
        loss = pg_loss - self.beta0 * ent + reg
        all_rollouts = jax.tree.map(lambda xs, x: jnp.concatenate([xs, x[None]], 0), rollouts, rollout)
        life = life.replace(
            params=params, opt_state=opt_state, actor=actor, key=key, update_count=life.update_count + c.inner_updates
        )
        metrics = {
            "meta_loss": loss,
            "meta_pg_loss": pg_loss,
            "policy_entropy": ent,
            **{f"meta_{k}": v for k, v in reg_metrics.items()},
            **{f"agent_{k}": jnp.mean(v) for k, v in inner_metrics.items()},
        }
        return loss, (life, jax.lax.stop_gradient(all_rollouts), metrics)

    def train_critic(self, group: EnvGroup, life: LifetimeState, rollouts: Rollout) -> LifetimeState:
        """TD(lambda) value regression of the meta-critic on each rollout [K+1, T+1, B] in turn."""
        c = self.config

        def body(carry, rollout):
            params, opt_state = carry

            def loss_fn(p):
                v = group.critic.apply(p, rollout.observation).value
                target = lambda_returns(
                    rollout.reward[1:],
                    c.critic_gamma * rollout.discount[1:],
                    jax.lax.stop_gradient(v[1:]),
                    c.critic_lambda,
                )
                return 0.5 * jnp.mean(jnp.square(jax.lax.stop_gradient(target) - v[:-1]))

            grads = jax.grad(loss_fn)(params)
            updates, opt_state = self.critic_tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, opt_state), _ = jax.lax.scan(body, (life.critic_params, life.critic_opt_state), rollouts)
        return life.replace(critic_params=params, critic_opt_state=opt_state)

    def group_meta_grads(self, group: EnvGroup, eta: Eta, lives: LifetimeState):
        """Per-lifetime meta-gradients [L_g, ...] of one group, and advanced lifetimes."""
        grad_fn = jax.grad(functools.partial(self.lifetime_meta_loss, group), has_aux=True)
        grads, (lives_new, rollouts, metrics) = jax.vmap(grad_fn, in_axes=(None, 0))(eta, lives)
        return grads, lives_new, rollouts, metrics

    def meta_gradient(self, state: OfflineState):
        """The meta-gradient (mean of per-lifetime meta-gradients over the lifetime axis only).

        Returns ``(meta_grad, per_lifetime_grads [L, ...], advanced lifetimes
        (critics trained, not yet restarted), metrics)``.
        """
        all_grads, new_lifetimes, metrics = [], [], {}
        for group, lives in zip(self.groups, state.lifetimes):
            grads, lives, rollouts, m = self.group_meta_grads(group, state.eta, lives)
            lives = jax.vmap(functools.partial(self.train_critic, group))(lives, rollouts)
            all_grads.append(grads)
            new_lifetimes.append(lives)
            stats = jax.vmap(episode_stats)(jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), rollouts))
            count = jnp.sum(stats["episode_count"])
            metrics[f"return/{group.name}"] = jnp.sum(stats["episode_return_sum"]) / jnp.maximum(count, 1.0)
            for k, v in m.items():
                metrics.setdefault(k, []).append(v)
        # Average over the lifetime axis only: concatenate groups, mean over axis 0.
        per_lifetime = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *all_grads)
        meta_grad = jax.tree.map(lambda x: jnp.mean(x, axis=0), per_lifetime)
        metrics = {k: jnp.mean(jnp.concatenate(v)) if isinstance(v, list) else v for k, v in metrics.items()}
        return meta_grad, per_lifetime, tuple(new_lifetimes), metrics

    def grad_step(self, state: OfflineState) -> tuple[OfflineState, Metrics]:
        c = self.config
        key, k_restart = jax.random.split(state.key)
        meta_grad, _, lifetimes, metrics = self.meta_gradient(state)
        restarted = []
        for g, (group, lives) in enumerate(zip(self.groups, lifetimes)):
            # Restart lifetimes that reached their length with fresh agents.
            done = lives.update_count >= c.lifetime_updates
            keys = jax.random.split(jax.random.fold_in(k_restart, g), group.size)
            fresh = jax.vmap(functools.partial(self.init_lifetime, group))(keys)
            restarted.append(_tree_where(done, fresh, lives))
        updates, meta_opt_state = self.meta_tx.update(meta_grad, state.meta_opt_state, state.eta)
        eta = optax.apply_updates(state.eta, updates)
        # A non-finite meta-gradient skips the meta-update (eta and meta-Adam kept); lifetimes go on.
        (eta, meta_opt_state), meta_skipped = guarded_apply(
            meta_grad, (eta, meta_opt_state), (state.eta, state.meta_opt_state)
        )
        metrics["nonfinite_meta_skipped"] = meta_skipped
        metrics[SKIP_KEY] = jnp.maximum(meta_skipped, (metrics[f"agent_{SKIP_KEY}"] > 0).astype(jnp.float32))
        metrics["meta_grad_norm"] = optax.tree.norm(meta_grad)
        metrics.update(self.objective.describe_eta(eta))
        new_state = state.replace(
            eta=eta, meta_opt_state=meta_opt_state, lifetimes=tuple(restarted), key=key, step=state.step + 1
        )
        return new_state, metrics

    # ---- es --------------------------------------------------------------------
    def member_lifetime(self, group: EnvGroup, eta: Eta, key: chex.PRNGKey) -> tuple[chex.Array, chex.Array]:
        """Trains a fresh agent for ``lifetime_updates`` updates with ``eta``.

        Returns (mean episode return over the last ``es_fitness_fraction`` of
        the lifetime (NaN if none ended), episodes counted).
        """
        c = self.config
        life = self.init_lifetime(group, key)

        def body(carry, _):
            params, opt_state, actor, k = carry
            k, k_act = jax.random.split(k)
            actor, rollout = self._act(group, params, actor, k_act)
            params, opt_state, _ = self.agent_update(group, params, opt_state, eta, rollout, life.lr, life.alpha_y)
            return (params, opt_state, actor, k), episode_stats(rollout)

        _, stats = jax.lax.scan(
            body, (life.params, life.opt_state, life.actor, life.key), None, length=c.lifetime_updates
        )
        start = min(int(math.floor((1.0 - c.es_fitness_fraction) * c.lifetime_updates)), c.lifetime_updates - 1)
        total = jnp.sum(stats["episode_return_sum"][start:])
        count = jnp.sum(stats["episode_count"][start:])
        return jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan), count

    def es_step(self, state: OfflineState) -> tuple[OfflineState, Metrics]:
        c = self.config
        half = c.num_lifetimes
        key, k_ask, k_eval, k_tell = jax.random.split(state.key, 4)
        population, es_state = self.es.ask(k_ask, state.es_state, self.es_params)
        pair_keys = jax.random.split(k_eval, half)
        fitness = jnp.zeros((2 * half,), jnp.float32)
        normalised = jnp.zeros((2 * half,), jnp.float32)
        metrics: dict[str, chex.Array] = {}
        for group in self.groups:
            pairs = np.arange(group.offset, group.offset + group.size)
            members = np.concatenate([pairs, pairs + half])  # evosax antithetic layout: j and j + P/2
            etas = jax.tree.map(lambda x: x[members], population)
            keys = pair_keys[np.concatenate([pairs, pairs])]  # a pair shares task instance and seed
            etas, keys = distributed.constrain_leading((etas, keys), 2 * group.size)  # members over devices
            returns, counts = jax.vmap(functools.partial(self.member_lifetime, group))(etas, keys)
            random_return, a2c_return = group.reference
            scale = max(a2c_return - random_return, MIN_SCORE_SCALE)
            # No finished episode scores 0; a non-finite return (diverged agent) stays non-finite and skips the generation.
            score = jnp.where(counts == 0, 0.0, (returns - random_return) / scale)
            normalised = normalised.at[members].set(score)
            metrics[f"return/{group.name}"] = jnp.nanmean(returns)
            metrics[f"score/{group.name}"] = jnp.mean(score)
        fitness = -normalised  # evosax minimises
        es_state, es_metrics = self.es.tell(k_tell, population, fitness, es_state, self.es_params)
        # evosax returns some leaves weakly typed (std); keep the state's types fixed (no re-trace).
        es_state = jax.tree.map(lambda new, old: jnp.asarray(new, old.dtype), es_state, state.es_state)
        # A non-finite fitness skips the generation (search state kept).
        es_state, skipped = guarded_apply(fitness, es_state, state.es_state)
        eta = self.es.get_mean(es_state)
        metrics[SKIP_KEY] = skipped
        metrics.update(
            fitness_mean=jnp.mean(normalised),
            fitness_max=jnp.max(normalised),
            fitness_min=jnp.min(normalised),
            meta_loss=-jnp.mean(normalised),
        )
        metrics.update(self.objective.describe_eta(eta))
        return state.replace(eta=eta, es_state=es_state, key=key, step=state.step + 1), metrics


# --------------------------------------------------------------------------- references and evaluation


def _uniform_apply(num_actions: int, obs_ndim: int):
    def apply(params, obs):
        lead = obs.shape[: obs.ndim - obs_ndim]
        logits = jnp.zeros(lead + (num_actions,), jnp.float32)
        return AgentOutput(
            logits=logits, value=jnp.zeros(lead, jnp.float32), y_logits=jnp.zeros(lead + (0,), jnp.float32)
        )

    return apply


_REFERENCE_CACHE: dict[tuple, tuple[float, float]] = {}
_EVAL_BASELINES: dict = {}  # A2C / random baselines reused across periodic evaluations


def random_return(name: str, num_envs: int = 64, num_steps: int = 2000, seed: int = 0) -> float:
    """Expected episode return of the uniform-random policy (the spec's, or measured)."""
    env = envs_lib.make(name)
    if env.spec.random_return is not None:
        return float(env.spec.random_return)
    num_steps = max(num_steps, 2 * env.spec.max_episode_steps)
    apply = _uniform_apply(env.spec.num_actions, len(env.spec.observation_shape))

    @jax.jit
    def run(key):
        k_reset, k_run = jax.random.split(key)
        actor = reset_actors(env, k_reset, num_envs)
        _, rollout = unroll(env, apply, None, actor, k_run, num_steps)
        return episode_stats(rollout)

    stats = run(jax.random.PRNGKey(seed))
    count = float(stats["episode_count"])
    return float(stats["episode_return_sum"]) / count if count else 0.0


def a2c_return(
    name: str,
    num_envs: int,
    unroll_length: int,
    updates: int,
    seeds: int = 4,
    fraction: float = 0.5,
    seed: int = 0,
    optimizer: OptimizerConfig | None = None,
) -> float:
    """Mean episode return of plain A2C in the last ``fraction`` of ``updates`` updates,
    averaged over ``seeds`` agents (``optimizer`` None = the environment preset's)."""
    import objectives
    from training.actor_critic import ActorCriticTrainer, TrainConfig
    from training.presets import default_preset
    from training.train import final_return

    env = envs_lib.make(name)
    preset = default_preset(env.spec)
    objective = objectives.make("a2c")
    trainer = ActorCriticTrainer.create(
        env,
        make_agent(env.spec),
        objective,
        TrainConfig(num_envs, unroll_length, optimizer or preset.config.optimizer),
        total_updates=updates,
    )
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(seed, seed + seeds))
    _, metrics = trainer.run_seeds(trainer.init_seeds(keys), {}, updates)
    per_seed = final_return(jax.tree.map(np.asarray, metrics), fraction)
    finite = per_seed[np.isfinite(per_seed)]
    return float(finite.mean()) if finite.size else random_return(name)


def reference_returns(names: list[str], config: OfflineConfig, seeds: int = 4) -> dict[str, tuple[float, float]]:
    """(random, A2C) returns of each environment on the ES lifetime budget (cached per process)."""
    out = {}
    for name in names:
        cache_key = (
            name,
            config.num_envs,
            config.unroll_length,
            config.lifetime_updates,
            config.es_fitness_fraction,
            seeds,
            repr(config.agent_optimizer_config()),
        )
        if cache_key not in _REFERENCE_CACHE:
            rand = random_return(name)
            a2c = a2c_return(
                name,
                config.num_envs,
                config.unroll_length,
                config.lifetime_updates,
                seeds,
                config.es_fitness_fraction,
                optimizer=config.agent_optimizer_config(),
            )
            _REFERENCE_CACHE[cache_key] = (rand, a2c)
        out[name] = _REFERENCE_CACHE[cache_key]
    return out


def quick_evaluate(
    objective: Objective,
    eta: Eta,
    env_names: list[str],
    updates: int,
    seeds: int = 4,
    num_envs: int = 16,
    unroll_length: int = 20,
    optimizer: OptimizerConfig = OptimizerConfig("adam", 3e-2),
    seed: int = 1000,
    fraction: float = 0.1,
) -> dict[str, Any]:
    """Trains fresh agents with the frozen ``eta`` and scores them against A2C and random.

    Fallback used when ``evaluation.evaluate`` is not available. Returns
    ``{"results": {env: {return, a2c_return, random_return, a2c_normalised}},
    "mean_a2c_normalised": x}``; returns are the mean episode return in the
    last ``fraction`` of ``updates`` updates (mean over ``seeds`` agents); A2C
    uses the same optimiser and budget.
    """
    from training.actor_critic import ActorCriticTrainer, TrainConfig
    from training.train import final_return

    frozen = jax.lax.stop_gradient(eta)
    results = {}
    for name in env_names:
        env = envs_lib.make(name)
        agent = make_agent(env.spec, heads=objective.heads)
        trainer = ActorCriticTrainer.create(
            env, agent, objective, TrainConfig(num_envs, unroll_length, optimizer), total_updates=updates
        )
        keys = jax.vmap(jax.random.PRNGKey)(np.arange(seed, seed + seeds))
        _, metrics = trainer.run_seeds(trainer.init_seeds(keys), frozen, updates)
        per_seed = final_return(jax.tree.map(np.asarray, metrics), fraction)
        finite = per_seed[np.isfinite(per_seed)]
        ret = float(finite.mean()) if finite.size else float("nan")
        cache_key = ("eval", name, num_envs, unroll_length, updates, seeds, fraction, repr(optimizer))
        if cache_key not in _REFERENCE_CACHE:
            _REFERENCE_CACHE[cache_key] = (
                random_return(name),
                a2c_return(name, num_envs, unroll_length, updates, seeds, fraction, seed, optimizer),
            )
        rand, a2c = _REFERENCE_CACHE[cache_key]
        score = (ret - rand) / (a2c - rand) if abs(a2c - rand) > 1e-8 and np.isfinite(ret) else float("nan")
        results[name] = {"return": ret, "a2c_return": a2c, "random_return": rand, "a2c_normalised": score}
    scores = [r["a2c_normalised"] for r in results.values() if np.isfinite(r["a2c_normalised"])]
    return {"results": results, "mean_a2c_normalised": float(np.mean(scores)) if scores else float("nan")}


# --------------------------------------------------------------------------- host runner


@dataclasses.dataclass(frozen=True)
class OfflineOptions:
    """What ``lpg discover offline`` needs (the CLI builds it; Python users may too).

    Attributes:
      envs: environment spec: names, globs (``gridworld/*``) and named sets.
      method: grad or es.
      out: output folder.
      meta_steps: meta-steps (grad updates / ES generations).
      seed: random seed.
      resume: continue from the newest training checkpoint in ``out``.
      objective: the learned objective to discover (``lpg``).
      objective_config: objective config overrides as KEY=VALUE strings.
      config: the remaining discovery settings (``envs``, ``method``,
        ``meta_steps`` and ``seed`` above replace its fields).
      eval_every: evaluate the objective every this many meta-steps, and the
        random initial objective before the first (0 = only at the end).
      eval_updates: agent updates of each evaluation run (None = lifetime_updates).
      eval_seeds: agents per environment in each evaluation.
      checkpoint_every: write the objective and training checkpoints every
        this many meta-steps (0 = only at the end).
      log_every: log metrics every this many meta-steps.
      max_nonfinite_skips: stop after this many consecutive meta-steps whose
        meta-gradient (grad) or fitness (es) was not finite and was skipped.
      progress: show a progress bar.
    """

    envs: str = "chain/short,gridworld/sparse"
    method: str = "grad"
    out: str = "runs/discover"
    meta_steps: int = 200
    seed: int = 0
    resume: bool = False
    objective: str = "lpg"
    objective_config: tuple[str, ...] = ()
    config: OfflineConfig = OfflineConfig()
    eval_every: int = 0
    eval_updates: int | None = None
    eval_seeds: int = 4
    checkpoint_every: int = 50
    log_every: int = 1
    max_nonfinite_skips: int = 10
    progress: bool = True


def _checkpoint_module():
    try:
        from lpg import checkpoint
    except ImportError:
        return None
    return distributed.primary_checkpoints(checkpoint)


def evaluate(
    objective: Objective, eta: Eta, config: OfflineConfig, updates: int, seeds: int, seed: int = 1000
) -> dict[str, Any]:
    """Evaluates a frozen objective on ``config.envs`` (evaluation.evaluate if available, else ``quick_evaluate``).

    Returns ``{"results": {env: {...a2c_normalised}}, "mean_a2c_normalised": x, "evaluator": name}``.
    """
    steps = updates * config.num_envs * config.unroll_length
    try:
        from evaluation.evaluate import evaluate_objective
    except ImportError:
        evaluate_objective = None
    if evaluate_objective is not None:
        from training.actor_critic import TrainConfig

        train_config = TrainConfig(config.num_envs, config.unroll_length, config.agent_optimizer_config())
        result = dict(
            evaluate_objective(
                objective,
                eta,
                list(config.envs),
                steps,
                seeds,
                seed,
                train_config=train_config,
                baseline_cache=_EVAL_BASELINES,
            )
        )
        if result.get("mean_a2c_normalised") is None:
            result["mean_a2c_normalised"] = float("nan")
        result["evaluator"] = "evaluation.evaluate.evaluate_objective"
        return result
    result = quick_evaluate(
        objective,
        eta,
        list(config.envs),
        updates,
        seeds,
        config.num_envs,
        config.unroll_length,
        config.agent_optimizer_config(),
        seed,
    )
    result["evaluator"] = "training.offline.quick_evaluate"
    return result


def build_offline(options: OfflineOptions) -> tuple[Objective, OfflineConfig]:
    """Validates ``options`` and builds the objective and the discovery config."""
    import objectives
    from training.train import parse_overrides

    names = envs_lib.resolve_env_spec(options.envs)
    base = objectives.make(options.objective)
    objective = objectives.make(options.objective, **parse_overrides(options.objective_config, base.config))
    if not objective.is_learned:
        raise InvalidConfigError(f"objective {options.objective!r} has no meta-parameters to discover; use `lpg train`")
    config = dataclasses.replace(
        options.config, envs=tuple(names), method=options.method, meta_steps=options.meta_steps, seed=options.seed
    )
    config.validate()
    if options.eval_seeds <= 0:
        raise InvalidConfigError(f"eval_seeds must be positive, got {options.eval_seeds}")
    if options.eval_updates is not None and options.eval_updates <= 0:
        raise InvalidConfigError(f"eval_updates must be positive, got {options.eval_updates}")
    for name, value in (
        ("eval_every", options.eval_every),
        ("checkpoint_every", options.checkpoint_every),
        ("log_every", options.log_every),
    ):
        if value < 0:
            raise InvalidConfigError(f"{name} must be >= 0, got {value}")
    validate_longrun(0.0, options.max_nonfinite_skips)
    return objective, config


def discover_offline(options: OfflineOptions) -> dict[str, Any]:
    """Runs offline discovery as ``options`` say and writes the run folder; returns the summary.

    Writes to ``options.out``: config.json, metrics.jsonl, TensorBoard events,
    meta_training.png (meta-loss or fitness and per-env returns against
    meta-steps), evaluation.png when evaluations ran, ``objective/`` (the
    objective checkpoint, periodically and at the end), ``objective_best/``
    (the objective with the best mean A2C-normalised score among the periodic
    and final evaluations, with ``selected_at_meta_step`` in its metadata:
    meta-training oscillates, so the last objective is not always the best),
    ``training_state/`` (for ``--resume``) and summary.json.
    """
    import lpg
    from lpg.progress import ProgressBar
    from lpg.run_io import finished_run, plot_lines, to_jsonable

    objective, config = build_offline(options)
    # meta_steps is not part of the run's identity, so --resume can extend a run.
    identity = ("resume", "progress", "config", "meta_steps", "max_nonfinite_skips")
    run_config = {
        "command": "discover offline",
        "options": {k: v for k, v in dataclasses.asdict(options).items() if k not in identity},
        "objective": objective.name,
        "objective_config": objective.config_dict(),
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "meta_steps"},
    }
    stored = distributed.on_primary(  # process 0 owns the run folder; every process returns its summary
        lambda: finished_run(
            options.out, run_config, resume=options.resume, matches=lambda s: s.get("meta_steps") == config.meta_steps
        )
    )
    if stored is not None:
        return stored
    ckpt = _checkpoint_module()
    if options.resume and ckpt is not None:  # a missing training checkpoint is reported before anything is written
        from lpg.errors import CheckpointError

        if ckpt.latest_training_step(f"{options.out}/training_state") is None:
            raise CheckpointError(
                f"--resume: no training checkpoint in {options.out}/training_state; run without --resume to start"
            )
    run = distributed.prepare_run_dir(options.out, run_config)  # process 0 writes the run folder
    train_dir = run.path / "training_state"
    eval_updates = options.eval_updates or config.lifetime_updates

    start = time.perf_counter()
    trainer = OfflineTrainer.create(objective, config)
    state = distributed.shard_offline_state(trainer.jit_init(jax.random.PRNGKey(config.seed)))
    extra: dict[str, Any] = {}
    if not options.resume and ckpt is not None and ckpt.latest_training_step(train_dir) is not None:
        from lpg.errors import OutputDirError

        raise OutputDirError(
            f"{str(run.path)!r} already holds a discovery run; add --resume to continue it, or choose a new --out"
        )
    if options.resume:
        if ckpt is None:
            raise InvalidConfigError("--resume needs lpg.checkpoint (not available in this installation)")
        restored = ckpt.restore_training_state(train_dir, state)
        if restored is None:
            raise InvalidConfigError(
                f"--resume: no training checkpoint in {str(train_dir)!r}; run without --resume to start"
            )
        state, extra = distributed.shard_offline_state(restored[-2]), restored[-1]
    elapsed_before = float(extra.get("wall_s", 0.0))
    evaluations: list[dict[str, Any]] = list(extra.get("evaluations", []))
    best: dict[str, Any] = dict(extra.get("best") or {})  # {"meta_step", "mean_a2c_normalised"} of objective_best/
    done = int(state.step)

    def wall() -> float:
        return elapsed_before + time.perf_counter() - start

    def metadata(final_eval: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "objective": objective.name,
            "objective_config": objective.config_dict(),
            "y_size": objective.heads.y_size,
            "framework_version": lpg.__version__,
            "envs": list(config.envs),
            "env_spec": options.envs,
            "method": config.method,
            "meta_steps": int(state.step),
            "seed": config.seed,
            "wall_s": wall(),
            "offline_config": to_jsonable(config),
            "agent_optimizer": to_jsonable(config.agent_optimizer_config()),
            "alpha_y": config.eval_alpha_y,
            "num_envs": config.num_envs,
            "unroll_length": config.unroll_length,
            "eval_scores": final_eval,
        }

    def save(final_eval: dict[str, Any] | None, replace: bool = False) -> None:
        if ckpt is None:
            return
        ckpt.save_objective(run.path / "objective", objective, state.eta, metadata(final_eval))
        ckpt.save_training_state(
            train_dir,
            int(state.step),
            state,
            {"wall_s": wall(), "evaluations": evaluations, "best": best, "nonfinite_skips": guard.total_skips},
            replace=replace,
        )
        guard.mark_saved(int(state.step))

    def keep_best(result: dict[str, Any]) -> None:
        """Saves ``objective_best/`` when ``result`` (an evaluation of the current eta) beats the best so far."""
        score = result.get("mean_a2c_normalised")
        if ckpt is None or score is None or not np.isfinite(score):
            return
        if best and score <= best["mean_a2c_normalised"]:
            return
        best.update(meta_step=int(state.step), mean_a2c_normalised=float(score))
        meta = metadata(result)
        meta["selected_at_meta_step"] = int(state.step)
        meta["selection"] = "best mean A2C-normalised score among the periodic and final evaluations of this run"
        ckpt.save_objective(run.path / "objective_best", objective, state.eta, meta)

    def run_eval() -> dict[str, Any]:
        result = evaluate(objective, distributed.host_local(state.eta), config, eval_updates, options.eval_seeds)
        keep_best(result)
        row = {"meta_step": int(state.step), "wall_s": wall(), "mean_a2c_normalised": result["mean_a2c_normalised"]}
        row.update({f"eval/{k}": v.get("a2c_normalised") for k, v in result["results"].items()})
        evaluations.append(row)
        run.log(
            int(state.step),
            {k if k.startswith("eval/") else f"eval/{k}": v for k, v in row.items() if k != "meta_step"},
        )
        return result

    history = [row for row in run.read_metrics() if row.get("step", 0) <= done] if options.resume else []
    curve: dict[str, list[tuple[int, float]]] = {}
    for row in history:
        for k, v in row.items():
            if k.startswith(("meta_loss", "fitness_mean", "return/")) and isinstance(v, (int, float)):
                curve.setdefault(k, []).append((row["step"], v))

    label = "fitness" if config.method == "es" else "meta-loss"
    guard = LongRun(
        train_dir,
        resume=options.resume,
        checkpoint_interval_s=0,
        max_nonfinite_skips=options.max_nonfinite_skips,
        what="discover offline",
        unit="meta-steps",
    )
    guard.total_skips = int(extra.get("nonfinite_skips", 0))
    if options.resume:
        guard.mark_saved(done)
    if options.eval_every and done == 0:
        run_eval()  # the random initial objective: where every discovery curve starts
    with (
        guard,
        ProgressBar(f"discover {config.method}", config.meta_steps, "meta-steps", enabled=options.progress) as bar,
    ):
        bar.resume_from(done)
        while done < config.meta_steps:
            state, metrics = trainer.jit_step(state)
            done += 1
            guard.count_skips(done, np.asarray([float(metrics[SKIP_KEY])]))
            skipped = f", skipped {guard.total_skips}" if guard.total_skips else ""
            if options.log_every and (done % options.log_every == 0 or done == config.meta_steps):
                row = {k: float(v) for k, v in jax.device_get(metrics).items()}
                row["wall_s"] = wall()
                row["agent_steps"] = done * trainer.agent_steps_per_meta_step
                row["nonfinite_skips_total"] = guard.total_skips
                run.log(done, row)
                for k, v in row.items():
                    if k.startswith(("meta_loss", "fitness_mean", "return/")):
                        curve.setdefault(k, []).append((done, v))
                value = row.get("fitness_mean", row.get("meta_loss"))
                bar.update(1, (f"{label} {value:.3f}" if value is not None else "") + skipped)
            else:
                bar.update(1)
            if options.eval_every and done % options.eval_every == 0 and done < config.meta_steps:
                run_eval()
            interrupted = guard.signals.requested and done < config.meta_steps
            if (
                options.checkpoint_every and done % options.checkpoint_every == 0 and done < config.meta_steps
            ) or interrupted:
                save(None)
            guard.raise_if_interrupted(done)
    jax.block_until_ready(state.eta)
    if guard.last_saved_step != done:
        save(
            None
        )  # all meta-steps are on disk before the final evaluation: an interrupt there loses only the evaluation
    try:
        with RaiseOnSignals():
            final_eval = run_eval()
    except (SignalStop, KeyboardInterrupt) as stop:
        signum = stop.signum if isinstance(stop, SignalStop) else signal.SIGINT
        raise RunInterrupted(
            f"discover offline stopped by {signal.Signals(signum).name} during the final evaluation; all {done} meta-steps are saved in "
            f"{str(train_dir)!r}; continue with the same command plus --resume (only the evaluation is redone)",
            signum=signum,
        ) from None
    save(
        final_eval, replace=True
    )  # the training state now records the final evaluation (for --resume with more --meta-steps)
    train_wall = wall()

    series = [(k, [x for x, _ in v], [y for _, y in v]) for k, v in sorted(curve.items())]
    if series:
        plot_lines(
            run.path / "meta_training.png",
            series,
            title=f"offline discovery ({config.method})",
            xlabel="meta-step",
            ylabel="value",
        )
    if evaluations:
        plot_lines(
            run.path / "evaluation.png",
            [
                (
                    "mean A2C-normalised",
                    [e["meta_step"] for e in evaluations],
                    [e["mean_a2c_normalised"] for e in evaluations],
                )
            ],
            title="evaluation of the objective during discovery",
            xlabel="meta-step",
            ylabel="A2C-normalised score",
        )
    summary = {
        "method": config.method,
        "envs": list(config.envs),
        "meta_steps": int(state.step),
        "seed": config.seed,
        "wall_s": train_wall,
        "agent_steps": int(state.step) * trainer.agent_steps_per_meta_step,
        "agent_steps_per_s": int(state.step) * trainer.agent_steps_per_meta_step / max(train_wall, 1e-9),
        "evaluation": final_eval,
        "mean_a2c_normalised": final_eval["mean_a2c_normalised"],
        "initial_mean_a2c_normalised": next(
            (e["mean_a2c_normalised"] for e in evaluations if e["meta_step"] == 0), None
        ),
        "evaluations": evaluations,
        "objective_checkpoint": str(run.path / "objective") if ckpt is not None else None,
        "best_objective_checkpoint": str(run.path / "objective_best") if ckpt is not None and best else None,
        "best_meta_step": best.get("meta_step"),
        "best_mean_a2c_normalised": best.get("mean_a2c_normalised"),
        "nonfinite_skips": guard.total_skips,
    }
    run.write_summary(summary)
    run.close()
    return summary


# --------------------------------------------------------------------------- bench


def bench_offline(config: OfflineConfig, objective: Objective, repeats: int = 3) -> dict[str, Any]:
    """Agent steps/s of one meta-step of ``config.method`` and its cost relative to plain A2C.

    The A2C reference trains the same number of agents (grad: the lifetimes for
    K + 1 updates; es: 2 x num_lifetimes agents for ``lifetime_updates``
    updates) with the same batch shape, per environment group, jitted with
    compile time excluded.
    """
    from training.actor_critic import ActorCriticTrainer, TrainConfig

    trainer = OfflineTrainer.create(objective, config, references=dict.fromkeys(config.envs, (0.0, 1.0)))
    state = trainer.jit_init(jax.random.PRNGKey(config.seed))
    state, _ = trainer.jit_step(state)
    jax.block_until_ready(state.eta)
    t = time.perf_counter()
    for _ in range(repeats):
        state, _ = trainer.jit_step(state)
    jax.block_until_ready(state.eta)
    meta_s = (time.perf_counter() - t) / repeats
    steps = trainer.agent_steps_per_meta_step

    import objectives

    a2c = objectives.make("a2c")
    a2c_s = 0.0
    for group in trainer.groups:
        agents = group.size if config.method == "grad" else 2 * group.size
        updates = config.inner_updates + 1 if config.method == "grad" else config.lifetime_updates
        tc = TrainConfig(config.num_envs, config.unroll_length, config.agent_optimizer_config())
        base = ActorCriticTrainer.create(group.env, make_agent(group.env.spec), a2c, tc)
        states = base.init_seeds(jax.vmap(jax.random.PRNGKey)(np.arange(agents)))
        out, _ = base.run_seeds(states, {}, updates)
        jax.block_until_ready(out.params)
        t = time.perf_counter()
        for _ in range(repeats):
            out, _ = base.run_seeds(states, {}, updates)
        jax.block_until_ready(out.params)
        a2c_s += (time.perf_counter() - t) / repeats
    return {
        "method": config.method,
        "envs": list(config.envs),
        "agent_steps_per_meta_step": steps,
        "meta_step_s": meta_s,
        "agent_steps_per_s": steps / meta_s,
        "a2c_equivalent_s": a2c_s,
        "a2c_agent_steps_per_s": steps / a2c_s,
        "meta_step_over_a2c": meta_s / a2c_s,
    }
