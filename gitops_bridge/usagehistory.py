"""Where a deployment's usage over time comes from: Prometheus when one is configured
(``usage.prometheus_url``), else the ring this replica keeps (``usage.Usage``).

The ring starts empty when a replica starts; a Prometheus that scrapes the kubelets'
cAdvisor metrics (``/metrics/cadvisor``, as kube-prometheus does) has the whole window. Its
points replace the ring's; the ring still gives what only the poller sees: the restart
markers with their termination reasons, and each step's restart total where it has that
step (None before this replica read the cluster: cAdvisor does not count restarts).

Three range queries over the window, evaluated at the ring's step boundaries (a point ``t``
is the value at ``t``), each over the app container of the deployment's pods (labels
``namespace``, ``pod``, ``container`` as the kubelet writes them):

- CPU: ``sum(rate(container_cpu_usage_seconds_total{...}[R]))``, R two steps and at least
  60 s, so a rate always spans two scrapes of kube-prometheus' 30 s interval;
- memory: ``sum(container_memory_working_set_bytes{...})`` (what the OOM killer judges);
- pods: ``count(count by (pod) (container_memory_working_set_bytes{...}))``: the pods
  sampled, each once even while a restarted container's old series is still fresh.

Pods are matched by name (``pod_pattern``), the one place cAdvisor names the deployment.

Failure is not an error for the page: when Prometheus times out (``prometheus_timeout``
for all three queries), errors or answers garbage, the ring's points are shown with
``UNAVAILABLE``, logged once per streak of failures, and Prometheus is left alone for
``DOWN_SECONDS`` so that pages do not each wait for the timeout. A deployment Prometheus
has no sample of (a minute old, or not scraped) shows the ring's points too, when it has any.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from gitops_bridge import prometheus, usage
from gitops_bridge.config import UsageSettings
from gitops_bridge.models import Deployment

log = logging.getLogger(__name__)

Source = Literal["prometheus", "poller"]
UNAVAILABLE = "Prometheus unavailable: showing what this replica read"
NO_SAMPLES = "Prometheus has no samples of this deployment: showing what this replica read"
DOWN_SECONDS = 15.0
RATE_MIN = 60  # seconds: two scrapes of a 30 s interval

# Pod names of a Deployment: the ReplicaSet controller asks for ``<deployment>-<hash>-`` +
# 5 random characters (``generateName``); the pod-template hash is the FNV-32 of the template
# in decimal, mapped digit by digit onto ``alphanums`` (k8s.io/apimachinery/pkg/util/rand
# ``SafeEncodeString``: at most 10 characters), and the random part is drawn from the same
# 27 characters. The API server cuts a ``generateName`` longer than 58 characters to 58
# (apiserver/pkg/storage/names: 63 - 5), so a name of 47 or more keeps only part of its hash.
ALPHANUMS = "[bcdfghjklmnpqrstvwxz2456789]"
HASH_MAX = 10
RANDOM = 5
GENERATED_MAX = 58
_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")


def pod_pattern(deployment: str) -> str:
    """The RE2 pattern (Prometheus anchors it at both ends) of the pods of a Deployment
    named ``deployment``, and of no other Deployment's: what follows ``<deployment>-`` is
    a hash, a dash and 5 characters, none of them a dash, so ``web-abc123-x7k9m2`` (another
    deployment with this name as its prefix) never matches ``web-abc123``'s pattern."""
    literal = "".join(f"\\{c}" if c in _RE2_SPECIAL else c for c in deployment)
    kept = GENERATED_MAX - len(deployment) - 1  # characters of "<hash>-" within the 58
    whole = min(HASH_MAX, kept - 1)  # the longest hash that keeps its dash
    forms = [f"{ALPHANUMS}{{1,{whole}}}-{ALPHANUMS}{{{RANDOM}}}"] if whole >= 1 else []
    if whole < HASH_MAX:  # a longer hash, or its dash, was cut: 63 characters, no dash
        forms.append(f"{ALPHANUMS}{{{kept + RANDOM}}}")
    return f"{literal}-(?:{'|'.join(forms)})"


def _string(value: str) -> str:
    """A PromQL string literal: JSON's escapes (``\\\\``, ``\\"``, ``\\uXXXX``) are Go's."""
    return json.dumps(value)


def selector(*, namespace: str, deployment: str) -> str:
    """The app container of the deployment's pods, as cAdvisor labels its series."""
    return (
        f"{{namespace={_string(namespace)},pod=~{_string(pod_pattern(deployment))},"
        f"container={_string(usage.APP)}}}"
    )


