"""The browser end to end stack: the app on a live port with a poller reading ``FakeKube`` (an
HTTP-level fake of the Kubernetes API, spoken to by the app's real client) and ``FluxStandIn``
playing Flux on the real embedded remote with the real helm and kubectl; and what the user
does on its pages. The background scheduler is not started: tests reconcile and poll
explicitly. Test code."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Locator, Page, expect

from gitops_bridge import config
from gitops_bridge.runtime import Runtime
from gitops_bridge.webapp import create_app
from tests import kubelet
from tests.fluxstandin import FluxStandIn
from tests.kubefake import FakeKube

HR = ("helm.toolkit.fluxcd.io/v2", "HelmRelease")
NS = "group-demo"
IMAGE = "registry:5000/demo/web:1.0"
IMAGE_2 = "registry:5000/demo/web:2.0"
WAIT = 10_000  # ms: the page refreshes its cards every 3 s


@dataclass
class Stack:
    """The app on a live port, its embedded remote, the fake cluster and the Flux stand-in."""

    url: str
    app: Flask
    rt: Runtime
    remote: Path
    fake: FakeKube
    flux: FluxStandIn

    def poll(self) -> None:
        assert self.rt.monitor.poller is not None, "the app has no poller"
        assert self.rt.monitor.poller.run_once() is not None, self.rt.monitor.poller.state.error

    def reconcile(self, **options: Any) -> str:
        """What Flux would do for the branch head, then one poll; the commit applied."""
        commit = self.flux.reconcile(**options)
        self.poll()
        return commit

    def release(self, name: str) -> dict[str, Any]:
        found = self.fake.get(*HR, NS, name)
        assert found is not None, f"no HelmRelease {NS}/{name} in the fake"
        return found

    def pods(self, name: str) -> list[str]:
        return [
            p["metadata"]["name"]
            for p in self.fake.items("v1", "Pod", NS)
            if p["metadata"]["labels"].get("app.kubernetes.io/instance") == name
        ]


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    """The app on 127.0.0.1:<free port>, as the ``live_server`` fixture serves it."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="e2e-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def build_app(data: Path, **kubernetes: Any) -> tuple[Flask, Runtime]:
    settings = config.load(data_dir=data, kubernetes=kubernetes)
    app = create_app(settings)
    return app, app.extensions["gitops_bridge.runtime"]


@pytest.fixture
def stack(tmp_path: Path, helm: str, kubectl: str) -> Iterator[Stack]:
    with FakeKube() as fake:
        # what the platform provisions out of band for exposure (never in Git)
        fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        fake.apply(kubelet.frp_token(NS))
        kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig")
        app, rt = build_app(
            tmp_path / "data", mode="kubeconfig", kubeconfig=str(kubeconfig), poll_interval=1
        )
        assert rt.scheduler is None, "the background scheduler must not run: tests poll"
        remote = tmp_path / "data" / "remote.git"
        flux = FluxStandIn(fake, remote=remote, helm=helm, kubectl=kubectl)
        try:
            with serve(app) as url:
                yield Stack(url=url, app=app, rt=rt, remote=remote, fake=fake, flux=flux)
        finally:
            rt.stop()  # the watches end before the fake does


# ---- the user's side -----------------------------------------------------------------------


def card(page: Page, name: str) -> Locator:
    return page.locator(f"[data-testid=deployment-card][data-name='{name}']")


def badge(page: Page, name: str) -> Locator:
    return card(page, name).get_by_test_id("status")


def click_and_land(page: Page, target: Locator) -> int:
    """Click something that submits a form; the status of the page landed on."""
    with page.expect_navigation() as nav:
        target.click()
    response = nav.value
    assert response is not None
    return response.status


def flash_sha(page: Page, text: str) -> str:
    """The sha7 of a success flash ``<text>: committed <sha7>`` (maybe followed by a link)."""
    flash = page.locator(".flash.success")
    pattern = re.compile(rf"^{re.escape(text)}: committed ([0-9a-f]{{7}})( · .+)?$")
    expect(flash).to_have_text(pattern)
    match = pattern.match(flash.inner_text().strip())
    assert match, flash.inner_text()
    return match[1]


def deploy(page: Page, url: str, app: str = "web", *, replicas: int = 2) -> tuple[str, str]:
    """New deployment through the form in group demo (exposed); ('<app>-<id>', '<sha7>')."""
    page.goto(f"{url}/deployments")
    page.get_by_role("link", name="New deployment").first.click()
    expect(page).to_have_url(re.compile(r"/deployments/new"))
    page.select_option("select[name=group]", "demo")
    page.fill("input[name=name]", app)
    page.fill("input[name=image]", IMAGE)
    page.fill("input[name=replicas]", str(replicas))
    page.set_checked("input[name=expose]", True)
    assert click_and_land(page, page.get_by_role("button", name="Deploy")) == 200
    flash = page.locator(".flash.success")
    expect(flash).to_have_text(re.compile(rf"^Deployed {app}-[a-z0-9]{{6}}: committed [0-9a-f]+$"))
    match = re.fullmatch(
        rf"Deployed ({app}-[a-z0-9]{{6}}): committed ([0-9a-f]{{7}})", flash.inner_text()
    )
    assert match, flash.inner_text()
    return match[1], match[2]


def deploy_running(page: Page, stack: Stack) -> tuple[str, str]:
    """Deployed through the form and reconciled with success; (name, applied sha7)."""
    stack.poll()
    name, _ = deploy(page, stack.url)
    sha7 = stack.reconcile()[:7]
    expect(badge(page, name)).to_have_text("running 2/2", timeout=WAIT)
    return name, sha7


STEP = 30  # usage.step's default: one sample of the usage graphs a step


class Later:
    """A clock the test moves on, a step at a time, from a minute past the wall clock's now:
    its steps follow each other exactly, it never falls behind the time the watches stamp
    their changes with, and the readings taken before it are a step apart from its own."""

    def __init__(self) -> None:
        self.start = time.time() + 2 * STEP
        self.ahead = 0.0

    def __call__(self) -> float:
        return self.start + self.ahead
