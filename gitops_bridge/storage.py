"""A group's storage: its volumes (PersistentVolumeClaims in Git) and its registry images,
under one storage quota.

Volume changes are commits like any other: validated, quota-checked on the main they land
on (so concurrent creates never overshoot), authored by the user. They are not held for
review: a claim changes no running pod, and a deployment that mounts one is reviewed.
Deleting a volume deletes its data, so it needs the volume's name typed, is refused while a
deployment mounts it, and is two commits (``render.volume``): *release* drops the claim's
prune protection, *delete* removes the file once Flux applied the release.

Image tags are deleted through the registry's API, never one a deployment uses; deleting by
digest takes every tag of that digest, so a tag whose digest an in-use tag shares is in use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gitops_bridge import models, mounts, quantity, registry, render
from gitops_bridge.errors import Conflict, FieldProblem, InvalidRequest, NotFound
from gitops_bridge.gitrepo import Snapshot
from gitops_bridge.identity import User
from gitops_bridge.models import Group, Volume, VolumeSpec
from gitops_bridge.render import volume as volume_files
from gitops_bridge.service import TRAILER_ACTION, TRAILER_GROUP, Service, State, Written

TRAILER_VOLUME = "Gitops-Bridge-Volume"
MAX_KEEP = 1000


@dataclass(frozen=True)
class VolumeView:
    volume: Volume
    mounted_by: list[str]


@dataclass(frozen=True)
class Summary:
    group: str
    quota: int  # bytes
    volumes: int  # requested bytes of its volumes
    images: int | None  # bytes of its registry images (shared blobs once); None: not known
    images_note: str = ""

    @property
    def free(self) -> int:
        return max(0, self.quota - self.volumes - (self.images or 0))

    @property
    def over(self) -> int:
        return max(0, self.volumes + (self.images or 0) - self.quota)


@dataclass(frozen=True)
class TagView:
    tag: registry.TagInfo
    used_by: list[str]  # deployments naming it (by tag, or by a digest it has)


@dataclass(frozen=True)
class Retention:
    keep: int
    delete: list[registry.TagInfo]
    reclaim: int  # bytes a registry garbage collection would free afterwards
    done: bool  # deleted (not a dry run)


# ---- reading ------------------------------------------------------------------------------


def _member_state(svc: Service, user: User, group: str) -> tuple[State, Group]:
    state = svc.fresh_state(group=group)
    return state, svc.member_group(state, user, group)


def summary(svc: Service, user: User, group: str) -> Summary:
    state, record = _member_state(svc, user, group)
    images, note = svc.image_storage(group)
    return Summary(
        group=group,
        quota=int(quantity.parse(record.quota.storage).value),
        volumes=mounts.volume_bytes(state.volumes_in(group)),
        images=images,
        images_note=note,
    )


def volumes(svc: Service, user: User, group: str) -> list[VolumeView]:
    state, _ = _member_state(svc, user, group)
    deployments = state.in_group(group)
    return [
        VolumeView(volume=v, mounted_by=mounts.mounted_by(v.name, deployments))
        for v in state.volumes_in(group)
    ]


def volume(svc: Service, user: User, group: str, name: str) -> VolumeView:
    found = [v for v in volumes(svc, user, group) if v.volume.name == name]
    if not found:
        raise NotFound(f"volume {name!r} not found in group {group}")
    return found[0]


# ---- volume changes -------------------------------------------------------------------------


def create_volume(svc: Service, user: User, group: str, data: object) -> Written:
    _member_state(svc, user, group)
    spec = _with_class(svc, models.parse_volume(data))
    made: list[Volume] = []

    def build(snapshot: Snapshot) -> render.Change:
        state = svc.state(snapshot)
        record = svc.member_group(state, user, group)
        existing = state.volumes_in(group)
        if any(v.name == spec.name for v in existing) or snapshot.blob(
            volume_files.volume_path(group, spec.name)
        ):
            raise Conflict(f"name: a volume named {spec.name!r} exists in group {group}")
        limit = record.quota.deployments  # the ResourceQuota's persistentvolumeclaims
        if len(existing) >= limit:
            raise Conflict(
                f"persistentvolumeclaims: group {group} has {len(existing)} volumes, allowed "
                f"{limit}; delete one in the Storage tab or ask a platform admin"
            )
        _check_storage(svc, state, record, before=existing, after=[*existing, _volume(spec)])
        created = Volume(group=group, spec=spec, owner=user.name)
        made[:] = [created]
        return render.Change(
            message=f"Create volume {spec.name} in {group}\n\n{_describe(spec)}",
            writes=(volume_files.manifest(created),),
            trailers=_trailers("create-volume", group, spec.name),
        )

    commit = svc.repo.apply(build, author=svc.author(user))
    return Written(commit=commit, volume=made[0] if made else None)


def resize_volume(svc: Service, user: User, group: str, name: str, data: object) -> Written:
    """Grow a volume (``{"size": "20Gi"}``); its class must allow expansion."""
    if not isinstance(data, Mapping):
        raise InvalidRequest.field("", "the body must be a JSON object")
    unknown = sorted(set(data) - {"size"})
    if unknown:
        raise InvalidRequest.of(
            [FieldProblem(f, "cannot be changed; only size (grow it)") for f in unknown]
        )
    _member_state(svc, user, group)
    changed: list[Volume] = []

    def build(snapshot: Snapshot) -> render.Change:
        state = svc.state(snapshot)
        record = svc.member_group(state, user, group)
        current = _existing(state, group, name)
        spec = _with_class(
            svc, models.parse_volume({**current.spec.model_dump(), "size": data.get("size")})
        )
        old, new = quantity.parse(current.spec.size), quantity.parse(spec.size)
        if new < old:
            raise InvalidRequest.field(
                "size", f"must not shrink: volumes only grow (now {current.spec.size})"
            )
        storage_class = svc.settings.storage.storage_class(spec.storage_class)
        if new > old and (storage_class is None or not storage_class.expandable):
            raise InvalidRequest.field(
                "size", f"class {spec.storage_class} does not allow volumes to grow"
            )
        if current.deleting:
            raise Conflict(f"volume {name} is being deleted")
        others = [v for v in state.volumes_in(group) if v.name != name]
        after = current.model_copy(update={"spec": spec})
        _check_storage(svc, state, record, before=[*others, current], after=[*others, after])
        changed[:] = [after]
        return render.Change(
            message=f"Grow volume {name} in {group}: {current.spec.size} -> {spec.size}",
            writes=(volume_files.manifest(after),),
            trailers=_trailers("resize-volume", group, name),
        )

    commit = svc.repo.apply(build, author=svc.author(user))
    return Written(commit=commit, volume=changed[0] if changed else None)


def delete_volume(
    svc: Service,
    user: User,
    group: str,
    name: str,
    data: object,
    *,
    applied: Callable[[str], bool | None] = lambda commit: None,
) -> Written:
    """Delete a volume and its data: ``{"confirm": "<its name>"}``. The first call releases
    the claim (Flux may prune it); the next, once Flux applied that (``applied(commit)``:
    True, or None when no cluster says), removes its file and Flux deletes the claim."""
    _member_state(svc, user, group)
    confirm = data.get("confirm") if isinstance(data, Mapping) else None
    if confirm != name:
        raise InvalidRequest.field(
            "confirm", f"type the volume's name ({name}) to delete it and all its data"
        )
    outcome: list[Volume | None] = []
    notes: list[str] = []
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def build(snapshot: Snapshot) -> render.Change:
        state = svc.state(snapshot)
        svc.member_group(state, user, group)
        current = _existing(state, group, name)
        mounts.refuse_delete(current, state.in_group(group))
        path = volume_files.volume_path(group, name)
        if not current.deleting:
            released = current.model_copy(update={"deleting": now})
            outcome[:] = [released]
            notes[:] = [
                "released: once Flux applied this, delete it again to remove the claim and its data"
            ]
            return render.Change(
                message=f"Release volume {name} of {group} for deletion",
                writes=(volume_files.manifest(released),),
                trailers=_trailers("release-volume", group, name),
            )
        entries = svc.repo.log(paths=[path], limit=1)
        if entries and applied(entries[0].sha) is False:
            raise Conflict(
                f"Flux has not applied the release of volume {name} ({entries[0].sha[:7]}) "
                "yet: until it has, removing the file would leave the claim behind; try again "
                "once it has"
            )
        outcome[:] = [None]
        notes[:] = ["deleted: Flux deletes the claim and its data"]
        return render.Change(
            message=f"Delete volume {name} of {group} and its data",
            deletes=(path,),
            trailers=_trailers("delete-volume", group, name),
        )

    commit = svc.repo.apply(build, author=svc.author(user))
    return Written(commit=commit, volume=outcome[0] if outcome else None, message=notes[0])


# ---- images ---------------------------------------------------------------------------------


def images(svc: Service, user: User, group: str) -> tuple[list[TagView], dict[str, int]]:
    """The group's tags with the deployments using each, and the blob sizes (to count what
    a deletion would reclaim)."""
    state, _ = _member_state(svc, user, group)
    client = _registry(svc)
    prefix = svc.settings.registry.prefix(group)
    tags = client.tag_infos(prefix)
    users = _users(svc, state)
    views = [TagView(tag=t, used_by=_used_by(svc, t, users, tags)) for t in tags]
    return views, client.blob_sizes(prefix)


def delete_tag(svc: Service, user: User, group: str, repository: str, tag: str) -> Any:
    """Delete one tag of the group's registry path (by its manifest digest)."""
    state, _ = _member_state(svc, user, group)
    client = _registry(svc)
    prefix = svc.settings.registry.prefix(group)
    full = repository if repository.startswith(prefix) else prefix + repository
    tags = client.tag_infos(prefix)
    found = next((t for t in tags if t.repository == full and t.tag == tag), None)
    if found is None:
        raise NotFound(f"image {full}:{tag} not found")
    used = _used_by(svc, found, _users(svc, state), tags)
    if used:
        raise Conflict(f"{full}:{tag} is used by {', '.join(used)}: it stays")
    return client.delete_tag(full, tag)


