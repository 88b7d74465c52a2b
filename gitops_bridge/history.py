"""A deployment's history, and the two Git-native ways back: revert a change, restore a version.

Both write a new commit (never rewrite history), go through validation and quota like any
change, and work in review mode too. Generated files (kustomization.yaml) are rebuilt
rather than merged, so reverting an old change does not conflict with later ones.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from gitops_bridge import models, quota, render, sops
from gitops_bridge.cache import Bounded
from gitops_bridge.errors import Conflict, InvalidRequest, NotFound
from gitops_bridge.gitrepo import FileChange, LogEntry, Snapshot
from gitops_bridge.identity import User
from gitops_bridge.models import Deployment
from gitops_bridge.render import digest, layout, tenancy, yamlio
from gitops_bridge.render import secrets as secretfiles
from gitops_bridge.service import (
    TRAILER_ACTION,
    TRAILER_DEPLOYMENT,
    TRAILER_GROUP,
    Plan,
    Service,
    Written,
)
from gitops_bridge.state import State

PAGE = 50  # versions a history page shows unless asked for fewer or more
MAX_PAGE = 200
_HEX = frozenset("0123456789abcdef")


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
    problem: str = ""  # the file at this commit cannot be read (a hand edit broke it)
    approved_by: str = ""  # review mode: who approved the change request it came from


def _locate(svc: Service, name: str) -> str:
    """The file of a deployment, present or deleted."""
    state = svc.fresh_state(deployment=name)
    current = state.app_file(name)  # readable or not
    if current is not None:
        return current
    entries = svc.repo.log(paths=[f"{layout.TENANTS_DIR}/*/{layout.APPS_DIR}/{name}.yaml"], limit=1)
    if not entries:
        raise NotFound(f"deployment {name!r} not found, now or in the history")
    suffix = f"/{layout.APPS_DIR}/{name}.yaml"
    return next(p for p in entries[0].paths if p.endswith(suffix))


def _group_of(path: str) -> str:
    return path.split("/")[1]


# the deployment each version of a file holds, by blob: content-addressed, so shared by
# every repository, and bounded so memory does not grow with the history read
_versions: Bounded[str, tuple[Deployment | None, str]] = Bounded(
    max_items=2048, max_bytes=8 * 1024 * 1024
)


def _parse(svc: Service, blob: str | None) -> tuple[Deployment | None, str]:
    """The deployment a version of the file holds (None: absent), or why that version
    cannot be read."""
    if blob is None:
        return None, ""
    cached = _versions.get(blob)
    if cached is not None:
        return cached
    data = svc.repo.read_blob(blob)
    try:
        parsed: tuple[Deployment | None, str] = (render.parse_helmrelease(yamlio.load(data)), "")
    except Exception as exc:  # a hand edit broke it: the history shows it, does not fail
        parsed = (None, tenancy.describe(exc))
    _versions.put(blob, parsed, size=len(data))
    return parsed


def deployment_at(svc: Service, blob: str) -> tuple[Deployment | None, str]:
    """The deployment one version of a deployment's file (its blob) holds, or why that
    version cannot be read; parsed once while it stays cached."""
    return _parse(svc, blob)


def _authorise(svc: Service, user: User, group: str, name: str) -> State:
    """Members only; to anyone else the deployment does not exist (``_locate``'s answer).
    The state it checked against."""
    missing = f"deployment {name!r} not found, now or in the history"
    state = svc.fresh_state(group=group)
    svc.member_group(state, user, group, missing=missing)
    return state


@dataclass(frozen=True)
class Page:
    """Versions of a deployment, newest first, and where the next (older) page starts."""

    versions: list[Version]
    next: str | None  # the ``before`` of the next page; None on the last one


def page(
    svc: Service,
    user: User,
    name: str,
    *,
    diffs: bool = False,
    limit: int = PAGE,
    before: str | None = None,
) -> Page:
    """One page of a deployment's history. Its cost is bounded by ``limit`` (at most
    MAX_PAGE), not by the length of the history: the commits and each one's blobs of the
    file from one git process, their diffs from one more, each version parsed once while
    it stays cached (``_versions``)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest.field("limit", f"must be 1..{MAX_PAGE}, got {limit}")
    path = _locate(svc, name)
    head = _authorise(svc, user, _group_of(path), name).commit
    start = head if before is None else _older_than(svc, before, head)
    if not start or head is None:
        return Page(versions=[], next=None)  # before the first commit: nothing older
    changes = svc.repo.file_log(path, commit=start, limit=limit + 1)
    more, changes = len(changes) > limit, changes[:limit]
    texts = svc.repo.diffs([change.entry.sha for change in changes], path) if diffs else {}
    texts = {sha: digest.hide(text) for sha, text in texts.items()}  # bookkeeping, not a change
    versions = [_version(svc, change, texts.get(change.entry.sha, "")) for change in changes]
    if not more:
        return Page(versions=versions, next=None)
    last = changes[-1].entry
    _cursors.put((str(svc.repo.path), last.sha), (head, last.parent or ""))
    return Page(versions=versions, next=last.sha)


