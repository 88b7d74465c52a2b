"""Operations endpoints: health, readiness, Prometheus metrics, and the leader's reading.

``/healthz`` answers anyone (liveness). ``/readyz`` and ``/metrics`` answer loopback, the
``peers`` and the ``ops_networks`` only: they name commits, files and errors, and a
readiness check fetches from the remote. The leader's reading (every group's releases and
pods) goes to ``peers`` presenting the token derived from the secret, and to nobody when
there is no secret.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify, request

from gitops_bridge import metrics, poller
from gitops_bridge.errors import Forbidden, NotFound, RepoUnavailable, Unauthenticated
from gitops_bridge.runtime import Runtime
from gitops_bridge.webapp import auth, context

bp = Blueprint("ops", __name__)
LOOPBACK = ["127.0.0.0/8", "::1/128"]


def _runtime() -> Runtime:
    value = current_app.extensions["gitops_bridge.runtime"]
    assert isinstance(value, Runtime)
    return value


def _only_from(networks: list[str], what: str, setting: str) -> None:
    address = request.remote_addr
    if not auth.trusted(address, networks):
        raise Forbidden(f"{what}: not served to {address} (see the setting {setting})")


def _ops_networks() -> list[str]:
    settings = context.settings()
    return [*LOOPBACK, *settings.peers, *settings.ops_networks]


@bp.get("/healthz")
def healthz() -> tuple[str, int]:
    """Alive: the process answers."""
    return "ok\n", 200


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready: the GitOps remote answers (the cluster is optional and only reported)."""
    _only_from(_ops_networks(), "/readyz", "ops_networks")
    rt = _runtime()
    try:
        rt.svc.repo.refresh()
    except RepoUnavailable as exc:
        return jsonify({"ready": False, "git": exc.message}), 503
    monitor = rt.monitor
    state = monitor.poller.state if monitor.poller is not None else None
    # still ready (reads work, and every replica would fail alike), but say what is wrong
    degraded = [problem for problem in [rt.svc.repo.stale_lock] if problem]
    # files in Git the bridge cannot use: their groups take no writes until they are fixed
    unreadable = rt.svc.state().unreadable
    degraded += [f"{path}: {why}" for path, why in sorted(unreadable.items())[:20]]
    if len(unreadable) > 20:
        degraded.append(f"... and {len(unreadable) - 20} more files (GET /api/v1/problems)")
    body = {
        "ready": True,
        "git": rt.svc.repo.head(),
        "cluster": "not connected" if state is None else (state.error or "ok"),
        "leader": rt.elector.is_leader if rt.elector is not None else None,
        "degraded": degraded,
    }
    return jsonify(body), 200


@bp.get("/metrics")
def metrics_text() -> Response:
    _only_from(_ops_networks(), "/metrics", "ops_networks")
    return Response(metrics.exposition(), mimetype="text/plain; version=0.0.4")


@bp.get("/internal/v1/reading")
def reading() -> Response:
    """The leader's last reading, for replicas that do not poll themselves."""
    rt = _runtime()
    expected = rt.peer_token()
    if expected is None:
        raise NotFound("no peer secret: this replica shares no readings")
    _only_from(context.settings().peers, "the leader's reading", "peers")
    given = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not hmac.compare_digest(given, expected):
        raise Unauthenticated("peer token required")
    pl = rt.monitor.poller
    if pl is None or pl.state.reading is None:
        raise NotFound("no reading yet")
    return Response(poller.reading_to_json(pl.state.reading), mimetype="application/json")
