"""Writing: one commit per change built from the changed trees only, pushed in batches.

Concurrent callers queue; whoever holds the write lock commits every queued change, each
on top of the one before, and pushes them together. A rejected push (another replica
pushed first) is fetched and every change of the batch is built again on the new main,
validation and quota included, a bounded number of times.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import git
from git.objects.fun import tree_entries_from_data, tree_to_stream
from gitdb.base import IStream

from gitops_bridge import metrics
from gitops_bridge.errors import Conflict, RepoUnavailable
from gitops_bridge.gitrepo.clone import Clone, _stderr
from gitops_bridge.gitrepo.model import BLOB_MODE, TREE_MODE, Author, CommitResult
from gitops_bridge.gitrepo.snapshot import Snapshot
from gitops_bridge.render import Change

log = logging.getLogger(__name__)

MAINTAIN_EVERY = 50  # pushes between packing loose objects
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
    done: bool = False
    result: CommitResult | None = None
    error: BaseException | None = None
    paths: tuple[str, ...] = ()  # what the commit wrote or deleted


class _Rejected(Exception):
    """The remote refused the push because its main moved on."""


class GitRepo(Clone):
    """The working clone with the write path; writes go through ``apply``."""

    def __init__(
        self,
        *,
        path: Path,
        url: str,
        branch: str = "main",
        committer: Author,
        push_attempts: int = 5,
        fetch_interval: float = 2.0,
    ) -> None:
        super().__init__(
            path=path,
            url=url,
            branch=branch,
            committer=committer,
            push_attempts=push_attempts,
            fetch_interval=fetch_interval,
        )
        # called after a push with the new main and the paths its commits changed
        self.on_push: list[Callable[[str, frozenset[str]], None]] = []
        self._pushes = 0
        self._queue: list[_Request] = []
        self._queue_lock = threading.Lock()

    def apply(self, build: Callable[[Snapshot], Change | None], *, author: Author) -> CommitResult:
        """Commit what ``build`` returns on the newest main and push it, retrying on races.

        ``build`` sees the snapshot it builds on and may raise to refuse the change
        (nothing is written then). Concurrent callers are batched: whoever holds the
        write lock makes one commit per queued change, each built on the one before,
        and pushes them together. After a rejected push every change of the batch is
        built again on the fetched main.
        """
        request = _Request(build=build, author=author)
        with self._queue_lock:
            self._queue.append(request)
        while not request.done:
            with self._lock:
                if request.done:
                    break
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                if batch:
                    with self._file_lock():
                        self._process(batch)
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _process(self, batch: list[_Request]) -> None:
        try:
            self.refresh()
            for attempt in range(1, self.push_attempts + 1):
                tip = self._build_chain(batch, attempt)
                base = self.snapshot().commit
                if tip is None or tip == base:
                    break
                try:
                    self._push(tip)
                except _Rejected:
                    metrics.inc("gitops_bridge_push_retries_total")
                    log.info("push of %s rejected (attempt %d), fetching", tip, attempt)
                    self.fetch()
                    continue
                self.repo.git.update_ref(self.tracking_ref, tip)
                metrics.inc("gitops_bridge_push_batches_total")
                self._pushes += 1
                if self._pushes % MAINTAIN_EVERY == 0:
                    self._maintain()
                metrics.inc(
                    "gitops_bridge_commits_total",
                    sum(1 for r in batch if r.result is not None and r.result.changed),
                )
                paths = frozenset(
                    path
                    for r in batch
                    if r.result is not None and r.result.changed
                    for path in r.paths
                )
                for hook in self.on_push:
                    hook(tip, paths)
                break
            else:
                raise RepoUnavailable(
                    f"the GitOps remote's {self.branch} kept moving: gave up after "
                    f"{self.push_attempts} attempts; nothing was changed, try again"
                )
        except BaseException as exc:  # unreachable remote, or a bug: fail the whole batch
            for request in batch:
                if request.result is not None and request.result.changed:
                    request.result = None
                if request.result is None and request.error is None:
                    request.error = exc
        finally:
            for request in batch:
                request.done = True

    def _build_chain(self, batch: list[_Request], attempt: int) -> str | None:
        """One commit per change, each on top of the previous; returns the new tip."""
        snap = self.snapshot()
        tree = self._tree_of(snap.commit)
        for request in batch:
            request.result, request.error = None, None
            try:
                change = request.build(snap)
            except Exception as exc:
                request.error = exc
                continue
            flat = _flatten(change) if change is not None else {}
            new_tree = self._write_tree(tree, flat) if flat else tree
            if change is None or new_tree == tree:
                request.result = CommitResult(sha=snap.commit, changed=False, attempts=attempt)
                continue
            sha = self._write_commit(
                tree=new_tree,
                parent=snap.commit,
                author=request.author,
                message=change.full_message(),
            )
            request.paths = tuple(flat)
            snap = snap.derive(sha, flat)
            self._remember(snap)
            tree = new_tree
            request.result = CommitResult(sha=sha, changed=True, attempts=attempt)
        return snap.commit

    def _maintain(self) -> None:
        """Pack the loose objects of the last pushes (cost grows with them, not with the
        repository), and let `gc --auto` merge packs when there are many; in the
        foreground, under the write lock."""
        try:
            self.repo.git.repack("-d", "-q")
            self.repo.git.execute(
                ["git", "-c", "gc.auto=256", "-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"]
            )
        except git.GitCommandError as exc:
            log.warning("git gc failed (the clone still works): %s", _stderr(exc))

    def _tree_of(self, commit: str | None) -> str | None:
        if commit is None:
            return None
        return str(self.repo.git.rev_parse(f"{commit}^{{tree}}"))

    def _entries(self, tree: str | None) -> dict[str, tuple[int, bytes]]:
        if tree is None:
            return {}
        with self._odb_lock:
            data = self.repo.odb.stream(bytes.fromhex(tree)).read()
        return {name: (mode, binsha) for binsha, mode, name in tree_entries_from_data(data)}

    def _store(self, kind: bytes, data: bytes) -> str:
        with self._odb_lock:
            stream = self.repo.odb.store(IStream(kind, len(data), io.BytesIO(data)))
        return str(stream.hexsha.decode() if isinstance(stream.hexsha, bytes) else stream.hexsha)

    def _write_tree(self, tree: str | None, changes: dict[str, bytes | None]) -> str | None:
        """The tree with changes applied (path -> content, None deletes); empty dirs vanish."""
        entries = self._entries(tree)
        by_dir: dict[str, dict[str, bytes | None]] = {}
        for path, content in changes.items():
            head, sep, rest = path.partition("/")
            if sep:
                by_dir.setdefault(head, {})[rest] = content
            elif content is None:
                entries.pop(head, None)
            else:
                entries[head] = (BLOB_MODE, bytes.fromhex(self._store(b"blob", content)))
        for name, sub_changes in by_dir.items():
            current = entries.get(name)
            sub_tree = current[1].hex() if current and current[0] == TREE_MODE else None
            new_sub = self._write_tree(sub_tree, sub_changes)
            if new_sub is None:
                entries.pop(name, None)
            else:
                entries[name] = (TREE_MODE, bytes.fromhex(new_sub))
        if not entries:
            return None
        ordered = sorted(
            entries.items(), key=lambda kv: kv[0] + ("/" if kv[1][0] == TREE_MODE else "")
        )
        stream = io.BytesIO()
        tree_to_stream([(binsha, mode, name) for name, (mode, binsha) in ordered], stream.write)
        return self._store(b"tree", stream.getvalue())

    def _write_commit(
        self, *, tree: str | None, parent: str | None, author: Author, message: str
    ) -> str:
        if tree is None:  # the whole repository emptied: keep an empty tree
            tree = self._store(b"tree", b"")
        now = time.time()
        lines = [f"tree {tree}"]
        if parent:
            lines.append(f"parent {parent}")
        lines.append(f"author {author.ident(now)}")
        lines.append(f"committer {self.committer.ident(now)}")
        body = "\n".join(lines) + "\n\n" + message.rstrip("\n") + "\n"
        return self._store(b"commit", body.encode())

    def _push(self, sha: str, *, ref: str | None = None) -> None:
        target = ref or f"refs/heads/{self.branch}"
        try:
            self.repo.git.push("--porcelain", "origin", f"{sha}:{target}")
        except git.GitCommandError as exc:
            text = f"{exc.stdout}\n{exc.stderr}"
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
                raise Conflict(f"the review branch {name} exists already") from exc
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
            with contextlib.suppress(git.GitCommandError):
                self.repo.git.update_ref("-d", f"refs/remotes/origin/{branch}")
            self._branches = None


def _flatten(change: Change) -> dict[str, bytes | None]:
    changes: dict[str, bytes | None] = {path: None for path in change.deletes}
    changes.update({manifest.path: manifest.data for manifest in change.writes})
    return changes
