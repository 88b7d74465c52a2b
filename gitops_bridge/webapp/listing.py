"""The deployments listing, a page at a time: what ``GET /api/v1/deployments`` and the
Deployments page's cards show.

Deployments come by group, app and id after an opaque cursor, filtered by group, owner,
status and text. A page costs what it shows, not the size of the repository: the state's
deployments are sorted per group once per commit (a state is a function of its commit),
then a page walks the caller's groups from the cursor until it is full.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gitops_bridge.cache import Bounded
from gitops_bridge.errors import InvalidRequest
from gitops_bridge.identity import User
from gitops_bridge.models import Deployment, Group
from gitops_bridge.monitor import Monitor
from gitops_bridge.service import Service
from gitops_bridge.webapp import views

PAGE = 100  # deployments a page of GET /api/v1/deployments, unless ``limit`` says otherwise
MAX_PAGE = 500
STATES = (  # DeploymentStatus.state in openapi.yaml
    "pending review", "committed", "connecting", "reconciling", "running", "stopped",
    "degraded", "failed", "deleting", "deleted", "not connected",
)  # fmt: skip
MAX_QUERY = 200  # characters of ``q``
CURSOR = re.compile(r"[A-Za-z0-9_-]*")
KEPT_INDEXES = 8  # commits whose sorted deployments are kept (writes make new ones)
KEPT_GROUPS = 1024  # groups' sorted deployments kept, by commit and group

Key = tuple[str, str, str]


@dataclass(frozen=True)
class Listing:
    """One page of deployments. ``next``: the cursor of the page after it (None: this is
    the last). ``previous``, when asked for: the cursor of the page before it, ``""`` when
    that is the first page, None when no page comes before."""

    items: list[dict[str, Any]]
    next: str | None
    previous: str | None = None


@dataclass(frozen=True)
class _Index:
    """A state's deployments by group, each group's sorted by app and id."""

    groups: list[str]
    by_group: dict[str, list[Deployment]]


_INDEXES: Bounded[str, _Index] = Bounded(max_items=KEPT_INDEXES)
_GROUPS: Bounded[tuple[str, str], list[Deployment]] = Bounded(max_items=KEPT_GROUPS)


class Desired(Protocol):
    """What a listing reads of the service's state at one commit."""

    commit: str | None
    groups: dict[str, Group]
    deployments: dict[str, Deployment]

    def in_group(self, group: str) -> list[Deployment]: ...


def order(value: Deployment) -> Key:
    return (value.group, value.app, value.id)


def encode_cursor(key: Key) -> str:
    """Opaque to callers: the (group, app, id) of the last deployment of a page."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> Key:
    try:
        if not CURSOR.fullmatch(text):
            raise ValueError(text)
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        key = json.loads(raw.decode())
    except (binascii.Error, ValueError):
        key = None
    if not (isinstance(key, list) and len(key) == 3 and all(isinstance(k, str) for k in key)):
        raise InvalidRequest.field("after", "must be a cursor from a Link header of this list")
    return (key[0], key[1], key[2])


def page(
    svc: Service,
    user: User,
    *,
    monitor: Monitor,
    group: str | None = None,
    owner: str | None = None,
    state: str | None = None,
    text: str | None = None,
    after: str | None = None,
    limit: int = PAGE,
    previous: bool = False,
) -> Listing:
    """The user's deployments (and those deleted in Git the cluster still runs), by group,
    app and id, after the cursor ``after``, filtered by ``group``, ``owner``, status
    ``state`` and ``text`` (in the name, app or image, any case). Live status is computed
    for the page only, except with ``state``, which needs the status of each candidate
    until the page is full (still in memory). ``previous``: also find where the page
    before this one starts (a walk back of one page)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest.field("limit", f"must be 1..{MAX_PAGE}, got {limit}")
    if state is not None and state not in STATES:
        raise InvalidRequest.field("state", f"must be one of {', '.join(STATES)}")
    if text is not None and len(text) > MAX_QUERY:
        raise InvalidRequest.field("q", f"must be at most {MAX_QUERY} characters")
    start = decode_cursor(after) if after else None
    current = svc.state() if group is None else svc.fresh_state(group=group)
    if group is not None:
        svc.member_group(current, user, group)  # 404 for a group that is not the user's
    orphans = monitor.orphans(visible_groups(current.groups, user, group))
    deleted = {orphan.name for orphan in orphans}
    names, listed = _lists(current, user, group, orphans)
    card = views.cards(svc, user, monitor)
    needle = text.casefold() if text else ""

    def accept(item: Deployment) -> tuple[bool, dict[str, Any] | None]:
        """Whether the filters take it, and its card when the state filter made it."""
        if owner is not None and item.owner != owner:
            return False, None
        if needle and not any(
            needle in value.casefold() for value in (item.name, item.app, item.spec.image)
        ):
            return False, None
        if state is None:
            return True, None
        data = card(item, item.name in deleted)
        return data["status"]["state"] == state, data

    found: list[tuple[Deployment, dict[str, Any] | None]] = []
    more = False
    for item in _forward(names, listed, start):
        taken, data = accept(item)
        if not taken:
            continue
        if len(found) == limit:
            more = True
            break
        found.append((item, data))
    before = None
    if previous and start is not None:
        bound, inclusive = (order(found[0][0]), False) if found else (start, True)
        walked = (item for item in _backward(names, listed, bound, inclusive) if accept(item)[0])
        before = _previous_cursor(walked, limit)
    return Listing(
        items=[data or card(item, item.name in deleted) for item, data in found],
        next=encode_cursor(order(found[-1][0])) if more else None,
        previous=before,
    )


