"""Kubernetes Events through the poller, against the HTTP-level fake API: one cluster-wide LIST,
then a watch (later cycles still make 3 calls); each event is filed under the deployment its
object belongs to (Deployment, ReplicaSet, Pod, HorizontalPodAutoscaler), anything else is
dropped at once; old-style and events.k8s.io-style events read alike, newest first, at most
``EVENTS_SHOWN`` a deployment; readings carry them between replicas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gitops_bridge import cluster as kube
from gitops_bridge import poller, slim, status
from tests.kubefake import FakeKube
from tests.test_poller import (
    caught_up,
    ensure_namespace,
    eventually,
    lists,
    populate,
    reading_of,
    watches,
)

NS = "group-g0"
OWNER = "app0-000000"  # populate()'s first deployment, in group-g0
RS = f"{OWNER}-5d8f7c9b4"
POD = f"{RS}-x7k2p"
EVENT = ("v1", "Event")


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.05) as server:
        ensure_namespace(server, "gitops-bridge")
        yield server


@pytest.fixture
def connection(fake: FakeKube, tmp_path: Path) -> kube.Cluster:
    connected = kube.Cluster.connect(kubeconfig=str(fake.kubeconfig(tmp_path / "kubeconfig")))
    assert connected is not None
    return connected


@pytest.fixture
def reader(connection: kube.Cluster) -> Iterator[poller.Poller]:
    """A poller whose watches end with the test."""
    watching = poller.Poller(connection)
    yield watching
    watching.stop()


def at(second: int) -> str:
    return f"2026-11-26T10:{second // 60:02d}:{second % 60:02d}Z"


def old_style(
    name: str,
    *,
    kind: str,
    obj: str,
    reason: str = "BackOff",
    message: str = "Back-off restarting failed container app",
    type_: str = "Warning",
    namespace: str = NS,
    first: int = 0,
    last: int = 0,
    count: int = 1,
    component: str = "kubelet",
) -> dict[str, Any]:
    """A core v1 Event as client-go's tools/record writes it: count, first/lastTimestamp."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": at(first)},
        "involvedObject": {
            "kind": kind,
            "namespace": namespace,
            "name": obj,
            "uid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            "apiVersion": "apps/v1" if kind in ("Deployment", "ReplicaSet") else "v1",
        },
        "reason": reason,
        "message": message,
        "source": {"component": component, "host": "kind-worker"},
        "firstTimestamp": at(first),
        "lastTimestamp": at(last or first),
        "count": count,
        "type": type_,
        "eventTime": None,
        "reportingComponent": component,
        "reportingInstance": "kind-worker",
    }


def new_style(
    name: str, *, kind: str, obj: str, first: int, last: int | None = None, count: int = 0
) -> dict[str, Any]:
    """One written through events.k8s.io/v1 (client-go tools/events), read back in core v1:
    eventTime and series, first/lastTimestamp null, no count."""
    event = old_style(name, kind=kind, obj=obj, first=first)
    event |= {
        "reason": "SuccessfulRescale",
        "message": "New size: 3; reason: cpu resource utilization above target",
        "type": "Normal",
        "firstTimestamp": None,
        "lastTimestamp": None,
        "eventTime": at(first)[:-1] + ".123456Z",
        "source": {},
        "reportingComponent": "horizontal-pod-autoscaler",
        "action": "Rescale",
    }
    del event["count"]
    if last is not None:
        event["series"] = {"count": count, "lastObservedTime": at(last)[:-1] + ".000042Z"}
    return event


@pytest.mark.parametrize(
    ("namespace", "kind", "name", "owner"),
    [
        (NS, "Deployment", OWNER, OWNER),
        (NS, "HorizontalPodAutoscaler", OWNER, OWNER),
        (NS, "ReplicaSet", RS, OWNER),
        (NS, "Pod", POD, OWNER),
        (NS, "Pod", "my-long-app-name-k3x9q2-6b7c8d9f5-abcde", "my-long-app-name-k3x9q2"),
        (NS, "ReplicaSet", OWNER, None),  # "app0": no id left, not a deployment's set
        (NS, "Pod", f"{OWNER}-x7k2p", None),  # one segment short: not a Deployment's pod
        (NS, "Pod", "standalone", None),
        (NS, "ConfigMap", OWNER, None),
        (NS, "HelmRelease", OWNER, None),  # Flux's own: its notification events
        (NS, "Deployment", "coredns", None),  # no <app>-<id>
        (NS, "Deployment", "App-000000", None),
        (NS, "Deployment", "app-00000", None),  # an id has 6 characters
        (NS, "Deployment", f"{'a' * 47}-000000", None),  # longer than a release name
        ("kube-system", "Pod", POD, None),  # not a group's namespace
        ("default", "Deployment", OWNER, None),
    ],
)
def test_an_event_is_filed_under_the_deployment_of_its_object(
    namespace: str, kind: str, name: str, owner: str | None
) -> None:
    event = old_style("e", kind=kind, obj=name, namespace=namespace)
    assert poller.event_owner(event) == (None if owner is None else (namespace, owner))
    assert poller.event_owner(slim.event(event)) == poller.event_owner(event)


