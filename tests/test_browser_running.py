"""After a failed upgrade that Helm rolled back, a person sees in Chromium what runs beside what
was committed: the card says "Running <image> (commit …) · committed <image> (…)" live, without
a reload; the deployment's page sets the two versions side by side with the differences said in
words; History marks the live version. A successful reconcile makes them one again.

The cluster is ``FakeKube`` with ``FluxStandIn`` rendering the chart with the real helm
(``tests/e2eutil.py`` ``stack``); the page's own 3 s refresh brings each reading to the card.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2eutil import (
    IMAGE,
    IMAGE_2,
    WAIT,
    Stack,
    badge,
    card,
    click_and_land,
    deploy_running,
    flash_sha,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def update_image(page: Page, name: str, image: str) -> str:
    """Edit the image through the card's form; the sha7 of the commit."""
    card(page, name).get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name=f"Edit {name}")).to_be_visible()
    page.fill("input[name=image]", image)
    assert click_and_land(page, page.get_by_role("button", name="Save changes")) == 200
    return flash_sha(page, f"Updated {name}")


def test_a_rolled_back_upgrade_shows_what_runs_on_the_card_the_page_and_in_history(
    page: Page, stack: Stack, artifacts: Path
) -> None:
    name, first = deploy_running(page, stack)
    commit_field = card(page, name).locator("[data-field=applied]")
    expect(commit_field).to_contain_text(f"{first} · live {first}", timeout=WAIT)
    note = card(page, name).get_by_test_id("running")
    expect(note).to_be_hidden()  # what runs is what was committed: nothing to say

    second = update_image(page, name, IMAGE_2)
    page.evaluate("window.__e2eMark = 'still here'")  # gone after any reload
    stack.reconcile(scenario={name: "failed-upgrade"})

    expect(badge(page, name)).to_have_text("failed (UpgradeFailed)", timeout=WAIT)
    expect(note).to_have_text(
        f"Running {IMAGE} (commit {first}) · committed {IMAGE_2} ({second})", timeout=WAIT
    )
    expect(commit_field).to_contain_text(f"{second} · live {first}")
    assert page.evaluate("window.__e2eMark") == "still here", "the card was not updated live"
    card(page, name).screenshot(path=str(artifacts / "running-card-rolled-back.png"))

    card(page, name).get_by_test_id("detail-link").click()
    section = page.get_by_test_id("running-section")
    expect(section).to_be_visible()
    expect(section.get_by_test_id("running-summary")).to_contain_text(
        f"commit {first} runs, {second} is committed (Image differs)"
    )
    image = section.locator("[data-testid=running-row][data-setting=image]")
    expect(image.get_by_test_id("running-value")).to_have_text(IMAGE)
    expect(image.get_by_test_id("committed-value")).to_have_text(IMAGE_2)
    expect(image.get_by_test_id("running-same")).to_have_text("differs")  # in words
    expect(image).to_have_class(re.compile(r"\bdiffers\b"))
    for setting, value in (("replicas", "2"), ("cpu", "100m"), ("health", "TCP connect")):
        row = section.locator(f"[data-testid=running-row][data-setting={setting}]")
        expect(row.get_by_test_id("running-value")).to_have_text(value)
        expect(row.get_by_test_id("running-same")).to_have_text("same")
    page.screenshot(path=str(artifacts / "running-page-rolled-back.png"), full_page=True)

    section.get_by_test_id("live-commit").click()  # to that version in History
    expect(page).to_have_url(re.compile(rf"/deployments/{name}/history#v-{first}[0-9a-f]{{5}}$"))
    versions = page.get_by_test_id("version")
    expect(versions).to_have_count(2)
    live = page.locator("[data-testid=version][data-live='1']")
    expect(live).to_have_count(1)
    expect(live).to_have_attribute("data-commit", re.compile(rf"^{first}"))
    expect(live.get_by_test_id("live-badge")).to_have_text("live: running in the cluster")
    expect(versions.first.get_by_test_id("live-badge")).to_have_count(0)  # the committed one
    page.screenshot(path=str(artifacts / "running-history-rolled-back.png"), full_page=True)

    stack.reconcile()  # the upgrade succeeds: the newest version runs
    page.reload()
    expect(live).to_have_attribute("data-commit", re.compile(rf"^{second}"))
    expect(versions.first.get_by_test_id("live-badge")).to_be_visible()
    page.goto(f"{stack.url}/deployments/{name}")
    expect(page.get_by_test_id("running-summary")).to_have_text(
        f"The cluster runs the committed version ({second})."
    )
    expect(page.locator("[data-testid=running-row].differs")).to_have_count(0)
    page.goto(f"{stack.url}/deployments")
    expect(badge(page, name)).to_have_text("running 2/2")
    expect(note).to_be_hidden()
    expect(commit_field).to_contain_text(f"{second} · live {second}")
    page.screenshot(path=str(artifacts / "running-card-upgraded.png"), full_page=True)
