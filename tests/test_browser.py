"""The web UI in headless Chromium commits to the real bare remote: form -> HelmRelease by the user.

Every test runs its own server on a fresh embedded remote (repo-template + group ``demo``),
drives the pages as a user would, and checks the result in Git with the ``git`` binary.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from playwright.sync_api import Browser, Page, expect

from gitops_bridge.webapp import listing_pages

if TYPE_CHECKING:
    from conftest import LiveServer

IMAGE = "registry:5000/demo/web:1.0"
TRICKY_VALUE = "say \"hi\"\nthen {{ .Values.x }} and 'quotes'"


def git(remote: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "--git-dir", str(remote), *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"git {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def head(remote: Path) -> str:
    return git(remote, "rev-parse", "main").strip()


def last_commit(remote: Path) -> tuple[str, str]:
    author, subject = git(remote, "log", "-1", "--format=%an%n%s", "main").splitlines()
    return author, subject


def helmrelease(remote: Path, group: str, name: str) -> dict[str, Any]:
    doc = yaml.safe_load(git(remote, "show", f"main:tenants/{group}/apps/{name}.yaml"))
    assert isinstance(doc, dict)
    return doc


def fill_deployment(
    page: Page,
    *,
    group: str,
    name: str,
    image: str = IMAGE,
    replicas: str = "1",
    port: str = "8080",
    cpu: str | None = None,
    expose: bool = True,
) -> None:
    page.select_option("select[name=group]", group)
    page.fill("input[name=name]", name)
    page.fill("input[name=image]", image)
    page.fill("input[name=replicas]", replicas)
    page.fill("input[name=port]", port)
    if cpu is not None:
        page.fill("input[name=cpu]", cpu)
    page.set_checked("input[name=expose]", expose)


def submit(page: Page) -> int:
    """Click Deploy; the status of the page the browser lands on (after any redirect)."""
    with page.expect_navigation() as nav:
        page.get_by_role("button", name="Deploy").click()
    response = nav.value
    assert response is not None
    return response.status


def deployed_name(page: Page, app: str) -> tuple[str, str]:
    """From the success flash: ('<app>-<id>', '<sha7>')."""
    flash = page.locator(".flash.success")
    expect(flash).to_have_text(
        re.compile(rf"^Deployed {app}-[a-z0-9]{{6}}: committed [0-9a-f]{{7}}$")
    )
    match = re.fullmatch(
        rf"Deployed ({app}-[a-z0-9]{{6}}): committed ([0-9a-f]{{7}})", flash.inner_text()
    )
    assert match, flash.inner_text()
    return match[1], match[2]


def create_group_via_api(page: Page, server: LiveServer, body: dict[str, Any]) -> None:
    response = page.request.post(f"{server.url}/api/v1/groups", data=body)
    assert response.status == 201, response.text()


TEAM_A = {
    "name": "team-a",
    "members": ["alice"],
    "quota": {"cpu": "2", "memory": "4Gi", "deployments": 3},
}


@pytest.mark.browser
def test_new_deployment_through_the_form_commits_a_helmrelease_by_the_user(
    page: Page, live_server: LiveServer, artifacts: Path
) -> None:
    remote = live_server.remote
    page.goto(f"{live_server.url}/deployments")
    expect(page.get_by_test_id("user")).to_contain_text("admin")
    expect(page.get_by_test_id("deployment-card")).to_have_count(0)

    page.get_by_role("link", name="New deployment").first.click()
    expect(page).to_have_url(re.compile(r"/deployments/new"))
    fill_deployment(page, group="demo", name="web", replicas="2", port="8080", expose=True)
    page.get_by_role("button", name="Add variable").click()
    page.get_by_role("button", name="Add variable").click()
    rows = page.locator(".env-row")
    expect(rows).to_have_count(3)  # the empty first row plus the two added
    rows.nth(0).get_by_label("variable name").fill("GREETING")
    rows.nth(0).get_by_label("variable value").fill("hello")
    rows.nth(1).get_by_label("variable name").fill("TEMPLATE")
    rows.nth(1).get_by_label("variable value").click()
    rows.nth(1).get_by_label("variable value").press_sequentially(TRICKY_VALUE)
    expect(rows.nth(1).get_by_label("variable value")).to_have_value(TRICKY_VALUE)
    # the third row stays empty: empty rows are dropped
    before = head(remote)

    assert submit(page) == 200
    expect(page).to_have_url(re.compile(r"/deployments\?group=demo$"))
    name, sha7 = deployed_name(page, "web")
    card = page.locator(f"[data-testid=deployment-card][data-name='{name}']")
    expect(card).to_have_count(1)
    expect(card.locator("h2")).to_contain_text("web")
    expect(card.locator("h2")).to_contain_text(name.removeprefix("web-"))
    expect(card).to_contain_text(IMAGE)
    expect(card.locator("dt:text-is('Replicas') + dd")).to_have_text("2")
    url = f"https://{name}.code-hub.com"
    expect(card.get_by_role("link", name=url)).to_have_attribute("href", url)
    expect(card.locator(".status")).to_have_text(f"committed {sha7}")
    page.screenshot(path=str(artifacts / "deployments.png"), full_page=True)

    # the real remote: one new commit on main, by admin, naming the deployment
    after = head(remote)
    assert after != before and after.startswith(sha7)
    assert git(remote, "rev-parse", "main~1").strip() == before
    author, subject = last_commit(remote)
    assert author == "admin"
    assert subject == f"Deploy {name} to demo"
    doc = helmrelease(remote, "demo", name)
    assert doc["kind"] == "HelmRelease"
    assert doc["metadata"]["name"] == name
    values = doc["spec"]["values"]
    assert values["image"] == IMAGE
    assert values["replicas"] == 2
    assert values["port"] == 8080
    assert values["expose"] is True
    # byte-for-byte what was typed: browsers submit textarea newlines as CRLF, the app
    # must store the LF the user typed
    assert values["env"] == [
        {"name": "GREETING", "value": "hello"},
        {"name": "TEMPLATE", "value": TRICKY_VALUE},
    ], "env values differ from what was typed into the form"


@pytest.mark.browser
def test_bad_input_shows_the_form_again_with_messages_and_commits_nothing(
    page: Page, live_server: LiveServer, artifacts: Path
) -> None:
    before = head(live_server.remote)
    page.goto(f"{live_server.url}/deployments/new")
    fill_deployment(page, group="demo", name="My_App", replicas="50")

    assert submit(page) == 422
    expect(page).to_have_url(re.compile(r"/deployments/new$"))
    expect(page.get_by_role("heading", name="New deployment")).to_be_visible()
    name_error = page.locator(".field-error[data-field=name]")
    expect(name_error).to_have_text(re.compile(r"^Must be a DNS label .*got 'My_App'\.$"))
    expect(page.locator(".field-error[data-field=replicas]")).to_have_text("Must be 0..20, got 50.")
    expect(page.get_by_test_id("form-error")).to_contain_text("2 fields need attention")
    expect(page.locator("input[name=name]")).to_have_value("My_App")
    expect(page.locator("input[name=replicas]")).to_have_value("50")
    expect(page.locator("input[name=image]")).to_have_value(IMAGE)
    expect(page.locator("select[name=group]")).to_have_value("demo")
    # the image is fine: no message for it
    expect(page.locator(".field-error[data-field=image]")).to_have_count(0)
    # nothing sticks out of the form box (the 4-column row used to push inputs past it);
    # an env row shows only the inputs of its kind
    box = page.locator("form.form").bounding_box()
    assert box is not None
    shown = "form.form :is(input:not([type=hidden]), select, textarea):visible"
    for field in page.locator(shown).all():
        inner = field.bounding_box()
        assert inner is not None
        assert inner["x"] + inner["width"] <= box["x"] + box["width"], field.evaluate(
            "el => el.outerHTML"
        )
    assert head(live_server.remote) == before

    page.screenshot(path=str(artifacts / "deployment-form-error.png"), full_page=True)


@pytest.mark.browser
def test_group_created_by_admin_is_usable_by_its_member(
    browser: Browser, page: Page, live_server: LiveServer, artifacts: Path
) -> None:
    remote = live_server.remote
    page.goto(f"{live_server.url}/groups")
    form = page.locator("form[action$='/groups']")
    form.locator("input[name=name]").fill("team-a")
    form.locator("input[name=members]").fill("alice")
    form.locator("input[name=cpu]").fill("2")
    form.locator("input[name=memory]").fill("4Gi")
    form.locator("input[name=deployments]").fill("3")
    with page.expect_navigation() as nav:
        form.get_by_role("button", name="Create group").click()
    assert nav.value is not None and nav.value.status == 200
    expect(page.locator(".flash.success")).to_have_text("Created group team-a")
    card = page.locator("[data-testid=group-card][data-name=team-a]")
    expect(card).to_contain_text("group-team-a")
    expect(card.locator("dt:text-is('Members') + dd")).to_have_text("alice")
    expect(card.locator("dt:text-is('CPU') + dd")).to_have_text("0 of 2 cores · 2 cores free")
    expect(card.locator("dt:text-is('Memory') + dd")).to_have_text("0 of 4Gi · 4Gi free")
    expect(card.locator("dt:text-is('Deployments') + dd")).to_have_text("0 of 3 · 3 left")
    assert last_commit(remote) == ("admin", "Create group team-a")

    context = browser.new_context(extra_http_headers={"X-Forwarded-User": "alice"})
    context.set_default_timeout(10_000)
    try:
        alice = context.new_page()
        alice.goto(f"{live_server.url}/groups")
        expect(alice.get_by_test_id("user")).to_have_text("alice")
        cards = alice.get_by_test_id("group-card")
        expect(cards).to_have_count(1)
        expect(cards.first).to_have_attribute("data-name", "team-a")
        expect(cards.first.locator("dt:text-is('CPU') + dd")).to_have_text(
            re.compile("^0 of 2 cores")
        )
        expect(alice.locator("[data-testid=group-card][data-name=demo]")).to_have_count(0)
        expect(alice.get_by_role("button", name="Create group")).to_have_count(0)

        alice.goto(f"{live_server.url}/deployments/new")
        options = alice.locator("select[name=group] option")
        expect(options).to_have_count(1)
        expect(options).to_have_text("team-a")
        fill_deployment(alice, group="team-a", name="api", replicas="1")
        assert submit(alice) == 200
        name, _ = deployed_name(alice, "api")
        expect(alice.locator(f"[data-testid=deployment-card][data-name='{name}']")).to_contain_text(
            "alice"
        )
        assert last_commit(remote) == ("alice", f"Deploy {name} to team-a")
        doc = helmrelease(remote, "team-a", name)
        assert doc["metadata"]["namespace"] == "group-team-a"

        # usage now counts 2 pods (1 replica + 1 surge) x (100m app + 10m frpc)
        alice.goto(f"{live_server.url}/groups")
        expect(alice.locator("[data-testid=group-card] dt:text-is('CPU') + dd")).to_have_text(
            "220m of 2 cores · 1.8 cores free"
        )
        alice.screenshot(path=str(artifacts / "groups-alice.png"), full_page=True)
    finally:
        context.close()


@pytest.mark.browser
def test_deployment_over_the_group_quota_is_refused_with_the_numbers(
    page: Page, live_server: LiveServer
) -> None:
    create_group_via_api(page, live_server, TEAM_A)
    before = head(live_server.remote)
    page.goto(f"{live_server.url}/deployments/new?group=team-a")
    fill_deployment(page, group="team-a", name="big", replicas="20", cpu="100m", expose=False)

    assert submit(page) == 422
    error = page.locator(".field-error[data-field=replicas]")
    # 20 replicas + 1 rolling-update pod = 21 pods x 100m = 2100m > 2, at the replicas
    expect(error).to_have_text(
        "This needs 2.1 cores of CPU (21 pods of 100m each: 20 replicas + 1 rolling-update "
        "pod); the group has 2 cores, none in use — lower the replicas or the CPU per pod."
    )
    expect(page.get_by_test_id("form-error")).to_contain_text("1 field needs attention")
    expect(page.locator("input[name=replicas]")).to_have_value("20")
    assert head(live_server.remote) == before


@pytest.mark.browser
def test_form_post_without_csrf_token_is_forbidden(page: Page, live_server: LiveServer) -> None:
    page.goto(f"{live_server.url}/deployments/new")  # the session now holds a token
    token = page.locator("input[name=csrf_token]").get_attribute("value")
    assert token
    before = head(live_server.remote)
    form = {"group": "demo", "name": "sneaky", "image": IMAGE, "replicas": "1", "port": "8080"}

    response = page.request.post(f"{live_server.url}/deployments/new", form=form)
    assert response.status == 403
    assert "did not come from this site" in response.text()
    forged = page.request.post(
        f"{live_server.url}/deployments/new", form=form | {"csrf_token": "forged-" + token}
    )
    assert forged.status == 403
    assert head(live_server.remote) == before

    # the same form with the page's token goes through: the 403s were about the token only
    ok = page.request.post(
        f"{live_server.url}/deployments/new",
        form=form | {"cpu": "100m", "memory": "128Mi", "csrf_token": token},
        max_redirects=0,
    )
    assert ok.status == 302, ok.text()
    assert head(live_server.remote) != before


@pytest.mark.browser
def test_pages_work_under_their_content_security_policy(
    page: Page, live_server: LiveServer
) -> None:
    """The CSP allows what the pages use (app.js, fetch, dialogs) and nothing inline: no
    page reports a violation, and the group filter still submits itself."""
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    for path in ("/deployments", "/deployments/new", "/groups", "/changes"):
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.goto(f"{live_server.url}/deployments")
    page.select_option("select[name=group]", "demo")
    expect(page).to_have_url(re.compile(r"/deployments\?group=demo$"))
    assert violations == []


@pytest.mark.browser
def test_the_admin_overview_leads_to_a_groups_cards_a_page_at_a_time(
    page: Page, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, artifacts: Path
) -> None:
    """With more deployments than a page of cards in several groups the admin gets the
    group overview; a row opens the group's cards, a page at a time, and the live refresh
    of either asks for that page only (304 while it is unchanged), never reloading it."""
    monkeypatch.setattr(listing_pages, "CARDS", 1)
    create_group_via_api(page, live_server, TEAM_A)
    for app in ("web", "api"):
        body = {"name": app, "image": "registry:5000/team-a/web:1.0"}
        made = page.request.post(f"{live_server.url}/api/v1/groups/team-a/deployments", data=body)
        assert made.status == 201, made.text()

    def refreshed(part: str) -> int:
        with page.expect_response(lambda r: part in r.url) as answer:
            pass
        return answer.value.status

    page.goto(f"{live_server.url}/deployments")
    expect(page.get_by_test_id("group-row")).to_have_count(2)
    row = page.locator("[data-testid=group-row][data-name=team-a]")
    expect(row.locator("[data-field=deployments]")).to_contain_text("2 of 3")
    expect(page.get_by_test_id("deployment-card")).to_have_count(0)
    assert refreshed("part=rows") == 304
    page.screenshot(path=str(artifacts / "deployments-overview.png"), full_page=True)

    row.get_by_role("link", name="team-a").click()
    expect(page).to_have_url(re.compile(r"/deployments\?group=team-a$"))
    cards = page.get_by_test_id("deployment-card")
    expect(cards).to_have_count(1)
    expect(cards.first.locator("h2")).to_contain_text("api")
    page.get_by_test_id("next-page").click()
    expect(cards.first.locator("h2")).to_contain_text("web")
    page.evaluate("window.sameDocument = true")  # a reload would drop it
    assert refreshed("/api/v1/deployments?group=team-a") == 200
    assert refreshed("/api/v1/deployments?group=team-a") == 304
    assert page.evaluate("window.sameDocument") is True
    page.get_by_test_id("previous-page").click()
    expect(cards.first.locator("h2")).to_contain_text("api")
