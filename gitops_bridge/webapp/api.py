"""JSON API, ``/api/v1``. Thin: parse, call the service, shape the answer.

Mutating calls accept an ``Idempotency-Key`` header: a retried request answers with the
first result instead of changing anything twice. In review mode writes answer ``202``
with the change request that now waits for approval.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from flask.blueprints import BlueprintSetupState
from werkzeug.routing import PathConverter

from gitops_bridge import deletions, history, jsonbody, podlogs, review, storage, usage
from gitops_bridge.errors import BadRequest, InvalidRequest
from gitops_bridge.service import Written
from gitops_bridge.webapp import apidoc, context, listing, streams, views

bp = Blueprint("api", __name__, url_prefix="/api/v1")


class ChangeIdConverter(PathConverter):
    """A change request's id, ``<group>/<deployment>/<action>-<id>``: slashes, but never
    ending in ``/approve`` or ``/close``, so those URLs are not also one to GET (405, and
    an ``Allow`` header that lists only POST)."""

    regex = r"[^/].*?(?<!/approve)(?<!/close)"


@bp.record_once
def _converters(state: BlueprintSetupState) -> None:
    state.app.url_map.converters["change"] = ChangeIdConverter


Answer = tuple[Response, int] | tuple[Response, int, dict[str, str]]


def _body() -> Any:
    if not request.is_json:
        raise BadRequest("the body must be valid JSON (Content-Type: application/json)")
    data = jsonbody.loads(request.get_data())
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


@bp.get("/openapi.json")
def openapi() -> Response:
    """This API's OpenAPI 3.1 description (public: no identity needed)."""
    return Response(apidoc.text(), mimetype="application/json")


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


@bp.get("/groups/<group>")
def get_group(group: str) -> Response:
    """One group with its usage and ``repositoryProblems`` (members and platform admins)."""
    svc, user = context.svc(), context.user()
    svc.group(user, group)  # 404, 403, or 409 naming its unreadable record
    found = [view for view in svc.groups(user, storage=True) if view.group.name == group]
    return jsonify(views.groups(found, monitor=context.monitor())[0])


@bp.get("/problems")
def list_problems() -> Response:
    """Files under tenants/ that gitops-bridge cannot use (invalid YAML, not a deployment it
    can read, against the rules of a group's folder), in the caller's groups; writes to such
    a group are refused (409) until a change repairs one of them."""
    group = request.args.get("group") or None
    found = context.svc().problems(context.user(), group)
    return jsonify([views.problem(p) for p in found])


@bp.get("/groups/<group>/images")
def list_group_images(group: str) -> Response:
    """The group's images in the platform registry (members only), newest tag first."""
    found = context.svc().images(context.user(), group)
    return jsonify([views.image_repository(repo) for repo in found])


# ---- storage: volumes and registry images ----------------------------------------------


@bp.get("/groups/<group>/storage")
def group_storage(group: str) -> Response:
    """The group's storage quota against its volumes and registry images."""
    return jsonify(views.storage_summary(storage.summary(context.svc(), context.user(), group)))


@bp.get("/groups/<group>/volumes")
def list_volumes(group: str) -> Response:
    monitor = context.monitor()
    found = storage.volumes(context.svc(), context.user(), group)
    return jsonify([views.volume(v, monitor.volume_status(v.volume)) for v in found])


@bp.post("/groups/<group>/volumes")
def create_volume(group: str) -> Answer:
    written = storage.create_volume(context.svc(), context.user(), group, _body())
    return _volume_written(written, group, status=201)


@bp.patch("/groups/<group>/volumes/<name>")
def resize_volume(group: str, name: str) -> Answer:
    written = storage.resize_volume(context.svc(), context.user(), group, name, _body())
    return _volume_written(written, group)


