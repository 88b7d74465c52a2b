"""The generic-app chart lints, renders valid restricted-PSS objects, keeps user data as data,
renders the same pods whatever version Flux hands it, and changes only with a version bump.

Proved with the real helm binary, the Kubernetes JSON schemas of kubernetes_validate, the
API server's label rules (gitops_bridge.apirules) and the kubelet's env expansion
(tests/kubelet_env.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gitops_bridge import apirules
from tests import chartversions, kubelet_env

RELEASE = "web-abc123"
NAMESPACE = "group-team"
IMAGE = "registry:5000/team/web:1.2"

# Env values a user may type; each must reach the pod spec byte for byte.
TRICKY_ENV = [
    ("QUOTES", "say \"hi\" and 'bye'"),
    ("NEWLINES", "line1\nline2\r\n\tindented\n\n"),
    ("TEMPLATE", '{{ .Values.x }} {{ fail "boom" }} {{- .Release.Name -}}'),
    ("FRP_TEMPLATE", "{{ .Envs.FRP_TOKEN }}"),
    ("BACKSLASHES", "C:\\path\\n\\\\ \\u0041 \\"),
    ("UNICODE", "héllo — 日本語 🚀 \u2028\u2029\u0085\u007f\u0080\u009f\ufeff\ufffd"),
    ("YAMLISH", "key: value # not a comment\n- item\n---\n... &a *a !!binary |"),
    ("LEADING_SPACES", "   leading and trailing   "),
    ("TOML", '"""\n[[proxies]]\nname = "x"'),
    ("PRINTF", "%s %d %!v %%"),
    ("HTML", "<script>&amp;</script>"),
    ("NUMBER_LIKE", "0x1F"),
    ("BOOL_LIKE", "yes"),
    ("NULL_LIKE", "null"),
    ("EMPTY", ""),
    ("_lower_1", "ok"),
    # The kubelet expands $(VAR) and unescapes $$: these must arrive unexpanded.
    ("DOLLARS", "pa$$word $ $$$ end$"),
    ("REFERENCES", "$(QUOTES) $$(QUOTES) $(HOME) ${HOME} $HOME $( $(UNTERMINATED"),
]

RICH_VALUES: dict[str, Any] = {
    "image": "registry:5000/team/web@sha256:" + "ab" * 32,
    "imagePullPolicy": "Always",
    "replicas": 2,
    "port": 3000,
    "env": [{"name": name, "value": value} for name, value in TRICKY_ENV],
    "resources": {"cpu": "250m", "memory": "256Mi", "limits": {"cpu": "1", "memory": "1Gi"}},
    "expose": True,
    "probes": {
        "readiness": {"type": "http", "path": '/healthz?x="y"&z={{ .Values.a }}'},
        "liveness": {"enabled": True, "type": "tcp", "initialDelaySeconds": 15},
    },
    "restartedAt": "2025-01-02T03:04:05Z",
    "labels": {"gitops-bridge.code-hub.com/group": "team", "owner": "alice"},
    "frpc": {"serverAddr": "frps.frp.svc.cluster.local", "serverPort": 7000},
    "securityContext": {"runAsUser": 2000, "runAsGroup": 3000, "readOnlyRootFilesystem": True},
}

RESTARTED_AT = "gitops-bridge.code-hub.com/restartedAt"
CHECKSUM = "gitops-bridge.code-hub.com/frpc-config-checksum"


def k8s_version() -> str:
    version = kubernetes_validate.latest_version()
    assert tuple(int(part) for part in version.split(".")[:2]) >= (1, 33), version
    return version


def values_json(values: dict[str, Any]) -> str:
    """Values as JSON that helm's YAML parser reads back exactly.

    Raw non-ASCII text stays raw (a YAML parser rejects escaped surrogate pairs), but the
    characters YAML forbids or folds when raw are written as \\uXXXX escapes.
    """
    text = json.dumps(values, ensure_ascii=False)
    return re.sub(
        r"[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]", lambda m: f"\\u{ord(m[0]):04x}", text
    )


