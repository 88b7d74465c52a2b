"""Pure interpretation of what the cluster says about a deployment.

Inputs are the deployment as Git holds it, the objects the poller read (as the API
server's JSON, dicts) and a few facts about Git (is this commit applied?). Output is one
``DeploymentStatus``: the state a person sees on the card, with the reason behind it.

States: ``pending review`` -> ``committed`` (on main, Flux has not applied that commit)
-> ``reconciling`` -> ``running x/y`` | ``stopped`` | ``degraded`` | ``failed`` ->
``deleting``; and ``not connected`` when no cluster is configured or reachable.

Besides the state, ``problems`` names what a person must fix outside the deployment: the
frp Secret the frpc sidecar reads (``frp.token_secret``, keys ``token`` and ``group-key``)
missing in the group namespace, which the kubelet reports on the frpc container as
``CreateContainerConfigError`` ``secret "<name>" not found`` or ``couldn't find key <key> in
Secret <namespace>/<name>`` (kubernetes ``pkg/kubelet/kubelet_pods.go``
``makeEnvironmentVariables``); the same for a Secret the app container's env reads (a
``secretRef``, or the deployment's own ``<app>-<id>-env``); and pods the ReplicaSet
controller cannot create (the Deployment's ``ReplicaFailure`` condition, e.g. ``exceeded
quota``). Secret contents are never read: the pods' status says all of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gitops_bridge import quantity
from gitops_bridge.models import Deployment
from gitops_bridge.quantity import Quantity

Object = Mapping[str, Any]

# container waiting reasons that mean "this will not get better by waiting"
BAD_WAITING = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}
CONFIG_ERROR = "CreateContainerConfigError"
FRPC = "frpc"  # the chart's sidecar container
DEFAULT_FRP_SECRET = "frp-token"
# the kubelet's back-off message ends with the pod as ``pod=<name>_<namespace>(<uid>)``
# (kubernetes pkg/kubelet/kuberuntime/kuberuntime_manager.go doBackOff, format.Pod)
_BACK_OFF_POD = re.compile(r"\s+pod=\S+_\S+\([0-9a-f-]+\)$")
_MISSING_SECRET = re.compile(r'^secret "(?P<name>[^"]+)" not found$')
_MISSING_KEY = re.compile(
    r"^couldn't find key (?P<key>\S+) in Secret (?P<ns>[^/\s]+)/(?P<name>\S+)$"
)
_NEVER = datetime.min.replace(tzinfo=UTC)  # what a missing time sorts as


@dataclass(frozen=True)
class Termination:
    """How a container of a pod ended the last time (its ``lastState.terminated``): what a
    person needs to see why a pod restarts (``OOMKilled`` 137, ``Error`` 1)."""

    container: str
    reason: str
    exit_code: int | None
    finished_at: str  # RFC 3339, "" when not reported


@dataclass(frozen=True)
class PodView:
    name: str
    phase: str
    ready: bool
    restarts: int
    reason: str = ""  # why a container is not ready (CrashLoopBackOff, OOMKilled...)
    message: str = ""
    ready_containers: int = 0
    containers: int = 0
    node: str = ""  # spec.nodeName ("" until scheduled)
    created: str = ""  # metadata.creationTimestamp
    started: str = ""  # status.startTime (the kubelet accepted the pod)
    last_termination: Termination | None = None  # the latest of its containers'


@dataclass(frozen=True)
class EventView:
    """One Kubernetes Event about a deployment, its ReplicaSets, pods or autoscaler, the same
    whether it was written the old way (count, first/lastTimestamp) or through
    events.k8s.io/v1 (eventTime, series; firstTimestamp null)."""

    type: str  # Normal | Warning
    reason: str
    message: str
    kind: str  # of the object it is about
    name: str
    count: int
    first_seen: str  # RFC 3339 ("" when the event carries no time at all)
    last_seen: str
    source: str  # the component that reported it (kubelet, replicaset-controller...)


@dataclass(frozen=True)
class ReleaseVersion:
    """One entry of the HelmRelease's history (newest first)."""

    chart_version: str
    status: str  # deployed | superseded | failed | ...
    first_deployed: str
    last_deployed: str
    digest: str


