"""Server-rendered pages: card actions and the deployment form (the list of Deployments:
``listing_pages``), and Groups.

Every action is a form post (with the CSRF token) that calls the service once and redirects
with a flash naming the commit, or the change request waiting for review. A refused action
renders its page again with the message, keeping the error's status code.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from gitops_bridge import models, podlogs, status
from gitops_bridge.errors import BridgeError, FieldProblem, InvalidRequest
from gitops_bridge.models import Deployment, EnvVar, argv_line
from gitops_bridge.service import Written
from gitops_bridge.webapp import context, fielderrors, listing_pages, storage_pages, views
from gitops_bridge.webapp.pages import (
    Action,
    Page,
    ago,
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


@bp.app_template_filter("said")
def said(error: BridgeError) -> str:
    """A refusal in words on a card (see fielderrors.said)."""
    return fielderrors.said(error)


@bp.app_template_filter("sentence")
def sentence(text: str) -> str:
    """A message next to its field, as a sentence."""
    return fielderrors.sentence(text)


@bp.app_template_filter("spoken")
def spoken(field: str) -> str:
    """An API field as people name it (``quota.cpu`` -> ``Quota CPU``)."""
    words = fielderrors.spoken(field)
    return words[:1].upper() + words[1:]


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
        all_pods=podlogs.ALL,
        max_pods=podlogs.MAX_PODS,
    )


@bp.get("/deployments/<name>/restart")
def confirm_restart(name: str) -> str:
    """The confirm step without JavaScript (with it, the card opens the same form in a dialog)."""
    svc = context.svc()
    card = views.deployment(svc, svc.deployment(context.user(), name))
    return render_template("restart_confirm.html", card=card)


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


ENV_KINDS = ("plain", "secret", "ref")  # a row's kind: EnvVar.kind


@dataclass(frozen=True)
class EnvRow:
    """One row of the form's Environment: its kind picks which inputs count. ``secret`` is
    the value typed for a secret: it goes into the API body, never into a page."""

    name: str
    kind: str = "plain"
    value: str = ""
    secret: str = field(default="", repr=False)
    ref_name: str = ""
    ref_key: str = ""

    @classmethod
    def of(cls, var: EnvVar) -> EnvRow:
        if var.secret_ref is not None:
            return cls(var.name, "ref", ref_name=var.secret_ref.name, ref_key=var.secret_ref.key)
        return cls(var.name, var.kind, value=var.value or "")

    @property
    def empty(self) -> bool:
        """Nothing typed into the inputs of its kind (dropped, like an unused row)."""
        typed = {
            "plain": self.value,
            "secret": self.secret,
            "ref": self.ref_name or self.ref_key,
        }
        return not (self.name or typed[self.kind])

    def body(self) -> dict[str, Any]:
        """The API's env entry; a secret left empty keeps the value stored."""
        if self.kind == "secret":
            entry: dict[str, Any] = {"name": self.name, "secret": True}
            if self.secret:
                entry["value"] = self.secret
            return entry
        if self.kind == "ref":
            return {"name": self.name, "secretRef": {"name": self.ref_name, "key": self.ref_key}}
        return {"name": self.name, "value": self.value}

    def shown(self) -> dict[str, Any]:
        """What the form shows again: everything but a secret value (``retype``: one was
        typed and must be typed again)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "value": self.value if self.kind == "plain" else "",
            "ref_name": self.ref_name if self.kind == "ref" else "",
            "ref_key": self.ref_key if self.kind == "ref" else "",
            "retype": self.kind == "secret" and bool(self.secret),
        }


def _env_rows(form: MultiDict[str, str]) -> list[EnvRow]:
    """The rows as sent: each row sends every input (hidden or not), so the lists align;
    a form without kinds (older pages) sends plain values."""
    names = form.getlist("env_name")

    def column(key: str) -> list[str]:
        values = form.getlist(key)
        return values + [""] * (len(names) - len(values))

    rows = [
        EnvRow(
            name=name.strip(),
            kind=kind if kind in ENV_KINDS else "plain",
            # browsers send textarea line breaks as CRLF (HTML form encoding); users typed LF
            value=value.replace("\r\n", "\n"),
            secret=secret,
            ref_name=ref_name.strip(),
            ref_key=ref_key.strip(),
        )
        for name, kind, value, secret, ref_name, ref_key in zip(
            names,
            column("env_kind"),
            column("env_value"),
            column("env_secret"),
            column("env_ref_name"),
            column("env_ref_key"),
            strict=False,
        )
    ]
    return [row for row in rows if not row.empty]


@dataclass(frozen=True)
class MountRow:
    """One row of the form's Volumes: the volume as ``group/name`` (the select offers the
    volumes of every group of the user), where it is mounted, and whether read-only."""

    volume: str
    path: str = ""
    read_only: bool = False

    @property
    def group(self) -> str:
        return self.volume.rpartition("/")[0]

    @property
    def name(self) -> str:
        return self.volume.rpartition("/")[2]

    @property
    def empty(self) -> bool:
        return not (self.volume or self.path)

    def body(self) -> dict[str, Any]:
        return {"volume": self.name, "path": self.path, "readOnly": self.read_only}

    def shown(self) -> dict[str, Any]:
        return {"volume": self.volume, "path": self.path, "read_only": self.read_only}


def _mount_rows(form: MultiDict[str, str]) -> list[MountRow]:
    """The rows as sent: every row sends its three fields (read-only is a select, not a
    checkbox, which would send nothing unchecked), so the lists align."""
    volumes = form.getlist("mount_volume")
    paths = form.getlist("mount_path") + [""] * len(volumes)
    modes = form.getlist("mount_mode") + [""] * len(volumes)
    rows = [
        MountRow(volume=volume.strip(), path=path.strip(), read_only=mode == "ro")
        for volume, path, mode in zip(volumes, paths, modes, strict=False)
    ]
    return [row for row in rows if not row.empty]


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
        "volumes": [],
        "health_path": "",
        "command": "",
        "args": "",
        "autoscale": False,
        "autoscale_min": "1",
        "autoscale_max": "3",
        "autoscale_cpu": "70",
    }


def _form_of(deployment: Deployment) -> dict[str, Any]:
    """The form prefilled with a deployment as it is on main (secret values: never known)."""
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
        "env": [EnvRow.of(var).shown() for var in spec.env],
        "volumes": [
            MountRow(f"{deployment.group}/{m.volume}", m.path, m.read_only).shown()
            for m in spec.volumes
        ],
        "health_path": spec.health.path if spec.health is not None else "",
        "command": argv_line(spec.command),
        "args": argv_line(spec.args),
        "autoscale": spec.autoscaling is not None,
        "autoscale_min": str(spec.autoscaling.min if spec.autoscaling else 1),
        "autoscale_max": str(spec.autoscaling.max if spec.autoscaling else 3),
        "autoscale_cpu": str(spec.autoscaling.cpu if spec.autoscaling else 70),
    }


def _form_values(form: MultiDict[str, str]) -> dict[str, Any]:
    """The form as typed, to show again: without the secret values typed."""
    return {
        "group": form.get("group", ""),
        "name": form.get("name", "").strip(),
        "image": form.get("image", "").strip(),
        "replicas": form.get("replicas", ""),
        "port": form.get("port", ""),
        "cpu": form.get("cpu", "").strip(),
        "memory": form.get("memory", "").strip(),
        "expose": form.get("expose") == "on",
        "env": [row.shown() for row in _env_rows(form)],
        "volumes": [row.shown() for row in _mount_rows(form)],
        "health_path": form.get("health_path", "").strip(),
        "command": form.get("command", ""),
        "args": form.get("args", ""),
        "autoscale": form.get("autoscale") == "on",
        "autoscale_min": form.get("autoscale_min", ""),
        "autoscale_max": form.get("autoscale_max", ""),
        "autoscale_cpu": form.get("autoscale_cpu", ""),
    }


def _argv_field(values: dict[str, Any], key: str, problems: list[FieldProblem]) -> list[str]:
    """A command or args line split like a shell splits words (quotes group, a backslash
    escapes; nothing is expanded): what people type in a terminal, a Dockerfile's shell form or
    a Procfile, and ``argv_line`` shows a stored list back in the same form, exactly."""
    try:
        return shlex.split(values[key])
    except ValueError as exc:
        problems.append(
            FieldProblem(
                key,
                f"cannot be split into words like a shell line ({exc}): close the quote, or "
                "escape the character with \\",
            )
        )
        return []


def _number(form: MultiDict[str, str], key: str, name: str, problems: list[FieldProblem]) -> Any:
    """A whole number typed into ``key``, its problem reported as the API's field ``name``."""
    text = form.get(key, "").strip()
    try:
        return int(text)
    except ValueError:
        problems.append(FieldProblem(name, f"must be a whole number, got {text!r}"))
        return None


