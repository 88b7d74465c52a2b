"""The poller and leader election against an HTTP-level fake of the Kubernetes API (no API
server can run here): one LIST per kind and page, then watches that bring every change
(410 Gone: listed again; bookmarks move the resourceVersion on) and a fixed number of calls
per later cycle, backoff that never kills it, and one leader per Lease."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gitops_bridge import cluster as kube
from gitops_bridge import listbody, models, poller
from gitops_bridge.errors import ClusterUnavailable
from gitops_bridge.leader import LeaderElector
from gitops_bridge.render import layout, volume
from tests.kubefake import FakeKube


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.05) as server:
        ensure_namespace(server, "gitops-bridge")  # where the bridge runs and keeps its Lease
        yield server


@pytest.fixture
def reader(connection: kube.Cluster) -> Iterator[poller.Poller]:
    """A poller whose watches end with the test."""
    watching = poller.Poller(connection)
    yield watching
    watching.stop()


def eventually(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait for ``check`` to hold (a KeyError or IndexError: not yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (KeyError, IndexError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.01)


def caught_up(reader: poller.Poller, timeout: float = 5.0) -> None:
    """Wait until every watch of ``reader`` has seen (an event or a bookmark) the
    resourceVersion the API server is at now: its reading then holds every change made so
    far. Only for the fake, whose resourceVersions are numbers (a client may only compare
    them for equality: https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions)."""
    now = reader.cluster.request("GET", "/api/v1/namespaces", query=[("limit", "1")])
    target = int(now["metadata"]["resourceVersion"])
    eventually(
        lambda: all(v and int(v) >= target for v in reader.watch_versions().values()),
        f"watches at {target} (they are at {reader.watch_versions()})",
        timeout,
    )


def lists(fake: FakeKube, suffix: str = "") -> list[dict[str, str]]:
    """The queries of the LISTs (not watches) made so far, of paths ending in ``suffix``."""
    return [
        q
        for method, path, q in fake.requests
        if method == "GET" and path.endswith(suffix) and q.get("watch") != "true"
    ]


def watches(fake: FakeKube, suffix: str) -> list[dict[str, str]]:
    return [q for _, path, q in fake.requests if path.endswith(suffix) and q.get("watch")]


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
    assert reading.calls == 9 == len(fake.requests)  # Events: one cluster-wide LIST
    selectors = {q.get("labelSelector") for _, _, q in fake.requests if "labelSelector" in q}
    # the groups' Kustomizations, the volumes' claims
    assert selectors == {layout.LABEL_ID, layout.LABEL_GROUP, poller.CLAIM_SELECTOR}


def test_api_calls_do_not_grow_with_deployments(
    fake: FakeKube, reader: poller.Poller, tmp_path: Path
) -> None:
    """The first cycle lists a page of 500 at a time; the later ones list none of the
    watched kinds, however many objects there are."""
    populate(fake, 10, 5)
    first_small, steady_small = reader.run_once(), reader.run_once()
    with FakeKube() as big_fake:
        populate(big_fake, 2000, 5)  # 10,000 pods
        big_conn = kube.Cluster.connect(kubeconfig=str(big_fake.kubeconfig(tmp_path / "big")))
        assert big_conn is not None
        big = poller.Poller(big_conn)
        try:
            first = big.run_once()
            big_fake.reset_requests()
            steady = big.run_once()
            steady_reads = [p for _, p, q in big_fake.requests if q.get("watch") != "true"]
        finally:
            big.stop()
    assert first is not None and steady is not None
    assert first_small is not None and steady_small is not None
    assert sum(len(p) for p in first.pods.values()) == 10_000
    assert first_small.calls == 9
    # 2,000 HelmReleases and Deployments, 10,000 pods in pages of 500; group Kustomizations,
    # claims, Events, PodMetrics (metrics-server does not page) and the two objects by name
    assert first.calls == 4 + 4 + 20 + 1 + 1 + 1 + 1 + 2
    assert steady.calls == steady_small.calls == 3  # PodMetrics and the two by name
    assert steady_reads == [
        "/apis/metrics.k8s.io/v1beta1/pods",
        "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/tenants",
        "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/flux-system",
    ]


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
    cycle_only = "/namespaces/flux-system/"  # what a cycle reads by name, no watch
    fake.fail_next(500, path_contains=cycle_only)
    now[0] += 10
    assert watcher.run_once() is None  # never raises
    assert watcher.state.failures == 1 and watcher.state.error
    assert watcher.state.reading is good  # the last good reading stays, with its age
    view = watcher.view(namespace="group-g0", name="app0-000000", deployment_id="000000")
    assert view is not None and view.stale and view.age == 10
    now[0] += 1
    assert watcher.run_once() is None and watcher.state.failures == 1  # backing off: no call
    now[0] += 30
    fake.fail_next(503, times=1, path_contains=cycle_only)
    assert watcher.run_once() is None and watcher.state.failures == 2
    now[0] += 60
    assert watcher.run_once() is not None
    assert watcher.state.failures == 0 and watcher.state.error == ""
    watcher.stop()


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
    fake.apply(claim("data"))
    reading = poller.Poller(connection).poll()
    assert reading.claims  # tuple keys, like the other kinds
    assert poller.reading_from_json(poller.reading_to_json(reading)) == reading


# ---- watches ----------------------------------------------------------------------------


def labelled(n: int, group: str = "g0") -> dict[str, str]:
    return {
        layout.LABEL_ID: f"{n:06d}",
        layout.LABEL_GROUP: group,
        layout.LABEL_APP: f"app{n}",
        "app.kubernetes.io/instance": f"app{n}-{n:06d}",
    }


def container_status(*, ready: bool, restarts: int) -> dict[str, Any]:
    state = {"running": {"startedAt": "2026-11-26T10:00:00Z"}} if ready else {}
    if not ready:
        state = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}}
    return {"name": "app", "ready": ready, "restartCount": restarts, "state": state}


def reading_of(reader: poller.Poller) -> poller.Reading:
    reading = reader.state.reading
    assert reading is not None
    return reading


def test_a_watch_brings_creates_changes_and_deletes_without_listing(
    fake: FakeKube, reader: poller.Poller
) -> None:
    populate(fake, 2, 1)
    assert reader.run_once() is not None
    fake.reset_requests()
    ns = "group-g0"
    fake.apply(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "app7-000007", "namespace": ns, "labels": labelled(7)},
            "spec": {"interval": "10m", "values": {"image": "nginx:2"}},
        }
    )
    fake.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "app7-000007-abc-0", "namespace": ns, "labels": labelled(7)},
            "spec": {"containers": [{"name": "app", "image": "nginx:2"}]},
        }
    )
    eventually(
        lambda: (
            (ns, "app7-000007") in reading_of(reader).helmreleases
            and (ns, "000007") in reading_of(reader).pods
        ),
        "the new HelmRelease and pod in the reading",
    )
    release = reading_of(reader).helmreleases[(ns, "app7-000007")]
    assert release["spec"] == {"values": {"image": "nginx:2"}}  # slim: only what is read
    assert set(release["metadata"]["labels"]) == {
        layout.LABEL_ID,
        layout.LABEL_GROUP,
        layout.LABEL_APP,
    }
    [new_pod] = reading_of(reader).pods[(ns, "000007")]
    assert "spec" not in new_pod and "uid" not in new_pod["metadata"]

    crashing = {
        "phase": "Running",
        "containerStatuses": [container_status(ready=False, restarts=4)],
    }
    fake.set_status("v1", "Pod", ns, "app0-000000-abc-0", crashing)
    eventually(
        lambda: (
            reading_of(reader).pods[(ns, "000000")][0]["status"]["containerStatuses"][0][
                "restartCount"
            ]
            == 4
        ),
        "the pod's new status in the reading",
    )

    fake.delete("helm.toolkit.fluxcd.io/v2", "HelmRelease", "group-g1", "app1-000001")
    fake.delete("v1", "Pod", "group-g1", "app1-000001-abc-0")
    eventually(
        lambda: (
            ("group-g1", "app1-000001") not in reading_of(reader).helmreleases
            and ("group-g1", "000001") not in reading_of(reader).pods
        ),
        "the deleted HelmRelease and pod gone from the reading",
    )
    assert lists(fake) == []  # the watches brought all of it: nothing was listed again
    view = reader.view(namespace=ns, name="app0-000000", deployment_id="000000")
    assert view is not None and not view.stale and view.pods[0]["status"]["phase"] == "Running"


def test_bookmarks_move_the_resource_version_on(fake: FakeKube, reader: poller.Poller) -> None:
    populate(fake, 1, 1)
    assert reader.run_once() is not None
    listed = reader.watch_versions()["helmreleases"]
    fake.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}}
    )  # a change none of the watches is about
    now = fake.resource_version
    assert now != listed
    eventually(
        lambda: set(reader.watch_versions().values()) == {now}, f"every watch at {now} by bookmarks"
    )
    assert reading_of(reader).helmreleases  # nothing applied, nothing lost
    started = len(watches(fake, "/helmreleases"))
    fake.drop_watches()  # the server goes away: each watch starts again from where it was
    eventually(lambda: len(watches(fake, "/helmreleases")) > started, "the watch started again")
    again = watches(fake, "/helmreleases")[-1]
    assert again["resourceVersion"] == now and again["allowWatchBookmarks"] == "true"
    assert len(lists(fake, "/helmreleases")) == 1  # the first cycle's only


def test_a_410_lists_again_and_converges_to_a_fresh_list(
    fake: FakeKube, reader: poller.Poller, connection: kube.Cluster
) -> None:
    populate(fake, 3, 2)
    assert reader.run_once() is not None
    caught_up(reader)
    fake.fail_next(503, times=10_000, path_contains="/api/v1/pods")  # its watch cannot resume
    fake.drop_watches()
    # meanwhile: a pod deleted, one changed, one created, and the history compacted
    fake.delete("v1", "Pod", "group-g1", "app1-000001-abc-0")
    fake.set_status(
        "v1",
        "Pod",
        "group-g2",
        "app2-000002-abc-1",
        {"phase": "Running", "containerStatuses": [container_status(ready=False, restarts=9)]},
    )
    fake.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "app0-000000-abc-9",
                "namespace": "group-g0",
                "labels": labelled(0),
            },
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
        }
    )
    fake.compact()  # the pods watch's resourceVersion is no longer in the history
    fake.reset_requests()
    fake.heal()
    assert reader.run_once() is not None  # starts the pods watch again if it gave up meanwhile
    fresh = poller.Poller(connection).poll()
    eventually(lambda: reading_of(reader).pods == fresh.pods, "the pods of a fresh list")
    [left] = reading_of(reader).pods[("group-g1", "000001")]  # one deleted meanwhile: gone
    assert left["metadata"]["name"] == "app1-000001-abc-1"
    kept = reading_of(reader)
    for kind in ("helmreleases", "deployments", "groups", "claims"):
        assert getattr(kept, kind) == getattr(fresh, kind), kind
    assert len(lists(fake, "/api/v1/pods")) == 2  # the watch's list again, the fresh one's
    caught_up(reader)


def test_an_http_410_on_a_watch_request_lists_again(fake: FakeKube, reader: poller.Poller) -> None:
    populate(fake, 2, 1)
    assert reader.run_once() is not None
    caught_up(reader)
    fake.reset_requests()
    fake.fail_next(410, times=1, path_contains="/apis/apps/v1/deployments")
    fake.drop_watches()
    eventually(lambda: len(lists(fake, "/apis/apps/v1/deployments")) == 1, "a list again")
    fake.set_status(
        "apps/v1",
        "Deployment",
        "group-g0",
        "app0-000000",
        {"conditions": [{"type": "ReplicaFailure", "status": "True", "message": "quota"}]},
    )
    eventually(
        lambda: (
            reading_of(reader).deployments[("group-g0", "000000")]["status"]["conditions"]
            == [{"type": "ReplicaFailure", "status": "True", "message": "quota"}]
        ),
        "the change after the list, by the watch that followed it",
    )


def test_a_watch_that_keeps_failing_gives_up_until_the_next_cycle(
    fake: FakeKube, reader: poller.Poller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gitops_bridge.watcher.BACKOFF", 0.01)
    populate(fake, 1, 1)
    assert reader.run_once() is not None
    fake.fail_next(503, times=10_000, path_contains="/apis/apps/v1/deployments")
    fake.drop_watches()
    eventually(
        lambda: not reader.watching["deployments"] and bool(reader.watch_errors()),
        "the deployments watch given up",
    )
    view = reader.view(namespace="group-g0", name="app0-000000", deployment_id="000000")
    assert view is not None and view.stale  # a reading no watch keeps current
    fake.heal()
    cycle = reader.run_once()
    assert cycle is not None and cycle.calls == 3  # no list: the watch resumes where it was
    eventually(lambda: reader.watching["deployments"], "the deployments watch running again")
    eventually(lambda: not reader.watch_errors(), "no watch error once it connected")
    assert reader.run_once() is not None and reader.state.error == ""


def test_stop_ends_the_watches_and_keeps_the_last_reading(
    fake: FakeKube, connection: kube.Cluster
) -> None:
    populate(fake, 2, 1)
    reader = poller.Poller(connection)
    first = reader.run_once()
    assert first is not None and all(reader.watching.values())
    reader.stop()
    assert reader.watching == {} and reader.state.reading is not None
    assert reader.state.reading.helmreleases == first.helmreleases
    fake.delete("helm.toolkit.fluxcd.io/v2", "HelmRelease", "group-g1", "app1-000001")
    time.sleep(0.3)  # a watch still running would have brought the delete by now
    assert ("group-g1", "app1-000001") in reading_of(reader).helmreleases
    fake.reset_requests()
    again = reader.run_once()  # the next cycle lists anew
    try:
        assert again is not None and again.calls == 9
        assert ("group-g1", "app1-000001") not in again.helmreleases
    finally:
        reader.stop()


def test_a_list_whose_continue_token_expired_starts_over(
    fake: FakeKube, connection: kube.Cluster
) -> None:
    populate(fake, 5, 1)
    compacted: list[bool] = []

    def keep(obj: dict[str, Any]) -> dict[str, Any]:
        if not compacted:  # between the first page and the second
            fake.compact()
            compacted.append(True)
        return {"metadata": obj["metadata"]}

    listing = connection.list(
        kube.HELMRELEASES, label_selector=layout.LABEL_ID, page_size=2, keep=keep
    )
    names = sorted(item["metadata"]["name"] for item in listing.items)
    assert names == sorted(f"app{n}-{n:06d}" for n in range(5))
    assert listing.calls == 5  # page 1, the 410 on page 2, then 3 pages again


def test_a_list_too_large_for_one_decode_is_read_an_item_at_a_time(
    fake: FakeKube, connection: kube.Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server may ignore ``limit`` (metrics-server does): past STREAM_BYTES the body is
    decoded as it arrives, whatever its chunks cut through (strings, escapes, numbers)."""
    populate(fake, 3, 2)
    fake.set_status(
        "v1",
        "Pod",
        "group-g1",
        "app1-000001-abc-0",
        {"phase": "Pending", "message": 'quoted "ünïcödé" \\ and \u2028 and 12345678901234567890'},
    )
    whole = connection.list(kube.PODS, label_selector=layout.LABEL_ID)
    monkeypatch.setattr(kube, "STREAM_BYTES", 100)
    monkeypatch.setattr(kube, "READ_BYTES", 7)  # every value is cut somewhere
    streamed = connection.list(kube.PODS, label_selector=layout.LABEL_ID)
    assert streamed.items == whole.items and len(streamed.items) == 6
    assert streamed.resource_version == whole.resource_version
    paged = connection.list(kube.PODS, label_selector=layout.LABEL_ID, page_size=4)
    assert paged.items == whole.items and paged.calls == 2


