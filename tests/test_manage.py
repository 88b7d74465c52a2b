"""Update, scale, restart and delete through the API: one commit each, by the user,
validated and quota-checked like a create; refused requests write nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gitops_bridge.render import yamlio
from tests.apputil import create_group, deploy, web
from tests.gitutil import files, git, head, show

ALICE = {"X-Forwarded-User": "alice"}


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    create_group(client)
    return client


def release(remote: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = yamlio.load(show(remote, f"tenants/team-a/apps/{name}.yaml"))
    return data


def last_commit(remote: Path) -> str:
    return git(remote, "log", "-1", "--format=%an|%s")


def test_patch_changes_only_the_given_fields(client: FlaskClient, remote: Path) -> None:
    name = deploy(client, replicas=1, env=[{"name": "A", "value": "1"}])
    response = client.patch(
        f"/api/v1/deployments/{name}",
        json={
            "image": "registry:5000/team-a/web:2.0",
            "env": [{"name": "B", "value": "x\ny"}],
            "resources": {"memory": "256Mi"},
        },
        headers=ALICE,
    )
    assert response.status_code == 200, response.json
    values = release(remote, name)["spec"]["values"]
    assert values["image"] == "registry:5000/team-a/web:2.0"
    assert values["env"] == [{"name": "B", "value": "x\ny"}]
    assert values["resources"]["memory"] == "256Mi" and values["resources"]["cpu"] == "100m"
    assert values["replicas"] == 1
    assert last_commit(remote) == (
        f"alice|Update {name}: image registry:5000/team-a/web:1.0 -> "
        "registry:5000/team-a/web:2.0; memory 128Mi -> 256Mi; env added B; env removed A"
    )
    assert (
        git(remote, "diff", "--name-only", "main~1", "main") == f"tenants/team-a/apps/{name}.yaml"
    )


def test_scale_to_zero_stops_and_frees_quota(client: FlaskClient, remote: Path) -> None:
    name = deploy(client, replicas=3)
    response = client.post(f"/api/v1/deployments/{name}/scale", json={"replicas": 0}, headers=ALICE)
    assert response.status_code == 200 and response.json["replicas"] == 0
    assert last_commit(remote) == f"alice|Scale {name} to 0 replicas"
    usage = client.get("/api/v1/groups").json[1]["usage"]
    assert usage == {"cpu": "0", "memory": "0", "pods": 0, "deployments": 1}


def test_restart_changes_only_the_restart_annotation(client: FlaskClient, remote: Path) -> None:
    name = deploy(client)
    before = release(remote, name)
    response = client.post(
        f"/api/v1/deployments/{name}/restart", headers=ALICE, content_type="application/json"
    )
    assert response.status_code == 200, response.json
    after = release(remote, name)
    stamp = after["spec"]["values"].pop("restartedAt")
    assert stamp.endswith("Z") and response.json["restartedAt"] == stamp
    # and the digest of the values, which follows them (render.digest)
    assert after["spec"]["values"].pop("specDigest") != before["spec"]["values"].pop("specDigest")
    assert after == before
    assert last_commit(remote) == f"alice|Restart {name}"


def test_delete_removes_the_file_only(client: FlaskClient, remote: Path) -> None:
    keep, gone = deploy(client, name="keep"), deploy(client, name="gone")
    response = client.delete(f"/api/v1/deployments/{gone}", headers=ALICE)
    assert response.status_code == 200 and response.json["deleted"] is True
    assert f"tenants/team-a/apps/{gone}.yaml" not in files(remote)
    assert f"tenants/team-a/apps/{keep}.yaml" in files(remote)
    assert git(remote, "diff", "--name-only", "main~1", "main").splitlines() == [
        f"tenants/team-a/apps/{gone}.yaml"
    ]
    assert last_commit(remote) == f"alice|Delete {gone} from team-a"
    assert client.get(f"/api/v1/deployments/{gone}", headers=ALICE).status_code == 404
    assert client.delete(f"/api/v1/deployments/{gone}", headers=ALICE).status_code == 404


@pytest.mark.parametrize(
    ("patch", "status", "fragment"),
    [
        ({"replicas": 50}, 422, "replicas: must be 0..20, got 50"),
        ({"replicas": 15, "resources": {"cpu": "200m"}}, 422, "quota of group team-a exceeded"),
        ({"name": "other"}, 422, "name: cannot be changed"),
        ({"image": "Bad Image"}, 422, "image: must be an image reference"),
        ({"env": [{"name": "A"}, {"name": "A"}]}, 422, "env[1].name: duplicate name"),
        ({"unknown": 1}, 422, "unknown: unknown field"),
        ([1, 2], 422, "the body must be a JSON object"),
    ],
)
def test_bad_changes_are_refused_and_write_nothing(
    client: FlaskClient, remote: Path, patch: Any, status: int, fragment: str
) -> None:
    name = deploy(client)
    before = head(remote)
    response = client.patch(f"/api/v1/deployments/{name}", json=patch, headers=ALICE)
    assert response.status_code == status
    assert fragment in response.json["message"], response.json
    assert head(remote) == before


def test_only_members_manage_a_deployment(client: FlaskClient, remote: Path) -> None:
    name = deploy(client)
    before = head(remote)
    mallory = {"X-Forwarded-User": "mallory"}
    assert (
        client.patch(
            f"/api/v1/deployments/{name}", json={"replicas": 2}, headers=mallory
        ).status_code
        == 404
    )
    assert client.delete(f"/api/v1/deployments/{name}", headers=mallory).status_code == 404
    restart = client.post(
        f"/api/v1/deployments/{name}/restart", headers=mallory, content_type="application/json"
    )
    assert restart.status_code == 404
    assert head(remote) == before


def test_no_op_update_makes_no_commit(client: FlaskClient, remote: Path) -> None:
    name = deploy(client, replicas=2)
    before = head(remote)
    response = client.patch(f"/api/v1/deployments/{name}", json={"replicas": 2}, headers=ALICE)
    assert response.status_code == 200 and response.json["changed"] is False
    assert head(remote) == before


def test_bodiless_post_needs_the_json_content_type(client: FlaskClient) -> None:
    name = deploy(client)
    response = client.post(f"/api/v1/deployments/{name}/restart", headers=ALICE)
    assert response.status_code == 400 and "application/json" in response.json["message"]


def test_idempotency_key_returns_the_first_result(client: FlaskClient, remote: Path) -> None:
    headers = ALICE | {"Idempotency-Key": "req-1"}
    first = client.post("/api/v1/groups/team-a/deployments", json=web(), headers=headers)
    again = client.post("/api/v1/groups/team-a/deployments", json=web(), headers=headers)
    assert first.status_code == 201 and again.status_code == 201
    assert (again.json["name"], again.json["commit"]) == (first.json["name"], first.json["commit"])
    assert head(remote) == first.json["commit"]
    other_body = client.post("/api/v1/groups/team-a/deployments", json=web("x"), headers=headers)
    assert other_body.status_code == 422 and "Idempotency-Key" in other_body.json["message"]
    other_user = client.post(
        "/api/v1/groups/team-a/deployments",
        json=web("y"),
        headers={"X-Forwarded-User": "bob", "Idempotency-Key": "req-1"},
    )
    assert other_user.status_code == 201  # keys are per user
    name = first.json["name"]
    scaled = [
        client.post(
            f"/api/v1/deployments/{name}/scale",
            json={"replicas": 2},
            headers=ALICE | {"Idempotency-Key": "scale-1"},
        )
        for _ in range(2)
    ]
    assert scaled[0].json["commit"] == scaled[1].json["commit"] == head(remote)
