"""Proves models.py accepts valid deployment and group bodies and names field and rule on reject;
quantities in requests and settings are ones the API server stores without warnings (whole
bytes, millicores), while a repository written with finer ones still loads, rounded up."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gitops_bridge import config, models, quantity
from gitops_bridge.errors import InvalidRequest

DIGEST = "sha256:" + "0123456789abcdef" * 4
APP_RULE = "must be a DNS label (a-z, 0-9, '-'; start with a letter, end with a letter or digit; "
IMAGE_RULE = "must be an image reference"
ENV_RULE = "must be a C identifier"
QUANTITY_RULE = "must be a Kubernetes quantity"


def body(**fields: Any) -> dict[str, Any]:
    """A valid deployment body with some fields replaced."""
    return {"name": "web", "image": "nginx", **fields}


def group_body(**fields: Any) -> dict[str, Any]:
    return {"name": "team-a", "quota": {"cpu": "2", "memory": "4Gi", "deployments": 10}, **fields}


def problems_of(data: object, *, limits: models.Limits = models.DEFAULT_LIMITS) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as excinfo:
        models.parse_deployment(data, limits=limits)
    return {p.field: p.message for p in excinfo.value.problems}


def group_problems_of(data: object) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as excinfo:
        models.parse_group(data)
    return {p.field: p.message for p in excinfo.value.problems}


def only_problem(data: object, *, limits: models.Limits = models.DEFAULT_LIMITS) -> tuple[str, str]:
    problems = problems_of(data, limits=limits)
    assert len(problems) == 1, problems
    return next(iter(problems.items()))


# --- names --------------------------------------------------------------------------------------


def test_name_limits_fit_helm_and_namespace_lengths() -> None:
    assert len(f"{'a' * models.APP_NAME_MAX}-abc123") == 53  # Helm release name limit
    assert models.APP_NAME_MAX == 46
    assert len(f"group-{'a' * models.GROUP_NAME_MAX}") == 63  # namespace (DNS label) limit
    assert models.GROUP_NAME_MAX == 57


@pytest.mark.parametrize("name", ["a", "web", "my-app", "a1", "a-1-b", "web--2", "a" * 46])
def test_app_name_accepted(name: str) -> None:
    assert models.parse_deployment(body(name=name)).name == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Web",
        "My_App",
        "1web",
        "-web",
        "web-",
        "my.app",
        "web app",
        "wéb",
        "a" * 47,
        "web\n",
    ],
)
def test_app_name_rejected(name: str) -> None:
    field, message = only_problem(body(name=name))
    assert field == "name"
    assert message == f"{APP_RULE}max 46), got {name!r}"


def test_app_name_error_reads_like_the_style_guide() -> None:
    with pytest.raises(InvalidRequest) as excinfo:
        models.parse_deployment(body(name="My_App"))
    assert str(excinfo.value).startswith("name: must be a DNS label (a-z, 0-9, '-'; start with")
    assert "max 46), got 'My_App'" in str(excinfo.value)


# --- images -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "nginx",
        "nginx:1.25",
        "nginx:latest",
        "library/nginx",
        "registry:5000/team/web:1.0",
        f"ghcr.io/a/b@{DIGEST}",
        f"ghcr.io/a/b:v1@{DIGEST}",
        f"localhost:5000/x:tag@{DIGEST}",
        "localhost/x",
        "[::1]:5000/x",
        "[::1]/x",
        "[2001:db8::1]:443/team/app:v2",
        "my-registry.example.com:443/a/b",
        "Registry.Example.com/x",  # the host part may be upper case
        "a.b.c/d/e_f/g__h/i-j--k/l.m",
        "quay.io/org/app:v1.2.3-rc.1_b",
        "x:_tag",
        "x:TAG",
        "nginx:" + "a" * 128,
        "a" * 255,
    ],
)
def test_image_accepted(image: str) -> None:
    assert models.parse_deployment(body(image=image)).image == image


@pytest.mark.parametrize(
    "image",
    [
        "",
        "Nginx",
        "team/Web",
        "registry:5000/Team/web",
        ":tag",
        "@" + DIGEST,
        "a//b",
        "/nginx",
        "nginx/",
        "nginx-",
        "team/web-",
        "web-:1.0",
        "_nginx",
        "nginx..x",
        "a___b",
        "nginx:",
        "nginx:-tag",
        "nginx:.tag",
        "nginx:" + "a" * 129,
        "nginx:1.0:2.0",
        "nginx:a/b",
        "nginx@",
        "nginx@sha256:abc",
        "nginx@sha256",
        "nginx latest",
        " nginx",
        "https://registry/x",
        "registry:port/x",
        "a" * 256,
        "nginx\n",
        "nginx:tägé",
        "Team/web",
        "nginx@sha256:" + "a" * 63,
    ],
)
def test_image_rejected(image: str) -> None:
    field, message = only_problem(body(image=image))
    assert field == "image"
    assert message.startswith(IMAGE_RULE)
    assert message.endswith(f"got {image!r}")


ONLY_LOCAL = models.Limits(allowed_registries=["registry:5000"])


@pytest.mark.parametrize(
    "image", ["registry:5000/team/web:1.0", "registry:5000/x", f"registry:5000/x@{DIGEST}"]
)
def test_allowed_registry_accepted(image: str) -> None:
    assert models.parse_deployment(body(image=image), limits=ONLY_LOCAL).image == image


@pytest.mark.parametrize(
    "image",
    [
        "nginx",
        "library/nginx",
        "docker.io/nginx",
        "registry/x",
        "registry:5001/x",
        "registry:50000/x",
        "registry.evil:5000/x",
        "localhost:5000/x",
        "other.registry:5000/x",
    ],
)
def test_other_registries_rejected(image: str) -> None:
    field, message = only_problem(body(image=image), limits=ONLY_LOCAL)
    assert field == "image"
    assert message == f"must come from an allowed registry (registry:5000), got {image!r}"


def test_several_allowed_registries_are_listed() -> None:
    limits = models.Limits(allowed_registries=["registry:5000", "ghcr.io"])
    assert models.parse_deployment(body(image="ghcr.io/a/b"), limits=limits).image == "ghcr.io/a/b"
    _, message = only_problem(body(image="quay.io/a/b"), limits=limits)
    assert "(registry:5000, ghcr.io)" in message


# --- env ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["A", "_", "a", "a_b", "FOO_BAR1", "_1", "camelCase", "X" * 256])
def test_env_name_accepted(name: str) -> None:
    spec = models.parse_deployment(body(env=[{"name": name, "value": "v"}]))
    assert spec.env[0].name == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "1A",
        "A-B",
        "A.B",
        "A B",
        "É",
        "$A",
        "A=B",
        "X" * 257,
        "A\n",
    ],
)
def test_env_name_rejected(name: str) -> None:
    field, message = only_problem(body(env=[{"name": "OK", "value": ""}, {"name": name}]))
    assert field == "env[1].name"
    assert message.startswith(ENV_RULE)
    assert message.endswith(f"got {name!r}")


def test_duplicate_env_names_rejected() -> None:
    env = [{"name": "A", "value": "1"}, {"name": "B"}, {"name": "A", "value": "2"}]
    field, message = only_problem(body(env=env))
    assert field == "env[2].name"
    assert message == "duplicate name 'A'"


def test_env_names_are_case_sensitive() -> None:
    spec = models.parse_deployment(body(env=[{"name": "a"}, {"name": "A"}]))
    assert [v.name for v in spec.env] == ["a", "A"]


@pytest.mark.parametrize(
    "value",
    [
        "",
        'say "hi"',
        "it's",
        "'",
        "\\",
        "line1\nline2",
        "crlf\r\n",
        "\t tabbed ",
        "{{ .Values.secret }}",
        '{{- include "x" . }}',
        "${HOME} $(date) `id`",
        "ünïcødé ✓ 日本語 🚀",
        "a: b",
        "- item",
        "# comment",
        "---",
        "null",
        "true",
        "0",
        "!!binary",
        "&anchor *alias",
        "\u2028\u2029",
    ],
)
def test_env_value_accepted_unchanged(value: str) -> None:
    spec = models.parse_deployment(body(env=[{"name": "V", "value": value}]))
    assert spec.env[0].value == value


def test_env_value_defaults_to_empty() -> None:
    assert models.parse_deployment(body(env=[{"name": "V"}])).env[0].value == ""


@pytest.mark.parametrize("value", ["\x00", "a\x00b", "trailing\x00"])
def test_env_value_with_nul_rejected(value: str) -> None:
    field, message = only_problem(body(env=[{"name": "V", "value": value}]))
    assert (field, message) == ("env[0].value", "must not contain a NUL character")


@pytest.mark.parametrize(
    ("value", "ok"), [("abcd", True), ("éé", True), ("abcde", False), ("ééé", False)]
)
def test_env_value_size_limit_counts_utf8_bytes(value: str, ok: bool) -> None:
    limits = models.Limits(max_env_value_bytes=4)
    data = body(env=[{"name": "V", "value": value}])
    if ok:
        assert models.parse_deployment(data, limits=limits).env[0].value == value
    else:
        assert only_problem(data, limits=limits) == ("env[0].value", "must be at most 4 bytes")


def test_env_value_up_to_default_size_accepted() -> None:
    value = "x" * 32 * 1024
    assert models.parse_deployment(body(env=[{"name": "V", "value": value}])).env[0].value == value


def test_env_value_over_default_size_rejected() -> None:
    field, message = only_problem(body(env=[{"name": "V", "value": "x" * (32 * 1024 + 1)}]))
    assert (field, message) == ("env[0].value", "must be at most 32768 bytes")


def test_env_count_limit() -> None:
    limits = models.Limits(max_env=2)
    two = [{"name": "A"}, {"name": "B"}]
    assert len(models.parse_deployment(body(env=two), limits=limits).env) == 2
    field, message = only_problem(body(env=[*two, {"name": "C"}]), limits=limits)
    assert (field, message) == ("env", "must have at most 2 entries, got 3")


# --- ports and replicas -------------------------------------------------------------------------


@pytest.mark.parametrize("port", [1, 80, 8080, 65535])
def test_port_accepted(port: int) -> None:
    assert models.parse_deployment(body(port=port)).port == port


@pytest.mark.parametrize("port", [0, -1, 65536, 100_000])
def test_port_rejected(port: int) -> None:
    assert only_problem(body(port=port)) == ("port", f"must be 1..65535, got {port}")


@pytest.mark.parametrize("replicas", [0, 1, 20])
def test_replicas_accepted(replicas: int) -> None:
    assert models.parse_deployment(body(replicas=replicas)).replicas == replicas


@pytest.mark.parametrize("replicas", [-1, 21, 50])
def test_replicas_rejected(replicas: int) -> None:
    assert only_problem(body(replicas=replicas)) == ("replicas", f"must be 0..20, got {replicas}")


def test_replicas_bounded_by_custom_limits() -> None:
    limits = models.Limits(max_replicas=3)
    assert models.parse_deployment(body(replicas=3), limits=limits).replicas == 3
    assert only_problem(body(replicas=4), limits=limits) == ("replicas", "must be 0..3, got 4")


def test_replicas_error_reads_like_the_style_guide() -> None:
    with pytest.raises(InvalidRequest) as excinfo:
        models.parse_deployment(body(replicas=50))
    assert str(excinfo.value) == "replicas: must be 0..20, got 50"


def test_defaults() -> None:
    spec = models.parse_deployment(body())
    assert (spec.replicas, spec.port, spec.env, spec.expose) == (1, 8080, [], False)
    assert (spec.resources.cpu, spec.resources.memory) == ("100m", "128Mi")


# --- resources ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpu", "expected"),
    [
        ("0.5", "500m"),
        (0.5, "500m"),
        (".25", "250m"),
        ("500m", "500m"),
        ("1", "1"),
        (1, "1"),
        ("1000m", "1"),
        ("1.5", "1500m"),
        ("10m", "10m"),
        ("0.01", "10m"),
        ("1E-2", "10m"),
        ("4", "4"),
        ("4000m", "4"),
    ],
)
def test_cpu_normalised(cpu: object, expected: str) -> None:
    spec = models.parse_deployment(body(resources={"cpu": cpu}))
    assert spec.resources.cpu == expected
    assert spec.resources.memory == "128Mi"  # the other field keeps its default


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ("1024Mi", "1Gi"),
        ("128Mi", "128Mi"),
        ("16Mi", "16Mi"),
        ("16384Ki", "16Mi"),
        ("8Gi", "8Gi"),
        ("8192Mi", "8Gi"),
        ("0.5Gi", "512Mi"),
        ("1.5Gi", "1536Mi"),
        ("100M", "100000000"),
        ("128M", "125000Ki"),
        (268_435_456, "256Mi"),
        ("268435456", "256Mi"),
    ],
)
def test_memory_normalised(memory: object, expected: str) -> None:
    spec = models.parse_deployment(body(resources={"memory": memory}))
    assert spec.resources.memory == expected
    assert spec.resources.cpu == "100m"


@pytest.mark.parametrize(
    ("resources", "field", "message"),
    [
        ({"cpu": "5m"}, "resources.cpu", "must be 10m..4, got 5m"),
        ({"cpu": "0.001"}, "resources.cpu", "must be 10m..4, got 1m"),
        ({"cpu": "4001m"}, "resources.cpu", "must be 10m..4, got 4001m"),
        ({"cpu": 5}, "resources.cpu", "must be 10m..4, got 5"),
        ({"cpu": "0"}, "resources.cpu", "must be greater than 0, got '0'"),
        ({"cpu": "-1"}, "resources.cpu", "must be greater than 0, got '-1'"),
        ({"cpu": -0.5}, "resources.cpu", "must be greater than 0, got -0.5"),
        ({"memory": "15Mi"}, "resources.memory", "must be 16Mi..8Gi, got 15Mi"),
        ({"memory": "9Gi"}, "resources.memory", "must be 16Mi..8Gi, got 9Gi"),
        ({"memory": "8193Mi"}, "resources.memory", "must be 16Mi..8Gi, got 8193Mi"),
        ({"memory": "0"}, "resources.memory", "must be greater than 0, got '0'"),
    ],
)
def test_resources_out_of_range_rejected(
    resources: dict[str, object], field: str, message: str
) -> None:
    assert only_problem(body(resources=resources)) == (field, message)


@pytest.mark.parametrize(
    "value", ["abc", "1 Gi", "1mi", "Mi", "1.2.3", "2e3m", "", True, None, [1], {"a": 1}]
)
@pytest.mark.parametrize("key", ["cpu", "memory"])
def test_resources_non_quantities_rejected(key: str, value: object) -> None:
    field, message = only_problem(body(resources={key: value}))
    assert field == f"resources.{key}"
    assert message.startswith(QUANTITY_RULE)


def test_resources_bounded_by_custom_limits() -> None:
    limits = models.Limits(cpu_min="100m", cpu_max="500m", memory_min="64Mi", memory_max="1Gi")
    ok = models.parse_deployment(body(resources={"cpu": "0.5", "memory": "1024Mi"}), limits=limits)
    assert (ok.resources.cpu, ok.resources.memory) == ("500m", "1Gi")
    problems = problems_of(body(resources={"cpu": "50m", "memory": "2Gi"}), limits=limits)
    assert problems == {
        "resources.cpu": "must be 100m..500m, got 50m",
        "resources.memory": "must be 64Mi..1Gi, got 2Gi",
    }


# --- quantities the API server takes without warnings --------------------------------------------

BYTES = "must be a whole number of bytes"
MILLICORES = "must be a multiple of 1m"


@pytest.mark.parametrize(
    ("resources", "field", "message"),
    [
        (
            {"memory": "0.9Gi"},
            "resources.memory",
            f"{BYTES}; 0.9Gi is 966367641.6 bytes: use 966367641 or 966367642 (or 921Mi or 922Mi)",
        ),
        (
            {"memory": "100.5Mi"},  # 105381888 bytes: whole, accepted (see below)
            None,
            None,
        ),
        (
            {"memory": "134217728.5"},
            "resources.memory",
            f"{BYTES}; got 134217728.5: use 134217728 or 134217729 (or 128Mi or 129Mi)",
        ),
        ({"cpu": "0.0005"}, "resources.cpu", f"{MILLICORES} (a thousandth of a core); "),
        ({"cpu": "100u"}, "resources.cpu", f"{MILLICORES} (a thousandth of a core); 100u is 0.1m"),
        ({"cpu": "250.5m"}, "resources.cpu", "got 250.5m: use 250m or 251m"),
        ({"cpu": 0.0105}, "resources.cpu", "0.0105 is 10.5m: use 10m or 11m"),
    ],
)
def test_resources_finer_than_the_api_server_keeps_rejected(
    resources: dict[str, object], field: str | None, message: str | None
) -> None:
    if field is None:
        models.parse_deployment(body(resources=resources))
        return
    got_field, got_message = only_problem(body(resources=resources))
    assert got_field == field
    assert message is not None and message in got_message


def test_group_quota_in_fractional_bytes_or_sub_millicores_rejected() -> None:
    problems = group_problems_of(
        group_body(quota={"cpu": "1.5m", "memory": "0.9Gi", "storage": "1.5", "deployments": 1})
    )
    assert problems == {
        "quota.cpu": f"{MILLICORES} (a thousandth of a core); got 1.5m: use 1m or 2m",
        "quota.memory": (
            f"{BYTES}; 0.9Gi is 966367641.6 bytes: use 966367641 or 966367642 (or 921Mi or 922Mi)"
        ),
        "quota.storage": f"{BYTES}; got 1.5: use 1 or 2",
    }


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("memory_min", "16.1Mi", BYTES),
        ("memory_max", "0.9Gi", BYTES),
        ("cpu_min", "0.5m", MILLICORES),
        ("cpu_max", "4.0001", MILLICORES),
        ("memory_max", "lots", QUANTITY_RULE),
    ],
)
def test_limits_settings_must_be_what_the_api_server_stores(
    field: str, value: str, rule: str
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        models.Limits.model_validate({field: value})
    (error,) = excinfo.value.errors()
    assert error["loc"] == (field,) and rule in error["msg"]


def test_limits_settings_are_normalised() -> None:
    limits = models.Limits(cpu_max="4000m", memory_max="8192Mi", memory_min="16384Ki")
    assert (limits.cpu_max, limits.memory_max, limits.memory_min) == ("4", "8Gi", "16Mi")


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [("memory", "32.1Mi", BYTES), ("cpu", "10.5m", MILLICORES), ("cpu", "0", "greater than 0")],
)
def test_frp_sidecar_settings_must_be_what_the_api_server_stores(
    field: str, value: str, rule: str
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        config.load(frp={field: value})
    (error,) = excinfo.value.errors()
    assert error["loc"] == ("frp", field) and rule in error["msg"]


def test_a_repository_written_with_finer_quantities_still_loads_rounded_up() -> None:
    # Older versions wrote 0.9Gi as 966367641600000000n; a model read back from the repository
    # (no request context) rounds up as the kubelet does, instead of becoming unreadable.
    spec = models.DeploymentSpec.model_validate(
        body(resources={"cpu": "10500000n", "memory": "966367641600000000n"})
    )
    assert (spec.resources.cpu, spec.resources.memory) == ("11m", "966367642")
    quota = models.QuotaSpec.model_validate({"cpu": "1.5m", "memory": "0.9Gi", "deployments": 1})
    assert (quota.cpu, quota.memory) == ("2m", "966367642")
    # the same values as a request are refused
    assert set(problems_of(body(resources={"cpu": "10500000n"}))) == {"resources.cpu"}


memory_suffixes = st.sampled_from(["", "k", "M", "G", "Ki", "Mi", "Gi", "m", "e3", "e-1", "E2"])


@given(
    number=st.decimals(min_value=0, max_value=10_000, places=3, allow_nan=False),
    suffix=memory_suffixes,
)
def test_every_accepted_memory_is_a_whole_byte_count_that_renders_exactly(
    number: object, suffix: str
) -> None:
    text = f"{number}{suffix}"
    try:
        spec = models.parse_deployment(body(resources={"memory": text}))
    except InvalidRequest as error:
        (problem,) = error.problems
        assert problem.field == "resources.memory"
        return
    memory = quantity.parse(spec.resources.memory)
    assert memory == quantity.parse(text)  # accepted as given, never rounded
    assert memory.value.denominator == 1
    limit = (memory * 2).format_memory()  # what render writes as the limit
    assert quantity.parse(limit) == memory * 2 and limit.rstrip("KMGTPEi").isdigit()


@given(millicores=st.decimals(min_value=10, max_value=4000, places=2, allow_nan=False))
def test_every_accepted_cpu_is_whole_millicores(millicores: object) -> None:
    text = f"{millicores}m"
    try:
        spec = models.parse_deployment(body(resources={"cpu": text}))
    except InvalidRequest as error:
        assert MILLICORES in error.problems[0].message
        assert quantity.parse(text).value * 1000 % 1 != 0
        return
    cpu = quantity.parse(spec.resources.cpu)
    assert cpu == quantity.parse(text) and (cpu.value * 1000).denominator == 1
    assert not (cpu * 2).format_cpu().endswith(("n", "u"))


# --- structure and types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (body(foo=1), "foo"),
        (body(Name="web"), "Name"),
        (body(resources={"gpu": 1}), "resources.gpu"),
        (body(resources={"limits": {"cpu": "1"}}), "resources.limits"),
        (body(env=[{"name": "A", "valueFrom": {}}]), "env[0].valueFrom"),
    ],
)
def test_unknown_fields_rejected(data: dict[str, Any], field: str) -> None:
    assert only_problem(data) == (field, "unknown field")


def test_missing_required_fields() -> None:
    assert problems_of({}) == {"name": "is required", "image": "is required"}
    assert only_problem({"name": "web"}) == ("image", "is required")
    assert only_problem(body(env=[{"value": "x"}])) == ("env[0].name", "is required")


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("replicas", "3", "replicas"),
        ("replicas", True, "replicas"),
        ("replicas", 3.0, "replicas"),
        ("replicas", 2.5, "replicas"),
        ("replicas", None, "replicas"),
        ("port", "8080", "port"),
        ("port", False, "port"),
        ("expose", "yes", "expose"),
        ("expose", "true", "expose"),
        ("expose", 1, "expose"),
        ("expose", None, "expose"),
        ("name", 1, "name"),
        ("name", None, "name"),
        ("image", ["nginx"], "image"),
        ("image", b"nginx", "image"),
        ("env", {"A": "b"}, "env"),
        ("env", "A=b", "env"),
        ("env", ["A=b"], "env[0]"),
        ("env", [{"name": "A", "value": 1}], "env[0].value"),
        ("env", [{"name": 1}], "env[0].name"),
        ("resources", "small", "resources"),
        ("resources", ["100m"], "resources"),
    ],
)
def test_wrong_types_rejected(key: str, value: object, field: str) -> None:
    got_field, message = only_problem(body(**{key: value}))
    assert got_field == field
    assert message


@pytest.mark.parametrize("data", [[], [body()], "web", "", None, 1, True, b"{}", ("name", "web")])
def test_non_object_body_rejected(data: object) -> None:
    with pytest.raises(InvalidRequest) as excinfo:
        models.parse_deployment(data)
    error = excinfo.value
    assert str(error) == "the body must be a JSON object"
    assert error.status == 422 and not error.retryable
    assert error.to_dict()["problems"] == [
        {"field": "", "message": "the body must be a JSON object"}
    ]


def test_several_bad_fields_reported_together() -> None:
    data = {
        "name": "My_App",
        "image": "Nginx",
        "replicas": 50,
        "port": 0,
        "env": [{"name": "1X"}],
        "resources": {"cpu": "0", "memory": "1Ti"},
        "expose": "yes",
        "extra": 1,
    }
    with pytest.raises(InvalidRequest) as excinfo:
        models.parse_deployment(data)
    problems = {p.field: p.message for p in excinfo.value.problems}
    assert set(problems) == {
        "name",
        "image",
        "replicas",
        "port",
        "env[0].name",
        "resources.cpu",
        "resources.memory",
        "expose",
        "extra",
    }
    assert problems["replicas"] == "must be 0..20, got 50"
    assert problems["port"] == "must be 1..65535, got 0"
    assert problems["resources.memory"] == "must be 16Mi..8Gi, got 1Ti"
    assert problems["extra"] == "unknown field"
    # The summary message lists every problem, each as "field: rule".
    for field, message in problems.items():
        assert f"{field}: {message}" in excinfo.value.message


def test_full_valid_body_round_trips() -> None:
    data = {
        "name": "web",
        "image": "registry:5000/team/web:1.0",
        "replicas": 3,
        "port": 80,
        "env": [{"name": "GREETING", "value": 'he said "hi"\n{{ x }}'}],
        "resources": {"cpu": "250m", "memory": "256Mi"},
        "expose": True,
        "volumes": [{"volume": "data", "path": "/var/lib/web", "readOnly": False}],
        "health": {"path": "/healthz"},
        "command": ["gunicorn"],
        "args": ["--bind", "0.0.0.0:80", "app:app"],
        "autoscaling": {"min": 3, "max": 6, "cpu": 60},
    }
    spec = models.parse_deployment(data, limits=ONLY_LOCAL)
    assert spec.model_dump() == data
    assert models.parse_deployment(spec.model_dump(), limits=ONLY_LOCAL) == spec


def test_parse_deployment_accepts_any_mapping() -> None:
    from types import MappingProxyType

    assert models.parse_deployment(MappingProxyType(body())).name == "web"


# --- groups -------------------------------------------------------------------------------------


def test_group_accepted_and_normalised() -> None:
    group = models.parse_group(
        group_body(
            members=["alice", "bob", "alice", "a.b_c@d+e-f"],
            quota={"cpu": "2000m", "memory": "4096Mi", "deployments": 0},
        )
    )
    assert group.name == "team-a"
    assert group.namespace == "group-team-a"
    assert group.members == ["alice", "bob", "a.b_c@d+e-f"]  # deduplicated, order kept
    assert (group.quota.cpu, group.quota.memory, group.quota.storage) == ("2", "4Gi", "10Gi")
    assert group.quota.deployments == 0


@pytest.mark.parametrize("name", ["a", "team-a", "t1", "a" * 57])
def test_group_name_accepted(name: str) -> None:
    group = models.parse_group(group_body(name=name))
    assert group.name == name
    assert len(group.namespace) <= 63


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Team",
        "1team",
        "team-",
        "team_a",
        "a" * 58,
        "team\n",
    ],
)
def test_group_name_rejected(name: str) -> None:
    problems = group_problems_of(group_body(name=name))
    assert problems == {"name": f"{APP_RULE}max 57), got {name!r}"}


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        ({"name": "team-a"}, "quota", "is required"),
        (group_body(owner="x"), "owner", "unknown field"),
        (group_body(quota={"cpu": "1", "memory": "1Gi"}), "quota.deployments", "is required"),
        (
            group_body(quota={"cpu": "0", "memory": "1Gi", "deployments": 1}),
            "quota.cpu",
            "must be greater than 0",
        ),
        (
            group_body(quota={"cpu": "abc", "memory": "1Gi", "deployments": 1}),
            "quota.cpu",
            QUANTITY_RULE,
        ),
        (
            group_body(quota={"cpu": "1", "memory": "1 Gi", "deployments": 1}),
            "quota.memory",
            QUANTITY_RULE,
        ),
        (
            group_body(quota={"cpu": "1", "memory": "1Gi", "storage": "-1", "deployments": 1}),
            "quota.storage",
            "must be greater than 0",
        ),
        (
            group_body(quota={"cpu": "1", "memory": "1Gi", "deployments": -1}),
            "quota.deployments",
            "greater than or equal to 0",
        ),
        (
            group_body(quota={"cpu": "1", "memory": "1Gi", "deployments": 10_001}),
            "quota.deployments",
            "less than or equal to 10000",
        ),
        (
            group_body(quota={"cpu": "1", "memory": "1Gi", "deployments": "5"}),
            "quota.deployments",
            "must be a whole number",
        ),
        (
            group_body(quota={"cpu": "1", "memory": "1Gi", "deployments": True}),
            "quota.deployments",
            "must be a whole number",
        ),
        (
            group_body(quota={"cpu": "1", "memory": "1Gi", "deployments": 1, "gpu": 1}),
            "quota.gpu",
            "unknown field",
        ),
        (group_body(members="alice"), "members", "must be a list"),
        (group_body(members=[1]), "members[0]", "must be a string"),
        (group_body(name=5), "name", "must be a string"),
    ],
)
def test_group_rejected(data: dict[str, Any], field: str, fragment: str) -> None:
    problems = group_problems_of(data)
    assert field in problems, problems
    assert fragment in problems[field]


@pytest.mark.parametrize(
    "member",
    [member for member in ["bad name", "-alice", "a" * 254, "älice"]],
)
def test_bad_member_names_field_and_rule(member: str) -> None:
    problems = group_problems_of(group_body(members=["alice", member]))
    assert problems == {
        "members[1]": "must be a user name (letters, digits, '.', '_', '@', '+', '-'; max 253), "
        f"got {member!r}"
    }


@pytest.mark.parametrize("member", ["bad name", "-alice", "a" * 254, "älice"])
def test_bad_member_names_rejected(member: str) -> None:
    # Whatever the field label, a bad member is rejected and the rule is reported somewhere.
    with pytest.raises(InvalidRequest) as excinfo:
        models.parse_group(group_body(members=[member]))
    assert "must be a user name" in str(excinfo.value)


@pytest.mark.parametrize("data", [[], "team", None, 3])
def test_group_non_object_body_rejected(data: object) -> None:
    assert group_problems_of(data) == {"": "the body must be a JSON object"}


# --- properties ---------------------------------------------------------------------------------

LOWER_ALNUM = string.ascii_lowercase + string.digits

app_names = st.from_regex(r"[a-z](?:[-a-z0-9]{0,44}[a-z0-9])?", fullmatch=True)
path_components = st.builds(
    lambda parts, seps: parts[0] + "".join(s + p for s, p in zip(seps, parts[1:], strict=False)),
    st.lists(st.text(LOWER_ALNUM, min_size=1, max_size=6), min_size=1, max_size=3),
    st.lists(st.sampled_from([".", "_", "__", "-", "--"]), min_size=2, max_size=2),
)
domains = st.one_of(
    st.none(),
    st.sampled_from(
        ["registry:5000", "ghcr.io", "localhost:5000", "[::1]:5000", "Quay.IO", "a-b.c"]
    ),
)
tags = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True))
digests = st.one_of(st.none(), st.text("0123456789abcdef", min_size=64, max_size=64))


@st.composite
def images(draw: st.DrawFn) -> str:
    domain = draw(domains)
    path = "/".join(draw(st.lists(path_components, min_size=1, max_size=4)))
    tag, digest = draw(tags), draw(digests)
    return (
        (f"{domain}/" if domain else "")
        + path
        + (f":{tag}" if tag is not None else "")
        + (f"@sha256:{digest}" if digest is not None else "")
    )


@pytest.mark.parametrize("char", ["\x01", "\x1b", "\x7f", "\x85", "\ufeff"])
def test_env_value_control_characters_rejected(char: str) -> None:
    field, message = only_problem(body(env=[{"name": "A", "value": f"a{char}b"}]))
    assert field == "env[0].value"
    assert message.startswith("must not contain control characters")
    assert f"U+{ord(char):04X}" in message


env_values = st.text(
    st.characters(
        exclude_characters="\ufeff\ufffe\uffff",
        exclude_categories=["Cs", "Cc"],
    )
    | st.sampled_from("\t\n\r"),
    max_size=200,
)
env_lists = st.lists(
    st.fixed_dictionaries(
        {"name": st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,40}", fullmatch=True), "value": env_values}
    ),
    max_size=5,
    unique_by=lambda var: var["name"],
)


@given(
    name=app_names,
    image=images(),
    replicas=st.integers(0, 20),
    port=st.integers(1, 65535),
    env=env_lists,
    millicores=st.integers(10, 4000),
    mebibytes=st.integers(16, 8192),
    expose=st.booleans(),
)
def test_valid_components_always_validate(
    name: str,
    image: str,
    replicas: int,
    port: int,
    env: list[dict[str, str]],
    millicores: int,
    mebibytes: int,
    expose: bool,
) -> None:
    data = {
        "name": name,
        "image": image,
        "replicas": replicas,
        "port": port,
        "env": env,
        "resources": {"cpu": f"{millicores}m", "memory": f"{mebibytes}Mi"},
        "expose": expose,
    }
    spec = models.parse_deployment(data)
    assert (spec.name, spec.image, spec.replicas, spec.port, spec.expose) == (
        name,
        image,
        replicas,
        port,
        expose,
    )
    assert [v.model_dump() for v in spec.env] == env  # values unchanged
    assert quantity.parse(spec.resources.cpu) == quantity.parse(f"{millicores}m")
    assert quantity.parse(spec.resources.memory) == quantity.parse(f"{mebibytes}Mi")
    # Normalised output is a fixed point: validating it again changes nothing.
    assert models.parse_deployment(spec.model_dump()) == spec


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
field_names = st.sampled_from(
    ["name", "image", "replicas", "port", "env", "resources", "expose", "cpu", "memory", "value"]
)
bodies = st.dictionaries(field_names | st.text(max_size=8), json_values, max_size=8)


def _assert_problem_shape(error: InvalidRequest, *, non_empty_message: bool) -> None:
    payload = error.to_dict()
    assert payload["error"] == "InvalidRequest"
    assert payload["retryable"] is False
    problems = payload["problems"]
    assert isinstance(problems, list) and problems
    for problem in problems:
        assert set(problem) == {"field", "message"}
        assert isinstance(problem["field"], str)
        assert isinstance(problem["message"], str)
        if non_empty_message:
            assert problem["message"]


@given(data=st.one_of(bodies, json_values))
def test_invalid_request_always_lists_problems(data: object) -> None:
    try:
        models.parse_deployment(data)
    except InvalidRequest as error:
        _assert_problem_shape(error, non_empty_message=True)


@given(
    data=st.one_of(
        st.dictionaries(
            st.sampled_from(["name", "members", "quota"]) | st.text(max_size=8), json_values
        ),
        json_values,
    )
)
def test_invalid_group_request_always_lists_problems(data: object) -> None:
    # Messages may be empty for bad member names (see test_bad_member_names_field_and_rule).
    try:
        models.parse_group(data)
    except InvalidRequest as error:
        _assert_problem_shape(error, non_empty_message=False)
