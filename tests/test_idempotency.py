"""Idempotency keys are bound to their principal and to one request (action, target, body):
a key reused on another deployment is refused and changes nothing, a replay is answered only
to someone who may still see the result, a retried restart is the same request, and in review
mode one key makes one change request. Real app, real Git remote."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.apputil import TEAM_A, create_group, deploy, make_app
from tests.gitutil import files, git, head

ALICE = {"X-Forwarded-User": "alice"}


def _keyed(key: str, who: dict[str, str] = ALICE) -> dict[str, str]:
    return who | {"Idempotency-Key": key}


def test_a_key_reused_on_another_deployment_is_refused(remote: Path, tmp_path: Path) -> None:
    client = make_app(tmp_path / "data").test_client()
    create_group(client)
    first, second = deploy(client, "a"), deploy(client, "b")
    assert client.delete(f"/api/v1/deployments/{first}", headers=_keyed("k1")).status_code == 200
    before = head(remote)
    again = client.delete(f"/api/v1/deployments/{second}", headers=_keyed("k1"))
    assert again.status_code == 422 and "Idempotency-Key" in again.json["message"]
    assert head(remote) == before and f"tenants/team-a/apps/{second}.yaml" in files(remote)
    # the same request again is answered with its first result
    replay = client.delete(f"/api/v1/deployments/{first}", headers=_keyed("k1"))
    assert replay.status_code in (200, 404)
    assert head(remote) == before


def test_a_retried_restart_is_the_same_request(tmp_path: Path, remote: Path) -> None:
    app = make_app(tmp_path / "data")
    client = app.test_client()
    create_group(client)
    name = deploy(client)
    # each retry comes a minute later: the restart stamp differs, the request does not
    minutes = iter(range(60))
    app.extensions["gitops_bridge"].clock = lambda: datetime(
        2026, 1, 1, 12, next(minutes), tzinfo=UTC
    )
    answers = [
        client.post(f"/api/v1/deployments/{name}/restart", json={}, headers=_keyed("r1"))
        for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.json for a in answers]
    assert (
        len({a.json["commit"] for a in answers})
        == 1
        == len(git(remote, "log", "--format=%H", f"{answers[0].json['commit']}~1..main").split())
    )


def test_a_replay_is_answered_only_to_who_may_still_see_it(tmp_path: Path, remote: Path) -> None:
    client = make_app(tmp_path / "data").test_client()
    create_group(client)
    body = {
        "name": "web",
        "image": "registry:5000/team-a/web:1",
        "env": [{"name": "S", "value": "x1"}],
    }
    first = client.post("/api/v1/groups/team-a/deployments", json=body, headers=_keyed("c1"))
    assert first.status_code == 201
    removed = client.patch("/api/v1/groups/team-a", json={"members": ["bob"]})  # as the admin
    assert removed.status_code == 200
    replay = client.post("/api/v1/groups/team-a/deployments", json=body, headers=_keyed("c1"))
    assert replay.status_code in (403, 404) and "x1" not in replay.get_data(as_text=True)


def test_one_key_makes_one_change_request_in_review_mode(tmp_path: Path, remote: Path) -> None:
    client = make_app(tmp_path / "data", review={"mode": "pull-request"}).test_client()
    create_group(client, TEAM_A)
    body = {"name": "web", "image": "registry:5000/team-a/web:1"}
    answers = [
        client.post("/api/v1/groups/team-a/deployments", json=body, headers=_keyed("p1"))
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [202, 202], [a.json for a in answers]
    assert answers[0].json["change"]["id"] == answers[1].json["change"]["id"]
    branches = git(remote, "for-each-ref", "--format=%(refname)", "refs/heads/changes/").split()
    assert len(branches) == 1
