"""Operations endpoints: health, readiness, Prometheus metrics, and the leader's reading."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify, request

from gitops_bridge import metrics, poller
from gitops_bridge.errors import NotFound, RepoUnavailable, Unauthenticated
from gitops_bridge.runtime import Runtime

bp = Blueprint("ops", __name__)


def _runtime() -> Runtime:
    value = current_app.extensions["gitops_bridge.runtime"]
    assert isinstance(value, Runtime)
    return value


@bp.get("/healthz")
def healthz() -> tuple[str, int]:
    """Alive: the process answers."""
    return "ok\n", 200


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready: the GitOps remote answers (the cluster is optional and only reported)."""
    rt = _runtime()
    try:
        rt.svc.repo.refresh()
    except RepoUnavailable as exc:
        return jsonify({"ready": False, "git": exc.message}), 503
    monitor = rt.monitor
    state = monitor.poller.state if monitor.poller is not None else None
    body = {
        "ready": True,
        "git": rt.svc.repo.head(),
        "cluster": "not connected" if state is None else (state.error or "ok"),
        "leader": rt.elector.is_leader if rt.elector is not None else None,
    }
    return jsonify(body), 200


@bp.get("/metrics")
def metrics_text() -> Response:
    return Response(metrics.exposition(), mimetype="text/plain; version=0.0.4")


@bp.get("/internal/v1/reading")
def reading() -> Response:
    """The leader's last reading, for replicas that do not poll themselves."""
    rt = _runtime()
    given = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not hmac.compare_digest(given, rt.peer_token()):
        raise Unauthenticated("peer token required")
    pl = rt.monitor.poller
    if pl is None or pl.state.reading is None:
        raise NotFound("no reading yet")
    return Response(poller.reading_to_json(pl.state.reading), mimetype="application/json")
