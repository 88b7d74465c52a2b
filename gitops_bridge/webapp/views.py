"""JSON shapes shared by the API and the UI (the seed's field names)."""

from __future__ import annotations

from typing import Any

from gitops_bridge.models import Deployment, Group
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
        "quota": value.quota.model_dump(),
    }


def deployment(svc: Service, value: Deployment, *, commit: str | None = None) -> dict[str, Any]:
    spec = value.spec.model_dump()
    app_name = spec.pop("name")
    return {
        "name": value.name,
        "id": value.id,
        "app": app_name,
        "group": value.group,
        "namespace": value.namespace,
        **spec,
        "owner": value.owner,
        "url": svc.url(value),
        "commit": commit,
        "status": {"state": "committed", "commit": commit},
    }
