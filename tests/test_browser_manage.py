"""Managing deployments in the browser (card actions, history, review) commits exactly what
it says to the real bare remote, by the user, or leaves main alone when it is refused.

Each test runs the real app on a fresh embedded remote, drives headless Chromium as a
member of group ``team-a`` (alice, bob), and checks the outcome with the ``git`` binary.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import APIRequestContext, Locator, Page, expect

from tests.apputil import TEAM_A
from tests.conftest import LiveServer
from tests.gitutil import files, git, head, show

WAITS = "; nothing changes until another member approves it · View the change"
IMAGE = "registry:5000/team-a/web:1.0"
NEW_IMAGE = "registry:5000/team-a/web:2.0"
MULTILINE = "line one\nline two: {{ not a template }}"
SHA7 = "[0-9a-f]{7}"

OpenAs = Callable[[str], Page]


# ---- servers, users, set-up through the API -----------------------------------------------


@contextmanager
def serve(data_dir: Path, **overrides: Any) -> Iterator[LiveServer]:
    """Like the ``live_server`` fixture, with settings overrides (e.g. review mode)."""
    from werkzeug.serving import make_server

    from gitops_bridge import config
    from gitops_bridge.webapp import create_app

    settings = config.load(data_dir=data_dir, **overrides)
    app = create_app(settings)
    assert settings.embedded_remote is not None
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        yield LiveServer(url=url, app=app, remote=settings.embedded_remote)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def review_server(tmp_path: Path) -> Iterator[LiveServer]:
    """Review mode with the built-in review (no forge): members approve each other's changes."""
    with serve(tmp_path / "data", review={"mode": "pull-request"}) as server:
        yield server


def api(
    request: APIRequestContext, server: LiveServer, path: str, body: Any, *, user: str = "admin"
) -> dict[str, Any]:
    response = request.post(
        f"{server.url}/api/v1{path}", data=body, headers={"X-Forwarded-User": user}
    )
    assert response.status in (200, 201, 202), response.text()
    data: dict[str, Any] = response.json()
    return data


def team_with_web(page: Page, server: LiveServer, **fields: Any) -> str:
    """Group team-a (alice, bob) and alice's deployment ``web`` on main: its name."""
    api(page.request, server, "/groups", TEAM_A)
    body = {"name": "web", "image": IMAGE, "replicas": 1, "expose": True} | fields
    created = api(page.request, server, "/groups/team-a/deployments", body, user="alice")
    if "change" in created:  # review mode: bob approves it
        api(page.request, server, f"/changes/{created['change']['id']}/approve", {}, user="bob")
    name: str = created["name"]
    return name


# ---- reading the page and the remote ----------------------------------------------------------


def card(page: Page, name: str) -> Locator:
    return page.locator(f"[data-testid=deployment-card][data-name='{name}']")


def field(locator: Locator, label: str) -> Locator:
    return locator.locator(f"dt:text-is('{label}') + dd")


def click_and_land(page: Page, button: Locator) -> int:
    """Click a submit button; the status of the page the browser lands on."""
    with page.expect_navigation() as nav:
        button.click()
    response = nav.value
    assert response is not None
    return response.status


def flash_sha(page: Page, text: str) -> str:
    """The sha7 of a success flash ``<text>: committed <sha7>`` (anything may follow)."""
    flash = page.locator(".flash.success")
    expect(flash).to_have_text(re.compile(rf"^{re.escape(text)}: committed {SHA7}\b"))
    match = re.search(rf"committed ({SHA7})", flash.inner_text())
    assert match
    return match[1]


def app_path(name: str, group: str = "team-a") -> str:
    return f"tenants/{group}/apps/{name}.yaml"


def values(remote: Path, name: str, ref: str = "main") -> dict[str, Any]:
    doc = yaml.safe_load(show(remote, app_path(name), ref))
    assert doc["kind"] == "HelmRelease"
    result: dict[str, Any] = doc["spec"]["values"]
    return result


def last_commit(remote: Path, ref: str = "main") -> tuple[str, str]:
    author, subject = git(remote, "log", "-1", "--format=%an%n%s", ref).splitlines()
    return author, subject


def change_branches(remote: Path) -> list[str]:
    out = git(remote, "for-each-ref", "--format=%(refname:short)", "refs/heads/changes/")
    return out.splitlines()


# ---- direct mode: card actions -------------------------------------------------------------