@dataclass(frozen=True)
class Usage:
    used: Quantity | None  # None: no metrics
    limit: Quantity


@dataclass(frozen=True)
class DeploymentStatus:
    state: str
    label: str
    ready: int = 0
    desired: int = 0
    reason: str = ""
    message: str = ""
    remediation: str = ""
    generation: int | None = None
    observed_generation: int | None = None
    applied_commit: str | None = None
    history: tuple[ReleaseVersion, ...] = ()
    pods: tuple[PodView, ...] = ()
    cpu: Usage | None = None
    memory: Usage | None = None
    age: float | None = None  # seconds since the reading
    stale: bool = False
    problems: tuple[str, ...] = ()  # what to fix outside the deployment (see the module doc)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterView:
    """What one poll saw that matters to one deployment."""

    helmrelease: Object | None
    deployment: Object | None
    pods: tuple[Object, ...]
    metrics: Mapping[str, Object]  # pod name -> PodMetrics
    applied_revision: str | None  # Kustomization status.lastAppliedRevision
    age: float
    stale: bool
    events: tuple[Object, ...] = ()  # core v1 Events (slim), newest first (see newest_events)


def condition(obj: Object | None, kind: str) -> Object | None:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return item  # type: ignore[no-any-return]
    return None


def revision_commit(revision: str | None) -> str | None:
    """`main@sha1:<commit>` (or a bare sha) -> the commit."""
    if not revision:
        return None
    _, _, digest = revision.rpartition("@")
    algo, sep, value = digest.partition(":")
    return value if sep else algo


def instant(value: object) -> datetime | None:
    """An API server timestamp (RFC 3339 ``Time``, or ``MicroTime`` with microseconds) as an
    aware datetime; None for null, empty or unreadable values."""
    if not isinstance(value, str) or not value:
        return None
    try:
        found = datetime.fromisoformat(value)
    except ValueError:
        return None
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def _last_termination(statuses: Iterable[Object]) -> Termination | None:
    """The most recent ``lastState.terminated`` of the pod's containers (the first listed
    when they finished at the same time, or say no time)."""
    found: Termination | None = None
    found_at = _NEVER
    for item in statuses:
        last = (item.get("lastState") or {}).get("terminated")
        if not last:
            continue
        code = last.get("exitCode")
        finished = str(last.get("finishedAt") or "")
        at = instant(finished) or _NEVER
        if found is None or at > found_at:
            found_at = at
            found = Termination(
                container=str(item.get("name", "")),
                reason=str(last.get("reason") or ""),
                exit_code=code if type(code) is int else None,
                finished_at=finished,
            )
    return found


def pod_view(pod: Object) -> PodView:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = bool(statuses) and all(s.get("ready") for s in statuses)
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    reason = message = ""
    for item in statuses:
        waiting = (item.get("state") or {}).get("waiting")
        if waiting and not item.get("ready"):
            reason, message = waiting.get("reason", ""), waiting.get("message", "")
            last = (item.get("lastState") or {}).get("terminated")
            if reason == "CrashLoopBackOff":  # the pod is named already: not its uid again
                message = _BACK_OFF_POD.sub("", message)
            if last and last.get("reason") and reason == "CrashLoopBackOff":
                # why it ended (OOMKilled, Error) matters more than the back-off's timing
                exit_note = f"last exit: {last.get('reason')} (code {last.get('exitCode')})"
                message = f"{exit_note}; {message}" if message else exit_note
            break
        terminated = (item.get("state") or {}).get("terminated")
        if terminated and not item.get("ready"):
            reason, message = terminated.get("reason", ""), terminated.get("message", "")
            break
    if not reason and status.get("phase") == "Pending":
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                reason, message = cond.get("reason", ""), cond.get("message", "")
    return PodView(
        name=meta.get("name", ""),
        phase=status.get("phase", ""),
        ready=ready,
        restarts=restarts,
        reason=reason,
        message=message,
        ready_containers=sum(1 for s in statuses if s.get("ready")),
        containers=len(statuses),
        node=str((pod.get("spec") or {}).get("nodeName") or ""),
        created=str(meta.get("creationTimestamp") or ""),
        started=str(status.get("startTime") or ""),
        last_termination=_last_termination(statuses),
    )


