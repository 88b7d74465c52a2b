"""The Groups page: admins create groups (with group admins, a review mode and the configured
default quota) and change members and quota through forms (with the CSRF token); members see
usage against the quota, with the headroom and the review mode; refused forms write nothing."""

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
    shown = refused.get_data(as_text=True)  # at the group's Deployments field
    assert 'aria-invalid="true" aria-describedby="e-team-a-deployments-error"' in shown
    assert (
        'id="e-team-a-deployments-error" data-field="quota.deployments">Must be a whole number'
        in shown
    )
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


def _create_form(page: str) -> str:
    start = page.index('action="/groups"')
    return page[start : page.index("</form>", start)]


def test_the_create_form_offers_review_mode_admins_and_the_default_quota(tmp_path: Path) -> None:
    client = make_app(tmp_path / "data").test_client()
    remote = tmp_path / "data" / "remote.git"
    created = _create_form(client.get("/groups").get_data(as_text=True))
    assert '<input name="admins"' in created and '<select name="review" id="g-review">' in created
    for name, value in (("cpu", "10"), ("memory", "20Gi"), ("storage", "50Gi")):
        assert f'<input name="{name}" value="{value}" id="g-{name}">' in created  # the spec's
    assert 'name="deployments" type="number" min="0" value="10"' in created
    assert "default: direct commits</option>" in created

    body = form(csrf_token=csrf(client), name="team-x", admins="alice", review="pull-request")
    response = client.post("/groups", data=body)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert git(remote, "log", "-1", "--format=%s").strip() == "Create group team-x"
    group = client.get("/api/v1/groups/team-x").json
    assert group is not None
    assert (group["admins"], group["review"]) == (["alice"], "pull-request")
    page = client.get("/groups").get_data(as_text=True)
    card = page[page.index('data-name="team-x"') :]
    review = re.search(r'data-field="review">(.*?)</dd>', card)
    assert review and review.group(1) == "pull requests (changes wait for review)"
    demo = page[page.index('data-name="demo"') :]
    review = re.search(r'data-field="review">(.*?)</dd>', demo)
    assert (
        review and "direct commits" in review.group(1) and "installation default" in review.group(1)
    )


def test_a_configured_default_quota_fills_the_create_form(tmp_path: Path) -> None:
    client = make_app(tmp_path / "data", default_quota={"cpu": "4", "memory": "8Gi"}).test_client()
    created = _create_form(client.get("/groups").get_data(as_text=True))
    for name, value in (("cpu", "4"), ("memory", "8Gi"), ("storage", "50Gi")):
        assert f'<input name="{name}" value="{value}" id="g-{name}">' in created
    refused = client.post("/groups", data=form(csrf_token=csrf(client), name="team-y", admins="-x"))
    assert refused.status_code == 422
    again = _create_form(refused.get_data(as_text=True))
    assert 'value="-x"' in again and "admins" in again  # shown again, with its message


def test_a_group_card_shows_usage_in_one_unit_rule_and_the_headroom(tmp_path: Path) -> None:
    client = make_app(tmp_path / "data").test_client()
    create_group(client)  # cpu 2, memory 4Gi, 5 deployments
    body = {"name": "web", "image": "registry:5000/team-a/web:1.0", "replicas": 2, "expose": True}
    body["resources"] = {"cpu": "150m", "memory": "100Mi"}
    alice = {"X-Forwarded-User": "alice"}
    assert client.post("/api/v1/groups/team-a/deployments", json=body, headers=alice).status_code
    page = client.get("/groups", headers=alice).get_data(as_text=True)

    def shown(field: str) -> str:
        found = re.search(rf'data-field="{field}">(.*?)</dd>', page)
        assert found, field
        return re.sub(r"<[^>]+>", "", found.group(1))

    # (2 replicas + 1 surge pod) x (150m + frpc 10m), x (100Mi + 32Mi)
    assert shown("cpu") == "480m of 2 cores · 1.5 cores free"
    assert shown("memory") == "396Mi of 4Gi · 3.6Gi free"
    assert shown("deployments") == "1 of 5 · 4 left"
    assert "up to 2\N{MULTIPLICATION SIGN} its request (its limit)" in page
