"""A refused form shows each error at its field, in words for people, and commits nothing.

Headless Chromium against the real app and its bare remote: each refused input says
``aria-invalid`` and names its message with ``aria-describedby``, the first one has the
focus when the page loads, the summary at the top links to each field, and no text on the
page carries an API path (``quota.cpu``, ``env[1].name``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.conftest import LiveServer
from tests.test_browser import create_group_via_api, fill_deployment, head, submit

TEAM_A = {
    "name": "team-a",
    "members": ["alice"],
    "quota": {"cpu": "2", "memory": "4Gi", "deployments": 3},
}
INTERNAL = re.compile(r"quota\.|env\[|volumes\[|resources\.")


def described_by(page: Page, field: Locator) -> str:
    """The text the field's aria-describedby points at (every id must resolve)."""
    ids = (field.get_attribute("aria-describedby") or "").split()
    assert ids, field.evaluate("el => el.outerHTML")
    texts = []
    for ident in ids:
        target = page.locator(f"[id='{ident}']")
        expect(target).to_have_count(1)
        texts.append(target.inner_text())
    return " ".join(texts)


def focused(page: Page) -> dict[str, Any]:
    found: dict[str, Any] = page.evaluate(
        "() => ({name: document.activeElement.name, id: document.activeElement.id})"
    )
    return found


def assert_no_internal_names(page: Page) -> None:
    """Nothing people read names an API path: the text, and what assistive technology reads."""
    text = page.locator("body").inner_text()
    assert not INTERNAL.search(text), INTERNAL.findall(text)
    spoken = page.evaluate(
        """() => Array.from(document.querySelectorAll('[aria-label], [title], [placeholder]'))
              .map(el => [el.getAttribute('aria-label'), el.title, el.placeholder].join(' '))
              .join('\\n')"""
    )
    assert not INTERNAL.search(spoken), INTERNAL.findall(spoken)


@pytest.mark.browser
def test_deployment_form_shows_env_and_quota_errors_at_their_fields(
    page: Page, live_server: LiveServer, artifacts: Path
) -> None:
    create_group_via_api(page, live_server, TEAM_A)
    before = head(live_server.remote)
    page.goto(f"{live_server.url}/deployments/new?group=team-a")
    # 20 replicas + 1 rolling-update pod = 21 pods x 100m = 2.1 cores > 2 cores
    fill_deployment(page, group="team-a", name="big", replicas="20", cpu="100m", expose=False)
    rows = page.get_by_test_id("env-row")
    rows.nth(0).get_by_label("variable name", exact=True).fill("GREETING")
    rows.nth(0).get_by_label("variable value", exact=True).fill("hello")
    page.get_by_role("button", name="Add variable").click()
    rows.nth(1).get_by_label("variable value", exact=True).fill("no name")

    assert submit(page) == 422

    replicas = page.locator("input[name=replicas]")
    expect(replicas).to_have_attribute("aria-invalid", "true")
    assert described_by(page, replicas) == (
        "This needs 2.1 cores of CPU (21 pods of 100m each: 20 replicas + 1 rolling-update "
        "pod); the group has 2 cores, none in use — lower the replicas or the CPU per pod."
    )
    second = page.get_by_test_id("env-row").nth(1)
    name = second.get_by_label("variable name", exact=True)
    expect(name).to_have_value("")
    expect(name).to_have_attribute("aria-invalid", "true")
    assert described_by(page, name).startswith("Row 2 name: must be a C identifier")
    expect(second.get_by_test_id("row-errors")).to_contain_text("Row 2 name:")
    first = page.get_by_test_id("env-row").nth(0).get_by_label("variable name", exact=True)
    expect(first).not_to_have_attribute("aria-invalid", "true")
    for fine in ("image", "port", "cpu", "memory"):
        expect(page.locator(f"input[name={fine}]")).not_to_have_attribute("aria-invalid", "true")

    # the first invalid field in page order has the focus
    assert focused(page) == {"name": "replicas", "id": "f-replicas"}

    summary = page.get_by_test_id("form-error")
    expect(summary).to_contain_text("2 fields need attention")
    links = summary.get_by_role("link")
    expect(links).to_have_text(["Replicas", "Environment row 2, name"])
    expect(links.nth(0)).to_have_attribute("href", "#f-replicas")
    links.nth(1).click()
    expect(page).to_have_url(re.compile(r"#f-env-2-name$"))

    assert_no_internal_names(page)
    page.screenshot(path=str(artifacts / "form-errors-deployment.png"), full_page=True)

    # a row added now starts clean: no second id, no message copied
    page.get_by_role("button", name="Add variable").click()
    expect(page.locator("[id=f-env-2-name]")).to_have_count(1)
    expect(page.get_by_test_id("env-row").nth(2).locator("[aria-invalid]")).to_have_count(0)
    assert head(live_server.remote) == before


