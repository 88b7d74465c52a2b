"""The poller and leader election against an HTTP-level fake of the Kubernetes API (no API
server can run here): a fixed number of calls per cycle, backoff that never kills it, and
one leader per Lease."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitops_bridge import cluster as kube
from gitops_bridge import poller
from gitops_bridge.errors import ClusterUnavailable
from gitops_bridge.leader import LeaderElector
from gitops_bridge.render import layout
from tests.kubefake import FakeKube


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        ensure_namespace(server, "gitops-bridge")  # where the bridge runs and keeps its Lease
        yield server


def ensure_namespace(fake: FakeKube, name: str) -> None:
    """Objects can only be created in a namespace that exists, as on a real API server."""
    if fake.get("v1", "Namespace", None, name) is None:
        fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


@pytest.fixture
def connection(fake: FakeKube, tmp_path: Path) -> kube.Cluster:
    config = fake.kubeconfig(tmp_path / "kubeconfig")
    connected = kube.Cluster.connect(kubeconfig=str(config))
    assert connected is not None
    return connected


def populate(fake: FakeKube, deployments: int, pods_each: int) -> None:
    """HelmReleases, Deployments, Pods and PodMetrics shaped like the chart's."""
    ensure_namespace(fake, "flux-system")
    for n in range(deployments):
        ident = f"{n:06d}"
        name, namespace = f"app{n}-{ident}", f"group-g{n % 7}"
        ensure_namespace(fake, namespace)
        labels = {
            layout.LABEL_ID: ident,
            layout.LABEL_GROUP: f"g{n % 7}",
            layout.LABEL_APP: f"app{n}",
            "app.kubernetes.io/instance": name,
        }
        fake.apply(
            {
                "apiVersion": "helm.toolkit.fluxcd.io/v2",
                "kind": "HelmRelease",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "spec": {"interval": "10m", "values": {}},
            }
        )
        fake.apply(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "spec": {
                    "replicas": pods_each,
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": {"containers": []}},
                },
            }
        )
        for p in range(pods_each):
            pod = f"{name}-abc-{p}"
            fake.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": pod, "namespace": namespace, "labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "nginx"}]},
                }
            )
            fake.set_metrics(namespace, pod, {"app": {"cpu": "5m", "memory": "20Mi"}})
    fake.apply(
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "tenants", "namespace": "flux-system"},
            "spec": {
                "interval": "10m",
                "path": "./tenants",
                "prune": True,
                "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
            },
        }
    )


def test_a_cycle_reads_every_kind_once(fake: FakeKube, connection: kube.Cluster) -> None:
    populate(fake, 3, 2)
    fake.reset_requests()
    reading = poller.Poller(connection).poll()
    assert len(reading.helmreleases) == 3 and len(reading.deployments) == 3
    assert sum(len(p) for p in reading.pods.values()) == 6 and len(reading.metrics) == 6
    assert reading.kustomization is not None and reading.gitrepository is None
    assert reading.calls == 7 == len(fake.requests)
    selectors = {q.get("labelSelector") for _, _, q in fake.requests if "labelSelector" in q}
    assert selectors == {layout.LABEL_ID, layout.LABEL_GROUP}  # the groups' Kustomizations


def test_api_calls_do_not_grow_with_deployments(
    fake: FakeKube, connection: kube.Cluster, tmp_path: Path
) -> None:
    populate(fake, 10, 5)
    small = poller.Poller(connection).poll()
    with FakeKube() as big_fake:
        populate(big_fake, 2000, 5)  # 10,000 pods
        big_conn = kube.Cluster.connect(kubeconfig=str(big_fake.kubeconfig(tmp_path / "big")))
        assert big_conn is not None
        big = poller.Poller(big_conn).poll()
    assert sum(len(p) for p in big.pods.values()) == 10_000
    assert big.calls == small.calls == 7


def test_pagination_follows_continue_tokens(fake: FakeKube, connection: kube.Cluster) -> None:
    populate(fake, 5, 1)
    fake.reset_requests()
    reading = poller.Poller(connection, page_size=2).poll()
    assert len(reading.helmreleases) == 5 and sum(len(p) for p in reading.pods.values()) == 5
    assert reading.calls == len(fake.requests)
    release_pages = [q for _, path, q in fake.requests if path.endswith("/helmreleases")]
    assert len(release_pages) == 3 and [bool(q.get("continue")) for q in release_pages] == [
        False,
        True,
        True,
    ]


