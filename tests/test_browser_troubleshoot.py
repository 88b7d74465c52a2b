"""In headless Chromium, one deployment whose app is killed for its memory, followed the way a
developer would: the card names the last exit, and the deployment's page shows the pod's
OOMKilled reason, the quota event of a pod the ReplicaSet could not replace, and restart
markers on the usage graphs; the logs page shows the killed container's last lines.

Everything comes from the stand-ins as a cluster reports it (``tests/e2eutil.py`` ``stack``):
the kubelet stand-in restarts the container on every sync (``oomkilled``), records its log as
the previous instance's and its usage as PodMetrics; the ReplicaSet controller stand-in records
FailedCreate when the group's ResourceQuota refuses a pod. The poller's clock moves a usage
step per reconcile: nothing sleeps through a step."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2eutil import NS, STEP, WAIT, Later, Stack, badge, card, deploy

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

KILLED_LINE = "loading the catalogue into memory (2,400,000 items)"  # the kubelet stand-in's


def restarts_in_cluster(stack: Stack, name: str) -> int:
    return sum(
        int(status.get("restartCount") or 0)
        for pod in stack.fake.items("v1", "Pod", NS)
        if pod["metadata"]["labels"].get("app.kubernetes.io/instance") == name
        for status in (pod.get("status") or {}).get("containerStatuses") or ()
        if status.get("name") == "app"
    )


def restarts_read(stack: Stack, name: str) -> int:
    poller = stack.rt.monitor.poller
    assert poller is not None
    reading = poller.state.reading
    ident = name.rsplit("-", 1)[1]
    pods = reading.pods.get((NS, ident), []) if reading is not None else []
    return sum(
        int(status.get("restartCount") or 0)
        for pod in pods
        for status in (pod.get("status") or {}).get("containerStatuses") or ()
        if status.get("name") == "app"
    )


def settle(stack: Stack, name: str) -> None:
    """Poll until the reading holds the restarts the cluster has (the watches bring them)."""
    deadline = time.monotonic() + 10
    while restarts_read(stack, name) != restarts_in_cluster(stack, name):
        if time.monotonic() > deadline:
            pytest.fail("the reading never caught up with the pods' restarts")
        time.sleep(0.02)
    stack.poll()


def test_an_oom_killed_deployment_tells_why(page: Page, stack: Stack, artifacts: Path) -> None:
    stack.poll()
    name, _ = deploy(page, stack.url)  # 2 replicas of 100m, exposed (an frpc sidecar each)
    poller = stack.rt.monitor.poller
    assert poller is not None
    clock = Later()
    poller.clock = clock
    oom = {name: "oomkilled"}
    seen = []
    for n in range(1, 5):  # a step each: every sync of the kubelet restarts the container again
        clock.ahead = n * STEP
        stack.reconcile(scenario=oom)
        settle(stack, name)
        seen.append(restarts_read(stack, name))
    assert seen == sorted(seen) and seen[-1] > seen[0], seen  # the restarts rose step by step

    # the card: degraded, and why the container last ended
    page.goto(f"{stack.url}/deployments")
    expect(badge(page, name)).to_have_text("degraded 0/2", timeout=WAIT)
    expect(card(page, name).get_by_test_id("status-detail")).to_contain_text(
        "last exit: OOMKilled (code 137)", timeout=WAIT
    )

    # a platform admin lowers the group's quota below what runs; a pod evicted then cannot
    # be replaced: the ReplicaSet controller's FailedCreate
    lowered = page.request.patch(
        f"{stack.url}/api/v1/groups/demo",
        data={"quota": {"cpu": "150m"}},
        headers={"Content-Type": "application/json"},
    )
    assert lowered.status == 200, lowered.text()
    clock.ahead = 5 * STEP
    stack.reconcile(scenario=oom)
    evicted, *_ = sorted(stack.pods(name))
    stack.fake.delete("v1", "Pod", NS, evicted)
    stack.reconcile(scenario=oom)
    settle(stack, name)
    [left] = stack.pods(name)

    page.get_by_test_id("detail-link").filter(has_text=name.rsplit("-", 1)[0]).first.click()
    expect(page).to_have_url(re.compile(rf"/deployments/{name}$"))
    pod = page.locator(f"[data-testid=pod][data-name='{left}']")
    expect(pod.get_by_test_id("pod-termination")).to_contain_text("OOMKilled, exit code 137")
    refused = page.locator("[data-testid=event][data-reason=FailedCreate]")
    expect(refused).to_have_count(1)
    expect(refused).to_have_class(re.compile(r"\bevent-warning\b"))
    expect(refused.get_by_test_id("event-message")).to_contain_text("exceeded quota")
    for graph in ("graph-cpu", "graph-memory"):
        markers = page.get_by_test_id(graph).get_by_test_id("restart-marker")
        expect(markers.first).to_be_attached()
        titles = markers.locator("title").all_text_contents()
        assert titles and all(t.endswith(": OOMKilled") for t in titles), titles
    expect(page.get_by_test_id("usage-restarts")).to_contain_text("OOMKilled")
    page.screenshot(path=str(artifacts / "troubleshoot-page.png"), full_page=True)

    # the logs of the instance that was killed: its last lines, and no exit message of its own
    page.goto(f"{stack.url}/deployments/{name}/logs")
    page.get_by_label("Pod").select_option(left)
    page.get_by_label("Previous container (after a crash)").set_checked(True)
    page.get_by_label("Follow").set_checked(False)
    page.get_by_role("button", name="Show").click()
    log = page.get_by_test_id("log")
    expect(log).to_contain_text(KILLED_LINE)
    expect(log).not_to_contain_text("exit status")
    page.screenshot(path=str(artifacts / "troubleshoot-previous-logs.png"), full_page=True)
