"""The allowed range of every numeric setting, checked in one place.

Settings dataclasses declare each numeric field with `setting(default, ...)`, which records its
bounds in the field's metadata; `check_fields` (called from their ``__post_init__``) refuses a
value out of range, of the wrong type or not a number, naming the setting as the command line
spells it. Functions that take a loose numeric argument (``k``, ``top``) call `check` with the
same rules, so a bad value fails in one line before any work, never deep inside torch or FAISS.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from .errors import HiclError


@dataclass(frozen=True)
class Bounds:
    """``low <= value <= high`` (strict where `open_low` / `open_high`); None: no bound."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    integer: bool = False
    optional: bool = False
    """None is allowed (meaning: the default, e.g. all cores)."""

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed, or None."""
        if value is None:
            return None if self.optional else "is required"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"must be a number, not {value!r}"
        if self.integer and not isinstance(value, numbers.Integral):
            return f"must be a whole number, not {value!r}"
        if math.isnan(float(value)):
            return "must be a number, not nan"
        too_low = self.low is not None and (value <= self.low if self.open_low else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.open_high else value > self.high)
        if too_low or too_high:
            return f"must be {self.describe()}, not {value}"
        return None

    def describe(self) -> str:
        low = None if self.low is None else _number(self.low)
        high = None if self.high is None else _number(self.high)
        if low is not None and high is not None:
            if not self.open_low and not self.open_high:
                return f"between {low} and {high}"
            lower = f"{'above' if self.open_low else 'at least'} {low}"
            return f"{lower} and {'below' if self.open_high else 'at most'} {high}"
        if low is not None:
            return f"{'above' if self.open_low else 'at least'} {low}"
        if high is not None:
            return f"{'below' if self.open_high else 'at most'} {high}"
        return "a number"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


COUNT = Bounds(low=1, integer=True)
"""A whole number of at least 1 (posts, steps, batch sizes)."""
OPTIONAL_COUNT = Bounds(low=1, integer=True, optional=True)
"""A whole number of at least 1, or None for a default (e.g. the device's batch size)."""
THREADS = Bounds(low=1, integer=True, optional=True)
K_FACTOR = Bounds(low=1, integer=True, optional=True)
"""Candidates per hit re-ranked exactly; None: the index's own."""
MEMORY = Bounds(low=1, integer=True, optional=True)
"""A RAM budget in bytes; None: the machine's memory."""
RECALL = Bounds(low=0, high=1, open_low=True)
"""A recall to reach: above 0, at most 1."""
SHARE = Bounds(low=0, high=1)
"""A probability or a share, 0 to 1."""
POSITIVE = Bounds(low=0, open_low=True)


def setting(default: Any, bounds: Bounds, *, option: str | None = None) -> Any:
    """A dataclass field whose value `check_fields` keeps within `bounds`; `option` names it in errors."""
    return dataclasses.field(default=default, metadata={"bounds": bounds, "option": option})


def option_name(name: str) -> str:
    """How the command line spells a setting: ``chunk_size`` -> ``--chunk-size``."""
    return "--" + name.replace("_", "-")


def check(name: str, value: Any, bounds: Bounds) -> None:
    """Raise a one-line `HiclError` when `value` is outside `bounds`; `name` as the user wrote it."""
    problem = bounds.problem(value)
    if problem is not None:
        raise HiclError(f"{name} {problem}")


def check_fields(settings: Any) -> None:
    """Check every field of the dataclass `settings` declared with `setting`."""
    for f in dataclasses.fields(settings):
        bounds = f.metadata.get("bounds")
        if bounds is not None:
            check(option_name(f.metadata.get("option") or f.name), getattr(settings, f.name), bounds)
