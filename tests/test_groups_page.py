"""The Groups page: admins create groups and change members and quota through forms (with the
CSRF token); members see usage against the quota; refused forms write nothing."""

from __future__ import annotations

import re
from pathlib import Path

from flask.testing import FlaskClient

from tests.apputil import create_group, make_app
from tests.gitutil import git, head


def csrf(client: FlaskClient, headers: dict[str, str] | None = None, path: str = "/groups") -> str:
    page = client.get(path, headers=headers or {}).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no form on the page"
    return match.group(1)


def form(**fields: str) -> dict[str, str]:
    return {
        "members": "alice, bob",
        "admins": "",
        "cpu": "2",
        "memory": "4Gi",
        "storage": "10Gi",
        "deployments": "5",
        "review": "",
    } | fields


def test_admin_edits_a_group_through_the_form(tmp_path: Path) -> None:
    client = make_app(tmp_path / "data").test_client()
    remote = tmp_path / "data" / "remote.git"
    create_group(client)
    token = csrf(client)
    response = client.post(
        "/groups/team-a/edit",
        data=form(csrf_token=token, members="alice, carol", cpu="6", review="pull-request"),
    )
    assert response.status_code == 302
    assert git(remote, "log", "-1", "--format=%an|%s").startswith(
        "admin|Update group team-a: members +carol; members -bob; quota cpu 2 -> 6; review"
    )
    page = client.get("/groups").get_data(as_text=True)
    assert "Updated group team-a" in page and "0 of 6" in page

    before = head(remote)
    refused = client.post("/groups/team-a/edit", data=form(csrf_token=token, deployments="many"))
    assert refused.status_code == 422
    assert "quota.deployments: must be a whole number" in refused.get_data(as_text=True)
    no_token = client.post("/groups/team-a/edit", data=form())
    assert no_token.status_code == 403
    assert head(remote) == before


def test_members_see_usage_and_no_admin_forms(tmp_path: Path) -> None:
    client = make_app(tmp_path / "data").test_client()
    create_group(client)
    alice = {"X-Forwarded-User": "alice"}
    page = client.get("/groups", headers=alice).get_data(as_text=True)
    assert 'data-name="team-a"' in page and 'data-name="demo"' not in page
    assert "Edit members and quota" not in page and "Create a group" not in page
    forged = csrf(client)  # an admin's token is not alice's (tokens are bound to the user)
    refused = client.post("/groups/team-a/edit", data=form(csrf_token=forged), headers=alice)
    assert refused.status_code == 403
    assert "did not come from this site" in refused.get_data(as_text=True)
    token = csrf(client, alice, "/deployments/new")  # her own does not make alice an admin
    denied = client.post("/groups/team-a/edit", data=form(csrf_token=token), headers=alice)
    assert denied.status_code == 403
    assert "only platform admins may change groups" in denied.get_data(as_text=True)