@pytest.mark.browser
def test_scale_from_the_card_commits_the_new_replicas_by_the_user(
    page: Page, live_server: LiveServer, open_as: OpenAs, artifacts: Path
) -> None:
    remote = live_server.remote
    name = team_with_web(page, live_server)
    alice = open_as("alice")
    alice.goto(f"{live_server.url}/deployments")
    web = card(alice, name)
    expect(web.locator(".status.committed")).to_have_text(f"committed {head(remote)[:7]}")
    expect(web.locator(".status.pending")).to_have_count(0)

    # refused: the message in the card and on top, the status kept, nothing committed
    before = head(remote)
    web.get_by_label(f"Replicas of {name}").fill("50")
    assert click_and_land(alice, web.get_by_role("button", name="Scale")) == 422
    expect(alice.get_by_test_id("action-error")).to_have_text(
        f"{name}: Replicas: must be 0..20, got 50."
    )
    expect(web.get_by_test_id("card-error")).to_have_text("Replicas: must be 0..20, got 50.")
    expect(web.get_by_label(f"Replicas of {name}")).to_have_value("50")
    alice.screenshot(path=str(artifacts / "manage-card-error.png"), full_page=True)
    assert head(remote) == before

    web.get_by_label(f"Replicas of {name}").fill("3")
    assert click_and_land(alice, web.get_by_role("button", name="Scale")) == 200
    expect(alice).to_have_url(re.compile(r"/deployments$"))
    sha7 = flash_sha(alice, f"Scaled {name} to 3 replicas")
    expect(alice.locator(".flash.success")).to_have_text(
        f"Scaled {name} to 3 replicas: committed {sha7}"
    )
    expect(field(web, "Replicas")).to_have_text("3")
    expect(web.locator(".status.committed")).to_have_text(f"committed {sha7}")
    expect(web.get_by_test_id("card-error")).to_have_count(0)
    alice.screenshot(path=str(artifacts / "manage-cards.png"), full_page=True)

    assert head(remote).startswith(sha7)
    assert git(remote, "rev-parse", "main~1") == before
    assert last_commit(remote) == ("alice", f"Scale {name} to 3 replicas")
    assert values(remote, name)["replicas"] == 3


@pytest.mark.browser
def test_edit_prefills_the_form_and_commits_image_and_a_multiline_env_value(
    page: Page, live_server: LiveServer, open_as: OpenAs, artifacts: Path
) -> None:
    remote = live_server.remote
    name = team_with_web(page, live_server, env=[{"name": "GREETING", "value": "hello"}])
    alice = open_as("alice")
    alice.goto(f"{live_server.url}/deployments")
    card(alice, name).get_by_role("link", name="Edit").click()
    expect(alice).to_have_url(re.compile(rf"/deployments/{name}/edit$"))
    expect(alice.get_by_role("heading", name=f"Edit {name}")).to_be_visible()
    # the name is shown, not editable, and not sent
    fixed = alice.get_by_test_id("fixed-name")
    expect(fixed).to_have_value(name)
    expect(fixed).not_to_be_editable()
    expect(alice.locator("input[name=name], select[name=group]")).to_have_count(0)
    expect(alice.locator("input[name=image]")).to_have_value(IMAGE)
    expect(alice.locator("input[name=replicas]")).to_have_value("1")
    expect(alice.locator("input[name=port]")).to_have_value("8080")
    expect(alice.locator("input[name=cpu]")).to_have_value("100m")
    expect(alice.locator("input[name=memory]")).to_have_value("128Mi")
    expect(alice.locator("input[name=expose]")).to_be_checked()
    rows = alice.locator(".env-row")
    expect(rows).to_have_count(1)
    expect(rows.nth(0).get_by_label("variable name")).to_have_value("GREETING")
    expect(rows.nth(0).get_by_label("variable value")).to_have_value("hello")
    alice.screenshot(path=str(artifacts / "manage-edit.png"), full_page=True)

    # a bad image first: the form comes back with the message and what was typed
    before = head(remote)
    alice.fill("input[name=image]", "Registry:5000/Team/Web")
    assert click_and_land(alice, alice.get_by_role("button", name="Save changes")) == 422
    expect(alice.locator(".field-error[data-field=image]")).to_contain_text("Must be")
    expect(alice.get_by_test_id("fixed-name")).to_have_value(name)
    assert head(remote) == before

    alice.fill("input[name=image]", NEW_IMAGE)
    alice.get_by_role("button", name="Add variable").click()
    rows.nth(1).get_by_label("variable name").fill("MOTD")
    rows.nth(1).get_by_label("variable value").click()
    rows.nth(1).get_by_label("variable value").press_sequentially(MULTILINE)
    assert click_and_land(alice, alice.get_by_role("button", name="Save changes")) == 200
    expect(alice).to_have_url(re.compile(r"/deployments\?group=team-a$"))  # its group's cards
    sha7 = flash_sha(alice, f"Updated {name}")
    expect(field(card(alice, name), "Image")).to_have_text(NEW_IMAGE)

    assert head(remote).startswith(sha7)
    author, subject = last_commit(remote)
    assert author == "alice"
    assert subject == f"Update {name}: image {IMAGE} -> {NEW_IMAGE}; env added MOTD"
    result = values(remote, name)
    assert result["image"] == NEW_IMAGE
    assert result["env"] == [
        {"name": "GREETING", "value": "hello"},
        {"name": "MOTD", "value": MULTILINE},
    ], "env differs from what was typed (CRLF from the textarea must become LF)"
    assert result["replicas"] == 1 and result["port"] == 8080 and result["expose"] is True


