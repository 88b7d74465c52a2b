"""History of a deployment, and rollback by git revert or by restoring a version:
new commits only, validated and quota-checked, refused cleanly on conflicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gitops_bridge.render import yamlio
from tests.apputil import TEAM_A, create_group, deploy, make_app, web
from tests.gitutil import files, git, head, show

ALICE = {"X-Forwarded-User": "alice"}
BOB = {"X-Forwarded-User": "bob"}


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    create_group(client)
    return client


def scale(client: FlaskClient, name: str, replicas: int, headers: dict[str, str] = ALICE) -> str:
    response = client.post(
        f"/api/v1/deployments/{name}/scale", json={"replicas": replicas}, headers=headers
    )
    assert response.status_code == 200, response.json
    commit: str = response.json["commit"]
    return commit


def values(remote: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = yamlio.load(show(remote, f"tenants/team-a/apps/{name}.yaml"))
    return data["spec"]["values"]  # type: ignore[no-any-return]


def test_history_lists_every_change_newest_first(client: FlaskClient) -> None:
    name = deploy(client)
    scale(client, name, 3, BOB)
    client.patch(f"/api/v1/deployments/{name}", json={"image": "nginx:2"}, headers=ALICE)
    deploy(client, "other")  # not part of this deployment's history
    versions = client.get(f"/api/v1/deployments/{name}/history?diff=1", headers=ALICE).json
    assert [v["action"] for v in versions] == ["update", "update", "create"]
    assert [v["author"] for v in versions] == ["alice", "bob", "alice"]
    assert versions[0]["summary"] == ["image registry:5000/team-a/web:1.0 -> nginx:2"]
    assert versions[1]["summary"] == ["replicas 1 -> 3"]
    assert versions[1]["message"] == f"Scale {name} to 3 replicas"
    assert "-    replicas: 1\n+    replicas: 3" in versions[1]["diff"]
    assert (
        client.get(
            f"/api/v1/deployments/{name}/history", headers={"X-Forwarded-User": "eve"}
        ).status_code
        == 404
    )


def test_revert_undoes_one_change_on_top_of_main(client: FlaskClient, remote: Path) -> None:
    name = deploy(client, env=[{"name": "A", "value": "1"}])
    scaled = scale(client, name, 4)
    client.patch(f"/api/v1/deployments/{name}", json={"image": "nginx:2"}, headers=ALICE)
    response = client.post(
        f"/api/v1/deployments/{name}/revert", json={"commit": scaled[:10]}, headers=BOB
    )
    assert response.status_code == 200, response.json
    now = values(remote, name)
    assert now["replicas"] == 1 and now["image"] == "nginx:2"  # the later change stays
    assert git(remote, "log", "-1", "--format=%an|%s%n%b").startswith(
        f'bob|Revert "Scale {name} to 4 replicas"\nThis reverts commit {scaled}.'
    )


def test_revert_that_conflicts_is_409_and_writes_nothing(client: FlaskClient, remote: Path) -> None:
    name = deploy(client)
    first = scale(client, name, 2)
    scale(client, name, 3)
    before = head(remote)
    response = client.post(
        f"/api/v1/deployments/{name}/revert", json={"commit": first}, headers=ALICE
    )
    assert response.status_code == 409
    assert "conflicts with later changes" in response.json["message"]
    assert head(remote) == before and git(remote, "for-each-ref", "refs/heads").count("\n") == 0


def test_revert_refuses_a_commit_that_touches_other_files(
    app: Flask, client: FlaskClient, remote: Path
) -> None:
    name = deploy(client)
    svc = app.extensions["gitops_bridge"]
    from gitops_bridge import render

    path = f"tenants/team-a/apps/{name}.yaml"
    text = show(remote, path).replace("replicas: 1", "replicas: 2") + "\n"
    wide = svc.repo.apply(
        lambda s: render.Change(
            "Hand-made change of two files",
            writes=(
                render.Manifest(path, text),
                render.Manifest("clusters/dev/extra.yaml", "a: 1\n"),
            ),
        ),
        author=svc.repo.committer,
    )
    before = head(remote)
    response = client.post(
        f"/api/v1/deployments/{name}/revert", json={"commit": wide.sha}, headers=ALICE
    )
    assert response.status_code == 409
    assert "also changes clusters/dev/extra.yaml" in response.json["message"]
    assert head(remote) == before


def test_restore_brings_back_a_deleted_deployment(client: FlaskClient, remote: Path) -> None:
    name = deploy(client, replicas=2, expose=True)
    assert client.delete(f"/api/v1/deployments/{name}", headers=ALICE).status_code == 200
    versions = client.get(f"/api/v1/deployments/{name}/history", headers=ALICE).json
    assert [v["exists"] for v in versions] == [False, True]
    response = client.post(
        f"/api/v1/deployments/{name}/restore", json={"commit": versions[1]["commit"]}, headers=BOB
    )
    assert response.status_code == 200, response.json
    assert response.json["name"] == name and response.json["replicas"] == 2
    assert f"tenants/team-a/apps/{name}.yaml" in files(remote)
    deleted = client.post(
        f"/api/v1/deployments/{name}/restore", json={"commit": versions[0]["commit"]}, headers=BOB
    )
    assert (
        deleted.status_code == 422 and "pick a commit where it existed" in deleted.json["message"]
    )


def test_restore_is_quota_checked(client: FlaskClient, remote: Path) -> None:
    name = deploy(client, replicas=10)  # 11 pods x 100m = 1100m of 2
    big = client.get(f"/api/v1/deployments/{name}/history", headers=ALICE).json[0]["commit"]
    scale(client, name, 1)
    deploy(client, "other", replicas=10)
    before = head(remote)
    response = client.post(
        f"/api/v1/deployments/{name}/restore", json={"commit": big}, headers=ALICE
    )
    assert (
        response.status_code == 422 and "quota of group team-a exceeded" in response.json["message"]
    )
    assert head(remote) == before


def test_revert_of_a_delete_restores_it(client: FlaskClient, remote: Path) -> None:
    name = deploy(client)
    deleted = client.delete(f"/api/v1/deployments/{name}", headers=ALICE).json["commit"]
    response = client.post(
        f"/api/v1/deployments/{name}/revert", json={"commit": deleted}, headers=ALICE
    )
    assert response.status_code == 200, response.json
    assert f"tenants/team-a/apps/{name}.yaml" in files(remote)


@pytest.mark.parametrize("commit", ["", "zzzz", "abc", "0" * 40])
def test_revert_needs_a_commit_of_this_deployment(
    client: FlaskClient, remote: Path, commit: str
) -> None:
    name = deploy(client)
    before = head(remote)
    response = client.post(
        f"/api/v1/deployments/{name}/revert", json={"commit": commit}, headers=ALICE
    )
    assert response.status_code == 422 and response.json["problems"][0]["field"] == "commit"
    assert head(remote) == before


def test_rollback_in_review_mode_waits_for_approval(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", review={"mode": "pull-request"})
    client = app.test_client()
    create_group(client, TEAM_A)
    remote = tmp_path / "data" / "remote.git"
    # in review mode even the create waits: approve it first
    created = client.post("/api/v1/groups/team-a/deployments", json=web(replicas=1), headers=ALICE)
    assert created.status_code == 202
    name = created.json["name"]
    assert (
        client.post(
            f"/api/v1/changes/{created.json['change']['id']}/approve",
            headers=BOB,
            content_type="application/json",
        ).status_code
        == 200
    )
    scaled = client.post(f"/api/v1/deployments/{name}/scale", json={"replicas": 5}, headers=ALICE)
    client.post(
        f"/api/v1/changes/{scaled.json['change']['id']}/approve",
        headers=BOB,
        content_type="application/json",
    )
    assert values(remote, name)["replicas"] == 5
    scale_commit = client.get(f"/api/v1/deployments/{name}/history", headers=ALICE).json[0][
        "commit"
    ]
    main_before = head(remote)
    revert = client.post(
        f"/api/v1/deployments/{name}/revert", json={"commit": scale_commit}, headers=ALICE
    )
    assert revert.status_code == 202 and revert.json["status"]["state"] == "pending review"
    assert head(remote) == main_before and values(remote, name)["replicas"] == 5
    change_id = revert.json["change"]["id"]
    assert change_id.startswith(f"team-a/{name}/revert-")
    approved = client.post(
        f"/api/v1/changes/{change_id}/approve", headers=BOB, content_type="application/json"
    )
    assert approved.status_code == 200, approved.json
    assert values(remote, name)["replicas"] == 1
    message = git(remote, "log", "-1", "--format=%an|%B")
    assert (
        message.startswith(f'alice|Revert "Scale {name} to 5 replicas"')
        and "Approved-by: bob" in message
    )


def _deployment(**spec: Any) -> Any:
    from gitops_bridge import models

    body = {"name": "web", "image": "nginx:1", **spec}
    return models.Deployment(group="g", id="abc123", spec=models.parse_deployment(body))


def test_field_merge_carries_independent_changes() -> None:
    from gitops_bridge import models

    base = _deployment(replicas=1, env=[{"name": "A", "value": "1"}, {"name": "B", "value": "1"}])
    ours = _deployment(
        replicas=1, image="nginx:2", env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    )
    theirs = _deployment(replicas=4, env=[{"name": "B", "value": "1"}, {"name": "C", "value": "x"}])
    merged = models.merge_deployments(base, ours, theirs)
    assert merged.spec.image == "nginx:2" and merged.spec.replicas == 4
    assert [(v.name, v.value) for v in merged.spec.env] == [("B", "2"), ("C", "x")]


def test_field_merge_names_the_conflicting_fields() -> None:
    from gitops_bridge import models

    base = _deployment(replicas=1, env=[{"name": "A", "value": "1"}])
    ours = _deployment(replicas=3, env=[{"name": "A", "value": "2"}])
    theirs = _deployment(replicas=2, env=[{"name": "A", "value": "3"}])
    with pytest.raises(models.MergeConflict) as info:
        models.merge_deployments(base, ours, theirs)
    assert info.value.fields == ["env.A", "replicas"]
