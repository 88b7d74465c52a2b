"""Writing: one commit per change built from the changed trees only, pushed in batches.

Concurrent callers queue; one of them at a time (the writer) commits every queued change,
each on top of the one before, and pushes them together. A push that lost a race (another
replica pushed first) waits a jittered, exponentially growing pause, fetches, takes in what
queued meanwhile, and builds every change again on the new main, validation and quota
included, until each request's deadline. A lock file that keeps blocking pushes on the
remote is reported as such. Reads never wait for the write lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import git
import pygit2

from gitops_bridge import metrics
from gitops_bridge.cache import Bounded
from gitops_bridge.errors import Conflict, RepoUnavailable
from gitops_bridge.gitrepo.clone import Clone, _stderr
from gitops_bridge.gitrepo.model import Author, CommitResult
from gitops_bridge.gitrepo.snapshot import Snapshot
from gitops_bridge.render import Change

log = logging.getLogger(__name__)

_BLOB = pygit2.enums.ObjectType.BLOB
_TREE = pygit2.enums.ObjectType.TREE
_COMMIT = pygit2.enums.ObjectType.COMMIT
TREES = 256  # trees of recent commits remembered (the next change builds on one)
MAINTAIN_EVERY = 50  # pushes between packing loose objects
PRUNE_EVERY = 5000  # pushes between removing unreachable objects (it walks every object)
BACKOFF_FIRST = 0.05  # seconds: the longest pause after a first lost race; doubles per loss
BACKOFF_MAX = 1.0
# a push holds the remote's ref lock for milliseconds (and git waits 100 ms for it): one that
# blocks every push this long was left behind by a crashed git process
STALE_LOCK_AFTER = 2.0
_LOCKED = re.compile(r"Unable to create '([^']+\.lock)': File exists")
# the remote's main moved (a race: fetch and build again), as opposed to a refusal (a hook,
# branch protection: retrying cannot help)
_RACE = re.compile(
    r"non-fast-forward|fetch first|stale info|cannot lock ref|failed to update ref"
    r"|incorrect old value"
)


@dataclass
class _Request:
    """One queued write and, once done, its outcome."""

    build: Callable[[Snapshot], Change | None]
    author: Author
    deadline: float
    attempts: int = 0
    done: bool = False
    result: CommitResult | None = None
    error: BaseException | None = None
    paths: tuple[str, ...] = ()  # what the commit wrote or deleted


class _Push:
    """A push running in its own thread (git works in its process meanwhile, without the
    interpreter's lock), so the writer can build what comes next."""

    def __init__(self, repo: GitRepo, tip: str) -> None:
        self.done = False
        self._repo = repo
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(tip,), name="git-push")
        self._thread.start()

    def _run(self, tip: str) -> None:
        try:
            self._repo._push(tip)
        except BaseException as exc:
            self._error = exc
        finally:
            with self._repo._turn:
                self.done = True
                self._repo._turn.notify_all()

    def outcome(self) -> None:
        """Wait for the push; raise what it raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error


class _Rejected(Exception):
    """The remote refused the push because its main moved on, or a lock file was in the way
    (``lock``: its path on the remote; another push, or a stale one)."""

    def __init__(self, lock: str | None = None) -> None:
        super().__init__(lock or "main moved")
        self.lock = lock


class GitRepo(Clone):
    """The working clone with the write path; writes go through ``apply``."""

    def __init__(
        self,
        *,
        path: Path,
        url: str,
        branch: str = "main",
        committer: Author,
        push_deadline: float = 30.0,
        push_attempts: int | None = None,
        fetch_interval: float = 2.0,
    ) -> None:
        super().__init__(
            path=path, url=url, branch=branch, committer=committer, fetch_interval=fetch_interval
        )
        self.push_deadline = push_deadline  # seconds a write may take, lost races included
        self.push_attempts = push_attempts  # an extra cap on builds per write; None: none
        # called after a push with the new main and the paths its commits changed
        self.on_push: list[Callable[[str, frozenset[str]], None]] = []
        # what blocks every write until someone removes a lock file on the remote (/readyz)
        self.stale_lock: str | None = None
        self._stale_lock_head: str | None = None
        self._pushes = 0
        self._trees: Bounded[str, str] = Bounded(max_items=TREES)  # commit -> its tree
        self._queue: list[_Request] = []
        self._writing = False  # a caller is committing the queue
        self._turn = threading.Condition()  # guards _queue and _writing

    def apply(self, build: Callable[[Snapshot], Change | None], *, author: Author) -> CommitResult:
        """Commit what ``build`` returns on the newest main and push it, retrying on races.

        ``build`` sees the snapshot it builds on and may raise to refuse the change
        (nothing is written then). Concurrent callers are batched: one of them at a time
        makes one commit per queued change, each built on the one before, and pushes them
        together. After a lost race every change of the batch is built again on the
        fetched main, until ``push_deadline`` seconds after the request was queued.
        """
        request = _Request(
            build=build, author=author, deadline=time.monotonic() + self.push_deadline
        )
        with self._turn:
            self._queue.append(request)
            self._turn.notify_all()  # a writer waiting on a push builds it meanwhile
            while self._writing and not request.done:
                self._turn.wait()
            writer = not request.done  # nobody writes and it is still queued: our turn
            self._writing = self._writing or writer
        if writer:
            try:
                with self._lock, self._file_lock():
                    self._process(request)
            finally:
                with self._turn:
                    if not request.done:  # the locks failed: take it back, answer the error
                        self._queue = [r for r in self._queue if r is not request]
                    self._writing = False
                    self._turn.notify_all()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def fetch(self) -> None:
        super().fetch()
        if self.stale_lock is not None and self.head() != self._stale_lock_head:
            self.stale_lock = None  # main moved on: a push got through, the lock is gone

    def _process(self, own: _Request) -> None:
        """Commit and push the queue. While the push of the writer's own change runs, what
        queues meanwhile is built on top of it and pushed as soon as it is through; after a
        lost race everything not yet pushed (and what queued meanwhile) is built again on
        the fetched main. Once its own change is answered, the writer pushes what it built
        meanwhile and hands over (the writer's caller waits at most one push more)."""
        batch: list[_Request] = []  # built, not pushed yet: answered once its push is in
        try:
            self.refresh()
            losses = 0
            blocked: tuple[str, float] | None = None  # a lock file in the way, and since when
            while True:
                batch = self._take(batch) if not own.done else batch
                if not batch:
                    return
                fetches = self._fetches
                base, tip = self._build_chain(batch, self.snapshot())
                while tip is not None and tip != base:
                    pushing = _Push(self, tip)
                    follow, after = self._build_during(pushing, tip, more=not own.done)
                    try:
                        pushing.outcome()
                    except _Rejected as exc:
                        batch += follow
                        losses += 1
                        metrics.inc("gitops_bridge_push_retries_total")
                        now = time.monotonic()
                        if exc.lock is None:
                            blocked = None
                        elif blocked is None or blocked[0] != exc.lock:
                            blocked = (exc.lock, now)
                        elif now - blocked[1] >= STALE_LOCK_AFTER:
                            raise self._stale(exc.lock) from exc
                        batch = self._give_up(batch, now=now, lock=exc.lock)
                        pause = random.uniform(
                            0, min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (losses - 1))
                        )
                        log.info("push of %s lost (%s), retrying in %.2f s", tip, exc, pause)
                        time.sleep(pause)
                        self.fetch()
                        break  # build everything again on the fetched main
                    except BaseException:
                        batch += follow
                        raise
                    self._pushed(tip, batch, fetches)
                    self._finish(batch)
                    batch, base, tip = follow, tip, after
                else:  # nothing (more) to push: every change refused or already on main
                    self._finish(batch)
                    batch = []
        except BaseException as exc:  # unreachable remote, or a bug: fail the whole batch
            for request in batch:
                if request.result is not None and request.result.changed:
                    request.result = None
                if request.result is None and request.error is None:
                    request.error = exc
        finally:
            self._finish(batch)

    def _build_during(
        self, pushing: _Push, tip: str, *, more: bool
    ) -> tuple[list[_Request], str | None]:
        """While ``pushing`` runs: what queues meanwhile (if ``more``), built on ``tip``, and
        its tip (nothing when the push ends first)."""
        if not more:
            return [], None
        with self._turn:
            while not self._queue and not pushing.done:
                self._turn.wait()
        follow = self._take([])
        if not follow:
            return [], None
        _base, after = self._build_chain(follow, self.snapshot(tip))
        metrics.inc("gitops_bridge_commits_built_during_push_total", len(follow))
        return follow, after

    def _take(self, batch: list[_Request]) -> list[_Request]:
        with self._turn:
            taken, self._queue = self._queue, []
        return batch + taken

    def _finish(self, requests: list[_Request]) -> None:
        with self._turn:
            for request in requests:
                request.done = True
            self._turn.notify_all()

    def _give_up(self, batch: list[_Request], *, now: float, lock: str | None) -> list[_Request]:
        """Answer the requests out of time (or attempts) with 503; the rest go on."""
        keep, out = [], []
        for request in batch:
            capped = self.push_attempts is not None and request.attempts >= self.push_attempts
            if not capped and request.deadline > now:
                keep.append(request)
                continue
            if lock is not None:
                message = _locked(lock)
            elif capped:
                message = (
                    f"the GitOps remote's {self.branch} kept moving: gave up after "
                    f"{request.attempts} attempts; nothing was changed, try again"
                )
            else:
                message = (
                    f"the GitOps remote's {self.branch} kept moving: other writers pushed "
                    f"first for {self.push_deadline:g} s ({request.attempts} attempts); "
                    "nothing was changed, try again"
                )
            request.result, request.error = None, RepoUnavailable(message)
            out.append(request)
        self._finish(out)
        return keep

    def _stale(self, lock: str) -> RepoUnavailable:
        """The error for a lock file that has blocked every push for a while; /readyz says it
        too until main moves again."""
        message = (
            f"the GitOps remote is locked: {_where(lock)} has blocked every push for "
            f"{STALE_LOCK_AFTER:g} s, left behind by a git process that crashed on the "
            "remote; it needs removing there (once no git process runs in that "
            "repository); nothing was changed, try again then"
        )
        log.error("%s", message)
        self.stale_lock, self._stale_lock_head = message, self.head()
        return RepoUnavailable(message)

    def _pushed(self, tip: str, batch: list[_Request], fetches: int) -> None:
        """Record an accepted push: the tracking ref, counters, maintenance, hooks."""
        with self._fetch_lock:
            if self._fetches != fetches:
                self._moved()  # a fetch since the build may have gone past tip: read it again
            else:  # no fetch since the build: nothing newer is known
                self.repo.git.update_ref(self.tracking_ref, tip)
                self._moved(tip)
        self.stale_lock = None
        metrics.inc("gitops_bridge_push_batches_total")
        self._pushes += 1
        if self._pushes % MAINTAIN_EVERY == 0:
            with self._fetch_lock:
                self._maintain()
        changed = [r for r in batch if r.result is not None and r.result.changed]
        metrics.inc("gitops_bridge_commits_total", len(changed))
        paths = frozenset(path for r in changed for path in r.paths)
        for hook in self.on_push:
            hook(tip, paths)

    def _build_chain(self, batch: list[_Request], snap: Snapshot) -> tuple[str | None, str | None]:
        """One commit per change, each on top of the previous, from ``snap``; the base and
        the new tip."""
        base = snap.commit
        tree = self._tree_of(snap.commit)
        for request in batch:
            request.attempts += 1
            request.result, request.error = None, None
            try:
                change = request.build(snap)
            except Exception as exc:
                request.error = exc
                continue
            flat = _flatten(change) if change is not None else {}
            new_tree = self._write_tree(tree, flat) if flat else tree
            if change is None or new_tree == tree:
                request.result = CommitResult(
                    sha=snap.commit, changed=False, attempts=request.attempts
                )
                continue
            sha = self._write_commit(
                tree=new_tree,
                parent=snap.commit,
                author=request.author,
                message=change.full_message(),
            )
            request.paths = tuple(flat)
            if new_tree is not None:
                self._trees.put(sha, new_tree)
            snap = snap.derive(sha, flat)
            self._remember(snap)
            tree = new_tree
            request.result = CommitResult(sha=sha, changed=True, attempts=request.attempts)
        return base, snap.commit

    def _maintain(self) -> None:
        """Pack the loose objects of the last pushes and merge packs geometrically (each
        pack at least twice the size of the next smaller one), so a run costs about what
        was written since the last, never a repack of the whole repository; extend the
        commit graph; now and then,
        remove objects no branch reaches (builds that lost a race) after a day. In the
        foreground, under the write lock."""
        try:
            self.repo.git.repack("-d", "-q", "--geometric=2")
            # the commits' graph with changed-path filters, added to in layers: a file's
            # history (`git log -- path`) and ancestry checks skip the trees of commits
            # that did not touch it
            self.repo.git.commit_graph("write", "--reachable", "--split", "--changed-paths")
            if self._pushes % PRUNE_EVERY == 0:
                self.repo.git.prune("--expire=1.day.ago")
        except git.GitCommandError as exc:
            log.warning("git maintenance failed (the clone still works): %s", _stderr(exc))

    def _tree_of(self, commit: str | None) -> str | None:
        if commit is None:
            return None
        tree = self._trees.get(commit)
        if tree is None:
            tree = str(self.repo.git.rev_parse(f"{commit}^{{tree}}"))
            self._trees.put(commit, tree)
        return tree

    def _store(self, kind: int, data: bytes) -> str:
        with self._odb_lock:
            return str(self.objects.odb.write(kind, data))

    def _write_tree(self, tree: str | None, changes: dict[str, bytes | None]) -> str | None:
        """The tree with changes applied (path -> content, None deletes); empty dirs vanish.
        Only the trees on the changed paths are read and written."""
        with self._odb_lock:
            return self._build_tree(tree, changes)

    def _build_tree(self, tree: str | None, changes: dict[str, bytes | None]) -> str | None:
        objects = self.objects
        builder = objects.TreeBuilder(pygit2.Oid(hex=tree)) if tree else objects.TreeBuilder()
        by_dir: dict[str, dict[str, bytes | None]] = {}
        for path, content in changes.items():
            head, sep, rest = path.partition("/")
            if sep:
                by_dir.setdefault(head, {})[rest] = content
            elif content is None:
                if builder.get(head) is not None:
                    builder.remove(head)
            else:
                blob = objects.odb.write(_BLOB, content)
                builder.insert(head, blob, pygit2.enums.FileMode.BLOB)
        for name, sub_changes in by_dir.items():
            current = builder.get(name)
            sub_tree = str(current.id) if current is not None and current.type == _TREE else None
            new_sub = self._build_tree(sub_tree, sub_changes)
            if new_sub is None:
                if current is not None:
                    builder.remove(name)
            else:
                builder.insert(name, pygit2.Oid(hex=new_sub), pygit2.enums.FileMode.TREE)
        if len(builder) == 0:
            return None
        return str(builder.write())

    def _write_commit(
        self, *, tree: str | None, parent: str | None, author: Author, message: str
    ) -> str:
        if tree is None:  # the whole repository emptied: keep an empty tree
            tree = self._store(_TREE, b"")
        now = time.time()
        lines = [f"tree {tree}"]
        if parent:
            lines.append(f"parent {parent}")
        lines.append(f"author {author.ident(now)}")
        lines.append(f"committer {self.committer.ident(now)}")
        body = "\n".join(lines) + "\n\n" + message.rstrip("\n") + "\n"
        return self._store(_COMMIT, body.encode())

    def _push(self, sha: str, *, ref: str | None = None) -> None:
        target = ref or f"refs/heads/{self.branch}"
        try:
            # no delta search: a batch's objects are small trees and blobs, and searching
            # the repository's objects for delta bases took most of the push (2-3x). To the
            # URL, not the remote's name: git would move the remote-tracking ref too, racing
            # a fetch in another thread ("cannot lock ref"); ``_pushed`` moves it.
            self.repo.git.execute(
                ["git", "-c", "pack.window=0", "push", "--porcelain", self.url, f"{sha}:{target}"]
            )
        except git.GitCommandError as exc:
            text = f"{exc.stdout}\n{exc.stderr}"
            locked = _LOCKED.search(text)
            if locked:  # before the race: "cannot lock ref" says this too
                raise _Rejected(lock=locked.group(1)) from exc
            if _RACE.search(text):
                raise _Rejected from exc
            refused = re.search(r"\[remote rejected\] \((.*?)\)", text)
            if refused:
                raise RepoUnavailable(
                    f"the GitOps remote refused the push ({refused.group(1)}): {_stderr(exc)}"
                ) from exc
            raise RepoUnavailable(f"cannot push to the GitOps remote: {_stderr(exc)}") from exc

    def propose(
        self,
        build: Callable[[Snapshot], Change | None],
        *,
        author: Author,
        branch: Callable[[], str],
    ) -> tuple[CommitResult, str]:
        """Commit the change on top of main to a new review branch (main is untouched)."""
        with self._lock, self._file_lock():
            self.refresh()
            snap = self.snapshot()
            change = build(snap)
            if change is None:
                return CommitResult(sha=snap.commit, changed=False), ""
            base_tree = self._tree_of(snap.commit)
            tree = self._write_tree(base_tree, _flatten(change))
            if tree == base_tree:
                return CommitResult(sha=snap.commit, changed=False), ""
            sha = self._write_commit(
                tree=tree, parent=snap.commit, author=author, message=change.full_message()
            )
            name = branch()
            try:
                self._push(sha, ref=f"refs/heads/{name}")
            except _Rejected as exc:
                if exc.lock is not None:
                    raise RepoUnavailable(_locked(exc.lock)) from exc
                raise Conflict(f"the review branch {name} exists already") from exc
            with self._fetch_lock:
                self.repo.git.update_ref(f"refs/remotes/origin/{name}", sha)
                self._branches = None
            return CommitResult(sha=sha, changed=True), name

    def delete_branch(self, branch: str) -> None:
        with self._lock:
            try:
                self.repo.git.push("--porcelain", "origin", f":refs/heads/{branch}")
            except git.GitCommandError as exc:
                if "remote ref does not exist" not in str(exc.stderr):
                    raise RepoUnavailable(f"cannot delete {branch}: {_stderr(exc)}") from exc
            with self._fetch_lock, contextlib.suppress(git.GitCommandError):
                self.repo.git.update_ref("-d", f"refs/remotes/origin/{branch}")
            self._branches = None


def _where(lock: str) -> str:
    """A lock file's path as the remote named it, without git's "/./"."""
    return os.path.normpath(lock)


def _locked(lock: str) -> str:
    return (
        f"the GitOps remote is locked: {_where(lock)} exists (another git process holds it, "
        "or one that crashed left it behind and it needs removing); nothing was changed, "
        "try again"
    )


def _flatten(change: Change) -> dict[str, bytes | None]:
    changes: dict[str, bytes | None] = {path: None for path in change.deletes}
    changes.update({manifest.path: manifest.data for manifest in change.writes})
    return changes
