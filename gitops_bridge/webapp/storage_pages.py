"""The Storage tab: a group's storage quota against its volumes and registry images.

Volumes are created, grown and deleted (two steps, the name typed; refused while a deployment
mounts one); image tags are deleted one by one (never one in use) or by a retention rule that
keeps the newest N of each repository, previewed first (a GET: nothing is written) and then
deleted as previewed. Every write is a form post with the CSRF token that redirects with a
flash; a refused one renders the page again with the message next to the form it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import flash, g, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from gitops_bridge import models, registry, storage, units
from gitops_bridge.errors import BridgeError, Conflict
from gitops_bridge.webapp import context
from gitops_bridge.webapp.pages import Page, bp, flash_commit, my_groups, numbers

BAR = 1000  # the usage bar's width in SVG units


@bp.app_template_filter("bytes")
def human(size: int | None) -> str:
    """Bytes for people, by the one rule of every page (``units``): 1.5Gi, 300Mi, 512 B."""
    if size is None:
        return "not known"
    return units.memory(size)


@bp.app_template_global()
def volume_modes(group: str) -> dict[str, str]:
    """Access mode by volume name of a group the page shows (a card's mounts); read once a
    request."""
    known: dict[str, dict[str, str]] = g.setdefault("volume_modes", {})
    if group not in known:
        volumes = context.svc().state().volumes_in(group)
        known[group] = {v.name: v.spec.access_mode for v in volumes}
    return known[group]


def volume_choices(groups: list[str]) -> list[dict[str, str]]:
    """The volumes the deployment form may mount, of each of ``groups``: ``group/name``."""
    state = context.svc().state()
    return [
        {
            "value": f"{group}/{v.name}",
            "group": group,
            "name": v.name,
            "label": f"{group}/{v.name} ({v.spec.size}, {v.spec.access_mode}"
            + (", being deleted)" if v.deleting else ")"),
        }
        for group in groups
        for v in state.volumes_in(group)
    ]


# ---- the page -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Failed:
    """A refused form: which one (create, resize, delete, tag, retention), what it was
    about (a volume, ``repository:tag``), the error and what was typed."""

    form: str
    error: BridgeError
    key: str = ""
    typed: dict[str, str] = field(default_factory=dict)

    @property
    def errors(self) -> dict[str, str]:
        return {p.field: p.message for p in self.error.problems}


@bp.get("/storage")
def storage_page() -> Page:
    groups = my_groups()
    group = request.args.get("group") or (groups[0] if len(groups) == 1 else "")
    if not group:
        return render_template("storage.html", group=None, groups=groups), 200
    keep = request.args.get("keep")
    if keep is None or context.svc().registry is None:
        return _page(group)
    try:
        (count,) = numbers(request.args, "keep")
        preview = _retention(group, count, dry_run=True)
    except BridgeError as exc:
        return _page(group, failed=Failed("retention", exc, typed={"keep": keep}))
    return _page(group, preview=preview)


def _page(
    group: str, *, failed: Failed | None = None, preview: storage.Retention | None = None
) -> Page:
    """The group's page (NotFound for a non-member, like every group page); with the
    error's status when a form was refused."""
    svc, user, monitor = context.svc(), context.user(), context.monitor()
    summary = storage.summary(svc, user, group)
    record = svc.group(user, group)
    volumes = [
        _volume_row(v, monitor.volume_status(v.volume)) for v in storage.volumes(svc, user, group)
    ]
    images, note = _images(group)
    settings = context.settings().storage
    over_images = svc.registry is not None and settings.refuse_images_over_quota
    page = render_template(
        "storage.html",
        group=group,
        groups=my_groups(),
        summary=summary,
        bar=_bar(summary),
        volume_limit=record.quota.deployments,
        volumes=volumes,
        images=images,
        images_note=note,
        registry=svc.registry is not None,
        over_images=over_images,
        classes=settings.classes,
        sizes=(settings.min_size, settings.max_size),
        modes=[
            m for m in models.ACCESS_MODES if any(m in c.access_modes for c in settings.classes)
        ],
        preview=_preview(preview) if preview is not None else None,
        failed=failed,
        errors=failed.errors if failed else {},
    )
    return page, failed.error.status if failed else 200


def _volume_row(view: storage.VolumeView, observed: dict[str, Any] | None) -> dict[str, Any]:
    found = view.volume
    storage_class = context.settings().storage.storage_class(found.spec.storage_class)
    if found.deleting:
        status = "released — delete again once Flux applied it"
    elif observed is None:
        status = "not read"
    else:
        capacity = observed.get("capacity")
        status = observed["phase"] + (f", {capacity}" if capacity else "")
    return {
        "name": found.name,
        "size": found.spec.size,
        "storage_class": found.spec.storage_class,
        "access_mode": found.spec.access_mode,
        "expandable": storage_class is not None and storage_class.expandable,
        "owner": found.owner,
        "deleting": bool(found.deleting),
        "status": status,
        "mounted_by": view.mounted_by,
    }


def _images(group: str) -> tuple[list[dict[str, Any]] | None, str]:
    """The group's tags for the list, or None and why there is none."""
    svc = context.svc()
    if svc.registry is None:
        return None, "No registry is configured: there are no images to list or count."
    try:
        tags, _ = storage.images(svc, context.user(), group)
    except BridgeError as exc:
        return None, f"The image list is unavailable right now: {exc.message}"
    images: dict[tuple[str, str], list[str]] = {}  # (repository, digest) -> its tags
    for view in tags:
        images.setdefault((view.tag.repository, view.tag.digest), []).append(view.tag.tag)
    rows = []
    for view in tags:
        info = view.tag
        # deleting a tag deletes its manifest: the tags of the same digest go with it
        same = [t for t in images[(info.repository, info.digest)] if t != info.tag]
        rows.append(
            {
                "repository": info.repository,
                "tag": info.tag,
                "key": f"{info.repository}:{info.tag}",
                "digest": info.digest,
                "size": info.size,
                "created": info.created,
                "used_by": view.used_by,
                "same": same,
            }
        )
    return rows, ""


def _bar(summary: storage.Summary) -> dict[str, int]:
    """The usage bar's parts in SVG units: volumes, images, free, and the part over quota."""
    images = summary.images or 0
    scale = max(summary.quota, summary.volumes + images, 1)

    def width(size: int) -> int:
        return round(size * BAR / scale)

    volumes = width(summary.volumes)
    used = min(BAR, width(summary.volumes + images))
    quota = width(summary.quota)
    return {
        "volumes": volumes,
        "images": used - volumes,
        "free": max(0, quota - used),
        "quota": quota,
        "over": max(0, used - quota),
        "width": BAR,
    }


def _preview(result: storage.Retention) -> dict[str, Any]:
    return {
        "keep": result.keep,
        "tags": [
            {"repository": t.repository, "tag": t.tag, "size": t.size, "created": t.created}
            for t in result.delete
        ],
        "going": [f"{t.repository}:{t.tag}" for t in result.delete],
        "reclaim": result.reclaim,
    }


def _retention(group: str, keep: int, *, dry_run: bool) -> storage.Retention:
    body = {"keep": keep, "dry_run": dry_run}
    return storage.retention(context.svc(), context.user(), group, body)


def _back(group: str) -> Page:
    return redirect(url_for(".storage_page", group=group))


# ---- volumes ------------------------------------------------------------------------------


VOLUME_FIELDS = ("name", "size", "storageClass", "accessMode")


def _typed(form: MultiDict[str, str], *keys: str) -> dict[str, str]:
    return {key: form.get(key, "").strip() for key in keys}


@bp.post("/storage/<group>/volumes")
def storage_create_volume(group: str) -> Page:
    typed = _typed(request.form, *VOLUME_FIELDS)
    body = {key: value for key, value in typed.items() if value}  # empty: the default
    try:
        written = storage.create_volume(context.svc(), context.user(), group, body)
    except BridgeError as exc:
        return _page(group, failed=Failed("create", exc, typed=typed))
    created = written.volume
    what = f"{created.name} ({created.spec.size}, {created.spec.access_mode})" if created else ""
    flash_commit(f"Created volume {what}", written.commit)
    return _back(group)


@bp.post("/storage/<group>/volumes/<name>/resize")
def storage_resize_volume(group: str, name: str) -> Page:
    typed = _typed(request.form, "size")
    try:
        written = storage.resize_volume(context.svc(), context.user(), group, name, typed)
    except BridgeError as exc:
        return _page(group, failed=Failed("resize", exc, key=name, typed=typed))
    flash_commit(f"Volume {name} is {typed['size']}", written.commit)
    return _back(group)


@bp.post("/storage/<group>/volumes/<name>/delete")
def storage_delete_volume(group: str, name: str) -> Page:
    """The first post releases the claim, the next (once Flux applied that) deletes it."""
    typed = _typed(request.form, "confirm")
    applied = context.monitor().group_applied(models.NAMESPACE_PREFIX + group)
    try:
        written = storage.delete_volume(
            context.svc(), context.user(), group, name, typed, applied=applied
        )
    except BridgeError as exc:
        return _page(group, failed=Failed("delete", exc, key=name, typed=typed))
    sha = (written.commit.sha or "")[:7]
    if written.volume is not None:
        flash(
            f"Volume {name} released: committed {sha} — delete again once Flux applied it "
            "to remove the claim and its data",
            "info",
        )
    else:
        flash(
            f"Deleted volume {name}: committed {sha}; Flux deletes the claim and its data",
            "success",
        )
    return _back(group)


# ---- images -------------------------------------------------------------------------------


@bp.post("/storage/<group>/images/<path:repository>/tags/<tag>/delete")
def storage_delete_tag(group: str, repository: str, tag: str) -> Page:
    svc, user = context.svc(), context.user()
    key = f"{repository}:{tag}"
    try:
        reclaim = _reclaim(group, repository, tag)
        deleted = storage.delete_tag(svc, user, group, repository, tag)
    except BridgeError as exc:
        return _page(group, failed=Failed("tag", exc, key=key))
    also = f" (and {', '.join(deleted.also)}: the same image)" if deleted.also else ""
    freed = (
        "" if reclaim is None else f"; a registry garbage collection would reclaim {human(reclaim)}"
    )
    flash(f"Deleted {deleted.repository}:{deleted.tag}{also}{freed}", "success")
    return _back(group)


def _reclaim(group: str, repository: str, tag: str) -> int | None:
    """What deleting the tag frees at the next garbage collection (None: not known)."""
    tags, sizes = storage.images(context.svc(), context.user(), group)
    prefix = context.settings().registry.prefix(group)
    full = repository if repository.startswith(prefix) else prefix + repository
    found = next((v.tag for v in tags if (v.tag.repository, v.tag.tag) == (full, tag)), None)
    if found is None:
        return None  # delete_tag says so
    going = [v.tag for v in tags if (v.tag.repository, v.tag.digest) == (full, found.digest)]
    staying = [v.tag for v in tags if v.tag not in going]
    return registry.unique_bytes(going, staying, sizes)


@bp.post("/storage/<group>/images/retention")
def storage_retention(group: str) -> Page:
    """Delete what the preview listed: refused when the list changed since (a tag pushed or
    deleted meanwhile), with the new list to check."""
    typed = _typed(request.form, "keep")
    previewed = set(request.form.getlist("tag"))
    try:
        (keep,) = numbers(request.form, "keep")
        now = _retention(group, keep, dry_run=True)
        if {f"{t.repository}:{t.tag}" for t in now.delete} != previewed:
            return _page(
                group,
                failed=Failed(
                    "retention",
                    Conflict(
                        "the tags to delete changed since the preview (pushed, deleted or "
                        "deployed meanwhile): nothing was deleted; check this list and delete again"
                    ),
                    typed=typed,
                ),
                preview=now,
            )
        done = _retention(group, keep, dry_run=False)
    except BridgeError as exc:
        return _page(group, failed=Failed("retention", exc, typed=typed))
    if not done.delete:
        flash(
            f"Nothing to delete: every repository has at most {keep} images besides those in use",
            "info",
        )
    else:
        flash(
            f"Deleted {len(done.delete)} tag{'s' if len(done.delete) != 1 else ''} beyond the "
            f"newest {keep} of each repository; a registry garbage collection would reclaim "
            f"{human(done.reclaim)}",
            "success",
        )
    return _back(group)
