"""Repositories written through the API validate with the real helm, kubectl and schemas;
any accepted request renders to valid manifests, any rejected one writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from gitops_bridge import validate
from tests.apputil import TEAM_A, as_user, create_group, make_app, web
from tests.gitutil import files, head

TRICKY_ENV = [
    {"name": "QUOTES", "value": "he said \"hi\" and 'bye'"},
    {"name": "NEWLINES", "value": "line one\nline two\n\nlast"},
    {"name": "TEMPLATE", "value": '{{ .Values.image }} {{ include "x" . }} {{'},
    {"name": "YAMLISH", "value": "yes"},
    {"name": "NUMBERISH", "value": "0755"},
    {"name": "EMPTY", "value": ""},
]


def checkout(remote: Path, target: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(remote), str(target)], check=True, timeout=60)
    return target


def edit_values(path: Path, change: Callable[[dict[str, Any]], object]) -> None:
    """Hand-edit the values of the HelmRelease at path (rewritten as JSON, which is YAML)."""
    doc = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    change(doc["spec"]["values"])
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def commit_all(repo: Path, message: str) -> str:
    run = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*run, "commit", "-qam", message], check=True, timeout=60)
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitops_bridge", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repo with three groups and several deployments, all made through the API."""
    data = tmp_path_factory.mktemp("populated") / "data"
    client = make_app(data).test_client()
    create_group(client)
    create_group(client, {**TEAM_A, "name": "team-b", "members": ["carol"]})
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("team-a", "alice", web("web", replicas=2, expose=True, env=TRICKY_ENV)),
        ("team-a", "bob", web("worker", replicas=0, port=9000)),
        (
            "team-b",
            "carol",
            web(
                "api",
                image="registry:5000/team-b/api@sha256:" + "a" * 64,
                resources={"cpu": "500m", "memory": "1Gi"},
                expose=True,
            ),
        ),
        ("demo", "admin", web("hello", image="nginx:1.27")),
    ]
    for group, user, body in requests:
        response = client.post(
            f"/api/v1/groups/{group}/deployments", json=body, headers=as_user(user)
        )
        assert response.status_code == 201, response.json
    return data / "remote.git"


def test_api_made_repo_validates_with_real_tools(
    populated: Path, tmp_path: Path, helm: str, kubectl: str
) -> None:
    repo = checkout(populated, tmp_path / "repo")
    report = validate.validate_repo(repo, helm=helm, kubectl=kubectl)
    assert report.findings == []
    # 3 groups x (Namespace, ResourceQuota, LimitRange, ServiceAccount, RoleBinding,
    # NetworkPolicy, GitRepository + Kustomization of sync.yaml, Provider + Alert of
    # notifications.yaml) + 4 HelmReleases + the tenants Kustomization, then per release a
    # Deployment and a Service, plus a ConfigMap for each of the 2 exposed ones.
    assert report.valid == 3 * 10 + 4 + 1 + 4 * 2 + 2 + 13  # + notifications and the bridge


def test_invalid_label_in_values_is_found_in_every_rendered_object(
    populated: Path, tmp_path: Path, helm: str, kubectl: str
) -> None:
    """The chart's schema allows the key; the API server refuses its 254-character prefix."""
    repo = checkout(populated, tmp_path / "repo")
    release = next((repo / "tenants/team-a/apps").glob("web-*.yaml"))
    key = "a" * 250 + ".com/team"
    edit_values(release, lambda values: values["labels"].update({key: "x"}))
    findings = validate.validate_repo(repo, helm=helm, kubectl=kubectl).findings
    source = release.relative_to(repo).as_posix()
    assert sorted((f.source.partition(" -> ")[0], f.kind) for f in findings) == [
        (source, "ConfigMap"),
        (source, "Deployment"),
        (source, "Deployment"),  # its own labels and its pod template's
        (source, "Service"),
    ]
    rule = "prefix part must be a DNS subdomain (a-z, 0-9, '-', '.'; start and end alphanumeric)"
    for finding in findings:
        assert finding.message.endswith(f"labels key {key!r}: {rule}; max 253"), finding


def test_fractional_memory_in_values_is_found(
    populated: Path, tmp_path: Path, helm: str, kubectl: str
) -> None:
    repo = checkout(populated, tmp_path / "repo")
    release = next((repo / "tenants/team-a/apps").glob("worker-*.yaml"))
    edit_values(release, lambda values: values["resources"].update(memory="0.1Ki"))
    findings = validate.validate_repo(repo, helm=helm, kubectl=kubectl).findings
    assert len(findings) == 1, [str(f) for f in findings]
    assert (findings[0].kind, findings[0].name) == ("Deployment", release.stem)
    assert findings[0].message == (
        "spec.template.spec.containers[0].resources.requests.memory: must be a whole number of "
        "bytes; 0.1Ki is 102.4 bytes: use 102 or 103"
    )


