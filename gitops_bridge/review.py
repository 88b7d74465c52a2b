"""Review mode: every change goes to its own branch and waits for approval.

A change request *is* its branch (``changes/<group>/<deployment>/<action>-<id>``) on the
GitOps remote: one commit on top of the main it was planned on, authored by the user.
With no forge configured, gitops-bridge reviews it itself (approve = carry the change onto
the current main with validation and quota checked again, then delete the branch;
close = delete the branch). With a forge (GitHub, Gitea/Forgejo) the branch becomes a pull
request; its merge or close is learned from the webhook or by polling.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gitops_bridge import forge as forges
from gitops_bridge import history, models, render
from gitops_bridge.cache import Bounded
from gitops_bridge.errors import Conflict, Forbidden, NotFound
from gitops_bridge.gitrepo import CHANGES_PREFIX, Author, LogEntry, Snapshot
from gitops_bridge.identity import User
from gitops_bridge.models import Deployment, Group
from gitops_bridge.render import Change, layout
from gitops_bridge.service import (
    TRAILER_ACTION,
    TRAILER_DEPLOYMENT,
    Plan,
    Service,
    Written,
    random_id,
)

log = logging.getLogger(__name__)


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


class Reviews:
    def __init__(self, svc: Service, forge: forges.Forge | None = None) -> None:
        self.svc = svc
        self.forge = forge
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
        return self.svc.repo.diff(change.sha, path) if path else ""

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
        self.svc.repo.delete_branch(change.branch)
        deployment = self.svc.state().deployments.get(change.target)
        return Written(commit=commit, deployment=deployment, change=change)

    def close(self, user: User, change_id: str) -> ChangeRequest:
        """Discard the change: close its pull request (if any) and delete the branch."""
        change = self.get(user, change_id)
        if self.forge is not None and change.number is not None:
            self.forge.close_pull_request(change.number)
        self.svc.repo.delete_branch(change.branch)
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
        self.svc.repo.delete_branch(branch)
        return 1


def _planned_name(planned: list[Plan]) -> str:
    if planned and planned[0].deployment is not None:
        return planned[0].deployment.name
    return "change"