@pytest.mark.browser
def test_restart_commits_a_restarted_at_stamp_and_nothing_else(
    page: Page, live_server: LiveServer, open_as: OpenAs
) -> None:
    remote = live_server.remote
    name = team_with_web(page, live_server)
    before = values(remote, name)
    assert "restartedAt" not in before
    alice = open_as("alice")
    alice.goto(f"{live_server.url}/deployments")

    card(alice, name).get_by_role("link", name="Restart…").click()
    dialog = alice.locator(f"#restart-{name}")
    expect(dialog).to_be_visible()
    assert click_and_land(alice, dialog.get_by_role("button", name=f"Restart {name}")) == 200
    sha7 = flash_sha(alice, f"Restarted {name}")

    assert head(remote).startswith(sha7)
    assert last_commit(remote) == ("alice", f"Restart {name}")
    after = values(remote, name)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", after.pop("restartedAt"))
    assert after.pop("specDigest") != before.pop("specDigest")  # the digest of the values
    assert after == before
    assert git(remote, "diff", "--name-only", "main~1", "main") == app_path(name)


@pytest.mark.browser
def test_delete_after_a_confirm_step_then_restore_it_from_its_history(
    page: Page, live_server: LiveServer, open_as: OpenAs, artifacts: Path
) -> None:
    remote = live_server.remote
    name = team_with_web(page, live_server)
    assert app_path(name) in files(remote)
    content = show(remote, app_path(name))
    alice = open_as("alice")
    alice.goto(f"{live_server.url}/deployments")
    dialog = alice.get_by_role("dialog", name=f"Delete {name}?")

    # the confirm step: a dialog; Cancel closes it and changes nothing
    before = head(remote)
    expect(dialog).to_be_hidden()
    card(alice, name).get_by_role("link", name="Delete…").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("restore it from there")
    alice.screenshot(path=str(artifacts / "manage-delete-dialog.png"))
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(alice).to_have_url(re.compile(r"/deployments$"))
    assert head(remote) == before

    # without JavaScript the same link is a confirm page with the same form
    fallback = alice.request.get(f"{live_server.url}/deployments/{name}/delete")
    assert fallback.status == 200 and f"Delete {name}?" in fallback.text()
    assert f'action="/deployments/{name}/delete"' in fallback.text()

    card(alice, name).get_by_role("link", name="Delete…").click()
    assert click_and_land(alice, dialog.get_by_role("button", name=f"Delete {name}")) == 200
    sha7 = flash_sha(alice, f"Deleted {name}")
    expect(card(alice, name)).to_have_count(0)
    assert head(remote).startswith(sha7)
    assert last_commit(remote) == ("alice", f"Delete {name} from team-a")
    assert app_path(name) not in files(remote)

    # its history, still reachable from the flash: restore the version before the deletion
    alice.locator(".flash.success").get_by_role("link", name=re.compile("^History")).click()
    expect(alice).to_have_url(re.compile(rf"/deployments/{name}/history$"))
    expect(alice.get_by_role("heading", level=1)).to_have_text(f"History of {name} deleted")
    versions = alice.get_by_test_id("version")
    expect(versions).to_have_count(2)
    deletion, created = versions.nth(0), versions.nth(1)
    expect(deletion).to_have_attribute("data-commit", re.compile(f"^{sha7}"))
    expect(deletion.locator(".summary")).to_have_text("deleted")
    expect(deletion.get_by_role("link", name="Restore this version…")).to_have_count(0)
    version = (created.get_attribute("data-commit") or "")[:7]
    # the confirm step shows what the restore will commit: the file back, whole
    created.get_by_role("link", name="Restore this version…").click()
    expect(alice.get_by_role("heading", level=1)).to_have_text(f"Restore {name}?")
    preview = alice.get_by_test_id("diff")
    expect(preview).to_be_visible()
    expect(preview.locator(".meta").first).to_have_text("--- /dev/null")
    expect(preview.locator(".add").filter(has_text="kind: HelmRelease")).to_have_count(1)
    assert head(remote).startswith(sha7)  # nothing committed by looking
    assert click_and_land(alice, alice.get_by_test_id("confirm")) == 200
    expect(alice).to_have_url(re.compile(r"/deployments$"))
    restored = flash_sha(alice, f"Restored {name} to its version of {version}")
    expect(card(alice, name)).to_have_count(1)

    assert head(remote).startswith(restored)
    author, subject = last_commit(remote)
    assert (author, subject) == ("alice", f"Restore {name} to its version of {version}")
    assert show(remote, app_path(name)) == content