def test_events_are_listed_once_then_watched_and_foreign_ones_dropped(
    fake: FakeKube, reader: poller.Poller
) -> None:
    populate(fake, 2, 1)
    for event in (
        old_style("d.1", kind="Deployment", obj=OWNER, reason="ScalingReplicaSet", type_="Normal"),
        old_style("rs.1", kind="ReplicaSet", obj=RS, reason="FailedCreate", first=1, last=9),
        old_style("pod.1", kind="Pod", obj=POD, first=2, last=8, count=4),
        new_style("hpa.1", kind="HorizontalPodAutoscaler", obj=OWNER, first=3, last=7, count=2),
        old_style("other.1", kind="Pod", obj="app1-000001-5d8f7c9b4-abcde", namespace="group-g1"),
        # dropped: not the object of one of ours, or not in a group's namespace
        old_style("cm.1", kind="ConfigMap", obj="settings"),
        old_style("node.1", kind="Node", obj="kind-worker", namespace="default"),
        old_style("dns.1", kind="Pod", obj="coredns-7db6d8ff4d-x2x9z", namespace="kube-system"),
    ):
        fake.apply(event)
    fake.reset_requests()
    first = reader.run_once()
    assert first is not None and first.calls == 9
    [listed] = lists(fake, "/api/v1/events")
    assert "labelSelector" not in listed  # Events carry no labels: the list is cluster-wide
    assert set(first.events) == {(NS, OWNER), ("group-g1", "app1-000001")}
    assert [e["metadata"]["name"] for e in first.events[(NS, OWNER)]] == [
        "d.1",
        "hpa.1",
        "pod.1",
        "rs.1",
    ]
    assert first.events[(NS, OWNER)][2] == {  # slim: what the page shows, nothing more
        "metadata": {"name": "pod.1", "namespace": NS},
        "type": "Warning",
        "reason": "BackOff",
        "count": 4,
        "firstTimestamp": at(2),
        "lastTimestamp": at(8),
        "message": "Back-off restarting failed container app",
        "involvedObject": {"kind": "Pod", "name": POD},
        "source": {"component": "kubelet"},
        "reportingComponent": "kubelet",
    }
    view = reader.view(namespace=NS, name=OWNER, deployment_id="000000")
    assert view is not None
    assert [e["metadata"]["name"] for e in view.events] == ["rs.1", "pod.1", "hpa.1", "d.1"]
    eventually(lambda: bool(watches(fake, "/api/v1/events")), "the events watched")

    fake.reset_requests()
    again = dict(old_style("pod.1", kind="Pod", obj=POD, first=2, last=20, count=5))
    stored = fake.get(*EVENT, NS, "pod.1")
    assert stored is not None
    again["metadata"] = stored["metadata"]
    fake.apply(again)  # the recorder raises the count of an identical event
    fake.apply(old_style("d.2", kind="Deployment", obj=OWNER, first=30, type_="Normal"))
    fake.delete(*EVENT, NS, "rs.1")  # the API server's TTL ran out
    fake.apply(old_style("cm.2", kind="ConfigMap", obj="settings", first=31))
    caught_up(reader)
    events = reading_of(reader).events[(NS, OWNER)]
    assert [e["metadata"]["name"] for e in events] == ["d.1", "d.2", "hpa.1", "pod.1"]
    assert events[3]["count"] == 5 and events[3]["lastTimestamp"] == at(20)
    view = reader.view(namespace=NS, name=OWNER, deployment_id="000000")
    assert view is not None
    assert [e["metadata"]["name"] for e in view.events] == ["d.2", "pod.1", "hpa.1", "d.1"]
    assert lists(fake, "/api/v1/events") == []  # the watch brought all of it
    later = reader.run_once()
    assert later is not None and later.calls == 3  # events cost a later cycle nothing


def test_a_foreign_event_changes_nothing_read(fake: FakeKube, reader: poller.Poller) -> None:
    """Most of a cluster's events are about none of the deployments: they move the watch on
    and leave the reading as it was (not rebuilt, not newer)."""
    populate(fake, 1, 1)
    assert reader.run_once() is not None
    eventually(lambda: bool(reader.watching.get("events")), "the events watched")
    caught_up(reader)
    before = reading_of(reader)
    fake.apply(
        old_style("dns.1", kind="Pod", obj="coredns-7db6d8ff4d-x2x9z", namespace="kube-system")
    )
    fake.apply(old_style("node.1", kind="Node", obj="kind-worker", namespace="default"))
    caught_up(reader)
    assert reading_of(reader) is before
    fake.apply(old_style("pod.1", kind="Pod", obj=POD))  # one of ours: a new reading
    caught_up(reader)
    after = reading_of(reader)
    assert after is not before and [e["reason"] for e in after.events[(NS, OWNER)]] == ["BackOff"]