def _event_times(event: Object) -> tuple[str, str]:
    """(first seen, last seen): old-style events say firstTimestamp/lastTimestamp; those
    written through events.k8s.io/v1 say eventTime, and series.lastObservedTime once they
    repeat (kubernetes/kubernetes ``staging/src/k8s.io/client-go/tools/events``)."""
    series = event.get("series") or {}
    last = (
        series.get("lastObservedTime")
        or event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or ""
    )
    first = event.get("firstTimestamp") or event.get("eventTime") or last
    return str(first), str(last)


def event_view(event: Object) -> EventView:
    involved = event.get("involvedObject") or {}
    series = event.get("series") or {}
    count = series.get("count") if series else event.get("count")
    first, last = _event_times(event)
    return EventView(
        type=str(event.get("type") or ""),
        reason=str(event.get("reason") or ""),
        message=str(event.get("message") or ""),
        kind=str(involved.get("kind") or ""),
        name=str(involved.get("name") or ""),
        count=count if isinstance(count, int) and count > 0 else 1,
        first_seen=first,
        last_seen=last,
        source=str(
            event.get("reportingComponent") or (event.get("source") or {}).get("component") or ""
        ),
    )


def event_last_seen(event: Object) -> datetime:
    """When an event was last seen (never: the oldest possible)."""
    return instant(_event_times(event)[1]) or _NEVER


def newest_events(events: Iterable[Object], *, limit: int) -> tuple[Object, ...]:
    """The ``limit`` most recently seen events, newest first (ties: by name, for a stable
    order); events without any time count as the oldest."""

    ordered = sorted(
        events, key=lambda e: str((e.get("metadata") or {}).get("name", "")), reverse=True
    )
    return tuple(sorted(ordered, key=event_last_seen, reverse=True)[: max(limit, 0)])


def exposure_problem(pod: Object, *, secret: str = DEFAULT_FRP_SECRET) -> str | None:
    """The note for a pod whose frpc sidecar cannot start because the frp Secret (or one of
    its keys) is missing in the pod's namespace; None for anything else."""
    namespace = str((pod.get("metadata") or {}).get("namespace", ""))
    for item in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (item.get("state") or {}).get("waiting") or {}
        if item.get("name") != FRPC or waiting.get("reason") != CONFIG_ERROR:
            continue
        message = str(waiting.get("message", ""))
        if message == f'secret "{secret}" not found':
            return f"exposure not configured: Secret {secret} missing in {namespace}"
        found = _MISSING_KEY.match(message)
        if found and found["name"] == secret:
            return (
                f"exposure not configured: Secret {secret} in {found['ns']} "
                f"has no key {found['key']}"
            )
    return None


def env_secret_problem(pod: Object) -> str | None:
    """The note for a pod whose app container cannot start because a Secret its env reads
    (``secretRef``, or the deployment's own values) is missing, or lacks the key."""
    namespace = str((pod.get("metadata") or {}).get("namespace", ""))
    for item in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (item.get("state") or {}).get("waiting") or {}
        if item.get("name") == FRPC or waiting.get("reason") != CONFIG_ERROR:
            continue
        message = str(waiting.get("message", ""))
        missing = _MISSING_SECRET.match(message)
        if missing:
            return f"env reads Secret {missing['name']}, missing in {namespace}"
        found = _MISSING_KEY.match(message)
        if found:
            return f"env reads key {found['key']} of Secret {found['name']}, which has none"
    return None


