"""Every number a page shows follows one rule: the largest unit the value reaches, at most one
decimal, rounded half up: nanocores read as millicores (4.4m), cores past 1000m, memory in
Ki/Mi/Gi; the pages' filters apply it to quantity text, bytes and Quantities alike."""

from __future__ import annotations

from fractions import Fraction

import pytest

from gitops_bridge import quantity, units
from gitops_bridge.quantity import Quantity
from gitops_bridge.webapp import figures


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("4400000n", "4.4m"),  # what metrics-server reports
        ("250m", "250m"),
        ("100u", "0.1m"),
        ("50u", "0.1m"),  # 0.05m: half up
        ("49u", "<0.1m"),  # a trace, not a misleading 0
        ("1n", "<0.1m"),
        ("0", "0"),
        ("0.25", "250m"),
        ("999940u", "999.9m"),
        ("999960u", "1 core"),  # rounds to 1000m: shown in the next unit
        ("1", "1 core"),
        ("1000m", "1 core"),
        ("1500m", "1.5 cores"),
        ("1250m", "1.3 cores"),  # half up, not to even
        ("1249m", "1.2 cores"),
        ("2", "2 cores"),
        ("31415m", "31.4 cores"),
        ("1e6", "1000000 cores"),  # huge
        ("-250m", "-250m"),  # over a quota: a negative headroom
    ],
)
def test_cpu(text: str, shown: str) -> None:
    assert units.cpu(quantity.parse(text).value) == shown
    assert quantity.parse(text).human_cpu() == shown
    assert figures.cpu(text) == shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("0", "0"),
        ("512", "512 B"),
        ("1023", "1023 B"),
        ("1023.96", "1Ki"),  # rounds to 1024 bytes: the next unit
        ("1Ki", "1Ki"),
        ("1108", "1.1Ki"),  # the group page's "1.082Ki"
        ("0.5Mi", "512Ki"),  # fractional Mi
        ("1.25Mi", "1.3Mi"),  # half up
        ("1.2Mi", "1.2Mi"),
        ("300Mi", "300Mi"),
        ("1000Mi", "1000Mi"),  # below 1Gi stays in Mi (0.98Gi would round to 1Gi)
        ("1023.96Mi", "1Gi"),
        ("1536Mi", "1.5Gi"),
        ("1Gi", "1Gi"),
        ("20Gi", "20Gi"),
        ("1e3", "1000 B"),
        ("1M", "976.6Ki"),  # decimal units read in binary ones
        ("1G", "953.7Mi"),
        ("2Ti", "2Ti"),
        ("5Ei", "5Ei"),
        ("2048Ei", "2048Ei"),  # huge: the largest unit there is
        ("-1Gi", "-1Gi"),
    ],
)
def test_memory(text: str, shown: str) -> None:
    assert units.memory(quantity.parse(text).value) == shown
    assert quantity.parse(text).human_memory() == shown
    assert figures.memory(text) == shown


def test_one_decimal_everywhere_exact_not_float() -> None:
    """0.15 cores is 150m exactly (a float would make it 149.99...m); 0.05m rounds up."""
    assert units.cpu(Fraction(15, 100)) == "150m"
    assert units.cpu(0.15) == "150m"
    assert units.cpu(Fraction(5, 100_000)) == "0.1m"
    assert units.memory(Fraction(3, 2) * 2**30) == "1.5Gi"


@pytest.mark.parametrize(
    ("amount", "cpu", "memory"),
    [
        (None, "—", "—"),  # unknown (no registry)
        ("lots", "lots", "lots"),  # not a quantity: as given, never an error page
        (Quantity(Fraction(3, 2)), "1.5 cores", "1.5 B"),
        (1108, "1108 cores", "1.1Ki"),  # storage bytes
    ],
)
def test_filters_take_what_templates_hold(amount: object, cpu: str, memory: str) -> None:
    assert figures.cpu(amount) == cpu  # type: ignore[arg-type]
    assert figures.memory(amount) == memory  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("used", "allowed", "kind", "shown"),
    [
        ("1500m", "10", "cpu", "8.5 cores free"),
        ("330m", "2", "cpu", "1.7 cores free"),
        ("10", "10", "cpu", "none left"),
        ("10250m", "10", "cpu", "over by 250m"),
        ("480Mi", "4Gi", "memory", "3.5Gi free"),
        (1108, "50Gi", "memory", "50Gi free"),  # a few bytes of images
        (3, 10, "count", "7 left"),
        (12, 10, "count", "over by 2"),
        (None, "10Gi", "memory", ""),  # unknown: nothing to say
    ],
)
def test_headroom(used: object, allowed: object, kind: str, shown: str) -> None:
    assert figures.headroom(used, allowed, kind) == shown  # type: ignore[arg-type]
