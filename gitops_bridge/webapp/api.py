"""JSON API, ``/api/v1``. Thin: parse, call the service, shape the answer.

Mutating calls accept an ``Idempotency-Key`` header: a retried request answers with the
first result instead of changing anything twice. In review mode writes answer ``202``
with the change request that now waits for approval.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context, url_for

from gitops_bridge import history
from gitops_bridge.errors import BadRequest, InvalidRequest
from gitops_bridge.service import Written
from gitops_bridge.webapp import context, views

bp = Blueprint("api", __name__, url_prefix="/api/v1")

Answer = tuple[Response, int] | tuple[Response, int, dict[str, str]]


def _body() -> Any:
    data = request.get_json(silent=True)
    if data is None:
        raise BadRequest("the body must be valid JSON")
    return data


def _optional_body() -> Any:
    if not request.get_data():
        return {}
    return _body()


def _key() -> str | None:
    return request.headers.get("Idempotency-Key")


def _written(written: Written, *, created: bool = False) -> Answer:
    """201/200 with the deployment as committed, or 202 with the pending change request."""
    svc = context.svc()
    body: dict[str, Any] = {"commit": written.commit.sha, "changed": written.commit.changed}
    if written.deployment is not None:
        body = views.deployment(svc, written.deployment, commit=written.commit.sha) | body
    if written.change is not None and written.change.state == "open":
        body["status"] = {"state": "pending review", "change": views.change(written.change)}
        body["change"] = views.change(written.change)
        return jsonify(body), 202
    if created and written.deployment is not None:
        location = url_for(".get_deployment", name=written.deployment.name)
        return jsonify(body), 201, {"Location": location}
    return jsonify(body), 200


# ---- groups -----------------------------------------------------------------------


@bp.get("/groups")
def list_groups() -> Response:
    found = context.svc().groups(context.user(), storage=True)
    return jsonify(views.groups(found, monitor=context.monitor()))


@bp.post("/groups")
def create_group() -> Answer:
    written = context.svc().create_group(context.user(), _body())
    assert written.group is not None
    body = views.group_record(written.group) | {"commit": written.commit.sha}
    return jsonify(body), 201, {"Location": url_for(".list_groups")}


@bp.get("/groups/<group>/images")
def list_group_images(group: str) -> Response:
    """The group's images in the platform registry (members only), newest tag first."""
    found = context.svc().images(context.user(), group)
    return jsonify([views.image_repository(repo) for repo in found])


@bp.patch("/groups/<group>")
def update_group(group: str) -> Answer:
    written = context.svc().update_group(context.user(), group, _body())
    assert written.group is not None
    body = views.group_record(written.group) | {
        "commit": written.commit.sha,
        "changed": written.commit.changed,
    }
    return jsonify(body), 200


@bp.get("/groups/<group>/deployments")
def list_group_deployments(group: str) -> Response:
    found = context.svc().deployments(context.user(), group)
    return jsonify(_with_status(found) + _deleting(group))


@bp.post("/groups/<group>/deployments")
def create_deployment(group: str) -> Answer:
    written = context.svc().create_deployment(context.user(), group, _body(), key=_key())
    return _written(written, created=True)


# ---- deployments --------------------------------------------------------------------


@bp.get("/deployments")
def list_deployments() -> Response:
    svc = context.svc()
    group = request.args.get("group") or None
    found = svc.deployments(context.user(), group)
    return jsonify(_with_status(found) + _deleting(group))


@bp.get("/deployments/<name>")
def get_deployment(name: str) -> Response:
    svc = context.svc()
    found = svc.deployment(context.user(), name)
    return jsonify(_with_status([found])[0])


def _deleting(group: str | None) -> list[dict[str, Any]]:
    """Deleted in Git, still in the cluster: listed with state "deleting" until pruned."""
    return views.deleting(context.svc(), context.user(), group, monitor=context.monitor())


def _with_status(found: list[Any]) -> list[dict[str, Any]]:
    return views.deployments(context.svc(), context.user(), found, monitor=context.monitor())


@bp.patch("/deployments/<name>")
def update_deployment(name: str) -> Answer:
    written = context.svc().update_deployment(context.user(), name, _body(), key=_key())
    return _written(written)


@bp.post("/deployments/<name>/scale")
def scale_deployment(name: str) -> Answer:
    body = _body()
    replicas = body.get("replicas") if isinstance(body, dict) else None
    written = context.svc().scale(context.user(), name, replicas, key=_key())
    return _written(written)


@bp.post("/deployments/<name>/restart")
def restart_deployment(name: str) -> Answer:
    _optional_body()
    return _written(context.svc().restart(context.user(), name, key=_key()))


