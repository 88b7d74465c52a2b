"""In headless Chromium a member uses the Storage tab against a real registry: the usage bar
follows a volume created, the volume mounts through the deployment form and shows on the
card, a mounted volume is not deleted, an old image tag is deleted (from the list and from
the registry), an image in use has no delete button, and the retention preview lists exactly
what "Delete these" then deletes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from playwright.sync_api import Page, expect

from gitops_bridge.webapp.storage_pages import human
from tests.gitutil import show
from tests.registryutil import RegistryServer, listed_tags, push_image

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import LiveServer

TEAM_A = {
    "name": "team-a",
    "members": ["alice"],
    "quota": {"cpu": "2", "memory": "4Gi", "storage": "10Gi", "deployments": 5},
}


@pytest.fixture
def live_overrides(registry_server: RegistryServer) -> dict[str, Any]:
    return {"registry": {"url": registry_server.url, "cache_seconds": 0}}


def create_group(page: Page, server: LiveServer, body: dict[str, Any]) -> None:
    response = page.request.post(f"{server.url}/api/v1/groups", data=body)
    assert response.status == 201, response.text()


def usage(page: Page, part: str) -> str:
    return page.get_by_test_id(f"usage-{part}").inner_text()


def tag_row(page: Page, key: str) -> Any:
    return page.locator(f"[data-testid=tag-row][data-key='{key}']")


@pytest.mark.browser
def test_a_member_manages_volumes_and_images_in_the_storage_tab(
    page: Page,
    open_as: Callable[[str], Page],
    live_server: LiveServer,
    registry_server: RegistryServer,
    artifacts: Path,
) -> None:
    base = registry_server.url
    pushed = {
        f"{repo}:{tag}": push_image(base, repo, tag, created=f"2024-{month}-01T00:00:00Z")
        for repo, tag, month in (
            ("team-a/web", "1.0", "01"),
            ("team-a/web", "1.1", "02"),
            ("team-a/web", "1.2", "03"),
            ("team-a/api", "1.0", "01"),
            ("team-a/api", "2.0", "04"),
        )
    }
    images = sum(image.size for image in pushed.values())  # no blob is shared
    create_group(page, live_server, TEAM_A)
    alice = open_as("alice")
    violations: list[str] = []  # the pages work under their Content-Security-Policy
    alice.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )

    # the tab: alice has one group, so she lands on it
    alice.goto(f"{live_server.url}/deployments")
    alice.get_by_role("link", name="Storage", exact=True).click()
    expect(alice.get_by_role("heading", name="Storage of team-a")).to_be_visible()
    assert usage(alice, "volumes") == "0"
    assert usage(alice, "images") == human(images)
    assert usage(alice, "free") == "10Gi" and usage(alice, "quota") == "10Gi"
    expect(alice.get_by_test_id("no-volumes")).to_be_visible()
    expect(alice.get_by_test_id("tag-row")).to_have_count(5)
    alice.screenshot(path=str(artifacts / "storage.png"), full_page=True)

    # a volume: the bar's volume part grows by its size
    create = alice.get_by_test_id("create-volume")
    create.locator("input[name=name]").fill("data")
    create.locator("input[name=size]").fill("2Gi")
    expect(create.locator("select[name=accessMode]")).to_have_value("ReadWriteOnce")
    create.get_by_role("button", name="Create volume").click()
    expect(alice.locator(".flash.success")).to_have_text(
        re.compile(r"^Created volume data \(2Gi, ReadWriteOnce\): committed [0-9a-f]{7}$")
    )
    assert usage(alice, "volumes") == "2Gi"
    assert usage(alice, "free") == human(10 * 1024**3 - 2 * 1024**3 - images)
    row = alice.locator("[data-testid=volume-row][data-name=data]")
    expect(row).to_contain_text("2Gi")
    expect(row.locator("[data-field=status]")).to_have_text("not read")  # no cluster here

    # mount it: at most one replica (ReadWriteOnce), then deployed with one
    alice.goto(f"{live_server.url}/deployments/new")
    alice.fill("input[name=name]", "web")
    alice.fill("input[name=image]", "registry:5000/team-a/web:1.2")
    alice.fill("input[name=replicas]", "2")
    mount = alice.get_by_test_id("mount-row").first
    mount.get_by_label("volume", exact=True).select_option("team-a/data")
    mount.get_by_label("mount path").fill("/var/lib/app")
    with alice.expect_navigation() as nav:
        alice.get_by_role("button", name="Deploy").click()
    assert nav.value is not None and nav.value.status == 422
    expect(alice.locator(".field-error[data-field=replicas]")).to_contain_text(
        "Must be 0 or 1: volume 'data' is ReadWriteOnce"
    )
    expect(
        alice.get_by_test_id("mount-row").first.get_by_label("volume", exact=True)
    ).to_have_value("team-a/data")
    alice.fill("input[name=replicas]", "1")
    with alice.expect_navigation() as nav:
        alice.get_by_role("button", name="Deploy").click()
    assert nav.value is not None and nav.value.status == 200
    flash = alice.locator(".flash.success")
    expect(flash).to_have_text(re.compile(r"^Deployed web-[a-z0-9]{6}: committed [0-9a-f]{7}$"))
    name = re.findall(r"web-[a-z0-9]{6}", flash.inner_text())[0]
    card = alice.locator(f"[data-testid=deployment-card][data-name='{name}']")
    expect(card.get_by_test_id("mount")).to_have_text("data → /var/lib/app (ReadWriteOnce)")
    alice.screenshot(path=str(artifacts / "storage-mount-card.png"), full_page=True)
    release = yaml.safe_load(show(live_server.remote, f"tenants/team-a/apps/{name}.yaml"))
    assert release["spec"]["values"]["image"] == "registry:5000/team-a/web:1.2"

    # the mounted volume stays
    alice.get_by_role("link", name="Storage", exact=True).click()
    row = alice.locator("[data-testid=volume-row][data-name=data]")
    expect(row.locator("[data-field=mounted-by]")).to_have_text(name)
    row.locator("summary", has_text="Delete…").click()
    row.get_by_test_id("confirm-data").fill("data")
    row.get_by_role("button", name="Delete data").click()
    expect(alice.get_by_test_id("volume-error")).to_have_text(
        f"Volume data is mounted by {name}: unmount it there first."
    )
    expect(alice.get_by_test_id("storage-error")).to_be_visible()
    alice.screenshot(path=str(artifacts / "storage-delete-refused.png"), full_page=True)

    # images: the one in use has a marker and no button; an old one is deleted
    in_use = tag_row(alice, "team-a/web:1.2")
    expect(in_use.get_by_test_id("in-use")).to_have_text(f"in use by {name}")
    expect(in_use.get_by_role("button")).to_have_count(0)
    alice.once("dialog", lambda dialog: dialog.accept())
    tag_row(alice, "team-a/web:1.0").get_by_role("button", name="Delete team-a/web:1.0").click()
    expect(alice.locator(".flash.success")).to_have_text(
        re.compile(r"^Deleted team-a/web:1\.0; a registry garbage collection would reclaim ")
    )
    expect(tag_row(alice, "team-a/web:1.0")).to_have_count(0)
    expect(alice.get_by_test_id("tag-row")).to_have_count(4)
    assert listed_tags(base, "team-a/web") == ["1.1", "1.2"]
    assert usage(alice, "images") == human(images - pushed["team-a/web:1.0"].size)

    # retention: keep the newest of each repository; 1.2 is the newest web image (and in use)
    alice.get_by_label("images to keep per repository").fill("1")
    alice.get_by_role("button", name="Preview").click()
    expect(alice).to_have_url(re.compile(r"/storage\?group=team-a&keep=1$"))
    going = ["team-a/api:1.0", "team-a/web:1.1"]
    listed = alice.get_by_test_id("retention-tag")
    expect(listed).to_have_count(2)
    assert [item.get_attribute("data-key") for item in listed.all()] == going
    reclaim = human(sum(pushed[key].size for key in going))
    expect(alice.get_by_test_id("reclaim")).to_have_text(
        f"A registry garbage collection would then reclaim {reclaim} "
        "(the layers no remaining tag uses)."
    )
    assert listed_tags(base, "team-a/api") == ["1.0", "2.0"]  # a preview deletes nothing
    alice.screenshot(path=str(artifacts / "storage-retention-preview.png"), full_page=True)
    alice.once("dialog", lambda dialog: dialog.accept())
    alice.get_by_role("button", name="Delete these").click()
    expect(alice.locator(".flash.success")).to_have_text(
        "Deleted 2 tags beyond the newest 1 of each repository; a registry garbage collection "
        f"would reclaim {reclaim}"
    )
    assert [row.get_attribute("data-key") for row in alice.get_by_test_id("tag-row").all()] == [
        "team-a/api:2.0",
        "team-a/web:1.2",
    ]
    assert listed_tags(base, "team-a/api") == ["2.0"]
    assert listed_tags(base, "team-a/web") == ["1.2"]
    alice.screenshot(path=str(artifacts / "storage-after-retention.png"), full_page=True)
    assert violations == []


@pytest.mark.browser
def test_the_volume_choice_follows_the_group_of_the_form(
    page: Page, live_server: LiveServer
) -> None:
    """Someone in several groups picks among the volumes of the group chosen only."""
    create_group(page, live_server, TEAM_A | {"members": ["admin"]})
    body = {"name": "data", "size": "1Gi"}
    made = page.request.post(f"{live_server.url}/api/v1/groups/team-a/volumes", data=body)
    assert made.status == 201, made.text()

    page.goto(f"{live_server.url}/deployments/new?group=demo")
    volume = page.get_by_test_id("mount-row").first.get_by_label("volume", exact=True)
    option = volume.locator("option[value='team-a/data']")
    expect(option).to_be_disabled()
    expect(page.get_by_test_id("mount-none")).to_be_visible()
    page.select_option("select[name=group]", "team-a")
    expect(option).to_be_enabled()
    expect(page.get_by_test_id("mount-none")).to_be_hidden()
    volume.select_option("team-a/data")
    page.get_by_role("button", name="Add volume").click()
    expect(page.get_by_test_id("mount-row")).to_have_count(2)
    expect(
        page.get_by_test_id("mount-row").nth(1).get_by_label("volume", exact=True)
    ).to_have_value("")
    page.select_option("select[name=group]", "demo")  # chosen before, hidden now: unset
    expect(volume).to_have_value("")
