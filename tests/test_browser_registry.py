"""In headless Chromium the image field offers the group's images from a real registry, and a
picked image deploys: the HelmRelease committed to the bare remote names it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from playwright.sync_api import Page, expect

from tests.gitutil import show
from tests.registryutil import RegistryServer, push_image

if TYPE_CHECKING:
    from conftest import LiveServer


@pytest.fixture
def live_overrides(registry_server: RegistryServer) -> dict[str, Any]:
    return {"registry": {"url": registry_server.url, "cache_seconds": 0}}


def choices(page: Page) -> list[str]:
    values: list[str] = page.locator("#image-choices option").evaluate_all(
        "options => options.map(o => o.value)"
    )
    return values


@pytest.mark.browser
def test_the_image_field_offers_pushed_images_and_a_picked_one_deploys(
    page: Page, live_server: LiveServer, registry_server: RegistryServer
) -> None:
    push_image(registry_server.url, "demo/web", "1.0", created="2024-01-01T00:00:00Z")
    push_image(registry_server.url, "demo/web", "1.1", created="2024-02-01T00:00:00Z")
    push_image(registry_server.url, "team-a/api", "3.0")
    response = page.request.post(
        f"{live_server.url}/api/v1/groups",
        data={
            "name": "team-a",
            "members": ["admin"],
            "quota": {"cpu": "2", "memory": "4Gi", "deployments": 3},
        },
    )
    assert response.status == 201, response.text()

    page.goto(f"{live_server.url}/deployments/new?group=demo")
    image = page.locator("input[name=image]")
    expect(image).to_have_attribute("list", "image-choices")
    assert choices(page) == ["registry:5000/demo/web:1.1", "registry:5000/demo/web:1.0"]
    expect(page.locator("#image-choices option").first).to_have_attribute("label", "newest")

    # another group: the datalist follows the group select (fetched from the API)
    page.select_option("select[name=group]", "team-a")
    expect(page.locator("#image-choices option")).to_have_count(1)
    assert choices(page) == ["registry:5000/team-a/api:3.0"]
    page.select_option("select[name=group]", "demo")
    expect(page.locator("#image-choices option")).to_have_count(2)

    # the group's recent images show without focusing the field, with age and size; a click
    # fills the field in
    recent = page.get_by_test_id("recent-images")
    expect(recent).to_be_visible()
    expect(recent.locator("li")).to_have_count(1)
    expect(recent.locator("li").first).to_contain_text("registry:5000/demo/web:1.1")
    expect(recent.locator("li").first).to_contain_text(
        re.compile(r"built \S.* · [\d.]+ ?(B|Ki|Mi)")
    )
    recent.get_by_role("button", name="registry:5000/demo/web:1.1").click()
    expect(image).to_have_value("registry:5000/demo/web:1.1")
    image.fill("")
    page.select_option("select[name=group]", "team-a")  # fetched: the same words
    expect(recent.locator("li").first).to_contain_text(
        re.compile(r"registry:5000/team-a/api:3\.0 built (\d+ \w+ ago|just now) · ")
    )
    page.select_option("select[name=group]", "demo")
    expect(recent.locator("li").first).to_contain_text("registry:5000/demo/web:1.1")

    # pick the newest suggestion: Chromium's suggestion popup is native UI that Playwright
    # cannot click, so put the option's value in the field as choosing it does
    page.fill("input[name=name]", "web")
    image.fill(choices(page)[0])
    expect(image).to_have_value("registry:5000/demo/web:1.1")

    with page.expect_navigation() as nav:
        page.get_by_role("button", name="Deploy").click()
    assert nav.value is not None and nav.value.status == 200
    flash = page.locator(".flash.success")
    expect(flash).to_have_text(re.compile(r"^Deployed web-[a-z0-9]{6}: committed [0-9a-f]{7}$"))
    name = re.findall(r"web-[a-z0-9]{6}", flash.inner_text())[0]
    card = page.locator(f"[data-testid=deployment-card][data-name='{name}']")
    expect(card).to_contain_text("registry:5000/demo/web:1.1")
    release = yaml.safe_load(show(live_server.remote, f"tenants/demo/apps/{name}.yaml"))
    assert release["spec"]["values"]["image"] == "registry:5000/demo/web:1.1"
