"""Recently deleted in the browser: a deployment deleted from its card is found under Recently
deleted (who, when, its last version), Restore asks first (Cancel changes nothing), then
commits that version back as the user, and the card is on the Deployments page again."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.apputil import TEAM_A
from tests.conftest import LiveServer
from tests.gitutil import files, git, head, show

IMAGE = "registry:5000/team-a/web:1.0"
SHA7 = "[0-9a-f]{7}"


def api(page: Page, server: LiveServer, path: str, body: Any, user: str) -> dict[str, Any]:
    response = page.request.post(
        f"{server.url}/api/v1{path}", data=body, headers={"X-Forwarded-User": user}
    )
    assert response.status in (200, 201), response.text()
    data: dict[str, Any] = response.json()
    return data


@pytest.mark.browser
def test_delete_then_restore_it_from_recently_deleted(
    page: Page, live_server: LiveServer, artifacts: Path
) -> None:
    remote = live_server.remote
    api(page, live_server, "/groups", TEAM_A, "admin")
    body = {"name": "web", "image": IMAGE, "replicas": 2}
    name = api(page, live_server, "/groups/team-a/deployments", body, "alice")["name"]
    path = f"tenants/team-a/apps/{name}.yaml"
    content = show(remote, path)
    page.set_extra_http_headers({"X-Forwarded-User": "alice"})

    # delete it from its card
    page.goto(f"{live_server.url}/deployments?group=team-a")
    card = page.locator(f"[data-testid=deployment-card][data-name='{name}']")
    card.get_by_role("link", name="Delete…").click()
    with page.expect_navigation():
        page.get_by_role("dialog").get_by_role("button", name=f"Delete {name}").click()
    expect(card).to_have_count(0)
    assert path not in files(remote)
    deleted_by = head(remote)

    # found under Recently deleted: who, when, the last version
    page.get_by_test_id("recently-deleted").click()
    expect(page).to_have_url(re.compile(r"/deployments/deleted\?group=team-a$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Recently deleted in team-a")
    item = page.locator(f"[data-testid=deleted][data-name='{name}']")
    expect(item).to_have_count(1)
    expect(item.get_by_test_id("deleted-by")).to_contain_text("Deleted by alice")
    expect(item.get_by_test_id("deleted-by")).to_contain_text(deleted_by[:7])
    expect(item).to_contain_text(f"Last version: {IMAGE}, 2 replicas")
    page.screenshot(path=str(artifacts / "deleted-list.png"), full_page=True)

    # Restore asks first; Cancel changes nothing
    dialog = page.get_by_role("dialog", name=f"Restore {name}?")
    expect(dialog).to_be_hidden()
    item.get_by_role("link", name="Restore…").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("back to group team-a")
    page.screenshot(path=str(artifacts / "deleted-restore-dialog.png"))
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert head(remote) == deleted_by

    # without JavaScript the same link shows the confirm step on the page
    fallback = page.request.get(
        f"{live_server.url}/deployments/deleted?group=team-a&confirm={name}",
        headers={"X-Forwarded-User": "alice"},
    )
    assert fallback.status == 200 and 'data-testid="restore-confirm"' in fallback.text()
    assert f'action="/deployments/{name}/restore"' in fallback.text()

    # Restore: the version before the delete, committed by alice; the card is back
    item.get_by_role("link", name="Restore…").click()
    with page.expect_navigation():
        dialog.get_by_role("button", name=f"Restore {name}").click()
    expect(page).to_have_url(re.compile(r"/deployments(\?.*)?$"))
    flash = page.locator(".flash.success")
    expect(flash).to_have_text(
        re.compile(rf"^Restored {re.escape(name)} to its version of {SHA7}: committed {SHA7}")
    )
    expect(page.locator(f"[data-testid=deployment-card][data-name='{name}']")).to_have_count(1)
    page.screenshot(path=str(artifacts / "deleted-restored.png"), full_page=True)
    assert show(remote, path) == content
    author, subject = git(remote, "log", "-1", "--format=%an%n%s", "main").splitlines()
    assert author == "alice" and subject.startswith(f"Restore {name} to its version of")

    # and no longer under Recently deleted
    page.goto(f"{live_server.url}/deployments/deleted?group=team-a")
    expect(page.get_by_test_id("deleted")).to_have_count(0)
    expect(page.get_by_test_id("nothing-deleted")).to_be_visible()
