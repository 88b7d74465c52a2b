"""Usage over time: per deployment, what its app container used, step by step (no I/O).

The poller's readings come every ``kubernetes.poll_interval`` seconds; a deployment's page
wants the last hour at a glance. Each reading is folded into one ``_Series`` per deployment
(keyed like ``Reading.pods``: namespace, deployment id), one slot per step of
``usage.step`` seconds, ``usage.window`` seconds of slots in a ring:

- CPU (cores) and memory (bytes) of the app container, summed over the deployment's pods:
  the *peak* of the readings in the step, not the last one, because what a graph against
  limits is for is the spike that meets the limit (the memory right before an OOM kill),
  and the last reading of a step hides it two times out of three. The frpc sidecar is not
  counted: the requests and limits drawn with it (``footprint``) are the app container's
  alone, the part of a pod the user sized;
- the pods sampled: those with a PodMetrics sample of the app container (the peak of the
  step), so the totals of requests and limits drawn are those of the same pods;
- the app container's restart total over the pods (the newest of the step).

Restart markers: between two readings, each pod whose app container's restart count rose
adds the rise (a pod not seen before adds its whole count; the first reading of a series
only sets the baseline) with the last termination reason (``OOMKilled``...). Markers in one
step merge; at most ``MAX_MARKERS`` per series, none older than the window.

Bounds: a series is four ``array`` columns of ``window / step`` slots (14 bytes a slot:
float32 CPU and memory, uint16 pods, uint32 restarts), made once and overwritten in place;
at most ``usage.max_series`` series. A deployment gone from a reading is dropped. When all
series are taken, a new deployment gets one only once someone asked for it (``history``),
in place of the least recently used (shown, or made): a full store does not churn.

Feeding one reading costs O(deployments + pods) under one lock, with no quantity parsed
through ``Fraction`` in the common case (``amount``); ``scripts/bench --only usage``
measures it for 20,000 deployments.

The series live in this process only, like the readings they come from: a replica that
starts (or starts to follow) draws from then on; the cluster keeps no history to read back
(metrics-server serves the newest sample alone). Where a Prometheus keeps one
(``usage.prometheus_url``), ``usagehistory`` reads the points from it and takes only the
restarts from here.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gitops_bridge import quantity
from gitops_bridge.config import UsageSettings
from gitops_bridge.models import Deployment
from gitops_bridge.poller import Key, Reading
from gitops_bridge.render import tenant

APP = "app"  # the chart's app container
NO_READING = 0xFFFF  # the pods of a slot no reading reached
MAX_RESTARTS = 0xFFFFFFFF
MAX_MARKERS = 32  # per series
MAX_WANTED = 1024  # deployments asked for while every series was taken
_NAN = math.nan

_SUFFIX_2 = {
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}
_SUFFIX_1 = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}


def amount(text: Any) -> float | None:
    """A quantity as a float (cores, bytes); None when it is not one.

    metrics-server reports whole numbers with a suffix (``253417n``, ``31236Ki``): those
    are read with ``int`` and a factor (two of them a pod each reading: the feed's hottest
    line); anything else goes through ``quantity.parse``."""
    if type(text) is str:
        factor = _SUFFIX_2.get(text[-2:])
        if factor is not None:
            digits = text[:-2]
        else:
            factor = _SUFFIX_1.get(text[-1:])
            digits = text if factor is None else text[:-1]
        if digits.isdigit() and digits.isascii():
            return int(digits) * (1.0 if factor is None else factor)
    elif isinstance(text, bool) or not isinstance(text, int | float):
        return None
    try:
        return float(quantity.parse(text).value)
    except quantity.QuantityError:
        return None


@dataclass(frozen=True)
class Point:
    """One step: ``t`` its start (Unix seconds); CPU in cores and memory in bytes, the peak
    of the step (None: no metrics); the pods sampled; the restart total (None: not known, a
    step read from Prometheus before this replica read the cluster)."""

    t: float
    cpu: float | None
    memory: float | None
    pods: int
    restarts: int | None


@dataclass(frozen=True)
class Restart:
    """Restarts seen at ``t`` (one step's, merged) and the last termination reason."""

    t: float
    count: int
    reason: str


@dataclass(frozen=True)
class History:
    """A series as of ``end`` (now): the steps in ``[start, end]`` that have a sample."""

    step: int
    window: int
    start: float
    end: float
    points: tuple[Point, ...]
    restarts: tuple[Restart, ...]


@dataclass(frozen=True)
class Footprint:
    """What one pod's app container requests and may use, as committed (cores, bytes)."""

    cpu_request: float
    cpu_limit: float
    memory_request: float
    memory_limit: float


def footprint(deployment: Deployment) -> Footprint:
    """From the spec in Git: the chart sets the limits to ``LIMIT_FACTOR`` x the requests.
    The one spec is drawn over the whole window (an earlier spec is not remembered)."""
    cpu = quantity.parse(deployment.spec.resources.cpu).value
    memory = quantity.parse(deployment.spec.resources.memory).value
    return Footprint(
        cpu_request=float(cpu),
        cpu_limit=float(cpu * tenant.LIMIT_FACTOR),
        memory_request=float(memory),
        memory_limit=float(memory * tenant.LIMIT_FACTOR),
    )


class _Series:
    __slots__ = ("counts", "cpu", "fed", "last", "markers", "memory", "pods", "restarts")

    def __init__(self, blank: tuple[array[float], array[int], array[int]]) -> None:
        floats, pods, restarts = blank
        self.last = -1  # the step of the newest slot; -1: none yet (the baseline is next)
        self.cpu = floats[:]
        self.memory = floats[:]
        self.pods = pods[:]
        self.restarts = restarts[:]
        self.counts: dict[str, int] | None = None  # pod -> its app's restarts, when not 0
        self.markers: list[Restart] | None = None
        self.fed = 0  # the feed that last saw it


def _sample(
    series: _Series,
    namespace: str,
    pods: Iterable[Mapping[str, Any]],
    metrics: Mapping[Key, Mapping[str, Any]] | None,
) -> tuple[float | None, float | None, int, int, int, str]:
    """One reading of one deployment: the app container's CPU and memory summed over the
    pods sampled (None: none was), how many, the restart total, the restarts since the last
    reading and the last termination reason among them. Keeps the pods' counts for the next."""
    cpu = memory = 0.0
    sampled = restarts = rises = 0
    reason = ""
    before = series.counts
    counts: dict[str, int] | None = None
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "")
        for status in (pod.get("status") or {}).get("containerStatuses") or ():
            if status.get("name") != APP:
                continue
            count = status.get("restartCount")
            if type(count) is not int or count <= 0:
                break
            restarts += count
            if counts is None:
                counts = {}
            counts[name] = count
            earlier = before.get(name, 0) if before else 0
            if count > earlier:
                rises += count - earlier
                last = (status.get("lastState") or {}).get("terminated") or {}
                reason = str(last.get("reason") or reason)
            break
        if metrics is None:
            continue
        found = metrics.get((namespace, name))
        for container in found.get("containers") or () if found else ():
            if container.get("name") != APP:
                continue
            usage = container.get("usage") or {}
            used_cpu, used_memory = amount(usage.get("cpu")), amount(usage.get("memory"))
            if used_cpu is not None and used_memory is not None:
                cpu, memory, sampled = cpu + used_cpu, memory + used_memory, sampled + 1
            break
    series.counts = counts
    if not sampled:  # no metrics (metrics-server absent, or no pod sampled yet)
        return None, None, 0, restarts, rises, reason
    return cpu, memory, sampled, restarts, rises, reason