def test_a_namespace_holds_at_most_its_bound_of_events_the_least_recent_going(
    fake: FakeKube, reader: poller.Poller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group that writes Events of its own (its manifests may) fills only its own share:
    past the bound, its least recently seen go, in the list as in the watch; another
    namespace's stay."""
    monkeypatch.setattr(poller, "EVENTS_PER_NAMESPACE", 3)
    populate(fake, 2, 1)
    for n in range(4):
        fake.apply(old_style(f"flood.{n}", kind="Pod", obj=POD, first=n, last=10 + n))
    fake.apply(
        old_style("other.1", kind="Pod", obj="app1-000001-5d8f7c9b4-abcde", namespace="group-g1")
    )
    assert reader.run_once() is not None
    held = reading_of(reader).events
    assert [e["metadata"]["name"] for e in held[(NS, OWNER)]] == ["flood.1", "flood.2", "flood.3"]
    assert [e["metadata"]["name"] for e in held[("group-g1", "app1-000001")]] == ["other.1"]
    eventually(lambda: bool(reader.watching.get("events")), "the events watched")
    fake.apply(old_style("flood.4", kind="Pod", obj=POD, first=4, last=30))
    fake.apply(old_style("flood.5", kind="Pod", obj=POD, first=5, last=5))  # seen long ago
    caught_up(reader)
    held = reading_of(reader).events
    assert [e["metadata"]["name"] for e in held[(NS, OWNER)]] == ["flood.2", "flood.3", "flood.4"]
    assert [e["metadata"]["name"] for e in held[("group-g1", "app1-000001")]] == ["other.1"]


def test_both_kinds_of_event_read_alike_newest_first() -> None:
    old = old_style("pod.1", kind="Pod", obj=POD, first=2, last=50, count=7)
    new = new_style("hpa.1", kind="HorizontalPodAutoscaler", obj=OWNER, first=3, last=40, count=3)
    single = new_style("hpa.2", kind="HorizontalPodAutoscaler", obj=OWNER, first=45)
    timeless = old_style("d.1", kind="Deployment", obj=OWNER) | {
        "firstTimestamp": None,
        "lastTimestamp": None,
    }
    slims = [slim.event(e) for e in (timeless, new, old, single)]
    assert [e["metadata"]["name"] for e in status.newest_events(slims, limit=10)] == [
        "pod.1",  # 10:00:50
        "hpa.2",  # 10:00:45.123456 (eventTime, no series yet)
        "hpa.1",  # 10:00:40.000042 (series.lastObservedTime)
        "d.1",  # no time at all: the oldest
    ]
    assert status.event_view(slims[2]) == status.EventView(
        type="Warning",
        reason="BackOff",
        message="Back-off restarting failed container app",
        kind="Pod",
        name=POD,
        count=7,
        first_seen=at(2),
        last_seen=at(50),
        source="kubelet",
    )
    series = status.event_view(slims[1])
    assert (series.count, series.first_seen, series.last_seen, series.source) == (
        3,
        "2026-11-26T10:00:03.123456Z",
        "2026-11-26T10:00:40.000042Z",
        "horizontal-pod-autoscaler",
    )
    once = status.event_view(slims[3])
    assert (once.count, once.first_seen, once.last_seen) == (
        1,
        "2026-11-26T10:00:45.123456Z",
        "2026-11-26T10:00:45.123456Z",
    )
    assert status.event_view(slims[0]).last_seen == ""


def test_a_view_holds_the_newest_events_only(fake: FakeKube, connection: kube.Cluster) -> None:
    populate(fake, 1, 1)
    shown = poller.EVENTS_SHOWN
    for n in range(shown + 12):
        fake.apply(old_style(f"pod.{n:03d}", kind="Pod", obj=POD, first=n, last=n))
    reading = poller.Poller(connection).poll()
    assert len(reading.events[(NS, OWNER)]) == shown + 12  # the API server's TTL bounds these
    following = poller.Poller(connection)  # as a follower: the leader's reading, no watch
    following.state.reading = reading
    view = following.view(namespace=NS, name=OWNER, deployment_id="000000")
    assert view is not None
    assert [e["metadata"]["name"] for e in view.events] == [
        f"pod.{n:03d}" for n in reversed(range(12, shown + 12))
    ]


def test_a_long_message_is_cut() -> None:
    long = old_style("pod.1", kind="Pod", obj=POD, message="x" * 5000)
    kept = slim.event(long)
    assert len(kept["message"]) == slim.EVENT_MESSAGE_MAX
    assert kept["message"].endswith("\u2026") and slim.event(kept) == kept


def test_readings_carry_events_between_replicas(fake: FakeKube, connection: kube.Cluster) -> None:
    populate(fake, 1, 1)
    fake.apply(old_style("pod.1", kind="Pod", obj=POD, first=2, last=8, count=4))
    fake.apply(new_style("hpa.1", kind="HorizontalPodAutoscaler", obj=OWNER, first=3, last=7))
    reading = poller.Poller(connection).poll()
    assert len(reading.events[(NS, OWNER)]) == 2
    assert poller.reading_from_json(poller.reading_to_json(reading)) == reading
    older = orjson.loads(poller.reading_to_json(reading))
    del older["events"]  # a leader of an earlier version
    assert poller.reading_from_json(orjson.dumps(older)).events == {}
