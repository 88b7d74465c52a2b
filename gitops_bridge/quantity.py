"""Kubernetes resource quantities: parse, compare, add, multiply, format.

Follows the grammar of k8s.io/apimachinery `resource.Quantity`:
``<sign><digits>[.<digits>]<suffix>`` where suffix is a binary SI suffix
(Ki Mi Gi Ti Pi Ei), a decimal SI suffix (n u m "" k M G T P E) or a decimal
exponent (``e3``, ``E-2``). Values are exact (Fractions), so ``0.1 + 0.2 == 300m``.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import total_ordering

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_PATTERN = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
RULE = "must be a Kubernetes quantity such as 250m, 0.5, 1, 512Mi, 1Gi or 2e3"


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity."""


@total_ordering
class Quantity:
    """An exact Kubernetes quantity. Immutable; compares and hashes by value."""

    __slots__ = ("value",)

    def __init__(self, value: Fraction | int) -> None:
        self.value = Fraction(value)

    @classmethod
    def parse(cls, text: str | int | float) -> Quantity:
        if isinstance(text, bool):
            raise QuantityError(RULE)
        if isinstance(text, int):
            return cls(text)
        if isinstance(text, float):
            text = repr(text)
        match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
        if match is None or len(text) > 64:
            raise QuantityError(f"{RULE}, got {text!r}")
        number = Fraction(match["num"])
        suffix = match["suffix"] or ""
        if suffix in _BINARY:
            return cls(number * _BINARY[suffix])
        if suffix in _DECIMAL:
            return cls(number * _DECIMAL[suffix])
        exponent = int(suffix[1:])
        if abs(exponent) > 30:
            raise QuantityError(f"{RULE}, got {text!r} (exponent out of range)")
        return cls(number * Fraction(10) ** exponent)

    def __add__(self, other: Quantity) -> Quantity:
        return Quantity(self.value + other.value)

    def __sub__(self, other: Quantity) -> Quantity:
        return Quantity(self.value - other.value)

    def __mul__(self, factor: int | Fraction) -> Quantity:
        return Quantity(self.value * factor)

    __rmul__ = __mul__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and self.value == other.value

    def __lt__(self, other: Quantity) -> bool:
        return self.value < other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"Quantity({self.format_cpu()!r})"

    def format_cpu(self) -> str:
        """Cores as Kubernetes writes them: whole cores plain, otherwise millicores."""
        if self.value.denominator == 1:
            return str(self.value.numerator)
        milli = self.value * 1000
        if milli.denominator == 1:
            return f"{milli.numerator}m"
        return _decimal(self.value)

    def format_memory(self) -> str:
        """Bytes in the largest binary unit that divides them exactly (Gi, Mi, Ki), else bytes."""
        if self.value.denominator != 1:
            return _decimal(self.value)
        n = self.value.numerator
        for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            if n and n % _BINARY[suffix] == 0:
                return f"{n // _BINARY[suffix]}{suffix}"
        return str(n)

    def human_memory(self) -> str:
        """Rounded for people: 1.5Gi, 300Mi (not for manifests)."""
        n = float(self.value)
        for suffix in ("Ti", "Gi", "Mi", "Ki"):
            if abs(n) >= _BINARY[suffix]:
                return f"{n / _BINARY[suffix]:.4g}{suffix}"
        return f"{n:.4g}"


def _decimal(value: Fraction) -> str:
    # Kubernetes allows at most nano precision; round up like the API server does.
    nano = value * 10**9
    whole = -(-nano.numerator // nano.denominator)
    return f"{whole}n"


def parse(text: str | int | float) -> Quantity:
    return Quantity.parse(text)


def total(quantities: list[Quantity]) -> Quantity:
    result = Quantity(0)
    for q in quantities:
        result = result + q
    return result
