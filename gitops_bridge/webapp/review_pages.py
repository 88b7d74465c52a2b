"""History (revert a change, restore a version) and Changes (review mode) pages."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from gitops_bridge import history, review
from gitops_bridge.errors import BridgeError
from gitops_bridge.running import LOOKBACK
from gitops_bridge.service import Written
from gitops_bridge.webapp import context
from gitops_bridge.webapp.pages import Action, Page, bp, flash_commit, run_action

# ---- history: revert a change, restore a version --------------------------------------


@bp.get("/deployments/<name>/history")
def deployment_history(name: str) -> str:
    return _history_page(name)


def _history_page(name: str, *, error: BridgeError | None = None) -> str:
    """One page of versions with their diffs (``?before=``: the older ones)."""
    svc, user = context.svc(), context.user()
    before = request.args.get("before") or None
    found = history.page(svc, user, name, diffs=True, before=before)
    newest = (
        found.versions[:1] if before is None else history.page(svc, user, name, limit=1).versions
    )
    return render_template(
        "history.html",
        name=name,
        versions=found.versions,
        newest=newest[0] if newest else None,
        older=found.next,
        error=error,
        running=context.monitor().running_of(name),  # which version the cluster runs
        lookback=LOOKBACK,
    )


def _on_version(name: str, act: Action) -> Page:
    return run_action(
        act,
        failed=lambda exc: _history_page(name, error=exc),
        then=url_for(".deployments"),
    )


@bp.get("/deployments/<name>/revert")
def confirm_revert(name: str) -> Page:
    return _confirm_version(name, "revert")


@bp.get("/deployments/<name>/restore")
def confirm_restore(name: str) -> Page:
    return _confirm_version(name, "restore")


def _confirm_version(name: str, action: str) -> Page:
    """The diff a revert or restore would commit now, and the button that commits it; a
    refusal (a conflict, the quota) is said here, before anyone confirms."""
    commit = request.args.get("commit", "")
    try:
        found = history.preview(context.svc(), context.user(), name, commit, action)
    except BridgeError as exc:
        if exc.status == 404:
            raise
        return _history_page(name, error=exc), exc.status
    return render_template("confirm_version.html", name=name, preview=found), 200


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


CHANGES = 50  # change requests a page of Changes


def _changes_page(*, error: BridgeError | None = None, failed: str | None = None) -> str:
    """Open (each with its diff and the decisions) or, ``?view=closed``, closed and merged
    (who proposed, who decided and when), newest first, ``CHANGES`` a page."""
    reviews = context.svc().review
    closed = request.args.get("view") == "closed"
    after = request.args.get("after") or None
    states = review.DECIDED if closed else ("open",)
    found = reviews.page(context.user(), states=states, after=after, limit=CHANGES)
    view = "closed" if closed else None
    return render_template(
        "changes.html",
        view=view or "open",
        changes=[] if closed else [(change, reviews.diff(change)) for change in found.items],
        decided=found.items if closed else [],
        next=url_for(".changes", view=view, after=found.next) if found.next else None,
        first_page=url_for(".changes", view=view) if after else None,
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
    flash_commit(
        f"You approved “{written.change.subject}” (proposed by {written.change.author})",
        written.commit,
    )
    return redirect(url_for(".changes"))


@bp.get("/changes/<path:change_id>/close")
def confirm_close(change_id: str) -> Page:
    """The confirm step without JavaScript (with it, the page opens the same form in a dialog)."""
    found = context.svc().review.get(context.user(), change_id)
    return render_template("close_confirm.html", change=found), 200


@bp.post("/changes/<path:change_id>/close")
def close_change(change_id: str) -> Page:
    try:
        closed = context.svc().review.close(context.user(), change_id)
    except BridgeError as exc:
        return _decision_failed(change_id, exc)
    flash(f"Closed “{closed.subject}”: nothing committed", "success")
    return redirect(url_for(".changes"))
