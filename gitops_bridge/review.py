"""Review mode: every change goes to its own branch and waits for approval.

A change request *is* its branch (``changes/<group>/<deployment>/<action>-<id>``) on the
GitOps remote: one commit on top of the main it was planned on, authored by the user.
With no forge configured, gitops-bridge reviews it itself (approve = carry the change onto
the current main with validation and quota checked again, then delete the branch;
close = delete the branch). With a forge (GitHub, Gitea/Forgejo) the branch becomes a pull
request; its merge or close is learned from the webhook or by polling.

A decided change request (approved, merged or closed) is recorded on the remote as its
branch goes (``gitrepo.DecisionLog``): who proposed it, who decided and when; the Changes
lists read it a page at a time.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from gitops_bridge import forge as forges
from gitops_bridge import history, models, render
from gitops_bridge.cache import Bounded
from gitops_bridge.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
)
from gitops_bridge.gitrepo import CHANGES_PREFIX, Author, DecisionLog, LogEntry, Record, Snapshot
from gitops_bridge.identity import User
from gitops_bridge.models import Deployment, Group
from gitops_bridge.render import Change, digest, layout
from gitops_bridge.service import (
    TRAILER_ACTION,
    TRAILER_DEPLOYMENT,
    Plan,
    Service,
    Written,
    random_id,
)

log = logging.getLogger(__name__)

STATES = ("open", "closed", "merged", "all")  # GET /api/v1/changes?state=
DECIDED = ("closed", "merged")
PAGE = 50  # change requests a page, unless asked for fewer or more
MAX_PAGE = 200


@dataclass(frozen=True)
class ChangeRequest:
    id: str  # <group>/<deployment>/<action>-<random>
    branch: str
    group: str
    target: str  # the deployment's name
    action: str
    sha: str
    base: str | None
    author: str
    email: str
    time: int
    subject: str
    message: str
    url: str
    state: str = "open"  # open | merged | closed
    number: int | None = None
    decided_by: str = ""  # who approved (merged) or closed it; "": open, or not known
    decided_at: int | None = None
    merge_commit: str | None = None  # merged: its commit on main

    @property
    def body(self) -> str:
        """The message without its subject and trailers."""
        lines = self.message.split("\n")[1:]
        while lines and (not lines[-1].strip() or _is_trailer(lines[-1])):
            lines.pop()
        return "\n".join(lines).strip()


def _is_trailer(line: str) -> bool:
    key, sep, _ = line.partition(": ")
    return bool(sep) and key.replace("-", "").isalnum() and key[:1].isupper()


@dataclass(frozen=True)
class ChangePage:
    """Change requests, newest first; ``next``: the cursor of the page after (None: last)."""

    items: list[ChangeRequest]
    next: str | None


class Reviews:
    def __init__(self, svc: Service, forge: forges.Forge | None = None) -> None:
        self.svc = svc
        self.forge = forge
        self.decisions = DecisionLog(svc.repo)
        self._pulls: dict[str, forges.PullRequest] = {}  # branch -> newest known PR
        self._entries: Bounded[str, LogEntry] = Bounded(max_items=1024)  # sha -> commit
        self._lock = threading.Lock()

    # ---- proposing ---------------------------------------------------------------

    def propose(
        self,
        user: User,
        group: Group,
        action: str,
        build: Callable[[Snapshot], Change],
        planned: list[Plan],
        target: str | None,
    ) -> Written:
        suffix = f"{action}-{random_id()}"

        def branch() -> str:
            name = target or _planned_name(planned)
            return f"{CHANGES_PREFIX}{group.name}/{name}/{suffix}"

        commit, name = self.svc.repo.propose(build, author=self.svc.author(user), branch=branch)
        deployment = planned[0].deployment if planned else None
        if not commit.changed:
            return Written(commit=commit, deployment=deployment)
        if self.forge is not None:
            change = self._from_branch(name, commit.sha or "")
            pull = self.forge.open_pull_request(
                branch=name,
                base=self.svc.repo.branch,
                title=change.subject,
                body=f"{change.body}\n\nRequested by {user.name} through gitops-bridge.",
            )
            with self._lock:
                self._pulls[name] = pull
        return Written(
            commit=commit, deployment=deployment, change=self._from_branch(name, commit.sha or "")
        )

    # ---- reading -------------------------------------------------------------------

    def change_of(self, sha: str) -> ChangeRequest | None:
        """The open change request whose branch ends in ``sha``."""
        for tip in self.svc.repo.change_branches():
            if tip.sha == sha:
                return self._from_branch(tip.branch, tip.sha)
        return None

    def open_changes(self, user: User, group: str | None = None) -> list[ChangeRequest]:
        self.svc.repo.refresh()
        state = self.svc.state()
        result = []
        for tip in self.svc.repo.change_branches():
            change = self._from_branch(tip.branch, tip.sha)
            if change.state != "open" or (group is not None and change.group != group):
                continue
            owner = state.groups.get(change.group)
            if owner is not None and user.member_of(owner.name, owner.members):
                result.append(change)
        return sorted(result, key=lambda c: c.time, reverse=True)

    def get(self, user: User, change_id: str) -> ChangeRequest:
        """The open change request, to members of its group; to anyone else it does not
        exist (the same answer as for one that was never made)."""
        self.svc.repo.refresh(max_age=0)
        branch = CHANGES_PREFIX + change_id
        missing = f"change request {change_id!r} not found (approved or closed already?)"
        for tip in self.svc.repo.change_branches():
            if tip.branch == branch:
                change = self._from_branch(tip.branch, tip.sha)
                group = self.svc.state().groups.get(change.group)
                if group is None or not user.member_of(group.name, group.members):
                    raise NotFound(missing)
                return change
        raise NotFound(missing)

    def pending_for(self, user: User) -> dict[str, ChangeRequest]:
        """The newest open change request of each deployment the user can see."""
        pending: dict[str, ChangeRequest] = {}
        for change in self.open_changes(user):
            pending.setdefault(change.target, change)
        return pending

    def proposed(self, change: ChangeRequest) -> Deployment | None:
        """The deployment as the change request would leave it."""
        path = self._path(change)
        blob = self.svc.repo.blob_at(change.sha, path) if path else None
        return None if blob is None else render.parse_helmrelease(self.svc.repo.parsed_blob(blob))

    def diff(self, change: ChangeRequest) -> str:
        path = self._path(change)
        # the settings digest is bookkeeping, not a change anyone proposed (render.digest)
        return digest.hide(self.svc.repo.diff(change.sha, path)) if path else ""

    def _path(self, change: ChangeRequest) -> str | None:
        suffix = f"/{layout.APPS_DIR}/{change.target}.yaml"
        paths = self.svc.repo.changed_paths(change.sha)
        return next((p for p in paths if p.endswith(suffix)), None)

    def _from_branch(self, branch: str, sha: str) -> ChangeRequest:
        entry = self._entries.get(sha)
        if entry is None:
            entry = self.svc.repo.log(commit=sha, limit=1)[0]
            self._entries.put(sha, entry)
        change_id = branch.removeprefix(CHANGES_PREFIX)
        group, _, rest = change_id.partition("/")
        target, _, _ = rest.partition("/")
        pull = self._pulls.get(branch)
        url = pull.url if pull else f"/changes/{change_id}"
        return ChangeRequest(
            id=change_id,
            branch=branch,
            group=group,
            target=entry.trailer(TRAILER_DEPLOYMENT) or target,
            action=entry.trailer(TRAILER_ACTION) or "",
            sha=sha,
            base=entry.parent,
            author=entry.author,
            email=entry.email,
            time=entry.time,
            subject=entry.subject,
            message=entry.message,
            url=url,
            state=pull.state if pull else "open",
            number=pull.number if pull else None,
        )

    # ---- deciding ------------------------------------------------------------------

    def approve(self, user: User, change_id: str) -> Written:
        """Carry the change onto the current main (validation and quota again), drop the branch."""
        change = self.get(user, change_id)
        if self.forge is not None:
            raise Conflict(f"changes are reviewed on {self.forge.name}: {change.url}")
        group = self.svc.state().groups[change.group]
        settings = self.svc.settings.review
        if settings.approvers == "admins" and not user.admin_of(group.admins):
            raise Forbidden(f"only admins of group {group.name} may approve its changes")
        # the bridge commits as the folded name; a branch pushed by hand may spell it otherwise
        if not settings.self_approval and user.name == models.fold_name(change.author):
            raise Forbidden(f"{user.name} wrote this change: another member must approve it")
        path = self._path(change)
        if path is None:
            raise Conflict(f"change request {change_id} changes no deployment file")
        base = self.svc.repo.read_at(change.base, path)
        proposed = self.svc.repo.read_at(change.sha, path)
        values = history.values_path(path)
        base_values = self.svc.repo.read_at(change.base, values)
        proposed_values = self.svc.repo.read_at(change.sha, values)

        def build(snapshot: Snapshot) -> Change:
            state = self.svc.state(snapshot)
            content = history.three_way(
                self.svc,
                path=path,
                ours=snapshot.read(path),
                base=base,
                theirs=proposed,
                what=f"approving {change_id}",
            )
            secret = history.values_three_way(
                self.svc,
                path=values,
                ours=snapshot.read(values),
                base=base_values,
                theirs=proposed_values,
                what=f"approving {change_id}",
            )
            message = change.subject + (f"\n\n{change.body}" if change.body else "")
            plan = history.plan_content(
                self.svc,
                snapshot,
                state,
                path,
                content,
                message,
                change.action or "update",
                trailers={"Approved-by": user.name, "Change-Request": change.id},
                values=secret,
            )
            return plan.change

        author = Author(name=change.author, email=change.email)
        commit = self.svc.repo.apply(build, author=author)
        self._decide(change, "merged", by=user, commit=commit.sha)
        deployment = self.svc.state().deployments.get(change.target)
        return Written(commit=commit, deployment=deployment, change=change)

    def close(self, user: User, change_id: str) -> ChangeRequest:
        """Discard the change: close its pull request (if any) and delete the branch."""
        change = self.get(user, change_id)
        if self.forge is not None and change.number is not None:
            self.forge.close_pull_request(change.number)
        self._decide(change, "closed", by=user)
        return change

    # ---- forge state ---------------------------------------------------------------

    def sync(self) -> int:
        """Poll the forge: learn merged/closed pull requests; prune their branches."""
        if self.forge is None:
            return 0
        self.svc.repo.refresh(max_age=0)
        changed = 0
        for tip in self.svc.repo.change_branches():
            pull = self.forge.find_pull_request(tip.branch)
            if pull is not None:
                changed += self._learn(tip.branch, pull)
        return changed

    def on_webhook(self, *, headers: Any, body: bytes) -> forges.PullRequestEvent | None:
        if self.forge is None:
            raise NotFound("no forge is configured")
        event = self.forge.parse_webhook(headers=headers, body=body)
        if event is None or not event.branch.startswith(CHANGES_PREFIX):
            return event
        pull = self.forge.find_pull_request(event.branch)
        if pull is not None:
            self._learn(event.branch, pull)
        return event

    def _learn(self, branch: str, pull: forges.PullRequest) -> int:
        with self._lock:
            known = self._pulls.get(branch)
            self._pulls[branch] = pull
        if pull.state == "open" or (known is not None and known.state == pull.state):
            return 0
        log.info("pull request %s for %s is %s", pull.number, branch, pull.state)
        self.svc.repo.refresh(max_age=0)  # a merge moved main
        tips = {tip.branch: tip.sha for tip in self.svc.repo.change_branches()}
        tip = tips.get(branch)
        if tip is not None:
            change = self._from_branch(branch, tip)
        else:  # the forge deleted the branch itself: what its name says
            change_id = branch.removeprefix(CHANGES_PREFIX)
            group, _, rest = change_id.partition("/")
            change = ChangeRequest(
                id=change_id, branch=branch, group=group, target=rest.partition("/")[0],
                action="", sha="", base=None, author="", email="", time=0, subject=branch,
                message="", url=pull.url, number=pull.number,
            )  # fmt: skip
        self._decide(
            change, pull.state, by=None, decider=pull.merged_by or "", commit=pull.merge_commit
        )
        return 1

    # ---- the record of decisions ---------------------------------------------------

    def _decide(
        self,
        change: ChangeRequest,
        decision: str,
        *,
        by: User | None,
        decider: str = "",
        commit: str | None = None,
    ) -> bool:
        """Drop the change's branch and record the decision with it (one push): ``by`` the
        user who decided here; a forge's decision names its ``decider`` when it can."""
        name = by.name if by is not None else decider
        trailers = {
            "Change-Request": change.id,
            "Decision": decision,
            "Group": change.group,
            "Deployment": change.target,
            "Action": change.action,
            "Proposed-By": change.author,
            "Proposed-At": str(change.time) if change.time else "",
            "Decided-By": name,
            "Merge-Commit": commit or "",
            "Pull-Request": str(change.number) if change.number is not None else "",
            "Pull-Request-Url": change.url if change.number is not None else "",
        }
        lines = [f"{key}: {_one_line(value)}" for key, value in trailers.items() if value]
        message = f"{_one_line(change.subject)}\n\n" + "\n".join(lines)
        author = self.svc.author(by) if by is not None else self.svc.repo.committer
        return self.decisions.decide(
            branch=change.branch,
            tip=change.sha or None,
            author=author,
            message=message,
            key=change.id,
            if_gone=by is None,
        )

    def page(
        self,
        user: User,
        *,
        states: Collection[str] = ("open",),
        group: str | None = None,
        after: str | None = None,
        limit: int = PAGE,
    ) -> ChangePage:
        """The change requests of the user's groups (``group``: of that one) in these
        ``states`` (open, closed, merged), newest first, ``limit`` a page after the cursor
        ``after``: the open ones first (from the branches), then the decided ones (from the
        record), each newest first."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest.field("limit", f"must be 1..{MAX_PAGE}, got {limit}")
        start = "open" if "open" in states else "decided"
        phase, key = _decode(after) if after else (start, None)
        items: list[ChangeRequest] = []
        if "open" in states and phase == "open":
            opened = self.open_changes(user, group)
            begin = 0
            if key is not None:
                begin = next(
                    (i + 1 for i, c in enumerate(opened) if [c.time, c.id] == key), len(opened)
                )
            items = opened[begin : begin + limit]
            if begin + limit < len(opened):
                return ChangePage(items=items, next=_encode("open", [items[-1].time, items[-1].id]))
            phase, key = "decided", None
        decisions = [state for state in DECIDED if state in states]
        if not decisions or phase != "decided":
            return ChangePage(items=items, next=None)
        patterns = self._patterns(user, group, decisions)
        if patterns is None:
            return ChangePage(items=items, next=None)
        room = limit - len(items)
        if room == 0:  # a full page of open ones: is there a decided one after it?
            found = self.decisions.page(patterns=patterns, after=None, limit=1)
            more = bool(found.records) or found.next is not None
            return ChangePage(items=items, next=_encode("decided", None) if more else None)
        cursor = key if isinstance(key, str) else None
        found = self.decisions.page(patterns=patterns, after=cursor, limit=room)
        items += [_decided(record) for record in found.records]
        following = _encode("decided", found.next) if found.next else None
        return ChangePage(items=items, next=following)

    def _patterns(self, user: User, group: str | None, decisions: list[str]) -> list[str] | None:
        """What a record of these decisions in the user's groups says (git log --grep);
        None: the user sees no group."""
        patterns = [f"^Decision: ({'|'.join(decisions)})$"]
        if user.admin and group is None:
            return patterns
        groups = self.svc.state().groups
        visible = sorted(
            name
            for name, record in groups.items()
            if (group is None or name == group) and user.member_of(name, record.members)
        )
        if not visible:
            return None
        return [*patterns, f"^Group: ({'|'.join(visible)})$"]


def _planned_name(planned: list[Plan]) -> str:
    if planned and planned[0].deployment is not None:
        return planned[0].deployment.name
    return "change"


def parse_states(text: str | None) -> tuple[str, ...]:
    """``state`` of GET /api/v1/changes: open (no value: open), closed, merged or all."""
    if not text:
        return ("open",)
    if text not in STATES:
        message = f"must be one of {', '.join(STATES)}, got {text!r}"
        raise InvalidRequest.field("state", message)
    return ("open", *DECIDED) if text == "all" else (text,)


def _decided(record: Record) -> ChangeRequest:
    """A decided change request as its record tells it."""
    change_id = record.trailer("Change-Request")
    number = record.trailer("Pull-Request")
    proposed = record.trailer("Proposed-At")
    return ChangeRequest(
        id=change_id,
        branch=CHANGES_PREFIX + change_id,
        group=record.trailer("Group"),
        target=record.trailer("Deployment"),
        action=record.trailer("Action"),
        sha=record.change,
        base=None,
        author=record.trailer("Proposed-By"),
        email="",
        time=int(proposed) if proposed.isdigit() else 0,
        subject=record.subject,
        message=record.subject,
        url=record.trailer("Pull-Request-Url") or "",
        state=record.trailer("Decision") or "closed",
        number=int(number) if number.isdigit() else None,
        decided_by=record.trailer("Decided-By"),
        decided_at=record.time,
        merge_commit=record.trailer("Merge-Commit") or None,
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _encode(phase: str, key: object) -> str:
    """Opaque to callers: the list's phase (open, decided) and where the page ended."""
    raw = json.dumps([phase, key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(text: str) -> tuple[str, object]:
    try:
        phase, key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, TypeError):
        phase, key = None, None
    valid = (phase == "open" and isinstance(key, list) and len(key) == 2) or (
        phase == "decided" and (key is None or isinstance(key, str))
    )
    if not valid:
        raise InvalidRequest.field("after", "must be a cursor from a Link header of this list")
    return str(phase), key
