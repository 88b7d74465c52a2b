"""Leader election on a coordination.k8s.io Lease, so one replica polls the cluster.

The holder renews ``spec.renewTime`` every few seconds. Others take the lease over once
the record has not changed for ``leaseDurationSeconds`` *as they observed it* (as
client-go does: no trust in other replicas' clocks). Every write carries the
resourceVersion it read, so two replicas can never both win: the loser gets 409.
The holder advertises where its readings can be fetched in an annotation.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gitops_bridge import cluster as kube
from gitops_bridge.errors import BridgeError, Conflict
from gitops_bridge.render import layout

log = logging.getLogger(__name__)

ENDPOINT_ANNOTATION = f"{layout.DOMAIN}/endpoint"


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _micro_time(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        cluster: kube.Cluster,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: float = 15.0,
        advertise_url: str = "",
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.advertise_url = advertise_url
        self.clock = clock
        self.wall = wall
        self.is_leader = False
        self.leader = ""
        self.leader_url = ""
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._lock = threading.Lock()

    def tick(self) -> bool:
        """Acquire or renew the lease; whether this replica leads afterwards. Never raises."""
        with self._lock:
            try:
                self.is_leader = self._tick()
            except BridgeError as exc:
                log.warning("leader election: %s", exc.message)
                self.is_leader = False
            return self.is_leader

    def _tick(self) -> bool:
        lease = self.cluster.get(kube.LEASES, self.namespace, self.name)
        now_wall = _micro_time(self.wall())
        if lease is None:
            return self._write(None, now_wall, transitions=0, acquire=True)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime") or "")
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        annotations = (lease.get("metadata") or {}).get("annotations") or {}
        self.leader, self.leader_url = holder, annotations.get(ENDPOINT_ANNOTATION, "")
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        if holder == self.identity:
            return self._write(lease, now_wall, transitions=spec.get("leaseTransitions") or 0)
        expired = not holder or self.clock() - self._observed_at > duration
        if not expired:
            return False
        log.info("lease %s held by %r expired: taking over", self.name, holder)
        transitions = int(spec.get("leaseTransitions") or 0) + 1
        return self._write(lease, now_wall, transitions=transitions, acquire=True)

    def _write(
        self, lease: dict[str, Any] | None, now: str, *, transitions: int, acquire: bool = False
    ) -> bool:
        spec: dict[str, Any] = dict((lease or {}).get("spec") or {})
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=int(self.lease_seconds),
            renewTime=now,
            leaseTransitions=transitions,
        )
        if acquire:
            spec["acquireTime"] = now
        metadata: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "annotations": {ENDPOINT_ANNOTATION: self.advertise_url},
        }
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }
        try:
            if lease is None:
                written = self.cluster.create(kube.LEASES, self.namespace, body)
            else:
                metadata["resourceVersion"] = (lease.get("metadata") or {}).get("resourceVersion")
                written = self.cluster.replace(kube.LEASES, self.namespace, self.name, body)
        except Conflict:
            return False  # someone else wrote first; we read again on the next tick
        record = (self.identity, (written.get("spec") or {}).get("renewTime") or now)
        self._observed, self._observed_at = record, self.clock()
        self.leader, self.leader_url = self.identity, self.advertise_url
        return True