def test_a_streamed_list_reads_utf8_and_values_cut_anywhere() -> None:
    item = {"metadata": {"name": "ünï-€"}, "n": 12345678901234567890, "x": [1.5e10, True, None]}
    document = {"kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": [item] * 3}
    body = json.dumps(document, ensure_ascii=False, indent=1).encode()  # as a Go server sends
    for size in (1, 2, 3, 5, 64):
        chunks = iter([body[at : at + size] for at in range(0, len(body), size)])
        items: list[dict[str, Any]] = []
        assert listbody.ListStream(chunks).read(items, None) == {"resourceVersion": "7"}
        assert items == [item] * 3, size
    with pytest.raises(ValueError):
        listbody.ListStream(iter([body[:-3]])).read([], None)


def test_each_cycle_replaces_the_pod_metrics(fake: FakeKube, reader: poller.Poller) -> None:
    populate(fake, 2, 2)
    first = reader.run_once()
    assert first is not None and len(first.metrics) == 4
    fake.set_metrics("group-g0", "app0-000000-abc-0", {"app": {"cpu": "77m", "memory": "1Gi"}})
    fake.delete("v1", "Pod", "group-g1", "app1-000001-abc-1")  # its metrics go with it
    caught_up(reader)
    second = reader.run_once()
    assert second is not None and second.calls == 3
    assert second.metrics[("group-g0", "app0-000000-abc-0")]["containers"] == [
        {"name": "app", "usage": {"cpu": "77m", "memory": "1Gi"}}
    ]
    assert ("group-g1", "app1-000001-abc-1") not in second.metrics and len(second.metrics) == 3
    view = reader.view(namespace="group-g0", name="app0-000000", deployment_id="000000")
    assert view is not None and view.metrics["app0-000000-abc-0"]["containers"][0]["usage"] == {
        "cpu": "77m",
        "memory": "1Gi",
    }
    fake.metrics_enabled = False  # metrics-server gone: no usage, not an error
    third = reader.run_once()
    assert third is not None and third.metrics == {} and not third.metrics_available


