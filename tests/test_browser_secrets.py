"""Secret values typed into the deployment form reach Git encrypted and never come back: no
page (cards, the edit form, history, change requests) and no API answer shows them; the card
and the form say who set each one and when, and an edit that leaves one empty keeps it.

Each browser test runs the real app with an age recipient on a fresh embedded remote and
drives headless Chromium as members of ``team-a`` (alice, bob); what Git holds is checked
with the ``git`` binary and by decrypting the deployment's Secret with the cluster's key.
The form's rows are also checked without a browser (``_form_values``, ``_deployment_body``).
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect
from werkzeug.datastructures import MultiDict

from gitops_bridge import sops
from gitops_bridge.render import secrets as secretfiles
from gitops_bridge.render import yamlio
from gitops_bridge.webapp import ui
from tests.apputil import TEAM_A
from tests.conftest import LiveServer
from tests.gitutil import git, head

IMAGE = "registry:5000/team-a/web:1.0"
NEW_IMAGE = "registry:5000/team-a/web:2.0"
KEY = "DATABASE_URL"
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"


# ---- the server, its users, what Git and the API hold ----------------------------------------


@pytest.fixture
def cluster_key() -> str:
    """The age identity of the cluster's ``sops-age`` Secret (Flux decrypts with it)."""
    return sops.generate_identity()


@pytest.fixture
def live_overrides(cluster_key: str) -> dict[str, Any]:
    return {"secrets": {"age_recipients": [sops.public_key(cluster_key)]}}


def secret_value() -> str:
    return f"s3cr3t-{secrets.token_hex(8)}"


def create_group(page: Page, server: LiveServer, **fields: Any) -> None:
    response = page.request.post(
        f"{server.url}/api/v1/groups",
        data=TEAM_A | fields,
        headers={"X-Forwarded-User": "admin"},
    )
    assert response.status == 201, response.text()


def read_deployment(page: Page, server: LiveServer, name: str) -> tuple[dict[str, Any], str]:
    """The API's JSON of the deployment, and its text (to look for values in)."""
    response = page.request.get(f"{server.url}/api/v1/deployments/{name}")
    assert response.status == 200, response.text()
    data: dict[str, Any] = response.json()
    return data, response.text()


def stored_values(remote: Path, cluster_key: str, name: str, ref: str = "main") -> dict[str, str]:
    """The deployment's secret values as Flux reads them: decrypted with the cluster's key."""
    text = git(remote, "show", f"{ref}:{secretfiles.secrets_path('team-a', name)}")
    return secretfiles.values_of(sops.decrypt(yamlio.load(text), [cluster_key]))


def assert_nowhere_in_git(remote: Path, *values: str) -> None:
    """No commit on any branch adds a line with the value, plain or base64."""
    history = git(remote, "log", "--all", "-p", "--format=%H %an%n%B")
    for value in values:
        assert value not in history
        assert base64.b64encode(value.encode()).decode() not in history


def assert_not_shown(page: Page, *values: str) -> None:
    """Neither the page's HTML nor any input's value (what a script could read) holds one
    of the values."""
    html = page.content()
    typed = page.eval_on_selector_all("input, textarea", "els => els.map(el => el.value)")
    for value in values:
        assert value not in html, f"{value} in the HTML of {page.url}"
        assert not [t for t in typed if value in t], f"{value} in an input of {page.url}"


def click_and_land(page: Page, button: Locator) -> int:
    with page.expect_navigation() as nav:
        button.click()
    response = nav.value
    assert response is not None
    return response.status


def card(page: Page, name: str) -> Locator:
    return page.locator(f"[data-testid=deployment-card][data-name='{name}']")


def env_var(page: Page, name: str, key: str) -> Locator:
    return card(page, name).locator(f"[data-testid=env-var][data-name='{key}']")


def row(page: Page, index: int) -> Locator:
    return page.get_by_test_id("env-row").nth(index)