def test_chart_edited_without_a_version_bump_is_found(
    populated: Path, tmp_path: Path, helm: str, kubectl: str
) -> None:
    repo = checkout(populated, tmp_path / "repo")
    released = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%h", "--", "charts/generic-app"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    service = repo / "charts/generic-app/templates/service.yaml"
    service.write_text(service.read_text() + "# an edit that no cluster would ever get\n")
    changed = commit_all(repo, "Edit the chart")
    (repo / "README.md").write_text("a commit that does not touch the chart\n")
    commit_all(repo, "Edit the README")
    version = YAML(typ="safe").load((repo / "charts/generic-app/Chart.yaml").read_text())
    report = validate.validate_repo(repo, helm=helm, kubectl=kubectl)
    assert [str(f) for f in report.findings] == [
        f"charts/generic-app: content changed in {changed[:7]} without a version bump "
        f"(version {version['version']} was released with other content in {released})"
    ]


def test_validate_command_exit_codes(populated: Path, tmp_path: Path) -> None:
    good = checkout(populated, tmp_path / "good")
    result = run_cli("validate", str(good))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "58 valid objects"

    missing = checkout(populated, tmp_path / "missing")
    (missing / "tenants/team-b/networkpolicy.yaml").unlink()  # still listed by kustomization
    result = run_cli("validate", str(missing))
    assert result.returncode == 1
    assert "tenants/team-b/networkpolicy.yaml" in result.stdout, result.stdout

    negative = checkout(populated, tmp_path / "negative")
    release = next((negative / "tenants/team-a/apps").glob("web-*.yaml"))
    release.write_text(release.read_text().replace("replicas: 2", "replicas: -2"))
    result = run_cli("validate", str(negative))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and release.stem in lines[0] and "replicas" in lines[0], lines


# ---- properties --------------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
env_text = st.text(
    st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="\ufeff\ufffe\uffff")
    | st.sampled_from("\t\n\r{}\"'"),
    max_size=40,
)
valid_bodies = st.fixed_dictionaries(
    {
        "name": names,
        "image": st.sampled_from(
            ["nginx", "registry:5000/a/b:1.0", "ghcr.io/x/y@sha256:" + "0" * 64]
        ),
        "replicas": st.integers(0, 3),
        "port": st.integers(1, 65535),
        "env": st.lists(
            st.fixed_dictionaries(
                {"name": st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True), "value": env_text}
            ),
            max_size=3,
            unique_by=lambda item: item["name"],
        ),
        "resources": st.fixed_dictionaries(
            {
                "cpu": st.sampled_from(["10m", "0.1", "250m", "1"]),
                "memory": st.sampled_from(["16Mi", "100M", "0.5Gi"]),
            }
        ),
        "expose": st.booleans(),
    }
)
BAD_VALUES: dict[str, list[Any]] = {
    "name": ["", "1abc", "UPPER", "a_b", "a" * 47, 5, None],
    "image": ["", "UPPER/x", "a b", "x:", ":tag", 7],
    "replicas": [-1, 21, "2", 1.5, True, None],
    "port": [0, 65536, "80", None],
    "env": [[{"name": "1X", "value": ""}], [{"name": "A"}, {"name": "A"}], "A=1", [{"value": "x"}]],
    "resources": [{"cpu": "abc"}, {"memory": "1Ti"}, {"cpu": "1m"}, "small"],
    "expose": ["yes", 1, None],
}
invalid_bodies = st.tuples(valid_bodies, st.sampled_from(sorted(BAD_VALUES))).flatmap(
    lambda pair: st.sampled_from(BAD_VALUES[pair[1]]).map(lambda bad: {**pair[0], pair[1]: bad})
)


@pytest.fixture(scope="module")
def property_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    app = make_app(tmp_path_factory.mktemp("prop") / "data")
    create_group(
        app.test_client(),
        {
            **TEAM_A,
            "quota": {**TEAM_A["quota"], "deployments": 10_000, "cpu": "1000", "memory": "1000Gi"},
        },
    )
    return app


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=valid_bodies)
def test_accepted_requests_render_to_valid_manifests(
    property_app: Flask, body: dict[str, Any], helm: str, kubectl: str, tmp_path_factory: Any
) -> None:
    client = property_app.test_client()
    body = {**body, "name": body["name"] + "x"}
    existing = client.get("/api/v1/groups/team-a/deployments").json
    if any(d["app"] == body["name"] for d in existing):
        return
    response = client.post("/api/v1/groups/team-a/deployments", json=body)
    assert response.status_code == 201, response.json
    remote = property_app.extensions["gitops_bridge.settings"].embedded_remote
    repo = checkout(remote, tmp_path_factory.mktemp("check") / "repo")
    report = validate.validate_repo(repo, helm=helm, kubectl=kubectl)
    assert report.findings == []
    got = client.get(f"/api/v1/deployments/{response.json['name']}").json
    assert got["env"] == body["env"]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=invalid_bodies)
def test_rejected_requests_change_nothing(property_app: Flask, body: dict[str, Any]) -> None:
    remote = property_app.extensions["gitops_bridge.settings"].embedded_remote
    before_head, before_files = head(remote), files(remote)
    response = property_app.test_client().post("/api/v1/groups/team-a/deployments", json=body)
    assert response.status_code == 422, (body, response.json)
    assert response.json["problems"] and all(p["field"] for p in response.json["problems"])
    assert head(remote) == before_head and files(remote) == before_files