def _deployment_body(values: dict[str, Any], form: MultiDict[str, str]) -> dict[str, Any]:
    """The API body the form stands for (InvalidRequest when a number is not one, or a
    volume is of another group); the env comes from the form itself, with the secret values
    ``values`` leaves out."""
    problems: list[FieldProblem] = []
    replicas = int_field(form, "replicas", problems)
    port = int_field(form, "port", problems)
    command = _argv_field(values, "command", problems)
    args = _argv_field(values, "args", problems)
    scaling = None
    if values["autoscale"]:
        scaling = {
            "min": _number(form, "autoscale_min", "autoscaling.min", problems),
            "max": _number(form, "autoscale_max", "autoscaling.max", problems),
            "cpu": _number(form, "autoscale_cpu", "autoscaling.cpu", problems),
        }
        if replicas and isinstance(scaling["min"], int):
            replicas = scaling["min"]  # running: the autoscaler sets the number of pods
    mounts = _mount_rows(form)
    for i, row in enumerate(mounts):
        if row.group and row.group != values["group"]:
            problems.append(
                FieldProblem(
                    f"volumes[{i}].volume",
                    f"{row.volume} is a volume of group {row.group}; this deployment is in "
                    f"{values['group']}",
                )
            )
    if problems:
        raise InvalidRequest.of(problems)
    return {
        "name": values["name"],
        "image": values["image"],
        "replicas": replicas,
        "port": port,
        "env": [row.body() for row in _env_rows(form)],
        "resources": {"cpu": values["cpu"], "memory": values["memory"]},
        "expose": values["expose"],
        "volumes": [row.body() for row in mounts],
        "health": {"path": values["health_path"]} if values["health_path"] else None,
        "command": command,
        "args": args,
        "autoscaling": scaling,
    }


