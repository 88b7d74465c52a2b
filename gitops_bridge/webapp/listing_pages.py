"""The Deployments page, in a size that does not grow with what the user may see.

Someone who sees several groups and more deployments than one page of cards (a platform
admin, a member of many teams) gets an overview first: one row per group with its
deployments and requests against the quota and its changes waiting for review, ``ROWS``
groups a page, each row linking to the group's cards. Cards come ``CARDS`` a page
(Previous/Next), filtered by group, owner, status and text in a form that round-trips; a
user whose deployments fit on one page sees them all at once, as before.

The live refresh asks for what the page shows only: the cards' page of the API, or the
overview's rows (``?part=rows``); both answer 304 to a matching ``If-None-Match``.

Recently deleted (``/deployments/deleted``) lists what was deleted from main lately, a group
or all of the user's, each with a Restore of its last version.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from flask import make_response, render_template, request, url_for
from werkzeug.wrappers import Response

from gitops_bridge import deletions, quantity
from gitops_bridge.errors import BridgeError
from gitops_bridge.quantity import Quantity
from gitops_bridge.service import GroupView
from gitops_bridge.webapp import context, listing, views
from gitops_bridge.webapp.pages import bp

CARDS = 50  # deployments a page of cards; more than this in several groups: the overview
ROWS = 100  # groups a page of the overview
CHOICES = 100  # groups the group filter lists to choose from; beyond, it is a text field


@dataclass(frozen=True)
class Where:
    """Which cards the page shows: a group, filters, and the cursor of the page (each
    optional; none: the overview or every card, whichever fits)."""

    group: str | None = None
    owner: str | None = None
    state: str | None = None
    q: str | None = None
    after: str | None = None

    @classmethod
    def of(cls, values: Mapping[str, str]) -> Where:
        """From a query string or a card's form (empty fields: not set)."""
        fields = [field.name for field in dataclasses.fields(cls)]
        return cls(**{name: (values.get(name) or "").strip() or None for name in fields})

    @property
    def filtered(self) -> bool:
        return any((self.owner, self.state, self.q))

    @property
    def chosen(self) -> bool:
        """Cards asked for: a group, a filter or a page after the first."""
        return self.filtered or self.group is not None or self.after is not None

    def query(self, **changes: str | None) -> dict[str, Any]:
        """As URL parameters or hidden form fields: the fields that are set."""
        values = dataclasses.asdict(self) | changes
        return {name: value for name, value in values.items() if value}

    def link(self, **changes: str | None) -> str:
        """The address of this page of cards (``changes``: of another, e.g. ``after``)."""
        return url_for("ui.deployments", **self.query(**changes))


@bp.get("/deployments")
def deployments() -> str | Response:
    if request.args.get("part") == "rows":
        return _overview_rows(request.args.get("groups_after") or None)
    return render(Where.of(request.args))


def render(where: Where, *, error: BridgeError | None = None, failed: str | None = None) -> str:
    """The page: the overview when nothing is chosen and the cards would not fit on one
    page of several groups; otherwise the chosen page of cards."""
    if not where.chosen:
        found = context.svc().groups(context.user())
        if len(found) > 1 and sum(view.deployments for view in found) > CARDS:
            start = request.args.get("groups_after") or None
            return _overview(found, start, error=error, failed=failed)
    return _cards(where, error=error, failed=failed)


def _page(where: Where, **values: Any) -> str:
    """The page around the cards or the overview's rows: filters, banners, pagers."""
    svc, user = context.svc(), context.user()
    names = sorted(listing.visible_groups(svc.state().groups, user))
    return render_template(
        "deployments.html",
        choices=names if len(names) <= CHOICES else None,
        states=listing.STATES,
        connected=context.monitor().connected,
        problems=svc.problems(user, where.group),
        where=where,
        **values,
    )


def _cards(where: Where, *, error: BridgeError | None, failed: str | None) -> str:
    svc, user, monitor = context.svc(), context.user(), context.monitor()
    found = listing.page(
        svc,
        user,
        monitor=monitor,
        group=where.group,
        owner=where.owner,
        state=where.state,
        text=where.q,
        after=where.after,
        limit=CARDS,
        previous=True,
    )
    first = where.after is None and not where.filtered
    pending = views.pending_creates(svc, user, where.group) if first else []
    return _page(
        where=where,
        cards=[*pending, *found.items],
        live=url_for("api.list_deployments", **where.query(), limit=CARDS),
        next=None if found.next is None else where.link(after=found.next),
        previous=None if found.previous is None else where.link(after=found.previous or None),
        first_page=where.link(after=None) if found.previous else None,
        rows=None,
        error=error,
        failed=failed,
    )


