"""Reads the cluster back on a schedule: a fixed set of LIST calls per cycle.

One cycle lists HelmReleases, Deployments, Pods and PodMetrics cluster-wide with one
label selector (``gitops-bridge.code-hub.com/deployment-id``), the groups' own
Kustomizations (``gitops-bridge.code-hub.com/group``), and reads the platform
Kustomization and GitRepository by name: 7 calls (more only when a list needs several
pages), however many deployments and groups there are. Failures never stop the poller:
the last good reading is kept with its age, and the next attempts back off.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gitops_bridge import cluster as kube
from gitops_bridge import metrics
from gitops_bridge.errors import BridgeError, ClusterUnavailable, NotFound
from gitops_bridge.render import layout
from gitops_bridge.status import ClusterView

log = logging.getLogger(__name__)

SELECTOR = layout.LABEL_ID  # "exists": every object the chart or the bridge made
Key = tuple[str, str]  # namespace, name / deployment id


@dataclass(frozen=True)
class Reading:
    taken_at: float  # wall clock
    helmreleases: dict[Key, dict[str, Any]]  # (namespace, name)
    deployments: dict[Key, dict[str, Any]]  # (namespace, deployment id)
    pods: dict[Key, list[dict[str, Any]]]  # (namespace, deployment id)
    metrics: dict[Key, dict[str, Any]]  # (namespace, pod name)
    kustomization: dict[str, Any] | None  # the platform's (flux-system/tenants)
    gitrepository: dict[str, Any] | None
    calls: int
    duration: float
    metrics_available: bool
    groups: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # namespace -> its apps Kustomization


@dataclass
class PollerState:
    """What the UI shows about the poller itself."""

    reading: Reading | None = None
    error: str = ""
    failures: int = 0
    last_attempt: float = 0.0
    backoff_until: float = 0.0
    cycles: int = 0
    durations: list[float] = field(default_factory=list)


def _label(obj: dict[str, Any], key: str) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(key, ""))


def _ns_name(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


class Poller:
    def __init__(
        self,
        cluster: kube.Cluster,
        *,
        interval: float = 10.0,
        flux_namespace: str = "flux-system",
        kustomization: str = "tenants",
        gitrepository: str = "flux-system",
        page_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cluster = cluster
        self.interval = interval
        self.flux_namespace = flux_namespace
        self.kustomization_name = kustomization
        self.gitrepository_name = gitrepository
        self.page_size = page_size
        self.clock = clock
        self.state = PollerState()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Reading], None]] = []

    def on_reading(self, listener: Callable[[Reading], None]) -> None:
        self._listeners.append(listener)

    # ---- one cycle -------------------------------------------------------------------

    def poll(self) -> Reading:
        """One cycle of LIST/GET calls; raises ClusterUnavailable."""
        start = time.perf_counter()
        calls = 0
        releases = self.cluster.list(
            kube.HELMRELEASES, label_selector=SELECTOR, page_size=self.page_size
        )
        deployments = self.cluster.list(
            kube.DEPLOYMENTS, label_selector=SELECTOR, page_size=self.page_size
        )
        pods = self.cluster.list(kube.PODS, label_selector=SELECTOR, page_size=self.page_size)
        calls += releases.calls + deployments.calls + pods.calls
        metrics_items: list[dict[str, Any]] = []
        metrics_available = True
        try:
            sampled = self.cluster.list(
                kube.PODMETRICS, label_selector=SELECTOR, page_size=self.page_size
            )
            metrics_items, calls = sampled.items, calls + sampled.calls
        except (NotFound, ClusterUnavailable) as exc:  # metrics-server is optional
            metrics_available, calls = False, calls + 1
            log.debug("no pod metrics: %s", exc)
        group_syncs = self.cluster.list(
            kube.KUSTOMIZATIONS, label_selector=layout.LABEL_GROUP, page_size=self.page_size
        )
        calls += group_syncs.calls
        kustomization = self.cluster.get(
            kube.KUSTOMIZATIONS, self.flux_namespace, self.kustomization_name
        )
        source = self.cluster.get(
            kube.GITREPOSITORIES, self.flux_namespace, self.gitrepository_name
        )
        calls += 2
        grouped: dict[Key, list[dict[str, Any]]] = defaultdict(list)
        for pod in pods.items:
            grouped[(_ns_name(pod)[0], _label(pod, layout.LABEL_ID))].append(pod)
        return Reading(
            taken_at=self.clock(),
            helmreleases={_ns_name(r): r for r in releases.items},
            deployments={
                (_ns_name(d)[0], _label(d, layout.LABEL_ID)): d for d in deployments.items
            },
            pods=dict(grouped),
            metrics={_ns_name(m): m for m in metrics_items},
            kustomization=kustomization,
            gitrepository=source,
            calls=calls,
            duration=time.perf_counter() - start,
            metrics_available=metrics_available,
            groups={
                _ns_name(k)[0]: k
                for k in group_syncs.items
                if _ns_name(k)[1] == layout.GROUP_KUSTOMIZATION
            },
        )

    def run_once(self) -> Reading | None:
        """A scheduled cycle: never raises; backs off after failures."""
        now = self.clock()
        with self._lock:
            if now < self.state.backoff_until:
                return None
            self.state.last_attempt = now
        try:
            reading = self.poll()
        except BridgeError as exc:
            metrics.inc("gitops_bridge_poll_errors_total")
            with self._lock:
                self.state.failures += 1
                self.state.error = exc.message
                delay = min(self.interval * 2**self.state.failures, 300.0)
                self.state.backoff_until = now + delay
            log.warning("poll failed (%d in a row): %s", self.state.failures, exc.message)
            return None
        except Exception as exc:  # a bug must not kill the scheduler thread
            log.exception("poll crashed")
            with self._lock:
                self.state.failures += 1
                self.state.error = f"{type(exc).__name__}: {exc}"
            return None
        metrics.observe("gitops_bridge_poll_duration_seconds", reading.duration)
        metrics.inc("gitops_bridge_poll_api_calls_total", reading.calls)
        with self._lock:
            self.state.reading = reading
            self.state.error = ""
            self.state.failures = 0
            self.state.backoff_until = 0.0
            self.state.cycles += 1
            self.state.durations = [*self.state.durations[-99:], reading.duration]
        for listener in self._listeners:
            listener(reading)
        return reading

    # ---- for the status of one deployment ----------------------------------------------

    def view(self, *, namespace: str, name: str, deployment_id: str) -> ClusterView | None:
        """What the last reading says about one deployment; None when there is none."""
        reading = self.state.reading
        if reading is None:
            return None
        age = max(0.0, self.clock() - reading.taken_at)
        pods = tuple(reading.pods.get((namespace, deployment_id), ()))
        # the group's own Kustomization applies its apps (a repository of the earlier
        # layout has none: the platform one applied everything)
        sync = reading.groups.get(namespace, reading.kustomization)
        applied = ((sync or {}).get("status") or {}).get("lastAppliedRevision")
        return ClusterView(
            helmrelease=reading.helmreleases.get((namespace, name)),
            deployment=reading.deployments.get((namespace, deployment_id)),
            pods=pods,
            metrics={
                pod_name: reading.metrics[(namespace, pod_name)]
                for pod_name in (_ns_name(pod)[1] for pod in pods)
                if (namespace, pod_name) in reading.metrics
            },
            applied_revision=applied,
            age=age,
            stale=age > 3 * self.interval or bool(self.state.error),
        )


# ---- sharing readings between replicas ------------------------------------------------


def _pairs(mapping: dict[Key, Any]) -> list[list[Any]]:
    return [[key[0], key[1], value] for key, value in mapping.items()]


def reading_to_json(reading: Reading) -> bytes:
    """The reading as JSON, for replicas that follow the leader."""
    return orjson.dumps(
        {
            "taken_at": reading.taken_at,
            "helmreleases": _pairs(reading.helmreleases),
            "deployments": _pairs(reading.deployments),
            "pods": _pairs(reading.pods),
            "metrics": _pairs(reading.metrics),
            "kustomization": reading.kustomization,
            "gitrepository": reading.gitrepository,
            "calls": reading.calls,
            "duration": reading.duration,
            "metrics_available": reading.metrics_available,
            "groups": reading.groups,
        }
    )


def reading_from_json(data: bytes) -> Reading:
    raw = orjson.loads(data)

    def keyed(name: str) -> dict[Key, Any]:
        return {(ns, key): value for ns, key, value in raw[name]}

    return Reading(
        taken_at=float(raw["taken_at"]),
        helmreleases=keyed("helmreleases"),
        deployments=keyed("deployments"),
        pods=keyed("pods"),
        metrics=keyed("metrics"),
        kustomization=raw["kustomization"],
        gitrepository=raw["gitrepository"],
        calls=int(raw["calls"]),
        duration=float(raw["duration"]),
        metrics_available=bool(raw["metrics_available"]),
        groups=dict(raw.get("groups") or {}),
    )


def follow(poller: Poller, url: str, *, token: str, timeout: float = 5.0) -> Reading | None:
    """Take the leader's latest reading instead of polling; never raises."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reading = reading_from_json(response.read())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        with poller._lock:
            poller.state.error = f"the leader's reading is unavailable: {exc}"
        return None
    with poller._lock:
        poller.state.reading = reading
        poller.state.error = ""
    return reading