@bp.app_template_filter("argv")
def _argv(value: list[str]) -> str:
    """A command or args as the form takes it: one shell-like line."""
    return argv_line(value)


@bp.app_template_filter("stamp")
def _stamp(value: str) -> str:
    """An RFC 3339 time for people: ``2026-11-27 21:00 UTC`` (as given when it is not one)."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.utcoffset() is None:
        return value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _form_page(
    form: dict[str, Any],
    *,
    editing: dict[str, Any] | None = None,
    error: BridgeError | None = None,
) -> str:
    # secrets stored for the deployment edited: a row of one may be left empty to keep it
    stored: dict[str, Any] = {}
    if editing:
        set_by = editing.get("secrets") or {}
        stored = {
            var["name"]: set_by.get(var["name"]) for var in editing["env"] if var.get("secret")
        }
    groups = [] if editing else my_groups()
    env = form.get("env") or [{"kind": "plain"}]  # the rows shown: one empty row at least
    fe = fielderrors.deployment_form(
        error, env=env, mounts=len(form.get("volumes") or []) or 1, editing=bool(editing)
    )
    return render_template(
        "deployment_form.html",
        form=form,
        groups=groups,
        editing=editing,
        stored=stored,
        error=error,
        fe=fe,
        images=_image_choices(editing["group"] if editing else form["group"]),
        volumes=storage_pages.volume_choices([editing["group"]] if editing else groups),
    )


RECENT_IMAGES = 5


def _age(created: str | None) -> str:
    """How long ago an image was built ("" when its config says nothing)."""
    moment = status.instant(created)
    return ago(int(moment.timestamp())) if moment is not None else ""


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
        "recent": [],
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
    # shown without focusing the field: the newest image of each repository, newest first
    newest = sorted(found, key=lambda repo: repo.newest.created or "", reverse=True)
    picker["recent"] = [
        {
            "reference": repo.newest.reference,
            "created": _age(repo.newest.created),
            "size": repo.newest.size,
        }
        for repo in newest[:RECENT_IMAGES]
    ]
    if not found:
        prefix = context.settings().registry.prefix(group)
        picker["note"] = f"No images under {host}/{prefix} yet."
    return picker


@bp.get("/deployments/new")
def new_deployment() -> str:
    groups = my_groups()
    if not groups:  # nowhere to deploy to: how to get access, not a form that cannot work
        return render_template("no_access.html")
    return _form_page(_form_defaults(groups))


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
    return render_template("groups.html", groups=listed, form={}, **_group_defaults())


def _group_defaults() -> dict[str, Any]:
    """What the group forms offer: the configured quota of a new group, and the review mode
    of a group that has none of its own."""
    settings = context.settings()
    return {"quota_defaults": settings.default_quota, "review_default": settings.review.mode}


GROUP_FIELDS = ("members", "admins", "cpu", "memory", "storage", "deployments", "review")


def _group_body(
    form: MultiDict[str, str], *, name: str | None = None
) -> tuple[dict[str, str], dict[str, Any]]:
    """The group form: the typed values (to show again) and the API body. A count that is
    not a number is said together with what the rest of the form breaks (checked with
    the count left out), so every field's problem shows at once; ``name``: the group
    edited (its form has no name)."""
    problems: list[FieldProblem] = []
    deployments = int_field(form, "deployments", problems)
    values = {key: form.get(key, "").strip() for key in ("name", *GROUP_FIELDS)}
    if problems:
        problems = [FieldProblem(f"quota.{p.field}", p.message) for p in problems]
        _, rest = _group_body(MultiDict({**form.to_dict(), "deployments": "0"}), name=name)
        try:
            models.parse_group(rest | {"name": name or values["name"]})
        except InvalidRequest as exc:
            problems += [p for p in exc.problems if p.field != "quota.deployments"]
        raise InvalidRequest.of(problems)

    def names(text: str) -> list[str]:
        return [m.strip() for m in text.replace("\n", ",").split(",") if m.strip()]

    body: dict[str, Any] = {
        "members": names(values["members"]),
        "admins": names(values["admins"]),
        "quota": {
            "cpu": values["cpu"],
            "memory": values["memory"],
            "storage": values["storage"] or context.settings().default_quota.storage,
            "deployments": deployments,
        },
        "review": values["review"] or None,
    }
    return values, body


def _groups_page(
    *, form: dict[str, str], error: BridgeError | None = None, failed: str | None = None
) -> tuple[str, int]:
    """The page again with the refusal: at the create form's fields, or at those of the
    group's edit form (``failed``), which shows what was typed."""
    svc = context.svc()
    page = render_template(
        "groups.html",
        groups=views.groups(svc.groups(context.user(), storage=True), monitor=context.monitor()),
        form={} if failed else form,
        edit_form=form if failed else {},
        error=error,
        create_errors=fielderrors.group_form(error, prefix="g-"),
        edit_errors=fielderrors.group_form(error, prefix=f"e-{failed}-", editing=True),
        failed=failed,
        **_group_defaults(),
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
    typed = {key: request.form.get(key, "").strip() for key in GROUP_FIELDS}
    try:
        _, body = _group_body(request.form, name=name)
        written = context.svc().update_group(context.user(), name, body)
    except BridgeError as exc:
        return _groups_page(form=typed, error=exc, failed=name)
    flash_written(f"Updated group {name}", written)
    return redirect(url_for(".groups"))