class Usage:
    """The series of every deployment the readings show (see the module doc)."""

    def __init__(self, settings: UsageSettings, *, clock: Callable[[], float]) -> None:
        self.step = settings.step
        self.window = settings.window
        self.capacity = settings.window // settings.step
        self.max_series = settings.max_series
        self.clock = clock
        self._blank = (
            array("f", [_NAN]) * self.capacity,
            array("H", [NO_READING]) * self.capacity,
            array("I", [0]) * self.capacity,
        )
        self._series: OrderedDict[Key, _Series] = OrderedDict()  # least recently used first
        self._wanted: OrderedDict[Key, None] = OrderedDict()
        self._taken = -math.inf  # the newest reading fed
        self._feeds = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._series)

    def __contains__(self, key: object) -> bool:
        return key in self._series

    # ---- feeding -----------------------------------------------------------------------

    def feed(self, reading: Reading) -> None:
        """Fold one reading in (a poller listener; a follower feeds the leader's). A reading
        not newer than the last one fed changes nothing: a follower may fetch one twice."""
        taken = reading.taken_at
        metrics = reading.metrics if reading.metrics_available else None
        with self._lock:
            if taken <= self._taken:
                return
            self._taken = taken
            self._feeds += 1
            mark, step = self._feeds, int(taken // self.step)
            before, kept = len(self._series), 0
            for key in reading.deployments:
                series = self._series.get(key)
                if series is None:
                    series = self._new(key)
                    if series is None:
                        continue
                else:
                    kept += 1
                series.fed = mark
                self._fold(series, key[0], reading.pods.get(key, ()), metrics, step, taken)
            if kept < before:  # some deployment is gone from the readings
                for key in [k for k, s in self._series.items() if s.fed != mark]:
                    del self._series[key]

    def _new(self, key: Key) -> _Series | None:
        if len(self._series) >= self.max_series:
            if key not in self._wanted:
                return None
            self._series.popitem(last=False)
        self._wanted.pop(key, None)
        series = self._series[key] = _Series(self._blank)
        return series

    def _fold(
        self,
        series: _Series,
        namespace: str,
        pods: Iterable[Mapping[str, Any]],
        metrics: Mapping[Key, Mapping[str, Any]] | None,
        step: int,
        taken: float,
    ) -> None:
        cpu, memory, sampled, restarts, rises, reason = _sample(series, namespace, pods, metrics)
        if sampled >= NO_READING:
            sampled = NO_READING - 1
        slot = step % self.capacity
        if step > series.last:
            if series.last >= 0:  # steps no reading reached: empty slots
                for gap in range(max(series.last + 1, step - self.capacity + 1), step):
                    self._clear(series, gap % self.capacity)
            baseline = series.last < 0
            series.last = step
            series.cpu[slot] = _NAN if cpu is None else cpu
            series.memory[slot] = _NAN if memory is None else memory
            series.pods[slot] = sampled
        elif step == series.last:
            baseline = False
            if cpu is not None and not series.cpu[slot] >= cpu:  # NaN: no value yet
                series.cpu[slot] = cpu
            if memory is not None and not series.memory[slot] >= memory:
                series.memory[slot] = memory
            if sampled > series.pods[slot]:
                series.pods[slot] = sampled
        else:  # older than the newest slot: a reading late past a newer one
            return
        series.restarts[slot] = restarts if restarts <= MAX_RESTARTS else MAX_RESTARTS
        if rises and not baseline:
            self._mark(series, Restart(t=taken, count=rises, reason=reason), step)

    def _clear(self, series: _Series, slot: int) -> None:
        series.cpu[slot] = _NAN
        series.memory[slot] = _NAN
        series.pods[slot] = NO_READING
        series.restarts[slot] = 0

    def _mark(self, series: _Series, restart: Restart, step: int) -> None:
        markers = series.markers
        if markers is None:
            markers = series.markers = []
        if markers and int(markers[-1].t // self.step) == step:  # one marker a step
            merged = markers[-1]
            restart = Restart(
                t=restart.t,
                count=merged.count + restart.count,
                reason=restart.reason or merged.reason,
            )
            markers[-1] = restart
        else:
            markers.append(restart)
        oldest = restart.t - self.window
        while markers and (len(markers) > MAX_MARKERS or markers[0].t < oldest):
            del markers[0]

    # ---- reading -----------------------------------------------------------------------

    def history(self, key: Key) -> History:
        """The window up to now of one deployment (no points when it has no series yet).
        Asking makes it the most recently used or, when every series is taken, one the next
        feed makes room for."""
        now = self.clock()
        start, newest = now - self.window, int(now // self.step)
        points: list[Point] = []
        restarts: tuple[Restart, ...] = ()
        with self._lock:
            series = self._series.get(key)
            if series is None:
                if len(self._series) >= self.max_series:
                    self._wanted[key] = None
                    self._wanted.move_to_end(key)
                    while len(self._wanted) > MAX_WANTED:
                        self._wanted.popitem(last=False)
            else:
                self._series.move_to_end(key)
                first = max(series.last, newest) - self.capacity + 1
                for step in range(first, min(series.last, newest) + 1):
                    slot = step % self.capacity
                    pods = series.pods[slot]
                    if pods == NO_READING:
                        continue
                    cpu, memory = series.cpu[slot], series.memory[slot]
                    points.append(
                        Point(
                            t=float(step * self.step),
                            cpu=None if math.isnan(cpu) else cpu,
                            memory=None if math.isnan(memory) else memory,
                            pods=pods,
                            restarts=series.restarts[slot],
                        )
                    )
                restarts = tuple(m for m in series.markers or () if start <= m.t <= now)
        return History(
            step=self.step,
            window=self.window,
            start=start,
            end=now,
            points=tuple(points),
            restarts=restarts,
        )


def document(
    name: str,
    history: History,
    fit: Footprint,
    *,
    source: str = "poller",
    note: str | None = None,
) -> dict[str, Any]:
    """The API's answer: the series as numbers (cores, bytes), and the app container's
    requests and limits per pod (a step's total is per pod x its ``pods``); ``source``: where
    the points came from (``prometheus`` or this replica's ``poller``), ``note`` why not from
    the configured one."""
    return {
        "name": name,
        "container": APP,
        "source": source,
        "note": note,
        "step": history.step,
        "window": history.window,
        "start": round(history.start, 3),
        "end": round(history.end, 3),
        "columns": ["t", "cpu", "memory", "pods", "restarts"],
        "points": [
            [
                p.t,
                None if p.cpu is None else round(p.cpu, 6),
                None if p.memory is None else round(p.memory),
                p.pods,
                p.restarts,
            ]
            for p in history.points
        ],
        "restarts": [
            {"t": round(r.t, 3), "count": r.count, "reason": r.reason or None}
            for r in history.restarts
        ],
        "requests": {"cpu": fit.cpu_request, "memory": round(fit.memory_request)},
        "limits": {"cpu": fit.cpu_limit, "memory": round(fit.memory_limit)},
    }