# ---- history: revert ---------------------------------------------------------------------------


@pytest.mark.browser
def test_history_reverts_a_scale_and_refuses_a_conflicting_revert(
    page: Page, live_server: LiveServer, open_as: OpenAs, artifacts: Path
) -> None:
    remote = live_server.remote
    name = team_with_web(page, live_server)
    alice = open_as("alice")
    alice.goto(f"{live_server.url}/deployments")
    for replicas in ("2", "3"):
        card(alice, name).get_by_label(f"Replicas of {name}").fill(replicas)
        assert click_and_land(alice, card(alice, name).get_by_role("button", name="Scale")) == 200
        flash_sha(alice, f"Scaled {name} to {replicas} replicas")

    card(alice, name).get_by_role("link", name="History").click()
    expect(alice).to_have_url(re.compile(rf"/deployments/{name}/history$"))
    versions = alice.get_by_test_id("version")
    expect(versions).to_have_count(3)
    to3, to2, created = versions.nth(0), versions.nth(1), versions.nth(2)
    expect(to3.locator(".subject")).to_have_text(f"Scale {name} to 3 replicas")
    expect(to3.locator(".summary")).to_have_text("replicas 2 -> 3")
    expect(to3.locator(".byline")).to_contain_text("alice")
    expect(to3.locator("time")).to_have_text(re.compile(r"^(just now|\d+ minutes? ago)$"))
    expect(to3.locator(".byline")).to_contain_text(
        re.compile(r"\(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)")
    )
    expect(to3).to_contain_text("current version")
    expect(to3.get_by_role("link", name="Restore this version…")).to_have_count(0)
    expect(to2.get_by_role("link", name="Restore this version…")).to_have_count(1)
    expect(created.locator(".summary")).to_have_text(f"created with image {IMAGE}, 1 replicas")
    # the diff: collapsed, then coloured lines
    diff = to3.get_by_test_id("diff")
    expect(diff).to_be_hidden()
    to3.locator("summary").click()
    expect(diff.locator(".del")).to_have_text(re.compile(r"^-\s+replicas: 2$"))
    expect(diff.locator(".add")).to_have_text(re.compile(r"^\+\s+replicas: 3$"))
    expect(diff.locator(".hunk")).to_have_count(1)
    alice.screenshot(path=str(artifacts / "history.png"), full_page=True)

    # reverting 1 -> 2 conflicts with the later 2 -> 3: the message on top, nothing committed
    before = head(remote)
    sha_to2 = (to2.get_attribute("data-commit") or "")[:7]
    assert click_and_land(alice, to2.get_by_role("link", name="Revert this change…")) == 409
    expect(alice).to_have_url(re.compile(rf"/deployments/{name}/revert\?commit="))
    expect(alice.get_by_test_id("action-error")).to_have_text(
        re.compile(
            rf"^reverting {sha_to2} conflicts with later changes .*{re.escape(app_path(name))}"
            r".*; restore a version instead$"
        )
    )
    expect(alice.get_by_test_id("version")).to_have_count(3)
    assert head(remote) == before

    # reverting 2 -> 3 brings back 2
    sha_to3 = (versions.nth(0).get_attribute("data-commit") or "")[:7]
    versions.nth(0).get_by_role("link", name="Revert this change…").click()
    # the preview: the diff the revert commits, before anything is written
    expect(alice.get_by_role("heading", level=1)).to_have_text(f"Revert {name}?")
    preview = alice.get_by_test_id("diff")
    expect(preview.locator(".del")).to_have_text(re.compile(r"^-\s+replicas: 3$"))
    expect(preview.locator(".add")).to_have_text(re.compile(r"^\+\s+replicas: 2$"))
    alice.screenshot(path=str(artifacts / "revert-preview.png"), full_page=True)
    assert head(remote) == before
    assert click_and_land(alice, alice.get_by_test_id("confirm")) == 200
    expect(alice).to_have_url(re.compile(r"/deployments$"))
    sha7 = flash_sha(alice, f"Reverted {sha_to3} of {name}")
    expect(field(card(alice, name), "Replicas")).to_have_text("2")
    assert head(remote).startswith(sha7)
    assert last_commit(remote) == ("alice", f'Revert "Scale {name} to 3 replicas"')
    assert values(remote, name)["replicas"] == 2


