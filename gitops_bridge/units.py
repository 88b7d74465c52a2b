"""Numbers for people: CPU in millicores or cores, memory in binary units, one rule.

Every number a page (or a message) shows goes through here, so the same value reads the
same everywhere: ``4.4m``, ``250m``, ``1.5 cores``; ``1.1Ki``, ``300Mi``, ``1.5Gi``.

The rule: the largest unit the value reaches, at most one decimal, rounded half up (exact
arithmetic, no float surprises), a trailing ``.0`` dropped. A value that rounds up to the
next unit is shown in it (``1023.96Mi`` is ``1Gi``). A value too small for one decimal of
the smallest unit, but not zero, is ``<0.1m`` (or ``<1 B``), never a misleading ``0``.
Manifests use ``Quantity.format_cpu`` / ``format_memory`` (exact), never these.
"""

from __future__ import annotations

from fractions import Fraction

_MEMORY_UNITS = (
    ("Ki", 2**10),
    ("Mi", 2**20),
    ("Gi", 2**30),
    ("Ti", 2**40),
    ("Pi", 2**50),
    ("Ei", 2**60),
)


def cpu(cores: Fraction | int | float) -> str:
    """``0``, ``4.4m``, ``250m``, ``1 core``, ``1.5 cores``; ``<0.1m`` for a trace."""
    value = Fraction(cores)
    if value < 0:
        return "-" + cpu(-value)
    if value == 0:
        return "0"
    milli = _tenths(value * 1000)
    if milli == 0:
        return "<0.1m"
    if milli < 1000:
        return f"{_decimal(milli)}m"
    whole = _tenths(value)
    return f"{_decimal(whole)} core{'' if whole == 1 else 's'}"


def memory(size: Fraction | int | float) -> str:
    """Bytes: ``0``, ``512 B``, ``1.1Ki``, ``300Mi``, ``1.5Gi`` (Kubernetes' binary units)."""
    value = Fraction(size)
    if value < 0:
        return "-" + memory(-value)
    if value == 0:
        return "0"
    unit = 0  # the largest unit the value reaches (0: bytes)
    while unit < len(_MEMORY_UNITS) and value >= _MEMORY_UNITS[unit][1]:
        unit += 1
    shown = _tenths(value / _factor(unit))
    if shown >= 1024 and unit < len(_MEMORY_UNITS):  # 1023.96Mi rounds to 1Gi
        unit += 1
        shown = _tenths(value / _factor(unit))
    if shown == 0:
        return "<1 B"
    return f"{_decimal(shown)}{_MEMORY_UNITS[unit - 1][0] if unit else ' B'}"


def _factor(unit: int) -> int:
    return _MEMORY_UNITS[unit - 1][1] if unit else 1


def count(value: int, thing: str) -> str:
    """``1 replica``, ``3 replicas``."""
    return f"{value} {thing}{'' if value == 1 else 's'}"


def _tenths(value: Fraction) -> Fraction:
    """Rounded half up to a tenth (values here are not negative)."""
    scaled = value * 10 + Fraction(1, 2)
    return Fraction(scaled.numerator // scaled.denominator, 10)


def _decimal(value: Fraction) -> str:
    """A multiple of a tenth as text, without a trailing ``.0``."""
    tenths = int(value * 10)
    whole, tenth = divmod(tenths, 10)
    return str(whole) if tenth == 0 else f"{whole}.{tenth}"
