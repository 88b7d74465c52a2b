"""Server-rendered pages: Deployments (cards, card actions, the deployment form), History,
Changes (review mode) and Groups.

Every action is a form post (with the CSRF token) that calls the service once and redirects
with a flash naming the commit, or the change request waiting for review. A refused action
renders its page again with the message, keeping the error's status code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from gitops_bridge import history
from gitops_bridge.errors import BridgeError, FieldProblem, InvalidRequest
from gitops_bridge.gitrepo import CommitResult
from gitops_bridge.models import Deployment
from gitops_bridge.service import Written
from gitops_bridge.webapp import context, views

bp = Blueprint("ui", __name__)

Page = Response | tuple[str, int]
Action = Callable[[], tuple[str, Written]]  # -> (what was done, for the flash; the write)


@bp.app_context_processor
def _globals() -> dict[str, Any]:
    return {"domain": context.settings().domain, "open_change_count": _open_change_count}


def _open_change_count() -> int:
    """The nav badge: open change requests the user may decide on (0 when unknown)."""
    user = g.get("user")
    reviews = context.svc().review
    if user is None or reviews is None:
        return 0
    try:
        return len(reviews.open_changes(user))
    except BridgeError:  # the badge must not break the page that reports the error
        return 0


# ---- template filters ---------------------------------------------------------------


@bp.app_template_filter("utc")
def _utc(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.app_template_filter("isotime")
def _isotime(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@bp.app_template_filter("ago")
def _ago(timestamp: int) -> str:
    seconds = int(datetime.now(UTC).timestamp()) - timestamp
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"


@bp.app_template_filter("diff_lines")
def _diff_lines(diff: str) -> list[tuple[str, str]]:
    """A unified diff as (kind, line): kind is meta, hunk, add, del or context."""
    lines: list[tuple[str, str]] = []
    in_hunk = False
    for line in diff.splitlines():
        if line.startswith("@@"):
            in_hunk, kind = True, "hunk"
        elif not in_hunk or line.startswith("diff --git"):
            in_hunk, kind = False, "meta"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "context"
        lines.append((kind, line))
    return lines


# ---- flashes and shared steps ---------------------------------------------------------


def _flash(text: str, category: str, link: tuple[str, str] | None = None) -> None:
    """A flash, optionally ending in a link (Markup survives the session: Flask tags it)."""
    if link is None:
        flash(text, category)
    else:
        flash(Markup('{} · <a href="{}">{}</a>').format(text, *link), category)


def _flash_commit(text: str, commit: CommitResult, *, link: tuple[str, str] | None = None) -> None:
    if commit.changed:
        _flash(f"{text}: committed {(commit.sha or '')[:7]}", "success", link)
    else:
        _flash(f"{text}: nothing to change, main has it already", "info")


def _flash_written(text: str, written: Written, *, link: tuple[str, str] | None = None) -> None:
    """`<text>: committed <sha7>`, or in review mode `<text>: waiting for review` + link."""
    change = written.change
    if change is not None and change.state == "open":
        href = url_for(".change", change_id=change.id)
        _flash(f"{text}: waiting for review", "info", (href, "View the change"))
    else:
        _flash_commit(text, written.commit, link=link)


def _act(
    act: Action,
    *,
    failed: Callable[[BridgeError], str],
    then: str,
    link: tuple[str, str] | None = None,
) -> Page:
    """Run one write; flash and redirect to ``then``, or render ``failed(error)``."""
    try:
        text, written = act()
    except BridgeError as exc:
        return failed(exc), exc.status
    _flash_written(text, written, link=link)
    return redirect(then)


def _int_field(form: MultiDict[str, str], name: str, problems: list[FieldProblem]) -> Any:
    text = form.get(name, "").strip()
    try:
        return int(text)
    except ValueError:
        problems.append(FieldProblem(name, f"must be a whole number, got {text!r}"))
        return None


def _numbers(form: MultiDict[str, str], *names: str) -> list[Any]:
    """Whole-number fields, or InvalidRequest naming each one that is not."""
    problems: list[FieldProblem] = []
    values = [_int_field(form, name, problems) for name in names]
    if problems:
        raise InvalidRequest.of(problems)
    return values


def _groups() -> list[str]:
    return [view.group.name for view in context.svc().groups(context.user())]


# ---- deployments: list and card actions -----------------------------------------------


@bp.get("/")
def index() -> Response:
    return redirect(url_for(".deployments"))


@bp.get("/deployments")
def deployments() -> str:
    return _deployments_page(request.args.get("group") or None)


def _deployments_page(
    group: str | None, *, error: BridgeError | None = None, failed: str | None = None
) -> str:
    svc = context.svc()
    user = context.user()
    monitor = context.monitor()
    cards = views.deployments(svc, user, svc.deployments(user, group), monitor=monitor)
    cards += views.pending_creates(svc, user, group)
    cards += views.deleting(svc, user, group, monitor=monitor)
    return render_template(
        "deployments.html",
        cards=cards,
        connected=monitor.connected,
        groups=_groups(),
        selected=group,
        error=error,
        failed=failed,
    )


def _on_card(name: str, act: Action, *, link: tuple[str, str] | None = None) -> Page:
    """A card action: back to the list (keeping its group filter), or the list with the error."""
    group = request.form.get("group") or None
    return _act(
        act,
        failed=lambda exc: _deployments_page(group, error=exc, failed=name),
        then=url_for(".deployments", group=group),
        link=link,
    )


@bp.post("/deployments/<name>/scale")
def scale_deployment(name: str) -> Page:
    def act() -> tuple[str, Written]:
        (replicas,) = _numbers(request.form, "replicas")
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
    group = request.form.get("group") or None
    try:
        context.monitor().retry(context.user(), name)
    except BridgeError as exc:
        return _deployments_page(group, error=exc, failed=name), exc.status
    _flash(f"Asked Flux to retry {name}", "info")
    return redirect(url_for(".deployments", group=group))


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
    replicas, port = _numbers(form, "replicas", "port")
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
        groups=[] if editing else _groups(),
        editing=editing,
        error=error,
        errors=errors,
    )


@bp.get("/deployments/new")
def new_deployment() -> str:
    return _form_page(_form_defaults(_groups()))


@bp.post("/deployments/new")
def create_deployment() -> Page:
    values = _form_values(request.form)
    try:
        body = _deployment_body(values, request.form)
        written = context.svc().create_deployment(context.user(), values["group"], body)
    except BridgeError as exc:
        return _form_page(values, error=exc), exc.status
    assert written.deployment is not None
    _flash_written(f"Deployed {written.deployment.name}", written)
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
    _flash_written(f"Updated {name}", written)
    return redirect(url_for(".deployments"))


# ---- history: revert a change, restore a version --------------------------------------


@bp.get("/deployments/<name>/history")
def deployment_history(name: str) -> str:
    return _history_page(name)


def _history_page(name: str, *, error: BridgeError | None = None) -> str:
    versions = history.history(context.svc(), context.user(), name, diffs=True)
    return render_template("history.html", name=name, versions=versions, error=error)


def _on_version(name: str, act: Action) -> Page:
    return _act(
        act,
        failed=lambda exc: _history_page(name, error=exc),
        then=url_for(".deployments"),
    )


@bp.post("/deployments/<name>/revert")
def revert_deployment(name: str) -> Page:
    commit = request.form.get("commit", "")

    def act() -> tuple[str, Written]:
        written = history.revert(context.svc(), context.user(), name, commit)
        return f"Reverted {commit[:7]} of {name}", written

    return _on_version(name, act)


@bp.post("/deployments/<name>/restore")
def restore_deployment(name: str) -> Page:
    commit = request.form.get("commit", "")

    def act() -> tuple[str, Written]:
        written = history.restore(context.svc(), context.user(), name, commit)
        return f"Restored {name} to its version of {commit[:7]}", written

    return _on_version(name, act)


# ---- change requests (review mode) ----------------------------------------------------


@bp.get("/changes")
def changes() -> str:
    return _changes_page()


def _changes_page(*, error: BridgeError | None = None, failed: str | None = None) -> str:
    reviews = context.svc().review
    found = reviews.open_changes(context.user()) if reviews is not None else []
    return render_template(
        "changes.html",
        changes=[(change, reviews.diff(change)) for change in found],
        error=error,
        failed=failed,
    )


@bp.get("/changes/<path:change_id>")
def change(change_id: str) -> str:
    return _change_page(change_id)


def _change_page(change_id: str, *, error: BridgeError | None = None) -> str:
    reviews = context.svc().review
    found = reviews.get(context.user(), change_id)
    return render_template("change.html", change=found, diff=reviews.diff(found), error=error)


def _decision_failed(change_id: str, exc: BridgeError) -> Page:
    """The page the decision was made on, with the message next to the change."""
    if request.form.get("from") == "detail":
        return _change_page(change_id, error=exc), exc.status
    return _changes_page(error=exc, failed=change_id), exc.status


@bp.post("/changes/<path:change_id>/approve")
def approve_change(change_id: str) -> Page:
    try:
        written = context.svc().review.approve(context.user(), change_id)
    except BridgeError as exc:
        return _decision_failed(change_id, exc)
    _flash_commit(f"Approved “{written.change.subject}” by {written.change.author}", written.commit)
    return redirect(url_for(".changes"))


@bp.post("/changes/<path:change_id>/close")
def close_change(change_id: str) -> Page:
    try:
        closed = context.svc().review.close(context.user(), change_id)
    except BridgeError as exc:
        return _decision_failed(change_id, exc)
    flash(f"Closed “{closed.subject}”: nothing committed", "success")
    return redirect(url_for(".changes"))


# ---- groups ---------------------------------------------------------------------------


@bp.get("/groups")
def groups() -> str:
    svc = context.svc()
    return render_template(
        "groups.html", groups=[views.group(view) for view in svc.groups(context.user())], form={}
    )


@bp.post("/groups")
def create_group() -> Page:
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
