"""Every page of the UI, with data on it, passes axe-core's WCAG 2 A/AA rules without a serious
or critical violation; the list of pages visited is complete by construction: it must name
every GET route of the ``ui`` blueprint, and each visit must land on the route it names.

One cluster-backed stack (``tests/e2eutil.py``) carries the data: a running, a crash-looping
and a failed deployment of group demo, a change request waiting in a review-mode group, a
deleted deployment and two versions of one deployment. Moderate and minor findings are
reported (printed, and kept as JSON in the artifacts), not failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from flask import Flask
from playwright.sync_api import Page, expect

from tests import axe
from tests.apputil import make_app
from tests.e2eutil import IMAGE, IMAGE_2, Stack, badge, card, click_and_land

OpenAs = Callable[[str], Page]
TEAM = {
    "name": "team",
    "members": ["admin", "alice"],
    "review": "pull-request",
    "quota": {"cpu": "2", "memory": "4Gi", "storage": "10Gi", "deployments": 5},
}
WAIT = 10_000


@dataclass
class Seeded:
    """What the visits need to name: deployments, versions, a change request."""

    running: str
    crashing: str
    failed: str
    first: str  # the running one's first commit (restore to it)
    second: str  # its change of image (revert it)
    change: str  # a change request waiting for review in group team


@dataclass(frozen=True)
class Visit:
    """A page to check: who looks, where, what shows it is loaded, and what it is."""

    endpoint: str
    path: Callable[[Seeded], str]
    ready: str  # a CSS selector that is there once the page shows its data
    user: str = "admin"
    status: int = 200


VISITS: list[Visit] = [
    Visit("ui.index", lambda s: "/", "[data-testid=deployment-card]"),
    Visit("ui.deployments", lambda s: "/deployments?group=demo", "[data-testid=deployment-card]"),
    Visit("ui.deployments", lambda s: "/deployments", "main", user="mallory"),  # no access
    Visit("ui.deployment_page", lambda s: f"/deployments/{s.running}", "main h1"),
    Visit("ui.deployment_page", lambda s: f"/deployments/{s.crashing}", "main h1"),
    Visit("ui.deployment_page", lambda s: f"/deployments/{s.failed}", "main h1"),
    Visit("ui.new_deployment", lambda s: "/deployments/new", "form"),
    Visit("ui.new_deployment", lambda s: "/deployments/new", "main", user="mallory"),
    Visit("ui.edit_deployment", lambda s: f"/deployments/{s.running}/edit", "form"),
    Visit("ui.deployment_history", lambda s: f"/deployments/{s.running}/history", "main h1"),
    Visit(
        "ui.confirm_revert",
        lambda s: f"/deployments/{s.running}/revert?commit={s.second}",
        "form",
    ),
    Visit(
        "ui.confirm_restore",
        lambda s: f"/deployments/{s.running}/restore?commit={s.first}",
        "form",
    ),
    Visit("ui.confirm_restart", lambda s: f"/deployments/{s.running}/restart", "form"),
    Visit("ui.confirm_delete", lambda s: f"/deployments/{s.running}/delete", "form"),
    Visit(
        "ui.deployment_logs",
        lambda s: f"/deployments/{s.running}/logs",
        "[data-testid=log]:has-text('listening on')",  # the stream's first lines are in
    ),
    Visit("ui.deleted_deployments", lambda s: "/deployments/deleted?group=demo", "main h1"),
    Visit("ui.changes", lambda s: "/changes", "main h1"),
    Visit("ui.change", lambda s: f"/changes/{quote(s.change)}", "main h1"),
    Visit("ui.confirm_close", lambda s: f"/changes/{quote(s.change)}/close", "form"),
    Visit("ui.storage_page", lambda s: "/storage?group=demo", "main h1"),
    Visit("ui.groups", lambda s: "/groups", "main h1"),
    Visit("ui.deployment_page", lambda s: "/deployments/nothing-abc123", "main", status=404),
]


def ui_pages(app: Flask) -> set[str]:
    """The endpoints of the ``ui`` blueprint a browser can GET."""
    return {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("ui.") and "GET" in (rule.methods or set())
    }


def test_every_page_has_a_visit(tmp_path: Path) -> None:
    visited = {visit.endpoint for visit in VISITS}
    pages = ui_pages(make_app(tmp_path / "data"))
    assert pages - visited == set(), "pages of the UI no accessibility check visits"
    assert visited - pages == set(), "visits of pages that do not exist"


# ---- the data ---------------------------------------------------------------------------


def api(page: Page, stack: Stack, method: str, path: str, body: Any = None) -> Any:
    response = page.request.fetch(
        f"{stack.url}/api/v1{path}",
        method=method,
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status in (200, 201, 202), f"{method} {path}: {response.text()}"
    return response.json()


def seed(page: Page, stack: Stack) -> Seeded:
    """Deployments in every state a card shows, versions, a deleted one, a change request."""
    stack.poll()
    created = {}
    for app in ("web", "worker", "api", "old"):
        body = {"name": app, "image": IMAGE, "replicas": 2, "expose": app == "web"}
        created[app] = api(page, stack, "POST", "/groups/demo/deployments", body)["name"]
    running = created["web"]
    api(page, stack, "PATCH", f"/deployments/{running}", {"image": IMAGE_2})
    api(page, stack, "DELETE", f"/deployments/{created['old']}")
    scenario = {created["worker"]: "crashloop", created["api"]: "failed-upgrade"}
    stack.reconcile(scenario=scenario)
    versions = api(page, stack, "GET", f"/deployments/{running}/history")
    assert len(versions) == 2, versions
    api(page, stack, "POST", "/groups", TEAM)
    waiting = api(page, stack, "POST", "/groups/team/deployments", {"name": "web", "image": IMAGE})
    return Seeded(
        running=running,
        crashing=created["worker"],
        failed=created["api"],
        first=versions[1]["commit"],
        second=versions[0]["commit"],
        change=waiting["change"]["id"],
    )


# ---- the check --------------------------------------------------------------------------


def endpoint_of(app: Flask, path: str) -> str:
    parts = urlsplit(path)
    endpoint, _ = app.url_map.bind("localhost").match(parts.path, method="GET")
    return str(endpoint)


def shot_name(index: int, visit: Visit) -> str:
    """Stable across runs (deployment names are random): the visit's place, page and user."""
    return f"{index:02d}-{visit.endpoint.removeprefix('ui.')}-{visit.user}.png"


