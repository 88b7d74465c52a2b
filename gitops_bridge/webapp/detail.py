"""One deployment's page: its card, then what the cluster says about it in detail (what
runs beside what was committed, usage over time, pods, events), each section read from
the poller's latest reading: opening the page asks the cluster nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import render_template

from gitops_bridge import models, status, usage
from gitops_bridge.models import Deployment
from gitops_bridge.monitor import Monitor
from gitops_bridge.running import LOOKBACK
from gitops_bridge.service import Service
from gitops_bridge.webapp import context, graphs, views
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
    """What runs in the cluster beside what was committed; None when nothing is known.

    The settings that run are those of the live version in Git (``running``: the newest
    version whose digest and image the cluster's Deployment carries); its image is the
    cluster's own. Each row says whether the two sides differ, in words as well as style."""
    found = monitor.running(deployment, commit=card.get("commit"))
    if found is None:
        return None
    live = found.settings
    rows = [_row("image", "Image", found.image or None, deployment.spec.image, mono=True)]
    for key, label, show in _SETTINGS:
        rows.append(_row(key, label, show(live) if live else None, show(deployment)))
    if live is not None and live.spec.env != deployment.spec.env:  # also when only values do
        names = _env_names(live), _env_names(deployment)
        committed = names[1] if names[0] != names[1] else f"{names[1]} (values differ)"
        rows.append(_row("env", "Env", names[0], committed))
    else:
        rows.append(_row("env", "Env", _env_names(live) if live else None, _env_names(deployment)))
    return {
        "matches": found.matches,
        "commit": found.commit,
        "committed_commit": found.committed_commit,
        "older": LOOKBACK if found.older else None,
        "digest": found.digest,
        "rows": rows,
        "differs": [row["label"] for row in rows if row["differs"]],
    }


def _row(
    key: str, label: str, running: str | None, committed: str, *, mono: bool = False
) -> dict[str, Any]:
    """One setting on both sides (``running`` None: not known, so not said to differ)."""
    return {
        "key": key,
        "label": label,
        "running": running,
        "committed": committed,
        "differs": running is not None and running != committed,
        "mono": mono,
    }


def _replicas(item: Deployment) -> str:
    spec = item.spec
    if spec.autoscaling is not None and spec.replicas:
        scaling = spec.autoscaling
        return f"autoscaled {scaling.min}..{scaling.max} at {scaling.cpu}% CPU"
    return "0 (stopped)" if spec.replicas == 0 else str(spec.replicas)


def _env_names(item: Deployment) -> str:
    names = [f"{var.name} (secret)" if var.secret else var.name for var in item.spec.env]
    return ", ".join(names) or "none"


def _health(item: Deployment) -> str:
    health = item.spec.health
    return f"HTTP GET {health.path}" if health is not None else "TCP connect"


_SETTINGS: tuple[tuple[str, str, Callable[[Deployment], str]], ...] = (
    ("replicas", "Replicas", _replicas),
    ("cpu", "CPU request", lambda item: item.spec.resources.cpu),
    ("memory", "Memory request", lambda item: item.spec.resources.memory),
    ("command", "Command", lambda item: models.argv_line(item.spec.command) or "the image's"),
    ("args", "Args", lambda item: models.argv_line(item.spec.args) or "the image's"),
    ("health", "Health check", _health),
)


@bp.app_template_filter("running_note")
def running_note(card: dict[str, Any]) -> str:
    """``Running <image> (commit abc1234) · committed <image> (def5678)`` when the cluster
    runs something else than main holds (a failed upgrade was rolled back); "" otherwise.
    app.js says the same from the same JSON."""
    run = card.get("running")
    if not run or run.get("matches") is not False:
        return ""
    if run.get("commit"):
        live = f"commit {run['commit'][:7]}"
    elif run.get("olderThan"):
        live = f"older than the last {run['olderThan']} versions"
    else:
        live = "commit unknown"
    committed = (card.get("commit") or "")[:7] or "—"
    image = run.get("image") or "an unknown image"
    return f"Running {image} ({live}) · committed {card['image']} ({committed})"


def _usage(monitor: Monitor, deployment: Deployment) -> dict[str, Any] | None:
    """CPU and memory over time against requests and limits, and where they came from;
    None without samples, unless there is a note to make (Prometheus did not answer)."""
    found = monitor.usage_history.read(deployment)
    where = {"source": found.source, "note": found.note, "rate_window": found.rate_window}
    shown = graphs.section(found.history, usage.footprint(deployment))
    if shown is None:
        if found.note is None:
            return None
        return where | {"window": graphs.window_text(found.history.window), "graphs": []}
    return shown | where


def _pods(monitor: Monitor, deployment: Deployment) -> list[dict[str, Any]] | None:
    """The deployment's pods as the latest reading has them; None when not connected."""
    if not monitor.connected:
        return None
    view = monitor.cluster_view(deployment)
    now = datetime.now(UTC)
    rows = []
    for pod in view.pods if view is not None else ():
        seen = status.pod_view(pod)
        last = seen.last_termination
        leaving = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
        rows.append(
            {
                "name": seen.name,
                "phase": "Terminating" if leaving else seen.phase,
                "reason": seen.reason,
                "message": seen.message,
                "ready": f"{seen.ready_containers}/{seen.containers}",
                "restarts": seen.restarts,
                "created": seen.created,
                "age": _age(seen.created, now),
                "node": seen.node,
                "termination": None
                if last is None
                else {
                    "container": last.container,
                    "reason": last.reason or "unknown",
                    "exit_code": last.exit_code,
                    "finished_at": last.finished_at,
                    "ago": _age(last.finished_at, now),
                },
            }
        )
    return rows


def _events(monitor: Monitor, deployment: Deployment) -> list[dict[str, Any]] | None:
    """Kubernetes events of the deployment, its ReplicaSets and pods, newest first."""
    if not monitor.connected:
        return None
    view = monitor.cluster_view(deployment)
    now = datetime.now(UTC)
    rows = []
    for event in view.events if view is not None else ():
        seen = status.event_view(event)
        rows.append(
            {
                "type": seen.type or "Normal",
                "warning": seen.type == "Warning",
                "reason": seen.reason,
                "message": seen.message,
                "object": f"{seen.kind}/{seen.name}",
                "count": seen.count,
                "last_seen": seen.last_seen,
                "age": _age(seen.last_seen, now),
                "source": seen.source,
            }
        )
    return rows


def _age(since: str, now: datetime) -> str:
    """How long ago, as kubectl's AGE column says it (45s, 12m, 3h, 2d); "" when unknown."""
    moment = status.instant(since)
    if moment is None:
        return ""
    seconds = max(0, int((now - moment).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
