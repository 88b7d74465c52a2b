"""The Deployments page stays one page whatever the caller may see: several groups with more
deployments than a page of cards show a group overview (rows link to each group, a page of
rows at a time); a group's cards come a page at a time with Previous/Next and filters that
round-trip; members see rows and cards of their own groups only; the live refresh asks for
the page it shows, and the overview's rows answer 304 until one of them changes."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gitops_bridge.webapp import listing_pages
from tests.apputil import as_user, web

API = "/api/v1"
QUOTA = {"cpu": "50", "memory": "100Gi", "deployments": 50}
ALICE, BOB, CAROL, MALLORY = (as_user(n) for n in ("alice", "bob", "carol", "mallory"))


class Page:
    """A rendered page as the tests read it."""

    def __init__(self, response: Any) -> None:
        self.status: int = response.status_code
        self.text: str = response.get_data(as_text=True)

    def rows(self) -> list[str]:
        return re.findall(r'data-testid="group-row" data-name="([^"]+)"', self.text)

    def cards(self) -> list[str]:
        return re.findall(r'data-testid="deployment-card" data-name="([^"]+)"', self.text)

    def link(self, rel: str) -> str | None:
        found = re.search(rf'<a href="([^"]+)" rel="{rel}"', self.text)
        return html.unescape(found.group(1)) if found else None

    def attribute(self, name: str) -> str:
        found = re.search(rf'{name}="([^"]+)"', self.text)
        assert found, f"no {name} on the page"
        return html.unescape(found.group(1))


@pytest.fixture
def client(app: Flask, monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    """Pages of 3 cards and of 2 overview rows. demo (empty); team-a (alice, bob): web x2
    and api by alice, cache by bob; team-b (alice, carol): web x2; team-c (carol): db."""
    monkeypatch.setattr(listing_pages, "CARDS", 3)
    monkeypatch.setattr(listing_pages, "ROWS", 2)
    client = app.test_client()
    for name, members in (("team-a", ["alice", "bob"]), ("team-b", ["alice", "carol"])):
        body = {"name": name, "members": members, "quota": QUOTA}
        assert client.post(f"{API}/groups", json=body).status_code == 201
    body = {"name": "team-c", "members": ["carol"], "quota": QUOTA}
    assert client.post(f"{API}/groups", json=body).status_code == 201
    for group, app_name, who in (
        ("team-a", "web", ALICE),
        ("team-a", "web1", ALICE),
        ("team-a", "api", ALICE),
        ("team-a", "cache", BOB),
        ("team-b", "web", CAROL),
        ("team-b", "web1", CAROL),
        ("team-c", "db", CAROL),
    ):
        _deploy(client, group, app_name, who)
    return client


def _deploy(client: FlaskClient, group: str, app_name: str, who: dict[str, str]) -> str:
    body = web(app_name, image=f"registry:5000/{group}/{app_name}:1.0")
    response = client.post(f"{API}/groups/{group}/deployments", json=body, headers=who)
    assert response.status_code == 201, response.json
    name: str = response.json["name"]
    return name


def _names(client: FlaskClient, group: str, who: dict[str, str] | None = None) -> list[str]:
    items = client.get(f"{API}/groups/{group}/deployments", headers=who or {}).json
    return [item["name"] for item in items]


def _get(client: FlaskClient, url: str, who: dict[str, str] | None = None) -> Page:
    page = Page(client.get(url, headers=who or {}))
    assert page.status == 200, page.text[:300]
    return page


def test_the_admin_gets_a_group_overview_a_page_of_rows_at_a_time(client: FlaskClient) -> None:
    first = _get(client, "/deployments")
    assert first.rows() == ["demo", "team-a"] and first.cards() == []
    assert 'data-testid="group-overview"' in first.text
    assert "7 deployments in 4 groups" in first.text
    assert 'href="/deployments?group=team-a">team-a</a>' in first.text
    assert 'data-name="team-a">' in first.text and "4 of 50" in first.text
    assert "data-live=" not in first.text  # no cards: nothing of the API to refresh
    assert first.link("prev") is None
    second = _get(client, str(first.link("next")))
    assert second.rows() == ["team-b", "team-c"] and second.link("next") is None
    assert _get(client, str(second.link("prev"))).rows() == first.rows()


def test_a_group_link_shows_exactly_its_cards_a_page_at_a_time(client: FlaskClient) -> None:
    everything = _names(client, "team-a")
    assert len(everything) == 4
    first = _get(client, "/deployments?group=team-a")
    assert first.rows() == [] and first.cards() == everything[:3]
    assert first.link("prev") is None
    second = _get(client, str(first.link("next")))
    assert second.cards() == everything[3:] and second.link("next") is None
    assert _get(client, str(second.link("prev"))).cards() == everything[:3]
    # the live refresh asks the API for exactly the page shown
    for page in (first, second):
        live = client.get(page.attribute("data-live"))
        assert [item["name"] for item in live.json] == page.cards()
        assert "limit=3" in page.attribute("data-live")


def test_previous_and_next_walk_the_same_pages_both_ways(client: FlaskClient) -> None:
    forward = [_get(client, "/deployments?q=registry")]  # every image: all 7, 3 a page
    while (link := forward[-1].link("next")) is not None:
        forward.append(_get(client, link))
    assert [len(page.cards()) for page in forward] == [3, 3, 1]
    assert [name for page in forward for name in page.cards()] == [
        name for group in ("team-a", "team-b", "team-c") for name in _names(client, group)
    ]
    backward = [forward[-1]]
    while (link := backward[-1].link("prev")) is not None:
        backward.append(_get(client, link))
    assert [page.cards() for page in reversed(backward)] == [page.cards() for page in forward]
    assert 'data-testid="first-page"' in forward[2].text
    assert 'data-testid="first-page"' not in forward[1].text  # Previous is the first page


def test_filters_round_trip_through_the_form_and_the_pager(client: FlaskClient) -> None:
    page = _get(client, "/deployments?group=team-a&owner=alice&q=WEB")
    expected = [n for n in _names(client, "team-a") if n.startswith("web")]
    assert page.cards() == expected and len(expected) == 2
    assert 'name="owner" value="alice"' in page.text and 'name="q" value="WEB"' in page.text
    assert '<option value="team-a" selected>' in page.text
    assert "owner=alice" in page.attribute("data-live") and "q=WEB" in page.attribute("data-live")
    everywhere = _get(client, "/deployments?q=web")  # a filter without a group: every group's
    assert everywhere.rows() == [] and len(everywhere.cards()) == 3
    rest = _get(client, str(everywhere.link("next")))
    assert "q=web" in str(everywhere.link("next")) and len(rest.cards()) == 1
    assert _get(client, "/deployments?group=team-a&state=failed").cards() == []
    refused = client.get("/deployments?state=sleeping")
    assert refused.status_code == 422 and "state: must be one of" in refused.get_data(True)


def test_members_see_only_their_groups(client: FlaskClient) -> None:
    alice = _get(client, "/deployments", ALICE)  # 2 groups, 6 deployments: the overview
    assert alice.rows() == ["team-a", "team-b"] and alice.cards() == []
    assert "team-c" not in alice.text and "demo" not in alice.text
    carol = _get(client, "/deployments", CAROL)  # 3 deployments: all on one page of cards
    assert carol.rows() == [] and sorted(carol.cards()) == sorted(
        _names(client, "team-b") + _names(client, "team-c")
    )
    bob = _get(client, "/deployments", BOB)  # one group: its cards, a page at a time
    assert bob.rows() == [] and bob.cards() == _names(client, "team-a")[:3]
    assert bob.link("next") is not None
    mallory = _get(client, "/deployments", MALLORY)
    assert mallory.rows() == [] and mallory.cards() == []
    assert "team-" not in mallory.text
    rows = client.get("/deployments?part=rows", headers=MALLORY).get_data(as_text=True)
    assert "team-" not in rows and "group-row" not in rows
    for url in ("/deployments?group=team-a", "/deployments?group=team-a&q=web"):
        assert client.get(url, headers=MALLORY).status_code == 404
    assert client.get("/deployments?group=team-c", headers=ALICE).status_code == 404


def test_overview_rows_answer_304_until_one_of_them_changes(client: FlaskClient) -> None:
    page = _get(client, "/deployments")
    source, tag = page.attribute("data-rows"), page.attribute("data-etag")
    assert source == "/deployments?part=rows"
    rows = client.get(source)
    assert rows.headers["ETag"] == tag and rows.headers["Cache-Control"] == "no-cache"
    assert "<html" not in rows.get_data(as_text=True)
    assert client.get(source, headers={"If-None-Match": tag}).status_code == 304
    later = _get(client, str(page.link("next")))
    later_source, later_tag = later.attribute("data-rows"), later.attribute("data-etag")
    assert later_source == "/deployments?part=rows&groups_after=team-a"
    _deploy(client, "team-a", "worker", ALICE)  # on the first page of rows only
    changed = client.get(source, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and "5 of 50" in changed.get_data(as_text=True)
    assert client.get(later_source, headers={"If-None-Match": later_tag}).status_code == 304


def test_a_card_action_returns_to_the_page_it_was_on(client: FlaskClient) -> None:
    first = _get(client, "/deployments?group=team-a&q=registry")  # in every image
    second = _get(client, str(first.link("next")))
    name = second.cards()[0]
    token = second.attribute('name="csrf_token" value')
    after = second.attribute('name="after" value')
    form = {"csrf_token": token, "replicas": "2", "group": "team-a", "q": "registry"}
    done = client.post(f"/deployments/{name}/scale", data=form | {"after": after})
    assert done.status_code == 302
    assert done.headers["Location"] == str(first.link("next"))
    refused = client.post(
        f"/deployments/{name}/scale", data=form | {"after": after, "replicas": "50"}
    )
    assert refused.status_code == 422
    assert Page(refused).cards() == second.cards()  # the same page, with the message
    assert "Replicas: must be 0..20, got 50." in refused.get_data(as_text=True)
