"""Objective registry: every objective is reachable by name, and the registry is the single source of truth.

    objective = objectives.make("a2c", gamma=0.95)

Every module of this package is imported on first use, so an objective is
one file: a module under ``objectives/`` whose ``Objective`` subclass carries
the ``@register`` decorator is listed by ``lpg objectives``, accepted by every
command its ``supports`` allows, loadable from checkpoints and covered by the
contract tests, with no other file to edit.

Objectives outside this package register the same way; their module must be
imported first. Two ways make the command line import it:

* an entry point of the group ``lpg.objectives`` in the distribution that
  holds it (``[project.entry-points."lpg.objectives"] myobj = "mypkg.myobj"``);
* the environment variable ``LPG_OBJECTIVE_MODULES`` (comma-separated module
  names, e.g. ``LPG_OBJECTIVE_MODULES=mypkg.myobj lpg objectives``).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
from collections.abc import Callable
from importlib import metadata
from typing import Any

from lpg.errors import InvalidConfigError, unknown_name_error
from objectives.base import AgentHeads, Eta, Head, Metrics, Objective, Supports

__all__ = [
    "ENTRY_POINT_GROUP",
    "MODULES_VARIABLE",
    "AgentHeads",
    "Eta",
    "Head",
    "Metrics",
    "Objective",
    "Supports",
    "list_objectives",
    "load",
    "make",
    "names",
    "register",
    "replace_config",
]

ENTRY_POINT_GROUP = "lpg.objectives"
MODULES_VARIABLE = "LPG_OBJECTIVE_MODULES"
_NOT_OBJECTIVES = ("base", "losses")  # modules of this package that define no objective


@dataclasses.dataclass(frozen=True)
class _Entry:
    factory: Callable[..., Objective]
    description: str
    module: str


_REGISTRY: dict[str, _Entry] = {}
_loaded = False


def register(obj: Any, factory: Callable[..., Objective] | None = None, description: str | None = None) -> Any:
    """Registers an objective; use it as a class decorator, ``@register``.

    ``register(cls)`` registers ``cls.name``, built as ``cls(replace_config(cls.Config(), **overrides))``;
    ``register(name, factory, description)`` registers ``factory(**overrides) -> Objective`` under ``name``.
    Returns its first argument.

    Raises:
      ValueError: the name is registered twice.
    """
    if isinstance(obj, type):
        cls = obj
        name, description = cls.name, cls.description

        def factory(**overrides: Any) -> Objective:
            return cls(replace_config(cls.Config(), **overrides))

        module = cls.__module__
    else:
        name, module = str(obj), getattr(factory, "__module__", "")
        if factory is None or description is None:
            raise TypeError("register(name, factory, description) needs all three")
    if name in _REGISTRY:
        raise ValueError(f"objective {name!r} is registered twice")
    _REGISTRY[name] = _Entry(factory, description, module)
    return obj


def _load_all() -> None:
    """Imports every objective module: this package's, entry points', and ``LPG_OBJECTIVE_MODULES``'s."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name not in _NOT_OBJECTIVES and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(entry.value.split(":")[0])
    for module in filter(None, (m.strip() for m in os.environ.get(MODULES_VARIABLE, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise InvalidConfigError(f"{MODULES_VARIABLE}: cannot import {module!r}: {e}") from None


def names() -> list[str]:
    """The registered objective names, in registration order."""
    _load_all()
    return list(_REGISTRY)


def list_objectives() -> list[tuple[str, str]]:
    """(name, description) of every registered objective."""
    _load_all()
    return [(name, entry.description) for name, entry in _REGISTRY.items()]


def module_of(name: str) -> str:
    """The module that registered ``name`` (``objectives.a2c``, or an outside module)."""
    _load_all()
    return _REGISTRY[name].module


def make(name: str, **overrides: Any) -> Objective:
    """Builds the objective ``name`` with config fields overridden by ``overrides``.

    Raises:
      UnknownNameError: no such objective.
      InvalidConfigError: an override names no config field or is out of its range.
    """
    _load_all()
    if name not in _REGISTRY:
        known = f"known: {', '.join(_REGISTRY)} (see `lpg objectives`)"
        raise unknown_name_error("objective", name, list(_REGISTRY), known)
    try:
        return _REGISTRY[name].factory(**overrides)
    except TypeError as e:
        raise InvalidConfigError(f"objective {name!r}: {e}") from None


def supporting(what: str) -> list[str]:
    """Names of the objectives whose ``supports`` allows ``what`` (``train``, ``online`` or ``offline``)."""
    return [name for name in names() if getattr(make(name).supports, what)]


def require(name: str, what: str, overrides: dict[str, Any] | None = None) -> Objective:
    """``make(name, **overrides)`` when the objective supports ``what``; else a clear error naming those that do.

    ``what``: ``train`` (``lpg train``), ``online`` (``lpg discover online``) or
    ``offline`` (``lpg discover offline``).

    Raises:
      UnknownNameError: no such objective (with a did-you-mean among those that support ``what``).
      InvalidConfigError: it does not support ``what``.
    """
    commands = {"train": "lpg train", "online": "lpg discover online", "offline": "lpg discover offline"}
    able = supporting(what)
    if name not in names():
        kind = {"train": "objective", "online": "online objective", "offline": "offline objective"}[what]
        raise unknown_name_error(kind, name, able, f"choose {', '.join(able)} (see `lpg objectives`)")
    objective = make(name, **(overrides or {}))
    if not getattr(objective.supports, what):
        hint = {
            "train": "it has meta-parameters to learn: use `lpg discover`, or `lpg evaluate` for a saved one",
            "online": "it cannot be meta-learned online",
            "offline": "it cannot be meta-learned offline" if objective.is_learned else "it has no meta-parameters",
        }[what]
        raise InvalidConfigError(
            f"objective {name!r} does not support `{commands[what]}`: {hint}; objectives that do: {', '.join(able)}"
        )
    return objective


def load(path: Any) -> tuple[Objective, Eta, dict[str, Any]]:
    """``(objective, eta, metadata)`` of the objective checkpoint at ``path``, rebuilt from this registry.

    Raises:
      CheckpointError: a missing, corrupted or incompatible checkpoint (``lpg.checkpoint.load_objective``).
    """
    from lpg.checkpoint import load_objective

    return load_objective(path, make)


def replace_config(config: Any, **overrides: Any) -> Any:
    """``dataclasses.replace`` with a clear error for unknown fields."""
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise InvalidConfigError(
            f"{type(config).__name__} has no field(s) {', '.join(unknown)}; fields: {', '.join(sorted(fields))}"
        )
    return dataclasses.replace(config, **overrides)
