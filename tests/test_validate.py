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

from gitops_bridge import apirules, fluxhelm, validate
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
        "serviceAccountName": "kustomize-controller",
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
        "serviceAccountName": "flux-reconciler",
        "chart": {
            "spec": {
                "chart": "./charts/generic-app",
                "reconcileStrategy": "Revision",
                "sourceRef": {"kind": "GitRepository", "name": "gitops"},
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


# ---- chart versions as Flux hands them to helm ---------------------------------------------

VERSION_LABEL = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-chart
  labels:
    helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
"""


def git_repo(root: Path) -> str:
    """Make root a git repository with everything committed; the commit id."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    return commit_all(root, "initial")


def commit_all(root: Path, message: str) -> str:
    run = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*run, "add", "-A"], check=True)
    subprocess.run([*run, "commit", "-q", "-m", message], check=True)
    return subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def label_finding(version: str) -> str:
    return (
        f"metadata.labels['helm.sh/chart'] = 'generic-app-{version}': label value must be "
        f"empty or {apirules.LABEL_NAME_RULE}"
    )


def test_revision_strategy_appends_the_placeholder_commit(
    repo: Path, check: Callable[[Path], validate.Report]
) -> None:
    """Not a git repository: Flux's <version>+<12 hex> with the placeholder revision."""
    (repo / "charts/generic-app/templates/version.yaml").write_text(VERSION_LABEL)
    finding = one(check(repo))
    assert (finding.source, finding.kind, finding.name) == (
        f"{APP} -> generic-app/templates/version.yaml",
        "ConfigMap",
        "web-abc123-chart",
    )
    assert finding.message == label_finding(f"0.1.0+{fluxhelm.PLACEHOLDER_REVISION[:12]}")


def test_revision_strategy_appends_the_commit(
    repo: Path, check: Callable[[Path], validate.Report]
) -> None:
    (repo / "charts/generic-app/templates/version.yaml").write_text(VERSION_LABEL)
    commit = git_repo(repo)
    assert one(check(repo)).message == label_finding(f"0.1.0+{commit[:12]}")


def test_chart_version_strategy_keeps_the_version(
    repo: Path, check: Callable[[Path], validate.Report]
) -> None:
    (repo / "charts/generic-app/templates/version.yaml").write_text(VERSION_LABEL)
    edit(
        repo / APP,
        lambda doc: doc["spec"]["chart"]["spec"].update(reconcileStrategy="ChartVersion"),
    )
    report = check(repo)
    assert report.findings == []
    assert report.valid == 6
    edit(repo / APP, lambda doc: doc["spec"]["chart"]["spec"].pop("reconcileStrategy"))
    assert check(repo).findings == []  # ChartVersion is the default


def test_oci_chart_ref_appends_the_digest(
    repo: Path, check: Callable[[Path], validate.Report]
) -> None:
    (repo / "charts/generic-app/templates/version.yaml").write_text(VERSION_LABEL)
    source = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "OCIRepository",
        "metadata": {"name": "generic-app", "namespace": "group-team-a"},
        "spec": {"interval": "10m", "url": "oci://registry:5000/charts/generic-app"},
    }

    def use_chart_ref(doc: Obj) -> None:
        del doc["spec"]["chart"]
        doc["spec"]["chartRef"] = {"kind": "OCIRepository", "name": "generic-app"}

    edit(repo / APP, use_chart_ref)
    (repo / APP).write_text((repo / APP).read_text() + "---\n" + json.dumps(source) + "\n")
    digest = fluxhelm.PLACEHOLDER_DIGEST.partition(":")[2]
    assert one(check(repo)).message == label_finding(f"0.1.0+{digest[:12]}")


def test_values_reach_helm_as_data(repo: Path, check: Callable[[Path], validate.Report]) -> None:
    """Strings YAML would re-type, and raw text YAML would refuse, reach the chart unchanged.

    (U+0085 is not among them: kustomize itself folds it to a space, in kustomize-controller
    as here.)
    """
    schema = json.loads((repo / "charts/generic-app/values.schema.json").read_text())
    schema["properties"]["image"] = {"enum": ["0755", "yes", "1e3", "a\u2028b\ufeffc 🚀"]}
    (repo / "charts/generic-app/values.schema.json").write_text(json.dumps(schema))
    for image in schema["properties"]["image"]["enum"]:
        edit(repo / APP, lambda doc, image=image: doc["spec"]["values"].update(image=image))
        assert check(repo).findings == [], image


