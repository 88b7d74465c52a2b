"""A deployment's history, and the two Git-native ways back: revert a change, restore a version.

Both write a new commit (never rewrite history), go through validation and quota like any
change, and work in review mode too. Generated files (kustomization.yaml) are rebuilt
rather than merged, so reverting an old change does not conflict with later ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitops_bridge import models, quota, render
from gitops_bridge.errors import Conflict, InvalidRequest, NotFound
from gitops_bridge.gitrepo import LogEntry, Snapshot
from gitops_bridge.identity import User
from gitops_bridge.models import Deployment
from gitops_bridge.render import layout, yamlio
from gitops_bridge.service import TRAILER_ACTION, Plan, Service, State, Written


@dataclass(frozen=True)
class Version:
    """One commit that changed a deployment."""

    sha: str
    author: str
    email: str
    time: int
    subject: str
    message: str
    action: str
    summary: list[str]
    exists: bool  # the deployment exists after this commit
    diff: str = ""


def _locate(svc: Service, name: str) -> str:
    """The file of a deployment, present or deleted."""
    state = svc.fresh_state(deployment=name)
    current = state.deployments.get(name)
    if current is not None:
        return render.app_path(current.group, current.name)
    entries = svc.repo.log(paths=[f"{layout.TENANTS_DIR}/*/{layout.APPS_DIR}/{name}.yaml"], limit=1)
    if not entries:
        raise NotFound(f"deployment {name!r} not found, now or in the history")
    suffix = f"/{layout.APPS_DIR}/{name}.yaml"
    return next(p for p in entries[0].paths if p.endswith(suffix))


def _group_of(path: str) -> str:
    return path.split("/")[1]


def _parse_at(svc: Service, commit: str | None, path: str) -> Deployment | None:
    blob = svc.repo.blob_at(commit, path)
    return None if blob is None else render.parse_helmrelease(svc.repo.parsed_blob(blob))


def _authorise(svc: Service, user: User, group: str) -> None:
    svc.member_group(svc.fresh_state(group=group), user, group)


def history(svc: Service, user: User, name: str, *, diffs: bool = False) -> list[Version]:
    path = _locate(svc, name)
    _authorise(svc, user, _group_of(path))
    versions = []
    for entry in svc.repo.log(paths=[path]):
        old = _parse_at(svc, entry.parent, path)
        new = _parse_at(svc, entry.sha, path)
        summary = models.spec_differences(old.spec if old else None, new.spec if new else None)
        if new and old and new.restarted_at != old.restarted_at:
            summary.append("restarted")
        versions.append(
            Version(
                sha=entry.sha,
                author=entry.author,
                email=entry.email,
                time=entry.time,
                subject=entry.subject,
                message=entry.message,
                action=entry.trailer(TRAILER_ACTION) or "",
                summary=summary,
                exists=new is not None,
                diff=svc.repo.diff(entry.sha, path) if diffs else "",
            )
        )
    return versions


def _entry(svc: Service, path: str, commit: str) -> LogEntry:
    if not isinstance(commit, str) or not commit.strip():
        raise InvalidRequest.field("commit", "is required (a commit sha from the history)")
    for entry in svc.repo.log(paths=[path]):
        if entry.sha.startswith(commit.strip().lower()) and len(commit.strip()) >= 7:
            return entry
    raise InvalidRequest.field(
        "commit", f"must be a commit (7+ hex digits) that changed this deployment, got {commit!r}"
    )


def revert(svc: Service, user: User, name: str, commit: str, *, key: str | None = None) -> Written:
    """Undo one change to the deployment, like `git revert`, on top of the current main."""
    path = _locate(svc, name)
    group = _group_of(path)
    _authorise(svc, user, group)
    entry = _entry(svc, path, commit)
    others = [
        p
        for p in svc.repo.changed_paths(entry.sha)
        if p != path and not p.endswith("/kustomization.yaml")
    ]
    if others:
        raise Conflict(
            f"commit {entry.sha[:7]} also changes {', '.join(sorted(others)[:5])}: reverting it "
            f"here would touch more than {name}; restore a version of {name} instead"
        )
    reverted = svc.repo.read_at(entry.sha, path)
    parent = svc.repo.read_at(entry.parent, path)

    def plan(snapshot: Snapshot, state: State) -> Plan:
        content = three_way(
            svc,
            path=path,
            ours=snapshot.read(path),
            base=reverted,
            theirs=parent,
            what=f"reverting {entry.sha[:7]}",
        )
        message = f'Revert "{entry.subject}"\n\nThis reverts commit {entry.sha}.'
        return plan_content(svc, snapshot, state, path, content, message, "revert")

    return svc.write(
        user,
        group=group,
        action="revert",
        plan=plan,
        key=key,
        body={"revert": entry.sha},
        target=name,
    )


def restore(svc: Service, user: User, name: str, commit: str, *, key: str | None = None) -> Written:
    """A new commit that brings the deployment back to its content at that commit."""
    path = _locate(svc, name)
    group = _group_of(path)
    _authorise(svc, user, group)
    entry = _entry(svc, path, commit)
    content = svc.repo.read_at(entry.sha, path)
    if content is None:
        raise InvalidRequest.field(
            "commit", f"{entry.sha[:7]} deleted {name}; pick a commit where it existed"
        )

    def plan(snapshot: Snapshot, state: State) -> Plan:
        message = f"Restore {name} to its version of {entry.sha[:7]}\n\n({entry.subject})"
        return plan_content(svc, snapshot, state, path, content, message, "restore")

    return svc.write(
        user,
        group=group,
        action="restore",
        plan=plan,
        key=key,
        body={"restore": entry.sha},
        target=name,
    )


def three_way(
    svc: Service,
    *,
    path: str,
    ours: bytes | None,
    base: bytes | None,
    theirs: bytes | None,
    what: str,
) -> bytes | None:
    """Carry base -> theirs onto ours: field by field for deployments, else line by line."""
    if ours == base:
        return theirs
    if ours == theirs or theirs == base:
        return ours
    if ours is None or base is None or theirs is None:
        state = "deleted" if ours is None else "changed"
        raise Conflict(f"{what} conflicts: {path} was {state} since")
    try:
        parsed = [render.parse_helmrelease(yamlio.load(data)) for data in (base, ours, theirs)]
    except Exception:
        parsed = []
    if parsed:
        try:
            merged = models.merge_deployments(*parsed)
        except models.MergeConflict as exc:
            raise Conflict(
                f"{what} conflicts with later changes of {', '.join(exc.fields)} in "
                f"{path}; restore a version instead"
            ) from exc
        return render.helmrelease(merged, settings=svc.settings).data
    text = svc.repo.merge_file(ours=ours, base=base, theirs=theirs)
    if text is None:
        raise Conflict(f"{what} conflicts with later changes to {path}; restore a version instead")
    return text


def plan_content(
    svc: Service,
    snapshot: Snapshot,
    state: State,
    path: str,
    content: bytes | None,
    message: str,
    action: str,
    trailers: dict[str, str] | None = None,
) -> Plan:
    """Write (or delete) one deployment file, re-validated and quota-checked."""
    group_name = _group_of(path)
    group = state.groups.get(group_name)
    if group is None:
        raise Conflict(f"group {group_name} no longer exists")
    name = path.rsplit("/", 1)[1].removesuffix(".yaml")
    before = state.deployments.get(name)
    after = _validated(svc, content) if content is not None else None
    if after is not None:
        svc.check_name_free(state, group_name, after.app, but=after.name)
    quota.check(
        group, current=state.in_group(group_name), before=before, after=after, sidecar=svc.sidecar
    )
    writes: list[render.Manifest] = []
    deletes: tuple[str, ...] = ()
    if after is not None:
        # re-render so the file follows today's conventions (byte-stable when equal)
        writes.append(render.helmrelease(after, settings=svc.settings))
    else:
        deletes = (path,)
    target = after or before
    assert target is not None
    change = render.Change(
        message=message,
        writes=tuple(writes),
        deletes=deletes,
        trailers={**svc.trailers(action, target), **(trailers or {})},
    )
    return Plan(change=change, deployment=after)


def _validated(svc: Service, content: bytes) -> Deployment:
    try:
        deployment = render.parse_helmrelease(yamlio.load(content))
        data: Any = deployment.spec.model_dump()
        spec = models.parse_deployment(data, limits=svc.settings.limits)
    except InvalidRequest as exc:
        raise InvalidRequest(f"that version is no longer valid: {exc.message}") from exc
    except Exception as exc:
        raise Conflict(f"that version cannot be read: {exc}") from exc
    return deployment.model_copy(update={"spec": spec})
