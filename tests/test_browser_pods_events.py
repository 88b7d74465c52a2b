"""In headless Chromium, a crash-looping deployment's page tells why: its pods table shows the
app container killed out of memory (OOMKilled, exit code 137) and the restarts, and its events
table, newest first, shows the ReplicaSet controller's FailedCreate (the group's quota lowered
below what runs) and the kubelet's BackOff as warnings, in words and in colour.

The cluster is ``FakeKube`` with ``FluxStandIn`` (``tests/e2eutil.py`` ``stack``); each step
reconciles and polls explicitly.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2eutil import NS, WAIT, Stack, badge, deploy

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

WARNING_BACKGROUND = "rgb(255, 244, 224)"  # app.css tr.event-warning


def test_the_page_shows_the_oom_killed_pod_and_the_quota_warning(
    page: Page, stack: Stack, artifacts: Path
) -> None:
    stack.poll()
    name, _ = deploy(page, stack.url)  # 2 replicas of 100m + the frpc sidecar's 10m
    oom = {name: "oomkilled"}
    stack.reconcile(scenario=oom)
    expect(badge(page, name)).to_have_text("degraded 0/2", timeout=WAIT)

    # a platform admin lowers the group's quota below what runs (allowed: it cannot grow)
    lowered = page.request.patch(
        f"{stack.url}/api/v1/groups/demo",
        data={"quota": {"cpu": "150m"}},
        headers={"Content-Type": "application/json"},
    )
    assert lowered.status == 200, lowered.text()
    stack.reconcile(scenario=oom)  # the group's ResourceQuota now allows 150m
    pods = stack.pods(name)
    assert len(pods) == 2
    stack.fake.delete("v1", "Pod", NS, pods[0])  # evicted: the ReplicaSet must replace it
    stack.reconcile(scenario=oom)  # ... and the API server refuses the replacement
    [left] = stack.pods(name)

    page.goto(f"{stack.url}/deployments/{name}")
    table = page.get_by_role("table", name=re.compile(r"^1 pod of "))
    expect(table).to_be_visible()
    row = table.locator(f"[data-testid=pod][data-name='{left}']")
    expect(row.get_by_role("rowheader")).to_have_text(left)
    expect(row.get_by_test_id("pod-termination")).to_contain_text("OOMKilled, exit code 137")
    expect(row.get_by_test_id("pod-phase")).to_contain_text("CrashLoopBackOff")
    expect(row.get_by_test_id("pod-ready")).to_have_text("1/2")
    restarts = int(row.get_by_test_id("pod-restarts").inner_text())
    assert restarts >= 6, restarts  # 5 when first seen, one more on every sync since

    events = page.get_by_role("table", name=re.compile(r"^Newest first"))
    refused = events.locator("[data-testid=event][data-reason=FailedCreate]")
    expect(refused).to_have_count(1)
    expect(refused).to_have_class(re.compile(r"\bevent-warning\b"))
    expect(refused.get_by_test_id("event-type")).to_have_text(re.compile(r"Warning$"))
    expect(refused.get_by_test_id("event-object")).to_have_text(
        re.compile(rf"^ReplicaSet/{re.escape(name)}-\w+$")
    )
    message = refused.get_by_test_id("event-message")
    expect(message).to_contain_text(re.compile(r"^Error creating: .* exceeded quota: quota, "))
    expect(message).to_contain_text("limited: limits.cpu=300m,requests.cpu=150m")
    background = refused.locator("td").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == WARNING_BACKGROUND
    back_off = events.locator("[data-testid=event][data-reason=BackOff]").filter(has_text=left)
    expect(back_off).to_have_class(re.compile(r"\bevent-warning\b"))
    expect(back_off.get_by_test_id("event-object")).to_have_text(f"Pod/{left}")
    expect(back_off.get_by_test_id("event-message")).to_contain_text(
        f"Back-off restarting failed container app in pod {left}_{NS}("
    )
    rows = events.locator("[data-testid=event]").evaluate_all(
        "rows => rows.map(r => [r.dataset.reason, r.querySelector('time').dateTime])"
    )
    assert {reason for reason, _ in rows} == {"FailedCreate", "BackOff"}, rows
    seen = [at for _, at in rows]
    assert seen == sorted(seen, reverse=True), rows  # newest first (RFC 3339, all in UTC)
    page.screenshot(path=str(artifacts / "deployment-pods-events.png"), full_page=True)
