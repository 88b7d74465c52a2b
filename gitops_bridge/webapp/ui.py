"""Server-rendered pages: Deployments (cards + New deployment form) and Groups."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from gitops_bridge.errors import BridgeError, FieldProblem, InvalidRequest
from gitops_bridge.webapp import context, views

bp = Blueprint("ui", __name__)


@bp.app_context_processor
def _globals() -> dict[str, Any]:
    return {"domain": context.settings().domain}


@bp.get("/")
def index() -> Response:
    return redirect(url_for(".deployments"))


@bp.get("/healthz")
def healthz() -> tuple[str, int]:
    return "ok\n", 200


@bp.get("/deployments")
def deployments() -> str:
    svc = context.svc()
    user = context.user()
    group = request.args.get("group") or None
    cards = views.deployments(svc, user, svc.deployments(user, group))
    cards += views.pending_creates(svc, user, group)
    return render_template(
        "deployments.html",
        cards=cards,
        groups=[view.group.name for view in svc.groups(user)],
        selected=group,
    )


def _form_defaults(groups: list[str]) -> dict[str, Any]:
    return {
        "group": request.args.get("group") or (groups[0] if groups else ""),
        "name": "",
        "image": "",
        "replicas": "1",
        "port": "8080",
        "cpu": "100m",
        "memory": "128Mi",
        "expose": True,
        "env": [],
    }


@bp.get("/deployments/new")
def new_deployment() -> str:
    groups = [view.group.name for view in context.svc().groups(context.user())]
    return render_template("deployment_form.html", form=_form_defaults(groups), groups=groups)


def _int_field(form: MultiDict[str, str], name: str, problems: list[FieldProblem]) -> Any:
    text = form.get(name, "").strip()
    try:
        return int(text)
    except ValueError:
        problems.append(FieldProblem(name, f"must be a whole number, got {text!r}"))
        return None


def _form_values(form: MultiDict[str, str]) -> dict[str, Any]:
    names = form.getlist("env_name")
    values = form.getlist("env_value")
    env = [
        # browsers send textarea line breaks as CRLF (HTML form encoding); users typed LF
        {"name": name.strip(), "value": value.replace("\r\n", "\n")}
        for name, value in zip(names, values, strict=False)
        if name.strip() or value
    ]
    return {
        "group": form.get("group", ""),
        "name": form.get("name", "").strip(),
        "image": form.get("image", "").strip(),
        "replicas": form.get("replicas", ""),
        "port": form.get("port", ""),
        "cpu": form.get("cpu", "").strip(),
        "memory": form.get("memory", "").strip(),
        "expose": form.get("expose") == "on",
        "env": env,
    }


@bp.post("/deployments/new")
def create_deployment() -> Response | tuple[str, int]:
    svc = context.svc()
    groups = [view.group.name for view in svc.groups(context.user())]
    values = _form_values(request.form)
    problems: list[FieldProblem] = []
    replicas = _int_field(request.form, "replicas", problems)
    port = _int_field(request.form, "port", problems)
    try:
        if problems:
            raise InvalidRequest.of(problems)
        body = {
            "name": values["name"],
            "image": values["image"],
            "replicas": replicas,
            "port": port,
            "env": values["env"],
            "resources": {"cpu": values["cpu"], "memory": values["memory"]},
            "expose": values["expose"],
        }
        written = svc.create_deployment(context.user(), values["group"], body)
    except BridgeError as exc:
        errors = {p.field: p.message for p in exc.problems}
        page = render_template(
            "deployment_form.html", form=values, groups=groups, error=exc, errors=errors
        )
        return page, exc.status
    assert written.deployment is not None
    sha = (written.commit.sha or "")[:7]
    flash(f"Deployed {written.deployment.name}: committed {sha}", "success")
    return redirect(url_for(".deployments", group=values["group"]))


@bp.get("/groups")
def groups() -> str:
    svc = context.svc()
    return render_template(
        "groups.html", groups=[views.group(view) for view in svc.groups(context.user())], form={}
    )


@bp.post("/groups")
def create_group() -> Response | tuple[str, int]:
    svc = context.svc()
    form = request.form
    problems: list[FieldProblem] = []
    deployments = _int_field(form, "deployments", problems)
    values = {
        key: form.get(key, "").strip() for key in ("name", "members", "cpu", "memory", "storage")
    }
    members = [m.strip() for m in values["members"].replace("\n", ",").split(",") if m.strip()]
    try:
        if problems:
            raise InvalidRequest.of([FieldProblem(f"quota.{p.field}", p.message) for p in problems])
        body = {
            "name": values["name"],
            "members": members,
            "quota": {
                "cpu": values["cpu"],
                "memory": values["memory"],
                "storage": values["storage"] or "10Gi",
                "deployments": deployments,
            },
        }
        written = svc.create_group(context.user(), body)
    except BridgeError as exc:
        errors = {p.field: p.message for p in exc.problems}
        page = render_template(
            "groups.html",
            groups=[views.group(view) for view in svc.groups(context.user())],
            form=values,
            error=exc,
            errors=errors,
        )
        return page, exc.status
    assert written.group is not None
    flash(f"Created group {written.group.name}", "success")
    return redirect(url_for(".groups"))
