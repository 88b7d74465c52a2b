"""Decided change requests stay listed: closed and merged ones come back a page at a time,
newest first, with who proposed and who decided them, from a record on the real remote.

The real app on a real bare remote in review mode (built-in review and the GitHub/Gitea
fakes): the API's ``state`` filter and its pages, the Changes page's two views, the record
every replica shares, and a proposed deployment's single badge.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from playwright.sync_api import Page, expect

from gitops_bridge.gitrepo import decisions
from gitops_bridge.identity import User
from gitops_bridge.webapp import review_pages
from tests.apputil import TEAM_A, create_group, make_app, web
from tests.forgefakes import FakeGitea, FakeGitHub
from tests.gitutil import git, head
from tests.test_browser_manage import serve
from tests.test_review import review_app

ALICE = {"X-Forwarded-User": "alice"}
BOB = {"X-Forwarded-User": "bob"}
EVE = {"X-Forwarded-User": "eve"}
JSON = "application/json"
RECORD = "refs/reviews/decided"


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return tmp_path / "data" / "remote.git"


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    client = review_app(tmp_path).test_client()
    create_group(client)
    return client


def propose(client: FlaskClient, name: str, group: str = "team-a") -> str:
    response = client.post(f"/api/v1/groups/{group}/deployments", json=web(name), headers=ALICE)
    assert response.status_code == 202, response.json
    change_id: str = response.json["change"]["id"]  # type: ignore[index]
    return change_id


def decide(client: FlaskClient, change_id: str, action: str, who: dict[str, str]) -> None:
    response = client.post(f"/api/v1/changes/{change_id}/{action}", headers=who, content_type=JSON)
    assert response.status_code == 200, response.json


def listed(client: FlaskClient, who: dict[str, str] = BOB, **query: Any) -> list[dict[str, Any]]:
    response = client.get("/api/v1/changes", query_string=query, headers=who)
    assert response.status_code == 200, response.json
    items: list[dict[str, Any]] = response.json  # type: ignore[assignment]
    return items


def pages(client: FlaskClient, url: str, who: dict[str, str] = BOB) -> list[list[str]]:
    """The ids of each page, following ``Link: rel="next"`` to the end."""
    found = []
    while url:
        response = client.get(url, headers=who)
        assert response.status_code == 200, response.json
        found.append([item["id"] for item in response.json])  # type: ignore[union-attr]
        link = re.match(r'<([^>]+)>; rel="next"', response.headers.get("Link", ""))
        url = link[1] if link else ""
        assert len(found) < 50, "the pages never end"
    return found


def test_closed_and_merged_are_listed_with_who_proposed_and_who_decided(
    client: FlaskClient, remote: Path
) -> None:
    merged, closed, waiting = (propose(client, name) for name in ("web", "api", "db"))
    decide(client, merged, "approve", BOB)
    main = head(remote)
    decide(client, closed, "close", ALICE)
    assert head(remote) == main  # a close writes nothing to main

    assert [c["id"] for c in listed(client)] == [waiting]  # open: as before
    (shown,) = listed(client, state="closed")
    assert (shown["id"], shown["state"], shown["author"], shown["decidedBy"]) == (
        closed,
        "closed",
        "alice",
        "alice",
    )
    assert shown["mergeCommit"] is None and shown["title"].startswith("Deploy api-")
    assert isinstance(shown["decidedAt"], int) and shown["decidedAt"] >= shown["time"]
    (approved,) = listed(client, state="merged")
    assert (approved["id"], approved["author"], approved["decidedBy"]) == (merged, "alice", "bob")
    assert approved["mergeCommit"] == main and approved["commit"] != main
    assert [c["id"] for c in listed(client, state="all")] == [waiting, closed, merged]
    assert listed(client, EVE, state="all") == []  # not in team-a: nothing of it

    # the record is on the remote beside the branches, never on main
    assert git(remote, "log", "--first-parent", "--format=%an|%s", RECORD).splitlines() == [
        f"alice|{shown['title']}",
        f"bob|{approved['title']}",
        "gitops-bridge|Decided change requests",
    ]
    assert git(remote, "merge-base", "--is-ancestor", approved["commit"], RECORD) == ""
    assert f"Change-Request: {closed}" not in git(remote, "log", "--format=%B", "main")


def test_the_lists_page_newest_first_and_follow_link_headers(
    client: FlaskClient, remote: Path
) -> None:
    ids = [propose(client, f"app{i}") for i in range(5)]
    for change_id in ids[:4]:
        decide(client, change_id, "close", BOB)
    newest_first = list(reversed(ids[:4]))

    assert pages(client, "/api/v1/changes?state=closed&limit=3") == [
        newest_first[:3],
        newest_first[3:],
    ]
    assert pages(client, "/api/v1/changes?state=all&limit=2") == [
        [ids[4], newest_first[0]],
        newest_first[1:3],
        newest_first[3:],
    ]
    assert pages(client, "/api/v1/changes?state=merged") == [[]]
    last = client.get("/api/v1/changes?state=closed&limit=4", headers=BOB)
    assert "Link" not in last.headers  # nothing after it


def field_of(body: Any) -> str:
    field: str = body["problems"][0]["field"]
    return field


def test_a_bad_state_or_cursor_is_refused_naming_the_field(
    client: FlaskClient, remote: Path
) -> None:
    decide(client, propose(client, "web"), "close", BOB)
    before = git(remote, "for-each-ref")

    bad = client.get("/api/v1/changes?state=pending", headers=BOB)
    assert bad.status_code == 422
    assert bad.json is not None and bad.json["problems"] == [
        {"field": "state", "message": "must be one of open, closed, merged, all, got 'pending'"}
    ]
    cursor = client.get("/api/v1/changes?state=closed&after=bm90LWEtY3Vyc29y", headers=BOB)
    assert cursor.status_code == 422 and field_of(cursor.json) == "after"
    made_up = client.get(f"/api/v1/changes?state=closed&after={'a' * 40}", headers=BOB)
    assert made_up.status_code == 422
    limit = client.get("/api/v1/changes?state=closed&limit=0", headers=BOB)
    assert limit.status_code == 422 and field_of(limit.json) == "limit"
    assert git(remote, "for-each-ref") == before  # nothing written


def test_a_page_looks_at_a_bounded_window_of_the_record(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_group(client, {**TEAM_A, "name": "team-b", "members": ["alice"]})
    mine = propose(client, "web")
    decide(client, mine, "close", BOB)
    for i in range(5):  # newer decisions bob may not see
        decide(client, propose(client, f"other{i}", group="team-b"), "close", ALICE)
    monkeypatch.setattr(decisions, "SCAN", 2)

    found = pages(client, "/api/v1/changes?state=closed&limit=1")
    assert [item for page in found for item in page] == [mine]
    assert len(found) > 1  # the window ended before bob's: a short page and a cursor on


def test_the_record_is_shared_by_replicas_and_a_change_is_decided_once(
    tmp_path: Path, client: FlaskClient, remote: Path
) -> None:
    other = make_app(
        tmp_path / "other", repo_url=remote.as_uri(), review={"mode": "pull-request"}
    ).test_client()
    change_id = propose(client, "web")
    first = client.application.extensions["gitops_bridge"].review
    stale = first.get(
        User(name="bob", email="bob@example.com"), change_id
    )  # as the first replica read it

    decide(other, change_id, "close", BOB)  # the second replica decides first
    assert [c["id"] for c in listed(client, state="closed")] == [change_id]
    # the first replica's decision on the branch it read finds it gone: nothing recorded
    assert first._decide(stale, "merged", by=User(name="bob", email="bob@example.com")) is False
    assert [c["decidedBy"] for c in listed(other, state="all")] == ["bob"]
    assert len(git(remote, "log", "--first-parent", "--format=%H", RECORD).splitlines()) == 2


# ---- forges ----------------------------------------------------------------------------------

SECRET = "hook-secret"


@pytest.fixture(params=["github", "gitea"])
def forge(request: pytest.FixtureRequest) -> Iterator[Any]:
    fake = FakeGitHub() if request.param == "github" else FakeGitea()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def test_a_pull_request_merged_on_the_forge_is_listed_once_as_merged(
    tmp_path: Path, forge: Any, remote: Path
) -> None:
    app = review_app(
        tmp_path,
        forge=forge.kind,
        forge_url=forge.url,
        forge_repo=f"{forge.owner}/{forge.repo}",
        forge_token=forge.token,
        webhook_secret=SECRET,
    )
    client = app.test_client()
    create_group(client)
    change_id = propose(client, "web")
    pull = next(iter(forge.pulls.values()))
    branch = f"changes/{change_id}"
    sha = git(remote, "rev-parse", branch)
    git(remote, "update-ref", "refs/heads/main", sha)  # the forge merges (fast-forward) ...
    git(remote, "update-ref", "-d", f"refs/heads/{branch}")  # ... and deletes the branch
    forge.merge(pull.number, merge_commit=sha)

    headers, payload = forge.webhook_delivery(pull.number, SECRET)
    for _ in range(2):  # delivered twice (a retry): recorded once
        assert client.post("/api/v1/forge/events", data=payload, headers=headers).status_code == 200
        app.extensions["gitops_bridge"].review._pulls.clear()  # as a restarted replica

    (merged,) = listed(client, state="all")
    assert (merged["id"], merged["state"], merged["number"]) == (change_id, "merged", pull.number)
    assert merged["mergeCommit"] == sha and merged["url"] == pull_url(forge, pull.number)
    # who merged: Gitea's pull request says; GitHub's list answer does not
    assert merged["decidedBy"] == (None if forge.kind == "github" else "reviewer")


def pull_url(forge: Any, number: int) -> str:
    kind = "pull" if forge.kind == "github" else "pulls"
    return f"{forge.web}/{forge.owner}/{forge.repo}/{kind}/{number}"


# ---- the pages -----------------------------------------------------------------------------


def test_the_changes_page_has_open_and_closed_views_paged(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    merged, closed, waiting = (propose(client, name) for name in ("web", "api", "db"))
    decide(client, merged, "approve", BOB)
    decide(client, closed, "close", ALICE)

    opened = client.get("/changes", headers=BOB).get_data(as_text=True)
    assert re.findall(r'data-testid="change" data-id="([^"]+)"', opened) == [waiting]
    assert '<a href="/changes" aria-current="page">Open</a>' in opened

    monkeypatch.setattr(review_pages, "CHANGES", 1)
    page = client.get("/changes?view=closed", headers=BOB).get_data(as_text=True)
    assert '<a href="/changes?view=closed" aria-current="page">Closed and merged</a>' in page
    assert re.findall(r'data-testid="decided" data-id="([^"]+)"', page) == [closed]
    byline = _text(page, "decided-by")
    assert re.fullmatch(r"Proposed by alice .* · Closed by alice .*", byline), byline
    older = re.search(r'<a href="([^"]+)" rel="next"', page)
    assert older is not None
    page = client.get(older[1].replace("&amp;", "&"), headers=BOB).get_data(as_text=True)
    assert re.findall(r'data-testid="decided" data-id="([^"]+)"', page) == [merged]
    assert re.search(
        r"Proposed by alice .* · Approved and merged by bob", _text(page, "decided-by")
    )
    assert 'rel="next"' not in page and 'data-testid="first-page"' in page


def test_a_proposed_deployment_has_one_pending_badge_linking_to_its_change(
    client: FlaskClient,
) -> None:
    change_id = propose(client, "web")
    page = client.get("/deployments?group=team-a", headers=ALICE).get_data(as_text=True)
    card = page[page.index('data-testid="deployment-card"') :]
    card = card[: card.index("</header>")]
    assert card.count("pending review") == 1, card
    (badge,) = re.findall(r"<a [^>]*data-testid=\"status\"[^>]*>", card)
    assert f'href="/changes/{change_id}"' in badge and 'class="status pending"' in badge


def _text(page: str, testid: str) -> str:
    found = re.search(rf'data-testid="{testid}">(.*?)</p>', page, re.S)
    assert found is not None, testid
    return " ".join(re.sub(r"<[^>]+>", "", found[1]).split())


# ---- in the browser ----------------------------------------------------------------------------


@pytest.mark.browser
def test_in_the_browser_a_decided_change_moves_to_closed_and_merged(
    tmp_path: Path, open_as: Callable[[str], Page], artifacts: Path
) -> None:
    with serve(tmp_path / "data", review={"mode": "pull-request"}) as server:
        admin = open_as("admin")
        made = admin.request.post(f"{server.url}/api/v1/groups", data=TEAM_A)
        assert made.status == 201, made.text()
        alice, bob = open_as("alice"), open_as("bob")

        def propose_as_alice(name: str) -> str:
            answer = alice.request.post(
                f"{server.url}/api/v1/groups/team-a/deployments", data=web(name)
            )
            assert answer.status == 202, answer.text()
            change_id: str = answer.json()["change"]["id"]
            return change_id

        merged, closed, waiting = (propose_as_alice(name) for name in ("web", "api", "db"))
        # a proposed deployment: one badge, the link to its change
        alice.goto(f"{server.url}/deployments?group=team-a")
        card = alice.locator(f"[data-testid=deployment-card][data-name={waiting.split('/')[1]}]")
        expect(card.get_by_text("pending review")).to_have_count(1)
        expect(card.get_by_test_id("status")).to_have_attribute("href", f"/changes/{waiting}")
        alice.screenshot(path=str(artifacts / "changes-single-badge.png"), full_page=True)

        for change_id, action in ((merged, "approve"), (closed, "close")):
            answer = bob.request.post(
                f"{server.url}/api/v1/changes/{change_id}/{action}", headers={"Content-Type": JSON}
            )
            assert answer.status == 200, answer.text()
        bob.goto(f"{server.url}/changes")
        expect(bob.get_by_test_id("change")).to_have_count(1)
        bob.get_by_test_id("change-tabs").get_by_role("link", name="Closed and merged").click()
        expect(bob).to_have_url(re.compile(r"/changes\?view=closed$"))
        decided = bob.get_by_test_id("decided")
        expect(decided).to_have_count(2)
        expect(decided.nth(0)).to_have_attribute("data-id", closed)
        expect(decided.nth(0).get_by_test_id("decided-by")).to_have_text(
            re.compile(r"^Proposed by alice .* · Closed by bob .*$")
        )
        expect(decided.nth(1).get_by_test_id("decision")).to_have_text("merged")
        expect(decided.nth(1).get_by_test_id("decided-by")).to_contain_text(
            "Approved and merged by bob"
        )
        current = bob.get_by_test_id("change-tabs").locator("[aria-current=page]")
        expect(current).to_have_text("Closed and merged")
        bob.screenshot(path=str(artifacts / "changes-closed-and-merged.png"), full_page=True)
