"""Two bridge replicas against one remote and one cluster (an HTTP-level fake of the
Kubernetes API): only the Lease holder polls, the other serves the leader's reading, and
takes over polling when the lease expires."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from gitops_bridge.runtime import Runtime
from tests.apputil import create_group, make_app, web
from tests.fluxstandin import FluxStandIn
from tests.kubefake import FakeKube

ALICE = {"X-Forwarded-User": "alice"}


class Served:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def rt(self) -> Runtime:
        value: Runtime = self.app.extensions["gitops_bridge.runtime"]
        return value

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[FakeKube, Served, Served]]:
    with FakeKube() as fake:
        # The namespace the bridge runs in and keeps its Lease: as on a cluster, it must exist.
        fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gitops-bridge"}})
        config = str(fake.kubeconfig(tmp_path / "kubeconfig"))
        remote = tmp_path / "a" / "remote.git"
        served: list[Served] = []
        for name in ("a", "b"):
            # each replica learns its own address once it listens; set before the first tick
            app = make_app(
                tmp_path / name,
                repo_url=remote.as_uri() if name == "b" else None,
                secret_key="shared-between-replicas",
                kubernetes={
                    "mode": "kubeconfig",
                    "kubeconfig": config,
                    "identity": name,
                    "lease_namespace": "gitops-bridge",
                    "lease_seconds": 15,
                },
            )
            served.append(Served(app))
        for replica in served:
            assert replica.rt.elector is not None
            replica.rt.elector.advertise_url = replica.url
        try:
            yield fake, served[0], served[1]
        finally:
            for replica in served:
                replica.stop()
                replica.rt.stop()  # the poller's watches end here


def helmrelease_lists(fake: FakeKube) -> int:
    """LISTs of HelmReleases (the poller's watch of them is not one)."""
    return sum(
        1
        for _, path, query in fake.requests
        if path.endswith("/helmreleases") and query.get("watch") != "true"
    )


def test_only_the_leader_polls_and_the_follower_serves_its_reading(
    pair: tuple[FakeKube, Served, Served], tmp_path: Path, helm: str, kubectl: str
) -> None:
    fake, a, b = pair
    client = a.app.test_client()
    create_group(client)
    name = client.post(
        "/api/v1/groups/team-a/deployments", json=web(replicas=2), headers=ALICE
    ).json["name"]
    FluxStandIn(fake, remote=tmp_path / "a" / "remote.git", helm=helm, kubectl=kubectl).reconcile()
    fake.reset_requests()
    a.rt.cycle()  # a takes the lease and polls
    b.rt.cycle()  # b follows: no LIST of its own
    assert helmrelease_lists(fake) == 1
    assert a.rt.elector is not None and b.rt.elector is not None
    assert a.rt.elector.is_leader and not b.rt.elector.is_leader
    assert b.rt.elector.leader_url == a.url
    seen = b.app.test_client().get(f"/api/v1/deployments/{name}", headers=ALICE).json
    assert seen["status"]["label"] == "running 2/2"  # from a's reading


def test_the_follower_takes_over_when_the_lease_expires(
    pair: tuple[FakeKube, Served, Served],
) -> None:
    fake, a, b = pair
    assert a.rt.elector is not None and b.rt.elector is not None
    clock = [0.0]
    b.rt.elector.clock = lambda: clock[0]
    a.rt.cycle()
    b.rt.cycle()
    assert not b.rt.elector.is_leader
    a.stop()  # the leader dies without releasing the lease
    clock[0] += 16
    fake.reset_requests()
    b.rt.cycle()
    assert b.rt.elector.is_leader and helmrelease_lists(fake) == 1
    lease = fake.get("coordination.k8s.io/v1", "Lease", "gitops-bridge", "gitops-bridge-poller")
    assert lease is not None and lease["spec"]["holderIdentity"] == "b"