def helm_template(
    helm: str, chart_dir: Path, tmp_path: Path, values: dict[str, Any], release: str = RELEASE
) -> subprocess.CompletedProcess[str]:
    values_file = tmp_path / "values.json"  # JSON is YAML: the values arrive exactly as given
    values_file.write_text(values_json(values), encoding="utf-8")
    return subprocess.run(
        [helm, "template", release, str(chart_dir), "-n", NAMESPACE, "-f", str(values_file)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def render(
    helm: str, chart_dir: Path, tmp_path: Path, values: dict[str, Any], release: str = RELEASE
) -> dict[str, dict[str, Any]]:
    """Objects of `helm template` by kind (each kind appears at most once)."""
    result = helm_template(helm, chart_dir, tmp_path, values, release)
    assert result.returncode == 0, result.stderr
    objects: dict[str, dict[str, Any]] = {}
    for doc in yaml.safe_load_all(result.stdout):
        if doc is None:
            continue
        assert doc["kind"] not in objects, f"two objects of kind {doc['kind']}"
        objects[doc["kind"]] = doc
    return objects


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def lint_strict(helm: str, chart_dir: Path, tmp_path: Path, values: dict[str, Any]) -> None:
    """``helm lint --strict`` of the chart with these values: no error, no warning."""
    given = tmp_path / "values.json"
    given.write_text(values_json(values), encoding="utf-8")
    result = subprocess.run(
        [helm, "lint", "--strict", str(chart_dir), "-f", str(given)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "[WARNING]" not in output and "[ERROR]" not in output, output


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


@pytest.fixture(scope="module")
def rich(
    helm: str, chart_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    return render(helm, chart_dir, tmp_path_factory.mktemp("rich"), RICH_VALUES)


def test_helm_lint_strict_is_clean(helm: str, chart_dir: Path, tmp_path: Path) -> None:
    rich_file = tmp_path / "rich.json"
    rich_file.write_text(values_json(RICH_VALUES), encoding="utf-8")
    for values_file in (chart_dir / "ci" / "lint-values.yaml", rich_file):
        result = subprocess.run(
            [helm, "lint", "--strict", str(chart_dir), "-f", str(values_file)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "0 chart(s) failed" in output, output
        assert "[WARNING]" not in output and "[ERROR]" not in output, output


def test_chart_metadata(chart_dir: Path) -> None:
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"]) == ("v2", "generic-app")
    # A plain semver: Flux appends +<commit> or +<digest> build metadata itself.
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"]), chart["version"]


# ---- one version, one content ------------------------------------------------------------


def test_chart_changes_only_with_a_version_bump(chart_dir: Path) -> None:
    """Flux (reconcileStrategy ChartVersion) upgrades releases only for a new chart version."""
    problem = chartversions.problem(chart_dir)
    assert not problem, problem


def test_recording_a_version_never_overwrites_another(chart_dir: Path, tmp_path: Path) -> None:
    chart, golden = tmp_path / "generic-app", tmp_path / "chart-versions.json"
    shutil.copytree(chart_dir, chart)
    version = chartversions.version(chart)
    assert "recorded" in chartversions.record(chart, golden)
    assert chartversions.problem(chart, golden) == ""
    before = golden.read_bytes()

    values = chart / "values.yaml"
    values.write_text(values.read_text() + "# an edit\n")
    expected = (
        f"charts/generic-app changed but its version {version} was released with other "
        "content: bump version in Chart.yaml and record it with scripts/update-golden"
    )
    assert chartversions.problem(chart, golden) == expected
    with pytest.raises(ValueError, match=r"bump version in Chart\.yaml"):
        chartversions.record(chart, golden)
    assert golden.read_bytes() == before

    chart_yaml = chart / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace(f"version: {version}", "version: 9.9.9"))
    assert "version 9.9.9 is not recorded" in chartversions.problem(chart, golden)
    chartversions.record(chart, golden)
    assert json.loads(golden.read_text()) == {
        **json.loads(before),
        "9.9.9": chartversions.digest(chart),
    }


def test_rich_render_objects_are_valid_kubernetes(rich: dict[str, dict[str, Any]]) -> None:
    assert set(rich) == {"Deployment", "Service", "ConfigMap"}
    version = k8s_version()
    for obj in rich.values():
        kubernetes_validate.validate(obj, version, strict=True)


def test_every_object_is_named_after_the_release(rich: dict[str, dict[str, Any]]) -> None:
    for kind, obj in rich.items():
        assert obj["metadata"]["name"] == RELEASE, kind
        assert obj["metadata"]["namespace"] == NAMESPACE, kind
    volumes = rich["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert [v["configMap"]["name"] for v in volumes] == [RELEASE]


# ---- env values: what the container sees --------------------------------------------------


def test_kubelet_env_expansion_matches_the_documented_examples() -> None:
    """tests/kubelet_env.py against Kubernetes' own cases before it judges the chart.

    "Define Dependent Environment Variables" (kubernetes.io) and the cases of
    third_party/forked/golang/expansion/expand_test.go.
    """
    documented = [
        {"name": "SERVICE_PORT", "value": "80"},
        {"name": "SERVICE_IP", "value": "172.17.0.1"},
        {"name": "UNCHANGED_REFERENCE", "value": "$(PROTOCOL)://$(SERVICE_IP):$(SERVICE_PORT)"},
        {"name": "PROTOCOL", "value": "https"},
        {"name": "SERVICE_ADDRESS", "value": "$(PROTOCOL)://$(SERVICE_IP):$(SERVICE_PORT)"},
        {"name": "ESCAPED_REFERENCE", "value": "$$(PROTOCOL)://$(SERVICE_IP):$(SERVICE_PORT)"},
    ]
    env = kubelet_env.container_env(documented)
    assert env["UNCHANGED_REFERENCE"] == "$(PROTOCOL)://172.17.0.1:80"
    assert env["SERVICE_ADDRESS"] == "https://172.17.0.1:80"
    assert env["ESCAPED_REFERENCE"] == "$(PROTOCOL)://172.17.0.1:80"

    mapping = kubelet_env.mapping_for(
        {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}
    )
    cases = {
        "$(VAR_A)": "A",
        "$(VAR_A)-$(VAR_A)": "A-A",
        "___$(VAR_B)___": "___B___",
        "$(VAR_A)_$(VAR_B)_$(VAR_C)": "A_B_C",
        "$$(VAR_B)_$(VAR_A)": "$(VAR_B)_A",
        "$$(VAR_A)_$$(VAR_B)": "$(VAR_A)_$(VAR_B)",
        "f000-$$VAR_A": "f000-$VAR_A",
        "foo\\$(VAR_C)bar": "foo\\Cbar",
        "$(VAR_A$(VAR_B))": "$(VAR_A$(VAR_B))",
        "$(VAR_A$(VAR_B)": "$(VAR_A$(VAR_B)",
        "$(VAR_REF)": "$(VAR_A)",
        "foo$(VAR_EMPTY)bar": "foobar",
        "foo$(VAR_Awhoops!": "foo$(VAR_Awhoops!",
        "$?_boo_$!": "$?_boo_$!",
        "$VAR_A": "$VAR_A",
        "$(VAR_DNE)": "$(VAR_DNE)",
        "$$$$$$(BIG_MONEY)": "$$$(BIG_MONEY)",
        "$$$$$$(VAR_A)": "$$$(VAR_A)",
        "$$$$$$$(GOOD_ODDS)": "$$$$(GOOD_ODDS)",
        "$$$$$$$(VAR_A)": "$$$A",
        "${VAR_A}": "${VAR_A}",
        "$(VAR_B)_______$(A": "B_______$(A",
        "$(VAR_C)_______$(": "C_______$(",
        "$(VAR_A)foobarzab$": "Afoobarzab$",
        "--$($($($($--": "--$($($($($--",
        "$(foo$$var)": "$(foo$$var)",
        "\n": "\n",
        "$é and $$ü": "$é and $ü",
    }
    for given, expected in cases.items():
        assert kubelet_env.expand(given, mapping) == expected, given


def test_env_values_arrive_byte_for_byte(rich: dict[str, dict[str, Any]]) -> None:
    """What the container sees after the kubelet's $(VAR) expansion is exactly the input."""
    app = by_name(containers(rich["Deployment"]))["app"]
    assert [e["name"] for e in app["env"]] == [name for name, _ in TRICKY_ENV]
    assert kubelet_env.container_env(app["env"]) == dict(TRICKY_ENV)
    escaped = {e["name"]: e["value"] for e in app["env"]}
    assert escaped["DOLLARS"] == "pa$$$$word $$ $$$$$$ end$$"


def test_env_values_survive_the_kubernetes_yaml_decoder(
    helm: str, kubectl: str, chart_dir: Path, tmp_path: Path
) -> None:
    """What the API machinery (Go YAML, not PyYAML) reads from the output is the input too."""
    result = helm_template(helm, chart_dir, tmp_path, RICH_VALUES)
    assert result.returncode == 0, result.stderr
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(result.stdout, encoding="utf-8")
    decoded = subprocess.run(  # --local: decode and print, no API server involved
        [kubectl, "annotate", "--local", "-o", "json", "-f", str(rendered), "decoded=yes"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert decoded.returncode == 0, decoded.stderr
    items, text, decoder = [], decoded.stdout.strip(), json.JSONDecoder()
    while text:  # one JSON document per object
        item, end = decoder.raw_decode(text)
        items.append(item)
        text = text[end:].strip()
    assert sorted(item["kind"] for item in items) == ["ConfigMap", "Deployment", "Service"]
    [deployment] = [item for item in items if item["kind"] == "Deployment"]
    app = by_name(containers(deployment))["app"]
    assert kubelet_env.container_env(app["env"]) == dict(TRICKY_ENV)


def test_labels_on_every_object_and_pod_template(
    rich: dict[str, dict[str, Any]], chart_dir: Path
) -> None:
    deployment = rich["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    version = chartversions.version(chart_dir)
    for labels in [obj["metadata"]["labels"] for obj in rich.values()] + [pod_labels]:
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/name"] == "generic-app"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["gitops-bridge.code-hub.com/group"] == "team"
        assert labels["owner"] == "alice"
    for obj in rich.values():
        assert obj["metadata"]["labels"]["helm.sh/chart"] == f"generic-app-{version}"
    assert "helm.sh/chart" not in pod_labels
    selector = {"app.kubernetes.io/instance": RELEASE}
    assert deployment["spec"]["selector"]["matchLabels"] == selector
    assert rich["Service"]["spec"]["selector"] == selector


def test_deployment_shape(rich: dict[str, dict[str, Any]]) -> None:
    spec = rich["Deployment"]["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    app = by_name(pod["containers"])["app"]
    assert app["image"] == RICH_VALUES["image"]
    assert app["imagePullPolicy"] == "Always"
    assert app["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert app["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert app["readinessProbe"] == {
        "httpGet": {"path": RICH_VALUES["probes"]["readiness"]["path"], "port": "http"},
        "initialDelaySeconds": 2,
        "periodSeconds": 5,
        "failureThreshold": 3,
    }
    assert app["livenessProbe"] == {
        "tcpSocket": {"port": "http"},
        "initialDelaySeconds": 15,
        "periodSeconds": 10,
        "failureThreshold": 3,
    }
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations[RESTARTED_AT] == "2025-01-02T03:04:05Z"
    assert len(annotations[CHECKSUM]) == 64
    service = rich["Service"]["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 3000, "targetPort": "http"}
    ]


def test_pod_security_restricted(rich: dict[str, dict[str, Any]]) -> None:
    pod = rich["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 2000,
        "runAsGroup": 3000,
        "fsGroup": 3000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert {c["name"] for c in containers(rich["Deployment"])} == {"app", "frpc"}
    for container in containers(rich["Deployment"]):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert context.get("privileged", False) is False, container["name"]
        assert context.get("runAsUser", 1) != 0, container["name"]
        assert "ports" not in container or all("hostPort" not in p for p in container["ports"])
    assert by_name(pod["containers"])["app"]["securityContext"]["readOnlyRootFilesystem"] is True
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key, False)
    assert all(set(volume) == {"name", "configMap"} for volume in pod["volumes"])


def test_frpc_sidecar_gets_secrets_from_secret_refs(rich: dict[str, dict[str, Any]]) -> None:
    frpc = by_name(containers(rich["Deployment"]))["frpc"]
    assert frpc["image"] == "registry:5000/platform/frpc:0.65.0"
    assert frpc["command"] == ["frpc", "-c", "/etc/frpc/frpc.toml"]
    assert frpc["volumeMounts"] == [
        {"name": "frpc-config", "mountPath": "/etc/frpc", "readOnly": True}
    ]
    assert frpc["resources"] == {
        "requests": {"cpu": "10m", "memory": "32Mi"},
        "limits": {"cpu": "20m", "memory": "64Mi"},
    }
    env = by_name(frpc["env"])
    assert env["POD_NAME"] == {
        "name": "POD_NAME",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    }
    for name, key in (("FRP_TOKEN", "token"), ("FRP_GROUP_KEY", "group-key")):
        assert env[name] == {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": "frp-token", "key": key}},
        }


def test_frpc_config_keeps_secrets_out(rich: dict[str, dict[str, Any]]) -> None:
    text = rich["ConfigMap"]["data"]["frpc.toml"]
    assert '"{{ .Envs.FRP_TOKEN }}"' in text
    assert '"{{ .Envs.FRP_GROUP_KEY }}"' in text
    assert '"{{ .Envs.POD_NAME }}"' in text
    config = tomllib.loads(text)
    assert config["serverAddr"] == "frps.frp.svc.cluster.local"
    assert config["serverPort"] == 7000
    assert config["loginFailExit"] is False
    assert config["user"] == "{{ .Envs.POD_NAME }}"
    assert config["auth"] == {"method": "token", "token": "{{ .Envs.FRP_TOKEN }}"}
    [proxy] = config["proxies"]
    assert proxy["name"] == RELEASE
    assert proxy["type"] == "http"
    assert (proxy["localIP"], proxy["localPort"]) == ("127.0.0.1", 3000)
    assert proxy["subdomain"] == RELEASE
    assert proxy["loadBalancer"] == {"group": RELEASE, "groupKey": "{{ .Envs.FRP_GROUP_KEY }}"}
    # frpc renders the file as a Go template: it holds no template actions but these three.
    assert set(re.findall(r"\{\{.*?\}\}", text)) == {
        "{{ .Envs.POD_NAME }}",
        "{{ .Envs.FRP_TOKEN }}",
        "{{ .Envs.FRP_GROUP_KEY }}",
    }


def test_no_secret_object_or_inline_secret(rich: dict[str, dict[str, Any]]) -> None:
    assert "Secret" not in rich
    frpc = by_name(containers(rich["Deployment"]))["frpc"]
    assert all("value" not in var and "valueFrom" in var for var in frpc["env"])


def test_subdomain_override(helm: str, chart_dir: Path, tmp_path: Path) -> None:
    values = {"image": IMAGE, "expose": True, "frpc": {"subdomain": "shop"}}
    config = tomllib.loads(
        render(helm, chart_dir, tmp_path, values)["ConfigMap"]["data"]["frpc.toml"]
    )
    assert config["proxies"][0]["subdomain"] == "shop"
    assert config["proxies"][0]["loadBalancer"]["group"] == RELEASE


def test_checksum_follows_frpc_config(helm: str, chart_dir: Path, tmp_path: Path) -> None:
    def checksum(port: int) -> str:
        values = {"image": IMAGE, "expose": True, "frpc": {"serverPort": port}}
        deployment = render(helm, chart_dir, tmp_path, values)["Deployment"]
        return str(deployment["spec"]["template"]["metadata"]["annotations"][CHECKSUM])

    assert checksum(7000) == checksum(7000)
    assert checksum(7000) != checksum(7001)


def test_checksum_is_of_the_frpc_config_only(rich: dict[str, dict[str, Any]]) -> None:
    """Not of the ConfigMap's metadata: its labels carry the chart version."""
    config = rich["ConfigMap"]["data"]["frpc.toml"]
    annotations = rich["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations[CHECKSUM] == hashlib.sha256(config.rstrip("\n").encode()).hexdigest()


# ---- chart versions as Flux hands them to helm ----------------------------------------------

# source-controller packages a chart from Git with reconcileStrategy Revision as
# <version>+<12 hex of the commit>; helm-controller versions an OCIRepository chart
# <version>+<12 hex of the digest>.
FLUX_SUFFIXES = ["a96eff73a282", "0123456789ab", "e3b0c44298fc"]


def flux_chart(chart_dir: Path, target: Path, version: str) -> Path:
    """A copy of the chart whose Chart.yaml says version, as Flux rewrites it when packaging."""
    shutil.copytree(chart_dir, target)
    chart_yaml = target / "Chart.yaml"
    text = re.sub(r"(?m)^version:.*$", f"version: {version}", chart_yaml.read_text())
    chart_yaml.write_text(text)
    return target


def all_labels(obj: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """(where, labels) of an object: its own, its pod template's, its selectors."""
    found = [("metadata.labels", obj["metadata"].get("labels", {}))]
    spec = obj.get("spec", {})
    if obj["kind"] == "Deployment":
        found.append(("spec.template.metadata.labels", spec["template"]["metadata"]["labels"]))
        found.append(("spec.selector.matchLabels", spec["selector"]["matchLabels"]))
    if obj["kind"] == "Service":
        found.append(("spec.selector", spec["selector"]))
    return found


@pytest.mark.parametrize("suffix", FLUX_SUFFIXES)
def test_flux_chart_versions_make_valid_labels(
    helm: str, chart_dir: Path, tmp_path: Path, suffix: str
) -> None:
    version = f"{chartversions.version(chart_dir)}+{suffix}"
    chart = flux_chart(chart_dir, tmp_path / "generic-app", version)
    objects = render(helm, chart, tmp_path, RICH_VALUES)
    expected = f"generic-app-{version.replace('+', '_')}"
    for kind, obj in objects.items():
        assert obj["metadata"]["labels"]["helm.sh/chart"] == expected, kind
        for where, labels in all_labels(obj):
            assert labels, (kind, where)
            assert apirules.label_set(labels, where) == [], (kind, labels)
        assert apirules.object_problems(obj) == [], kind


def test_pod_template_does_not_change_with_the_chart_version(
    helm: str, chart_dir: Path, tmp_path: Path
) -> None:
    """A new chart version (or, with Revision, a new commit) restarts nobody's pods."""
    version = chartversions.version(chart_dir)
    major, minor, patch = (int(part) for part in version.split("."))
    versions = [version, f"{major}.{minor}.{patch + 1}", f"{major}.{minor + 1}.0"]
    versions += [f"{version}+{suffix}" for suffix in FLUX_SUFFIXES]
    templates, configs, chart_labels = set(), set(), set()
    for index, flux_version in enumerate(versions):
        chart = flux_chart(chart_dir, tmp_path / str(index) / "generic-app", flux_version)
        objects = render(helm, chart, tmp_path / str(index), RICH_VALUES)
        deployment = objects["Deployment"]
        templates.add(json.dumps(deployment["spec"]["template"], sort_keys=True))
        configs.add(objects["ConfigMap"]["data"]["frpc.toml"])
        chart_labels.add(deployment["metadata"]["labels"]["helm.sh/chart"])
    assert len(chart_labels) == len(versions)  # the objects do say which version made them
    assert len(templates) == 1
    assert len(configs) == 1


def test_minimal_render_without_expose(helm: str, chart_dir: Path, tmp_path: Path) -> None:
    objects = render(helm, chart_dir, tmp_path, {"image": IMAGE})
    assert set(objects) == {"Deployment", "Service"}
    version = k8s_version()
    for obj in objects.values():
        kubernetes_validate.validate(obj, version, strict=True)
    deployment = objects["Deployment"]
    template = deployment["spec"]["template"]
    assert [c["name"] for c in containers(deployment)] == ["app"]
    assert "volumes" not in template["spec"]
    assert "annotations" not in template["metadata"]
    app = template["spec"]["containers"][0]
    assert "env" not in app
    assert app["resources"]["limits"] == app["resources"]["requests"]
    assert app["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert app["securityContext"]["readOnlyRootFilesystem"] is False
    assert deployment["spec"]["replicas"] == 1
    assert template["spec"]["securityContext"]["runAsUser"] == 10001


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({}, {"cpu": "300m", "memory": "200Mi"}),
        ({"cpu": "2"}, {"cpu": "2", "memory": "200Mi"}),
        ({"memory": "1Gi"}, {"cpu": "300m", "memory": "1Gi"}),
    ],
)
def test_absent_limits_equal_requests(
    helm: str, chart_dir: Path, tmp_path: Path, limits: dict[str, str], expected: dict[str, str]
) -> None:
    values = {"image": IMAGE, "resources": {"cpu": "300m", "memory": "200Mi", "limits": limits}}
    app = render(helm, chart_dir, tmp_path, values)["Deployment"]["spec"]["template"]["spec"]
    resources = app["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "300m", "memory": "200Mi"}, "limits": expected}


def test_restarted_at_annotation(helm: str, chart_dir: Path, tmp_path: Path) -> None:
    stamp = "2025-06-01T12:00:00.123456+00:00"
    values = {"image": IMAGE, "restartedAt": stamp}
    template = render(helm, chart_dir, tmp_path, values)["Deployment"]["spec"]["template"]
    assert template["metadata"]["annotations"] == {RESTARTED_AT: stamp}


def test_probes_can_be_disabled(helm: str, chart_dir: Path, tmp_path: Path) -> None:
    values = {
        "image": IMAGE,
        "probes": {"readiness": {"enabled": False}, "liveness": {"enabled": False}},
    }
    app = render(helm, chart_dir, tmp_path, values)["Deployment"]["spec"]["template"]["spec"]
    assert "readinessProbe" not in app["containers"][0]
    assert "livenessProbe" not in app["containers"][0]


@pytest.mark.parametrize(
    "image",
    [
        "nginx",
        "registry:5000/team/web:1.2",
        "localhost/a/b/c",
        "registry.example.com/team/web_app-2:v1.0.0-rc.1",
        "registry:5000/team/web:1.2@sha256:" + "0123456789abcdef" * 4,
    ],
)
def test_schema_accepts_image_references(
    helm: str, chart_dir: Path, tmp_path: Path, image: str
) -> None:
    deployment = render(helm, chart_dir, tmp_path, {"image": image})["Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image


def _set(values: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    result = copy.deepcopy(values)
    *parents, last = dotted.split(".")
    node = result
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return result


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("image", "", "/image"),
        ("image", "Registry:5000/Team/Web", "/image"),
        ("image", "registry:5000/team/web:1.2 ; rm -rf /", "/image"),
        ("image", "registry:5000/team/web@sha256:xyz", "/image"),
        ("replicas", -1, "/replicas"),
        ("replicas", 1.5, "/replicas"),
        ("replicas", "2", "/replicas"),
        ("port", 0, "/port"),
        ("port", 70000, "/port"),
        ("env", [{"name": "1A", "value": "x"}], "/env/0/name"),
        ("env", [{"name": "A-B", "value": "x"}], "/env/0/name"),
        ("env", [{"name": "A", "value": 1}], "/env/0/value"),
        ("env", [{"name": "A", "value": "x", "valueFrom": {}}], "valueFrom"),
        ("resources.cpu", "abc", "/resources/cpu"),
        ("resources.memory", "1 Gi", "/resources/memory"),
        ("resources.limits.cpu", "lots", "/resources/limits/cpu"),
        ("resources.limits.gpu", "1", "gpu"),
        ("imagePullPolicy", "Sometimes", "/imagePullPolicy"),
        ("expose", "yes", "/expose"),
        ("probes.readiness.type", "grpc", "/probes/readiness/type"),
        ("probes.liveness.periodSeconds", 0, "/probes/liveness/periodSeconds"),
        ("labels.team", "a b", "/labels/team"),
        ("frpc.subdomain", "Not_A_Label", "/frpc/subdomain"),
        ("frpc.serverAddr", "{{ .Envs.FRP_TOKEN }}", "/frpc/serverAddr"),
        ("frpc.serverPort", 0, "/frpc/serverPort"),
        ("securityContext.runAsUser", 0, "/securityContext/runAsUser"),
        ("replica", 2, "replica"),
    ],
)
def test_schema_rejects(
    helm: str, chart_dir: Path, tmp_path: Path, path: str, value: Any, field: str
) -> None:
    result = helm_template(helm, chart_dir, tmp_path, _set({"image": IMAGE}, path, value))
    assert result.returncode != 0, result.stdout
    assert "schema" in result.stderr, result.stderr
    assert field in result.stderr, result.stderr
