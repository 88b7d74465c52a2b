"""validate_repo passes a good GitOps repo and names the object and problem in each broken one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from gitops_bridge import validate
from gitops_bridge.errors import ToolMissing

ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT.parent / "shared" / "flux-crds"
APP = "tenants/team-a/apps/web-abc123.yaml"

TENANTS = {
    "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
    "kind": "Kustomization",
    "metadata": {"name": "tenants", "namespace": "flux-system"},
    "spec": {
        "interval": "10m",
        "path": "./tenants",
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
    },
}
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "group-team-a"}}
RELEASE = {
    "apiVersion": "helm.toolkit.fluxcd.io/v2",
    "kind": "HelmRelease",
    "metadata": {"name": "web-abc123", "namespace": "group-team-a"},
    "spec": {
        "interval": "10m",
        "chart": {
            "spec": {
                "chart": "./charts/generic-app",
                "reconcileStrategy": "Revision",
                "sourceRef": {
                    "kind": "GitRepository",
                    "name": "flux-system",
                    "namespace": "flux-system",
                },
            }
        },
        "values": {"image": "registry:5000/team-a/web:1.0", "replicas": 2, "port": 8080},
    },
}
CHART_SCHEMA = {
    "$schema": "https://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["image", "replicas", "port"],
    "additionalProperties": False,
    "properties": {
        "image": {"type": "string", "minLength": 1},
        "replicas": {"type": "integer", "minimum": 0, "maximum": 20},
        "port": {"type": ["integer", "string"]},
    },
}
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  labels: {app: {{ .Release.Name }}}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      containers:
        - name: app
          image: {{ .Values.image | quote }}
          ports:
            - containerPort: {{ .Values.port }}
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
spec:
  selector: {app: {{ .Release.Name }}}
  ports:
    - port: 80
      targetPort: {{ .Values.port }}
"""

Obj = dict[str, Any]


