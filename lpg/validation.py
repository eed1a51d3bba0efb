"""Declared ranges of configuration values, checked when a config is built.

Every frozen config dataclass of the framework (objective, network, trainer,
discovery and command options) derives from ``Config`` and names the valid
range of each numeric field::

    @dataclasses.dataclass(frozen=True)
    class TrainConfig(Config):
        WHAT = "training"
        RANGES = {"num_envs": POSITIVE_COUNT, "unroll_length": POSITIVE_COUNT}
        num_envs: int = 32
        unroll_length: int = 20

Building one with a value outside its range (directly, by
``dataclasses.replace`` or from the command line, whose parser builds these
dataclasses) raises ``InvalidConfigError`` with one line such as
``training: num_envs must be positive, got 0``. Command options set
``FLAGS = True`` so messages name the flag (``--num-envs must be positive,
got 0``). Every range also requires a finite number (not NaN or inf, not a
bool); integer ranges a whole number. ``None`` (an optional field left to its
default) is always accepted. Checks that relate several fields go in
``check()``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any, ClassVar

from lpg.errors import InvalidConfigError

__all__ = [
    "AT_LEAST_ONE",
    "NON_NEGATIVE",
    "NON_NEGATIVE_INT",
    "OPEN_UNIT",
    "POSITIVE",
    "POSITIVE_COUNT",
    "POSITIVE_INT",
    "POSITIVE_NUMBER",
    "UNIT",
    "Config",
    "Range",
    "check_ranges",
    "check_value",
    "flag",
    "parse_overrides",
]


@dataclasses.dataclass(frozen=True)
class Range:
    """The numbers from ``low`` to ``high`` (each end open or closed); ``integer``: whole numbers only.

    ``text`` replaces the generated wording in messages (e.g. ``"positive"``).
    """

    low: float
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False
    integer: bool = False
    text: str = ""

    def __contains__(self, value: Any) -> bool:
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.text:
            return self.text
        low = f"{self.low:g}"
        if self.high == math.inf:
            bound = f"{'>' if self.open_low else '>='} {low}"
            return f"an integer {bound}" if self.integer else bound
        interval = f"{'(' if self.open_low else '['}{low}, {self.high:g}{')' if self.open_high else ']'}"
        return f"an integer in {interval}" if self.integer else f"in {interval}"


UNIT = Range(0.0, 1.0)  # discounts, lambdas, probabilities
OPEN_UNIT = Range(0.0, 1.0, open_low=True, open_high=True)  # initial values of sigmoid-parameterised meta-parameters
NON_NEGATIVE = Range(0.0)  # loss weights and coefficients; reward_clip (0 = off)
POSITIVE = Range(0.0, open_low=True)  # clipping thresholds, scales
POSITIVE_NUMBER = Range(0.0, open_low=True, text="positive")  # learning rates, standard deviations
POSITIVE_INT = Range(1, integer=True)  # layer widths, sizes
POSITIVE_COUNT = Range(1, integer=True, text="positive")  # counts of steps, seeds, environments
AT_LEAST_ONE = Range(1, integer=True, text=">= 1")  # counts where 0 would mean nothing at all
NON_NEGATIVE_INT = Range(0, integer=True)  # widths and counts where 0 means "none"


def flag(name: str) -> str:
    """The command-line flag of a field: ``num_envs`` -> ``--num-envs``."""
    return "--" + name.replace("_", "-")


def recipe_flags(values: Mapping[str, Any]) -> list[str]:
    """Command-line flags that set ``values`` (field -> value): ``{"num_envs": 16}`` -> ``["--num-envs", "16"]``.

    Booleans become ``--name`` / ``--no-name``, tuples one flag with several values.
    """
    argv: list[str] = []
    for name, value in values.items():
        if isinstance(value, bool):
            argv.append(flag(name) if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, tuple):
            argv += [flag(name), *map(str, value)]
        else:
            argv += [flag(name), str(value)]
    return argv


def check_value(what: str, name: str, value: Any, valid: Range) -> None:
    """Raises ``InvalidConfigError`` (``"{what}: {name} must be {valid}, got {value!r}"``) if ``value`` is invalid.

    ``what`` empty: the message starts with ``name``.
    """
    if value not in valid:
        prefix = f"{what}: " if what else ""
        raise InvalidConfigError(f"{prefix}{name} must be {valid}, got {value!r}")


def check_ranges(what: str, config: Any, ranges: Mapping[str, Range], *, flags: bool = False) -> None:
    """Checks ``getattr(config, name)`` against each ``ranges[name]`` (see ``check_value``); None passes.

    A tuple field is checked element by element (``each hidden size must be ...``).
    """
    for name, valid in ranges.items():
        value = getattr(config, name)
        label = flag(name) if flags else name
        if value is None:
            continue
        if isinstance(value, tuple):
            for item in value:
                check_value(what, f"each of {label}", item, valid)
        else:
            check_value(what, label, value, valid)


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of the frozen config dataclasses: every instance is range-checked when built.

    Subclasses set ``WHAT`` (the message prefix, e.g. ``"objective a2c"``; empty
    for command options), ``RANGES`` (field name -> ``Range``) and, for command
    options, ``FLAGS = True``; checks that relate several fields go in ``check()``.
    """

    WHAT: ClassVar[str] = ""
    RANGES: ClassVar[Mapping[str, Range]] = {}
    FLAGS: ClassVar[bool] = False
    RECIPES: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    """Named set-ups of command options (name -> field values); the options then have a ``recipe`` field."""

    def __post_init__(self) -> None:
        check_ranges(self.WHAT, self, self.RANGES, flags=self.FLAGS)
        self.check()

    def check(self) -> None:
        """Cross-field checks (default: none); raise ``InvalidConfigError``."""

    @classmethod
    def from_recipe(cls, name: str, **overrides: Any):
        """The options of recipe ``name`` with ``overrides`` on top (what ``--recipe NAME`` plus flags gives).

        Raises:
          InvalidConfigError: no such recipe.
        """
        if name not in cls.RECIPES:
            raise InvalidConfigError(f"unknown recipe {name!r}; choose {', '.join(cls.RECIPES) or 'none'}")
        return cls(**{**cls.RECIPES[name], "recipe": name, **overrides})

    def check_recipe(self) -> None:
        """Raises ``InvalidConfigError`` if the ``recipe`` field names no recipe (empty: none used)."""
        name = getattr(self, "recipe", "")
        if name and name not in self.RECIPES:
            raise InvalidConfigError(f"unknown --recipe {name!r}; choose {', '.join(self.RECIPES)}")

    def error(self, message: str) -> InvalidConfigError:
        """An ``InvalidConfigError`` with this config's ``WHAT`` prefix."""
        return InvalidConfigError(f"{self.WHAT}: {message}" if self.WHAT else message)


def parse_overrides(items: tuple[str, ...], config: Any) -> dict[str, Any]:
    """Parses KEY=VALUE strings into typed overrides of the dataclass ``config``."""
    fields = {f.name: f for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else {}
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidConfigError(f"objective config override {item!r} is not KEY=VALUE")
        if key not in fields:
            raise InvalidConfigError(
                f"objective config has no field {key!r}; fields: {', '.join(sorted(fields)) or 'none'}"
            )
        current = getattr(config, key)
        try:
            if isinstance(current, bool):
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(raw)
                value: Any = raw.lower() in ("true", "1")
            elif isinstance(current, int):
                value = int(raw)
            elif isinstance(current, float):
                value = float(raw)
            else:
                value = raw
        except ValueError:
            raise InvalidConfigError(f"objective config {key}={raw!r}: expected {type(current).__name__}") from None
        overrides[key] = value
    return overrides
