"""JSON shapes shared by the API and the UI (the seed's field names)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gitops_bridge import registry, storage
from gitops_bridge.deletions import Deleted
from gitops_bridge.history import Version
from gitops_bridge.identity import User
from gitops_bridge.models import Deployment, Group
from gitops_bridge.monitor import FluxEvent, Monitor
from gitops_bridge.quantity import Quantity
from gitops_bridge.render import app_path
from gitops_bridge.review import ChangeRequest
from gitops_bridge.running import LOOKBACK, Running
from gitops_bridge.service import GroupView, Problem, Service
from gitops_bridge.status import DeploymentStatus, EventView, PodView, Usage


def group(view: GroupView, *, problems: tuple[str, ...] = ()) -> dict[str, Any]:
    """A group with its usage; ``problems``: what the cluster shows the group must fix."""
    data = group_record(view.group)
    data["problems"] = list(problems)
    # files in the group's folder the bridge cannot use: writes to the group wait for a fix
    data["repositoryProblems"] = [problem(p) for p in view.files]
    data["usage"] = {
        "cpu": view.usage.cpu.format_cpu(),
        "memory": view.usage.memory.format_memory(),
        "pods": view.usage.pods,
        "deployments": view.deployments,
    }
    if view.storage is not None or view.storage_note:  # a registry is configured and asked
        data["usage"] |= {
            "storage": None if view.storage is None else Quantity(view.storage).human_memory(),
            "storageBytes": view.storage,
            "storageNote": view.storage_note or None,
        }
    return data


def problem(value: Problem) -> dict[str, Any]:
    """A file under tenants/ the bridge cannot use: where, why, and the deployment it is."""
    return {
        "path": value.path,
        "group": value.group,
        "problem": value.problem,
        "deployment": value.deployment,
    }


def image_repository(value: registry.Repository) -> dict[str, Any]:
    """A repository of the group's images; ``reference`` names its newest tag."""
    newest = value.newest
    return {
        "repository": value.name,
        "tags": list(value.tags),
        "reference": newest.reference,
        "digest": newest.digest,
        "size": newest.size,
        "created": newest.created,
    }


def volume(value: storage.VolumeView, observed: dict[str, Any] | None = None) -> dict[str, Any]:
    """A volume as committed, who mounts it, and what the cluster says of its claim."""
    found = value.volume
    return {
        "name": found.name,
        "group": found.group,
        "namespace": found.namespace,
        "size": found.spec.size,
        "storageClass": found.spec.storage_class,
        "accessMode": found.spec.access_mode,
        "owner": found.owner,
        "deleting": found.deleting or None,
        "mountedBy": value.mounted_by,
        "status": observed,
    }


def tag(value: storage.TagView) -> dict[str, Any]:
    info = value.tag
    return {
        "repository": info.repository,
        "tag": info.tag,
        "digest": info.digest,
        "size": info.size,
        "created": info.created,
        "usedBy": value.used_by,
    }


def storage_summary(value: storage.Summary) -> dict[str, Any]:
    return {
        "group": value.group,
        "quota": value.quota,
        "volumes": value.volumes,
        "images": value.images,
        "imagesNote": value.images_note or None,
        "free": value.free,
        "over": value.over,
    }


def group_record(value: Group) -> dict[str, Any]:
    return {
        "name": value.name,
        "namespace": value.namespace,
        "members": list(value.members),
        "admins": list(value.admins),
        "quota": value.quota.model_dump(),
        "review": value.review,
    }


