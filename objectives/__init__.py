"""Objective registry: every objective is reachable by name.

objective = objectives.make("a2c", gamma=0.95)
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from lpg.errors import InvalidConfigError, unknown_name_error
from objectives.base import AgentHeads, Eta, Metrics, Objective

__all__ = ["AgentHeads", "Eta", "Metrics", "Objective", "list_objectives", "make", "register"]

# Modules that register objectives on import; a missing module is skipped so
# the registry works while the project grows.
_OBJECTIVE_MODULES = (
    "objectives.a2c",
    "objectives.vtrace",
    "objectives.mgrl",
    "objectives.self_tuning",
    "objectives.frodo",
    "objectives.lpg",
)

_REGISTRY: dict[str, tuple[Callable[..., Objective], str]] = {}
_loaded = False


def register(name: str, factory: Callable[..., Objective], description: str) -> None:
    """Registers ``factory(**config_overrides) -> Objective`` under ``name``."""
    if name in _REGISTRY:
        raise ValueError(f"objective {name!r} is registered twice")
    _REGISTRY[name] = (factory, description)


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _OBJECTIVE_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


def list_objectives() -> list[tuple[str, str]]:
    """(name, description) of every registered objective."""
    _load_all()
    return [(name, desc) for name, (_, desc) in _REGISTRY.items()]


def make(name: str, **overrides: Any) -> Objective:
    """Builds the objective ``name`` with config fields overridden by ``overrides``.

    Raises:
      UnknownNameError: no such objective.
      InvalidConfigError: an override names no config field.
    """
    _load_all()
    if name not in _REGISTRY:
        raise unknown_name_error(
            "objective", name, list(_REGISTRY), f"known: {', '.join(_REGISTRY)} (see `lpg objectives`)"
        )
    factory, _ = _REGISTRY[name]
    try:
        return factory(**overrides)
    except TypeError as e:
        raise InvalidConfigError(f"objective {name!r}: {e}") from None


def replace_config(config: Any, **overrides: Any) -> Any:
    """``dataclasses.replace`` with a clear error for unknown fields."""
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise InvalidConfigError(
            f"{type(config).__name__} has no field(s) {', '.join(unknown)}; fields: {', '.join(sorted(fields))}"
        )
    return dataclasses.replace(config, **overrides)