@bp.delete("/groups/<group>/volumes/<name>")
def delete_volume(group: str, name: str) -> Answer:
    """``{"confirm": "<name>"}``: the first call releases the claim, the next (once Flux
    applied that) deletes it and its data."""
    written = storage.delete_volume(
        context.svc(),
        context.user(),
        group,
        name,
        _optional_body(),
        applied=context.monitor().group_applied(f"group-{group}"),
    )
    body: dict[str, Any] = {
        "commit": written.commit.sha,
        "changed": written.commit.changed,
        "state": "released" if written.volume is not None else "deleted",
        "message": written.message,
    }
    return jsonify(body), 200


def _volume_written(written: Written, group: str, *, status: int = 200) -> Answer:
    assert written.volume is not None
    view = storage.volume(context.svc(), context.user(), group, written.volume.name)
    body = views.volume(view) | {"commit": written.commit.sha, "changed": written.commit.changed}
    if status == 201:
        location = url_for(".list_volumes", group=group)
        return jsonify(body), 201, {"Location": location}
    return jsonify(body), status


@bp.get("/groups/<group>/images/tags")
def list_image_tags(group: str) -> Response:
    """Every tag of the group's images with its size and the deployments using it."""
    tags, _ = storage.images(context.svc(), context.user(), group)
    return jsonify([views.tag(t) for t in tags])


@bp.delete("/groups/<group>/images/<path:repository>/tags/<tag>")
def delete_image_tag(group: str, repository: str, tag: str) -> Answer:
    deleted = storage.delete_tag(context.svc(), context.user(), group, repository, tag)
    body = {
        "repository": deleted.repository,
        "tag": deleted.tag,
        "digest": deleted.digest,
        "also": list(deleted.also),
    }
    return jsonify(body), 200


@bp.post("/groups/<group>/images/retention")
def image_retention(group: str) -> Answer:
    """``{"keep": N, "dry_run": true}``: the tags beyond the newest N of each repository
    (never one in use), deleted unless a dry run, and what a garbage collection frees."""
    result = storage.retention(context.svc(), context.user(), group, _body())
    body = {
        "keep": result.keep,
        "delete": [
            {"repository": t.repository, "tag": t.tag, "digest": t.digest} for t in result.delete
        ],
        "reclaim": result.reclaim,
        "done": result.done,
    }
    return jsonify(body), 200


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
    """A page of the group's deployments: see ``list_deployments``."""
    return _listing(".list_group_deployments", group, {"group": group})


@bp.post("/groups/<group>/deployments")
def create_deployment(group: str) -> Answer:
    written = context.svc().create_deployment(context.user(), group, _body(), key=_key())
    return _written(written, created=True)


# ---- deployments --------------------------------------------------------------------


@bp.get("/deployments")
def list_deployments() -> Response:
    """A page of ``limit`` deployments by group, app and id (``after``: the cursor the
    ``Link: <...>; rel="next"`` header of the previous page names), filtered by ``group``,
    ``owner``, status ``state`` and ``q`` (text in the name, app or image). ``ETag``: a
    matching ``If-None-Match`` answers 304 with no body. ``deleted=1``: the deployments
    deleted from main instead, newest first, paged the same way (``deletions``)."""
    group = request.args.get("group") or None
    route = {"group": group} if group else {}
    if _flag("deleted"):
        return _deleted(group, route)
    return _listing(".list_deployments", group, route)


def _flag(name: str) -> bool:
    text = request.args.get(name, "")
    if text not in ("", "0", "1", "false", "true"):
        raise InvalidRequest.field(name, f"must be 1 or 0 (true or false), got {text!r}")
    return text in ("1", "true")


def _deleted(group: str | None, route: dict[str, str]) -> Response:
    """A page of the deleted deployments (the listing's filters do not apply to them)."""
    for name in ("owner", "state", "q"):
        if request.args.get(name):
            raise InvalidRequest.field(name, "cannot be combined with deleted=1")
    limit = _int_arg("limit", deletions.PAGE)
    after = request.args.get("after") or None
    page = deletions.page(context.svc(), context.user(), group=group, after=after, limit=limit)
    items = [views.deleted(item) for item in page.items]
    headers: dict[str, str] = {}
    if page.next is not None:
        query: dict[str, Any] = {**route, "deleted": 1, "limit": limit, "after": page.next}
        link = url_for(".list_deployments", **query)
        headers["Link"] = f'<{link}>; rel="next"'
    text = json.dumps(items, sort_keys=True, separators=(",", ":"))
    return _tagged(items, headers, hashlib.sha256(text.encode()).hexdigest()[:32])


