"""Accepted changes can roll out, end to end on a real bare remote: once an admin lowers a quota
below usage, changes that replace pods (restart, image, env, restore, revert, approval) are 422
and write nothing, while scaling down, stopping and deleting still work; quantities the API server
would warn about are refused, and a repository holding them (written before) still loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gitops_bridge import render
from gitops_bridge.render import yamlio
from tests.apputil import TEAM_A, create_group, make_app, web
from tests.gitutil import git, head, show

ALICE = {"X-Forwarded-User": "alice"}
BOB = {"X-Forwarded-User": "bob"}
JSON = "application/json"
ROOM = "to make room, scale down or stop a deployment of team-a, or ask a platform admin"


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    create_group(client)
    return client


def deploy(client: FlaskClient, name: str = "web", **fields: Any) -> str:
    response = client.post(
        "/api/v1/groups/team-a/deployments", json=web(name, **fields), headers=ALICE
    )
    assert response.status_code in (201, 202), response.json
    value: str = response.json["name"]
    return value


def lower_quota(client: FlaskClient, **quota: Any) -> None:
    response = client.patch("/api/v1/groups/team-a", json={"quota": quota})  # as the admin
    assert response.status_code == 200, response.json


def refs(remote: Path) -> str:
    return git(remote, "for-each-ref")


def values(remote: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = yamlio.load(show(remote, f"tenants/team-a/apps/{name}.yaml"))
    return data["spec"]["values"]  # type: ignore[no-any-return]


@pytest.fixture
def over(client: FlaskClient) -> tuple[str, str]:
    """web (3 replicas + 1 surge x 100m = 400m) and api (200m) in a group lowered to 500m."""
    web_name, api_name = deploy(client, replicas=3), deploy(client, "api", replicas=1)
    lower_quota(client, cpu="500m")
    return web_name, api_name


# --- a group over quota: nothing that replaces pods -----------------------------------------------


def test_restart_of_a_group_over_quota_is_refused_and_writes_nothing(
    client: FlaskClient, remote: Path, over: tuple[str, str]
) -> None:
    name, _ = over
    before, branches = head(remote), refs(remote)
    response = client.post(f"/api/v1/deployments/{name}/restart", headers=ALICE, content_type=JSON)
    assert response.status_code == 422 and response.json["error"] == "QuotaExceeded"
    assert response.json["message"] == (
        f"quota of group team-a exceeded: cpu: used 600m, allowed 500m; restarting {name} "
        "replaces its pods one at a time and needs room for 1 more pod (100m cpu, 128Mi "
        f"memory); {ROOM} to raise the quota"
    )
    assert head(remote) == before and refs(remote) == branches


@pytest.mark.parametrize(
    ("patch", "what"),
    [
        ({"image": "registry:5000/team-a/web:2.0"}, "changing the image of"),
        ({"env": [{"name": "A", "value": "1"}]}, "changing the env of"),
        ({"port": 9090}, "changing the port of"),
        (
            {"resources": {"memory": "64Mi"}},
            "changing the resources of",
        ),  # smaller, still a rollout
        ({"replicas": 2, "image": "registry:5000/team-a/web:2.0"}, None),  # fits after: 500m
    ],
)
def test_pod_template_changes_of_a_group_over_quota_are_refused(
    client: FlaskClient, remote: Path, over: tuple[str, str], patch: dict[str, Any], what: str
) -> None:
    name, _ = over
    before, branches = head(remote), refs(remote)
    response = client.patch(f"/api/v1/deployments/{name}", json=patch, headers=ALICE)
    if what is None:  # scaled down far enough in the same change: the rollout fits
        assert response.status_code == 200, response.json
        return
    assert response.status_code == 422 and response.json["error"] == "QuotaExceeded"
    message = response.json["message"]
    assert message.startswith("quota of group team-a exceeded: cpu: used 600m")
    assert f"{what} {name} replaces its pods one at a time and needs room for 1 more pod" in message
    assert ROOM in message
    assert head(remote) == before and refs(remote) == branches


def test_scale_down_stop_and_delete_still_work_and_then_restart_fits(
    client: FlaskClient, remote: Path, over: tuple[str, str]
) -> None:
    name, other = over
    scaled = client.post(f"/api/v1/deployments/{name}/scale", json={"replicas": 2}, headers=ALICE)
    assert scaled.status_code == 200 and scaled.json["commit"] == head(remote)
    stopped = client.post(f"/api/v1/deployments/{other}/scale", json={"replicas": 0}, headers=ALICE)
    assert stopped.status_code == 200 and values(remote, other)["replicas"] == 0
    # 300m of 500m used now: a restart fits again
    restarted = client.post(f"/api/v1/deployments/{name}/restart", headers=ALICE, content_type=JSON)
    assert restarted.status_code == 200 and "restartedAt" in values(remote, name)
    assert client.delete(f"/api/v1/deployments/{other}", headers=ALICE).status_code == 200


def test_scaling_up_a_group_over_quota_is_still_refused(
    client: FlaskClient, remote: Path, over: tuple[str, str]
) -> None:
    name, _ = over
    before = head(remote)
    response = client.post(f"/api/v1/deployments/{name}/scale", json={"replicas": 4}, headers=ALICE)
    assert response.status_code == 422
    assert "cpu: used 600m, requested 100m, allowed 500m" in response.json["message"]
    assert head(remote) == before


# --- history: restore and revert are changes like any other ---------------------------------------


def test_restore_and_revert_that_replace_pods_are_refused_over_quota(
    client: FlaskClient, remote: Path
) -> None:
    name = deploy(client, replicas=3)
    first = head(remote)
    changed = client.patch(
        f"/api/v1/deployments/{name}", json={"image": "registry:5000/team-a/web:2.0"}, headers=ALICE
    )
    assert changed.status_code == 200
    image_change = head(remote)
    deploy(client, "api", replicas=1)
    lower_quota(client, cpu="500m")
    before, branches = head(remote), refs(remote)
    for action, commit in (("restore", first), ("revert", image_change)):
        response = client.post(
            f"/api/v1/deployments/{name}/{action}", json={"commit": commit}, headers=ALICE
        )
        assert response.status_code == 422, (action, response.json)
        assert f"changing the image of {name} replaces its pods" in response.json["message"]
        assert head(remote) == before and refs(remote) == branches


def test_restore_that_only_scales_down_is_allowed_over_quota(
    client: FlaskClient, remote: Path
) -> None:
    name = deploy(client, replicas=1)
    small = head(remote)
    assert (
        client.post(
            f"/api/v1/deployments/{name}/scale", json={"replicas": 3}, headers=ALICE
        ).status_code
        == 200
    )
    deploy(client, "api", replicas=1)
    lower_quota(client, cpu="500m")
    response = client.post(
        f"/api/v1/deployments/{name}/restore", json={"commit": small}, headers=ALICE
    )
    assert response.status_code == 200, response.json
    assert values(remote, name)["replicas"] == 1


# --- review mode: proposing and approving check the same rule -------------------------------------


def test_approval_of_a_restart_is_refused_once_the_quota_was_lowered(tmp_path: Path) -> None:
    client = make_app(tmp_path / "data", review={"mode": "pull-request"}).test_client()
    remote = tmp_path / "data" / "remote.git"
    create_group(client, {**TEAM_A, "review": "direct"})
    name = deploy(client, replicas=3)
    deploy(client, "api", replicas=1)
    assert client.patch("/api/v1/groups/team-a", json={"review": "pull-request"}).status_code == 200
    proposed = client.post(f"/api/v1/deployments/{name}/restart", headers=ALICE, content_type=JSON)
    assert proposed.status_code == 202, proposed.json
    change_id = proposed.json["change"]["id"]
    lower_quota(client, cpu="500m")
    before, branches = head(remote), refs(remote)
    approved = client.post(f"/api/v1/changes/{change_id}/approve", headers=BOB, content_type=JSON)
    assert approved.status_code == 422 and approved.json["error"] == "QuotaExceeded"
    assert f"restarting {name} replaces its pods one at a time" in approved.json["message"]
    assert head(remote) == before and refs(remote) == branches  # the change request stays open
    # proposing another one is refused up front: no branch
    again = client.post(f"/api/v1/deployments/{name}/restart", headers=ALICE, content_type=JSON)
    assert again.status_code == 422 and refs(remote) == branches


# --- quantities the API server would warn about ---------------------------------------------------

BYTES_0_9_GI = (
    "must be a whole number of bytes; 0.9Gi is 966367641.6 bytes: "
    "use 966367641 or 966367642 (or 921Mi or 922Mi)"
)


def test_fractional_memory_is_refused_with_the_values_to_use(
    client: FlaskClient, remote: Path
) -> None:
    name = deploy(client)
    before, branches = head(remote), refs(remote)
    for response in (
        client.post(
            "/api/v1/groups/team-a/deployments",
            json=web("big", resources={"memory": "0.9Gi"}),
            headers=ALICE,
        ),
        client.patch(
            f"/api/v1/deployments/{name}", json={"resources": {"memory": "0.9Gi"}}, headers=ALICE
        ),
    ):
        assert response.status_code == 422 and response.json["error"] == "InvalidRequest"
        assert response.json["problems"] == [{"field": "resources.memory", "message": BYTES_0_9_GI}]
        assert f"resources.memory: {BYTES_0_9_GI}" in response.json["message"]
    cpu = client.patch(
        f"/api/v1/deployments/{name}", json={"resources": {"cpu": "100.5m"}}, headers=ALICE
    )
    assert cpu.status_code == 422
    assert "resources.cpu: must be a multiple of 1m" in cpu.json["message"]
    quota = client.patch("/api/v1/groups/team-a", json={"quota": {"memory": "0.9Gi"}})
    assert quota.status_code == 422 and f"quota.memory: {BYTES_0_9_GI}" in quota.json["message"]
    assert head(remote) == before and refs(remote) == branches


def test_whole_bytes_are_written_as_given_and_limits_stay_whole(
    client: FlaskClient, remote: Path
) -> None:
    name = deploy(client, resources={"memory": "966367642", "cpu": "150m"})
    resources = values(remote, name)["resources"]
    assert resources == {
        "cpu": "150m",
        "memory": "966367642",
        "limits": {"cpu": "300m", "memory": "1932735284"},
    }


def test_a_repository_with_fractional_values_still_loads_and_heals_on_the_next_write(
    app: Flask, client: FlaskClient, remote: Path
) -> None:
    # what an older gitops-bridge wrote for memory 0.9Gi (or a hand edit)
    name = deploy(client)
    path = f"tenants/team-a/apps/{name}.yaml"
    text = (
        show(remote, path)
        .replace("memory: 128Mi", "memory: 966367641600000000n")
        .replace("memory: 256Mi", "memory: 1932735283200000000n")
    )
    assert text.count("966367641600000000n") == 1
    svc = app.extensions["gitops_bridge"]
    svc.repo.apply(
        lambda s: render.Change("Hand-edited memory", writes=(render.Manifest(path, text),)),
        author=svc.repo.committer,
    )
    shown = client.get(f"/api/v1/deployments/{name}", headers=ALICE)
    assert shown.status_code == 200  # not unreadable: read as Kubernetes reads it, rounded up
    assert shown.json["resources"]["memory"] == "966367642"
    usage = next(g for g in client.get("/api/v1/groups").json if g["name"] == "team-a")["usage"]
    assert usage["memory"] == "1932735284"  # 2 pods (1 + surge) x 966367642
    scaled = client.post(f"/api/v1/deployments/{name}/scale", json={"replicas": 2}, headers=ALICE)
    assert scaled.status_code == 200, scaled.json
    resources = values(remote, name)["resources"]
    assert resources["memory"] == "966367642"
    assert resources["limits"]["memory"] == "1932735284"
    assert "00000n" not in show(remote, path)  # no nano quantities left
