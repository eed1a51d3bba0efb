"""Offline objective discovery across many lifetimes (LPG, Oh et al. 2020): two estimators behind one interface.

* ``grad`` (``training.offline.grad.GradEstimator``): meta-gradients through K
  agent updates of every lifetime, averaged over lifetimes, applied by meta-Adam.
* ``es`` (``training.offline.es.ESEstimator``): evosax evolution strategies over
  whole (short) lifetimes, antithetic pairs sharing a task.

Both are ``init(key) -> OfflineState`` and ``step(state) -> (state, metrics)``
(jitted as ``jit_init`` / ``jit_step``) over the same ``Population`` of agents
(``training.offline.population``), so ``OfflineConfig.method`` switches
between them; ``make_estimator`` builds the one the config names. The
command's driver (run folder, evaluation, checkpoints) is
``lpg.commands.discover_offline``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lpg import envs as envs_lib
from lpg.envs.base import Environment
from lpg.errors import InvalidConfigError
from lpg.networks import NetworkConfig
from objectives.base import Objective
from training.offline.config import METHODS, OfflineConfig, log_uniform_mean
from training.offline.es import ESEstimator, es_algorithm_class, make_es_algorithm
from training.offline.grad import GradEstimator
from training.offline.population import Population, split_evenly
from training.offline.state import EnvGroup, LifetimeState, OfflineState

__all__ = [
    "METHODS",
    "ESEstimator",
    "EnvGroup",
    "Estimator",
    "GradEstimator",
    "LifetimeState",
    "OfflineConfig",
    "OfflineState",
    "Population",
    "es_algorithm_class",
    "log_uniform_mean",
    "make_es_algorithm",
    "make_estimator",
    "pure_jax_environments",
    "resolve_environments",
    "split_evenly",
]

Estimator = GradEstimator | ESEstimator


def resolve_environments(config: OfflineConfig, environments: dict[str, Environment] | None = None):
    """``{name: Environment}`` for ``config.envs``: ``environments[name]`` where given, else the registered one.

    Raises:
      UnknownNameError: an unknown name.
      InvalidConfigError: an environment that is not a pure-JAX one (kind toy or gymnax).
    """
    return pure_jax_environments(config.envs, environments, "offline discovery runs on")


def pure_jax_environments(
    names: Sequence[str], environments: Mapping[str, Environment] | None, what: str
) -> dict[str, Environment]:
    """``{name: environments[name] or the registered one}``, each checked to be pure JAX (toy or gymnax).

    ``what`` starts the error line, e.g. "offline discovery runs on".

    Raises:
      UnknownNameError: an unknown name.
      InvalidConfigError: an environment that is not a pure-JAX one.
    """
    resolved = {}
    for name in names:
        env = (environments or {}).get(name) or envs_lib.get(name)
        if not env.spec.is_jax:
            raise InvalidConfigError(f"{what} pure-JAX environments (toy, gymnax); {name} is {env.spec.kind}")
        resolved[name] = env
    return resolved


def make_estimator(
    objective: Objective,
    config: OfflineConfig,
    network: NetworkConfig = NetworkConfig(),
    references: dict[str, tuple[float, float]] | None = None,
    environments: dict[str, Environment] | None = None,
) -> Estimator:
    """The estimator ``config.method`` names, over the environments ``config.envs``.

    ``environments`` maps names of ``config.envs`` to ``Environment`` values
    (unlisted names are built from the registry). For ES, ``references[name] =
    (random, a2c)`` returns normalise fitness; missing ones are measured
    (``training.baselines.reference_returns``).
    """
    envs = resolve_environments(config, environments)
    if config.method == "es":
        from training.baselines import reference_returns

        references = dict(references or {})
        missing = {name: env for name, env in envs.items() if name not in references}
        if missing:
            references.update(
                reference_returns(
                    missing,
                    config.num_envs,
                    config.unroll_length,
                    config.lifetime_updates,
                    config.es_fitness_fraction,
                    config.agent_optimizer_config(),
                )
            )
        return ESEstimator.create(Population.create(objective, config, envs, network, references=references))
    return GradEstimator.create(Population.create(objective, config, envs, network))
