"""The JSON API end to end on a real bare remote: what is committed, and what is refused."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gitops_bridge import service
from gitops_bridge.render import yamlio
from tests.apputil import TEAM_A, as_user, create_group, make_app, web
from tests.gitutil import files, git, head, show


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_embedded_default_has_template_and_demo_group(client: FlaskClient, remote: Path) -> None:
    groups = client.get("/api/v1/groups").json
    assert [g["name"] for g in groups] == ["demo"]
    assert {"clusters/dev/tenants.yaml", "charts/generic-app/Chart.yaml"} <= set(files(remote))
    assert "tenants/demo/namespace.yaml" in files(remote)


def test_create_group_commits_tenant_files_as_the_admin(client: FlaskClient, remote: Path) -> None:
    body = create_group(client)
    assert body["namespace"] == "group-team-a" and body["commit"] == head(remote)
    assert git(remote, "log", "-1", "--format=%an|%s") == "admin|Create group team-a"
    tenant = {p for p in files(remote) if p.startswith("tenants/team-a/")}
    platform = ("kustomization", "namespace", "quota", "rbac", "networkpolicy", "sync")
    assert tenant == {f"tenants/team-a/{name}.yaml" for name in (*platform, "notifications")} | {
        "tenants/team-a/apps/.gitkeep"  # the folder the group's own Kustomization applies
    }
    index = yamlio.load(show(remote, "tenants/kustomization.yaml"))
    assert index["resources"] == ["demo", "team-a"]


def test_create_deployment_commits_one_helmrelease_authored_by_the_user(
    client: FlaskClient, remote: Path
) -> None:
    create_group(client)
    env = [{"name": "GREETING", "value": 'say "hi"\n{{ .Values.x }}\n'}]
    response = client.post(
        "/api/v1/groups/team-a/deployments",
        json=web(replicas=2, expose=True, env=env),
        headers=as_user("alice"),
    )
    assert response.status_code == 201, response.json
    body = response.json
    assert body["name"] == f"web-{body['id']}" and len(body["id"]) == 6
    assert body["group"] == "team-a" and body["commit"] == head(remote)
    assert body["url"] == f"https://web-{body['id']}.code-hub.com"
    assert response.headers["Location"].endswith(f"/api/v1/deployments/{body['name']}")
    assert git(remote, "log", "-1", "--format=%an <%ae>|%cn") == (
        "alice <alice@code-hub.com>|gitops-bridge"
    )
    # one file: the group's Kustomization applies apps/ with no index to maintain
    assert git(remote, "diff", "--name-only", "main~1", "main").splitlines() == [
        f"tenants/team-a/apps/{body['name']}.yaml",
    ]
    release = yamlio.load(show(remote, f"tenants/team-a/apps/{body['name']}.yaml"))
    assert release["spec"]["values"]["env"] == env
    assert release["spec"]["serviceAccountName"] == "flux-reconciler"
    got = client.get(f"/api/v1/deployments/{body['name']}", headers=as_user("bob")).json
    assert got["env"] == env and got["commit"] == body["commit"] and got["owner"] == "alice"


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        (web(name="My_App"), "name", "must be a DNS label"),
        (web(replicas=50), "replicas", "must be 0..20, got 50"),
        (web(port=0), "port", "must be 1..65535, got 0"),
        (web(image="Not An Image"), "image", "must be an image reference"),
        (web(env=[{"name": "1A", "value": ""}]), "env[0].name", "must be a C identifier"),
        (web(resources={"cpu": "100", "memory": "1Gi"}), "resources.cpu", "must be 10m..4"),
        (web(extra=True), "extra", "unknown field"),
        ({"image": "nginx"}, "name", "is required"),
    ],
)
def test_bad_input_is_422_naming_the_field_and_writes_nothing(
    client: FlaskClient, remote: Path, body: dict[str, object], field: str, rule: str
) -> None:
    create_group(client)
    before, refs = head(remote), git(remote, "for-each-ref")
    response = client.post("/api/v1/groups/team-a/deployments", json=body)
    assert response.status_code == 422
    problems = {p["field"]: p["message"] for p in response.json["problems"]}
    assert rule in problems[field], problems
    assert head(remote) == before and git(remote, "for-each-ref") == refs


def test_quota_rejection_says_used_requested_allowed(client: FlaskClient, remote: Path) -> None:
    create_group(client)
    ok = client.post("/api/v1/groups/team-a/deployments", json=web(replicas=3))
    assert ok.status_code == 201
    before = head(remote)
    response = client.post(
        "/api/v1/groups/team-a/deployments",
        json=web("api", replicas=10, resources={"cpu": "200m", "memory": "128Mi"}),
    )
    assert response.status_code == 422 and response.json["error"] == "QuotaExceeded"
    message = response.json["message"]
    assert "cpu: used 400m, requested 2200m, allowed 2" in message
    assert "10 replicas + 1 rolling-update pod" in message
    # the problems say it for people, at the field that can fix it
    assert response.json["problems"] == [
        {
            "field": "replicas",
            "message": "This needs 2.2 cores of CPU (11 pods of 200m each: 10 replicas + 1 "
            "rolling-update pod); the group has 2 cores, 400m in use — lower the replicas or "
            "the CPU per pod.",
        }
    ]
    # a body refused for another field is checked against the quota too: both at once
    both = client.post(
        "/api/v1/groups/team-a/deployments",
        json=web("api", replicas=10, resources={"cpu": "200m"}, env=[{"name": "", "value": "x"}]),
    )
    assert both.status_code == 422 and both.json["error"] == "InvalidRequest"
    assert [p["field"] for p in both.json["problems"]] == ["env[0].name", "replicas"]
    assert head(remote) == before


def test_requests_that_cannot_be_read_are_400(client: FlaskClient) -> None:
    create_group(client)
    not_json = client.post("/api/v1/groups/team-a/deployments", data="name=web")
    assert not_json.status_code == 400 and "application/json" in not_json.json["message"]
    broken = client.post(
        "/api/v1/groups/team-a/deployments", data="{", content_type="application/json"
    )
    assert broken.status_code == 400
    array = client.post("/api/v1/groups/team-a/deployments", json=[1])
    assert array.status_code == 422


def test_membership_and_existence_rules(client: FlaskClient, remote: Path) -> None:
    create_group(client)
    # to a non-member, a group is as absent as one that does not exist
    outsider = client.post(
        "/api/v1/groups/team-a/deployments", json=web(), headers=as_user("mallory")
    )
    assert outsider.status_code == 404 and outsider.json["message"] == "group 'team-a' not found"
    by_idp_group = client.post(
        "/api/v1/groups/team-a/deployments", json=web(), headers=as_user("carol", "team-a")
    )
    assert by_idp_group.status_code == 201
    assert client.post("/api/v1/groups/nope/deployments", json=web()).status_code == 404
    assert client.get("/api/v1/deployments/web-zzzzzz").status_code == 404
    duplicate = client.post("/api/v1/groups/team-a/deployments", json=web())
    assert duplicate.status_code == 409 and "exists in group team-a" in duplicate.json["message"]
    assert [p["field"] for p in duplicate.json["problems"]] == ["name"]  # a form shows it there
    name = by_idp_group.json["name"]
    hidden = client.get(f"/api/v1/deployments/{name}", headers=as_user("mallory"))
    assert hidden.status_code == 404 and hidden.json["message"] == f"deployment {name!r} not found"
    assert client.get("/api/v1/groups", headers=as_user("mallory")).json == []


def test_only_admins_create_groups_and_names_are_unique(client: FlaskClient, remote: Path) -> None:
    denied = client.post("/api/v1/groups", json=TEAM_A, headers=as_user("alice"))
    assert denied.status_code == 403
    via_admin_group = client.post(
        "/api/v1/groups", json=TEAM_A, headers=as_user("root", "platform-admins")
    )
    assert via_admin_group.status_code == 201
    before = head(remote)
    again = client.post("/api/v1/groups", json=TEAM_A)
    assert again.status_code == 409 and head(remote) == before
    bad = client.post("/api/v1/groups", json={**TEAM_A, "name": "Team A", "quota": {}})
    fields = {p["field"] for p in bad.json["problems"]}
    assert bad.status_code == 422 and {"name", "quota.cpu", "quota.deployments"} <= fields


def test_proxy_identity_trusts_only_configured_addresses(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", identity="proxy", trusted_proxies=["10.1.2.0/24"])
    client = app.test_client()
    trusted = {"REMOTE_ADDR": "10.1.2.7"}
    assert client.get("/api/v1/groups", environ_base=trusted).status_code == 401  # no header
    stranger = client.get(
        "/api/v1/groups", headers=as_user("admin"), environ_base={"REMOTE_ADDR": "10.9.9.9"}
    )
    assert stranger.status_code == 401
    ok = client.get("/api/v1/groups", headers=as_user("admin"), environ_base=trusted)
    assert ok.status_code == 200 and [g["name"] for g in ok.json] == ["demo"]


def test_dev_identity_refuses_non_loopback(client: FlaskClient) -> None:
    response = client.get("/api/v1/groups", environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert response.status_code == 403


def test_concurrent_creates_never_overshoot_the_quota(tmp_path: Path) -> None:
    """Two bridge instances (separate clones) race for the last deployment slots."""
    first = make_app(tmp_path / "one")
    remote = tmp_path / "one" / "remote.git"
    second = make_app(tmp_path / "two", repo_url=remote.as_uri(), push_attempts=30)
    create_group(first.test_client(), {**TEAM_A, "quota": {**TEAM_A["quota"], "deployments": 4}})
    results: list[int] = []
    lock = threading.Lock()

    def create(app: Flask, index: int) -> None:
        response = app.test_client().post(
            "/api/v1/groups/team-a/deployments", json=web(f"app{index}")
        )
        with lock:
            results.append(response.status_code)

    threads = [
        threading.Thread(target=create, args=(first if i % 2 else second, i)) for i in range(10)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    apps = [p for p in files(remote) if p.startswith("tenants/team-a/apps/") and ".yaml" in p]
    assert sorted(results) == [201] * 4 + [422] * 6
    assert len(apps) == 4
    index = yamlio.load(show(remote, "tenants/team-a/kustomization.yaml"))
    assert not [r for r in index["resources"] if r.startswith("apps/")]


def test_deployment_ids_are_unique_even_when_the_generator_repeats(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data")
    svc: service.Service = app.extensions["gitops_bridge"]
    ids = iter(["aaaaaa", "aaaaaa", "bbbbbb"])
    svc.new_id = lambda: next(ids)
    client = app.test_client()
    create_group(client)
    one = client.post("/api/v1/groups/team-a/deployments", json=web("one")).json
    two = client.post("/api/v1/groups/team-a/deployments", json=web("two")).json
    assert (one["id"], two["id"]) == ("aaaaaa", "bbbbbb")


def test_api_tokens_identify_machines_from_any_address(tmp_path: Path) -> None:
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    tokens = {
        "ci-bot": {"sha256": digest("gb_ci"), "groups": ["team-a"]},
        "root-bot": {"sha256": digest("gb_root"), "admin": True},
    }
    app = make_app(tmp_path / "data", identity="proxy", api_tokens=tokens)
    remote = tmp_path / "data" / "remote.git"
    client = app.test_client()
    anywhere = {"REMOTE_ADDR": "203.0.113.9"}  # not a trusted proxy

    def call(method: str, path: str, token: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        return client.open(path, method=method, headers=headers, environ_base=anywhere, **kwargs)

    assert call("POST", "/api/v1/groups", "gb_root", json=TEAM_A).status_code == 201
    created = call("POST", "/api/v1/groups/team-a/deployments", "gb_ci", json=web())
    assert created.status_code == 201, created.json
    # its own principal, with the bridge's address: never a person's name or e-mail
    author = git(remote, "log", "-1", "--format=%an <%ae>")
    assert author == "token:ci-bot <gitops-bridge@code-hub.com>"
    elsewhere = call("POST", "/api/v1/groups/demo/deployments", "gb_ci", json=web())
    assert elsewhere.status_code == 404  # acts only in its groups; others are hidden
    wrong = call("GET", "/api/v1/groups", "gb_nope")
    assert wrong.status_code == 401 and "unknown API token" in wrong.json["message"]


def test_admins_change_members_and_quota_in_one_commit(client: FlaskClient, remote: Path) -> None:
    create_group(client)
    response = client.patch(
        "/api/v1/groups/team-a",
        json={"members": ["alice", "carol"], "quota": {"cpu": "8", "deployments": 9}},
    )
    assert response.status_code == 200, response.json
    assert response.json["members"] == ["alice", "carol"] and response.json["quota"]["cpu"] == "8"
    assert git(remote, "log", "-1", "--format=%an|%s") == (
        "admin|Update group team-a: members +carol; members -bob; quota cpu 2 -> 8; "
        "quota deployments 5 -> 9"
    )
    changed = git(remote, "diff", "--name-only", "main~1", "main").splitlines()
    assert changed == ["tenants/team-a/namespace.yaml", "tenants/team-a/quota.yaml"]
    quota = yamlio.load_all(show(remote, "tenants/team-a/quota.yaml"))[0]
    assert quota["spec"]["hard"]["requests.cpu"] == "8"
    carol = client.post("/api/v1/groups/team-a/deployments", json=web(), headers=as_user("carol"))
    assert carol.status_code == 201  # carol is a member now
    before = head(remote)
    for patch, status, fragment in [
        ({"quota": {"cpu": "lots"}}, 422, "quota.cpu: must be a Kubernetes quantity"),
        ({"name": "other"}, 422, "name: cannot be changed"),
        ({"members": ["Not A User"]}, 422, "members[0]: must be a user name"),
    ]:
        refused = client.patch("/api/v1/groups/team-a", json=patch)
        assert refused.status_code == status and fragment in refused.json["message"], refused.json
    denied = client.patch("/api/v1/groups/team-a", json={"members": []}, headers=as_user("alice"))
    assert denied.status_code == 403
    assert client.patch("/api/v1/groups/nope", json={"members": []}).status_code == 404
    assert head(remote) == before
    same = client.patch("/api/v1/groups/team-a", json={"members": ["alice", "carol"]})
    assert same.status_code == 200 and same.json["changed"] is False and head(remote) == before
