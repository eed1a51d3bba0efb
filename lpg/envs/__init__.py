"""Environment registry: every environment is reachable by name.

    env = lpg.envs.make("gridworld/dense")
    state, timestep = env.reset(key)

Environment modules register themselves on import; ``make`` and
``list_envs`` import them all on first use. A *spec* string (used by
``lpg evaluate --envs`` and ``lpg discover offline --envs``) is a
comma-separated list of names, globs (``gridworld/*``) and named sets
(``lpg-tabular``, ``lpg-random``, ``chains``, ``toy``, ``procedural``, ``broad``,
``minatar``, ``gymnax``).

Kinds: ``toy`` (this project's pure-JAX environments), ``gymnax`` (games of
the gymnax library, ``lpg.envs.gymnax_suite``; pure JAX too) and ``atari``
(envpool, host-side). ``JAX_KINDS`` are the kinds whose ``reset``/``step``
``jit``, ``vmap`` and ``lax.scan``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
from collections.abc import Callable

from lpg.envs.base import JAX_KINDS, Environment, EnvSpec, EnvState
from lpg.errors import UnknownNameError, did_you_mean, unknown_name_error

__all__ = [
    "ENV_SETS",
    "JAX_KINDS",
    "EnvSpec",
    "EnvState",
    "Environment",
    "get",
    "list_envs",
    "make",
    "make_spec",
    "register",
    "resolve_env_spec",
]

_ENV_MODULES = (
    "lpg.envs.gridworld",
    "lpg.envs.procedural",
    "lpg.envs.chain",
    "lpg.envs.mrp",
    "lpg.envs.catch",
    "lpg.envs.snake",
    "lpg.envs.gymnax_suite",
    "lpg.envs.atari",
)


@dataclasses.dataclass(frozen=True)
class _Entry:
    name: str
    description: str
    factory: Callable[[], Environment]
    kind: str


_REGISTRY: dict[str, _Entry] = {}
_loaded = False


def register(name: str, factory: Callable[[], Environment], description: str, kind: str = "toy") -> None:
    """Registers ``factory`` (no arguments) under ``name`` with a one-line description."""
    if name in _REGISTRY:
        raise ValueError(f"environment {name!r} is registered twice")
    _REGISTRY[name] = _Entry(name, description, factory, kind)


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _ENV_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:  # a module of the suite not written yet
            if e.name != module:
                raise


def list_envs(kind: str | None = None) -> list[tuple[str, str]]:
    """(name, description) of every registered environment, optionally of one kind.

    Raises:
      UnknownNameError: ``kind`` is no environment kind (toy, gymnax, atari).
    """
    _load_all()
    kinds = sorted({e.kind for e in _REGISTRY.values()})
    if kind is not None and kind not in kinds:
        raise unknown_name_error("environment kind", kind, kinds)
    return [(e.name, e.description) for e in _REGISTRY.values() if kind is None or e.kind == kind]


def make(name: str) -> Environment:
    """Builds the environment registered under ``name``.

    Raises:
      UnknownNameError: no such environment (the message lists close names).
    """
    _load_all()
    if name not in _REGISTRY:
        hint = did_you_mean(name, _REGISTRY)
        if hint:
            raise UnknownNameError(f"unknown environment {name!r}; {hint}(see `lpg envs`)")
        close = [n for n in _REGISTRY if n.split("/")[0] == name.split("/")[0]] or sorted(_REGISTRY)[:8]
        raise UnknownNameError(f"unknown environment {name!r}; known ones include: {', '.join(close)} (see `lpg envs`)")
    return _REGISTRY[name].factory()


_INSTANCES: dict[str, Environment] = {}


def get(env: Environment | str) -> Environment:
    """``env`` itself when it is an ``Environment``, else the registered environment of that name.

    Functions that take an environment accept either; a name is built once per
    process (environments hold only structure, so one instance serves every
    caller, and caches keyed by the environment see the same object).

    Raises:
      UnknownNameError: no such environment.
    """
    if isinstance(env, Environment):
        return env
    if env not in _INSTANCES:
        _INSTANCES[env] = make(env)
    return _INSTANCES[env]


def make_spec(name: str) -> EnvSpec:
    """The ``EnvSpec`` of ``name`` without building it (Atari specs need no envpool).

    Raises:
      UnknownNameError: no such environment.
    """
    _load_all()
    if name not in _REGISTRY:
        make(name)  # raises the clear error
    if _REGISTRY[name].kind == "atari":
        from lpg.envs.atari import atari_spec

        return atari_spec(name.split("/", 1)[1])
    return _REGISTRY[name].factory().spec


# Named sets of environments, used by evaluation and offline discovery.
ENV_SETS: dict[str, tuple[str, ...]] = {
    "lpg-tabular": (
        "gridworld/dense",
        "gridworld/sparse",
        "gridworld/long_horizon",
        "gridworld/longer_horizon",
        "gridworld/long_dense",
    ),
    "lpg-random": (
        "gridworld/rand_dense",
        "gridworld/rand_long_horizon",
        "gridworld/rand_small",
        "gridworld/rand_small_sparse",
        "gridworld/rand_very_dense",
    ),
    "chains": ("chain/short", "chain/short_noisy", "chain/long", "chain/long_noisy", "chain/distractor"),
}
ENV_SETS["toy"] = ENV_SETS["lpg-tabular"] + ENV_SETS["lpg-random"] + ENV_SETS["chains"]
ENV_SETS["procedural"] = ("gridworld/procedural", "gridworld/procedural_small")
# The broad meta-training distribution: a new level per lifetime, LPG's gridworlds and the short chains. The
# chains longer than an agent's unroll (chain/long, long_noisy, distractor) stay out, as held-out tests.
_SHORT_CHAINS = ("chain/short", "chain/short_noisy")
ENV_SETS["broad"] = ENV_SETS["procedural"] + ENV_SETS["lpg-tabular"] + ENV_SETS["lpg-random"] + _SHORT_CHAINS
ENV_SETS["minatar"] = (
    "gymnax/Asterix-MinAtar",
    "gymnax/Breakout-MinAtar",
    "gymnax/Freeway-MinAtar",
    "gymnax/SpaceInvaders-MinAtar",
    "gymnax/Seaquest-MinAtar",
)
ENV_SETS["gymnax"] = ENV_SETS["minatar"] + (
    "gymnax/Catch-bsuite",
    "gymnax/DeepSea-bsuite",
    "gymnax/MemoryChain-bsuite",
    "gymnax/UmbrellaChain-bsuite",
    "gymnax/DiscountingChain-bsuite",
    "gymnax/CartPole-v1",
    "gymnax/Acrobot-v1",
    "gymnax/MountainCar-v0",
)


def resolve_env_spec(spec: str) -> list[str]:
    """Expands a comma-separated list of names, globs and named sets into names.

    Order is preserved and duplicates are dropped.

    Raises:
      UnknownNameError: an item matches no environment and is no named set.
    """
    _load_all()
    names: list[str] = []
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if not items:
        raise UnknownNameError(
            "empty environment list; give names, globs (gridworld/*) or sets (" + ", ".join(ENV_SETS) + ")"
        )
    for item in items:
        if item in ENV_SETS:
            matched = list(ENV_SETS[item])
        elif any(ch in item for ch in "*?["):
            matched = [n for n in _REGISTRY if fnmatch.fnmatchcase(n, item)]
        else:
            make(item)  # raises a clear error for unknown names
            matched = [item]
        if not matched:
            raise UnknownNameError(f"{item!r} matches no environment (see `lpg envs`; sets: {', '.join(ENV_SETS)})")
        names.extend(n for n in matched if n not in names)
    return names
