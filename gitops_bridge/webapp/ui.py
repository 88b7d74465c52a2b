"""Server-rendered pages: card actions and the deployment form (the list of Deployments:
``listing_pages``), and Groups.

Every action is a form post (with the CSRF token) that calls the service once and redirects
with a flash naming the commit, or the change request waiting for review. A refused action
renders its page again with the message, keeping the error's status code.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from gitops_bridge.errors import BridgeError, FieldProblem, InvalidRequest
from gitops_bridge.models import Deployment
from gitops_bridge.service import Written
from gitops_bridge.webapp import context, listing_pages, views
from gitops_bridge.webapp.pages import (
    Action,
    Page,
    bp,
    flash_link,
    flash_written,
    int_field,
    my_groups,
    numbers,
    run_action,
)

MAX_TAGS = 20  # per repository in the image picker

# ---- deployments: list and card actions -----------------------------------------------


@bp.get("/")
def index() -> Response:
    return redirect(url_for(".deployments"))


def _on_card(name: str, act: Action, *, link: tuple[str, str] | None = None) -> Page:
    """A card action: back to the page of cards it was on, or that page with the error."""
    where = listing_pages.Where.of(request.form)
    return run_action(
        act,
        failed=lambda exc: listing_pages.render(where, error=exc, failed=name),
        then=where.link(),
        link=link,
    )


@bp.post("/deployments/<name>/scale")
def scale_deployment(name: str) -> Page:
    def act() -> tuple[str, Written]:
        (replicas,) = numbers(request.form, "replicas")
        written = context.svc().scale(context.user(), name, replicas)
        return f"Scaled {name} to {replicas} replicas", written

    return _on_card(name, act)


@bp.post("/deployments/<name>/restart")
def restart_deployment(name: str) -> Page:
    return _on_card(
        name, lambda: (f"Restarted {name}", context.svc().restart(context.user(), name))
    )


@bp.post("/deployments/<name>/retry")
def retry_deployment(name: str) -> Page:
    """Retry a failed release now (Flux: requestedAt + forceAt + resetAt)."""
    where = listing_pages.Where.of(request.form)
    try:
        context.monitor().retry(context.user(), name)
    except BridgeError as exc:
        return listing_pages.render(where, error=exc, failed=name), exc.status
    flash_link(f"Asked Flux to retry {name}", "info")
    return redirect(where.link())


@bp.get("/deployments/<name>/logs")
def deployment_logs(name: str) -> str:
    """The log viewer: the page streams from the API (server-sent events)."""
    svc, monitor = context.svc(), context.monitor()
    deployment = svc.deployment(context.user(), name)
    pods = monitor.pods_of(deployment) if monitor.connected else []
    return render_template(
        "logs.html",
        card=views.deployment(svc, deployment),
        pods=pods,
        connected=monitor.connected,
        containers=["app", "frpc"] if deployment.spec.expose else ["app"],
    )


@bp.get("/deployments/<name>/delete")
def confirm_delete(name: str) -> str:
    """The confirm step without JavaScript (with it, the card opens the same form in a dialog)."""
    svc = context.svc()
    card = views.deployment(svc, svc.deployment(context.user(), name))
    return render_template("delete_confirm.html", card=card)


@bp.post("/deployments/<name>/delete")
def delete_deployment(name: str) -> Page:
    def act() -> tuple[str, Written]:
        return f"Deleted {name}", context.svc().delete_deployment(context.user(), name)

    link = (url_for(".deployment_history", name=name), "History (restore it from there)")
    return _on_card(name, act, link=link)


# ---- the deployment form: new and edit ------------------------------------------------


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


def _form_of(deployment: Deployment) -> dict[str, Any]:
    """The form prefilled with a deployment as it is on main."""
    spec = deployment.spec
    return {
        "group": deployment.group,
        "name": deployment.name,
        "image": spec.image,
        "replicas": str(spec.replicas),
        "port": str(spec.port),
        "cpu": spec.resources.cpu,
        "memory": spec.resources.memory,
        "expose": spec.expose,
        "env": [{"name": var.name, "value": var.value} for var in spec.env],
    }


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


def _deployment_body(values: dict[str, Any], form: MultiDict[str, str]) -> dict[str, Any]:
    """The API body the form stands for (InvalidRequest when a number is not one)."""
    replicas, port = numbers(form, "replicas", "port")
    return {
        "name": values["name"],
        "image": values["image"],
        "replicas": replicas,
        "port": port,
        "env": values["env"],
        "resources": {"cpu": values["cpu"], "memory": values["memory"]},
        "expose": values["expose"],
    }


def _form_page(
    form: dict[str, Any],
    *,
    editing: dict[str, Any] | None = None,
    error: BridgeError | None = None,
) -> str:
    errors = {p.field: p.message for p in error.problems} if error else {}
    return render_template(
        "deployment_form.html",
        form=form,
        groups=[] if editing else my_groups(),
        editing=editing,
        error=error,
        errors=errors,
        images=_image_choices(editing["group"] if editing else form["group"]),
    )


def _image_choices(group: str) -> dict[str, Any] | None:
    """The image picker: the group's images in the registry, newest tag first; a note instead
    when the registry does not answer (the form works without it); None without a registry."""
    svc = context.svc()
    if svc.registry is None:
        return None
    host = svc.registry.host
    picker: dict[str, Any] = {
        "host": host,
        "source": url_for("api.list_group_images", group="GROUP"),
        "options": [],
        "note": "",
        "detail": "",
    }
    if not group:
        return picker
    try:
        found = svc.images(context.user(), group)
    except BridgeError as exc:
        picker["note"] = "The image list is unavailable right now; type the image reference."
        picker["detail"] = exc.message
        return picker
    for repo in found:
        for index, tag in enumerate(repo.tags[:MAX_TAGS]):
            value = svc.registry.reference(repo.name, tag)
            picker["options"].append({"value": value, "label": "newest" if index == 0 else ""})
    if not found:
        prefix = context.settings().registry.prefix(group)
        picker["note"] = f"No images under {host}/{prefix} yet."
    return picker


@bp.get("/deployments/new")
def new_deployment() -> str:
    return _form_page(_form_defaults(my_groups()))


@bp.post("/deployments/new")
def create_deployment() -> Page:
    values = _form_values(request.form)
    try:
        body = _deployment_body(values, request.form)
        written = context.svc().create_deployment(context.user(), values["group"], body)
    except BridgeError as exc:
        return _form_page(values, error=exc), exc.status
    assert written.deployment is not None
    flash_written(f"Deployed {written.deployment.name}", written)
    return redirect(url_for(".deployments", group=values["group"]))


@bp.get("/deployments/<name>/edit")
def edit_deployment(name: str) -> str:
    svc = context.svc()
    current = svc.deployment(context.user(), name)
    return _form_page(_form_of(current), editing=views.deployment(svc, current))


@bp.post("/deployments/<name>/edit")
def update_deployment(name: str) -> Page:
    svc = context.svc()
    current = svc.deployment(context.user(), name)
    values = _form_values(request.form) | {"group": current.group, "name": name}
    try:
        body = _deployment_body(values, request.form)
        del body["name"]  # fixed: the form shows it, the service refuses to change it
        written = svc.update_deployment(context.user(), name, body)
    except BridgeError as exc:
        return _form_page(values, editing=views.deployment(svc, current), error=exc), exc.status
    flash_written(f"Updated {name}", written)
    return redirect(url_for(".deployments", group=current.group))


# ---- groups ---------------------------------------------------------------------------


@bp.get("/groups")
def groups() -> str:
    svc = context.svc()
    found = svc.groups(context.user(), storage=True)
    listed = views.groups(found, monitor=context.monitor())
    return render_template("groups.html", groups=listed, form={})


def _group_body(form: MultiDict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
    """The group form: the typed values (to show again) and the API body."""
    problems: list[FieldProblem] = []
    deployments = int_field(form, "deployments", problems)
    keys = ("name", "members", "admins", "cpu", "memory", "storage", "review")
    values = {key: form.get(key, "").strip() for key in keys}
    if problems:
        raise InvalidRequest.of([FieldProblem(f"quota.{p.field}", p.message) for p in problems])

    def names(text: str) -> list[str]:
        return [m.strip() for m in text.replace("\n", ",").split(",") if m.strip()]

    body: dict[str, Any] = {
        "members": names(values["members"]),
        "admins": names(values["admins"]),
        "quota": {
            "cpu": values["cpu"],
            "memory": values["memory"],
            "storage": values["storage"] or "10Gi",
            "deployments": deployments,
        },
        "review": values["review"] or None,
    }
    return values, body


def _groups_page(
    *, form: dict[str, str], error: BridgeError | None = None, failed: str | None = None
) -> tuple[str, int]:
    svc = context.svc()
    page = render_template(
        "groups.html",
        groups=views.groups(svc.groups(context.user(), storage=True), monitor=context.monitor()),
        form=form,
        error=error,
        errors={p.field: p.message for p in error.problems} if error else {},
        failed=failed,
    )
    return page, error.status if error else 200


@bp.post("/groups")
def create_group() -> Page:
    values: dict[str, str] = {key: request.form.get(key, "").strip() for key in request.form}
    try:
        values, body = _group_body(request.form)
        written = context.svc().create_group(context.user(), body | {"name": values["name"]})
    except BridgeError as exc:
        return _groups_page(form=values, error=exc)
    assert written.group is not None
    flash(f"Created group {written.group.name}", "success")
    return redirect(url_for(".groups"))


@bp.post("/groups/<name>/edit")
def update_group(name: str) -> Page:
    try:
        _, body = _group_body(request.form)
        written = context.svc().update_group(context.user(), name, body)
    except BridgeError as exc:
        return _groups_page(form={}, error=exc, failed=name)
    flash_written(f"Updated group {name}", written)
    return redirect(url_for(".groups"))
