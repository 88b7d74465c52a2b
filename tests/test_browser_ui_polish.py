"""In Chromium: someone in no group sees how to get access instead of a form; the History page
fits a 390 px phone without scrolling sideways; an admin creates a group with group admins and
a review mode from the form (default quota prefilled), and its card shows them without the
edit form spilling out of it; the nav links Workspaces; "reconciling" is not drawn as an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Page, expect

if TYPE_CHECKING:
    from conftest import LiveServer

WORKSPACES = "https://code-hub.com/workspaces"
PHONE = {"width": 390, "height": 844}
LONG_IMAGE = (
    "registry:5000/team-a/a-rather-long-repository-name/for-the-web-frontend:2026.11.27-rc1"
)


@pytest.fixture
def live_overrides() -> dict[str, Any]:
    return {"workspaces_url": WORKSPACES}


def api(page: Page, server: LiveServer, method: str, path: str, body: Any, user: str) -> Any:
    response = page.request.fetch(
        f"{server.url}/api/v1{path}",
        method=method,
        data=body,
        headers={"X-Forwarded-User": user},
    )
    assert response.ok, response.text()
    return response.json()


@pytest.mark.browser
def test_someone_in_no_group_sees_how_to_get_access(
    open_as: Callable[[str], Page], live_server: LiveServer, artifacts: Path
) -> None:
    mallory = open_as("mallory")
    mallory.goto(f"{live_server.url}/deployments")
    access = mallory.get_by_test_id("no-access")
    expect(access).to_contain_text("You are not in a group yet")
    expect(access).to_contain_text("platform-admins")
    expect(access.get_by_test_id("user-name")).to_have_text("mallory")
    expect(mallory.get_by_role("link", name="New deployment")).to_have_count(0)
    expect(mallory.get_by_text("Pick an image")).to_have_count(0)
    expect(mallory.get_by_role("search")).to_be_hidden()
    mallory.screenshot(path=str(artifacts / "polish-no-group.png"), full_page=True)

    mallory.goto(f"{live_server.url}/deployments/new")  # a bookmark, an old link
    expect(mallory.get_by_test_id("no-access")).to_be_visible()
    expect(mallory.locator("form")).to_have_count(0)
    expect(mallory.locator("select[name=group]")).to_have_count(0)
    mallory.screenshot(path=str(artifacts / "polish-no-group-new.png"), full_page=True)


@pytest.mark.browser
def test_the_history_page_fits_a_phone(
    open_as: Callable[[str], Page], live_server: LiveServer, artifacts: Path
) -> None:
    admin = open_as("admin")
    team = {"name": "team-a", "members": ["alice"], "quota": {"cpu": "4", "memory": "8Gi"}}
    api(
        admin,
        live_server,
        "POST",
        "/groups",
        team | {"quota": team["quota"] | {"deployments": 5}},
        "admin",
    )
    env = [{"name": "GREETING", "value": "a-long-value-without-spaces-" * 8}]
    body = {"name": "web", "image": LONG_IMAGE, "replicas": 2, "expose": True, "env": env}
    name = api(admin, live_server, "POST", "/groups/team-a/deployments", body, "alice")["name"]
    api(admin, live_server, "PATCH", f"/deployments/{name}", {"replicas": 3}, "alice")

    alice = open_as("alice")
    alice.set_viewport_size(PHONE)
    alice.goto(f"{live_server.url}/deployments/{name}/history")
    expect(alice.get_by_test_id("version")).to_have_count(2)
    for summary in alice.locator("details.diff > summary").all():  # the widest part: diffs
        summary.click()
    expect(alice.get_by_test_id("workspaces-link")).to_be_visible()
    width = alice.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the History page is {width} px wide at 390 px"
    alice.screenshot(path=str(artifacts / "polish-history-390.png"), full_page=True)

    alice.goto(f"{live_server.url}/deployments?group=team-a")  # the cards fit too
    expect(alice.get_by_test_id("deployment-card")).to_have_count(1)
    card = alice.get_by_test_id("deployment-card")
    expect(card.get_by_test_id("cpu-requests")).to_have_text("100m per pod (limit 200m)")
    expect(card.get_by_test_id("cpu-total")).to_have_text("330m total with 3 replicas + frpc")
    assert alice.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    alice.screenshot(path=str(artifacts / "polish-cards-390.png"), full_page=True)


@pytest.mark.browser
def test_an_admin_creates_a_group_with_admins_and_a_review_mode(
    page: Page, live_server: LiveServer, artifacts: Path
) -> None:
    page.goto(f"{live_server.url}/groups")
    nav = page.locator(".topbar nav a")
    expect(nav.first).to_have_text("Workspaces")
    expect(nav.first).to_have_attribute("href", WORKSPACES)
    create = page.locator("form[action='/groups']")
    # the specification's example quota, unless configured
    expect(create.locator("input[name=cpu]")).to_have_value("10")
    expect(create.locator("input[name=memory]")).to_have_value("20Gi")
    expect(create.locator("input[name=storage]")).to_have_value("50Gi")
    expect(create.locator("input[name=deployments]")).to_have_value("10")
    create.get_by_label("Name", exact=True).fill("team-b")
    create.get_by_label("Members").fill("alice, bob")
    create.get_by_label("Group admins").fill("bob")
    create.get_by_label("Review").select_option("pull-request")
    page.screenshot(path=str(artifacts / "polish-group-create.png"), full_page=True)
    with page.expect_navigation():
        create.get_by_role("button", name="Create group").click()
    expect(page.locator(".flash.success")).to_have_text("Created group team-b")

    card = page.locator("[data-testid=group-card][data-name=team-b]")
    expect(card.locator("[data-field=review]")).to_have_text(
        "pull requests (changes wait for review)"
    )
    expect(card.locator("[data-field=cpu]")).to_have_text("0 of 10 cores · 10 cores free")
    expect(card.locator("[data-field=memory]")).to_have_text("0 of 20Gi · 20Gi free")
    card.get_by_text("Edit members and quota").click()
    expect(card.locator("input[name=admins]")).to_have_value("bob")
    expect(card.locator("select[name=review]")).to_have_value("pull-request")
    box = card.bounding_box()
    assert box is not None
    for field in card.locator("form :is(input:not([type=hidden]), select, button)").all():
        inner = field.bounding_box()
        assert inner is not None
        assert inner["x"] + inner["width"] <= box["x"] + box["width"], field.evaluate(
            "e => e.outerHTML"
        )
    card.screenshot(path=str(artifacts / "polish-group-card.png"))
    group = page.request.get(f"{live_server.url}/api/v1/groups/team-b").json()
    assert (group["admins"], group["review"]) == (["bob"], "pull-request")
    assert group["members"] == ["alice", "bob"]


@pytest.mark.browser
def test_reconciling_is_drawn_as_work_in_progress_not_as_an_error(
    page: Page, live_server: LiveServer
) -> None:
    page.goto(f"{live_server.url}/deployments")
    colours = page.evaluate(
        """() => Object.fromEntries(["reconciling", "failed", "degraded", "running"].map(state => {
          const badge = document.createElement("span");
          badge.className = "status " + state;
          const detail = document.createElement("p");
          detail.className = "status-detail";
          detail.dataset.state = state;
          document.body.append(badge, detail);
          const seen = [getComputedStyle(badge).backgroundColor, getComputedStyle(detail).color];
          badge.remove(); detail.remove();
          return [state, seen];
        }))"""
    )
    assert colours["reconciling"][0] != colours["failed"][0]  # the badge
    assert colours["reconciling"][0] != colours["degraded"][0]
    assert colours["reconciling"][1] != colours["failed"][1]  # "Progressing ..." beside it
    assert colours["failed"][1] == colours["degraded"][1]
    assert re.fullmatch(r"rgb\(\d+, \d+, \d+\)", colours["running"][0])
