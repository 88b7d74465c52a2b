"""The pages' blueprint and what its views share: template filters, flashes, and the
one shape of every action (call the service once, then flash and redirect, or render the
page again with the error and its status code)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, flash, g, redirect, url_for
from markupsafe import Markup
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from gitops_bridge import models
from gitops_bridge.errors import BridgeError, FieldProblem, InvalidRequest
from gitops_bridge.gitrepo import CommitResult
from gitops_bridge.service import Written
from gitops_bridge.webapp import context

bp = Blueprint("ui", __name__)

Page = Response | tuple[str, int]
Action = Callable[[], tuple[str, Written]]  # -> (what was done, for the flash; the write)


@bp.app_context_processor
def _globals() -> dict[str, Any]:
    settings = context.settings()
    return {
        "domain": settings.domain,
        "open_change_count": _open_change_count,
        "workspaces_url": settings.workspaces_url,  # the nav's Workspaces tab (empty: none)
        "admin_group": settings.admin_group,  # whom a user without a group asks for access
        "simulated_cluster": settings.kubernetes.simulated,  # the top bar says so (the demo)
        "may_approve": _may_approve,
    }


def _may_approve(author: str) -> bool:
    """Offer Approve to this user? Not to the change's author unless self-approval is on
    (the service refuses it anyway: the button would only lead to a 403)."""
    user = g.get("user")
    if user is None:
        return False
    return context.settings().review.self_approval or user.name != models.fold_name(author)


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
def ago(timestamp: int) -> str:
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


def flash_link(text: str, category: str, link: tuple[str, str] | None = None) -> None:
    """A flash, optionally ending in a link (Markup survives the session: Flask tags it)."""
    if link is None:
        flash(text, category)
    else:
        flash(Markup('{} · <a href="{}">{}</a>').format(text, *link), category)


def flash_commit(text: str, commit: CommitResult, *, link: tuple[str, str] | None = None) -> None:
    if commit.changed:
        flash_link(f"{text}: committed {(commit.sha or '')[:7]}", "success", link)
    else:
        flash_link(f"{text}: nothing to change, main has it already", "info")


def flash_written(text: str, written: Written, *, link: tuple[str, str] | None = None) -> None:
    """`<text>: committed <sha7>`, or in review mode `<text>: waiting for review` + link."""
    change = written.change
    if change is not None and change.state == "open":
        href = url_for(".change", change_id=change.id)
        flash_link(
            f"Waiting for review: “{change.subject}”; nothing changes until another member "
            "approves it",
            "info",
            (href, "View the change"),
        )
    else:
        flash_commit(text, written.commit, link=link)


def run_action(
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
    flash_written(text, written, link=link)
    return redirect(then)


def int_field(form: MultiDict[str, str], name: str, problems: list[FieldProblem]) -> Any:
    text = form.get(name, "").strip()
    try:
        return int(text)
    except ValueError:
        problems.append(FieldProblem(name, f"must be a whole number, got {text!r}"))
        return None


def numbers(form: MultiDict[str, str], *names: str) -> list[Any]:
    """Whole-number fields, or InvalidRequest naming each one that is not."""
    problems: list[FieldProblem] = []
    values = [int_field(form, name, problems) for name in names]
    if problems:
        raise InvalidRequest.of(problems)
    return values


def my_groups() -> list[str]:
    return [view.group.name for view in context.svc().groups(context.user())]
