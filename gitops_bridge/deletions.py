"""Recently deleted deployments, with the version to restore: what
``GET /api/v1/deployments?deleted=1`` and the Recently deleted page list.

A deployment counts as deleted when a commit of main removed its file
``tenants/<group>/apps/<app>-<id>.yaml`` (the bridge's delete, trailer
``Gitops-Bridge-Action: delete``, or a person's commit alike) and its name is not back on
main. Each is listed once, at its newest deletion, newest first, with who deleted it, when,
the commit that did, and its last version: what it ran, and the commit that wrote that
version, which ``POST /deployments/<name>/restore`` takes.

The list is a window, not the whole history: the deletions of the last ``WINDOW`` commits
that deleted such a file within the last ``DAYS`` days. One ``git log --diff-filter=D``
finds them; a newer main walks only the commits since the last one seen, so a request costs
what was deleted lately, never the size of the repository. A page parses only the versions
it shows (cached by blob), and finds each one's commit once (cached: history never changes).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import re
from dataclasses import dataclass

from gitops_bridge import history
from gitops_bridge.cache import Bounded
from gitops_bridge.errors import InvalidRequest
from gitops_bridge.gitrepo import Deletion
from gitops_bridge.identity import User
from gitops_bridge.models import DNS_LABEL, ID_PATTERN
from gitops_bridge.render import layout
from gitops_bridge.service import Service
from gitops_bridge.state import State

WINDOW = 500  # the newest commits that deleted a deployment's file, looked at
DAYS = 90  # ... committed within this many days
PAGE = 50  # deleted deployments a page, unless asked for fewer or more
MAX_PAGE = 500
CURSOR = re.compile(r"[A-Za-z0-9_-]*")
APPS = f"{layout.TENANTS_DIR}/*/{layout.APPS_DIR}/*.yaml"
_APP_FILE = re.compile(rf"{layout.TENANTS_DIR}/([^/]+)/{layout.APPS_DIR}/([^/]+)\.yaml")

Key = tuple[int, str, str]  # (time, delete commit, name) of the last of a page


@dataclass(frozen=True)
class Deleted:
    """A deployment deleted from main, as it was last (``problem``: that version cannot be
    read, so neither its image nor its replicas are known)."""

    name: str
    group: str
    app: str
    image: str | None
    replicas: int | None
    deleted_by: str
    deleted_at: int  # Unix seconds, when the deletion was committed
    delete_commit: str
    restore_commit: str  # the commit that wrote the last version: restore takes it
    problem: str = ""


@dataclass(frozen=True)
class Page:
    """Deleted deployments, newest first; ``next``: the cursor of the page after (None:
    this is the last)."""

    items: list[Deleted]
    next: str | None


@dataclass(frozen=True)
class _Window:
    head: str
    since: int  # the oldest commit time walked for
    found: list[Deletion]  # newest first


# the window of each clone, by its path, for the newest main it was built for
_windows: Bounded[str, _Window] = Bounded(max_items=64)
# (delete commit, path) -> the commit that wrote the version it deleted (never changes)
_versions: Bounded[tuple[str, str], str] = Bounded(max_items=8192)


def page(
    svc: Service,
    user: User,
    *,
    group: str | None = None,
    after: str | None = None,
    limit: int = PAGE,
) -> Page:
    """The deployments of the user's groups (``group``: of that one; 404 to anyone not in
    it) deleted from main, newest first, after the cursor ``after``."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest.field("limit", f"must be 1..{MAX_PAGE}, got {limit}")
    start = decode_cursor(after) if after else None
    state = svc.state() if group is None else svc.fresh_state(group=group)
    if group is not None:
        svc.member_group(state, user, group)
    visible = {
        name
        for name, record in state.groups.items()
        if (group is None or name == group) and user.member_of(name, record.members)
    }
    window = _window(svc, state.commit)
    listed = _listed(state, window, visible)
    begin = 0 if start is None else _after(window, listed, start)
    shown = listed[begin : begin + limit]
    following = None
    if begin + limit < len(listed):
        _, name, last = shown[-1]
        following = encode_cursor((last.time, last.entry.sha, name))
    return Page(
        items=[_deleted(svc, deletion, name) for _, name, deletion in shown],
        next=following,
    )


