"""One deployment's page: its card, then what the cluster says about it in detail (what
runs beside what was committed, usage over time, pods, events), each section read from
the poller's latest reading: opening the page asks the cluster nothing."""

from __future__ import annotations

from typing import Any

from flask import render_template

from gitops_bridge.models import Deployment
from gitops_bridge.monitor import Monitor
from gitops_bridge.service import Service
from gitops_bridge.webapp import context, views
from gitops_bridge.webapp.pages import bp


@bp.get("/deployments/<name>")
def deployment_page(name: str) -> str:
    svc, monitor, user = context.svc(), context.monitor(), context.user()
    deployment = svc.deployment(user, name)
    card = views.cards(svc, user, monitor)(deployment, False)
    return render_template(
        "deployment.html",
        card=card,
        connected=monitor.connected,
        running=_running(svc, monitor, deployment, card),
        usage=_usage(monitor, deployment),
        pods=_pods(monitor, deployment),
        events=_events(monitor, deployment),
    )


def _running(
    svc: Service, monitor: Monitor, deployment: Deployment, card: dict[str, Any]
) -> dict[str, Any] | None:
    """What runs in the cluster beside what was committed; None when nothing is known."""
    return None


def _usage(monitor: Monitor, deployment: Deployment) -> dict[str, Any] | None:
    """CPU and memory over time against requests and limits; None without samples."""
    return None


def _pods(monitor: Monitor, deployment: Deployment) -> list[dict[str, Any]] | None:
    """The deployment's pods as the latest reading has them; None when not connected."""
    return None


def _events(monitor: Monitor, deployment: Deployment) -> list[dict[str, Any]] | None:
    """Kubernetes events of the deployment, its ReplicaSets and pods, newest first."""
    return None