# ---- the volumes' claims -----------------------------------------------------------------

PVC = ("v1", "PersistentVolumeClaim")


def claim(name: str, *, group: str = "g0", managed: bool = True) -> dict[str, Any]:
    """A volume's claim as the bridge writes it (``render.volume``); ``managed=False``: one
    made by hand beside it, without the bridge's managed-by label."""
    document = volume.document(
        models.Volume(
            group=group, spec=models.VolumeSpec(name=name, size="1Gi", storageClass="standard")
        )
    )
    if not managed:
        del document["metadata"]["labels"][layout.LABEL_MANAGED_BY]
    return document


def test_the_volumes_claims_are_listed_slim_then_watched(
    fake: FakeKube, reader: poller.Poller
) -> None:
    populate(fake, 1, 1)
    ns = "group-g0"
    fake.apply(claim("data"))
    fake.apply(claim("scratch", managed=False))
    fake.reset_requests()
    first = reader.run_once()
    assert first is not None and first.calls == 9  # one LIST more than without claims
    [listed] = lists(fake, "/persistentvolumeclaims")
    assert listed["labelSelector"] == "app.kubernetes.io/managed-by=gitops-bridge"
    eventually(lambda: bool(watches(fake, "/persistentvolumeclaims")), "the claims watched")
    assert {q["labelSelector"] for q in watches(fake, "/persistentvolumeclaims")} == {
        poller.CLAIM_SELECTOR
    }
    stored = fake.get(*PVC, ns, "data")
    assert stored is not None and stored["spec"]["volumeMode"] == "Filesystem"
    assert first.claims == {
        (ns, "data"): {
            "metadata": {
                "name": "data",
                "resourceVersion": stored["metadata"]["resourceVersion"],
                "namespace": ns,
                "labels": {
                    layout.LABEL_MANAGED_BY: layout.MANAGED_BY,
                    layout.LABEL_GROUP: "g0",
                    volume.LABEL_VOLUME: "data",
                },
            },
            "spec": {
                "resources": {"requests": {"storage": "1Gi"}},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "standard",
            },
            "status": {"phase": "Pending"},  # no finalizers, uid, annotations, volumeMode
        }
    }  # not the claim made by hand

    fake.reset_requests()
    bound = {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}
    fake.set_status(*PVC, ns, "data", bound)
    fake.set_status(*PVC, ns, "scratch", bound)
    eventually(
        lambda: reading_of(reader).claims[(ns, "data")]["status"] == bound,
        "the bound claim in the reading",
    )
    caught_up(reader)
    assert set(reading_of(reader).claims) == {(ns, "data")}
    assert lists(fake, "/persistentvolumeclaims") == []  # the watch brought it, no LIST
    later = reader.run_once()
    assert later is not None and later.calls == 3  # claims cost a later cycle nothing
    assert later.claims[(ns, "data")]["status"]["capacity"] == {"storage": "1Gi"}
    resizing = dict(
        bound,
        conditions=[
            {
                "type": "FileSystemResizePending",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": "2026-11-26T10:00:07Z",
                "message": "Waiting for user to (re-)start a pod to finish file system resize "
                "of volume on node.",
            }
        ],
    )
    fake.set_status(*PVC, ns, "data", resizing)
    eventually(
        lambda: (
            [c["type"] for c in reading_of(reader).claims[(ns, "data")]["status"]["conditions"]]
            == ["FileSystemResizePending"]
        ),
        "the resize's condition in the reading",
    )
    assert "lastProbeTime" not in reading_of(reader).claims[(ns, "data")]["status"]["conditions"][0]
    assert lists(fake, "/persistentvolumeclaims") == []


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