def dump(path: Path, *docs: Obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    with path.open("w", encoding="utf-8") as out:
        yaml.dump_all(list(docs), out)


def edit(path: Path, change: Callable[[Obj], object]) -> None:
    """Load the one document of path, let change mutate it, write it back."""
    doc = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    change(doc)
    dump(path, doc)


def write_chart(chart: Path) -> None:
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: generic-app\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("image: nginx:1.27\nreplicas: 1\nport: 8080\n")
    (chart / "values.schema.json").write_text(json.dumps(CHART_SCHEMA, indent=2))
    (chart / "templates" / "deployment.yaml").write_text(DEPLOYMENT)
    (chart / "templates" / "service.yaml").write_text(SERVICE)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The good repository: one cluster, one tenant, one HelmRelease of a local chart."""
    root = tmp_path / "gitops"
    dump(root / "clusters/dev/tenants.yaml", TENANTS)
    (root / "tenants").mkdir(parents=True)
    (root / "tenants/kustomization.yaml").write_text("resources:\n  - team-a\n")
    dump(root / "tenants/team-a/namespace.yaml", NAMESPACE)
    dump(root / APP, RELEASE)
    (root / "tenants/team-a/kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources:\n  - namespace.yaml\n  - apps/web-abc123.yaml\n"
    )
    write_chart(root / "charts/generic-app")
    return root


@pytest.fixture
def check(helm: str, kubectl: str) -> Callable[[Path], validate.Report]:
    return lambda root: validate.validate_repo(root, helm=helm, kubectl=kubectl)


def one(report: validate.Report) -> validate.Finding:
    assert len(report.findings) == 1, [str(f) for f in report.findings]
    return report.findings[0]


def test_good_repo_has_no_findings(repo: Path, check: Callable[[Path], validate.Report]) -> None:
    report = check(repo)
    assert report.findings == []
    # Kustomization tenants, Namespace, HelmRelease, and the chart's Deployment + Service.
    assert report.valid == 5
    assert report.ok


def test_default_kubernetes_version_is_the_newest_shipped() -> None:
    major, minor = (int(part) for part in validate.DEFAULT_KUBERNETES_VERSION.split("."))
    assert (major, minor) >= (1, 33)


def test_helmrelease_without_interval(repo: Path, check: Callable[[Path], validate.Report]) -> None:
    edit(repo / APP, lambda doc: doc["spec"].pop("interval"))
    finding = one(check(repo))
    assert (finding.source, finding.kind, finding.namespace, finding.name) == (
        APP,
        "HelmRelease",
        "group-team-a",
        "web-abc123",
    )
    assert finding.message == "spec: 'interval' is a required property"


def test_helmrelease_unknown_field(repo: Path, check: Callable[[Path], validate.Report]) -> None:
    edit(repo / APP, lambda doc: doc["spec"].update(replica=3))
    finding = one(check(repo))
    assert (finding.kind, finding.name) == ("HelmRelease", "web-abc123")
    assert finding.message.startswith("spec: Additional properties are not allowed")
    assert "'replica' was unexpected" in finding.message


def test_chart_renders_wrong_type(repo: Path, check: Callable[[Path], validate.Report]) -> None:
    """The chart schema allows a named port; the Deployment's containerPort does not."""
    edit(repo / APP, lambda doc: doc["spec"]["values"].update(port="http"))
    finding = one(check(repo))
    assert (finding.kind, finding.namespace, finding.name) == (
        "Deployment",
        "group-team-a",
        "web-abc123",
    )
    assert finding.source == f"{APP} -> generic-app/templates/deployment.yaml"
    assert finding.message == (
        "spec.template.spec.containers[0].ports[0].containerPort: 'http' is not of type 'integer'"
    )


def test_values_rejected_by_chart_schema(
    repo: Path, check: Callable[[Path], validate.Report]
) -> None:
    edit(repo / APP, lambda doc: doc["spec"]["values"].update(replicas=50))
    finding = one(check(repo))
    assert (finding.source, finding.kind, finding.name) == (APP, "HelmRelease", "web-abc123")
    assert finding.message.startswith("helm template failed:")
    assert "/replicas" in finding.message
    assert "50" in finding.message


def test_kustomization_path_missing(repo: Path, check: Callable[[Path], validate.Report]) -> None:
    edit(repo / "clusters/dev/tenants.yaml", lambda doc: doc["spec"].update(path="./tenantz"))
    finding = one(check(repo))
    assert (finding.source, finding.kind, finding.namespace, finding.name) == (
        "clusters/dev/tenants.yaml",
        "Kustomization",
        "flux-system",
        "tenants",
    )
    assert finding.message == "spec.path './tenantz': no such directory in the repository"


def test_kustomization_lists_missing_file(
    repo: Path, check: Callable[[Path], validate.Report]
) -> None:
    listing = repo / "tenants/team-a/kustomization.yaml"
    listing.write_text(listing.read_text() + "  - apps/gone-000000.yaml\n")
    finding = one(check(repo))
    assert finding.source == "tenants"
    assert finding.message.startswith("kustomize build failed: in tenants/team-a:")
    assert "apps/gone-000000.yaml" in finding.message
    assert str(repo) not in finding.message


def test_invalid_yaml_in_cluster_dir(repo: Path, check: Callable[[Path], validate.Report]) -> None:
    (repo / "clusters/dev/broken.yaml").write_text("apiVersion: v1\nkind: [ConfigMap\n")
    finding = one(check(repo))
    assert finding.source == "clusters/dev/broken.yaml"
    assert finding.message.startswith("invalid YAML: line 3, column 1:")


def test_invalid_yaml_in_kustomize_build(
    repo: Path, check: Callable[[Path], validate.Report]
) -> None:
    (repo / APP).write_text((repo / APP).read_text() + "  extra: [\n")
    finding = one(check(repo))
    assert finding.source == "tenants"
    assert "apps/web-abc123.yaml" in finding.message
    assert "yaml" in finding.message.lower()


def test_namespace_with_invalid_name(repo: Path, check: Callable[[Path], validate.Report]) -> None:
    edit(repo / "tenants/team-a/namespace.yaml", lambda doc: doc["metadata"].update(name="Team_A"))
    finding = one(check(repo))
    assert (finding.source, finding.kind, finding.name) == (
        "tenants/team-a/namespace.yaml",
        "Namespace",
        "Team_A",
    )
    assert finding.message.startswith("metadata.name 'Team_A': must be a DNS label")


def test_object_without_name(repo: Path, check: Callable[[Path], validate.Report]) -> None:
    dump(repo / "clusters/dev/config.yaml", {"apiVersion": "v1", "kind": "ConfigMap"})
    finding = one(check(repo))
    assert (finding.source, finding.kind) == ("clusters/dev/config.yaml", "ConfigMap")
    assert finding.message == "metadata.name: missing"


def test_duplicate_objects(repo: Path, check: Callable[[Path], validate.Report]) -> None:
    shutil.copy(repo / "clusters/dev/tenants.yaml", repo / "clusters/dev/tenants-copy.yaml")
    report = check(repo)
    finding = one(report)
    assert (finding.source, finding.kind, finding.namespace, finding.name) == (
        "clusters/dev/tenants.yaml",
        "Kustomization",
        "flux-system",
        "tenants",
    )
    assert finding.message == "duplicate object (also in clusters/dev/tenants-copy.yaml)"
    assert report.valid == 5


def test_unknown_kind_has_no_schema(repo: Path, check: Callable[[Path], validate.Report]) -> None:
    dump(
        repo / "clusters/dev/old.yaml",
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2beta1",
            "kind": "HelmRelease",
            "metadata": {"name": "x"},
        },
    )
    finding = one(check(repo))
    assert finding.message == "no schema for helm.toolkit.fluxcd.io/v2beta1/HelmRelease"