def retention(svc: Service, user: User, group: str, data: object) -> Retention:
    """Keep the newest ``keep`` tags of each repository (and every tag in use); with
    ``dry_run`` only say what would go and what a garbage collection would free."""
    if not isinstance(data, Mapping):
        raise InvalidRequest.field("", "the body must be a JSON object")
    keep, dry_run = data.get("keep"), data.get("dry_run", False)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep <= MAX_KEEP:
        raise InvalidRequest.field("keep", f"must be a whole number 0..{MAX_KEEP}, got {keep!r}")
    if not isinstance(dry_run, bool):
        raise InvalidRequest.field("dry_run", f"must be true or false, got {dry_run!r}")
    unknown = sorted(set(data) - {"keep", "dry_run"})
    if unknown:
        raise InvalidRequest.of([FieldProblem(f, "unknown field") for f in unknown])
    state, _ = _member_state(svc, user, group)
    client = _registry(svc)
    prefix = svc.settings.registry.prefix(group)
    tags = client.tag_infos(prefix)
    users = _users(svc, state)
    doomed = registry.retention(tags, keep, lambda t: bool(_used_by(svc, t, users, tags)))
    kept = [t for t in tags if t not in doomed]
    reclaim = registry.unique_bytes(doomed, kept, client.blob_sizes(prefix))
    if not dry_run:
        gone: set[tuple[str, str]] = set()  # tags that went with an earlier one's digest
        for tag in doomed:
            if (tag.repository, tag.tag) not in gone:
                deleted = client.delete_tag(tag.repository, tag.tag)
                gone.update((tag.repository, other) for other in deleted.also)
    return Retention(keep=keep, delete=doomed, reclaim=reclaim, done=not dry_run)


