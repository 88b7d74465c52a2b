"""Kubernetes resource quantities: parse, compare, add, multiply, format.

Follows the grammar of k8s.io/apimachinery `resource.Quantity`:
``<sign><digits>[.<digits>]<suffix>`` where suffix is a binary SI suffix
(Ki Mi Gi Ti Pi Ei), a decimal SI suffix (n u m "" k M G T P E) or a decimal
exponent (``e3``, ``E-2``). Values are exact (Fractions), so ``0.1 + 0.2 == 300m``.
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction
from functools import total_ordering

from gitops_bridge import units

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
        if (self.value * 1000).denominator == 1:
            return f"Quantity({self.format_cpu()!r})"
        return f"Quantity({exact(self.value)!r})"

    def format_cpu(self) -> str:
        """Cores as the API server stores them: whole cores plain, otherwise millicores.

        A value finer than 1m is rounded up to the next millicore, as Kubernetes reads it
        (``MilliValue`` is ``ceil(q * 1000)``); never an ``n``/``u`` suffix. Models refuse
        such values (``millicores_problem``), so only values read from elsewhere round.
        """
        milli = _ceil(self.value * 1000)
        if milli % 1000 == 0:
            return str(milli // 1000)
        return f"{milli}m"

    def format_memory(self) -> str:
        """Whole bytes in the largest binary unit that divides them exactly (Gi, Mi, Ki).

        A fractional byte count is rounded up to the next byte, as Kubernetes reads it
        (``Value`` is ``ceil(q)``), so the result never draws the API server's "fractional
        byte value" warning. Models refuse such values (``whole_bytes_problem``).
        """
        n = _ceil(self.value)
        for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            if n and n % _BINARY[suffix] == 0:
                return f"{n // _BINARY[suffix]}{suffix}"
        return str(n)

    def human_memory(self) -> str:
        """Rounded for people: 1.1Ki, 300Mi, 1.5Gi (``units.memory``; not for manifests)."""
        return units.memory(self.value)

    def human_cpu(self) -> str:
        """Rounded for people: 4.4m, 250m, 1.5 cores (``units.cpu``; not for manifests)."""
        return units.cpu(self.value)


def _ceil(value: Fraction) -> int:
    """Rounded away from zero, like resource.Quantity's ScaledValue (ceil for positive values)."""
    whole = -(-abs(value.numerator) // value.denominator)
    return whole if value >= 0 else -whole


def exact(value: Fraction) -> str:
    """The exact decimal of a quantity's value (every parsed value has one): 966367641.6."""
    scale = 0
    while (value * 10**scale).denominator != 1:
        if scale > 200:  # not a decimal fraction (1/3): say so rather than loop
            return f"{float(value):.9g}"
        scale += 1
    scaled = (value * 10**scale).numerator
    digits = str(abs(scaled)).rjust(scale + 1, "0")
    sign = "-" if scaled < 0 else ""
    if not scale:
        return sign + digits
    return f"{sign}{digits[:-scale]}.{digits[-scale:]}"


# What the API server stores without complaint. Memory in fractional bytes draws the warning
# "fractional byte value ... is invalid, must be an integer" on every apply
# (kubernetes pkg/api/pod/warnings.go: `value.MilliValue()%int64(1000) != int64(0)`), and the
# kubelet reads it rounded up (resource.Quantity.Value / ScaledValue: ceil). CPU: "Kubernetes
# doesn't allow you to specify CPU resources with a precision finer than 1m" (kubernetes.io,
# Resource Management for Pods and Containers, CPU resource units).
BYTES_RULE = "must be a whole number of bytes"
MILLICORES_RULE = "must be a multiple of 1m"


def whole_bytes_problem(q: Quantity, given: object) -> str | None:
    """Why a memory/storage quantity is not a whole number of bytes, and what to use; or None."""
    if q.value.denominator == 1:
        return None
    low, high = q.value.numerator // q.value.denominator, _ceil(q.value)
    choices = f"{low} or {high}" if low > 0 else f"{high}"
    if abs(q.value) >= _BINARY["Mi"]:
        mebi = q.value / _BINARY["Mi"]
        floor_mi, ceil_mi = mebi.numerator // mebi.denominator, _ceil(mebi)
        choices += f" (or {floor_mi}Mi or {ceil_mi}Mi)"
    return f"{BYTES_RULE}; {_is(given, f'{exact(q.value)} bytes')}: use {choices}"


def millicores_problem(q: Quantity, given: object) -> str | None:
    """Why a cpu quantity is finer than a millicore, and what to use; or None."""
    milli = q.value * 1000
    if milli.denominator == 1:
        return None
    low = Quantity(Fraction(milli.numerator // milli.denominator, 1000))
    high = q
    choices = [v.format_cpu() for v in (low, high) if v.value > 0]  # high rounds up
    return (
        f"{MILLICORES_RULE} (a thousandth of a core); {_is(given, f'{exact(milli)}m')}: "
        f"use {' or '.join(choices)}"
    )


def _is(given: object, value: str) -> str:
    """``0.9Gi is 966367641.6 bytes``, or just the value when that is how it was given."""
    shown = given.strip() if isinstance(given, str) else repr(given)
    return (
        f"got {shown}" if shown in (value, value.removesuffix(" bytes")) else f"{shown} is {value}"
    )


def parse(text: str | int | float) -> Quantity:
    if isinstance(text, str):
        return _parse_text(text)
    return Quantity.parse(text)


@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> Quantity:
    """Quantities are immutable: the few texts a repository uses are parsed once."""
    return Quantity.parse(text)


def total(quantities: list[Quantity]) -> Quantity:
    result = Quantity(0)
    for q in quantities:
        result = result + q
    return result
