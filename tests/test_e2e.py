"""End to end in headless Chromium: form -> commit -> Flux -> cluster -> live card, and logs.

No API server can run here, so the cluster is ``FakeKube`` (an HTTP-level fake of the Kubernetes
API, spoken to by the app's real client) with ``FluxStandIn`` playing Flux on the real embedded
remote with the real helm and kubectl. The background scheduler is not started: each test
reconciles and polls explicitly (``rt.monitor.poller.run_once()``), and the page's own 3 s
refresh must bring the new reading onto the card without a reload.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from gitops_bridge import quantity
from tests import kubelet
from tests.e2eutil import (
    HR,
    IMAGE_2,
    NS,
    WAIT,
    Stack,
    badge,
    build_app,
    card,
    click_and_land,
    deploy,
    deploy_running,
    flash_sha,
    serve,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def mark_document(page: Page) -> None:
    """A flag on the window: it survives live updates and is gone after any reload."""
    page.evaluate("window.__e2eMark = 'still here'")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__e2eMark") == "still here", "the page was reloaded"


def fake_log(stack: Stack, pod: str, container: str) -> list[str]:
    """A pod's log read from the fake over HTTP, as kubectl logs would."""
    url = f"{stack.fake.url}/api/v1/namespaces/{NS}/pods/{pod}/log?container={container}"
    request = urllib.request.Request(url, headers={"Authorization": "Bearer fake-token"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body: bytes = response.read()
    return body.decode().splitlines()


def pod_limits(stack: Stack, name: str) -> tuple[quantity.Quantity, quantity.Quantity]:
    """The limits of all replicas, from the Deployment Flux applied (not from the app)."""
    deployment = stack.fake.get("apps/v1", "Deployment", NS, name)
    assert deployment is not None
    cpu = memory = quantity.Quantity(0)
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        cpu = cpu + quantity.parse(container["resources"]["limits"]["cpu"])
        memory = memory + quantity.parse(container["resources"]["limits"]["memory"])
    replicas = int(deployment["spec"]["replicas"])
    return cpu * replicas, memory * replicas


def pod_usage(stack: Stack) -> tuple[quantity.Quantity, quantity.Quantity]:
    """The summed PodMetrics of the namespace, read from the fake's metrics API."""
    url = f"{stack.fake.url}/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods"
    request = urllib.request.Request(url, headers={"Authorization": "Bearer fake-token"})
    with urllib.request.urlopen(request, timeout=5) as response:
        items = json.load(response)["items"]
    cpu = memory = quantity.Quantity(0)
    for item in items:
        for container in item["containers"]:
            cpu = cpu + quantity.parse(container["usage"]["cpu"])
            memory = memory + quantity.parse(container["usage"]["memory"])
    return cpu, memory


# ---- the tests --------------------------------------------------------------------------------


def test_form_commit_flux_then_the_card_runs_live_with_usage_and_url(
    page: Page, stack: Stack, artifacts: Path
) -> None:
    stack.poll()  # a reading without any Flux status yet: Git is ahead of the cluster
    name, sha7 = deploy(page, stack.url)
    assert name.startswith("web-")
    expect(badge(page, name)).to_have_text(f"committed {sha7}")
    applied = card(page, name).locator("[data-field=applied]")
    expect(applied).not_to_contain_text("live")  # nothing runs yet
    mark_document(page)

    commit = stack.reconcile()
    assert commit.startswith(sha7)
    assert len(stack.pods(name)) == 2

    expect(badge(page, name)).to_have_text("running 2/2", timeout=WAIT)
    expect(applied).to_contain_text(f"{sha7} · live {sha7}")  # the version the cluster runs
    used_cpu, used_memory = pod_usage(stack)
    limit_cpu, limit_memory = pod_limits(stack, name)
    assert 0 < used_cpu.value < limit_cpu.value and 0 < used_memory.value < limit_memory.value
    for field, used, limit in (("cpu", used_cpu, limit_cpu), ("memory", used_memory, limit_memory)):
        shown = card(page, name).locator(f"[data-field={field}]")  # what the pods use now
        expect(shown).to_have_text(re.compile(r"^using \S+ of \S+ limit$"))
        reading = shown.inner_text().removeprefix("using ").removesuffix(" limit")
        shown_used, shown_limit = (quantity.parse(q) for q in reading.split(" of "))
        assert shown_limit == limit, f"{field}: {shown.inner_text()}, limit {limit}"
        assert abs(shown_used.value - used.value) <= used.value / 100, f"{field}: {used}"
    url = f"https://{name}.code-hub.com"
    expect(card(page, name).get_by_role("link", name=url)).to_have_attribute("href", url)
    expect(card(page, name).get_by_test_id("status-detail")).to_be_hidden()
    expect(card(page, name).get_by_role("button", name="Retry")).to_be_hidden()
    assert_not_reloaded(page)
    page.screenshot(path=str(artifacts / "e2e-running.png"), full_page=True)


def test_failed_upgrade_shows_flux_reason_and_message_and_retry_annotates(
    page: Page, stack: Stack, artifacts: Path
) -> None:
    name, _ = deploy_running(page, stack)
    card(page, name).get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name=f"Edit {name}")).to_be_visible()
    page.fill("input[name=image]", IMAGE_2)
    assert click_and_land(page, page.get_by_role("button", name="Save changes")) == 200
    sha7 = flash_sha(page, f"Updated {name}")
    expect(badge(page, name)).to_have_text(f"committed {sha7}")
    mark_document(page)

    stack.reconcile(scenario={name: "failed-upgrade"})
    ready = next(c for c in stack.release(name)["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "UpgradeFailed")

    expect(badge(page, name)).to_have_text("failed (UpgradeFailed)", timeout=WAIT)
    detail = card(page, name).get_by_test_id("status-detail")
    expect(detail).to_be_visible()
    expect(detail).to_contain_text("UpgradeFailed")
    expect(detail).to_contain_text(ready["message"])
    expect(detail).to_contain_text("Remediated: RollbackSucceeded")
    retry = card(page, name).get_by_role("button", name="Retry")
    expect(retry).to_be_visible()
    expect(card(page, name).locator("dd.mono").first).to_have_text(IMAGE_2)  # what Git wants
    assert_not_reloaded(page)
    page.screenshot(path=str(artifacts / "e2e-failed.png"), full_page=True)

    assert click_and_land(page, retry) == 200
    expect(page.locator(".flash.info")).to_have_text(f"Asked Flux to retry {name}")
    annotations = stack.release(name)["metadata"].get("annotations") or {}
    stamps = {
        key: annotations.get(f"reconcile.fluxcd.io/{key}")
        for key in ("requestedAt", "forceAt", "resetAt")
    }
    assert all(stamps.values()), annotations
    assert len(set(stamps.values())) == 1, stamps  # one request: the same token on all three


def test_crash_loop_is_degraded_with_the_container_reason(page: Page, stack: Stack) -> None:
    stack.poll()
    name, _ = deploy(page, stack.url)
    mark_document(page)
    stack.reconcile(scenario={name: "crashloop"})

    expect(badge(page, name)).to_have_text(re.compile(r"^degraded [01]/2$"), timeout=WAIT)
    expect(badge(page, name)).to_have_text("degraded 0/2")
    detail = card(page, name).get_by_test_id("status-detail")
    expect(detail).to_be_visible()
    expect(detail).to_contain_text("CrashLoopBackOff")
    expect(detail).to_contain_text(re.compile(rf"pod {name}-\w+-\w+"))
    expect(card(page, name).get_by_role("button", name="Retry")).to_be_hidden()
    assert_not_reloaded(page)


def test_a_missing_frp_secret_shows_on_the_card_live_until_provisioned(
    page: Page, stack: Stack
) -> None:
    stack.fake.delete("v1", "Secret", NS, "frp-token")  # not provisioned for group demo yet
    stack.poll()
    name, _ = deploy(page, stack.url)
    mark_document(page)
    stack.reconcile()
    problems = card(page, name).get_by_test_id("problems")
    note = f"exposure not configured: Secret frp-token missing in {NS}"
    expect(problems).to_have_text(note, timeout=WAIT)
    expect(badge(page, name)).to_have_text("degraded 0/2")

    stack.fake.apply(kubelet.frp_token(NS))
    stack.reconcile()
    expect(badge(page, name)).to_have_text("running 2/2", timeout=WAIT)
    expect(problems).to_be_hidden()
    assert_not_reloaded(page)


def test_without_a_cluster_the_cards_show_what_git_holds(
    page: Page, tmp_path: Path, artifacts: Path
) -> None:
    app, rt = build_app(tmp_path / "data", mode="none")
    assert rt.monitor.poller is None and not rt.monitor.connected
    with serve(app) as url:
        name, sha7 = deploy(page, url)
        expect(page.get_by_test_id("not-connected")).to_be_visible()
        expect(page.get_by_test_id("not-connected")).to_contain_text("No cluster is connected")
        expect(badge(page, name)).to_have_text(f"committed {sha7}")
        # the live refresh keeps saying so (it must not turn into "not connected")
        with page.expect_response(lambda r: "/api/v1/deployments" in r.url, timeout=WAIT) as live:
            pass
        assert live.value.status in (200, 304)  # 304: the page as the last refresh had it
        expect(badge(page, name)).to_have_text(f"committed {sha7}")
        expect(page.get_by_test_id("action-error")).to_have_count(0)
        page.screenshot(path=str(artifacts / "e2e-not-connected.png"), full_page=True)

        response = page.goto(f"{url}/deployments/{name}/logs")
        assert response is not None and response.status == 200
        expect(page.get_by_test_id("not-connected")).to_contain_text("no logs to read")
        retry = page.request.post(
            f"{url}/api/v1/deployments/{name}/retry",
            data="{}",
            headers={"Content-Type": "application/json"},
        )
        assert retry.status == 503, retry.text()


def test_logs_show_the_pod_log_and_follow_new_lines_members_only(
    browser: Browser, page: Page, stack: Stack, artifacts: Path
) -> None:
    name, _ = deploy_running(page, stack)
    pods = sorted(stack.pods(name))
    published = fake_log(stack, pods[0], "app")
    assert published, "the stand-in published no log lines"

    card(page, name).get_by_role("link", name="Logs").click()
    expect(page.get_by_role("heading", name=f"Logs {name}")).to_be_visible()
    expect(page.locator("select[name=pod] option")).to_have_text(["All pods", *pods])
    expect(page.locator("select[name=pod]")).to_have_value(pods[0])  # one pod first, as before
    log = page.get_by_test_id("log")
    for line in published:
        expect(log).to_contain_text(line)
    mark_document(page)

    stack.fake.append_log(NS, pods[0], "app", "GET /e2e 200 0.4ms")
    expect(log).to_contain_text("GET /e2e 200 0.4ms", timeout=WAIT)
    assert log.inner_text().splitlines() == [*published, "GET /e2e 200 0.4ms"]
    assert_not_reloaded(page)
    page.screenshot(path=str(artifacts / "e2e-logs.png"), full_page=True)
    page.goto("about:blank")  # closes the event stream before the servers stop

    context = browser.new_context(extra_http_headers={"X-Forwarded-User": "mallory"})
    context.set_default_timeout(10_000)
    try:
        mallory = context.new_page()
        response = mallory.goto(f"{stack.url}/deployments/{name}/logs")
        assert response is not None and response.status == 404  # hidden from non-members
        api = mallory.request.get(f"{stack.url}/api/v1/deployments/{name}/logs")
        assert api.status == 404, api.text()
        assert "GET / 200" not in api.text()
    finally:
        context.close()


def test_deleting_is_listed_until_flux_has_pruned_the_release(
    page: Page, stack: Stack, artifacts: Path
) -> None:
    name, _ = deploy_running(page, stack)
    card(page, name).get_by_role("link", name="Delete…").click()
    dialog = page.get_by_role("dialog", name=f"Delete {name}?")
    expect(dialog).to_be_visible()
    assert click_and_land(page, dialog.get_by_role("button", name=f"Delete {name}")) == 200
    flash_sha(page, f"Deleted {name}")
    # gone from Git, not yet from the cluster
    expect(badge(page, name)).to_have_text("deleting")

    stack.reconcile(hold_deletes=True)
    assert stack.release(name)["metadata"].get("deletionTimestamp")
    assert stack.pods(name)
    page.reload()
    expect(card(page, name)).to_have_count(1)
    expect(badge(page, name)).to_have_text("deleting")
    expect(card(page, name).locator(".hint")).to_have_text(
        "Deleted from main: Flux is removing it from the cluster."
    )
    page.screenshot(path=str(artifacts / "e2e-deleting.png"), full_page=True)

    stack.reconcile()
    assert stack.fake.get(*HR, NS, name) is None and stack.pods(name) == []
    page.reload()
    expect(card(page, name)).to_have_count(0)
    expect(page.get_by_text("No deployments yet")).to_be_visible()