def _version(svc: Service, change: FileChange, diff: str) -> Version:
    old, _ = _parse(svc, change.before)
    new, problem = _parse(svc, change.after)
    if problem:
        summary = [f"unreadable: {problem}"]
    else:
        summary = models.spec_differences(old.spec if old else None, new.spec if new else None)
        if old is not None:
            summary += models.secret_differences(old, new)
    if new and old and new.restarted_at != old.restarted_at:
        summary.append("restarted")
    entry = change.entry
    return Version(
        sha=entry.sha,
        author=entry.author,
        email=entry.email,
        time=entry.time,
        subject=entry.subject,
        message=entry.message,
        action=entry.trailer(TRAILER_ACTION) or "",
        summary=summary,
        exists=new is not None or bool(problem),
        diff=diff,
        problem=problem,
        approved_by=entry.trailer("Approved-by") or "",
    )


def _is_sha(text: str) -> bool:
    return 7 <= len(text) <= 40 and set(text) <= _HEX


# page cursors handed out or checked: (clone, cursor) -> (a main it is part of, where the
# log older than it starts). Following one again walks no history while main only moves
# forward (then just from that main to the new one).
_cursors: Bounded[tuple[str, str], tuple[str, str]] = Bounded(max_items=4096)


def _older_than(svc: Service, before: str, head: str | None) -> str:
    """Where the log of the commits older than ``before`` starts ("" before the first)."""
    text = before.strip().lower()
    if not _is_sha(text) or head is None:
        raise InvalidRequest.field(
            "before", f"must be a commit sha (7..40 hex digits) from the history, got {before!r}"
        )
    known = _cursors.get((str(svc.repo.path), text))
    if known is not None and (known[0] == head or svc.repo.is_ancestor(known[0], head)):
        return known[1]
    resolved = svc.repo.resolve_commit(text)
    if resolved is None or not svc.repo.is_ancestor(resolved[0], head):
        raise InvalidRequest.field(
            "before", f"must be a commit of {svc.repo.branch}'s history, got {before!r}"
        )
    if text == resolved[0]:  # a prefix may name another commit once more are fetched
        _cursors.put((str(svc.repo.path), text), (head, resolved[1] or ""))
    return resolved[1] or ""


def _entry(svc: Service, path: str, commit: str) -> LogEntry:
    """The commit of main's history that changed the file, that ``commit`` (its sha or a
    prefix) names: a few git processes, however long the history."""
    text = commit.strip().lower() if isinstance(commit, str) else ""
    if not text:
        raise InvalidRequest.field("commit", "is required (a commit sha from the history)")
    wrong = InvalidRequest.field(
        "commit",
        f"must be a commit of {svc.repo.branch}'s history (7..40 hex digits, naming one "
        f"commit) that changed this deployment, got {commit!r}",
    )
    head = svc.repo.head()
    resolved = svc.repo.resolve_commit(text) if _is_sha(text) else None
    if resolved is None or head is None or not svc.repo.is_ancestor(resolved[0], head):
        raise wrong
    change = svc.repo.file_change(resolved[0], path)
    if change is None:
        raise wrong
    return change.entry


@dataclass(frozen=True)
class Preview:
    """What a revert or restore would commit now: per file, the unified diff (a file of
    secret values says only that its encrypted values change)."""

    action: str
    commit: str
    message: str
    files: list[tuple[str, str]]