# ---- helpers --------------------------------------------------------------------------------


def _registry(svc: Service) -> registry.Registry:
    if svc.registry is None:
        raise Conflict("no registry is configured (registry.url)")
    return svc.registry


def _users(svc: Service, state: State) -> dict[str, list[str]]:
    """Image reference -> the deployments naming it, over every group (an image of one
    group may run in another)."""
    found: dict[str, list[str]] = {}
    for deployment in state.deployments.values():
        found.setdefault(deployment.spec.image, []).append(deployment.name)
    for held in state.held.values():
        found.setdefault(held.spec.image, []).append(held.name)
    return found


def _used_by(
    svc: Service, tag: registry.TagInfo, users: dict[str, list[str]], tags: list[registry.TagInfo]
) -> list[str]:
    """Who uses the tag: by name, by its digest, or through another tag of the same digest
    (deleting by digest would take that one too)."""
    host = svc.settings.registry.host
    same = [t for t in tags if t.repository == tag.repository and t.digest == tag.digest]
    names: set[str] = set()
    for other in same:
        names.update(users.get(f"{host}/{other.repository}:{other.tag}", []))
    for reference, deployments in users.items():
        if reference.startswith(f"{host}/{tag.repository}") and reference.endswith(
            f"@{tag.digest}"
        ):
            names.update(deployments)
    return sorted(names)


def _with_class(svc: Service, spec: VolumeSpec) -> VolumeSpec:
    storage = svc.settings.storage
    name = spec.storage_class or storage.classes[0].name
    found = storage.storage_class(name)
    if found is None:
        offered = ", ".join(c.name for c in storage.classes)
        raise InvalidRequest.field("storageClass", f"must be one of {offered}, got {name!r}")
    if spec.access_mode not in found.access_modes:
        raise InvalidRequest.field(
            "accessMode",
            f"class {name} offers {', '.join(found.access_modes)}, got {spec.access_mode}",
        )
    size = quantity.parse(spec.size)
    low, high = quantity.parse(storage.min_size), quantity.parse(storage.max_size)
    if not low <= size <= high:
        raise InvalidRequest.field(
            "size", f"must be {storage.min_size}..{storage.max_size}, got {spec.size}"
        )
    return spec.model_copy(update={"storage_class": name})


def _volume(spec: VolumeSpec) -> Volume:
    return Volume(group="", spec=spec)


def _check_storage(
    svc: Service, state: State, record: Group, *, before: list[Volume], after: list[Volume]
) -> None:
    images, _ = svc.image_storage(record.name) if svc.registry is not None else (0, "")
    mounts.check_storage(
        record,
        volumes_before=mounts.volume_bytes(before),
        volumes_after=mounts.volume_bytes(after),
        images=images,
    )


def _existing(state: State, group: str, name: str) -> Volume:
    for found in state.volumes_in(group):
        if found.name == name:
            return found
    raise NotFound(f"volume {name!r} not found in group {group}")


def _describe(spec: VolumeSpec) -> str:
    return f"size: {spec.size}\nclass: {spec.storage_class}\naccess: {spec.access_mode}"


def _trailers(action: str, group: str, name: str) -> dict[str, str]:
    return {TRAILER_ACTION: action, TRAILER_GROUP: group, TRAILER_VOLUME: name}
