"""Who is asking: people from the proxy's headers, machines from API tokens; names are
normalised once at the edge, and a token never borrows a person's name or memberships."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gitops_bridge import config
from tests.apputil import TEAM_A, make_app, web
from tests.gitutil import git

PROXY = {"REMOTE_ADDR": "10.1.2.7"}
ANYWHERE = {"REMOTE_ADDR": "203.0.113.9"}  # not a trusted proxy: tokens work from anywhere


def digest(token: str) -> str:
    """What `gitops-bridge token new` configures: the token's SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


TOKENS: dict[str, Any] = {
    "ci": {"sha256": digest("gb_ci"), "groups": ["team-a"]},
    "alice": {"sha256": digest("gb_alice"), "groups": []},  # named like a member of team-a
    "root": {"sha256": digest("gb_root")},  # named like a platform admin, admin: false
    "Ops": {"sha256": digest("gb_ops"), "groups": ["Team-A"]},
}


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    app = make_app(
        tmp_path / "data",
        identity="proxy",
        trusted_proxies=["10.1.2.0/24"],
        admins=["root"],
        api_tokens=TOKENS,
        demo_group=False,
    )
    client = app.test_client()
    created = person(client, "POST", "/api/v1/groups", "root", json=TEAM_A)
    assert created.status_code == 201, created.json
    return client


def person(
    client: FlaskClient, method: str, path: str, user: str, groups: str = "", **kwargs: Any
) -> Any:
    headers = {"X-Forwarded-User": user} | ({"X-Forwarded-Groups": groups} if groups else {})
    headers |= kwargs.pop("headers", {})
    return client.open(path, method=method, headers=headers, environ_base=PROXY, **kwargs)


def machine(client: FlaskClient, method: str, path: str, token: str, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    return client.open(path, method=method, headers=headers, environ_base=ANYWHERE, **kwargs)


def test_a_token_named_like_a_user_gets_none_of_their_memberships(client: FlaskClient) -> None:
    assert person(client, "GET", "/api/v1/groups", "alice").json[0]["name"] == "team-a"
    assert machine(client, "GET", "/api/v1/groups", "gb_alice").json == []
    refused = machine(client, "POST", "/api/v1/groups/team-a/deployments", "gb_alice", json=web())
    assert refused.status_code == 404, refused.json


def test_a_token_named_like_an_admin_is_no_admin(client: FlaskClient) -> None:
    body = {**TEAM_A, "name": "team-z"}
    refused = machine(client, "POST", "/api/v1/groups", "gb_root", json=body)
    assert refused.status_code == 403, refused.json
    assert machine(client, "GET", "/api/v1/groups", "gb_root").json == []
    # the person root (an admin by the `admins` setting) still is one
    assert person(client, "POST", "/api/v1/groups", "root", json=body).status_code == 201


def test_tokens_act_as_themselves_within_their_scope(client: FlaskClient, tmp_path: Path) -> None:
    created = machine(client, "POST", "/api/v1/groups/team-a/deployments", "gb_ci", json=web())
    assert created.status_code == 201, created.json
    assert created.json["owner"] == "token:ci"
    author = git(tmp_path / "data" / "remote.git", "log", "-1", "--format=%an")
    assert author == "token:ci"
    # a person cannot be named like a token, so no member list can name one
    refused = person(
        client, "PATCH", "/api/v1/groups/team-a", "root", json={"members": ["token:ci"]}
    )
    assert refused.status_code == 422
    # its groups are its whole scope, its names folded like everyone's
    ops = machine(client, "GET", "/api/v1/groups/team-a/deployments", "gb_ops")
    assert ops.status_code == 200 and [d["owner"] for d in ops.json] == ["token:ci"]
    body = {**TEAM_A, "name": "team-o"}
    assert machine(client, "POST", "/api/v1/groups", "gb_ops", json=body).status_code == 403


def test_names_are_folded_once_at_the_edge(client: FlaskClient) -> None:
    settings = config.load(admins=["Root"], admin_group="Platform-Admins", api_tokens=TOKENS)
    assert settings.admins == ["root"] and settings.admin_group == "platform-admins"
    assert settings.api_tokens["ops"].groups == ["team-a"]
    patched = person(
        client, "PATCH", "/api/v1/groups/team-a", "ROOT", json={"members": ["Rita", "alice"]}
    )
    assert patched.status_code == 200, patched.json
    assert patched.json["members"] == ["rita", "alice"]
    created = person(client, "POST", "/api/v1/groups/team-a/deployments", "RITA", json=web())
    assert created.status_code == 201 and created.json["owner"] == "rita"
    by_group = person(client, "GET", "/api/v1/groups", "carol", groups="Team-A")
    assert [g["name"] for g in by_group.json] == ["team-a"]
    admin = person(
        client,
        "POST",
        "/api/v1/groups",
        "dora",
        groups="Platform-Admins",
        json={**TEAM_A, "name": "team-d"},
    )
    assert admin.status_code == 201, admin.json


def test_nobody_approves_their_own_change_by_spelling_their_name_differently(
    client: FlaskClient,
) -> None:
    person(client, "PATCH", "/api/v1/groups/team-a", "root", json={"review": "pull-request"})
    proposed = person(
        client, "POST", "/api/v1/groups/team-a/deployments", "rita", "team-a", json=web()
    )
    assert proposed.status_code == 202, proposed.json
    change = proposed.json["change"]["id"]
    own = person(client, "POST", f"/api/v1/changes/{change}/approve", "Rita", "team-a", json={})
    assert own.status_code == 403, own.json
    assert "another member must approve it" in own.json["message"]


@pytest.mark.parametrize("header", ["X-Forwarded-User", "X-Forwarded-Groups"])
def test_identity_headers_sent_twice_are_refused(client: FlaskClient, header: str) -> None:
    first = {"X-Forwarded-User": "alice", "X-Forwarded-Groups": "team-a"}
    headers = [*first.items(), (header, "platform-admins" if "Groups" in header else "root")]
    response = client.get("/api/v1/groups", headers=headers, environ_base=PROXY)
    assert response.status_code == 400, response.json
    assert f"{header}: sent more than once" in response.json["message"]
    # one header with a list is fine
    listed = person(client, "GET", "/api/v1/groups", "alice", groups="team-a,team-b")
    assert listed.status_code == 200
