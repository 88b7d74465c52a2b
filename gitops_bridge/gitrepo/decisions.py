"""Decided change requests: a record on the remote beside the review branches.

An open change request is its branch; approving, merging or closing it deletes the branch.
So that who decided what, and when, outlives the branch, the push that deletes it also
appends a record commit to ``refs/reviews/decided``, atomically: the branch goes if and only
if its record lands, and the branch is deleted only at the tip the decision was made on (a
lease), so two replicas deciding the same change record it once. Each record has the empty
tree, the record before it as first parent (the first-parent history is the record, newest
first, down to a root commit that starts it) and the change's own commit as second parent
(kept reachable: it can be read later), is authored by whoever decided, and its message
(the change's subject, then trailers) says the rest. Nothing of it reaches the branch Flux
follows.

Reading walks the first-parent chain with git's own ``--grep`` (the decision, the caller's
groups): ``limit`` records a page after a cursor (a record's commit), never more than
``SCAN`` records looked at per page, so a request costs the same however long the record
grows; a page of a rare group may come back short, with a cursor to go on.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import git
import pygit2

from gitops_bridge.errors import InvalidRequest, RepoUnavailable
from gitops_bridge.gitrepo.clone import _stderr
from gitops_bridge.gitrepo.model import Author
from gitops_bridge.gitrepo.writer import GitRepo

DECIDED_REF = "refs/reviews/decided"
SCAN = 2000  # records looked at for one page at most
ATTEMPTS = 8  # appends that lose a race to another replica before giving up (503)
FETCH_EVERY = 2.0  # seconds a read trusts the last fetch of the record
ROOT_MESSAGE = "Decided change requests\n\nThe record of gitops-bridge's review mode."
_SHA = re.compile(r"[0-9a-f]{40}")
_COMMIT = pygit2.enums.ObjectType.COMMIT
_TREE = pygit2.enums.ObjectType.TREE
_RACE = re.compile(r"non-fast-forward|fetch first|stale info|cannot lock ref|incorrect old value")


@dataclass(frozen=True)
class Record:
    """One decision: the record's commit, who made it (its author) and when."""

    sha: str
    change: str  # the change request's commit ("": unknown, its branch was gone)
    author: str
    email: str
    time: int
    message: str

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]

    def trailer(self, key: str) -> str:
        for line in reversed(self.message.splitlines()):
            name, sep, value = line.partition(": ")
            if sep and name == key:
                return value.strip()
        return ""


@dataclass(frozen=True)
class RecordPage:
    """Records newest first; ``next``: the cursor of the page after (None: the last)."""

    records: list[Record]
    next: str | None