def deployment(
    svc: Service,
    value: Deployment,
    *,
    commit: str | None = None,
    pending: ChangeRequest | None = None,
    observed: DeploymentStatus | None = None,
) -> dict[str, Any]:
    spec = value.spec.model_dump()
    app_name = spec.pop("name")
    status: dict[str, Any] = {"state": "committed", "label": f"committed {(commit or '')[:7]}"}
    if observed is not None:
        status = cluster_status(observed)
        if observed.state == "not connected" and commit:
            status["label"] = f"committed {commit[:7]}"  # all we know: what Git holds
    status["commit"] = commit
    if pending is not None:
        status |= {"review": "pending review", "change": change(pending)}
        if commit is None:
            status |= {"state": "pending review", "label": "pending review"}
    return {
        "name": value.name,
        "id": value.id,
        "app": app_name,
        "group": value.group,
        "namespace": value.namespace,
        **spec,
        "owner": value.owner,
        "restartedAt": value.restarted_at or None,
        # who set each secret value and when; the values themselves are never shown
        "secrets": {key: change.model_dump() for key, change in sorted(value.secrets.items())},
        "url": svc.url(value),
        "commit": commit,
        "status": status,
    }


def deployments(
    svc: Service, user: User, found: list[Deployment], *, monitor: Monitor | None = None
) -> list[dict[str, Any]]:
    """Deployments with their last commit, any change request waiting for review, and what
    the cluster says about them (when a monitor is given)."""
    card = cards(svc, user, monitor)
    return [card(item, False) for item in found]


def cards(
    svc: Service, user: User, monitor: Monitor | None
) -> Callable[[Deployment, bool], dict[str, Any]]:
    """What makes one deployment's JSON (``True``: deleted in Git, the cluster still runs
    it); what it needs from Git is read once, for all the cards it makes."""
    last = svc.repo.last_changes(svc.repo.head(), "tenants")
    pending = svc.review.pending_for(user) if svc.review is not None else {}

    def card(item: Deployment, deleted: bool) -> dict[str, Any]:
        if deleted:
            assert monitor is not None  # only a monitor knows what the cluster still runs
            gone = monitor.status(item, last_commit=None, deleted_in_git=True)
            return deployment(svc, item, commit=None, observed=gone)
        change_info = last.get(app_path(item.group, item.name))
        commit = change_info.sha if change_info else None
        observed = monitor.status(item, last_commit=commit) if monitor is not None else None
        data = deployment(
            svc, item, commit=commit, pending=pending.get(item.name), observed=observed
        )
        if monitor is not None:
            data["events"] = [event_json(e) for e in monitor.recent_events(item)]
            data["running"] = running(monitor.running(item, commit=commit))
        return data

    return card


def running(value: Running | None) -> dict[str, Any] | None:
    """What the cluster's Deployment runs: its image, the digest of the settings it was
    rendered from, the commit live for this deployment, and whether that is what main holds;
    null when the cluster has no Deployment of it (yet)."""
    if value is None:
        return None
    return {
        "image": value.image or None,
        "digest": value.digest or None,
        "commit": value.commit,
        "matches": value.matches,
        "committedDigest": value.committed_digest or None,
        "olderThan": LOOKBACK if value.older else None,
    }


def _quantity(value: Quantity | None, *, kind: str) -> str | None:
    """For people: 4.4m, 1.5 cores; 256Mi, 1.2Gi (``units``: rounded to one decimal)."""
    if value is None:
        return None
    return value.human_cpu() if kind == "cpu" else value.human_memory()


def _usage(usage: Usage | None, kind: str) -> dict[str, Any] | None:
    if usage is None:
        return None
    used = None if usage.used is None else float(usage.used.value)
    return {
        "used": _quantity(usage.used, kind=kind),
        "limit": _quantity(usage.limit, kind=kind),
        "usedValue": used,
        "limitValue": float(usage.limit.value),
    }


def cluster_status(observed: DeploymentStatus) -> dict[str, Any]:
    return {
        "state": observed.state,
        "label": observed.label,
        "ready": observed.ready,
        "desired": observed.desired,
        "reason": observed.reason,
        "message": observed.message,
        "remediation": observed.remediation,
        "generation": observed.generation,
        "observedGeneration": observed.observed_generation,
        "appliedCommit": observed.applied_commit,
        "history": [
            {
                "chartVersion": v.chart_version,
                "status": v.status,
                "firstDeployed": v.first_deployed,
                "lastDeployed": v.last_deployed,
                "digest": v.digest,
            }
            for v in observed.history
        ],
        "pods": [pod(p) for p in observed.pods],
        "cpu": _usage(observed.cpu, "cpu"),
        "memory": _usage(observed.memory, "memory"),
        "age": None if observed.age is None else round(observed.age, 1),
        "stale": observed.stale,
        "problems": list(observed.problems),
    }


