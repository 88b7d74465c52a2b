"""Review mode: changes wait on their own branch until approved; built-in review and the
GitHub/Gitea adapters (against their wire-level fakes), including merges outside the bridge."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.apputil import TEAM_A, create_group, make_app, web
from tests.forgefakes import FakeGitea, FakeGitHub
from tests.gitutil import files, git, head

ALICE = {"X-Forwarded-User": "alice"}
BOB = {"X-Forwarded-User": "bob"}
JSON = "application/json"


def branches(remote: Path) -> list[str]:
    out = git(remote, "for-each-ref", "--format=%(refname:short)", "refs/heads/changes/")
    return out.splitlines()


def propose(client: FlaskClient, name: str = "web", **fields: Any) -> dict[str, Any]:
    response = client.post(
        "/api/v1/groups/team-a/deployments", json=web(name, **fields), headers=ALICE
    )
    assert response.status_code == 202, response.json
    body: dict[str, Any] = response.json
    return body


def approve(client: FlaskClient, change_id: str, headers: dict[str, str] = BOB) -> Any:
    return client.post(f"/api/v1/changes/{change_id}/approve", headers=headers, content_type=JSON)


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return tmp_path / "data" / "remote.git"


def review_app(tmp_path: Path, **review: Any) -> Flask:
    return make_app(tmp_path / "data", review={"mode": "pull-request", **review})


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    client = review_app(tmp_path).test_client()
    create_group(client, {**TEAM_A, "admins": ["carol"]})
    return client


def test_a_change_waits_on_its_branch(client: FlaskClient, remote: Path) -> None:
    main = head(remote)
    body = propose(client, replicas=2)
    change = body["change"]
    assert body["status"]["state"] == "pending review"
    assert change["id"] == f"team-a/{body['name']}/{change['id'].rsplit('/', 1)[1]}"
    assert change["url"] == f"/changes/{change['id']}" and change["author"] == "alice"
    assert head(remote) == main  # nothing reached main
    assert branches(remote) == [f"changes/{change['id']}"]
    assert git(remote, "rev-parse", f"changes/{change['id']}~1") == main
    listed = client.get("/api/v1/changes", headers=BOB).json
    assert [c["id"] for c in listed] == [change["id"]]
    detail = client.get(f"/api/v1/changes/{change['id']}", headers=BOB).json
    assert f"+  name: {body['name']}" in detail["diff"]
    assert client.get("/api/v1/changes", headers={"X-Forwarded-User": "eve"}).json == []


def test_another_member_approves_and_it_lands_on_main(client: FlaskClient, remote: Path) -> None:
    body = propose(client)
    change_id = body["change"]["id"]
    own = approve(client, change_id, ALICE)
    assert own.status_code == 403 and "another member must approve it" in own.json["message"]
    approved = approve(client, change_id, BOB)
    assert approved.status_code == 200, approved.json
    assert git(remote, "log", "-1", "--format=%an|%cn|%s") == (
        f"alice|gitops-bridge|Deploy {body['name']} to team-a"
    )
    message = git(remote, "log", "-1", "--format=%B")
    assert "Approved-by: bob" in message and f"Change-Request: {change_id}" in message
    assert branches(remote) == []
    assert f"tenants/team-a/apps/{body['name']}.yaml" in files(remote)
    assert approve(client, change_id, BOB).status_code == 404  # gone once approved


def test_self_approval_can_be_allowed(tmp_path: Path, remote: Path) -> None:
    client = review_app(tmp_path, self_approval=True).test_client()
    create_group(client)
    change_id = propose(client)["change"]["id"]
    assert approve(client, change_id, ALICE).status_code == 200


def test_approvers_can_be_limited_to_group_admins(tmp_path: Path) -> None:
    client = review_app(tmp_path, approvers="admins").test_client()
    create_group(client, {**TEAM_A, "members": ["alice", "bob", "carol"], "admins": ["carol"]})
    change_id = propose(client)["change"]["id"]
    denied = approve(client, change_id, BOB)
    assert denied.status_code == 403 and "only admins of group team-a" in denied.json["message"]
    assert approve(client, change_id, {"X-Forwarded-User": "carol"}).status_code == 200


def test_quota_is_checked_again_on_the_main_it_merges_into(
    client: FlaskClient, remote: Path
) -> None:
    # each fits alone (11 pods x 100m = 1100m of 2), both together do not
    first = propose(client, "one", replicas=10)["change"]["id"]
    second = propose(client, "two", replicas=10)["change"]["id"]
    assert approve(client, first).status_code == 200
    before = head(remote)
    refused = approve(client, second)
    assert (
        refused.status_code == 422 and "quota of group team-a exceeded" in refused.json["message"]
    )
    assert head(remote) == before
    assert branches(remote) == [f"changes/{second}"]  # still open: can be closed or changed


def test_close_discards_the_branch(client: FlaskClient, remote: Path) -> None:
    main = head(remote)
    change_id = propose(client)["change"]["id"]
    closed = client.post(f"/api/v1/changes/{change_id}/close", headers=ALICE, content_type=JSON)
    assert closed.status_code == 200 and closed.json["closed"] is True
    assert branches(remote) == [] and head(remote) == main


def test_bad_input_in_review_mode_creates_no_branch(client: FlaskClient, remote: Path) -> None:
    response = client.post(
        "/api/v1/groups/team-a/deployments", json=web(replicas=99), headers=ALICE
    )
    assert response.status_code == 422 and branches(remote) == []


def test_review_mode_can_be_set_per_group(tmp_path: Path, remote: Path) -> None:
    client = make_app(tmp_path / "data").test_client()  # installation: direct
    create_group(client, {**TEAM_A, "review": "pull-request"})
    create_group(client, {**TEAM_A, "name": "team-b"})
    reviewed = client.post("/api/v1/groups/team-a/deployments", json=web(), headers=ALICE)
    direct = client.post("/api/v1/groups/team-b/deployments", json=web(), headers=ALICE)
    assert (reviewed.status_code, direct.status_code) == (202, 201)
    groups = {g["name"]: g for g in client.get("/api/v1/groups").json}
    assert groups["team-a"]["review"] == "pull-request" and groups["team-b"]["review"] is None


def test_pending_changes_show_on_the_deployment(client: FlaskClient) -> None:
    body = propose(client)
    approve(client, body["change"]["id"])
    name = body["name"]
    scale = client.post(f"/api/v1/deployments/{name}/scale", json={"replicas": 3}, headers=ALICE)
    assert scale.status_code == 202
    shown = client.get(f"/api/v1/deployments/{name}", headers=BOB).json
    assert shown["replicas"] == 1  # main is unchanged until approval
    assert shown["status"]["review"] == "pending review"
    assert shown["status"]["state"] == "not connected"  # what runs is shown beside it
    assert shown["status"]["change"]["id"] == scale.json["change"]["id"]


# ---- forges --------------------------------------------------------------------------

SECRET = "hook-secret"


@pytest.fixture(params=["github", "gitea"])
def forge(request: pytest.FixtureRequest) -> Iterator[Any]:
    fake = FakeGitHub() if request.param == "github" else FakeGitea()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def forge_app(tmp_path: Path, forge: Any) -> Flask:
    app = review_app(
        tmp_path,
        forge=forge.kind,
        forge_url=forge.url,
        forge_repo=f"{forge.owner}/{forge.repo}",
        forge_token=forge.token,
        webhook_secret=SECRET,
    )
    create_group(app.test_client())
    return app


def merge_on_forge(remote: Path, forge: Any, number: int, branch: str) -> None:
    """What the forge does on merge: main takes the branch (fast-forward here), PR merged."""
    sha = git(remote, "rev-parse", branch)
    git(remote, "update-ref", "refs/heads/main", sha)
    forge.merge(number, merge_commit=sha)


def test_forge_pull_request_merged_outside_the_bridge(
    forge_app: Flask, forge: Any, remote: Path
) -> None:
    client = forge_app.test_client()
    body = propose(client)
    change = body["change"]
    pull = next(iter(forge.pulls.values()))
    assert (pull.head, pull.base) == (f"changes/{change['id']}", "main")
    kind = "pull" if forge.kind == "github" else "pulls"
    assert change["url"] == f"{forge.web}/{forge.owner}/{forge.repo}/{kind}/{pull.number}"
    refused = approve(client, change["id"])
    assert refused.status_code == 409 and change["url"] in refused.json["message"]

    merge_on_forge(remote, forge, pull.number, f"changes/{change['id']}")
    headers, payload = forge.webhook_delivery(pull.number, SECRET)
    delivered = client.post("/api/v1/forge/events", data=payload, headers=headers)
    assert delivered.status_code == 200 and delivered.json["state"] == "merged"
    assert branches(remote) == []
    assert client.get("/api/v1/changes", headers=BOB).json == []
    shown = client.get(f"/api/v1/deployments/{body['name']}", headers=BOB)
    assert shown.status_code == 200 and shown.json["status"]["commit"] == head(remote)
    assert "review" not in shown.json["status"]


def test_forge_closed_pull_request_is_found_by_polling(
    forge_app: Flask, forge: Any, remote: Path
) -> None:
    client = forge_app.test_client()
    propose(client)
    pull = next(iter(forge.pulls.values()))
    forge.close(pull.number)
    main = head(remote)
    assert forge_app.extensions["gitops_bridge"].review.sync() == 1
    assert branches(remote) == [] and head(remote) == main


def test_forge_webhook_with_a_bad_signature_is_refused(forge_app: Flask, forge: Any) -> None:
    client = forge_app.test_client()
    propose(client)
    pull = next(iter(forge.pulls.values()))
    headers, payload = forge.webhook_delivery(pull.number, "wrong-secret")
    assert client.post("/api/v1/forge/events", data=payload, headers=headers).status_code == 401


def test_closing_in_the_bridge_closes_the_pull_request(
    forge_app: Flask, forge: Any, remote: Path
) -> None:
    client = forge_app.test_client()
    change_id = propose(client)["change"]["id"]
    pull = next(iter(forge.pulls.values()))
    closed = client.post(f"/api/v1/changes/{change_id}/close", headers=ALICE, content_type=JSON)
    assert closed.status_code == 200
    assert forge.pulls[pull.number].state == "closed" and branches(remote) == []


def test_a_change_proposed_on_one_replica_is_approved_on_another(
    tmp_path: Path, remote: Path
) -> None:
    first = review_app(tmp_path).test_client()
    create_group(first)
    second = make_app(
        tmp_path / "other",
        repo_url=remote.as_uri(),
        review={"mode": "pull-request"},
        fetch_interval=0,
    ).test_client()
    change_id = propose(first)["change"]["id"]
    listed = second.get("/api/v1/changes", headers=BOB).json
    assert [c["id"] for c in listed] == [change_id]
    assert approve(second, change_id).status_code == 200
    assert branches(remote) == []
    assert first.get(f"/api/v1/changes/{change_id}", headers=BOB).status_code == 404