class DecisionLog:
    """The record of decided change requests of one clone's remote."""

    def __init__(self, repo: GitRepo) -> None:
        self.repo = repo
        self._fetched = 0.0
        self._fetch_lock = threading.Lock()

    # ---- writing -------------------------------------------------------------------

    def decide(
        self,
        *,
        branch: str,
        tip: str | None,
        author: Author,
        message: str,
        key: str,
        if_gone: bool = False,
    ) -> bool:
        """Delete the review ``branch`` (still at ``tip``) and record the decision, in one
        push. False when the branch was gone (decided elsewhere): nothing recorded, unless
        ``if_gone`` (a forge that deleted the branch itself), then the decision is recorded
        once, when no record of the change ``key`` is among the newest ones. ``tip`` None:
        the branch is known to be gone."""
        repo = self.repo
        with repo._lock, repo._file_lock():
            for attempt in range(ATTEMPTS):
                parent = self._fetch()
                if tip is None and parent is not None and self._recorded(parent, key):
                    return False
                parent = parent or self._commit(
                    parents=(), author=repo.committer, message=ROOT_MESSAGE
                )
                record = self._commit(
                    parents=(parent, tip) if tip else (parent,), author=author, message=message
                )
                command = ["git", "push", "--atomic", "--porcelain"]
                if tip is not None:
                    command.append(f"--force-with-lease=refs/heads/{branch}:{tip}")
                command.append(repo.url)
                if tip is not None:
                    command.append(f":refs/heads/{branch}")
                command.append(f"{record}:{DECIDED_REF}")
                try:
                    repo.repo.git.execute(command)
                except git.GitCommandError as exc:
                    text = f"{exc.stdout}\n{exc.stderr}"
                    if not _RACE.search(text):
                        raise RepoUnavailable(
                            f"cannot record the decision on {branch}: {_stderr(exc)}"
                        ) from exc
                    if tip is not None:
                        repo.fetch()
                        tips = {t.branch: t.sha for t in repo.change_branches()}
                        if tips.get(branch) != tip:  # decided meanwhile, elsewhere
                            if not if_gone or branch in tips:
                                return False
                            tip = None
                    time.sleep(0.05 * (attempt + 1))
                    continue
                self._moved(record)
                with repo._fetch_lock, contextlib.suppress(git.GitCommandError):
                    repo.repo.git.update_ref("-d", f"refs/remotes/origin/{branch}")
                repo._branches = None
                return True
        raise RepoUnavailable(f"the record of decisions kept moving: {branch} stays; try again")

    def _recorded(self, tip: str, key: str) -> bool:
        """Is the change ``key`` among the newest ``SCAN`` records?"""
        bound = self._parent(tip, steps=SCAN)
        args = ["--first-parent", "-F", "--max-count=1", f"--grep=Change-Request: {key}"]
        args += ["--format=%H", tip] + ([f"^{bound}"] if bound else [])
        return bool(str(self.repo.repo.git.log(*args)).strip())

    def _commit(self, *, parents: Sequence[str], author: Author, message: str) -> str:
        empty = self.repo._store(_TREE, b"")
        now = time.time()
        lines = [f"tree {empty}"]
        lines += [f"parent {sha}" for sha in parents]
        lines.append(f"author {author.ident(now)}")
        lines.append(f"committer {self.repo.committer.ident(now)}")
        body = "\n".join(lines) + "\n\n" + message.rstrip("\n") + "\n"
        return self.repo._store(_COMMIT, body.encode())

    def _moved(self, record: str) -> None:
        self.repo.repo.git.update_ref(DECIDED_REF, record)
        self._fetched = time.monotonic()

    # ---- reading -------------------------------------------------------------------

    def _fetch(self) -> str | None:
        """The record's newest commit on the remote (None: nothing decided yet)."""
        # the clone's fetch lock too: one git fetch at a time in the clone
        with self._fetch_lock, self.repo._fetch_lock:
            try:
                self.repo.repo.git.fetch(
                    "--quiet",
                    "--no-tags",
                    "--no-write-fetch-head",
                    "origin",
                    f"+{DECIDED_REF}:{DECIDED_REF}",
                )
            except git.GitCommandError as exc:
                if "couldn't find remote ref" not in str(exc.stderr):
                    raise RepoUnavailable(
                        f"cannot fetch the record of decisions: {_stderr(exc)}"
                    ) from exc
            self._fetched = time.monotonic()
            return self._tip()

    def _tip(self) -> str | None:
        try:
            return str(self.repo.repo.git.rev_parse("--verify", "--quiet", DECIDED_REF))
        except git.GitCommandError:
            return None

    def page(self, *, patterns: Sequence[str], after: str | None, limit: int) -> RecordPage:
        """The records whose message matches every pattern (extended regular expressions,
        each a line of it), newest first, after the record ``after``."""
        tip = self._fetch() if time.monotonic() - self._fetched >= FETCH_EVERY else self._tip()
        if after is not None:
            if not (_SHA.fullmatch(after) and tip and self._on_record(after, tip)):
                raise InvalidRequest.field(
                    "after", "must be a cursor from a Link header of this list"
                )
            start = self._parent(after)
        else:
            start = tip
        if start is None:
            return RecordPage(records=[], next=None)
        bound = self._parent(start, steps=SCAN)  # the walk stops here: SCAN records at most
        args = ["--first-parent", "-E", "--all-match", f"--max-count={limit + 1}"]
        args += [f"--grep={pattern}" for pattern in patterns]
        args += ["--format=%x01%H%x00%P%x00%an%x00%ae%x00%at%x00%B", start]
        if bound is not None:
            args.append(f"^{bound}")
        records = [_record(block) for block in self.repo.repo.git.log(*args).split("\x01")[1:]]
        if len(records) > limit:
            return RecordPage(records=records[:limit], next=records[limit - 1].sha)
        if bound is None:
            return RecordPage(records=records, next=None)
        # the window ended before the page filled: go on from its oldest record
        last = self._parent(start, steps=SCAN - 1)
        return RecordPage(records=records, next=last)

    def _parent(self, sha: str, *, steps: int = 1) -> str | None:
        try:
            return str(self.repo.repo.git.rev_parse("--verify", "--quiet", f"{sha}~{steps}"))
        except git.GitCommandError:
            return None

    def _on_record(self, sha: str, tip: str) -> bool:
        """Is the commit one of the record's (a cursor made here)?"""
        try:
            self.repo.repo.git.merge_base("--is-ancestor", sha, tip)
            parents = str(self.repo.repo.git.rev_list("--parents", "-n", "1", sha)).split()
        except git.GitCommandError:
            return False
        tree = str(self.repo.repo.git.rev_parse(f"{sha}^{{tree}}"))
        return len(parents) in (2, 3) and tree == self.repo._store(_TREE, b"")  # not the root


def _record(block: str) -> Record:
    sha, parents, author, email, when, message = block.split("\x00", 5)
    listed = parents.split()
    return Record(
        sha=sha,
        change=listed[1] if len(listed) > 1 else "",
        author=author,
        email=email,
        time=int(when),
        message=message.strip(),
    )