def visible_groups(groups: Mapping[str, Group], user: User, group: str | None = None) -> set[str]:
    """The names of the user's groups (without computing their usage)."""
    visible = {name for name, record in groups.items() if user.member_of(name, record.members)}
    return visible if group is None else visible & {group}


def _index(current: Desired) -> _Index:
    """Every deployment of a state by group, sorted: built once per commit."""
    found = _INDEXES.get(current.commit) if current.commit else None
    if found is None:
        by_group: dict[str, list[Deployment]] = {}
        for deployment in current.deployments.values():
            by_group.setdefault(deployment.group, []).append(deployment)
        for items in by_group.values():
            items.sort(key=order)
        found = _Index(groups=sorted(by_group), by_group=by_group)
        if current.commit:
            _INDEXES.put(current.commit, found)
    return found


def _in_group(current: Desired, group: str) -> list[Deployment]:
    """One group's deployments, sorted (the state keeps them by group: this costs the
    group's size, once per commit)."""
    key = (current.commit or "", group)
    found = _GROUPS.get(key) if current.commit else None
    if found is None:
        listed = current.in_group(group)  # with the last readable versions of unreadable files
        found = sorted((d for d in listed if current.deployments.get(d.name) is d), key=order)
        if current.commit:
            _GROUPS.put(key, found)
    return found


def _lists(
    current: Desired, user: User, group: str | None, orphans: list[Deployment]
) -> tuple[list[str], Callable[[str], list[Deployment]]]:
    """The groups to walk, in order, and what lists each one's deployments with its
    orphans. A group whose record cannot be read lists no members: only those
    ``member_of`` lets in without (platform admins, callers carrying the group) see its
    deployments; a platform admin's walk covers every group with deployments."""
    extra: dict[str, list[Deployment]] = {}
    for orphan in orphans:
        extra.setdefault(orphan.group, []).append(orphan)

    index = None
    if group is not None:
        names = [group]
    elif not user.admin:
        names = sorted(visible_groups(current.groups, user) | user.groups | set(extra))
    else:
        index = _index(current)
        names = sorted({*index.groups, *extra})

    def listed(name: str) -> list[Deployment]:
        items = _in_group(current, name) if index is None else index.by_group.get(name, [])
        more = extra.get(name)
        return sorted([*items, *more], key=order) if more else items

    return names, listed


def _forward(
    names: list[str], listed: Callable[[str], list[Deployment]], start: Key | None
) -> Iterator[Deployment]:
    """The deployments after ``start`` (all of them without), in order."""
    first = 0 if start is None else bisect.bisect_left(names, start[0])
    for name in names[first:]:
        items = listed(name)
        begin = 0
        if start is not None and name == start[0]:
            begin = bisect.bisect_right(items, start, key=order)
        yield from items[begin:]


def _backward(
    names: list[str], listed: Callable[[str], list[Deployment]], bound: Key, inclusive: bool
) -> Iterator[Deployment]:
    """The deployments before ``bound`` (and it, if ``inclusive``), nearest first."""
    last = bisect.bisect_right(names, bound[0])
    cut = bisect.bisect_right if inclusive else bisect.bisect_left
    for name in reversed(names[:last]):
        items = listed(name)
        end = cut(items, bound, key=order) if name == bound[0] else len(items)
        yield from reversed(items[:end])


def _previous_cursor(walked: Iterator[Deployment], limit: int) -> str | None:
    """Where the page before starts, from the deployments before this page (nearest
    first): after the one a page further back; the first page ("") when fewer come
    before; None when none do."""
    count = 0
    for item in walked:
        count += 1
        if count > limit:
            return encode_cursor(order(item))
    return "" if count else None