def fill_row(page: Page, index: int, *, name: str, kind: str, **inputs: str) -> None:
    """One env row: its name, its kind (value, secret, ref) and the inputs of that kind."""
    here = row(page, index)
    here.get_by_label("variable name", exact=True).fill(name)
    here.get_by_label("kind of variable").select_option(kind)
    for label, text in inputs.items():
        here.get_by_label(label.replace("_", " "), exact=True).fill(text)


def wait_past(at: str) -> None:
    """Until the clock has left the second of ``at`` (set times are whole seconds)."""
    moment = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    while time.time() < moment + 1.05:
        time.sleep(0.1)


# ---- direct mode ------------------------------------------------------------------------------


@pytest.mark.browser
def test_a_secret_typed_into_the_form_is_shown_masked_and_kept_when_left_empty(
    page: Page, live_server: LiveServer, open_as: Any, cluster_key: str, artifacts: Path
) -> None:
    remote = live_server.remote
    secret, new_secret = secret_value(), secret_value()
    create_group(page, live_server)
    alice = open_as("alice")
    alice.goto(f"{live_server.url}/deployments/new?group=team-a")
    alice.fill("input[name=name]", "web")
    alice.fill("input[name=image]", IMAGE)
    alice.fill("input[name=replicas]", "50")  # refused: the form comes back
    fill_row(alice, 0, name="GREETING", kind="plain", variable_value="hello")
    alice.get_by_role("button", name="Add variable").click()
    # typed as a plain value first, then made secret: the value moves out of sight
    fill_row(alice, 1, name=KEY, kind="plain", variable_value=secret)
    row(alice, 1).get_by_label("kind of variable").select_option("secret")
    secret_input = row(alice, 1).get_by_label("secret value", exact=True)
    plain_input = row(alice, 1).get_by_label("variable value", exact=True)
    expect(secret_input).to_have_attribute("type", "password")
    expect(secret_input).to_have_attribute("autocomplete", "new-password")
    expect(secret_input).to_have_value(secret)
    expect(plain_input).to_be_hidden()
    expect(plain_input).to_have_value("")
    expect(row(alice, 1).get_by_label("Secret name", exact=True)).to_be_hidden()
    alice.get_by_role("button", name="Add variable").click()
    fill_row(alice, 2, name="API_TOKEN", kind="ref", Secret_name="shared-tokens", Secret_key="api")
    expect(row(alice, 2).get_by_label("secret value", exact=True)).to_be_hidden()
    alice.screenshot(path=str(artifacts / "secrets-new-form.png"), full_page=True)
    before = head(remote)

    assert click_and_land(alice, alice.get_by_role("button", name="Deploy")) == 422
    expect(alice.locator(".field-error[data-field=replicas]")).to_have_text(
        "Must be 0..20, got 50."
    )
    # plain values and references come back; the secret does not, and the row says so
    expect(row(alice, 0).get_by_label("variable value", exact=True)).to_have_value("hello")
    expect(row(alice, 1).get_by_label("variable name", exact=True)).to_have_value(KEY)
    expect(row(alice, 1).get_by_label("kind of variable")).to_have_value("secret")
    expect(row(alice, 1).get_by_label("secret value", exact=True)).to_have_value("")
    expect(row(alice, 1).get_by_test_id("secret-hint")).to_contain_text("Enter the value again")
    expect(row(alice, 2).get_by_label("kind of variable")).to_have_value("ref")
    expect(row(alice, 2).get_by_label("Secret name", exact=True)).to_have_value("shared-tokens")
    expect(row(alice, 2).get_by_label("Secret key", exact=True)).to_have_value("api")
    assert_not_shown(alice, secret)
    alice.screenshot(path=str(artifacts / "secrets-form-error.png"), full_page=True)
    assert head(remote) == before

    alice.fill("input[name=replicas]", "1")
    row(alice, 1).get_by_label("secret value", exact=True).fill(secret)
    assert click_and_land(alice, alice.get_by_role("button", name="Deploy")) == 200
    flash = alice.locator(".flash.success")
    expect(flash).to_have_text(re.compile(r"^Deployed web-[a-z0-9]{6}: committed [0-9a-f]{7}$"))
    name = (re.search(r"web-[a-z0-9]{6}", flash.inner_text()) or [""])[0]

    # the card: the plain value, the secret masked with who set it, the reference
    expect(env_var(alice, name, "GREETING")).to_have_text("GREETING=hello")
    expect(env_var(alice, name, KEY)).to_have_text(
        re.compile(rf"^{KEY} ••••• secret set by alice, {STAMP}$")
    )
    expect(env_var(alice, name, "API_TOKEN")).to_have_text("API_TOKEN ← secret shared-tokens/api")
    assert_not_shown(alice, secret)
    alice.screenshot(path=str(artifacts / "secrets-card.png"), full_page=True)

    data, text = read_deployment(alice, live_server, name)
    assert secret not in text
    assert data["env"] == [
        {"name": "GREETING", "value": "hello"},
        {"name": KEY, "secret": True},
        {"name": "API_TOKEN", "secretRef": {"name": "shared-tokens", "key": "api"}},
    ]
    created = data["secrets"][KEY]
    assert created["by"] == "alice"
    assert stored_values(remote, cluster_key, name) == {KEY: secret}

    # the edit form: an empty password input saying who set the value and when
    alice.goto(f"{live_server.url}/deployments/{name}/edit")
    stored = row(alice, 1)
    expect(stored.get_by_label("kind of variable")).to_have_value("secret")
    expect(stored.get_by_label("secret value", exact=True)).to_have_value("")
    expect(stored.get_by_label("secret value", exact=True)).to_have_attribute("type", "password")
    expect(stored.get_by_test_id("secret-hint")).to_have_text(
        re.compile(rf"^set by alice on {STAMP} — leave empty to keep$")
    )
    assert_not_shown(alice, secret)
    alice.screenshot(path=str(artifacts / "secrets-edit.png"), full_page=True)
    alice.set_viewport_size({"width": 420, "height": 900})  # a phone: the input below the name
    alice.screenshot(path=str(artifacts / "secrets-edit-narrow.png"), full_page=True)
    alice.set_viewport_size({"width": 1280, "height": 900})

    # saved with the secret left empty: the value and its time stay
    alice.fill("input[name=image]", NEW_IMAGE)
    assert click_and_land(alice, alice.get_by_role("button", name="Save changes")) == 200
    expect(alice.locator(".flash.success")).to_have_text(re.compile(rf"^Updated {name}: "))
    subject = git(remote, "log", "-1", "--format=%s", "main")
    assert subject == f"Update {name}: image {IMAGE} -> {NEW_IMAGE}"
    data, _ = read_deployment(alice, live_server, name)
    assert data["image"] == NEW_IMAGE
    assert data["secrets"][KEY] == created
    assert stored_values(remote, cluster_key, name) == {KEY: secret}

    # a new value typed: set again, by alice, later
    wait_past(created["at"])
    alice.goto(f"{live_server.url}/deployments/{name}/edit")
    row(alice, 1).get_by_label("secret value", exact=True).fill(new_secret)
    assert click_and_land(alice, alice.get_by_role("button", name="Save changes")) == 200
    expect(alice.locator(".flash.success")).to_have_text(re.compile(rf"^Updated {name}: "))
    assert_not_shown(alice, secret, new_secret)
    assert git(remote, "log", "-1", "--format=%s", "main") == (
        f"Update {name}: secret set {KEY} by alice"
    )
    data, text = read_deployment(alice, live_server, name)
    assert data["secrets"][KEY]["by"] == "alice"
    assert data["secrets"][KEY]["at"] > created["at"]
    assert new_secret not in text
    assert stored_values(remote, cluster_key, name) == {KEY: new_secret}

    # the history: who set it, not what; every diff shown
    alice.goto(f"{live_server.url}/deployments/{name}/history")
    versions = alice.get_by_test_id("version")
    expect(versions).to_have_count(3)
    expect(versions.nth(0).locator(".summary")).to_have_text(f"secret set {KEY} by alice")
    expect(versions.nth(1).locator(".summary")).to_have_text(f"image {IMAGE} -> {NEW_IMAGE}")
    for details in alice.locator("details.diff").all():
        details.locator("summary").click()
    assert_not_shown(alice, secret, new_secret)
    alice.screenshot(path=str(artifacts / "secrets-history.png"), full_page=True)

    alice.goto(f"{live_server.url}/deployments/{name}/edit")
    assert_not_shown(alice, secret, new_secret)
    alice.goto(f"{live_server.url}/deployments")
    expect(env_var(alice, name, KEY)).to_contain_text("set by alice")
    assert_not_shown(alice, secret, new_secret)
    assert_nowhere_in_git(remote, secret, new_secret)