# ---- review mode: change requests ------------------------------------------------------------


@pytest.mark.browser
def test_review_mode_edit_waits_until_another_member_approves_it(
    page: Page, review_server: LiveServer, open_as: OpenAs, artifacts: Path
) -> None:
    remote = review_server.remote
    api(page.request, review_server, "/groups", TEAM_A)
    alice, bob = open_as("alice"), open_as("bob")

    # a new deployment: a card with only the badge until bob approves it
    alice.goto(f"{review_server.url}/deployments/new?group=team-a")
    alice.fill("input[name=name]", "web")
    alice.fill("input[name=image]", IMAGE)
    main = head(remote)
    assert click_and_land(alice, alice.get_by_role("button", name="Deploy")) == 200
    flash = alice.locator(".flash.info")
    expect(flash).to_have_text(
        re.compile(
            r"^Waiting for review: “Deploy web-\w{6} to team-a”; nothing changes until another "
            r"member approves it · View the change$"
        )
    )
    name = (re.search(r"web-\w{6}", flash.inner_text()) or [""])[0]
    web = card(alice, name)
    expect(web.locator(".status.pending")).to_have_text("pending review")
    expect(web.locator(".status.committed")).to_have_count(0)
    expect(web.get_by_role("button", name="Scale")).to_have_count(0)
    expect(alice.get_by_test_id("changes-count")).to_have_text("1 open")
    assert head(remote) == main
    bob.goto(f"{review_server.url}/changes")
    create = bob.get_by_test_id("change")
    expect(create).to_have_count(1)
    assert click_and_land(bob, create.get_by_role("button", name="Approve")) == 200
    flash_sha(bob, f"You approved “Deploy {name} to team-a” (proposed by alice)")
    assert last_commit(remote) == ("alice", f"Deploy {name} to team-a")

    # alice edits: the card says pending review (linking to the change), main stays as is
    main = head(remote)
    alice.goto(f"{review_server.url}/deployments/{name}/edit")
    alice.fill("input[name=image]", NEW_IMAGE)
    assert click_and_land(alice, alice.get_by_role("button", name="Save changes")) == 200
    expect(alice.locator(".flash.info")).to_have_text(
        f"Waiting for review: “Update {name}: image {IMAGE} -> {NEW_IMAGE}”{WAITS}"
    )
    expect(web.locator(".status.committed")).to_have_text(f"committed {main[:7]}")
    badge = web.locator(".status.pending")
    expect(badge).to_have_text("pending review")
    expect(field(web, "Image")).to_have_text(IMAGE)
    assert head(remote) == main
    (branch,) = change_branches(remote)
    assert re.fullmatch(rf"changes/team-a/{name}/update-\w{{6}}", branch), branch
    change_id = branch.removeprefix("changes/")
    expect(badge).to_have_attribute("href", f"/changes/{change_id}")
    alice.screenshot(path=str(artifacts / "manage-pending.png"), full_page=True)

    # alice is not offered to approve her own change (the server refuses it too: 403)
    badge.click()
    expect(alice).to_have_url(re.compile(rf"/changes/{change_id}$"))
    mine = alice.get_by_test_id("change")
    expect(mine).to_contain_text(f"image {IMAGE} -> {NEW_IMAGE}")
    expect(mine.get_by_role("button", name="Approve")).to_have_count(0)
    expect(mine.get_by_test_id("own-change")).to_have_text(
        "You proposed this: another member approves it."
    )
    refused = alice.request.post(f"{review_server.url}/api/v1/changes/{change_id}/approve", data={})
    assert refused.status == 403
    assert refused.json()["message"] == "alice wrote this change: another member must approve it"
    assert head(remote) == main
    assert change_branches(remote) == [branch]

    # bob sees it under Changes (with its diff) and approves it
    bob.goto(f"{review_server.url}/deployments")
    expect(bob.get_by_test_id("changes-count")).to_have_text("1 open")
    bob.get_by_role("link", name=re.compile("^Changes")).click()
    item = bob.locator(f"[data-testid=change][data-id='{change_id}']")
    expect(item.get_by_role("heading")).to_have_text(f"Update {name}: image {IMAGE} -> {NEW_IMAGE}")
    expect(field(item, "Author")).to_have_text("alice")
    expect(field(item, "Group")).to_have_text("team-a")
    expect(field(item, "Deployment")).to_have_text(name)
    item.locator("summary").click()
    expect(item.locator(".diff-text .add")).to_contain_text(f"image: {NEW_IMAGE}")
    bob.screenshot(path=str(artifacts / "changes.png"), full_page=True)
    assert click_and_land(bob, item.get_by_role("button", name="Approve")) == 200
    expect(bob).to_have_url(re.compile(r"/changes$"))
    sha7 = flash_sha(
        bob, f"You approved “Update {name}: image {IMAGE} -> {NEW_IMAGE}” (proposed by alice)"
    )
    expect(bob.get_by_test_id("change")).to_have_count(0)
    expect(bob.get_by_test_id("changes-count")).to_have_count(0)
    # the history says who approved it
    bob.goto(f"{review_server.url}/deployments/{name}/history")
    newest = bob.get_by_test_id("version").first
    expect(newest.get_by_test_id("approved-by")).to_have_text("approved by bob")

    assert head(remote).startswith(sha7)
    assert git(remote, "rev-parse", "main~1") == main
    assert last_commit(remote)[0] == "alice"
    trailers = git(remote, "log", "-1", "--format=%(trailers:only,unfold)", "main")
    assert "Approved-by: bob" in trailers.splitlines()
    assert values(remote, name)["image"] == NEW_IMAGE
    assert change_branches(remote) == []
    alice.goto(f"{review_server.url}/deployments")
    expect(field(web, "Image")).to_have_text(NEW_IMAGE)
    expect(web.locator(".status.pending")).to_have_count(0)