def pod(value: PodView) -> dict[str, Any]:
    """A pod as the latest reading has it; ``lastTermination``: how a container of it ended
    last (OOMKilled 137...), null when none has."""
    last = value.last_termination
    return {
        "name": value.name,
        "phase": value.phase,
        "ready": value.ready,
        "restarts": value.restarts,
        "reason": value.reason,
        "message": value.message,
        "readyContainers": value.ready_containers,
        "containers": value.containers,
        "node": value.node or None,
        "created": value.created or None,
        "started": value.started or None,
        "lastTermination": None
        if last is None
        else {
            "container": last.container,
            "reason": last.reason,
            "exitCode": last.exit_code,
            "finishedAt": last.finished_at or None,
        },
    }


def cluster_event(value: EventView) -> dict[str, Any]:
    """A Kubernetes event of a deployment (``GET /deployments/<name>/events``)."""
    return {
        "type": value.type,
        "reason": value.reason,
        "message": value.message,
        "object": {"kind": value.kind, "name": value.name},
        "count": value.count,
        "firstSeen": value.first_seen or None,
        "lastSeen": value.last_seen or None,
        "source": value.source,
    }


def groups(found: list[GroupView], *, monitor: Monitor | None = None) -> list[dict[str, Any]]:
    """Groups for the page and the API, with the latest reading's notes when connected."""
    return [
        group(view, problems=monitor.group_problems(view.group.namespace) if monitor else ())
        for view in found
    ]


def event_json(event: FluxEvent) -> dict[str, Any]:
    return {
        "kind": event.kind,
        "severity": event.severity,
        "reason": event.reason,
        "message": event.message,
        "revision": event.revision,
        "timestamp": event.timestamp,
    }


def change(value: ChangeRequest) -> dict[str, Any]:
    return {
        "id": value.id,
        "branch": value.branch,
        "group": value.group,
        "deployment": value.target,
        "action": value.action,
        "commit": value.sha,
        "base": value.base,
        "author": value.author,
        "time": value.time,
        "title": value.subject,
        "description": value.body,
        "url": value.url,
        "state": value.state,
        "number": value.number,
        "decidedBy": value.decided_by or None,
        "decidedAt": value.decided_at,
        "mergeCommit": value.merge_commit,
    }


def version(value: Version, *, diffs: bool = False, live: str | None = None) -> dict[str, Any]:
    """One version of a deployment; ``live``: the commit the cluster runs for it."""
    data = {
        "commit": value.sha,
        "author": value.author,
        "email": value.email,
        "time": value.time,
        "message": value.subject,
        "action": value.action,
        "summary": value.summary,
        "exists": value.exists,
        "live": value.sha == live,
    }
    if diffs:
        data["diff"] = value.diff
    return data


def deleted(value: Deleted) -> dict[str, Any]:
    """A deployment deleted from main, as it was last; ``restoreCommit``: the commit of that
    version, for ``POST /deployments/<name>/restore``."""
    return {
        "name": value.name,
        "group": value.group,
        "app": value.app,
        "image": value.image,
        "replicas": value.replicas,
        "deletedBy": value.deleted_by,
        "deletedAt": value.deleted_at,
        "deleteCommit": value.delete_commit,
        "restoreCommit": value.restore_commit,
        "problem": value.problem or None,
    }


def pending_creates(svc: Service, user: User, group: str | None = None) -> list[dict[str, Any]]:
    """Deployments that exist only in a change request waiting for review (a create, or a
    restore or revert that brings a deleted one back)."""
    if svc.review is None:
        return []
    on_main = svc.state().deployments
    found = []
    for pending in svc.review.open_changes(user, group):
        if pending.target in on_main:
            continue
        proposed = svc.review.proposed(pending)
        if proposed is not None:
            found.append(deployment(svc, proposed, commit=None, pending=pending))
    return found
