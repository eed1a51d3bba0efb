"""The set-up of offline discovery: population, lifetimes, agents, meta-optimiser, ES."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from lpg.errors import UnknownNameError
from lpg.optim import OPTIMIZERS, OptimizerConfig
from lpg.validation import NON_NEGATIVE, POSITIVE_COUNT, POSITIVE_NUMBER, Config, Range

__all__ = ["METHODS", "OfflineConfig", "log_uniform_mean"]

METHODS = ("grad", "es")


def log_uniform_mean(low: float, high: float) -> float:
    """The geometric mean of a log-uniform range: the value used outside discovery."""
    return float(math.sqrt(low * high))


@dataclasses.dataclass(frozen=True)
class OfflineConfig(Config):
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
      min_lifetime_updates: grad: when > 0, each lifetime's length is drawn
        log-uniformly in ``[min_lifetime_updates, lifetime_updates]`` when it
        starts (GROOVE: 10-250 updates), so the objective meets agents of
        every age, including short-lived ones; 0: every lifetime lasts
        ``lifetime_updates``. A lifetime restarts at the first meta-step that
        takes it to its length or beyond (meta-steps advance by K updates).
      inner_updates: K, agent updates per meta-step (grad), differentiated
        through (Oh et al. 2020 / GROOVE: 5).
      agent_optimizer: the agents' optimiser, ``adam`` (meta-differentiable,
        denominator stop-gradiented; the default, because evaluation trains
        agents with the environment preset's Adam, lr 3e-2 for tabular ones)
        or ``sgd`` (LPG/GROOVE's choice for tabular agents, lr ~40).
      lr_range: (low, high) of the agent learning rate, drawn log-uniformly
        per lifetime; its geometric mean (default ~3.2e-2) is the learning
        rate used to evaluate the objective.
      hyper_ranges: (name, low, high) of per-lifetime hyper-parameters of the
        objective (``Objective.lifetime_hypers``, e.g. LPG's ``alpha_y``),
        drawn log-uniformly per lifetime; replaces the objective's default
        range for that name. Names the objective does not declare are refused.
      agent_max_grad_norm: clip each agent gradient to this global norm (0 = off).
      meta_lr: meta-Adam learning rate (grad; GROOVE 1e-4 with 512 lifetimes;
        small CPU populations learn faster with ~1e-3).
      meta_grad_clip: global-norm clip of the meta-gradient (GROOVE 0.5; 0 = off).
      meta_entropy_weight: beta0, the policy-entropy bonus of the
        meta-objective; None = the objective's ``meta_entropy_weight``.
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

    WHAT = "offline discovery"
    RANGES = {
        "num_lifetimes": POSITIVE_COUNT,
        "num_envs": POSITIVE_COUNT,
        "unroll_length": POSITIVE_COUNT,
        "lifetime_updates": POSITIVE_COUNT,
        "min_lifetime_updates": Range(0, integer=True, text=">= 0"),
        "inner_updates": POSITIVE_COUNT,
        "agent_max_grad_norm": NON_NEGATIVE,
        "meta_lr": POSITIVE_NUMBER,
        "meta_grad_clip": NON_NEGATIVE,
        "meta_entropy_weight": NON_NEGATIVE,
        "critic_lr": POSITIVE_NUMBER,
        "critic_gamma": Range(0.0, 1.0),
        "critic_lambda": Range(0.0, 1.0),
        "es_std": POSITIVE_NUMBER,
        "es_lr": POSITIVE_NUMBER,
        "es_fitness_fraction": Range(0.0, 1.0, open_low=True),
        "meta_steps": Range(0, integer=True, text=">= 0"),
    }

    envs: tuple[str, ...] = ("chain/short", "gridworld/sparse")
    method: str = "grad"
    num_lifetimes: int = 8
    num_envs: int = 16
    unroll_length: int = 20
    lifetime_updates: int = 200
    min_lifetime_updates: int = 0
    inner_updates: int = 5
    agent_optimizer: str = "adam"
    lr_range: tuple[float, float] = (1e-2, 1e-1)
    hyper_ranges: tuple[tuple[str, float, float], ...] = ()
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

    def check(self) -> None:
        if self.method not in METHODS:
            raise UnknownNameError(f"unknown discovery method {self.method!r}; choose grad or es")
        if not self.envs:
            raise self.error("needs at least one environment")
        if self.num_lifetimes < len(self.envs):
            raise self.error(
                f"num_lifetimes ({self.num_lifetimes}) must be at least the number of environments ({len(self.envs)})"
            )
        if self.agent_optimizer not in OPTIMIZERS or self.agent_optimizer == "rmsprop":
            raise self.error(f"agent_optimizer must be sgd or adam, got {self.agent_optimizer!r}")
        ranges = [("lr_range", self.lr_range), *((f"range of {n}", (lo, hi)) for n, lo, hi in self.hyper_ranges)]
        for name, (low, high) in ranges:
            if not 0 < low <= high:
                raise self.error(f"{name} must satisfy 0 < low <= high, got {(low, high)}")
        if self.method == "grad" and self.lifetime_updates < self.inner_updates:
            raise self.error(
                f"lifetime_updates ({self.lifetime_updates}) must be >= inner_updates ({self.inner_updates}): "
                "one meta-step advances every lifetime by inner_updates agent updates"
            )
        if self.min_lifetime_updates and not self.inner_updates <= self.min_lifetime_updates <= self.lifetime_updates:
            raise self.error(
                f"min_lifetime_updates ({self.min_lifetime_updates}) must be 0 or between inner_updates "
                f"({self.inner_updates}) and lifetime_updates ({self.lifetime_updates})"
            )
        if self.method == "es":
            if self.min_lifetime_updates:
                raise self.error(
                    "min_lifetime_updates is for grad; es scores every member on lifetime_updates "
                    "(with --method es give --min-lifetime-updates 0, also beside a --recipe that sets it)"
                )
            es_algorithm_class(self.es_algorithm)

    def validate(self) -> None:
        """Kept for callers of the earlier API: a built config is already valid."""

    @property
    def eval_learning_rate(self) -> float:
        """The geometric mean of ``lr_range``: the agent learning rate used to evaluate the objective."""
        return log_uniform_mean(*self.lr_range)

    def agent_optimizer_config(self) -> OptimizerConfig:
        """The agents' optimiser at the evaluation learning rate (what fresh agents use with the discovered objective)."""
        return OptimizerConfig(self.agent_optimizer, self.eval_learning_rate, max_grad_norm=self.agent_max_grad_norm)

    def lifetime_ranges(self, declared: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        """The objective's ``declared`` per-lifetime ranges with this config's ``hyper_ranges`` on top.

        Raises:
          InvalidConfigError: ``hyper_ranges`` names a hyper-parameter the objective does not declare.
        """
        ranges = dict(declared)
        for name, low, high in self.hyper_ranges:
            if name not in ranges:
                raise self.error(
                    f"the objective has no per-lifetime hyper-parameter {name!r} (it has: {', '.join(ranges) or 'none'})"
                )
            ranges[name] = (float(low), float(high))
        return ranges


def es_algorithm_class(name: str) -> type:
    """The evosax algorithm class called ``name``; UnknownNameError if evosax has none."""
    from evosax import algorithms as evo

    if name not in evo.algorithms:
        raise UnknownNameError(f"unknown evosax algorithm {name!r}; e.g. Open_ES, SNES, CMA_ES, Sep_CMA_ES, PGPE")
    return evo.algorithms[name]
