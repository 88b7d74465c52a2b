"""GET /api/v1/deployments (and a group's listing) a page at a time: following the Link
header visits every deployment exactly once, by group, app and id, also when deployments are
created between pages and while other threads create and delete them; the group, owner,
state and text filters hold across pages and never show a caller anything of a group that
is not theirs; limit, state and cursor are checked (422 naming the field); the last page has
no Link; ETag and If-None-Match answer 304 until the page changes."""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gitops_bridge.models import Deployment
from gitops_bridge.monitor import Monitor
from gitops_bridge.status import DeploymentStatus
from tests.apputil import as_user, web

API = "/api/v1"
QUOTA = {"cpu": "50", "memory": "100Gi", "deployments": 50}
ALICE, BOB, CAROL = as_user("alice"), as_user("bob"), as_user("carol")


def _group(client: FlaskClient, name: str, members: list[str]) -> None:
    body = {"name": name, "members": members, "quota": QUOTA}
    assert client.post(f"{API}/groups", json=body).status_code == 201


def _deploy(client: FlaskClient, group: str, app: str, who: dict[str, str], **fields: Any) -> str:
    body = web(app, **{"image": f"registry:5000/{group}/app:1.0"} | fields)
    response = client.post(f"{API}/groups/{group}/deployments", json=body, headers=who)
    assert response.status_code == 201, response.json
    name: str = response.json["name"]
    return name


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """team-a (alice, bob): web x4, api x3, worker x2 by alice, cache x2 by bob; team-b
    (carol): web x3, db."""
    client = app.test_client()
    _group(client, "team-a", ["alice", "bob"])
    _group(client, "team-b", ["carol"])
    for app_name, count, who in (("web", 4, ALICE), ("api", 3, ALICE), ("worker", 2, ALICE)):
        for n in range(count):
            _deploy(client, "team-a", f"{app_name}{n or ''}", who)
    for n in range(2):
        _deploy(client, "team-a", f"cache{n}", BOB, image="registry:5000/team-a/redis:7")
    for n in range(3):
        _deploy(client, "team-b", f"web{n}", CAROL)
    _deploy(client, "team-b", "db", CAROL)
    return client


def _next(response: Any) -> str | None:
    found = re.fullmatch(r'<([^>]+)>; rel="next"', response.headers.get("Link", ""))
    return found.group(1) if found else None


def _walk(client: FlaskClient, url: str, who: dict[str, str] | None = None) -> list[list[str]]:
    """The names of each page, following the Link header from ``url``."""
    pages: list[list[str]] = []
    next_url: str | None = url
    while next_url is not None:
        response = client.get(next_url, headers=who or {})
        assert response.status_code == 200, response.json
        pages.append([item["name"] for item in response.json])
        next_url = _next(response)
        assert len(pages) < 50
    return pages


def _order(client: FlaskClient, who: dict[str, str] | None = None) -> list[str]:
    items = client.get(f"{API}/deployments?limit=500", headers=who or {}).json
    keys = [(item["group"], item["app"], item["id"]) for item in items]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    return [item["name"] for item in items]


def test_pages_visit_every_deployment_once_in_order_and_the_last_has_no_link(
    client: FlaskClient,
) -> None:
    everything = _order(client)
    assert len(everything) == 15
    pages = _walk(client, f"{API}/deployments?limit=4")
    assert [len(page) for page in pages] == [4, 4, 4, 3]
    assert [name for page in pages for name in page] == everything
    exact = _walk(client, f"{API}/deployments?limit=5")  # a full last page: no empty one after
    assert [len(page) for page in exact] == [5, 5, 5]
    assert _walk(client, f"{API}/deployments") == [everything]  # 100 by default
    group = _walk(client, f"{API}/groups/team-b/deployments?limit=3")
    assert [name for page in group for name in page] == everything[-4:]
    assert [len(page) for page in group] == [3, 1]


