"""The generic-app chart's health checks, start command and HorizontalPodAutoscaler: what it
renders is what Kubernetes accepts (the Kubernetes JSON schemas of kubernetes_validate and the
stand-in API server's HorizontalPodAutoscaler validation), command and args reach the process
word for word through the kubelet's $(VAR) expansion, the Deployment leaves its replicas to the
autoscaler (except when stopped), and the values schema refuses what the API server would.

Proved with the real helm binary (``helm template``, ``helm lint --strict``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from gitops_bridge import config, models
from gitops_bridge.render.helmrelease import values as chart_values
from tests import kubelet, kubelet_env
from tests.kubecontrollers import Workloads
from tests.kubefake import ApiError, FakeKube
from tests.test_chart import (
    IMAGE,
    NAMESPACE,
    RELEASE,
    by_name,
    helm_template,
    k8s_version,
    lint_strict,
    render,
)

# what people type, each word to reach the process exactly
COMMAND = ["sh", "-c", 'exec "$0" --port "$PORT" "$@"']
ARGS = [
    "gunicorn",
    "$(HOME)",  # the kubelet would expand it: the chart writes $$(HOME)
    "$$",
    "$",
    "{{ .Values.image }}",
    'say "hi" \\n',
    "",
    "日本語 🚀",
    "--flag=yes",
    "null",
    "0755",
]
SCALED: dict[str, Any] = {
    "image": IMAGE,
    "replicas": 2,
    "expose": True,
    "command": COMMAND,
    "args": ARGS,
    "probes": {
        "readiness": {"type": "http", "path": "/healthz?probe=ready"},
        "liveness": {"type": "http", "path": "/healthz?probe=ready"},
    },
    "autoscaling": {
        "enabled": True,
        "minReplicas": 2,
        "maxReplicas": 6,
        "targetCPUUtilizationPercentage": 75,
    },
}
HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")


def app_container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    return by_name(pod["containers"])["app"]


@pytest.fixture(scope="module")
def scaled(
    helm: str, chart_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    return render(helm, chart_dir, tmp_path_factory.mktemp("scaled"), SCALED)


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        yield server


def test_helm_lint_strict_with_autoscaling(helm: str, chart_dir: Path, tmp_path: Path) -> None:
    lint_strict(helm, chart_dir, tmp_path, SCALED)


def test_every_object_is_valid_kubernetes(scaled: dict[str, dict[str, Any]]) -> None:
    assert set(scaled) == {"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler"}
    for obj in scaled.values():
        kubernetes_validate.validate(obj, k8s_version(), strict=True)


def test_the_autoscaler_scales_the_release_on_the_app_containers_cpu(
    scaled: dict[str, dict[str, Any]],
) -> None:
    hpa = scaled["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["metadata"]["name"], hpa["metadata"]["namespace"]) == (RELEASE, NAMESPACE)
    assert hpa["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": RELEASE},
        "minReplicas": 2,
        "maxReplicas": 6,
        "metrics": [
            {
                "type": "ContainerResource",
                "containerResource": {
                    "name": "cpu",
                    "container": "app",
                    "target": {"type": "Utilization", "averageUtilization": 75},
                },
            }
        ],
    }
    # the Deployment leaves its replicas to the autoscaler
    assert "replicas" not in scaled["Deployment"]["spec"]


def test_http_probes_on_the_path_and_the_app_port(scaled: dict[str, dict[str, Any]]) -> None:
    app = app_container(scaled)
    for probe in ("readinessProbe", "livenessProbe"):
        assert app[probe]["httpGet"] == {"path": "/healthz?probe=ready", "port": "http"}
    assert app["ports"][0]["name"] == "http"


def test_command_and_args_reach_the_process_word_for_word(
    scaled: dict[str, dict[str, Any]],
) -> None:
    """The kubelet expands $(VAR) in command and args with the container's environment
    (kubelet ExpandContainerCommandAndArgs, the expansion of tests/kubelet_env.py): the chart's
    $$ escapes make every word arrive as typed."""
    app = app_container(scaled)
    mapping = kubelet_env.mapping_for({"HOME": "/home/app", "PORT": "8080"})
    assert [kubelet_env.expand(word, mapping) for word in app["command"]] == COMMAND
    assert [kubelet_env.expand(word, mapping) for word in app["args"]] == ARGS
    assert app["args"][1] == "$$(HOME)"


def test_without_them_nothing_is_added(helm: str, chart_dir: Path, tmp_path: Path) -> None:
    objects = render(helm, chart_dir, tmp_path, {"image": IMAGE, "replicas": 3})
    assert set(objects) == {"Deployment", "Service"}
    app = app_container(objects)
    assert "command" not in app and "args" not in app
    assert "tcpSocket" in app["readinessProbe"] and "tcpSocket" in app["livenessProbe"]
    assert objects["Deployment"]["spec"]["replicas"] == 3


def test_stopped_with_autoscaling_is_zero_replicas_and_no_autoscaler(
    helm: str, chart_dir: Path, tmp_path: Path
) -> None:
    """The HPA controller would not scale a Deployment at 0 anyway ("scaling is disabled")."""
    objects = render(helm, chart_dir, tmp_path, SCALED | {"replicas": 0})
    assert "HorizontalPodAutoscaler" not in objects
    assert objects["Deployment"]["spec"]["replicas"] == 0


def test_what_the_bridge_renders_is_what_the_chart_takes(
    helm: str, chart_dir: Path, tmp_path: Path
) -> None:
    spec = models.parse_deployment(
        {
            "name": "web",
            "image": IMAGE,
            "health": {"path": "/ready"},
            "command": ["run"],
            "args": ["--x", "$(Y)"],
            "autoscaling": {"min": 2, "max": 4, "cpu": 80},
        }
    )
    deployment = models.Deployment(group="team", id="abc123", spec=spec)
    settings = config.load(data_dir=tmp_path / "data")
    objects = render(helm, chart_dir, tmp_path, chart_values(deployment, settings=settings))
    app = app_container(objects)
    assert app["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert (app["command"], app["args"]) == (["run"], ["--x", "$$(Y)"])
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 4)
    assert hpa["metrics"][0]["containerResource"]["target"]["averageUtilization"] == 80


def test_the_api_server_stand_in_takes_the_release_and_the_autoscaler_scales_it(
    scaled: dict[str, dict[str, Any]], fake: FakeKube
) -> None:
    fake.apply(kubelet.frp_token(NAMESPACE))  # the exposed release's frpc reads it
    workloads = Workloads(fake)
    stored = {kind: fake.apply(obj) for kind, obj in scaled.items()}
    assert workloads.roll(stored["Deployment"], release=RELEASE, health="ok")
    deployment = fake.get("apps/v1", "Deployment", NAMESPACE, RELEASE)
    assert deployment is not None and deployment["spec"]["replicas"] == 2  # 1 -> minReplicas
    pods = [p for p in fake.items("v1", "Pod", NAMESPACE)]
    assert len(pods) == 2
    hpa = fake.get(*HPA, NAMESPACE, RELEASE)
    assert hpa is not None
    assert hpa["status"] == {"currentReplicas": 1, "desiredReplicas": 2}


def _hpa(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "maxReplicas": 3,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70},
                },
            }
        ],
    }
    body.update(spec)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": body,
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        # pkg/apis/autoscaling/validation/validation.go validateHorizontalPodAutoscalerSpec
        (
            {"minReplicas": 0},
            "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
        ),
        ({"maxReplicas": 0}, "spec.maxReplicas: Invalid value: 0: must be greater than 0"),
        (
            {"minReplicas": 4},
            "spec.maxReplicas: Invalid value: 3: must be greater than or equal to `minReplicas`",
        ),
        ({"scaleTargetRef": {"kind": "Deployment"}}, "spec.scaleTargetRef.name: Required value"),
        (
            {
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 0},
                        },
                    }
                ]
            },
            "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be "
            "greater than 0",
        ),
        (
            {
                "metrics": [
                    {
                        "type": "ContainerResource",
                        "containerResource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 50},
                        },
                    }
                ]
            },
            "spec.metrics[0].containerResource.container: Required value: must specify a container",
        ),
        (
            {"metrics": [{"type": "Cpu"}]},
            'spec.metrics[0].type: Unsupported value: "Cpu": supported values: ',
        ),
    ],
)
def test_the_stand_in_refuses_autoscalers_the_api_server_refuses(
    fake: FakeKube, spec: dict[str, Any], message: str
) -> None:
    fake.apply(_hpa())  # a valid one first
    with pytest.raises(ApiError) as refused:
        fake.apply(_hpa(**spec))
    assert refused.value.code == 422
    assert message in str(refused.value.body["message"]), refused.value.body["message"]


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (
            "autoscaling",
            {"enabled": True, "minReplicas": 0, "maxReplicas": 2},
            "/autoscaling/minReplicas",
        ),
        ("autoscaling", {"enabled": True, "maxReplicas": 0}, "/autoscaling/maxReplicas"),
        ("autoscaling", {"enabled": True, "maxReplicas": 2, "cpu": 5}, "cpu"),
        (
            "autoscaling",
            {"enabled": True, "maxReplicas": 2, "targetCPUUtilizationPercentage": 0},
            "/autoscaling/targetCPUUtilizationPercentage",
        ),
        ("command", "sh -c x", "/command"),
        ("command", ["ok", 5], "/command/1"),
        ("args", ["a\nb"], "/args/0"),
        ("args", ["a\u0085b"], "/args/0"),
        ("args", ["x"] * 65, "/args"),
    ],
)
def test_schema_refuses(
    helm: str, chart_dir: Path, tmp_path: Path, path: str, value: Any, field: str
) -> None:
    result = helm_template(helm, chart_dir, tmp_path, {"image": IMAGE, path: value})
    assert result.returncode != 0, result.stdout
    assert "schema" in result.stderr or "at '" in result.stderr, result.stderr
    assert field in result.stderr, result.stderr


def test_a_maximum_below_the_minimum_fails_the_render(
    helm: str, chart_dir: Path, tmp_path: Path
) -> None:
    scaling = {"enabled": True, "minReplicas": 3, "maxReplicas": 2}
    result = helm_template(helm, chart_dir, tmp_path, {"image": IMAGE, "autoscaling": scaling})
    assert result.returncode != 0
    assert "autoscaling.maxReplicas (2) must be >= autoscaling.minReplicas (3)" in result.stderr
