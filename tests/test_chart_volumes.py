"""The generic-app chart mounts PersistentVolumeClaims and rolls out with Recreate: what it
renders is what the API server accepts (Kubernetes schemas, the stand-in API server's
validation), and the values schema refuses what the API server or the runtime would.

Proved with the real helm binary (``helm template``, ``helm lint --strict``), the schemas of
kubernetes_validate and ``tests/kubefake.py``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

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

VOLUMES: list[dict[str, Any]] = [
    {"name": "data", "mountPath": "/var/lib/app"},
    {"name": "cache", "mountPath": "/cache", "readOnly": True},
    {"name": "shared", "mountPath": "/srv/shared files", "readOnly": False},
]
WITH_VOLUMES: dict[str, Any] = {
    "image": IMAGE,
    "expose": True,
    "strategy": "Recreate",
    "volumes": VOLUMES,
    "securityContext": {"runAsUser": 2000, "runAsGroup": 3000},
}
# pkg/apis/core/validation/validation.go ValidateVolumes: a pod volume name is a DNS label.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def pod_spec(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = objects["Deployment"]["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def mounted(
    helm: str, chart_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    return render(helm, chart_dir, tmp_path_factory.mktemp("volumes"), WITH_VOLUMES)


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        yield server


def test_helm_lint_strict_with_volumes(helm: str, chart_dir: Path, tmp_path: Path) -> None:
    lint_strict(helm, chart_dir, tmp_path, WITH_VOLUMES)


def test_the_deployment_mounts_the_claims(mounted: dict[str, dict[str, Any]]) -> None:
    spec = pod_spec(mounted)
    volumes = by_name(spec["volumes"])
    assert list(volumes) == ["frpc-config", "vol-data", "vol-cache", "vol-shared"]
    for volume in VOLUMES:
        assert volumes[f"vol-{volume['name']}"] == {
            "name": f"vol-{volume['name']}",
            "persistentVolumeClaim": {
                "claimName": volume["name"],
                "readOnly": bool(volume.get("readOnly", False)),
            },
        }
    containers = by_name(spec["containers"])
    assert containers["app"]["volumeMounts"] == [
        {
            "name": f"vol-{v['name']}",
            "mountPath": v["mountPath"],
            "readOnly": bool(v.get("readOnly", False)),
        }
        for v in VOLUMES
    ]
    # the sidecar sees its own config only
    assert [m["name"] for m in containers["frpc"]["volumeMounts"]] == ["frpc-config"]
    # writable for the non-root user: the kubelet gives the volume's files the fsGroup
    assert spec["securityContext"]["fsGroup"] == 3000
    assert spec["securityContext"]["runAsUser"] == 2000


def test_recreate_renders_without_rolling_update(mounted: dict[str, dict[str, Any]]) -> None:
    assert mounted["Deployment"]["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize("strategy", [None, "RollingUpdate"])
def test_rolling_update_stays_the_default(
    helm: str, chart_dir: Path, tmp_path: Path, strategy: str | None
) -> None:
    values: dict[str, Any] = {"image": IMAGE, "volumes": VOLUMES[:1]}
    if strategy:
        values["strategy"] = strategy
    deployment = render(helm, chart_dir, tmp_path, values)["Deployment"]
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    # without expose only the claim is a pod volume
    assert [v["name"] for v in pod_spec({"Deployment": deployment})["volumes"]] == ["vol-data"]


def test_no_volumes_renders_no_volumes(helm: str, chart_dir: Path, tmp_path: Path) -> None:
    spec = pod_spec(render(helm, chart_dir, tmp_path, {"image": IMAGE}))
    assert "volumes" not in spec
    assert "volumeMounts" not in spec["containers"][0]


@pytest.mark.parametrize(
    "values",
    [
        WITH_VOLUMES,
        {**WITH_VOLUMES, "expose": False, "strategy": "RollingUpdate"},
        {"image": IMAGE, "volumes": [{"name": "d" * 59, "mountPath": "/" + "p" * 1023}]},
    ],
    ids=["recreate-exposed", "rolling", "longest"],
)
def test_the_render_is_what_kubernetes_accepts(
    helm: str, chart_dir: Path, tmp_path: Path, fake: FakeKube, values: dict[str, Any]
) -> None:
    objects = render(helm, chart_dir, tmp_path, values)
    version = k8s_version()
    for obj in objects.values():
        kubernetes_validate.validate(obj, version, strict=True)
        fake.apply(obj, dry_run=True)  # the stand-in API server's validation and admission
    for volume in pod_spec(objects)["volumes"]:
        assert len(volume["name"]) <= 63 and DNS_LABEL.fullmatch(volume["name"]), volume


def test_the_api_server_refuses_recreate_with_rolling_update(
    mounted: dict[str, dict[str, Any]], fake: FakeKube
) -> None:
    """What the chart must not render: the stand-in refuses it as the API server does."""
    deployment = copy.deepcopy(mounted["Deployment"])
    deployment["spec"]["strategy"]["rollingUpdate"] = {"maxSurge": 1, "maxUnavailable": 0}
    with pytest.raises(ApiError) as refused:
        fake.apply(deployment, dry_run=True)
    assert refused.value.code == 422
    assert refused.value.body["message"] == (
        f'Deployment.apps "{RELEASE}" is invalid: spec.strategy.rollingUpdate: Forbidden: '
        "may not be specified when strategy `type` is 'Recreate'"
    )


def _volumes(*items: Any) -> dict[str, Any]:
    return {"image": IMAGE, "volumes": list(items)}


@pytest.mark.parametrize(
    ("values", "field"),
    [
        (_volumes({"name": "data", "mountPath": "data"}), "/volumes/0/mountPath"),
        (_volumes({"name": "data", "mountPath": ""}), "/volumes/0/mountPath"),
        (_volumes({"name": "data", "mountPath": "/"}), "/volumes/0/mountPath"),
        (_volumes({"name": "data", "mountPath": "/a/../etc"}), "/volumes/0/mountPath"),
        (_volumes({"name": "data", "mountPath": "/.."}), "/volumes/0/mountPath"),
        (_volumes({"name": "data", "mountPath": "/x/.."}), "/volumes/0/mountPath"),
        (_volumes({"name": "data", "mountPath": "/a\nb"}), "/volumes/0/mountPath"),
        (_volumes({"name": "data", "mountPath": "/" + "p" * 1024}), "/volumes/0/mountPath"),
        (_volumes({"name": "Data", "mountPath": "/d"}), "/volumes/0/name"),
        (_volumes({"name": "my.data", "mountPath": "/d"}), "/volumes/0/name"),
        (_volumes({"name": "-data", "mountPath": "/d"}), "/volumes/0/name"),
        (_volumes({"name": "d" * 60, "mountPath": "/d"}), "/volumes/0/name"),
        (_volumes({"name": "data", "mountPath": "/d", "readOnly": "yes"}), "/volumes/0/readOnly"),
        (_volumes({"name": "data", "mountPath": "/d", "subPath": "x"}), "subPath"),
        (_volumes({"mountPath": "/d"}), "name"),
        (_volumes({"name": "data"}), "mountPath"),
        ({"image": IMAGE, "volumes": {"name": "data"}}, "/volumes"),
        ({"image": IMAGE, "strategy": "Blue"}, "/strategy"),
        ({"image": IMAGE, "strategy": "recreate"}, "/strategy"),
        ({"image": IMAGE, "strategy": {"type": "Recreate"}}, "/strategy"),
    ],
)
def test_the_schema_refuses(
    helm: str, chart_dir: Path, tmp_path: Path, values: dict[str, Any], field: str
) -> None:
    result = helm_template(helm, chart_dir, tmp_path, values)
    assert result.returncode != 0, result.stdout
    assert "schema" in result.stderr, result.stderr
    assert field in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("volumes", "message"),
    [
        (
            [{"name": "data", "mountPath": "/a"}, {"name": "data", "mountPath": "/b"}],
            'volumes: claim "data" is mounted twice; each claim once',
        ),
        (
            [{"name": "a", "mountPath": "/data"}, {"name": "b", "mountPath": "/data"}],
            'volumes: mountPath "/data" is used twice; each path once',
        ),
    ],
)
def test_duplicates_fail_the_render(
    helm: str, chart_dir: Path, tmp_path: Path, volumes: list[Any], message: str
) -> None:
    """Two pod volumes of one name or two mounts of one path: the API server would refuse
    the Deployment, so the render stops first and says which."""
    result = helm_template(helm, chart_dir, tmp_path, _volumes(*volumes))
    assert result.returncode != 0, result.stdout
    assert message in result.stderr, result.stderr