def test_deployments_created_between_pages_never_repeat_or_hide_others(
    client: FlaskClient,
) -> None:
    before = _order(client)
    first = client.get(f"{API}/deployments?limit=6")
    seen = [item["name"] for item in first.json]
    early = _deploy(client, "team-a", "aaa", ALICE)  # sorts before the cursor: not on later pages
    late = _deploy(client, "team-b", "zzz", CAROL)  # after it: on a later page
    rest = _walk(client, str(_next(first)))
    seen += [name for page in rest for name in page]
    assert len(seen) == len(set(seen))
    assert set(seen) == set(before) | {late} and early not in seen


def test_walks_during_concurrent_creates_and_deletes_list_each_deployment_exactly_once(
    client: FlaskClient, app: Flask
) -> None:
    """Two writers create deployments sorting before, among and after the existing ones (and
    delete some of their own) while a reader walks the list two at a time, again and again:
    every walk lists each deployment that was there before it and still is exactly once,
    nothing twice, and nothing that never existed."""
    before = set(_order(client))
    created: list[str] = []
    deleted: list[str] = []
    failures: list[str] = []
    started = threading.Event()

    def write(group: str, who: dict[str, str], tag: str) -> None:
        writer = app.test_client()
        mine: list[str] = []
        try:
            for n in range(6):
                for prefix in ("a", "m", "z"):
                    mine.append(_deploy(writer, group, f"{prefix}{tag}{n}", who))
                    created.append(mine[-1])
                    started.set()
                if n % 2:  # one of its own goes again
                    gone = writer.delete(f"{API}/deployments/{mine[-2]}", headers=who)
                    if gone.status_code != 200:
                        failures.append(f"delete {mine[-2]}: {gone.status_code} {gone.json}")
                    deleted.append(mine[-2])
        except AssertionError as exc:
            failures.append(f"create in {group}: {exc}")
        finally:
            started.set()

    writers = [
        threading.Thread(target=write, args=("team-a", ALICE, "x")),
        threading.Thread(target=write, args=("team-b", CAROL, "y")),
    ]
    for thread in writers:
        thread.start()
    started.wait(timeout=60)
    walks: list[list[str]] = []
    overlapped = 0
    while any(thread.is_alive() for thread in writers) or not walks:
        during = len(created) + len(deleted)
        seen = [name for page in _walk(client, f"{API}/deployments?limit=2") for name in page]
        walks.append(seen)
        overlapped += len(created) + len(deleted) != during
        assert len(seen) == len(set(seen)), f"listed twice: {sorted(seen)}"
        assert before <= set(seen), f"missing: {sorted(before - set(seen))}"
    for thread in writers:
        thread.join(timeout=60)
    assert failures == []
    for seen in walks:  # a create is listed as soon as it is on main, before its answer
        assert set(seen) <= before | set(created), f"never created: {set(seen) - before}"
    assert overlapped > 0, "no walk ran while deployments were created or deleted"
    assert set(_order(client)) == before | (set(created) - set(deleted))
    assert len(created) == 36 and len(deleted) == 6