def _reverting(svc: Service, user: User, name: str, commit: str) -> tuple[str, Any, str, Any]:
    """The group, the planner, the commit reverted and the request body of a revert."""
    path = _locate(svc, name)
    group = _group_of(path)
    _authorise(svc, user, group, name)
    entry = _entry(svc, path, commit)
    values = values_path(path)
    others = [
        p
        for p in svc.repo.changed_paths(entry.sha)
        if p not in (path, values) and not p.endswith("/kustomization.yaml")
    ]
    if others:
        raise Conflict(
            f"commit {entry.sha[:7]} also changes {', '.join(sorted(others)[:5])}: reverting it "
            f"here would touch more than {name}; restore a version of {name} instead"
        )
    reverted = svc.repo.read_at(entry.sha, path)
    parent = svc.repo.read_at(entry.parent, path)
    reverted_values = svc.repo.read_at(entry.sha, values)
    parent_values = svc.repo.read_at(entry.parent, values)

    def plan(snapshot: Snapshot, state: State) -> Plan:
        what = f"reverting {entry.sha[:7]}"
        content = three_way(
            svc, path=path, ours=snapshot.read(path), base=reverted, theirs=parent, what=what
        )
        secret = values_three_way(
            svc,
            path=values,
            ours=snapshot.read(values),
            base=reverted_values,
            theirs=parent_values,
            what=what,
        )
        message = f'Revert "{entry.subject}"\n\nThis reverts commit {entry.sha}.'
        return plan_content(svc, snapshot, state, path, content, message, "revert", values=secret)

    return group, plan, entry.sha, {"revert": entry.sha}


def _restoring(svc: Service, user: User, name: str, commit: str) -> tuple[str, Any, str, Any]:
    """The group, the planner, the commit restored and the request body of a restore."""
    path = _locate(svc, name)
    group = _group_of(path)
    _authorise(svc, user, group, name)
    entry = _entry(svc, path, commit)
    content = svc.repo.read_at(entry.sha, path)
    secret = svc.repo.read_at(entry.sha, values_path(path))
    if content is None:
        raise InvalidRequest.field(
            "commit", f"{entry.sha[:7]} deleted {name}; pick a commit where it existed"
        )

    def plan(snapshot: Snapshot, state: State) -> Plan:
        message = f"Restore {name} to its version of {entry.sha[:7]}\n\n({entry.subject})"
        return plan_content(svc, snapshot, state, path, content, message, "restore", values=secret)

    return group, plan, entry.sha, {"restore": entry.sha}


def revert(svc: Service, user: User, name: str, commit: str, *, key: str | None = None) -> Written:
    """Undo one change to the deployment, like `git revert`, on top of the current main."""
    group, plan, _, body = _reverting(svc, user, name, commit)
    return svc.write(user, group=group, action="revert", plan=plan, key=key, body=body, target=name)


def restore(svc: Service, user: User, name: str, commit: str, *, key: str | None = None) -> Written:
    """A new commit that brings the deployment back to its content at that commit."""
    group, plan, _, body = _restoring(svc, user, name, commit)
    return svc.write(
        user, group=group, action="restore", plan=plan, key=key, body=body, target=name
    )


def preview(svc: Service, user: User, name: str, commit: str, action: str) -> Preview:
    """What ``revert``/``restore`` would commit on the newest main, without writing: the
    same plan, checks included (a conflict or a quota refusal is raised here too)."""
    making = _reverting if action == "revert" else _restoring
    group, plan, sha, _ = making(svc, user, name, commit)
    svc.repo.refresh()
    snapshot = svc.repo.snapshot()
    state = svc.state(snapshot)
    svc.member_group(state, user, group)
    change = plan(snapshot, state).change
    files = [
        (manifest.path, _diff(manifest.path, snapshot.read(manifest.path), manifest.data))
        for manifest in change.writes
    ]
    files += [(path, _diff(path, snapshot.read(path), None)) for path in change.deletes]
    return Preview(
        action=action,
        commit=sha,
        message=change.message.split("\n", 1)[0],
        files=[(path, text) for path, text in files if text],
    )


def _diff(path: str, old: bytes | None, new: bytes | None) -> str:
    if old == new:
        return ""
    if path.endswith(layout.SECRET_SUFFIX):
        return "(secret values: the encrypted file changes; its values are never shown)"
    lines = difflib.unified_diff(
        (old or b"").decode().splitlines(keepends=True),
        (new or b"").decode().splitlines(keepends=True),
        fromfile=f"a/{path}" if old is not None else "/dev/null",
        tofile=f"b/{path}" if new is not None else "/dev/null",
    )
    return digest.hide("".join(lines))


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
        # over ours, so what people added to the file by hand stays (render.handedits)
        return render.helmrelease(
            merged, settings=svc.settings, current=ours, before=parsed[1]
        ).data
    text = svc.repo.merge_file(ours=ours, base=base, theirs=theirs)
    if text is None:
        raise Conflict(f"{what} conflicts with later changes to {path}; restore a version instead")
    return text


def values_path(path: str) -> str:
    """The file of a deployment's secret values, beside its HelmRelease's ``path``."""
    return path.removesuffix(".yaml") + layout.SECRET_SUFFIX