@pytest.mark.browser
def test_review_mode_closing_a_change_drops_its_branch_and_commits_nothing(
    page: Page, review_server: LiveServer, open_as: OpenAs
) -> None:
    remote = review_server.remote
    name = team_with_web(page, review_server)
    main = head(remote)
    alice, bob = open_as("alice"), open_as("bob")
    alice.goto(f"{review_server.url}/deployments")
    card(alice, name).get_by_label(f"Replicas of {name}").fill("4")
    assert click_and_land(alice, card(alice, name).get_by_role("button", name="Scale")) == 200
    expect(alice.locator(".flash.info")).to_have_text(
        f"Waiting for review: “Scale {name} to 4 replicas”{WAITS}"
    )
    (branch,) = change_branches(remote)
    assert values(remote, name, branch)["replicas"] == 4

    bob.goto(f"{review_server.url}/changes/{branch.removeprefix('changes/')}")
    expect(bob.get_by_role("heading", level=2)).to_have_text(f"Scale {name} to 4 replicas")
    bob.get_by_role("link", name="Close…").click()
    assert click_and_land(bob, bob.get_by_role("button", name="Close it")) == 200
    expect(bob).to_have_url(re.compile(r"/changes$"))
    expect(bob.locator(".flash.success")).to_have_text(
        f"Closed “Scale {name} to 4 replicas”: nothing committed"
    )
    expect(bob.get_by_test_id("change")).to_have_count(0)
    assert change_branches(remote) == []
    assert head(remote) == main
    assert values(remote, name)["replicas"] == 1

    # the closed change is gone: deciding on it again says so, on the Changes page
    bob.goto(f"{review_server.url}/deployments")
    token = bob.locator("input[name=csrf_token]").first.get_attribute("value") or ""
    change_id = branch.removeprefix("changes/")
    response = bob.request.post(
        f"{review_server.url}/changes/{change_id}/approve", form={"csrf_token": token}
    )
    assert response.status == 404
    assert "approved or closed already?" in response.text()
    assert head(remote) == main
