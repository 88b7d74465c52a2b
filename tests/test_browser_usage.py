"""In Chromium, on the end-to-end stack: a deployment polled over several steps with changing
metrics and an app container killed for memory shows CPU and memory graphs of its last hour
against the limits of its pods, a restart marker where the kill was seen (OOMKilled in its
title and beside the graphs), the samples as a table, and passes axe's WCAG 2 A/AA rules.

Time is the poller's clock, moved a step per poll: nothing sleeps through a step."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests import axe
from tests.e2eutil import NS, STEP, Later, Stack, deploy_running

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def kill_for_memory(stack: Stack, pod: str, restarts: int) -> None:
    """What the kubelet reports after the app container was OOMKilled and started again."""
    found = stack.fake.get("v1", "Pod", NS, pod)
    assert found is not None
    status: dict[str, Any] = found["status"]
    for container in status["containerStatuses"]:
        if container["name"] == "app":
            container["restartCount"] = restarts
            container["lastState"] = {
                "terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": "now"}
            }
    stack.fake.set_status("v1", "Pod", NS, pod, status)


def app_restarts(stack: Stack, deployment_id: str) -> int:
    """The app containers' restarts in the poller's latest reading (the watch's view)."""
    assert stack.rt.monitor.poller is not None
    reading = stack.rt.monitor.poller.state.reading
    pods = reading.pods.get((NS, deployment_id), []) if reading is not None else []
    return sum(
        int(s.get("restartCount") or 0)
        for p in pods
        for s in (p.get("status") or {}).get("containerStatuses") or ()
        if s.get("name") == "app"
    )


def wait_for(check: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def test_usage_graphs_with_a_restart_marker(page: Page, stack: Stack, artifacts: Path) -> None:
    name, _ = deploy_running(page, stack)  # two pods, exposed (an frpc sidecar each)
    ident = name.rsplit("-", 1)[1]
    pods = sorted(stack.pods(name))
    assert len(pods) == 2
    poller = stack.rt.monitor.poller
    assert poller is not None
    clock = Later()
    poller.clock = clock
    # per pod, each step: the app's CPU and memory; the sidecar uses 5m and 12Mi throughout
    steps = [
        ("120m", "100Mi"),
        ("300m", "140Mi"),
        ("450m", "230Mi"),
        ("200m", "250Mi"),
        ("60m", "90Mi"),
    ]
    for n, (cpu_each, memory_each) in enumerate(steps, start=1):
        clock.ahead = n * STEP
        for pod in pods:
            stack.fake.set_metrics(
                NS,
                pod,
                {
                    "app": {"cpu": cpu_each, "memory": memory_each},
                    "frpc": {"cpu": "5m", "memory": "12Mi"},
                },
            )
        if n == 4:  # killed for memory twice between the 3rd and the 4th reading
            kill_for_memory(stack, pods[0], restarts=2)
            wait_for(lambda: app_restarts(stack, ident) == 2, "the restarts in the reading")
        stack.poll()

    page.goto(f"{stack.url}/deployments/{name}")
    section = page.get_by_test_id("usage")
    expect(section).to_be_visible()
    expect(section.get_by_role("heading", name=re.compile(r"^Usage"))).to_contain_text(
        "the last hour, app container, total of 2 pods"
    )
    cpu = page.get_by_test_id("graph-cpu")
    memory = page.get_by_test_id("graph-memory")
    # what a glance says, for screen readers too: the app container alone, 2 pods' limits
    # (the form's defaults: 100m and 128Mi a pod, limits twice that)
    expect(cpu).to_have_attribute(
        "aria-label",
        "CPU of the app container over the last hour: now 120m, peak 900m of a 400m limit "
        "(request 200m, total of 2 pods); 2 restarts",
    )
    expect(memory).to_have_attribute(
        "aria-label",
        "Memory of the app container over the last hour: now 180Mi, peak 500Mi of a 512Mi "
        "limit (request 256Mi, total of 2 pods); 2 restarts",
    )
    expect(page.get_by_role("img", name=re.compile(r"^CPU of the app container"))).to_be_visible()
    for graph in (cpu, memory):
        marker = graph.get_by_test_id("restart-marker")
        expect(marker).to_have_count(1)
        expect(marker.locator("title")).to_have_text(
            re.compile(r"^2 restarts \d+s ago: OOMKilled$")
        )
        # the five steps polled here, one line (the readings before them are steps away)
        line = graph.locator("path.graph-usage").last.get_attribute("d") or ""
        assert len(re.findall(r"[ML][\d.]+ ", line)) == len(steps), line
        expect(graph.locator("path.graph-limit")).not_to_have_count(0)
    expect(page.get_by_test_id("usage-restarts")).to_contain_text(
        re.compile(r"Restarts: 2 restarts \d+s ago: OOMKilled")
    )
    # the marker is drawn where the restarts were seen: within the 4th step (x grows with
    # time; the usage line has a point in the middle of each step)
    marker_x = float(
        cpu.locator("[data-testid=restart-marker] line").first.get_attribute("x1") or 0
    )
    line = cpu.locator("path.graph-usage").last.get_attribute("d") or ""
    xs = [float(x) for x in re.findall(r"[ML]([\d.]+) ", line)]
    half_step = (xs[1] - xs[0]) / 2  # whole steps apart (the newest point may be nearer)
    assert xs == sorted(xs) and abs(marker_x - xs[-2]) <= half_step + 0.1, (xs, marker_x)
    page.screenshot(path=str(artifacts / "usage-graphs.png"), full_page=True)

    # the same samples as a table, newest first
    page.get_by_text("The samples as a table").click()
    table = page.get_by_test_id("usage-table")
    expect(table).to_be_visible()
    rows = table.locator("tbody tr")
    expect(rows.first).to_contain_text("120m")
    expect(rows.first).to_contain_text("180Mi")
    expect(rows.nth(1)).to_contain_text("400m")
    expect(rows.nth(1)).to_contain_text("500Mi")
    page.screenshot(path=str(artifacts / "usage-table.png"), full_page=True)

    findings = axe.check(page, f"/deployments/{name} with usage graphs")
    axe.report(findings, artifacts / "usage-axe.json")
