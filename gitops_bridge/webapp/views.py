"""JSON shapes shared by the API and the UI (the seed's field names)."""

from __future__ import annotations

from typing import Any

from gitops_bridge.history import Version
from gitops_bridge.identity import User
from gitops_bridge.models import Deployment, Group
from gitops_bridge.render import app_path
from gitops_bridge.review import ChangeRequest
from gitops_bridge.service import GroupView, Service


def group(view: GroupView) -> dict[str, Any]:
    data = group_record(view.group)
    data["usage"] = {
        "cpu": view.usage.cpu.format_cpu(),
        "memory": view.usage.memory.format_memory(),
        "pods": view.usage.pods,
        "deployments": view.deployments,
    }
    return data


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
) -> dict[str, Any]:
    spec = value.spec.model_dump()
    app_name = spec.pop("name")
    status: dict[str, Any] = {"state": "committed", "commit": commit}
    if pending is not None:
        status = {"state": "pending review", "commit": commit, "change": change(pending)}
    return {
        "name": value.name,
        "id": value.id,
        "app": app_name,
        "group": value.group,
        "namespace": value.namespace,
        **spec,
        "owner": value.owner,
        "restartedAt": value.restarted_at or None,
        "url": svc.url(value),
        "commit": commit,
        "status": status,
    }


def deployments(svc: Service, user: User, found: list[Deployment]) -> list[dict[str, Any]]:
    """Deployments with their last commit and any change request waiting for review."""
    last = svc.repo.last_changes(svc.repo.head(), "tenants")
    pending = svc.review.pending_for(user) if svc.review is not None else {}
    result = []
    for item in found:
        change_info = last.get(app_path(item.group, item.name))
        result.append(
            deployment(
                svc,
                item,
                commit=change_info.sha if change_info else None,
                pending=pending.get(item.name),
            )
        )
    return result


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
    }


def version(value: Version, *, diffs: bool = False) -> dict[str, Any]:
    data = {
        "commit": value.sha,
        "author": value.author,
        "email": value.email,
        "time": value.time,
        "message": value.subject,
        "action": value.action,
        "summary": value.summary,
        "exists": value.exists,
    }
    if diffs:
        data["diff"] = value.diff
    return data


def pending_creates(svc: Service, user: User, group: str | None = None) -> list[dict[str, Any]]:
    """Deployments that exist only in a change request waiting for review."""
    if svc.review is None:
        return []
    cards = []
    for pending in svc.review.open_changes(user, group):
        if pending.action != "create":
            continue
        proposed = svc.review.proposed(pending)
        if proposed is not None:
            cards.append(deployment(svc, proposed, commit=None, pending=pending))
    return cards