def _listing(endpoint: str, group: str | None, route: dict[str, str]) -> Response:
    args = request.args
    limit = _int_arg("limit", listing.PAGE)
    filters = {name: args[name] for name in ("owner", "state", "q") if args.get(name)}
    page = listing.page(
        context.svc(),
        context.user(),
        monitor=context.monitor(),
        group=group,
        owner=filters.get("owner"),
        state=filters.get("state"),
        text=filters.get("q"),
        after=args.get("after") or None,
        limit=limit,
    )
    headers: dict[str, str] = {}
    if page.next is not None:
        query: dict[str, Any] = {**route, **filters, "limit": limit, "after": page.next}
        link = url_for(endpoint, **query)
        headers["Link"] = f'<{link}>; rel="next"'
    return _tagged(page.items, headers, _etag(page.items))


def _tagged(items: list[dict[str, Any]], headers: dict[str, str], etag: str) -> Response:
    """A page with its ``ETag``; 304 without a body when ``If-None-Match`` names it."""
    known = request.if_none_match  # "*" is no tag of a page: it never matches
    if not known.star_tag and known.contains_weak(etag):
        response = Response(status=304, headers=headers)
    else:
        response = jsonify(items)
        response.headers.update(headers)
    response.set_etag(etag)
    return response


def _etag(items: list[dict[str, Any]]) -> str:
    """A hash of the page, without the age of the cluster reading (it grows every second;
    ``stale`` still changes the tag when the reading gets old)."""
    steady = [item | {"status": _without_age(item["status"])} for item in items]
    text = json.dumps(steady, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _without_age(status: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if key != "age"}


@bp.get("/deployments/<name>")
def get_deployment(name: str) -> Response:
    svc = context.svc()
    found = svc.deployment(context.user(), name)
    return jsonify(_with_status([found])[0])


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
    """Newest first, ``limit`` versions a page (``before``: older than that commit); a
    ``Link: <...>; rel="next"`` header points to the next page while there is one."""
    diffs = request.args.get("diff") in ("1", "true", "yes")
    limit = _int_arg("limit", history.PAGE)
    page = history.page(
        context.svc(),
        context.user(),
        name,
        diffs=diffs,
        limit=limit,
        before=request.args.get("before") or None,
    )
    found = context.monitor().running_of(name)  # the version the cluster runs is "live"
    live = found.commit if found is not None else None
    response = jsonify([views.version(v, diffs=diffs, live=live) for v in page.versions])
    if page.next is not None:
        args: dict[str, Any] = {"limit": limit, "before": page.next}
        if diffs:
            args["diff"] = 1
        link = url_for(".deployment_history", name=name, **args)
        response.headers["Link"] = f'<{link}>; rel="next"'
    return response


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
    """A page of change requests, newest first: ``state`` open (the default), closed,
    merged or all (the open ones first); ``Link: <...>; rel="next"`` while there are more."""
    reviews = context.svc().review
    group = request.args.get("group") or None
    state = request.args.get("state") or None
    limit = _int_arg("limit", review.PAGE)
    page = reviews.page(
        context.user(),
        states=review.parse_states(state),
        group=group,
        after=request.args.get("after") or None,
        limit=limit,
    )
    response = jsonify([views.change(c) for c in page.items])
    if page.next is not None:
        query = {"group": group, "state": state, "limit": limit, "after": page.next}
        link = url_for(".list_changes", **{k: v for k, v in query.items() if v is not None})
        response.headers["Link"] = f'<{link}>; rel="next"'
    return response


@bp.get("/changes/<change:change_id>")
def get_change(change_id: str) -> Response:
    reviews = context.svc().review
    change = reviews.get(context.user(), change_id)
    return jsonify(views.change(change) | {"diff": reviews.diff(change)})


@bp.post("/changes/<change:change_id>/approve")
def approve_change(change_id: str) -> Answer:
    _optional_body()
    written = context.svc().review.approve(context.user(), change_id)
    body = {"change": change_id, "approved": True, "commit": written.commit.sha}
    return jsonify(body), 200


@bp.post("/changes/<change:change_id>/close")
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
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidRequest.field(name, f"must be a whole number, got {text!r}") from None


@bp.get("/deployments/<name>/logs")
def deployment_logs(name: str) -> Response:
    """A pod's log: ``pod`` (``*``: every pod's, merged in time order and tagged ``[pod]``),
    ``container`` (app|frpc), ``tail`` lines (per pod), ``timestamps``, ``previous`` (the
    instance that last terminated), ``follow``, ``download`` (an attachment, never followed).

    With ``follow`` the log streams as server-sent events (one ``data:`` per line, and a
    ``: heartbeat`` comment while the pod is quiet) when the client accepts
    ``text/event-stream``, otherwise as chunked text. Open streams are limited per user and
    in total (429); one whose client left is closed, upstream request included, within
    seconds.
    """
    follow = request.args.get("follow") in ("1", "true", "yes")
    timestamps, previous, download = _flag("timestamps"), _flag("previous"), _flag("download")
    if download and follow:
        raise InvalidRequest.field("follow", "a download is never followed: leave out follow")
    user = context.user()
    monitor = context.monitor()
    pod = request.args.get("pod") or None
    container = request.args.get("container") or None
    tail = _int_arg("tail", 200)

    def read() -> podlogs.Log:
        return monitor.logs(
            user,
            name,
            pod=pod,
            container=container,
            tail=tail,
            follow=follow,
            timestamps=timestamps,
            previous=previous,
        )

    if download:
        opened = read()
        moment = monitor.clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        filename = f"{name}-{opened.pod}-{moment}.log"  # names and pods are DNS names
        return Response(
            opened.source,
            mimetype="text/plain",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    if not follow:
        return Response(read().source, mimetype="text/plain")
    sse = "text/event-stream" in request.headers.get("Accept", "")
    stream = streams.of(current_app).open(
        user.name,
        read,
        sse=sse,
        gone=request.environ.get("waitress.client_disconnected") or (lambda: False),
    )
    if sse:
        return Response(
            stream,
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return Response(stream, mimetype="text/plain", headers={"X-Accel-Buffering": "no"})


@bp.get("/deployments/<name>/events")
def deployment_events(name: str) -> Response:
    """Kubernetes events of the deployment, its ReplicaSets, pods and autoscaler, newest
    first, as the latest reading has them (at most ``poller.EVENTS_SHOWN``)."""
    found = context.monitor().cluster_events(context.user(), name)
    return jsonify({"items": [views.cluster_event(event) for event in found]})


@bp.get("/deployments/<name>/usage")
def deployment_usage(name: str) -> Response:
    """CPU and memory of the app container over the usage window, step by step, with the
    restarts and the requests and limits per pod (``usage.document``): from Prometheus when
    one is configured and answers, else from memory (no points before the poller has read
    the cluster, or without one); ``source`` says which."""
    deployment = context.svc().deployment(context.user(), name)
    found = context.monitor().usage_history.read(deployment)
    fit = usage.footprint(deployment)
    body = usage.document(deployment.name, found.history, fit, source=found.source, note=found.note)
    return jsonify(body)


@bp.post("/flux/events")
def flux_event() -> Answer:
    headers = {key: value for key, value in request.headers.items()}
    event, fresh = context.monitor().on_flux_event(headers=headers, body=request.get_data())
    body = {"accepted": True, "object": f"{event.kind}/{event.namespace}/{event.name}"}
    if not fresh:  # a replay of an event already recorded: nothing is recorded twice
        return jsonify(body | {"duplicate": True}), 200
    return jsonify(body), 202
