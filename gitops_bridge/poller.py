"""Reads the cluster back: each kind listed once, then watched; a fixed set of calls a cycle.

The first cycle lists HelmReleases, Deployments and Pods cluster-wide with one label
selector (``gitops-bridge.code-hub.com/deployment-id``), the groups' own Kustomizations
(``gitops-bridge.code-hub.com/group``), the volumes' PersistentVolumeClaims
(``app.kubernetes.io/managed-by=gitops-bridge``), core v1 Events (cluster-wide, no selector:
Events carry no labels) and PodMetrics, and reads the platform Kustomization and
GitRepository by name: 9 calls (more when a list needs several pages of ``page_size``),
however many deployments, groups and volumes there are. From then on the first six kinds
are kept current by a watch each (``watcher``): a change is in ``state.reading`` as soon as
its event arrives, and every later cycle makes 3 calls, PodMetrics (metrics.k8s.io serves no
watch: https://github.com/kubernetes-sigs/metrics-server/issues/87) and the two named
objects. Every object is reduced to the fields the bridge reads (``slim``) as soon as it is
decoded.

Events are indexed by the deployment they are about, (namespace, ``<app>-<id>``), derived
from ``involvedObject``: a Deployment or HorizontalPodAutoscaler by its name (the chart
names both after the release), a ReplicaSet by its name without the last
``-<pod-template-hash>``, a Pod by its name without the last two segments (a Deployment's
pods are ``<replicaset>-<5 chars>``: kubernetes ``pkg/controller/controller_utils.go``).
An event of anything else (another kind, a name that is not ``<app>-<id>``, a namespace that
is not a group's ``group-...``) is dropped as soon as it is decoded. What stays is bounded
by the API server itself: it deletes every Event ``--event-ttl`` after its last update
(default 1h: https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/),
and the recorders fold repeats into one Event (a count or a series) instead of writing new
ones; and the index holds at most ``EVENTS_PER_NAMESPACE`` a namespace (a group that writes
Events of its own loses its oldest, nobody else's). A deployment's view returns at most its
``EVENTS_SHOWN`` newest.

Failures never stop the poller: the last good reading is kept with its age, and the next
attempts back off. ``stop()`` ends the watches (a follower keeps none); the next cycle
lists again.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from gitops_bridge import cluster as kube
from gitops_bridge import listbody, metrics, models, slim, status
from gitops_bridge.errors import BridgeError, ClusterUnavailable, NotFound
from gitops_bridge.render import layout
from gitops_bridge.status import ClusterView
from gitops_bridge.watcher import Index, Watcher

log = logging.getLogger(__name__)

SELECTOR = layout.LABEL_ID  # "exists": every object the chart or the bridge made
CLAIM_SELECTOR = f"{layout.LABEL_MANAGED_BY}={layout.MANAGED_BY}"  # the volumes' claims
Key = tuple[str, str]  # namespace, name / deployment id
WATCHED = ("helmreleases", "deployments", "pods", "groups", "claims", "events")
LIST_ORDER = ("pods", "events", "deployments", "helmreleases", "groups", "claims")  # largest first
EVENTS_SHOWN = 30  # a deployment's newest events in its view
# Events held per group namespace, the least recently seen going first: anyone who may write
# Events in a namespace (the group's own manifests) can fill only that much of the index
EVENTS_PER_NAMESPACE = 2000
_NOTHING: dict[str, Any] = {}  # what a list keeps of a PodMetrics once its sample is stored
_FOREIGN: dict[str, Any] = {}  # what a list keeps of an Event about none of the deployments
# a deployment's name: the app (a DNS label) and the id (models.Deployment.name)
_DEPLOYMENT_NAME = re.compile(rf"^[a-z]([-a-z0-9]*[a-z0-9])?-[a-z0-9]{{{models.ID_LENGTH}}}$")
_OWN_NAME = {"Deployment": 0, "HorizontalPodAutoscaler": 0, "ReplicaSet": 1, "Pod": 2}


@dataclass(frozen=True)
class Reading:
    taken_at: float  # wall clock
    helmreleases: dict[Key, dict[str, Any]]  # (namespace, name)
    deployments: dict[Key, dict[str, Any]]  # (namespace, deployment id)
    pods: dict[Key, list[dict[str, Any]]]  # (namespace, deployment id)
    metrics: dict[Key, dict[str, Any]]  # (namespace, pod name): its newest sample (see _sample)
    kustomization: dict[str, Any] | None  # the platform's (flux-system/tenants)
    gitrepository: dict[str, Any] | None
    calls: int
    duration: float
    metrics_available: bool
    groups: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # namespace -> its apps Kustomization
    claims: dict[Key, dict[str, Any]] = field(default_factory=dict)  # (namespace, name)
    # (namespace, deployment name): its Events, by name (see the module docstring)
    events: dict[Key, list[dict[str, Any]]] = field(default_factory=dict)


class PollerState:
    """What the UI shows about the poller itself. ``reading`` is the latest one: the last
    cycle's with every change the watches brought since (or, on a follower, the leader's)."""

    def __init__(self, fresh: Callable[[], Reading | None] = lambda: None) -> None:
        self._fresh = fresh
        self._reading: Reading | None = None
        self.error = ""
        self.failures = 0
        self.last_attempt = 0.0
        self.backoff_until = 0.0
        self.cycles = 0
        self.durations: list[float] = []

    @property
    def reading(self) -> Reading | None:
        fresh = self._fresh()
        return fresh if fresh is not None else self._reading

    @reading.setter
    def reading(self, value: Reading | None) -> None:
        self._reading = value


@dataclass(frozen=True)
class _Sampled:
    """What a cycle reads besides the watched kinds."""

    metrics: dict[Key, dict[str, Any]]
    metrics_available: bool
    kustomization: dict[str, Any] | None
    gitrepository: dict[str, Any] | None
    calls: int  # every call of the cycle, its LISTs included
    duration: float
    taken_at: float


def _label(obj: dict[str, Any], key: str) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(key, ""))


def _ns_name(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


def _by_deployment_id(obj: dict[str, Any]) -> Key:
    return _ns_name(obj)[0], _label(obj, layout.LABEL_ID)


def _group_sync(obj: dict[str, Any]) -> Hashable | None:
    namespace, name = _ns_name(obj)
    return namespace if name == layout.GROUP_KUSTOMIZATION else None


def event_owner(obj: dict[str, Any]) -> Key | None:
    """(namespace, deployment name) of the deployment an Event is about, from its
    involvedObject; None when it cannot be one of ours (see the module docstring)."""
    namespace = (obj.get("metadata") or {}).get("namespace")
    if not isinstance(namespace, str) or not namespace.startswith(models.NAMESPACE_PREFIX):
        return None
    involved = obj.get("involvedObject") or {}
    name, suffixes = involved.get("name"), _OWN_NAME.get(str(involved.get("kind")))
    if not isinstance(name, str) or suffixes is None:
        return None
    parts = name.rsplit("-", suffixes) if suffixes else [name]
    if len(parts) != suffixes + 1 or not all(parts):
        return None
    owner = parts[0]
    if len(owner) > models.RELEASE_NAME_MAX or not _DEPLOYMENT_NAME.fullmatch(owner):
        return None
    return namespace, owner


def _keep_event(obj: dict[str, Any]) -> dict[str, Any]:
    """The slim Event, or one shared empty dict for an event about none of the deployments
    (a cluster-wide list is mostly those: kube-system's, other namespaces'), which the index
    drops (its key is None)."""
    return slim.event(obj) if event_owner(obj) is not None else _FOREIGN


class Poller:
    def __init__(
        self,
        cluster: kube.Cluster,
        *,
        interval: float = 10.0,
        flux_namespace: str = "flux-system",
        kustomization: str = "tenants",
        gitrepository: str = "flux-system",
        page_size: int = 500,
        watch_timeout: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cluster = cluster
        self.interval = interval
        self.flux_namespace = flux_namespace
        self.kustomization_name = kustomization
        self.gitrepository_name = gitrepository
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.clock = clock
        self.state = PollerState(self._fresh)
        self._lock = threading.Lock()  # the state's counters
        self._cycle_lock = threading.Lock()  # one cycle (or stop) at a time
        self._build_lock = threading.Lock()
        self._listeners: list[Callable[[Reading], None]] = []
        self._watchers: dict[str, Watcher] = {}
        self._sampled: _Sampled | None = None
        self._changes = 0  # changes the watches applied
        self._built: tuple[int, _Sampled, Reading] | None = None

    def on_reading(self, listener: Callable[[Reading], None]) -> None:
        self._listeners.append(listener)

    # ---- one cycle -------------------------------------------------------------------

    def poll(self) -> Reading:
        """One full read of the cluster, every LIST and GET, watching nothing; raises
        ClusterUnavailable."""
        watchers = self._new_watchers(on_change=lambda: None)
        sampled = self._read(watchers, {})
        return self._build(watchers, sampled, taken_at=sampled.taken_at)

    def _cycle(self) -> Reading:
        """Lists what is not listed yet, samples the rest, starts the watches not running."""
        with self._cycle_lock:
            if not self._watchers:
                self._watchers = self._new_watchers(on_change=self._changed)
            samples = self._sampled.metrics if self._sampled is not None else {}
            self._sampled = self._read(self._watchers, samples)
            for watch in self._watchers.values():
                watch.start()
            reading = self._fresh()
            assert reading is not None
            return reading

    def _new_watchers(self, *, on_change: Callable[[], None]) -> dict[str, Watcher]:
        def watcher(
            resource: kube.Resource, index: Index, keep: kube.Keep, selector: str
        ) -> Watcher:
            return Watcher(
                self.cluster,
                resource,
                index=index,
                keep=keep,
                label_selector=selector,
                page_size=self.page_size,
                timeout_seconds=self.watch_timeout,
                on_change=on_change,
                clock=self.clock,
            )

        return {
            "helmreleases": watcher(
                kube.HELMRELEASES, Index(_ns_name, many=False), slim.helmrelease, SELECTOR
            ),
            "deployments": watcher(
                kube.DEPLOYMENTS, Index(_by_deployment_id, many=False), slim.deployment, SELECTOR
            ),
            "pods": watcher(kube.PODS, Index(_by_deployment_id, many=True), slim.pod, SELECTOR),
            "groups": watcher(
                kube.KUSTOMIZATIONS,
                Index(_group_sync, many=False),
                slim.kustomization,
                layout.LABEL_GROUP,
            ),
            "claims": watcher(
                kube.PERSISTENTVOLUMECLAIMS,
                Index(_ns_name, many=False),
                slim.persistentvolumeclaim,
                CLAIM_SELECTOR,
            ),
            "events": watcher(
                kube.EVENTS,
                Index(
                    event_owner,
                    many=True,
                    per_namespace=EVENTS_PER_NAMESPACE,
                    order=status.event_last_seen,
                ),
                _keep_event,
                "",
            ),
        }

    def _read(self, watchers: dict[str, Watcher], samples: dict[Key, dict[str, Any]]) -> _Sampled:
        """The LISTs of the kinds not listed yet, largest first, and what every cycle reads,
        two requests at a time: the API server answers one while the other is decoded."""
        start = time.perf_counter()
        lists = [  # a running watch lists again by itself (after a 410)
            watchers[name].relist
            for name in LIST_ORDER
            if not watchers[name].listed and not watchers[name].running
        ]
        if lists:
            # the collector off for the whole listing, not only each page's decoding: what
            # the pages leave is the slim objects kept, and every collection in between
            # would walk all those kept so far again
            with (
                listbody.collector_paused(promote=True),
                ThreadPoolExecutor(max_workers=2, thread_name_prefix="poll") as pool,
            ):
                listed = [pool.submit(relist) for relist in lists]
                sampling = pool.submit(self._sample, samples)
                calls = sum(future.result() for future in listed)
                sampled = sampling.result()
        else:
            calls, sampled = 0, self._sample(samples)
        return dataclasses.replace(
            sampled,
            calls=calls + sampled.calls,
            duration=time.perf_counter() - start,
            taken_at=self.clock(),
        )

    def _sample(self, samples: dict[Key, dict[str, Any]]) -> _Sampled:
        """PodMetrics and the platform's two objects, read anew each cycle.

        Each PodMetrics replaces its pod's sample in ``samples`` (the dict the last reading
        holds) as soon as it is decoded, so one sample of a pod is alive at a time, not the
        last cycle's and this one's (50,000 pods: 45 MB each); a pod that came or went makes
        a new dict (a reading may be serialised meanwhile: its dict must keep its keys)."""
        calls = 0
        metrics_available = True
        added: dict[Key, dict[str, Any]] = {}
        seen: set[Key] = set()

        def refresh(obj: dict[str, Any]) -> dict[str, Any]:
            sample = slim.pod_metrics(obj)
            key = _ns_name(sample)
            seen.add(key)
            if key in samples:
                samples[key] = sample
            else:
                added[key] = sample
            return _NOTHING

        try:
            sampled = self.cluster.list(
                kube.PODMETRICS, label_selector=SELECTOR, page_size=self.page_size, keep=refresh
            )
            calls += sampled.calls
            if added or len(seen) != len(samples):
                samples = {key: samples[key] for key in samples if key in seen} | added
        except (NotFound, ClusterUnavailable) as exc:  # metrics-server is optional
            metrics_available, calls, samples = False, calls + 1, {}
            log.debug("no pod metrics: %s", exc)
        kustomization = self.cluster.get(
            kube.KUSTOMIZATIONS, self.flux_namespace, self.kustomization_name
        )
        source = self.cluster.get(
            kube.GITREPOSITORIES, self.flux_namespace, self.gitrepository_name
        )
        return _Sampled(
            metrics=samples,
            metrics_available=metrics_available,
            kustomization=slim.kustomization(kustomization) if kustomization else None,
            gitrepository=slim.gitrepository(source) if source else None,
            calls=calls + 2,
            duration=0.0,
            taken_at=0.0,
        )

    def _build(
        self, watchers: dict[str, Watcher], sampled: _Sampled, *, taken_at: float
    ) -> Reading:
        kept = {name: watchers[name].snapshot() for name in WATCHED}
        return Reading(
            taken_at=taken_at,
            helmreleases=kept["helmreleases"],
            deployments=kept["deployments"],
            pods=kept["pods"],
            metrics=sampled.metrics,
            kustomization=sampled.kustomization,
            gitrepository=sampled.gitrepository,
            calls=sampled.calls,
            duration=sampled.duration,
            metrics_available=sampled.metrics_available,
            groups=kept["groups"],
            claims=kept["claims"],
            events=kept["events"],
        )

    def _changed(self) -> None:
        with self._build_lock:
            self._changes += 1

    def _fresh(self) -> Reading | None:
        """The last cycle's reading with what the watches applied since; None when nothing
        is watched. Built again only after a change (each index copies on write)."""
        watchers, sampled = self._watchers, self._sampled
        if not watchers or sampled is None:
            return None
        with self._build_lock:
            changes = self._changes
            if self._built is not None and self._built[0] == changes and self._built[1] is sampled:
                return self._built[2]
            changed_at = max(w.changed_at for w in watchers.values())
            reading = self._build(watchers, sampled, taken_at=max(sampled.taken_at, changed_at))
            self._built = (changes, sampled, reading)
            return reading

    def watch_versions(self) -> dict[str, str]:
        """The resourceVersion each watched kind is at ("" when not listed); {} when the
        poller watches nothing."""
        return {name: watch.version for name, watch in self._watchers.items()}

    @property
    def watching(self) -> dict[str, bool]:
        """Whether each watch runs now; {} when the poller watches nothing."""
        return {name: watch.running for name, watch in self._watchers.items()}

    def watch_errors(self) -> list[str]:
        return [f"watching {w.name}: {w.error}" for w in self._watchers.values() if w.error]

    def stop(self) -> None:
        """End the watches; the last reading stays (aging), and the next cycle lists anew."""
        with self._cycle_lock:
            if not self._watchers:
                return
            last = self._fresh()
            for watch in self._watchers.values():
                watch.stop()
            self._watchers, self._sampled, self._built = {}, None, None
            with self._lock:
                if last is not None:
                    self.state.reading = last

    def run_once(self) -> Reading | None:
        """A scheduled cycle: never raises; backs off after failures."""
        now = self.clock()
        with self._lock:
            if now < self.state.backoff_until:
                return None
            self.state.last_attempt = now
        try:
            reading = self._cycle()
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
            self.state.error = "; ".join(self.watch_errors())
            self.state.failures = 0
            self.state.backoff_until = 0.0
            self.state.cycles += 1
            self.state.durations = [*self.state.durations[-99:], reading.duration]
        for listener in self._listeners:
            try:
                listener(reading)
            except Exception:  # one listener's bug must not cost the others their reading
                log.exception("a reading's listener failed")
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
            stale=age > 3 * self.interval or bool(self.state.error) or bool(self.watch_errors()),
            events=status.newest_events(
                reading.events.get((namespace, name), ()), limit=EVENTS_SHOWN
            ),
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
            "claims": _pairs(reading.claims),
            "events": _pairs(reading.events),
        }
    )


def reading_from_json(data: bytes) -> Reading:
    raw = orjson.loads(data)

    def keyed(name: str) -> dict[Key, Any]:
        return {(ns, key): value for ns, key, value in raw[name]}

    def keyed_since(name: str) -> dict[Key, Any]:  # absent from an older leader's readings
        return {(ns, key): value for ns, key, value in raw.get(name) or ()}

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
        claims=keyed_since("claims"),
        events=keyed_since("events"),
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