def problems_of(
    pods: Iterable[Object], *, secret: str = DEFAULT_FRP_SECRET, deployment: Object | None = None
) -> tuple[str, ...]:
    """Every distinct problem the pods (and the Deployment, if given) show, in order."""
    found: list[str] = []
    failure = condition(deployment, "ReplicaFailure")
    if failure and failure.get("status") == "True":
        found.append(f"pods cannot be created: {failure.get('message', '')}".rstrip(": "))
    for pod in pods:
        for note in (exposure_problem(pod, secret=secret), env_secret_problem(pod)):
            if note and note not in found:
                found.append(note)
    return tuple(found)


def _history(helmrelease: Object) -> tuple[ReleaseVersion, ...]:
    items = ((helmrelease.get("status") or {}).get("history")) or []
    return tuple(
        ReleaseVersion(
            chart_version=str(item.get("chartVersion", "")),
            status=str(item.get("status", "")),
            first_deployed=str(item.get("firstDeployed", "")),
            last_deployed=str(item.get("lastDeployed", "")),
            digest=str(item.get("configDigest", "")),
        )
        for item in items
    )


def _usage(
    pods: Iterable[Object], metrics: Mapping[str, Object], *, resource: str, limit: Quantity
) -> Usage:
    total: Quantity | None = None
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "")
        sample = metrics.get(name)
        if sample is None:
            continue
        for container in sample.get("containers") or []:
            value = (container.get("usage") or {}).get(resource)
            if value is not None:
                total = (total or Quantity(0)) + quantity.parse(value)
    return Usage(used=total, limit=limit)


def limits_per_pod(
    deployment: Deployment, *, sidecar: tuple[Quantity, Quantity]
) -> tuple[Quantity, Quantity]:
    """The limits one pod has (the chart sets limits = 2 x requests, sidecar included)."""
    cpu = quantity.parse(deployment.spec.resources.cpu) * 2
    memory = quantity.parse(deployment.spec.resources.memory) * 2
    if deployment.spec.expose:
        cpu, memory = cpu + sidecar[0] * 2, memory + sidecar[1] * 2
    return cpu, memory


def desired_replicas(deployment: Deployment, cluster: Object | None) -> int:
    """The pods that should run: the replicas in Git, or with autoscaling what the autoscaler
    set on the cluster's Deployment, within the bounds in Git (its minimum before the cluster
    has answered; the HorizontalPodAutoscaler objects themselves are not read)."""
    spec = deployment.spec
    scaling = spec.autoscaling
    if scaling is None or not spec.replicas:
        return spec.replicas
    found = ((cluster or {}).get("spec") or {}).get("replicas")
    if not isinstance(found, int) or isinstance(found, bool):
        return scaling.min
    return min(max(found, scaling.min), scaling.max)