# ---- review mode --------------------------------------------------------------------------------


@pytest.mark.browser
def test_a_secret_set_in_a_change_request_is_shown_nowhere_until_and_after_approval(
    page: Page, live_server: LiveServer, open_as: Any, cluster_key: str, artifacts: Path
) -> None:
    remote = live_server.remote
    secret, new_secret = secret_value(), secret_value()
    create_group(page, live_server, review="pull-request")
    alice, bob = open_as("alice"), open_as("bob")

    # created through the form: a change request bob approves
    alice.goto(f"{live_server.url}/deployments/new?group=team-a")
    alice.fill("input[name=name]", "web")
    alice.fill("input[name=image]", IMAGE)
    fill_row(alice, 0, name=KEY, kind="secret", secret_value=secret)
    assert click_and_land(alice, alice.get_by_role("button", name="Deploy")) == 200
    flash = alice.locator(".flash.info")
    expect(flash).to_have_text(re.compile(r"^Waiting for review: “Deploy web-\w{6} to team-a”"))
    name = (re.search(r"web-[a-z0-9]{6}", flash.inner_text()) or [""])[0]
    assert_not_shown(alice, secret)
    bob.goto(f"{live_server.url}/changes")
    create = bob.get_by_test_id("change")
    expect(create).to_have_count(1)
    create.locator("summary").click()
    assert_not_shown(bob, secret)
    assert click_and_land(bob, create.get_by_role("button", name="Approve")) == 200
    data, _ = read_deployment(alice, live_server, name)
    created = data["secrets"][KEY]
    assert stored_values(remote, cluster_key, name) == {KEY: secret}

    # alice types a new value: main keeps the old one until bob approves
    wait_past(created["at"])
    main = head(remote)
    alice.goto(f"{live_server.url}/deployments/{name}/edit")
    expect(row(alice, 0).get_by_test_id("secret-hint")).to_contain_text("set by alice on")
    row(alice, 0).get_by_label("secret value", exact=True).fill(new_secret)
    assert click_and_land(alice, alice.get_by_role("button", name="Save changes")) == 200
    expect(alice.locator(".flash.info")).to_have_text(
        re.compile(rf"^Waiting for review: “Update {name}: secret set DATABASE_URL by alice”")
    )
    expect(card(alice, name).locator(".status.pending")).to_have_text("pending review")
    assert_not_shown(alice, secret, new_secret)
    assert head(remote) == main
    (branch,) = git(
        remote, "for-each-ref", "--format=%(refname:short)", "refs/heads/changes/"
    ).splitlines()
    branch_values = stored_values(remote, cluster_key, name, branch)
    assert branch_values == {KEY: new_secret}

    # the change request: who set it, a diff with the annotation only; no value anywhere
    change_id = branch.removeprefix("changes/")
    bob.goto(f"{live_server.url}/changes/{change_id}")
    item = bob.get_by_test_id("change")
    expect(item.get_by_role("heading", level=2)).to_have_text(
        f"Update {name}: secret set {KEY} by alice"
    )
    item.locator("summary").click()
    expect(item.get_by_test_id("diff")).to_contain_text("gitops-bridge.code-hub.com/secrets")
    assert_not_shown(bob, secret, new_secret)
    bob.screenshot(path=str(artifacts / "secrets-change.png"), full_page=True)
    bob.goto(f"{live_server.url}/changes")
    assert_not_shown(bob, secret, new_secret)

    bob.goto(f"{live_server.url}/changes/{change_id}")
    assert click_and_land(bob, bob.get_by_role("button", name="Approve")) == 200
    data, text = read_deployment(alice, live_server, name)
    assert data["secrets"][KEY]["by"] == "alice"
    assert data["secrets"][KEY]["at"] > created["at"]
    assert secret not in text and new_secret not in text
    assert stored_values(remote, cluster_key, name) == {KEY: new_secret}
    alice.goto(f"{live_server.url}/deployments/{name}/history")
    expect(alice.get_by_test_id("version").nth(0).locator(".summary")).to_have_text(
        f"secret set {KEY} by alice"
    )
    assert_not_shown(alice, secret, new_secret)
    assert_nowhere_in_git(remote, secret, new_secret)