def rate_window(step: int) -> int:
    """Seconds a CPU rate spans: two steps, and at least ``RATE_MIN``."""
    return max(2 * step, RATE_MIN)


def queries(*, namespace: str, deployment: str, step: int) -> tuple[str, str, str]:
    """CPU (cores), memory (bytes) and pods sampled, each one series at most."""
    chosen = selector(namespace=namespace, deployment=deployment)
    return (
        f"sum(rate(container_cpu_usage_seconds_total{chosen}[{rate_window(step)}s]))",
        f"sum(container_memory_working_set_bytes{chosen})",
        f"count(count by (pod) (container_memory_working_set_bytes{chosen}))",
    )


@dataclass(frozen=True)
class Found:
    """A deployment's usage over the window, where it came from, and what the page and the
    API say about that (``note``: None when the configured source answered)."""

    history: usage.History
    source: Source
    note: str | None = None
    rate_window: int | None = None  # seconds of each CPU rate (from Prometheus)


def merge(
    ring: usage.History, series: Sequence[Sequence[tuple[float, float]]], *, rate: int
) -> Found:
    """Prometheus' CPU, memory and pods (``series``, in that order) as the ring's points,
    with the ring's restart totals where it has the step and its restart markers."""
    cpu, memory, pods = (dict(points) for points in series)
    totals = {point.t: point.restarts for point in ring.points}
    points = tuple(
        usage.Point(
            t=t,
            cpu=cpu.get(t),
            memory=memory.get(t),
            pods=round(pods.get(t, 0)),
            restarts=totals.get(t),
        )
        for t in sorted(cpu.keys() | memory.keys() | pods.keys())
    )
    history = usage.History(
        step=ring.step,
        window=ring.window,
        start=ring.start,
        end=ring.end,
        points=points,
        restarts=ring.restarts,
    )
    return Found(history=history, source="prometheus", rate_window=rate)


class Reader:
    """Reads a deployment's usage from Prometheus, or the ring (see the module doc)."""

    def __init__(self, settings: UsageSettings, *, ring: usage.Usage) -> None:
        self.ring = ring
        self.step = settings.step
        self.timeout = settings.prometheus_timeout
        self.client = (
            prometheus.Prometheus(
                settings.prometheus_url, token=settings.prometheus_token.get_secret_value()
            )
            if settings.prometheus_url
            else None
        )
        self._lock = threading.Lock()
        self._failing = False  # in a streak of failures (logged once, at its start)
        self._down_until = -math.inf  # the ring's clock (its "now"): not asked before this

    def read(self, deployment: Deployment) -> Found:
        """The window up to now: Prometheus' points when it answers, the ring's otherwise."""
        ring = self.ring.history((deployment.namespace, deployment.id))
        if self.client is None:
            return Found(history=ring, source="poller")
        with self._lock:
            down = ring.end < self._down_until
        if down:
            return Found(history=ring, source="poller", note=UNAVAILABLE)
        try:
            series = self._query(self.client, ring, deployment)
        except prometheus.PrometheusUnavailable as exc:
            with self._lock:
                self._down_until = ring.end + DOWN_SECONDS
                first, self._failing = not self._failing, True
            if first:
                log.warning("usage graphs from this replica's readings: %s", exc.message)
            return Found(history=ring, source="poller", note=UNAVAILABLE)
        with self._lock:
            back, self._failing = self._failing, False
        if back:
            log.info("Prometheus answers again: usage graphs from it")
        if not any(series) and ring.points:
            return Found(history=ring, source="poller", note=NO_SAMPLES)
        return merge(ring, series, rate=rate_window(self.step))

    def _query(
        self, client: prometheus.Prometheus, ring: usage.History, deployment: Deployment
    ) -> list[tuple[tuple[float, float], ...]]:
        """The three series on the ring's steps of the window (as many points as it has
        steps), all answered within ``prometheus_timeout``."""
        newest = int(ring.end // self.step)
        start = float((newest - self.ring.capacity + 1) * self.step)
        end = float(newest * self.step)
        deadline = time.monotonic() + self.timeout
        found = []
        for query in queries(
            namespace=deployment.namespace, deployment=deployment.name, step=self.step
        ):
            result = client.query_range(
                query, start=start, end=end, step=self.step, deadline=deadline
            )
            found.append(result[0].points if result else ())
        return found