def interpret(
    deployment: Deployment,
    *,
    view: ClusterView | None,
    last_commit: str | None,
    is_applied: Callable[[str, str], bool],
    pending_review: bool = False,
    deleted_in_git: bool = False,
    sidecar: tuple[Quantity, Quantity] = (Quantity(0), Quantity(0)),
    frp_secret: str = DEFAULT_FRP_SECRET,
) -> DeploymentStatus:
    """The status of one deployment. ``is_applied(commit, applied)``: git ancestry;
    ``frp_secret``: the Secret the frpc sidecar of an exposed deployment reads."""
    desired = deployment.spec.replicas
    if pending_review and last_commit is None:
        return DeploymentStatus(state="pending review", label="pending review", desired=desired)
    if view is None:
        return DeploymentStatus(state="not connected", label="not connected", desired=desired)
    desired = desired_replicas(deployment, view.deployment)
    common: dict[str, Any] = {
        "desired": desired,
        "age": view.age,
        "stale": view.stale,
        "applied_commit": revision_commit(view.applied_revision),
    }
    release = view.helmrelease
    if deleted_in_git or (release and (release.get("metadata") or {}).get("deletionTimestamp")):
        if release is None and not view.pods:
            return DeploymentStatus(state="deleted", label="deleted", **common)
        return DeploymentStatus(state="deleting", label="deleting", **common)
    applied = common["applied_commit"]
    if last_commit and (applied is None or not is_applied(last_commit, applied)):
        return DeploymentStatus(state="committed", label=f"committed {last_commit[:7]}", **common)
    if release is None:
        return DeploymentStatus(
            state="reconciling", label="reconciling", message="waiting for Flux", **common
        )
    meta, status = release.get("metadata") or {}, release.get("status") or {}
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    common |= {
        "generation": generation,
        "observed_generation": observed,
        "history": _history(release),
    }
    # what runs, whatever Flux says about the release (a failed upgrade keeps old pods)
    pods = tuple(
        pod_view(p) for p in view.pods if not (p.get("metadata") or {}).get("deletionTimestamp")
    )
    ready = sum(1 for p in pods if p.ready)
    cpu_limit, memory_limit = limits_per_pod(deployment, sidecar=sidecar)
    live = [p for p in view.pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    common |= {
        "problems": problems_of(
            live if deployment.spec.expose else (),
            secret=frp_secret,
            deployment=view.deployment,
        ),
        "pods": pods,
        "ready": ready,
        "cpu": _usage(view.pods, view.metrics, resource="cpu", limit=cpu_limit * max(desired, 0)),
        "memory": _usage(
            view.pods, view.metrics, resource="memory", limit=memory_limit * max(desired, 0)
        ),
    }
    ready_cond = condition(release, "Ready")
    stalled = condition(release, "Stalled")
    reconciling = condition(release, "Reconciling")
    remediated = condition(release, "Remediated")
    remediation = ""
    if remediated and remediated.get("status") == "True":
        remediation = f"{remediated.get('reason', '')}: {remediated.get('message', '')}".strip(": ")
    if stalled and stalled.get("status") == "True":
        return DeploymentStatus(
            state="failed",
            label=f"failed ({stalled.get('reason', 'Stalled')})",
            reason=stalled.get("reason", ""),
            message=stalled.get("message", ""),
            remediation=remediation,
            **common,
        )
    if ready_cond and ready_cond.get("status") == "False" and observed == generation:
        reason = ready_cond.get("reason", "")
        return DeploymentStatus(
            state="failed",
            label=f"failed ({reason})",
            reason=reason,
            message=ready_cond.get("message", ""),
            remediation=remediation,
            **common,
        )
    if (
        (generation is not None and observed != generation)
        or (reconciling and reconciling.get("status") == "True")
        or ready_cond is None
        or ready_cond.get("status") != "True"
    ):
        why = (reconciling or ready_cond or {}).get("message", "")
        return DeploymentStatus(
            state="reconciling",
            label="reconciling",
            reason=(reconciling or {}).get("reason", ""),
            message=why,
            remediation=remediation,
            **common,
        )
    if desired == 0:
        label = "stopped" if not pods else f"stopping ({len(pods)} left)"
        return DeploymentStatus(state="stopped", label=label, **common)
    broken = [p for p in pods if not p.ready and (p.reason in BAD_WAITING or p.restarts > 0)]
    if broken:
        worst = broken[0]
        return DeploymentStatus(
            state="degraded",
            label=f"degraded {ready}/{desired}",
            reason=worst.reason or "NotReady",
            message=f"pod {worst.name}: {worst.message or worst.reason}",
            **common,
        )
    if ready >= desired:
        return DeploymentStatus(state="running", label=f"running {ready}/{desired}", **common)
    waiting = next((p for p in pods if p.reason), None)
    return DeploymentStatus(
        state="reconciling",
        label=f"starting {ready}/{desired}",
        reason=waiting.reason if waiting else "",
        message=waiting.message if waiting else "",
        **common,
    )