def test_filters_group_owner_state_and_text_hold_across_pages(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = client.get(f"{API}/deployments?limit=500").json

    def names(group: str = "", app: str = "", owner: str = "") -> list[str]:
        return [
            i["name"]
            for i in everything
            if group in i["group"] and app in i["app"] and owner in i["owner"]
        ]

    def flat(url: str) -> list[str]:
        return [name for page in _walk(client, url) for name in page]

    assert flat(f"{API}/deployments?group=team-a&limit=2") == names(group="team-a")
    assert flat(f"{API}/deployments?owner=bob&limit=1") == names(owner="bob")
    assert flat(f"{API}/deployments?group=team-b&owner=carol&limit=2") == names(group="team-b")
    assert flat(f"{API}/deployments?owner=nobody") == []
    # text: in the name, app or image, any case
    assert flat(f"{API}/deployments?q=WEB&limit=2") == names(app="web")
    assert flat(f"{API}/deployments?q=REDIS&limit=1") == names(app="cache")
    one = names(app="db")[0]
    assert flat(f"{API}/deployments?q={one[-6:]}") == [one]
    assert flat(f"{API}/groups/team-a/deployments?q=web&limit=3") == names(
        group="team-a", app="web"
    )
    # state: the status each deployment shows (a monitor that says web fails)
    monitor: Monitor = app.extensions["gitops_bridge.monitor"]
    calls: list[str] = []

    def status(deployment: Deployment, **_: Any) -> DeploymentStatus:
        calls.append(deployment.name)
        state = "failed" if "web" in deployment.app else "running"
        return DeploymentStatus(state=state, label=state)

    monkeypatch.setattr(monitor, "status", status)
    assert flat(f"{API}/deployments?state=failed&limit=3") == names(app="web")
    running = [n for n in names() if n not in names(app="web")]
    assert flat(f"{API}/deployments?state=running&limit=4") == running
    assert flat(f"{API}/deployments?state=failed&group=team-b&q=WE") == names(
        group="team-b", app="web"
    )
    assert flat(f"{API}/deployments?state=deleting") == []
    # without a state filter, live status is computed for the page's deployments only
    calls.clear()
    page = client.get(f"{API}/deployments?limit=3").json
    assert sorted(calls) == sorted(item["name"] for item in page)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),  # an integer parameter given empty is not "the default"
        ("state=sleeping", "state"),
        ("after=not%20a%20cursor", "after"),
        ("after=bm90LWpzb24", "after"),  # base64 of something not a cursor
        ("q=" + "x" * 201, "q"),
    ],
)
def test_limit_state_cursor_and_text_out_of_bounds_are_422_naming_the_field(
    client: FlaskClient, query: str, field: str
) -> None:
    for path in (f"{API}/deployments", f"{API}/groups/team-a/deployments"):
        response = client.get(f"{path}?{query}")
        assert response.status_code == 422, (path, query)
        assert [p["field"] for p in response.json["problems"]] == [field], response.json


def test_the_largest_page_is_accepted(client: FlaskClient) -> None:
    response = client.get(f"{API}/deployments?limit=500")
    assert response.status_code == 200 and len(response.json) == 15
    assert "Link" not in response.headers


def test_etag_answers_304_until_the_page_changes(client: FlaskClient) -> None:
    url = f"{API}/deployments?group=team-a&limit=3"
    first = client.get(url)
    tag = first.headers["ETag"]
    assert tag.startswith('"') and first.headers["Link"]
    again = client.get(url, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.get_data() == b""
    assert again.headers["ETag"] == tag and again.headers["Link"] == first.headers["Link"]
    weak = client.get(url, headers={"If-None-Match": f'"other", W/{tag}'})
    assert weak.status_code == 304
    assert client.get(url, headers={"If-None-Match": "*"}).status_code == 200
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    # another page has another tag
    second = client.get(str(_next(first)))
    assert second.headers["ETag"] != tag
    # a change to a deployment on the page: a new tag and the new content
    name = first.json[0]["name"]
    scaled = client.post(f"{API}/deployments/{name}/scale", json={"replicas": 3})
    assert scaled.status_code == 200, scaled.json
    changed = client.get(url, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["ETag"] != tag
    assert changed.json[0]["replicas"] == 3


def test_a_non_member_sees_nothing_of_other_groups_through_filters(
    client: FlaskClient,
) -> None:
    theirs = set(_order(client, CAROL))
    assert theirs == {n for n in _order(client) if n in theirs} and len(theirs) == 4
    for query in ("q=web", "owner=alice", "owner=bob", "state=not%20connected", "q=api", ""):
        listed = [
            n for page in _walk(client, f"{API}/deployments?{query}&limit=2", CAROL) for n in page
        ]
        assert set(listed) <= theirs, query
    for url in (f"{API}/deployments?group=team-a", f"{API}/groups/team-a/deployments?q=web"):
        response = client.get(url, headers=CAROL)
        assert response.status_code in (403, 404) and "web-" not in response.get_data(True)
    # a cursor is no way in: one naming team-a's place still lists only team-b's
    after = client.get(f"{API}/deployments?limit=1&group=team-a")
    cursor = parse_qs(urlsplit(str(_next(after))).query)["after"][0]
    listed = client.get(f"{API}/deployments?after={cursor}", headers=CAROL).json
    assert {item["name"] for item in listed} == theirs