# ---- the form's rows, without a browser ------------------------------------------------------


def rows_form(**columns: list[str]) -> MultiDict[str, str]:
    fields = {
        "name": ["web"],
        "image": [IMAGE],
        "replicas": ["1"],
        "port": ["8080"],
        "cpu": ["100m"],
        "memory": ["128Mi"],
    }
    return MultiDict([(key, v) for key, values in (fields | columns).items() for v in values])


FORM = rows_form(
    env_name=["PLAIN", KEY, "KEEP", "REF", ""],
    env_kind=["plain", "secret", "secret", "ref", "secret"],
    env_value=["a\r\nb", "ignored", "", "", ""],
    env_secret=["", "s3cr3t-typed", "", "", ""],
    env_ref_name=["", "", "", " shared ", ""],
    env_ref_key=["", "", "", " api ", ""],
)


def test_each_kind_of_row_makes_its_api_entry_and_empty_rows_are_dropped() -> None:
    body = ui._deployment_body(ui._form_values(FORM), FORM)
    assert body["env"] == [
        {"name": "PLAIN", "value": "a\nb"},  # the textarea's CRLF is the LF typed
        {"name": KEY, "secret": True, "value": "s3cr3t-typed"},
        {"name": "KEEP", "secret": True},  # left empty: keeps the value stored
        {"name": "REF", "secretRef": {"name": "shared", "key": "api"}},
    ]


def test_the_form_shown_again_holds_no_secret_value() -> None:
    values = ui._form_values(FORM)
    assert "s3cr3t-typed" not in repr(values)
    assert [(row["name"], row["kind"], row["retype"]) for row in values["env"]] == [
        ("PLAIN", "plain", False),
        (KEY, "secret", True),  # typed: to be typed again
        ("KEEP", "secret", False),
        ("REF", "ref", False),
    ]
    assert values["env"][0]["value"] == "a\nb"
    assert values["env"][1]["value"] == ""  # what its hidden textarea held is dropped too
    assert (values["env"][3]["ref_name"], values["env"][3]["ref_key"]) == ("shared", "api")


@pytest.mark.parametrize("kinds", [[], ["bogus", "plain"]])
def test_rows_without_a_known_kind_are_plain_values(kinds: list[str]) -> None:
    form = rows_form(env_name=["A", "B"], env_value=["1", "2"], env_kind=kinds)
    body = ui._deployment_body(ui._form_values(form), form)
    assert body["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
