"""A report's headline column: which number of a task's result it shows, and in which unit.

Each protocol declares its own columns in its folder (`protocols/<name>/entry.py`); the report
only lays them out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One headline number: its title, where it sits in a task's result, and its unit.

    Protocol results store fractions (top-1 0.42) and physical quantities (RMSE 0.52 m) alike;
    the unit decides how a number is shown, so a depth error is never printed ×100 as if it were
    a percentage. Units other than percent are written into the row title."""

    title: str
    path: tuple[str, ...]
    unit: str = "%"  # a key of UNITS

    def label(self, suffix: str = "") -> str:
        shown = UNITS[self.unit].label
        return f"{self.title}{f' [{shown}]' if shown else ''}{suffix}"


@dataclass(frozen=True)
class Unit:
    scale: float  # stored value × scale = shown value
    digits: int
    label: str  # written after the title; "" for percent, the report's default


UNITS: dict[str, Unit] = {
    "%": Unit(100.0, 2, ""),
    "m": Unit(1.0, 3, "m"),  # metres: RMSE of depth; 3 decimals = millimetres
    "ratio": Unit(1.0, 3, "ratio"),  # unitless ratio: AbsRel of depth
}