def _listed(
    state: State, window: list[Deletion], groups: set[str]
) -> list[tuple[int, str, Deletion]]:
    """The window's deleted deployments of these groups that are not back on main, each at
    its newest deletion, with its place in the window."""
    seen: set[str] = set()
    listed = []
    for at, deletion in enumerate(window):
        name = _name_of(deletion.path)
        if name is None or name in seen:
            continue
        seen.add(name)
        group = deletion.path.split("/")[1]
        if group in groups and name not in state.deployments and state.app_file(name) is None:
            listed.append((at, name, deletion))
    return listed


def _name_of(path: str) -> str | None:
    """The deployment whose file ``path`` is; None: another file in apps/ (secret values)."""
    found = _APP_FILE.fullmatch(path)
    if found is None:
        return None
    app, _, ident = found[2].rpartition("-")
    return found[2] if DNS_LABEL.fullmatch(app) and ID_PATTERN.fullmatch(ident) else None


def _after(window: list[Deletion], listed: list[tuple[int, str, Deletion]], start: Key) -> int:
    """Where the page after the cursor begins in ``listed``: after the cursor's deletion in
    the window (it stays there when its deployment is restored meanwhile); after the
    deletions of its time and before when it left the window."""
    time, sha, name = start
    at = next(
        (n for n, d in enumerate(window) if d.entry.sha == sha and _name_of(d.path) == name),
        None,
    )
    if at is None:
        return next((n for n, item in enumerate(listed) if item[2].time < time), len(listed))
    return bisect.bisect_right(listed, at, key=lambda item: item[0])


def _window(svc: Service, head: str | None) -> list[Deletion]:
    """The deletions of the window at ``head``, newest first (those of one time in the
    order of the log): from the window of an older main, only the commits since it are
    walked."""
    if head is None:
        return []
    cutoff = int(svc.clock().timestamp()) - DAYS * 86400
    key = str(svc.repo.path)
    known = _windows.get(key)
    if known is not None and known.head == head:
        found = known.found
    elif known is not None and svc.repo.is_ancestor(known.head, head):
        fresh = svc.repo.deletions(
            [APPS], commit=head, base=known.head, since=known.since, limit=WINDOW
        )
        found = _newest(fresh + known.found)
        _windows.put(key, _Window(head=head, since=known.since, found=found))
    else:
        found = _newest(svc.repo.deletions([APPS], commit=head, since=cutoff, limit=WINDOW))
        _windows.put(key, _Window(head=head, since=cutoff, found=found))
    return [deletion for deletion in found if deletion.time >= cutoff]


def _newest(found: list[Deletion]) -> list[Deletion]:
    """Newest first (a stable sort: the log's order where times are equal), the deletions
    of the newest ``WINDOW`` commits."""
    found = sorted(found, key=lambda d: -d.time)
    commits: set[str] = set()
    kept = []
    for deletion in found:
        commits.add(deletion.entry.sha)
        if len(commits) > WINDOW:
            break
        kept.append(deletion)
    return kept


def _deleted(svc: Service, deletion: Deletion, name: str) -> Deleted:
    group = deletion.path.split("/")[1]
    version, problem = history.deployment_at(svc, deletion.blob)
    entry = deletion.entry
    return Deleted(
        name=name,
        group=group,
        app=version.app if version is not None else name.rpartition("-")[0],
        image=version.spec.image if version is not None else None,
        replicas=version.spec.replicas if version is not None else None,
        deleted_by=entry.author,
        deleted_at=deletion.time,
        delete_commit=entry.sha,
        restore_commit=_version_commit(svc, deletion),
        problem=problem,
    )


def _version_commit(svc: Service, deletion: Deletion) -> str:
    """The commit that wrote the version a deletion removed (its parent, when the file's
    log does not show one: then restore says why it cannot)."""
    key = (deletion.entry.sha, deletion.path)
    found = _versions.get(key)
    if found is None:
        parent = deletion.entry.parent or deletion.entry.sha
        found = svc.repo.last_commit(deletion.path, commit=parent) or parent
        _versions.put(key, found)
    return found


def encode_cursor(key: Key) -> str:
    """Opaque to callers: where the last deployment of a page was."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> Key:
    try:
        if not CURSOR.fullmatch(text):
            raise ValueError(text)
        key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode())
    except (binascii.Error, ValueError):
        key = None
    if not (
        isinstance(key, list)
        and len(key) == 3
        and type(key[0]) is int
        and all(isinstance(k, str) for k in key[1:])
    ):
        raise InvalidRequest.field("after", "must be a cursor from a Link header of this list")
    return (key[0], key[1], key[2])