# ---- the API server's own rules -----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("simple", True),
        ("now-with-dashes", True),
        ("1-starts-with-num", True),
        ("1234", True),
        ("simple/simple", True),
        ("now-with-dashes/simple", True),
        ("now-with-dashes/now-with-dashes", True),
        ("now.with.dots/simple", True),
        ("now-with.dashes-and.dots/simple", True),
        ("1-num.2-num/3-num", True),
        ("UPPERCASE", True),
        ("Example.com/name", False),  # the prefix is a DNS subdomain: lower case
        ("a" * 63, True),
        ("a" * 64, False),
        ("a" * 253 + "/a", True),
        ("a" * 254 + "/a", False),
        ("nospecialchars%^=@", False),
        ("/simple", False),
        ("simple/", False),
        ("a/b/c", False),
        ("-starts-with-dash", False),
        ("ends-with-dash-", False),
        ("", False),
    ],
)
def test_label_keys_follow_is_qualified_name(key: str, ok: bool) -> None:
    """Cases of apimachinery's validation_test.go TestIsQualifiedName."""
    assert (apirules.label_key(key) == []) is ok, apirules.label_key(key)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("", True),
        ("simple", True),
        ("now-with-dashes", True),
        ("1-starts-with-num", True),
        ("end-with-num-1", True),
        ("1234", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("0.1.0+a96eff73a282", False),  # Flux's chart version: '+' is not allowed
        ("0.1.0_a96eff73a282", True),
        ("-starts-with-dash", False),
        ("ends-with-dash-", False),
        ("a b", False),
        ("ünicode", False),
    ],
)
def test_label_values_follow_is_valid_label_value(value: str, ok: bool) -> None:
    assert (apirules.label_value(value) == []) is ok


def test_invalid_label_value_on_a_helmrelease(
    repo: Path, check: Callable[[Path], validate.Report]
) -> None:
    edit(repo / APP, lambda doc: doc["metadata"].update(labels={"team": "a b"}))
    finding = one(check(repo))
    assert (finding.source, finding.kind, finding.name) == (APP, "HelmRelease", "web-abc123")
    assert finding.message == (
        "metadata.labels['team'] = 'a b': label value must be empty or "
        "a-z, A-Z, 0-9, '-', '_', '.'; start and end alphanumeric; max 63"
    )


def test_invalid_annotation_key(repo: Path, check: Callable[[Path], validate.Report]) -> None:
    edit(
        repo / "tenants/team-a/namespace.yaml",
        lambda doc: doc["metadata"].update(annotations={"Example.com/owner": "x", "a/b/c": "y"}),
    )
    messages = sorted(f.message for f in check(repo).findings)
    assert messages == [
        "metadata.annotations key 'a/b/c': at most one '/' (an optional DNS subdomain prefix, "
        "then a name), got 'a/b/c'",
    ]  # keys are checked lowercased, as the API server does


def test_helm_release_name_rule(repo: Path, check: Callable[[Path], validate.Report]) -> None:
    edit(repo / APP, lambda doc: doc["spec"].update(releaseName="Web_App"))
    finding = one(check(repo))
    assert (finding.source, finding.kind, finding.name) == (APP, "HelmRelease", "web-abc123")
    assert finding.message.startswith("Helm release name 'Web_App': must be a DNS subdomain")


def test_long_helmrelease_names_are_shortened_like_flux(
    repo: Path, check: Callable[[Path], validate.Report]
) -> None:
    """helm-controller shortens [targetNamespace-]name to 53 characters; so does validate."""
    long_name = "web-" + "x" * 56
    edit(repo / APP, lambda doc: doc["metadata"].update(name=long_name))
    report = check(repo)
    assert report.findings == []
    assert report.valid == 5