@bp.delete("/deployments/<name>")
def delete_deployment(name: str) -> Answer:
    written = context.svc().delete_deployment(context.user(), name, key=_key())
    if written.change is not None:
        return _written(written)
    return jsonify({"name": name, "deleted": True, "commit": written.commit.sha}), 200


@bp.get("/deployments/<name>/history")
def deployment_history(name: str) -> Response:
    diffs = request.args.get("diff") in ("1", "true", "yes")
    versions = history.history(context.svc(), context.user(), name, diffs=diffs)
    return jsonify([views.version(v, diffs=diffs) for v in versions])


@bp.post("/deployments/<name>/revert")
def revert_deployment(name: str) -> Answer:
    commit = _commit_field(_body())
    return _written(history.revert(context.svc(), context.user(), name, commit, key=_key()))


@bp.post("/deployments/<name>/restore")
def restore_deployment(name: str) -> Answer:
    commit = _commit_field(_body())
    return _written(history.restore(context.svc(), context.user(), name, commit, key=_key()))


def _commit_field(body: Any) -> str:
    commit = body.get("commit") if isinstance(body, dict) else None
    return commit if isinstance(commit, str) else ""


# ---- change requests (review mode) ----------------------------------------------------


@bp.get("/changes")
def list_changes() -> Response:
    reviews = context.svc().review
    changes = reviews.open_changes(context.user(), request.args.get("group") or None)
    return jsonify([views.change(c) for c in changes])


@bp.get("/changes/<path:change_id>")
def get_change(change_id: str) -> Response:
    reviews = context.svc().review
    change = reviews.get(context.user(), change_id)
    return jsonify(views.change(change) | {"diff": reviews.diff(change)})


@bp.post("/changes/<path:change_id>/approve")
def approve_change(change_id: str) -> Answer:
    _optional_body()
    written = context.svc().review.approve(context.user(), change_id)
    body = {"change": change_id, "approved": True, "commit": written.commit.sha}
    return jsonify(body), 200


@bp.post("/changes/<path:change_id>/close")
def close_change(change_id: str) -> Answer:
    _optional_body()
    change = context.svc().review.close(context.user(), change_id)
    return jsonify({"change": change.id, "closed": True}), 200


@bp.post("/forge/events")
def forge_event() -> Answer:
    event = context.svc().review.on_webhook(headers=request.headers, body=request.get_data())
    if event is None:
        return jsonify({"ignored": True}), 202
    return jsonify({"branch": event.branch, "number": event.number, "state": event.state}), 200


# ---- the cluster side --------------------------------------------------------------------


@bp.post("/deployments/<name>/retry")
def retry_deployment(name: str) -> Answer:
    _optional_body()
    stamp = context.monitor().retry(context.user(), name)
    return jsonify({"name": name, "requestedAt": stamp}), 202


def _int_arg(name: str, default: int) -> int:
    text = request.args.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidRequest.field(name, f"must be a whole number, got {text!r}") from None


@bp.get("/deployments/<name>/logs")
def deployment_logs(name: str) -> Response:
    """A pod's log: ``pod``, ``container`` (app|frpc), ``tail`` lines, ``follow``.

    With ``follow`` the log streams as server-sent events (one ``data:`` per line) when the
    client accepts ``text/event-stream``, otherwise as chunked text.
    """
    follow = request.args.get("follow") in ("1", "true", "yes")
    chunks = context.monitor().logs(
        context.user(),
        name,
        pod=request.args.get("pod") or None,
        container=request.args.get("container") or None,
        tail=_int_arg("tail", 200),
        follow=follow,
    )
    first = next(chunks, b"")  # errors surface now, as a status code, not mid-stream
    if follow and "text/event-stream" in request.headers.get("Accept", ""):
        return Response(
            stream_with_context(_events(first, chunks)),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return Response(stream_with_context(_chain(first, chunks)), mimetype="text/plain")


def _chain(first: bytes, rest: Any) -> Any:
    if first:
        yield first
    yield from rest


def _events(first: bytes, rest: Any) -> Any:
    pending = b""
    for chunk in _chain(first, rest):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield b"data: " + line.rstrip(b"\r") + b"\n\n"
    if pending:
        yield b"data: " + pending + b"\n\n"
    yield b"event: end\ndata: \n\n"


@bp.post("/flux/events")
def flux_event() -> Answer:
    headers = {key: value for key, value in request.headers.items()}
    event = context.monitor().on_flux_event(headers=headers, body=request.get_data())
    return jsonify(
        {"accepted": True, "object": f"{event.kind}/{event.namespace}/{event.name}"}
    ), 202