# ---- the overview ----------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    """A page of the overview's rows; the cursors (group names) of the pages around it."""

    rows: list[dict[str, Any]]
    next: str | None
    previous: str | None  # "": the first page; None: this is the first

    @property
    def etag(self) -> str:
        text = json.dumps(self.rows, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def _table(found: list[GroupView], start: str | None) -> Overview:
    """The ``ROWS`` groups after the group named ``start`` (the user's groups, by name)."""
    names = [view.group.name for view in found]
    begin = bisect.bisect_right(names, start) if start else 0
    shown = found[begin : begin + ROWS]
    reviews = context.svc().review
    waiting: Counter[str] = Counter()
    if reviews is not None and shown:
        waiting.update(change.group for change in reviews.open_changes(context.user()))
    previous = None
    if begin > 0:
        previous = names[begin - ROWS - 1] if begin > ROWS else ""
    return Overview(
        rows=[_row(view, waiting=waiting[view.group.name]) for view in shown],
        next=names[begin + ROWS - 1] if begin + ROWS < len(names) else None,
        previous=previous,
    )


def _row(view: GroupView, *, waiting: int) -> dict[str, Any]:
    quota = view.group.quota
    return {
        "name": view.group.name,
        "deployments": view.deployments,
        "deploymentsQuota": quota.deployments,
        "deploymentsShare": _share(view.deployments, quota.deployments),
        "cpu": _cores(view.usage.cpu),
        "cpuQuota": quota.cpu,
        "cpuShare": _share(view.usage.cpu.value, quantity.parse(quota.cpu).value),
        "memory": view.usage.memory.human_memory(),
        "memoryQuota": quota.memory,
        "memoryShare": _share(view.usage.memory.value, quantity.parse(quota.memory).value),
        "waiting": waiting,
        "problems": len(view.files),
    }


def _cores(value: Quantity) -> str:
    """Rounded for people: 220m below a core, 31.4 above."""
    return value.format_cpu() if value.value < 1 else f"{float(value.value):.4g}"


def _share(used: Fraction | int, limit: Fraction | int) -> float:
    """How much of the quota is used, 0..1 (a meter's value)."""
    if limit <= 0:
        return 1.0 if used > 0 else 0.0
    return round(min(1.0, float(Fraction(used) / limit)), 3)


def _overview(
    found: list[GroupView],
    start: str | None,
    *,
    error: BridgeError | None,
    failed: str | None,
) -> str:
    table = _table(found, start)
    return _page(
        where=Where(),
        cards=[],
        live=None,
        rows=table.rows,
        etag=table.etag,
        source=url_for(".deployments", part="rows", groups_after=start),
        next=None if table.next is None else url_for(".deployments", groups_after=table.next),
        previous=(
            None
            if table.previous is None
            else url_for(".deployments", groups_after=table.previous or None)
        ),
        first_page=url_for(".deployments") if table.previous else None,
        group_count=len(found),
        total=sum(view.deployments for view in found),
        error=error,
        failed=failed,
    )


def _overview_rows(start: str | None) -> Response:
    """The overview's rows alone, for the live refresh: 304 while they are as tagged."""
    table = _table(context.svc().groups(context.user()), start)
    etag = table.etag
    known = request.if_none_match
    if not known.star_tag and known.contains_weak(etag):
        response = Response(status=304)
    else:
        response = make_response(render_template("_overview_rows.html", rows=table.rows))
    response.set_etag(etag)
    response.headers["Cache-Control"] = "no-cache"
    return response


# ---- recently deleted ---------------------------------------------------------------------


@bp.get("/deployments/deleted")
def deleted_deployments() -> str:
    """The deployments deleted from main lately (``deletions``), newest first, each with a
    Restore that asks first (a dialog; ``?confirm=<name>``: the same form on the page
    without JavaScript) and posts to ``restore_deployment`` with its last version."""
    svc, user = context.svc(), context.user()
    group = request.args.get("group") or None
    after = request.args.get("after") or None
    found = deletions.page(svc, user, group=group, after=after, limit=CARDS)
    names = sorted(listing.visible_groups(svc.state().groups, user))
    older = found.next and url_for(".deleted_deployments", group=group, after=found.next)
    return render_template(
        "deleted.html",
        items=found.items,
        group=group,
        choices=names if len(names) <= CHOICES else None,
        confirm=request.args.get("confirm") or None,
        days=deletions.DAYS,
        next=older,
        first_page=url_for(".deleted_deployments", group=group) if after else None,
    )
