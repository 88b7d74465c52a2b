"""GET /api/v1/deployments?deleted=1 lists the deployments deleted from main whose name is not
back, each once at its newest deletion, newest first, with who deleted it, when, and the
commit of its last version that restore takes; the bridge's deletes and files removed by
hand in Git alike; only to members of the group; a page at a time, every one exactly once;
within a window of recent deletions, walked again only for the commits since."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gitops_bridge import deletions, sops
from tests.apputil import TEAM_A, as_user, create_group, deploy, make_app, web
from tests.bridgeutil import edit_by_hand
from tests.gitutil import git, head, show

API = "/api/v1"
ALICE, BOB, CAROL, EVE = as_user("alice"), as_user("bob"), as_user("carol"), as_user("eve")
ADMIN = as_user("admin")
TEAM_B = {"name": "team-b", "members": ["carol"], "quota": TEAM_A["quota"]}


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    create_group(client)
    create_group(client, TEAM_B)
    return client


def deleted(client: FlaskClient, who: dict[str, str] = ALICE, query: str = "") -> list[Any]:
    response = client.get(f"{API}/deployments?deleted=1{query}", headers=who)
    assert response.status_code == 200, response.json
    items: list[Any] = response.json
    return items


def delete(client: FlaskClient, name: str, who: dict[str, str] = ALICE) -> str:
    response = client.delete(f"{API}/deployments/{name}", headers=who)
    assert response.status_code == 200, response.json
    commit: str = response.json["commit"]
    return commit


def restore(client: FlaskClient, name: str, commit: str, who: dict[str, str] = ALICE) -> Any:
    return client.post(f"{API}/deployments/{name}/restore", json={"commit": commit}, headers=who)


def test_delete_two_restore_one_lists_exactly_the_other(client: FlaskClient, remote: Path) -> None:
    web_name = deploy(client, "web", replicas=2)
    api_name = deploy(client, "api")
    scaled = client.post(f"{API}/deployments/{api_name}/scale", json={"replicas": 3}, headers=BOB)
    assert scaled.status_code == 200, scaled.json
    before = int(time.time())
    web_deleted = delete(client, web_name)
    api_deleted = delete(client, api_name, BOB)
    assert deleted(client, CAROL) == []  # not in team-a
    items = deleted(client)
    assert [item["name"] for item in items] == [api_name, web_name]  # newest first
    assert items[0] == {
        "name": api_name,
        "group": "team-a",
        "app": "api",
        "image": "registry:5000/team-a/web:1.0",
        "replicas": 3,
        "deletedBy": "bob",
        "deletedAt": items[0]["deletedAt"],
        "deleteCommit": api_deleted,
        "restoreCommit": scaled.json["commit"],  # the last version: the scale, not the create
        "problem": None,
    }
    assert before <= items[0]["deletedAt"] <= time.time() + 1
    assert items[1]["deleteCommit"] == web_deleted and items[1]["replicas"] == 2
    assert items[1]["deletedBy"] == "alice"
    # the listing's commit is one restore takes: the deployment comes back as it was
    content = show(remote, f"tenants/team-a/apps/{web_name}.yaml", f"{web_deleted}~1")
    restored = restore(client, web_name, items[1]["restoreCommit"], BOB)
    assert restored.status_code == 200, restored.json
    assert show(remote, f"tenants/team-a/apps/{web_name}.yaml") == content
    assert [item["name"] for item in deleted(client)] == [api_name]
    assert [item["name"] for item in deleted(client, query="&group=team-a")] == [api_name]


def test_a_deletion_by_hand_shows_with_its_author(tmp_path: Path) -> None:
    client = make_app(tmp_path / "data", fetch_interval=0).test_client()  # a push shows at once
    create_group(client)
    remote = tmp_path / "data" / "remote.git"
    name = deploy(client, "web")
    path = f"tenants/team-a/apps/{name}.yaml"
    created = head(remote)
    commit = edit_by_hand(remote, tmp_path, {path: None}, "Clean up by hand")
    (item,) = deleted(client)
    assert item["name"] == name and item["deletedBy"] == "Hand"
    assert item["deleteCommit"] == commit and item["restoreCommit"] == created
    assert item["image"] == "registry:5000/team-a/web:1.0" and item["replicas"] == 1
    restored = restore(client, name, item["restoreCommit"])
    assert restored.status_code == 200, restored.json
    assert deleted(client) == []


def test_a_name_deleted_twice_shows_once_at_its_newest_deletion(client: FlaskClient) -> None:
    name = deploy(client, "web")
    first = delete(client, name)
    (item,) = deleted(client)
    assert restore(client, name, item["restoreCommit"]).status_code == 200
    assert deleted(client) == []  # back on main: not deleted
    second = delete(client, name, BOB)
    (item,) = deleted(client)
    assert (item["deleteCommit"], item["deletedBy"]) == (second, "bob")
    assert item["deleteCommit"] != first


def test_the_secret_values_file_deleted_with_it_is_no_deployment(tmp_path: Path) -> None:
    client = make_app(
        tmp_path / "data", secrets={"age_recipients": [sops.public_key(sops.generate_identity())]}
    ).test_client()
    create_group(client)
    name = deploy(client, "web", env=[{"name": "TOKEN", "value": "s3cret", "secret": True}])
    remote = tmp_path / "data" / "remote.git"
    assert f"tenants/team-a/apps/{name}.secret.yaml" in git(remote, "ls-tree", "-r", "main")
    delete(client, name)
    assert [item["name"] for item in deleted(client)] == [name]


def test_only_members_see_a_group_s_deleted_deployments(client: FlaskClient) -> None:
    mine = deploy(client, "web")
    response = client.post(
        f"{API}/groups/team-b/deployments",
        json=web("db", image="registry:5000/team-b/db:1"),
        headers=CAROL,
    )
    assert response.status_code == 201, response.json
    theirs = response.json["name"]
    delete(client, mine)
    delete(client, theirs, CAROL)
    assert [item["name"] for item in deleted(client)] == [mine]
    assert [item["name"] for item in deleted(client, CAROL)] == [theirs]
    assert deleted(client, EVE) == []
    assert {item["name"] for item in deleted(client, ADMIN)} == {mine, theirs}
    # a group that is not the caller's is answered as one that does not exist
    hidden = client.get(f"{API}/deployments?deleted=1&group=team-a", headers=CAROL)
    missing = client.get(f"{API}/deployments?deleted=1&group=team-q", headers=CAROL)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json["message"].replace("team-a", "X") == missing.json["message"].replace(
        "team-q", "X"
    )
    # nor can a non-member restore what the listing would name
    item = deleted(client)[0]
    assert restore(client, mine, item["restoreCommit"], CAROL).status_code == 404


def _walk(client: FlaskClient, query: str) -> tuple[list[Any], int]:
    """Every page from the first, following the Link headers: the items and the pages."""
    url: str | None = f"{API}/deployments?deleted=1{query}"
    items: list[Any] = []
    pages = 0
    while url is not None:
        response = client.get(url, headers=ALICE)
        assert response.status_code == 200, response.json
        items += response.json
        pages += 1
        link = response.headers.get("Link")
        if link is None:
            url = None
        else:
            url = link.split(";")[0].strip("<>")
            args = parse_qs(urlsplit(url).query)
            assert args["deleted"] == ["1"] and args["limit"] == ["3"]
    return items, pages


def test_pages_walk_every_deleted_deployment_exactly_once(client: FlaskClient) -> None:
    names, commits = [], []
    for n in range(7):  # more than the group's quota of 5 at once: each deleted in turn
        names.append(deploy(client, f"app{n}"))
        commits.append(delete(client, names[-1]))
    items, pages = _walk(client, "&limit=3")
    assert pages == 3
    assert [item["name"] for item in items] == list(reversed(names))
    assert [item["deleteCommit"] for item in items] == list(reversed(commits))
    times = [item["deletedAt"] for item in items]
    assert times == sorted(times, reverse=True)
    # the deployment a cursor names is restored between pages: the next page goes on
    first = client.get(f"{API}/deployments?deleted=1&limit=3", headers=ALICE)
    last = first.json[-1]
    assert restore(client, last["name"], last["restoreCommit"]).status_code == 200
    rest = client.get(first.headers["Link"].split(";")[0].strip("<>"), headers=ALICE).json
    assert [item["name"] for item in first.json + rest][:6] == [i["name"] for i in items][:6]
    # a group's pages, the same way
    again, _ = _walk(client, "&group=team-a&limit=3")
    assert len(again) == 6 and last["name"] not in {item["name"] for item in again}


def test_the_page_is_tagged_and_the_arguments_are_checked(client: FlaskClient) -> None:
    delete(client, deploy(client, "web"))
    first = client.get(f"{API}/deployments?deleted=1", headers=ALICE)
    etag = first.headers["ETag"]
    again = client.get(f"{API}/deployments?deleted=1", headers=ALICE | {"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    for query, field in (
        ("deleted=yes", "deleted"),
        ("deleted=1&state=running", "state"),
        ("deleted=1&owner=alice", "owner"),
        ("deleted=1&q=web", "q"),
        ("deleted=1&limit=0", "limit"),
        ("deleted=1&after=bm9wZQ", "after"),
    ):
        response = client.get(f"{API}/deployments?{query}", headers=ALICE)
        assert response.status_code == 422, (query, response.json)
        assert response.json["problems"][0]["field"] == field
    assert client.get(f"{API}/deployments?deleted=0", headers=ALICE).json == []  # on main


def test_the_window_holds_the_newest_deletions_only(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deletions, "WINDOW", 3)
    names = [deploy(client, f"app{n}") for n in range(5)]
    for name in names:
        delete(client, name)
    assert [item["name"] for item in deleted(client)] == list(reversed(names))[:3]
    # older than DAYS: gone from view (still in the history, still restorable from there)
    svc = app.extensions["gitops_bridge"]
    later = datetime.now(UTC) + timedelta(days=deletions.DAYS + 1)
    monkeypatch.setattr(svc, "clock", lambda: later)
    assert deleted(client) == []


def test_a_newer_main_walks_only_the_commits_since(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = deploy(client, "web")
    delete(client, first)
    assert len(deleted(client)) == 1
    svc = app.extensions["gitops_bridge"]
    walks: list[str | None] = []
    real = svc.repo.deletions

    def counted(paths: list[str], **kwargs: Any) -> Any:
        walks.append(kwargs.get("base"))
        return real(paths, **kwargs)

    monkeypatch.setattr(svc.repo, "deletions", counted)
    seen = head(app.extensions["gitops_bridge.settings"].embedded_remote)
    second = deploy(client, "api")
    delete(client, second)
    assert [item["name"] for item in deleted(client)] == [second, first]
    assert walks == [seen]  # from the main seen before, not from the first commit
    deleted(client)
    assert walks == [seen]  # the same main: nothing walked
