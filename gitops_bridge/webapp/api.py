"""JSON API, ``/api/v1``. Thin: parse, call the service, shape the answer."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from gitops_bridge.errors import BadRequest
from gitops_bridge.render import app_path
from gitops_bridge.webapp import context, views

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def _body() -> Any:
    data = request.get_json(silent=True)
    if data is None:
        raise BadRequest("the body must be valid JSON")
    return data


def _last_commit(path: str) -> str | None:
    svc = context.svc()
    head = svc.repo.head()
    change = svc.repo.last_changes(head, "tenants").get(path)
    return change.sha if change else None


@bp.get("/groups")
def list_groups() -> Response:
    return jsonify([views.group(view) for view in context.svc().groups(context.user())])


@bp.post("/groups")
def create_group() -> tuple[Response, int, dict[str, str]]:
    written = context.svc().create_group(context.user(), _body())
    assert written.group is not None
    body = views.group_record(written.group) | {"commit": written.commit.sha}
    return jsonify(body), 201, {"Location": url_for(".list_groups")}


@bp.get("/groups/<group>/deployments")
def list_group_deployments(group: str) -> Response:
    svc = context.svc()
    found = svc.deployments(context.user(), group)
    return jsonify([_deployment_json(d) for d in found])


@bp.get("/deployments")
def list_deployments() -> Response:
    svc = context.svc()
    group = request.args.get("group") or None
    return jsonify([_deployment_json(d) for d in svc.deployments(context.user(), group)])


@bp.post("/groups/<group>/deployments")
def create_deployment(group: str) -> tuple[Response, int, dict[str, str]]:
    svc = context.svc()
    written = svc.create_deployment(context.user(), group, _body())
    assert written.deployment is not None
    body = views.deployment(svc, written.deployment, commit=written.commit.sha)
    location = url_for(".get_deployment", name=written.deployment.name)
    return jsonify(body), 201, {"Location": location}


@bp.get("/deployments/<name>")
def get_deployment(name: str) -> Response:
    return jsonify(_deployment_json(context.svc().deployment(context.user(), name)))


def _deployment_json(deployment: Any) -> dict[str, Any]:
    svc = context.svc()
    commit = _last_commit(app_path(deployment.group, deployment.name))
    return views.deployment(svc, deployment, commit=commit)
