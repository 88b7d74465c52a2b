"""The demo (``scripts/run --demo``, ``tests/demo.py``) starts in-process on free ports: the
pages say the cluster is simulated, the seeded deployments show running, crash-looping,
OOM-killed and failed, the simulation reconciles a change made in the UI by itself and
delivers Flux's events, and stopping it leaves no thread, poller, fake API server or registry
behind. Without the setting no page says so."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Page, expect

from tests import axe, demo
from tests.apputil import make_app
from tests.e2eutil import badge, card
from tests.registryutil import free_port

WAIT = 30_000  # ms: a simulation step, a poll, the page's refresh of its cards


@contextmanager
def serve(app: Flask, port: int) -> Iterator[str]:
    """The app on 127.0.0.1:port (the demo's settings name the port its events go to)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="demo-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_real_cluster_is_not_called_simulated(tmp_path: Path) -> None:
    client = make_app(tmp_path / "data").test_client()
    page = client.get("/deployments").get_data(as_text=True)
    assert "Simulated cluster" not in page and "simulated-cluster" not in page


def test_the_demo_refuses_to_empty_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="not a demo's directory"):
        demo.fresh_directory(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.browser
@pytest.mark.e2e
def test_the_demo_shows_a_simulated_cluster_that_moves(
    tmp_path: Path, page: Page, artifacts: Path
) -> None:
    port = free_port()
    with demo.simulation(tmp_path / "demo", port=port, interval=0.5) as running:
        web, worker, batch, api = (running.seeded[a] for a in ("web", "worker", "batch", "api"))
        with serve(running.app, port) as url:
            running.start()
            page.goto(f"{url}/deployments?group=demo")
            label = page.get_by_test_id("simulated-cluster")
            expect(label).to_have_text(re.compile(r"^Simulated cluster"))
            expect(label).to_have_attribute("title", re.compile(r"simulation"))
            expect(badge(page, web)).to_have_text("running 2/2", timeout=WAIT)
            expect(badge(page, worker)).to_have_text("degraded 0/1", timeout=WAIT)
            detail = card(page, worker).get_by_test_id("status-detail")
            expect(detail).to_contain_text("CrashLoopBackOff")
            expect(badge(page, batch)).to_have_text("degraded 0/1", timeout=WAIT)
            shown = page.request.get(f"{url}/api/v1/deployments/{batch}").json()
            ended = [(p["lastTermination"] or {}).get("reason") for p in shown["status"]["pods"]]
            assert ended == ["OOMKilled"], shown["status"]["pods"]
            expect(badge(page, api)).to_have_text(re.compile(r"^failed"), timeout=WAIT)
            page.screenshot(path=str(artifacts / "demo-deployments.png"), full_page=True)
            axe.check(page, "the demo's deployments")  # the label too

            # a change made in the UI is applied by the simulation alone
            response = page.request.post(
                f"{url}/api/v1/deployments/{web}/scale",
                data={"replicas": 3},
                headers={"Content-Type": "application/json"},
            )
            assert response.status == 200, response.text()
            expect(badge(page, web)).to_have_text("running 3/3", timeout=WAIT)
            assert running.errors == [], running.errors
            # by then the simulation delivered Flux's events to the app, as notification-
            # controller would: api's failed upgrade is among them
            failed = page.request.get(f"{url}/api/v1/deployments/{api}").json()
            assert "UpgradeFailed" in [e["reason"] for e in failed["events"]], failed["events"]
        thread = running._thread
        assert thread is not None and thread.is_alive()
    assert not thread.is_alive(), "the simulation thread outlived the demo"
    assert running.registry.process is None, "the registry outlived the demo"
    assert running.rt.scheduler is None, "the app's poller outlived the demo"
    with pytest.raises(RuntimeError, match="not started"):
        _ = running.fake.url
