"""The loop back from the cluster: statuses, fast feedback, Flux events, retries and logs.

Joins what Git says (the service's state) with what the poller read, through the pure
``status.interpret``. Without a cluster every status is "not connected" and the actions
that need one answer 503, never a crash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gitops_bridge import cluster as kube
from gitops_bridge import jsonbody, models, podlogs, quantity, render, status, usage, usagehistory
from gitops_bridge import running as live
from gitops_bridge.cache import Bounded
from gitops_bridge.config import Settings
from gitops_bridge.errors import (
    BadRequest,
    ClusterUnavailable,
    InvalidRequest,
    NotFound,
    Unauthenticated,
)
from gitops_bridge.identity import User
from gitops_bridge.models import Deployment, Volume
from gitops_bridge.poller import Poller
from gitops_bridge.render import layout
from gitops_bridge.service import Service
from gitops_bridge.status import ClusterView, EventView

log = logging.getLogger(__name__)

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
FORCE_AT = "reconcile.fluxcd.io/forceAt"
RESET_AT = "reconcile.fluxcd.io/resetAt"
MAX_TAIL = 10_000
KEPT_EVENTS = 20  # per object, newest last
KNOWN_EVENTS = 10_000  # identities of recent events, to recognise replays


@dataclass(frozen=True)
class FluxEvent:
    kind: str
    namespace: str
    name: str
    severity: str
    reason: str
    message: str
    revision: str
    timestamp: str


class Monitor:
    def __init__(
        self,
        svc: Service,
        *,
        cluster: kube.Cluster | None,
        poller: Poller | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.svc = svc
        self.settings: Settings = svc.settings
        self.cluster = cluster
        self.poller = poller
        self.clock = clock
        self.events: dict[tuple[str, str], list[FluxEvent]] = {}  # (namespace, name) -> newest last
        self._seen: Bounded[tuple[str, ...], bool] = Bounded(max_items=KNOWN_EVENTS)
        self._ancestry: Bounded[tuple[str, str], bool] = Bounded(max_items=4096)
        self._lock = threading.Lock()
        frp = self.settings.frp
        self.sidecar = (quantity.parse(frp.cpu), quantity.parse(frp.memory))
        # usage over time, fed by every reading (a follower's too: ``runtime.cycle``); its
        # clock is the poller's, read when asked, so the graph's "now" is the readings' time
        self.usage = usage.Usage(
            self.settings.usage, clock=(lambda: poller.clock()) if poller else time.time
        )
        if poller is not None:
            poller.on_reading(self.usage.feed)
        # what a page draws: Prometheus' points when configured, the ring's otherwise
        self.usage_history = usagehistory.Reader(self.settings.usage, ring=self.usage)

    @property
    def connected(self) -> bool:
        return self.cluster is not None

    # ---- statuses ------------------------------------------------------------------------

    def is_applied(self, commit: str, applied: str) -> bool:
        key = (commit, applied)
        cached = self._ancestry.get(key)
        if cached is None:
            cached = commit == applied or self.svc.repo.is_ancestor(commit, applied)
            self._ancestry.put(key, cached)
        return cached

    def status(
        self,
        deployment: Deployment,
        *,
        last_commit: str | None,
        pending_review: bool = False,
        deleted_in_git: bool = False,
    ) -> status.DeploymentStatus:
        view = None
        if self.poller is not None:
            view = self.poller.view(
                namespace=deployment.namespace, name=deployment.name, deployment_id=deployment.id
            )
            if view is None:  # connected, but no reading yet
                return status.DeploymentStatus(
                    state="connecting",
                    label="reading the cluster…",
                    desired=deployment.spec.replicas,
                )
        return status.interpret(
            deployment,
            view=view,
            last_commit=last_commit,
            is_applied=self.is_applied,
            pending_review=pending_review,
            deleted_in_git=deleted_in_git,
            sidecar=self.sidecar,
            frp_secret=self.settings.frp.token_secret,
        )

    def group_applied(self, namespace: str) -> Callable[[str], bool | None]:
        """Has the group's Kustomization applied a commit (its revision contains it)? None:
        no reading says."""

        def applied(commit: str) -> bool | None:
            reading = self.poller.state.reading if self.poller is not None else None
            kustomization = reading.groups.get(namespace) if reading is not None else None
            revision = ((kustomization or {}).get("status") or {}).get("lastAppliedRevision")
            if not revision:
                return None
            return self.is_applied(commit, str(revision).rsplit(":", 1)[-1])

        return applied

    def volume_status(self, volume: Volume) -> dict[str, Any] | None:
        """The claim as the cluster has it: phase and capacity (None: no reading of it)."""
        reading = self.poller.state.reading if self.poller is not None else None
        claim = reading.claims.get((volume.namespace, volume.name)) if reading else None
        if claim is None:
            return None
        status = claim.get("status") or {}
        return {
            "phase": status.get("phase", "Pending"),
            "capacity": (status.get("capacity") or {}).get("storage"),
        }

    def group_problems(self, namespace: str) -> tuple[str, ...]:
        """What the latest reading shows a group must fix (its pods' exposure notes)."""
        reading = self.poller.state.reading if self.poller is not None else None
        if reading is None:
            return ()
        pods = [
            pod
            for (ns, _), items in sorted(reading.pods.items())
            if ns == namespace
            for pod in items
        ]
        return status.problems_of(pods, secret=self.settings.frp.token_secret)

    def running(self, deployment: Deployment, *, commit: str | None) -> live.Running | None:
        """What the cluster's Deployment runs against main (``commit``: the last commit that
        changed the deployment's file); None when no reading has its Deployment."""
        reading = self.poller.state.reading if self.poller is not None else None
        if reading is None:
            return None
        found = reading.deployments.get((deployment.namespace, deployment.id))
        return live.lookup(self.svc, deployment, cluster=found, commit=commit)

    def running_of(self, name: str) -> live.Running | None:
        """What runs for a deployment on main, by name (None: not on main, or not running)."""
        deployment = self.svc.state().deployments.get(name)
        if deployment is None:
            return None
        return self.running(deployment, commit=live.last_commit(self.svc, deployment))

    def orphans(self, groups: set[str]) -> list[Deployment]:
        """HelmReleases still in the cluster whose file is gone from Git: being deleted."""
        if self.poller is None or self.poller.state.reading is None:
            return []
        state = self.svc.state()
        found = []
        for (namespace, name), release in self.poller.state.reading.helmreleases.items():
            if name in state.deployments or state.app_file(name) is not None:
                continue  # in Git (a file it cannot read is still there: not being deleted)
            try:
                deployment = render.parse_helmrelease(release)
            except Exception:
                continue
            if deployment.group in groups and deployment.namespace == namespace:
                found.append(deployment)
        return found

    def recent_events(self, deployment: Deployment) -> list[FluxEvent]:
        return list(self.events.get((deployment.namespace, deployment.name), []))[-5:]

    def cluster_view(self, deployment: Deployment) -> ClusterView | None:
        """What the latest reading says about the deployment (its pods, its newest Kubernetes
        events); None when no cluster is connected or none was read yet."""
        if self.poller is None:
            return None
        return self.poller.view(
            namespace=deployment.namespace, name=deployment.name, deployment_id=deployment.id
        )

    def cluster_events(self, user: User, name: str) -> tuple[EventView, ...]:
        """The Kubernetes events of a deployment, its ReplicaSets, pods and autoscaler, newest
        first, from the latest reading; only members of the deployment's group may read them."""
        deployment = self.svc.deployment(user, name)
        if self.poller is None:
            raise ClusterUnavailable("no cluster is connected: no events to read")
        view = self.cluster_view(deployment)
        if view is None:
            raise ClusterUnavailable("the cluster has not been read yet: try again shortly")
        return tuple(status.event_view(event) for event in view.events)

    # ---- fast feedback ---------------------------------------------------------------

    def request_reconcile(self, paths: Iterable[str] = ()) -> None:
        """Ask Flux to fetch and apply now (what `flux reconcile --with-source` does): the
        platform's GitRepository and Kustomization, and those of every group whose files
        the push changed (each group reconciles on its own, in its namespace)."""
        k = self.settings.kubernetes
        if k.receiver_url:
            self._call_receiver()
        if self.cluster is None or not k.reconcile_on_commit:
            return
        targets = [] if k.receiver_url else [(k.flux_namespace, k.gitrepository, k.kustomization)]
        for group in sorted(_groups_of(paths)):
            namespace = models.NAMESPACE_PREFIX + group
            targets.append((namespace, layout.GROUP_SOURCE, layout.GROUP_KUSTOMIZATION))
        patch = {"metadata": {"annotations": {REQUESTED_AT: self._now()}}}
        for namespace, source, kustomization in targets:
            try:
                self.cluster.merge_patch(kube.GITREPOSITORIES, namespace, source, patch)
                self.cluster.merge_patch(kube.KUSTOMIZATIONS, namespace, kustomization, patch)
            except (ClusterUnavailable, NotFound) as exc:
                log.warning("could not request a reconciliation in %s: %s", namespace, exc.message)

    def _call_receiver(self) -> None:
        k = self.settings.kubernetes
        body = json.dumps({"source": "gitops-bridge", "time": self._now()}).encode()
        signature = hmac.new(k.receiver_token.get_secret_value().encode(), body, hashlib.sha256)
        request = urllib.request.Request(
            k.receiver_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Signature": f"sha256={signature.hexdigest()}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=k.timeout):
                pass
        except OSError as exc:
            log.warning("the Flux receiver did not answer: %s", exc)

    def retry(self, user: User, name: str) -> str:
        """Retry a failed release: requestedAt + forceAt + resetAt on the HelmRelease."""
        deployment = self.svc.deployment(user, name)
        if self.cluster is None:
            raise ClusterUnavailable("no cluster is connected")
        stamp = self._now()
        patch = {
            "metadata": {"annotations": {REQUESTED_AT: stamp, FORCE_AT: stamp, RESET_AT: stamp}}
        }
        self.cluster.merge_patch(kube.HELMRELEASES, deployment.namespace, deployment.name, patch)
        self.refresh_soon()
        return stamp

    def refresh_soon(self) -> None:
        if self.poller is not None:
            threading.Thread(target=self.poller.run_once, daemon=True).start()

    # ---- Flux notification events ---------------------------------------------------------

    def on_flux_event(self, *, headers: Mapping[str, str], body: bytes) -> tuple[FluxEvent, bool]:
        """A Flux Provider (type generic-hmac) POST: verify X-Signature, record, refresh;
        the event, and whether it is new (a replay of a recorded one is not recorded again).

        Each namespace's Provider signs with its own key (``events_key``): a group can read
        the Secret in its namespace, so a shared key would let it forge events about any
        other group. The body names the namespace; the signature must be that namespace's.
        An event is the same event when its involved object, reason, timestamp and message
        are: notification-controller retries a delivery, and a captured one can be replayed.
        """
        token = self.settings.kubernetes.events_token.get_secret_value()
        if not token:
            raise NotFound("Flux events are not configured (kubernetes.events_token)")
        given = headers.get("X-Signature", "")
        algorithm, _, digest = given.partition("=")
        if algorithm not in ("sha256", "sha384", "sha512") or not digest:
            raise Unauthenticated("X-Signature: missing or not <sha256|sha384|sha512>=<hex hmac>")
        data = jsonbody.loads(body, what="the Flux event")
        try:
            involved = data["involvedObject"]
            namespace = str(involved.get("namespace", ""))
        except (KeyError, TypeError, AttributeError) as exc:
            raise Unauthenticated("X-Signature: does not match the body") from exc
        key = events_key(token, namespace)
        expected = hmac.new(key.encode(), body, algorithm).hexdigest()
        if not hmac.compare_digest(expected, digest.lower()):
            raise Unauthenticated("X-Signature: does not match the body")
        metadata = data.get("metadata")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):  # signed, but not what a Provider sends
            raise BadRequest(f"the Flux event: metadata must be an object, got {metadata!r:.40}")
        # notification-controller strips the involved object's API group from metadata keys
        # (combineEventMetadata): "revision"; older senders keep "<group>/revision"
        revision = metadata.get("revision") or next(
            (v for k, v in metadata.items() if k.endswith("/revision")), ""
        )
        event = FluxEvent(
            kind=str(involved.get("kind", "")),
            namespace=str(involved.get("namespace", "")),
            name=str(involved.get("name", "")),
            severity=str(data.get("severity", "")),
            reason=str(data.get("reason", "")),
            message=str(data.get("message", "")),
            revision=str(revision),
            timestamp=str(data.get("timestamp", "")),
        )
        identity = (
            event.kind,
            event.namespace,
            event.name,
            str(involved.get("uid", "")),
            event.reason,
            event.timestamp,
            event.message,
        )
        with self._lock:
            if identity in self._seen:
                return event, False
            self._seen.put(identity, True)
            items = self.events.setdefault((event.namespace, event.name), [])
            items.append(event)
            del items[:-KEPT_EVENTS]
        self.refresh_soon()
        return event, True

    # ---- logs ----------------------------------------------------------------------------

    def logs(
        self,
        user: User,
        name: str,
        *,
        pod: str | None,
        container: str | None,
        tail: int,
        follow: bool,
        timestamps: bool = False,
        previous: bool = False,
    ) -> podlogs.Log:
        """A pod's log, or every pod's merged (``pod`` ``*``: ``podlogs.read_all``), requested
        now; only members of the deployment's group may read it. ``timestamps``: each line
        starts with its time; ``previous``: the container instance that last terminated, as
        ``kubectl logs --previous`` (a pod without one is a 404, not the API server's 400)."""
        deployment = self.svc.deployment(user, name)
        cluster = self.cluster
        if cluster is None:
            raise ClusterUnavailable("no cluster is connected: no logs to read")
        if not 0 <= tail <= MAX_TAIL:
            raise InvalidRequest.field("tail", f"must be 0..{MAX_TAIL}, got {tail}")
        if container not in (None, "app", "frpc"):
            raise InvalidRequest.field("container", f"must be app or frpc, got {container!r}")
        selected = container or "app"
        pods = self._pods(deployment)

        def read(pod: str, stamped: bool) -> kube.LogStream:
            return cluster.logs(
                deployment.namespace,
                pod,
                container=selected,
                tail=tail,
                follow=follow,
                timestamps=stamped,
                previous=previous,
                timeout=self.settings.server.stream_max_seconds + 60 if follow else None,
            )

        if pod == podlogs.ALL:
            return podlogs.read_all(
                pods,
                read,
                name=name,
                container=selected,
                follow=follow,
                timestamps=timestamps,
                previous=previous,
            )
        if pod is None:
            if not pods:
                raise NotFound(f"{name} has no pods")
            pod = min(pods)
        elif pod not in pods:
            raise NotFound(f"pod {pod!r} does not belong to {name}")
        problem = pods[pod].unreadable(selected, previous=previous)
        if problem is not None:  # the API server would answer 400: not a 503
            raise NotFound(problem)
        return podlogs.Log(pod, read(pod, timestamps))

    def pods_of(self, deployment: Deployment) -> list[str]:
        """The deployment's pods, listed live (a log request must see new pods)."""
        return sorted(self._pods(deployment))

    def _pods(self, deployment: Deployment) -> dict[str, podlogs.Pod]:
        """The deployment's pods, listed live: their containers and terminated instances."""
        if self.cluster is None:
            return {}
        listing = self.cluster.list(
            kube.PODS,
            namespace=deployment.namespace,
            label_selector=f"{render.layout.LABEL_ID}={deployment.id}",
        )
        pods = (podlogs.Pod.of(item) for item in listing.items)
        return {pod.name: pod for pod in pods}

    def _now(self) -> str:
        return self.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _groups_of(paths: Iterable[str]) -> set[str]:
    """The groups whose folder under tenants/ the paths touch."""
    prefix = f"{layout.TENANTS_DIR}/"
    return {
        path.removeprefix(prefix).split("/", 1)[0]
        for path in paths
        if path.startswith(prefix) and path.count("/") >= 2
    }


def events_key(token: str, namespace: str) -> str:
    """The HMAC key of the Flux Provider Secret in ``namespace`` (``gitops-bridge events-key``),
    derived from ``kubernetes.events_token``."""
    return hmac.new(token.encode(), f"flux-events:{namespace}".encode(), hashlib.sha256).hexdigest()