@pytest.mark.browser
@pytest.mark.e2e
def test_every_page_passes_axe(stack: Stack, page: Page, open_as: OpenAs, artifacts: Path) -> None:
    seeded = seed(page, stack)
    pages: dict[str, Page] = {"admin": page}
    findings: list[axe.Violation] = []
    shots = artifacts / "a11y"
    shots.mkdir(exist_ok=True)
    for index, visit in enumerate(VISITS):
        path = visit.path(seeded)
        if visit.status == 200:  # a 404 matches no route's data: it is the error page
            assert endpoint_of(stack.app, path) == visit.endpoint, path
        viewer = pages.get(visit.user) or pages.setdefault(visit.user, open_as(visit.user))
        response = viewer.goto(f"{stack.url}{path}")
        assert response is not None and response.status == visit.status, path
        expect(viewer.locator(visit.ready).first).to_be_visible()
        viewer.screenshot(path=str(shots / shot_name(index, visit)), full_page=True)
        findings += axe.run(viewer, f"{visit.user} {path}")

    # the confirm dialogs over the cards, and the new form shown again with its errors
    page.goto(f"{stack.url}/deployments?group=demo")
    expect(badge(page, seeded.running)).to_have_text("running 2/2", timeout=WAIT)
    for opener in ("Restart…", "Delete…"):
        card(page, seeded.running).get_by_role("link", name=opener).click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_be_visible()
        what = opener.removesuffix("…").lower()
        page.screenshot(path=str(shots / f"{what}-dialog.png"))
        findings += axe.run(page, f"the {what} dialog")
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_be_hidden()
    page.goto(f"{stack.url}/deployments/new")
    page.select_option("select[name=group]", "demo")
    page.fill("input[name=name]", "Not_A_Name")
    page.fill("input[name=image]", IMAGE)
    page.fill("input[name=replicas]", "500")
    assert click_and_land(page, page.get_by_role("button", name="Deploy")) == 422
    expect(page.locator(".field-error").first).to_be_visible()
    page.screenshot(path=str(shots / "form-errors.png"), full_page=True)
    findings += axe.run(page, "the new form with errors")

    axe.report(findings, shots / "findings.json")
    bad = axe.failing(findings)
    minor = [v for v in findings if v not in bad]
    print(f"accessibility findings that do not fail:\n{axe.report(minor) or '  none'}")
    assert not bad, f"accessibility violations:\n{axe.report(bad)}"