def values_three_way(
    svc: Service,
    *,
    path: str,
    ours: bytes | None,
    base: bytes | None,
    theirs: bytes | None,
    what: str,
) -> bytes | None:
    """Carry base -> theirs onto ours for a deployment's secret values, key by key (the
    files are decrypted with the bridge's identity; ciphertext cannot be merged by line)."""
    if ours == base:
        return theirs
    if ours == theirs or theirs == base:
        return ours
    opened = {
        side: svc.secrets.open(data, path) if data is not None else None
        for side, data in (("base", base), ("ours", ours), ("theirs", theirs))
    }
    found = {
        side: secretfiles.values_of(value) if value is not None else {}
        for side, value in opened.items()
    }
    merged = dict(found["ours"])
    conflicts = []
    for key in sorted(set(found["base"]) | set(found["ours"]) | set(found["theirs"])):
        old, mine, new = (found[side].get(key) for side in ("base", "ours", "theirs"))
        if new in (old, mine):
            continue
        if mine != old:
            conflicts.append(key)
        elif new is None:
            merged.pop(key, None)
        else:
            merged[key] = new
    if conflicts:
        raise Conflict(
            f"{what} conflicts with later changes of the secret values {', '.join(conflicts)}; "
            "restore a version instead"
        )
    if not merged:
        return None
    template = opened["ours"] or opened["theirs"]
    assert template is not None
    return secretfiles.encrypted(
        path,
        secretfiles.with_values(template.document, merged),
        sops.recipients_of(yamlio.load(ours))
        if ours is not None
        else svc.secrets.platform_recipients(),
        previous=None,
        kept=None,
        now=svc.clock(),
    ).data


_KEEP: Any = object()


def plan_content(
    svc: Service,
    snapshot: Snapshot,
    state: State,
    path: str,
    content: bytes | None,
    message: str,
    action: str,
    trailers: dict[str, str] | None = None,
    *,
    values: bytes | None = _KEEP,
) -> Plan:
    """Write (or delete) one deployment file, re-validated and quota-checked; ``values``:
    the file of its secret values to go with it (re-encrypted for today's recipients)."""
    group_name = _group_of(path)
    group = state.groups.get(group_name)
    if group is None:
        raise Conflict(f"group {group_name} no longer exists")
    name = path.rsplit("/", 1)[1].removesuffix(".yaml")
    before = state.deployments.get(name) or state.held.get(path)  # unreadable: what it held
    after = _validated(svc, content) if content is not None else None
    if after is not None:
        svc.check_name_free(state, group_name, after.app, but=after.name)
        after = svc.with_volumes(state, after)
    quota.check(
        group,
        current=state.in_group(group_name),
        used=state.usage(group_name),
        before=before,
        after=after,
        sidecar=svc.sidecar,
    )
    writes: list[render.Manifest] = []
    deletes: tuple[str, ...] = ()
    if after is not None:
        # today's conventions for what the bridge owns, the rest of the version as it was
        # (a person's tuning and comments: render.handedits); byte-stable when equal
        writes.append(render.helmrelease(after, settings=svc.settings, current=content))
    else:
        deletes = (path,)
    secret_path = values_path(path)
    if values is _KEEP:
        values = snapshot.read(secret_path)
    needed = [var.name for var in after.spec.env if var.secret] if after is not None else []
    if needed:
        writes.append(_values_for(svc, snapshot, secret_path, values, needed))
    elif snapshot.blob(secret_path) is not None:
        deletes = (*deletes, secret_path)
    trailer = {TRAILER_ACTION: action, TRAILER_GROUP: group_name, TRAILER_DEPLOYMENT: name}
    change = render.Change(
        message=message,
        writes=tuple(writes),
        deletes=deletes,
        trailers={**trailer, **(trailers or {})},
    )
    svc.check_repairs(state, group_name, change)
    return Plan(change=change, deployment=after)


def _values_for(
    svc: Service, snapshot: Snapshot, path: str, data: bytes | None, needed: list[str]
) -> render.Manifest:
    """The secret values file a version needs, holding its keys, for today's recipients."""
    if data is None:
        raise Conflict(
            f"that version reads the secret values {', '.join(needed)}, but {path} did not "
            "exist then; set them again instead"
        )
    opened = svc.secrets.open(data, path)
    missing = sorted(set(needed) - set(secretfiles.values_of(opened)))
    if missing:
        raise Conflict(f"{path} then held no value for {', '.join(missing)}")
    recipients = svc.secrets.app_recipients(snapshot, path.split("/")[1])
    return render.Manifest(path, svc.secrets.reencrypted(data, path, recipients).decode())


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
