"""Proves quantity.py parses, orders, adds and multiplies Kubernetes quantities exactly, formats
them as the API server stores them without warnings (whole bytes, millicores; never ``n``), and
explains a value finer than that with the nearest valid ones."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitops_bridge import quantity
from gitops_bridge.quantity import Quantity, QuantityError

KI, MI, GI, TI, PI, EI = (2**10, 2**20, 2**30, 2**40, 2**50, 2**60)


# --- grammar: accepted --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # plain integers and decimals
        ("0", 0),
        ("1", 1),
        ("42", 42),
        ("007", 7),
        ("1.5", Fraction(3, 2)),
        ("0.1", Fraction(1, 10)),
        ("1.", 1),
        (".5", Fraction(1, 2)),
        # signs
        ("+1", 1),
        ("-1", -1),
        ("-.5", Fraction(-1, 2)),
        ("+.5m", Fraction(1, 2000)),
        ("-250m", Fraction(-1, 4)),
        # decimal SI, below one
        ("1n", Fraction(1, 10**9)),
        ("1u", Fraction(1, 10**6)),
        ("250m", Fraction(1, 4)),
        ("1500m", Fraction(3, 2)),
        ("0.5m", Fraction(1, 2000)),
        # decimal SI, above one
        ("1k", 10**3),
        ("1M", 10**6),
        ("1G", 10**9),
        ("1T", 10**12),
        ("1P", 10**15),
        ("1E", 10**18),
        ("1.5G", 1_500_000_000),
        # binary SI
        ("1Ki", KI),
        ("1Mi", MI),
        ("512Mi", 512 * MI),
        ("1Gi", GI),
        ("1Ti", TI),
        ("1Pi", PI),
        ("1Ei", EI),
        ("1.5Gi", 3 * GI // 2),
        ("0.5Ki", 512),
        # decimal exponents
        ("2e3", 2000),
        ("2E3", 2000),
        ("1e0", 1),
        ("1e+3", 1000),
        ("1E-2", Fraction(1, 100)),
        ("1.5e-3", Fraction(3, 2000)),
        ("-2e3", -2000),
    ],
)
def test_parse_accepts_kubernetes_grammar(text: str, expected: Fraction | int) -> None:
    assert quantity.parse(text).value == Fraction(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3),
        (0, 0),
        (-2, -2),
        (0.5, Fraction(1, 2)),
        (0.1, Fraction(1, 10)),
        (1e-05, Fraction(1, 10**5)),
    ],
)
def test_parse_accepts_json_numbers(value: int | float, expected: Fraction | int) -> None:
    # JSON bodies carry numbers; floats are read by their shortest repr, so 0.1 is exactly 1/10.
    assert quantity.parse(value).value == Fraction(expected)


def test_quantity_class_parse_matches_module_parse() -> None:
    assert Quantity.parse("250m") == quantity.parse("250m")


# --- grammar: rejected --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "abc",
        "1.2.3",
        "Mi",
        "m",
        "1mi",
        "1MI",
        "1KI",
        "1K",  # decimal kilo is lower-case k
        "1 Gi",
        "1Gib",
        "1GiB",
        "1e",
        "1e+",
        "e3",
        ".",
        "-",
        "+",
        "--1",
        "1,5",
        "0x10",
        "1_000",
        "1e3Mi",
        "Infinity",
        "NaN",
        "1e31",  # exponent out of range
        "1e-31",
        "1" * 65,  # longer than 64 characters
    ],
)
def test_parse_rejects_non_quantities(text: str) -> None:
    with pytest.raises(QuantityError, match="must be a Kubernetes quantity"):
        quantity.parse(text)


def test_parse_trims_outer_whitespace() -> None:
    # Kubernetes trims a JSON quantity before parsing; inner whitespace stays an error.
    assert quantity.parse(" 1Gi ") == quantity.parse("1Gi")


@pytest.mark.parametrize("value", [True, False, None, [], {}, b"1", float("inf"), float("nan")])
def test_parse_rejects_non_text_values(value: object) -> None:
    with pytest.raises(QuantityError, match="must be a Kubernetes quantity"):
        quantity.parse(value)  # type: ignore[arg-type]


def test_error_names_the_rule_and_the_value() -> None:
    with pytest.raises(QuantityError) as excinfo:
        quantity.parse("1.2.3")
    message = str(excinfo.value)
    assert "250m" in message and "512Mi" in message  # examples of what is allowed
    assert "'1.2.3'" in message  # what was given


def test_quantity_error_is_a_value_error() -> None:
    assert issubclass(QuantityError, ValueError)


# --- exact arithmetic ---------------------------------------------------------------------------


def test_addition_is_exact() -> None:
    assert quantity.parse("0.1") + quantity.parse("0.2") == quantity.parse("300m")
    assert quantity.parse(0.1) + quantity.parse(0.2) == quantity.parse("0.3")


def test_subtraction() -> None:
    assert quantity.parse("1") - quantity.parse("250m") == quantity.parse("750m")
    assert quantity.parse("1Gi") - quantity.parse("1Gi") == Quantity(0)
    assert (quantity.parse("1") - quantity.parse("2")).value == -1


def test_mixed_units_add_up() -> None:
    assert quantity.parse("512Mi") + quantity.parse("512Mi") == quantity.parse("1Gi")
    assert quantity.parse("1k") + quantity.parse("24") == quantity.parse("1024")
    assert quantity.parse("1024") == quantity.parse("1Ki")


def test_total() -> None:
    parts = [quantity.parse(t) for t in ("100m", "250m", "0.65", "1e-3", "999m")]
    assert quantity.total(parts) == quantity.parse("2")
    assert quantity.total([]) == Quantity(0)


@pytest.mark.parametrize(
    ("text", "factor", "expected"),
    [
        ("250m", 4, "1"),
        ("512Mi", 3, "1536Mi"),
        ("100m", 0, "0"),
        ("1Gi", Fraction(1, 2), "512Mi"),
        ("300m", 10, "3"),
        ("1", -2, "-2"),
    ],
)
def test_multiplication(text: str, factor: int | Fraction, expected: str) -> None:
    q = quantity.parse(text)
    assert q * factor == quantity.parse(expected)
    assert factor * q == quantity.parse(expected)


def test_arithmetic_does_not_mutate_operands() -> None:
    a, b = quantity.parse("1"), quantity.parse("2")
    _ = a + b
    _ = a * 5
    assert a.value == 1 and b.value == 2


# --- ordering, equality, hashing ----------------------------------------------------------------


def test_ordering() -> None:
    assert quantity.parse("999m") < quantity.parse("1")
    assert quantity.parse("1G") < quantity.parse("1Gi")
    assert quantity.parse("1Mi") > quantity.parse("1M")
    assert quantity.parse("-1") < quantity.parse("0") <= quantity.parse("0m")
    assert quantity.parse("2e3") >= quantity.parse("2k")
    texts = ["1Gi", "100m", "1", "1G", "0", "-5", "1Ki", "2e3"]
    ordered = sorted(quantity.parse(t) for t in texts)
    assert [q.value for q in ordered] == sorted(quantity.parse(t).value for t in texts)
    assert max(quantity.parse(t) for t in texts) == quantity.parse("1Gi")


def test_equality_is_by_value_across_spellings() -> None:
    spellings = ["1", "1000m", "0.001e3", "0.001k", "1e0", "+1", "1.0", "1000000u", "1000000000n"]
    values = {quantity.parse(t) for t in spellings}
    assert len(values) == 1
    assert hash(quantity.parse("1Ki")) == hash(quantity.parse("1024"))


def test_not_equal_to_other_types() -> None:
    assert quantity.parse("1") != 1
    assert quantity.parse("1") != "1"


# --- formatting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", "0"),
        ("1", "1"),
        ("2000m", "2"),
        ("1000m", "1"),
        ("0.5", "500m"),
        (".25", "250m"),
        ("1.5", "1500m"),
        ("100m", "100m"),
        ("1m", "1m"),
        ("2e3", "2000"),
        ("1E-2", "10m"),
        ("1k", "1000"),
        ("-250m", "-250m"),
    ],
)
def test_format_cpu_canonical(text: str, expected: str) -> None:
    formatted = quantity.parse(text).format_cpu()
    assert formatted == expected
    assert quantity.parse(formatted) == quantity.parse(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", "0"),
        ("1", "1"),
        ("1000", "1000"),
        ("1024", "1Ki"),
        ("1024Mi", "1Gi"),
        ("1536Mi", "1536Mi"),
        ("1.5Gi", "1536Mi"),
        ("0.5Gi", "512Mi"),
        ("2048Ki", "2Mi"),
        ("1Ti", "1Ti"),
        ("1024Gi", "1Ti"),
        ("1Pi", "1Pi"),
        ("1024Pi", "1Ei"),
        ("2Ei", "2Ei"),
        ("1G", "1000000000"),  # 10^9 is not a whole number of Ki
        ("128M", "125000Ki"),
        ("1k", "1000"),
        ("-1Ki", "-1Ki"),
    ],
)
def test_format_memory_canonical(text: str, expected: str) -> None:
    formatted = quantity.parse(text).format_memory()
    assert formatted == expected
    assert quantity.parse(formatted) == quantity.parse(text)


@pytest.mark.parametrize(
    ("text", "cpu", "memory"),
    [
        # finer than the API server keeps: rounded up like Value()/MilliValue() (ceil)
        ("1u", "1m", "1"),
        ("0.0001", "1m", "1"),
        ("1n", "1m", "1"),
        ("1500m", "1500m", "2"),
        ("0.9Gi", "966367641600m", "966367642"),
        ("1.8Gi", "1932735283200m", "1932735284"),
        ("1000.5m", "1001m", "2"),
        ("-0.5m", "-1m", "-1"),
    ],
)
def test_formatting_rounds_up_to_what_the_api_server_stores(
    text: str, cpu: str, memory: str
) -> None:
    q = quantity.parse(text)
    assert (q.format_cpu(), q.format_memory()) == (cpu, memory)
    assert not cpu.endswith(("n", "u")) and not memory.endswith(("n", "u", "m"))


def test_formatting_rounds_up_non_decimal_fractions() -> None:
    q = Quantity(Fraction(1, 3))
    assert (q.format_cpu(), q.format_memory()) == ("334m", "1")
    assert repr(q) == "Quantity('0.333333333')"


# --- what the API server takes without warnings: whole bytes, millicores -------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "0.9Gi",
            "must be a whole number of bytes; 0.9Gi is 966367641.6 bytes: "
            "use 966367641 or 966367642 (or 921Mi or 922Mi)",
        ),
        ("1.5", "must be a whole number of bytes; got 1.5: use 1 or 2"),
        ("500m", "must be a whole number of bytes; 500m is 0.5 bytes: use 1"),
        ("1.1Ki", "must be a whole number of bytes; 1.1Ki is 1126.4 bytes: use 1126 or 1127"),
        ("1e-3", "must be a whole number of bytes; 1e-3 is 0.001 bytes: use 1"),
    ],
)
def test_fractional_bytes_are_explained_with_the_nearest_whole_values(
    text: str, message: str
) -> None:
    assert quantity.whole_bytes_problem(quantity.parse(text), text) == message


@pytest.mark.parametrize("text", ["1", "1Ki", "0.5Ki", "1.5Gi", "128M", "1e3", "1000000000n"])
def test_whole_bytes_have_no_problem(text: str) -> None:
    assert quantity.whole_bytes_problem(quantity.parse(text), text) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.0005", "must be a multiple of 1m (a thousandth of a core); 0.0005 is 0.5m: use 1m"),
        ("100u", "must be a multiple of 1m (a thousandth of a core); 100u is 0.1m: use 1m"),
        ("1.5m", "must be a multiple of 1m (a thousandth of a core); got 1.5m: use 1m or 2m"),
        (
            "1.0005",
            "must be a multiple of 1m (a thousandth of a core); 1.0005 is 1000.5m: use 1 or 1001m",
        ),
    ],
)
def test_sub_millicore_cpu_is_explained_with_the_nearest_millicores(
    text: str, message: str
) -> None:
    assert quantity.millicores_problem(quantity.parse(text), text) == message


@pytest.mark.parametrize("text", ["1m", "0.001", "100m", "1", "2e3", "1000000n", "0.5"])
def test_millicores_have_no_problem(text: str) -> None:
    assert quantity.millicores_problem(quantity.parse(text), text) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Fraction(9663676416, 10), "966367641.6"),
        (Fraction(1, 1000), "0.001"),
        (Fraction(-5, 2), "-2.5"),
        (Fraction(42), "42"),
    ],
)
def test_exact_decimal(value: Fraction, expected: str) -> None:
    assert quantity.exact(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1536Mi", "1.5Gi"), ("300Mi", "300Mi"), ("1Ki", "1Ki"), ("100", "100 B"), ("2Ti", "2Ti")],
)
def test_human_memory(text: str, expected: str) -> None:
    assert quantity.parse(text).human_memory() == expected


def test_repr_shows_the_value() -> None:
    assert repr(quantity.parse("250m")) == "Quantity('250m')"


def test_quantity_is_immutable_by_slots() -> None:
    q = quantity.parse("1")
    with pytest.raises(AttributeError):
        q.other = 1  # type: ignore[attr-defined]


# --- properties ---------------------------------------------------------------------------------

EXACT_SUFFIXES = [
    "",
    *("n", "u", "m", "k", "M", "G", "T", "P", "E"),
    *("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"),
    # Exponents down to e-9 stay within the nano precision Kubernetes keeps.
    *(f"e{x}" for x in range(-9, 19)),
    *(f"E{x}" for x in range(-9, 19)),
    "e+3",
    "E+6",
]


@given(n=st.integers(min_value=-(10**12), max_value=10**12), suffix=st.sampled_from(EXACT_SUFFIXES))
def test_format_memory_round_trips_whole_bytes_and_rounds_up_the_rest(n: int, suffix: str) -> None:
    original = quantity.parse(f"{n}{suffix}")
    formatted = original.format_memory()
    reparsed = quantity.parse(formatted)
    assert reparsed.value.denominator == 1  # never a fractional byte value
    if quantity.whole_bytes_problem(original, formatted) is None:
        assert reparsed == original
    else:
        assert abs(reparsed.value) - 1 < abs(original.value) < abs(reparsed.value)


@given(n=st.integers(min_value=-(10**12), max_value=10**12), suffix=st.sampled_from(EXACT_SUFFIXES))
def test_format_cpu_round_trips_millicores_and_rounds_up_the_rest(n: int, suffix: str) -> None:
    original = quantity.parse(f"{n}{suffix}")
    formatted = original.format_cpu()
    reparsed = quantity.parse(formatted)
    assert (reparsed.value * 1000).denominator == 1 and not formatted.endswith(("n", "u"))
    if quantity.millicores_problem(original, formatted) is None:
        assert reparsed == original
    else:
        assert abs(reparsed.value) - Fraction(1, 1000) < abs(original.value) < abs(reparsed.value)


@given(millicores=st.integers(min_value=0, max_value=10**9))
def test_format_cpu_round_trips_millicores(millicores: int) -> None:
    original = quantity.parse(f"{millicores}m")
    formatted = original.format_cpu()
    assert quantity.parse(formatted) == original
    if millicores % 1000 == 0:
        assert formatted == str(millicores // 1000)
    else:
        assert formatted == f"{millicores}m"


@given(n=st.integers(min_value=1, max_value=2**40))
def test_format_memory_uses_the_largest_exact_binary_unit(n: int) -> None:
    formatted = Quantity(n).format_memory()
    number = formatted.rstrip("KMGTPEi")
    suffix = formatted[len(number) :]
    assert quantity.parse(formatted).value == n
    if suffix:
        # the next larger unit would not divide the value exactly
        assert int(number) % 1024 != 0 or suffix == "Ei"
    else:
        assert n % 1024 != 0


@given(
    a=st.integers(min_value=-(10**9), max_value=10**9),
    b=st.integers(min_value=-(10**9), max_value=10**9),
)
def test_addition_matches_integer_millicores(a: int, b: int) -> None:
    total = quantity.parse(f"{a}m") + quantity.parse(f"{b}m")
    assert total == quantity.parse(f"{a + b}m")
    assert (quantity.parse(f"{a}m") < quantity.parse(f"{b}m")) == (a < b)