def test_missing_metrics_server_is_not_an_error(fake: FakeKube, connection: kube.Cluster) -> None:
    populate(fake, 1, 1)
    fake.metrics_enabled = False
    reading = poller.Poller(connection).poll()
    assert reading.metrics_available is False and reading.metrics == {}


def test_failures_back_off_keep_the_last_reading_and_recover(
    fake: FakeKube, connection: kube.Cluster
) -> None:
    populate(fake, 2, 1)
    now = [1000.0]
    watcher = poller.Poller(connection, interval=10, clock=lambda: now[0])
    good = watcher.run_once()
    assert good is not None
    fake.fail_next(500)
    now[0] += 10
    assert watcher.run_once() is None  # never raises
    assert watcher.state.failures == 1 and watcher.state.error
    assert watcher.state.reading is good  # the last good reading stays, with its age
    view = watcher.view(namespace="group-g0", name="app0-000000", deployment_id="000000")
    assert view is not None and view.stale and view.age == 10
    now[0] += 1
    assert watcher.run_once() is None and watcher.state.failures == 1  # backing off: no call
    now[0] += 30
    fake.fail_next(503, times=1)
    assert watcher.run_once() is None and watcher.state.failures == 2
    now[0] += 60
    assert watcher.run_once() is not None
    assert watcher.state.failures == 0 and watcher.state.error == ""


def test_unreachable_cluster_is_retryable(tmp_path: Path) -> None:
    with FakeKube() as gone:
        config = gone.kubeconfig(tmp_path / "kc")
    connection = kube.Cluster.connect(kubeconfig=str(config), timeout=2)
    assert connection is not None
    with pytest.raises(ClusterUnavailable) as info:
        poller.Poller(connection).poll()
    assert info.value.retryable


def test_readings_travel_between_replicas_unchanged(
    fake: FakeKube, connection: kube.Cluster
) -> None:
    populate(fake, 2, 2)
    reading = poller.Poller(connection).poll()
    assert poller.reading_from_json(poller.reading_to_json(reading)) == reading


# ---- leader election --------------------------------------------------------------------


def elector(connection: kube.Cluster, identity: str, clock: list[float]) -> LeaderElector:
    return LeaderElector(
        connection,
        namespace="gitops-bridge",
        name="poller",
        identity=identity,
        lease_seconds=15,
        advertise_url=f"http://{identity}:8080",
        clock=lambda: clock[0],
        wall=lambda: 1_800_000_000 + clock[0],
    )


def test_one_leader_and_takeover_after_the_lease_expires(
    fake: FakeKube, connection: kube.Cluster
) -> None:
    clock = [0.0]
    first, second = elector(connection, "a", clock), elector(connection, "b", clock)
    assert first.tick() is True
    assert second.tick() is False and second.leader == "a"
    assert second.leader_url == "http://a:8080"
    for _ in range(5):  # a renews; b keeps seeing a fresh record
        clock[0] += 5
        assert first.tick() is True and second.tick() is False
    clock[0] += 16  # a stops renewing (crashed)
    assert second.tick() is True and second.leader == "b"
    lease: Any = fake.get("coordination.k8s.io/v1", "Lease", "gitops-bridge", "poller")
    assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1
    assert first.tick() is False and first.leader == "b"  # a comes back as a follower


def test_two_candidates_cannot_both_win(fake: FakeKube, connection: kube.Cluster) -> None:
    """Both read the same expired lease; the API server's resourceVersion check picks one."""
    clock = [0.0]
    elector(connection, "a", clock).tick()
    stale = fake.get("coordination.k8s.io/v1", "Lease", "gitops-bridge", "poller")
    assert stale is not None
    now = "2027-01-15T08:00:00.000000Z"
    b, c = elector(connection, "b", clock), elector(connection, "c", clock)
    assert b._write(stale, now, transitions=1, acquire=True) is True
    assert c._write(stale, now, transitions=1, acquire=True) is False  # 409: stale version
    lease: Any = fake.get("coordination.k8s.io/v1", "Lease", "gitops-bridge", "poller")
    assert lease["spec"]["holderIdentity"] == "b"
