"""The logs page in headless Chromium against the end-to-end stack (app, poller, the fake
cluster with its kubelet, the Flux stand-in): a deployment of two replicas shows all its pods
merged in time order (followed too), each line tagged with its pod and its time; asking for
the previous container before any crash says there is none, after the crash loop it shows
each pod's crash; the download holds exactly the lines shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2eutil import NS, WAIT, Stack, deploy_running

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

STAMP = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+Z"
CRASH = "error: connect to postgres:5432: connection refused"


def shown(page: Page) -> list[str]:
    text: str = page.get_by_test_id("log").inner_text()
    return text.splitlines()


def tagged(lines: list[str]) -> list[tuple[str, str, str]]:
    """(pod, time, text) of each line; every line must be tagged and stamped."""
    found = [re.fullmatch(rf"\[(\S+)\] ({STAMP}) (.*)", line) for line in lines]
    assert all(found), lines
    return [(m[1], m[2], m[3]) for m in found if m]


def show(page: Page, *, pod: str, timestamps: bool, previous: bool, follow: bool = False) -> None:
    page.get_by_label("Pod").select_option(pod)
    page.get_by_label("Timestamps").set_checked(timestamps)
    page.get_by_label("Previous container (after a crash)").set_checked(previous)
    page.get_by_label("Follow").set_checked(follow)
    page.get_by_role("button", name="Show").click()


def test_all_pods_merged_the_previous_container_after_a_crash_and_the_download(
    page: Page, stack: Stack, artifacts: Path
) -> None:
    name, _ = deploy_running(page, stack)
    pods = sorted(stack.pods(name))
    assert len(pods) == 2
    page.goto(f"{stack.url}/deployments/{name}/logs")
    log = page.get_by_test_id("log")

    # followed, every pod's new lines arrive in the one view, tagged
    show(page, pod="All pods", timestamps=False, previous=False, follow=True)
    expect(log).to_contain_text(f"[{pods[0]}] GET / 200 1.2ms")
    expect(log).to_contain_text(f"[{pods[1]}] GET / 200 1.2ms")
    stack.fake.append_log(NS, pods[1], "app", "GET /followed 200 0.3ms")
    expect(log).to_contain_text(f"[{pods[1]}] GET /followed 200 0.3ms", timeout=WAIT)

    show(page, pod="All pods", timestamps=True, previous=False)
    expect(log).to_contain_text(f"[{pods[1]}]")
    expect(log).to_contain_text(f"[{pods[0]}]")
    lines = tagged(shown(page))
    assert {pod for pod, _, _ in lines} == set(pods)
    assert [time for _, time, _ in lines] == sorted(time for _, time, _ in lines)
    assert [text for p, _, text in lines if p == pods[0]][-1] == "GET / 200 1.2ms"
    assert [text for p, _, text in lines if p == pods[1]][-1] == "GET /followed 200 0.3ms"
    expect(log.locator(".log-pod").first).to_have_text(re.compile(r"^\[\S+\]$"))
    expect(log.locator("time.log-time")).to_have_count(len(lines))
    page.screenshot(path=str(artifacts / "logs-all-pods.png"), full_page=True)

    show(page, pod="All pods", timestamps=True, previous=True)
    problem = page.get_by_test_id("log-problem")
    expect(problem).to_be_visible()
    expect(problem).to_have_text(
        f"no pod of {name} has a previous container app: none has terminated since it started"
    )
    expect(log).to_be_empty()
    page.screenshot(path=str(artifacts / "logs-no-previous.png"), full_page=True)

    stack.reconcile(scenario={name: "crashloop"})
    page.get_by_role("button", name="Show").click()
    expect(problem).to_be_hidden()
    expect(log).to_contain_text(f"[{pods[0]}]")
    expect(log).to_contain_text(f"[{pods[1]}]")
    lines = tagged(shown(page))
    for pod in pods:
        assert [text for p, _, text in lines if p == pod][-2:] == [CRASH, "exit status 1"]
    assert [time for _, time, _ in lines] == sorted(time for _, time, _ in lines)
    page.screenshot(path=str(artifacts / "logs-previous-after-crash.png"), full_page=True)

    with page.expect_download() as started:
        page.get_by_role("link", name="Download").click()
    download = started.value
    assert re.fullmatch(rf"{name}-all-\d{{8}}T\d{{6}}Z\.log", download.suggested_filename)
    saved = artifacts / "logs-download.log"
    download.save_as(saved)
    assert saved.read_text().splitlines() == shown(page)