@pytest.mark.browser
def test_a_name_taken_is_said_at_the_name_field(page: Page, live_server: LiveServer) -> None:
    made = page.request.post(
        f"{live_server.url}/api/v1/groups/demo/deployments",
        data={"name": "web", "image": "registry:5000/demo/web:1.0"},
    )
    assert made.status == 201, made.text()
    before = head(live_server.remote)
    page.goto(f"{live_server.url}/deployments/new?group=demo")
    fill_deployment(page, group="demo", name="web")

    assert submit(page) == 409
    field = page.locator("input[name=name]")
    expect(field).to_have_attribute("aria-invalid", "true")
    assert re.fullmatch(  # the message, then the field's hint
        r"A deployment named 'web' exists in group demo \(web-\w{6}\): pick another name\. "
        r"a-z, 0-9, '-'; starts with a letter; max 46",
        described_by(page, field),
    )
    assert focused(page)["name"] == "name"
    assert_no_internal_names(page)
    assert head(live_server.remote) == before


@pytest.mark.browser
def test_group_forms_show_a_bad_quota_at_its_field(
    page: Page, live_server: LiveServer, artifacts: Path
) -> None:
    create_group_via_api(page, live_server, TEAM_A)
    before = head(live_server.remote)

    # the create form
    page.goto(f"{live_server.url}/groups")
    page.fill("input[name=name]", "team-b")
    page.fill("#g-cpu", "lots")
    page.fill("#g-deployments", "")
    with page.expect_navigation() as nav:
        page.get_by_role("button", name="Create group").click()
    assert nav.value is not None and nav.value.status == 422
    cpu, count = page.locator("#g-cpu"), page.locator("#g-deployments")
    expect(cpu).to_have_value("lots")
    expect(cpu).to_have_attribute("aria-invalid", "true")
    assert described_by(page, cpu).startswith("Must be a Kubernetes quantity")
    expect(count).to_have_attribute("aria-invalid", "true")
    assert described_by(page, count) == "Must be a whole number, got ''."
    expect(page.locator("#g-name")).not_to_have_attribute("aria-invalid", "true")
    assert focused(page)["id"] == "g-cpu"
    summary = page.get_by_test_id("form-error")
    expect(summary).to_contain_text("2 fields need attention")
    expect(summary.get_by_role("link")).to_have_text(["CPU", "Deployments"])
    assert_no_internal_names(page)
    page.screenshot(path=str(artifacts / "form-errors-group-create.png"), full_page=True)

    # a group's edit form: the message inside its card, what was typed kept
    card = page.locator("[data-testid=group-card][data-name=team-a]")
    card.get_by_text("Edit members and quota").click()
    card.locator("input[name=memory]").fill("12 gigs")
    with page.expect_navigation() as nav:
        card.get_by_role("button", name="Save").click()
    assert nav.value is not None and nav.value.status == 422
    card = page.locator("[data-testid=group-card][data-name=team-a]")
    memory = card.locator("input[name=memory]")
    expect(memory).to_have_value("12 gigs")
    expect(memory).to_have_attribute("aria-invalid", "true")
    assert described_by(page, memory).startswith("Must be a Kubernetes quantity")
    assert focused(page)["id"] == "e-team-a-memory"
    expect(card.get_by_test_id("group-error")).to_contain_text("1 field needs attention")
    expect(page.locator("#g-memory")).not_to_have_attribute("aria-invalid", "true")
    assert_no_internal_names(page)
    page.screenshot(path=str(artifacts / "form-errors-group-edit.png"), full_page=True)
    assert head(live_server.remote) == before