def test_chart_ref_uses_local_stand_in(
    repo: Path, check: Callable[[Path], validate.Report]
) -> None:
    source = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "OCIRepository",
        "metadata": {"name": "generic-app", "namespace": "group-team-a"},
        "spec": {
            "interval": "10m",
            "url": "oci://registry:5000/charts/generic-app",
            "ref": {"semver": "0.1.x"},
        },
    }

    def use_chart_ref(doc: Obj) -> None:
        del doc["spec"]["chart"]
        doc["spec"]["chartRef"] = {"kind": "OCIRepository", "name": "generic-app"}

    edit(repo / APP, use_chart_ref)
    (repo / APP).write_text((repo / APP).read_text() + "---\n" + json.dumps(source) + "\n")
    report = check(repo)
    assert report.findings == []
    assert report.valid == 6


def test_kustomization_cycle_terminates(
    repo: Path, check: Callable[[Path], validate.Report]
) -> None:
    loop = json.loads(json.dumps(TENANTS))
    loop["metadata"]["name"] = "loop"
    loop["spec"]["path"] = "./clusters/dev"
    dump(repo / "clusters/dev/loop.yaml", loop)
    report = check(repo)
    assert report.findings == []
    assert report.valid == 6


def test_missing_tool_raises(repo: Path, kubectl: str, tmp_path: Path) -> None:
    with pytest.raises(ToolMissing, match="helm"):
        validate.validate_repo(repo, helm=str(tmp_path / "no-helm"), kubectl=kubectl)


@pytest.mark.skipif(not CRDS.is_dir(), reason=f"Flux CRDs not at {CRDS}")
def test_flux_schemas_regenerate_byte_identical(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    script = ROOT / "scripts" / "flux_schemas.py"
    subprocess.run([sys.executable, str(script), str(CRDS), "--out", str(out)], check=True)
    shipped = ROOT / "gitops_bridge" / "schemas"
    generated = sorted(p.name for p in out.glob("*.json"))
    assert generated == sorted(p.name for p in shipped.glob("*.json"))
    assert "helm.toolkit.fluxcd.io_v2_HelmRelease.json" in generated
    for name in generated:
        assert (out / name).read_bytes() == (shipped / name).read_bytes(), name


def test_kubernetes_checks_agree_with_kubernetes_validate(
    repo: Path, check: Callable[[Path], validate.Report]
) -> None:
    """The cached validators reject exactly what kubernetes_validate.validate(strict) rejects."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "group-team-a"},
        "spec": {"ports": [{"port": 80, "targetPort": "http"}], "selectorr": {"app": "web"}},
    }
    with pytest.raises(kubernetes_validate.ValidationError, match="selectorr"):
        kubernetes_validate.validate(service, validate.DEFAULT_KUBERNETES_VERSION, strict=True)
    dump(repo / "clusters/dev/service.yaml", service)
    finding = one(check(repo))
    assert (finding.kind, finding.name) == ("Service", "web")
    assert "'selectorr' was unexpected" in finding.message
