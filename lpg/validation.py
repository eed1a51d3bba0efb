"""Range checks of configuration values, shared by objective and network configs.

A config dataclass names the valid range of each numeric field::

    check_ranges("objective a2c", config, {"gamma": UNIT, "value_weight": NON_NEGATIVE})

and an out-of-range value raises ``InvalidConfigError`` with one line such as
``objective a2c: gamma must be in [0, 1], got 2.0``. Every range also requires
a finite number (not NaN or inf, not a bool); integer ranges a whole number.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

from lpg.errors import InvalidConfigError

__all__ = [
    "NON_NEGATIVE",
    "NON_NEGATIVE_INT",
    "OPEN_UNIT",
    "POSITIVE",
    "POSITIVE_INT",
    "UNIT",
    "Range",
    "check_ranges",
    "check_value",
]


@dataclasses.dataclass(frozen=True)
class Range:
    """The numbers from ``low`` to ``high`` (each end open or closed); ``integer``: whole numbers only."""

    low: float
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False
    integer: bool = False

    def __contains__(self, value: Any) -> bool:
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def __str__(self) -> str:
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
POSITIVE_INT = Range(1, integer=True)  # layer widths, sizes, counts
NON_NEGATIVE_INT = Range(0, integer=True)  # widths where 0 means "none"


def check_value(what: str, name: str, value: Any, valid: Range) -> None:
    """Raises ``InvalidConfigError`` ``"{what}: {name} must be {valid}, got {value!r}"`` when ``value`` is not in ``valid``."""
    if value not in valid:
        raise InvalidConfigError(f"{what}: {name} must be {valid}, got {value!r}")


def check_ranges(what: str, config: Any, ranges: Mapping[str, Range]) -> None:
    """Checks ``getattr(config, name)`` against each ``ranges[name]`` (see ``check_value``)."""
    for name, valid in ranges.items():
        check_value(what, name, getattr(config, name), valid)