WORKLOAD = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "tools", "namespace": "group-team-a"},
    "spec": {
        "selector": {"matchLabels": {"app": "tools"}},
        "template": {
            "metadata": {"labels": {"app": "tools"}},
            "spec": {
                "containers": [
                    {
                        "name": "tools",
                        "image": "nginx:1.27",
                        "resources": {
                            "requests": {"cpu": "1500u", "memory": "100.5"},
                            "limits": {"cpu": "1m", "memory": "64Mi"},
                        },
                    }
                ]
            },
        },
    },
}


def test_quantities_the_api_server_would_not_keep(
    repo: Path, check: Callable[[Path], validate.Report]
) -> None:
    dump(repo / "clusters/dev/tools.yaml", WORKLOAD)
    findings = check(repo).findings
    assert {(f.source, f.kind, f.name) for f in findings} == {
        ("clusters/dev/tools.yaml", "Deployment", "tools")
    }
    where = "spec.template.spec.containers[0].resources"
    assert [f.message for f in findings] == [
        f"{where}.requests.cpu: must be a multiple of 1m (a thousandth of a core); "
        "1500u is 1.5m: use 1m or 2m",
        f"{where}.requests.memory: must be a whole number of bytes; got 100.5: use 100 or 101",
        f"{where}.requests.cpu '1500u': must be less than or equal to the cpu limit '1m'",
    ]


# ---- one chart version, one content --------------------------------------------------------


def test_chart_changed_without_a_version_bump(
    repo: Path, check: Callable[[Path], validate.Report]
) -> None:
    released = git_repo(repo)
    service = repo / "charts/generic-app/templates/service.yaml"
    service.write_text(service.read_text() + "# a change\n")
    assert check(repo).findings == []  # not committed yet: history says nothing
    changed = commit_all(repo, "edit the chart")
    service.write_text(service.read_text() + "# another change\n")
    again = commit_all(repo, "edit the chart again")
    report = check(repo)
    assert [str(f) for f in report.findings] == [
        f"charts/generic-app: content changed in {changed[:7]} without a version bump "
        f"(version 0.1.0 was released with other content in {released[:7]})",
        f"charts/generic-app: content changed in {again[:7]} without a version bump "
        f"(version 0.1.0 was released with other content in {released[:7]})",
    ]
    assert report.valid == 5  # the objects themselves are fine

    chart_yaml = repo / "charts/generic-app/Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("0.1.0", "0.1.1"))
    commit_all(repo, "bump the chart")
    assert check(repo).findings == []  # a bump settles it: every cluster upgrades


def test_chart_history_ignores_other_commits(
    repo: Path, check: Callable[[Path], validate.Report]
) -> None:
    git_repo(repo)
    edit(repo / APP, lambda doc: doc["spec"]["values"].update(replicas=3))
    commit_all(repo, "scale")
    chart_yaml = repo / "charts/generic-app/Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("0.1.0", "0.2.0"))
    (repo / "charts/generic-app/values.yaml").write_text("image: nginx:1.28\nreplicas: 1\n")
    commit_all(repo, "a new chart version with new content")
    assert check(repo).findings == []


def test_what_the_multi_tenancy_lockdown_refuses_is_reported(
    repo: Path, check: Callable[[Path], validate.Report]
) -> None:
    def earlier(doc: Obj) -> None:  # what every release referenced before
        doc["spec"]["chart"]["spec"]["sourceRef"]["namespace"] = "flux-system"
        del doc["spec"]["serviceAccountName"]

    edit(repo / APP, earlier)
    dump(
        repo / "tenants/team-a/alert.yaml",
        {
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Alert",
            "metadata": {"name": "all", "namespace": "group-team-a"},
            "spec": {
                "providerRef": {"name": "p"},
                "eventSources": [{"kind": "HelmRelease", "name": "*", "namespace": "*"}],
            },
        },
    )
    index = repo / "tenants/team-a/kustomization.yaml"
    index.write_text(index.read_text() + "  - alert.yaml\n")
    found = {(f.name, f.message.split(":")[0]) for f in check(repo).findings}
    assert found == {
        ("web-abc123", "spec.chart.spec.sourceRef.namespace 'flux-system'"),
        ("web-abc123", "spec.serviceAccountName"),
        ("all", "spec.eventSources[0].namespace '*'"),
    }
