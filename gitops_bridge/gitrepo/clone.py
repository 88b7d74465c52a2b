"""The working clone: opening and recovering it, fetching, and reading at any commit.

It is a bare repository (no work tree, no index): a crash can leave nothing half-written
but unreferenced objects and lock files, which opening removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pygit2

from gitops_bridge.cache import Bounded
from gitops_bridge.errors import RepoUnavailable
from gitops_bridge.gitrepo.model import (
    CHANGES_PREFIX,
    Author,
    BranchTip,
    Deletion,
    FileChange,
    LastChange,
    LogEntry,
)
from gitops_bridge.gitrepo.snapshot import Snapshot
from gitops_bridge.render import yamlio

log = logging.getLogger(__name__)

SNAPSHOTS = 16  # file listings of recent commits kept
FETCH_ATTEMPTS = 3
# libgit2 keeps decoded objects (256 MiB by default) and maps pack files in windows (up to
# 8 GiB): bounded here, so memory does not grow with the repository read
LIBGIT2_CACHE = 16 * 1024 * 1024
LIBGIT2_WINDOW = 8 * 1024 * 1024
LIBGIT2_MAPPED = 64 * 1024 * 1024
pygit2.settings.cache_max_size(LIBGIT2_CACHE)
pygit2.settings.mwindow_size = LIBGIT2_WINDOW
pygit2.settings.mwindow_mapped_limit = LIBGIT2_MAPPED
_UNKNOWN = object()
# parsed YAML kept, by the size of its text (the parsed objects take a few times that)
PARSED_BYTES = 8 * 1024 * 1024
_HEX_NAME = re.compile(r"[0-9a-f]{4,40}")


class Clone:
    """A bare working clone of the GitOps remote: set-up, recovery and every read."""

    def __init__(
        self,
        *,
        path: Path,
        url: str,
        branch: str = "main",
        committer: Author,
        fetch_interval: float = 2.0,
    ) -> None:
        self.path = path
        self.url = url
        self.branch = branch
        self.committer = committer
        self.fetch_interval = fetch_interval
        self._lock = threading.RLock()  # the write lock: never taken on the read path
        # fetches and the writer's updates of the tracking ref, so main never goes back
        self._fetch_lock = threading.RLock()
        self._log_lock = threading.Lock()
        self._odb_lock = threading.Lock()
        self._last_fetch = 0.0
        self._branches: list[BranchTip] | None = None  # review branches, until refs change
        self._snapshots: OrderedDict[str, Snapshot] = OrderedDict()  # the newest SNAPSHOTS
        self._snapshots_lock = threading.Lock()
        self._head: object = _UNKNOWN  # the tracking ref's commit, while known
        self._head_generation = 0
        self._fetches = 0  # fetches done (the tracking ref may have moved with each)
        self._head_lock = threading.Lock()
        self._parsed: Bounded[str, Any] = Bounded(max_items=4096, max_bytes=PARSED_BYTES)
        self._last_changes: dict[str, tuple[dict[str, LastChange], str | None]] = {}
        self.repo = self._open()
        # libgit2 on the same repository: reading and writing objects without a process
        self.objects = pygit2.Repository(str(self.path))

    # ---- set-up and recovery -------------------------------------------------

    def _open(self) -> git.Repo:
        try:
            if not (self.path / "HEAD").exists():
                self.path.mkdir(parents=True, exist_ok=True)
                repo = git.Repo.init(self.path, bare=True, initial_branch=self.branch)
            else:
                repo = git.Repo(self.path)
            with self._file_lock():
                self._recover(repo)
                self._configure(repo)
        except git.GitError as exc:
            raise RepoUnavailable(f"cannot open the working clone at {self.path}: {exc}") from exc
        return repo

    def _recover(self, repo: git.Repo) -> None:
        """Remove lock files a crashed process left behind (we hold the file lock)."""
        gitdir = Path(repo.git_dir)
        for lock in [gitdir / "packed-refs.lock", gitdir / "config.lock", gitdir / "shallow.lock"]:
            lock.unlink(missing_ok=True)
        for lock in (gitdir / "refs").rglob("*.lock"):
            log.warning("removing stale git lock %s", lock)
            lock.unlink(missing_ok=True)

    def _configure(self, repo: git.Repo) -> None:
        with repo.config_writer() as cfg:
            # no automatic (detached) gc after a fetch: it would prune object directories
            # while a write creates loose objects there; `_maintain` runs it under our lock
            cfg.set_value("gc", "auto", "0")
            cfg.set_value("maintenance", "auto", "false")
            cfg.set_value("core", "logAllRefUpdates", "false")
        remotes = {remote.name: remote for remote in repo.remotes}
        if "origin" not in remotes:
            repo.create_remote("origin", self.url)
        elif remotes["origin"].url != self.url:
            repo.git.remote("set-url", "origin", self.url)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Serialises writers across processes sharing this clone (serve + CLI)."""
        with open(self.path / "gitops-bridge.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ---- reading ---------------------------------------------------------------

    @property
    def tracking_ref(self) -> str:
        return f"refs/remotes/origin/{self.branch}"

    def fetch(self) -> None:
        with self._fetch_lock:
            self._fetch()

    def _fetch(self) -> None:
        for attempt in range(FETCH_ATTEMPTS):
            try:
                self._fetch_once()
                return
            except RepoUnavailable as exc:
                # another git process moved a ref as this fetch went to (a CLI sharing the
                # clone): the next attempt sees where it is now
                if "cannot lock ref" not in exc.message or attempt == FETCH_ATTEMPTS - 1:
                    raise
                time.sleep(0.05)

    def _fetch_once(self) -> None:
        try:
            self.repo.git.fetch(
                "--quiet",
                "--no-tags",
                "--prune",  # review branches approved or closed elsewhere go away here too
                "origin",
                f"+refs/heads/{self.branch}:{self.tracking_ref}",
                f"+refs/heads/{CHANGES_PREFIX}*:refs/remotes/origin/{CHANGES_PREFIX}*",
            )
        except git.GitCommandError as exc:
            if "couldn't find remote ref" in str(exc.stderr):
                self._last_fetch = time.monotonic()
                return  # an empty remote: nothing to fetch yet
            raise RepoUnavailable(f"cannot fetch from the GitOps remote: {_stderr(exc)}") from exc
        self._last_fetch = time.monotonic()
        self._branches = None
        self._fetches += 1
        self._moved(self._read_head())  # once, here: not by every thread that asks next

    def refresh(self, *, max_age: float | None = None) -> None:
        """Fetch if the last fetch is older than max_age seconds (default: fetch_interval)."""
        limit = self.fetch_interval if max_age is None else max_age
        if time.monotonic() - self._last_fetch >= limit:
            with self._fetch_lock:  # not the write lock: a slow push must not hold up reads
                if time.monotonic() - self._last_fetch >= limit:
                    self.fetch()

    def head(self) -> str | None:
        """The main the last fetch or push saw (kept in memory until the next one)."""
        with self._head_lock:
            if self._head is not _UNKNOWN:
                return self._head  # type: ignore[return-value]
            seen = self._head_generation
        found = self._read_head()
        with self._head_lock:
            if self._head_generation == seen:  # no fetch or push moved it meanwhile
                self._head = found
        return found

    def _read_head(self) -> str | None:
        try:
            return str(self.repo.git.rev_parse("--verify", "--quiet", self.tracking_ref))
        except git.GitCommandError:
            return None

    def _moved(self, tip: str | object = None) -> None:
        """The tracking ref changed (to ``tip`` when known; None: read it again)."""
        with self._head_lock:
            self._head_generation += 1
            self._head = _UNKNOWN if tip is None else tip

    def snapshot(self, commit: str | None = None) -> Snapshot:
        commit = commit or self.head()
        if commit is None:
            return Snapshot(self, None, {})
        with self._snapshots_lock:
            cached = self._snapshots.get(commit)
            if cached is not None:
                self._snapshots.move_to_end(commit)
                return cached
            newest = next(reversed(self._snapshots.values()), None)
        if newest is not None and newest.commit is not None:
            # what changed since the newest snapshot known: one diff, sized by the change
            snap = newest.child(commit, self.differences(newest.commit, commit))
        else:
            out = self.repo.git.ls_tree("-r", "-z", "--full-tree", commit)
            files: dict[str, str] = {}
            for entry in out.split("\0"):
                if entry:
                    meta, _, path = entry.partition("\t")
                    _mode, kind, sha = meta.split(" ")
                    if kind == "blob":
                        files[path] = sha
            snap = Snapshot(self, commit, files)
        self._remember(snap)
        return snap

    def differences(self, old: str, new: str) -> dict[str, str | None]:
        """The files that differ between two commits: path -> its blob in ``new`` (None:
        absent there)."""
        out = self.repo.git.diff_tree("-r", "-z", "--no-renames", old, new)
        fields = out.split("\0")
        found: dict[str, str | None] = {}
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            if not meta.startswith(":"):
                continue
            _old_mode, new_mode, _old_sha, new_sha, _status = meta[1:].split(" ")
            # a deletion, or a submodule (not a file): absent as far as reading goes
            blob = new_mode not in ("000000", "160000")
            found[path] = new_sha if blob else None
        return found

    def read_blob(self, sha: str) -> bytes:
        with self._odb_lock:
            _kind, data = self.objects.odb.read(sha)
        return bytes(data)

    def blob_at(self, commit: str | None, path: str) -> str | None:
        """The blob of one path at a commit (None: absent), without listing the whole tree."""
        if commit is None:
            return None
        with self._odb_lock:
            try:
                tree = self.objects.revparse_single(commit).peel(pygit2.Tree)
                found = tree[path]
            except (KeyError, ValueError):
                return None
            return str(found.id) if found.type == pygit2.enums.ObjectType.BLOB else None

    def read_at(self, commit: str | None, path: str) -> bytes | None:
        sha = self.blob_at(commit, path)
        return None if sha is None else self.read_blob(sha)

    def parsed_blob(self, sha: str) -> Any:
        """The YAML document of a blob, parsed; the same object for the same blob while it is
        cached (callers never change it)."""
        cached = self._parsed.get(sha)
        if cached is None:
            data = self.read_blob(sha)
            cached = yamlio.load(data)
            self._parsed.put(sha, cached, size=len(data))
        return cached

    def last_changes(self, commit: str | None, prefix: str) -> dict[str, LastChange]:
        """For every path under prefix at commit: the newest commit that changed it.

        Kept incrementally: a new head only walks the commits since the last one seen.
        """
        if commit is None:
            return {}
        with self._log_lock:
            known, seen = self._last_changes.get(prefix, ({}, None))
            if seen == commit:
                return known
            walk = f"{seen}..{commit}" if seen and self.is_ancestor(seen, commit) else commit
            if walk == commit:
                known = {}
            out = self.repo.git.log(
                "--format=%x01%H%x00%an%x00%at",
                "--name-only",
                "--no-renames",
                walk,
                "--",
                prefix,
            )
            fresh: dict[str, LastChange] = {}
            for block in out.split("\x01")[1:]:
                header, _, names = block.partition("\n")
                sha, author, when = header.split("\x00")
                for name in names.split("\n"):
                    if name and name not in fresh:
                        fresh[name] = LastChange(sha=sha, author=author, time=int(when))
            merged = {**known, **fresh}
            self._last_changes[prefix] = (merged, commit)
            return merged

    def log(
        self, *, paths: list[str] | None = None, commit: str | None = None, limit: int = 200
    ) -> list[LogEntry]:
        """Commits (that changed any of paths: glob pathspecs), newest first."""
        commit = commit or self.head()
        if commit is None:
            return []
        specs = [f":(glob){path}" for path in paths or []]
        out = self.repo.git.log(
            f"--max-count={limit}",
            "--format=%x01%H%x00%P%x00%an%x00%ae%x00%at%x00%B%x02",
            "--name-only",
            "--no-renames",
            commit,
            "--",
            *specs,
        )
        entries = []
        for block in out.split("\x01")[1:]:
            header, _, names = block.partition("\x02")
            entries.append(_log_entry(header, tuple(n for n in names.split("\n") if n)))
        return entries

    def deletions(
        self,
        paths: list[str],
        *,
        commit: str | None = None,
        base: str | None = None,
        since: int | None = None,
        limit: int = 200,
    ) -> list[Deletion]:
        """The files matching ``paths`` (glob pathspecs) that commits deleted, newest commit
        first, each with its blob before: those of the last ``limit`` such commits of
        ``commit``'s history (default: main), only those ``base`` lacks, only those committed
        at ``since`` (Unix seconds) or later. One git process, which stops at ``limit``
        commits, at ``base`` and at ``since``."""
        commit = commit or self.head()
        if commit is None:
            return []
        walk = [f"--max-count={limit}"]
        if since is not None:
            walk.append(f"--since=@{since}")
        out = self.repo.git.log(
            *walk,
            "--diff-filter=D",
            "--format=%x01%ct%x00%H%x00%P%x00%an%x00%ae%x00%at%x00%B%x02",
            "--raw",
            "--no-abbrev",
            "--no-renames",
            f"{base}..{commit}" if base else commit,
            "--",
            *(f":(glob){path}" for path in paths),
        )
        found = []
        for block in out.split("\x01")[1:]:
            header, _, raw = block.partition("\x02")
            when, _, header = header.partition("\x00")
            entry = _log_entry(header, ())
            for line in raw.split("\n"):
                meta, _, path = line.partition("\t")
                fields = meta.split(" ")
                if meta.startswith(":") and len(fields) == 5 and fields[4] == "D":
                    found.append(Deletion(entry=entry, time=int(when), path=path, blob=fields[2]))
        return found

    def last_commit(self, path: str, *, commit: str) -> str | None:
        """The newest commit of ``commit``'s history (itself included) that changed ``path``,
        as the file's log shows it; None when none did. One git process, which stops there."""
        out = self.repo.git.log("--max-count=1", "--format=%H", commit, "--", f":(literal){path}")
        return str(out).strip() or None

    def changed_paths(self, commit: str) -> list[str]:
        out = self.repo.git.diff_tree("--no-commit-id", "-r", "--name-only", "--root", commit)
        return [line for line in out.splitlines() if line]

    def diff(self, commit: str, path: str) -> str:
        """The unified diff a commit made to one path."""
        return str(self.repo.git.show("--format=", "--no-color", commit, "--", path))

    def diffs(self, commits: list[str], path: str) -> dict[str, str]:
        """The unified diff each commit made to one path, from one git process."""
        if not commits:
            return {}
        out = self.repo.git.show("--format=%x01%H", "--no-color", *commits, "--", path)
        found = {}
        for block in str(out).split("\x01")[1:]:
            sha, _, diff = block.partition("\n")
            found[sha] = diff.strip("\n")
        return found

    def file_log(
        self, path: str, *, commit: str | None = None, limit: int = 200
    ) -> list[FileChange]:
        """The commits that changed one file, newest first (those of ``log(paths=[path])``),
        each with the file's blob before and after it: one git process, no tree walks."""
        commit = commit or self.head()
        if commit is None:
            return []
        changes = []
        for entry, blobs in self._file_log(path, commit, f"--max-count={limit}"):
            if blobs is None:  # not shown as a change of the file: ask the trees
                blobs = (self.blob_at(entry.parent, path), self.blob_at(entry.sha, path))
            changes.append(FileChange(entry=entry, before=blobs[0], after=blobs[1]))
        return changes

    def file_change(self, commit: str, path: str) -> FileChange | None:
        """What one commit (a full sha) did to one file; None when the file's log would not
        show it (it left the file as it was; a merge: as one of its parents had it). One git
        process, whatever the length of the history."""
        for entry, blobs in self._file_log(path, commit, "--no-walk"):
            if blobs is not None and entry.sha == commit:
                return FileChange(entry=entry, before=blobs[0], after=blobs[1])
        return None

    def _file_log(
        self, path: str, commit: str, *walk: str
    ) -> Iterator[tuple[LogEntry, tuple[str | None, str | None] | None]]:
        out = self.repo.git.log(
            *walk,
            "--format=%x01%H%x00%P%x00%an%x00%ae%x00%at%x00%B%x02",
            "--raw",
            "--no-abbrev",
            "--no-renames",
            "--root",
            "-c",  # a merge the file's log shows: its blobs in each parent, then its own
            commit,
            "--",
            f":(literal){path}",
        )
        for block in out.split("\x01")[1:]:
            header, _, raw = block.partition("\x02")
            blobs = None
            for line in raw.split("\n"):
                meta, _, name = line.partition("\t")
                if meta.startswith(":") and name == path:
                    fields = meta.lstrip(":").split(" ")
                    sides = len(meta) - len(meta.lstrip(":")) + 1  # the parents, then it
                    modes, shas = fields[:sides], fields[sides : 2 * sides]
                    blobs = (_file_blob(modes[0], shas[0]), _file_blob(modes[-1], shas[-1]))
            yield _log_entry(header, (path,) if blobs is not None else ()), blobs

    def resolve_commit(self, name: str) -> tuple[str, str | None] | None:
        """The full sha of the commit a sha or its prefix (4..40 hex digits) names, and its
        first parent; None when it names no commit or more than one."""
        if not _HEX_NAME.fullmatch(name):
            return None
        try:
            out = self.repo.git.rev_list("--parents", "--max-count=1", f"{name}^{{commit}}", "--")
        except git.GitCommandError:
            return None
        shas = str(out).split()
        return (shas[0], shas[1] if len(shas) > 1 else None) if shas else None

    def find_message(
        self, line: str, *, since: str = "24 hours ago", changes: bool = False
    ) -> str | None:
        """The newest recent commit on main (and, with ``changes``, on the open review
        branches) with a message line that starts with ``line``."""
        head = self.head()
        if head is None:
            return None
        tips = [tip.sha for tip in self.change_branches()] if changes else []
        out = self.repo.git.log(
            "--format=%H", "--fixed-strings", f"--grep={line}", f"--since={since}", head, *tips
        )
        for sha in out.splitlines():
            message = self.repo.git.show("-s", "--format=%B", sha)
            if any(text.startswith(line) for text in message.splitlines()):
                return str(sha)
        return None

    def merge_file(self, *, ours: bytes, base: bytes, theirs: bytes) -> bytes | None:
        """Three-way merge of one file's contents; None when it conflicts."""
        with tempfile.TemporaryDirectory(prefix="gitops-bridge-merge-") as tmp:
            names = []
            for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
                path = Path(tmp) / name
                path.write_bytes(data)
                names.append(str(path))
            try:
                merged = self.repo.git.merge_file(
                    "-p", "-q", *names, stdout_as_string=False, strip_newline_in_stdout=False
                )
            except git.GitCommandError:
                return None
            return bytes(merged)

    def change_branches(self) -> list[BranchTip]:
        """Open review branches (as of the last fetch; kept until refs change)."""
        cached = self._branches
        if cached is not None:
            return cached
        out = self.repo.git.for_each_ref(
            "--format=%(refname)%00%(objectname)", f"refs/remotes/origin/{CHANGES_PREFIX}"
        )
        tips = []
        for line in out.splitlines():
            ref, _, sha = line.partition("\x00")
            tips.append(BranchTip(branch=ref.removeprefix("refs/remotes/origin/"), sha=sha))
        self._branches = tips
        return tips

    def has_commit(self, sha: str) -> bool:
        try:
            self.repo.git.cat_file("-e", f"{sha}^{{commit}}")
        except git.GitCommandError:
            return False
        return True

    def is_ancestor(self, older: str, newer: str) -> bool:
        try:
            self.repo.git.merge_base("--is-ancestor", older, newer)
        except git.GitCommandError:
            return False
        return True

    def _remember(self, snap: Snapshot) -> None:
        if snap.commit is not None:
            with self._snapshots_lock:
                self._snapshots[snap.commit] = snap
                self._snapshots.move_to_end(snap.commit)
                while len(self._snapshots) > SNAPSHOTS:
                    self._snapshots.popitem(last=False)


def _log_entry(header: str, paths: tuple[str, ...]) -> LogEntry:
    """A commit from ``git log --format=%H%x00%P%x00%an%x00%ae%x00%at%x00%B``."""
    sha, parents, author, email, when, message = header.split("\x00", 5)
    return LogEntry(
        sha=sha,
        parent=parents.split(" ")[0] if parents else None,
        author=author,
        email=email,
        time=int(when),
        message=message.strip(),
        paths=paths,
    )


def _file_blob(mode: str, sha: str) -> str | None:
    """The blob of a raw diff side; None for an absent file, a directory or a submodule."""
    return None if mode in ("000000", "040000", "160000") else sha


def _stderr(exc: git.GitCommandError) -> str:
    text = str(exc.stderr or exc).strip()
    return text.removeprefix("stderr:").strip().strip("'").strip() or str(exc)


def init_bare(path: Path, *, branch: str = "main") -> None:
    """An empty bare repository to serve as the embedded GitOps remote."""
    if (path / "HEAD").exists():
        return
    path.mkdir(parents=True, exist_ok=True)
    git.Repo.init(path, bare=True, initial_branch=branch)


def init_worktree(
    path: Path,
    *,
    files: dict[str, bytes],
    author: Author,
    committer: Author,
    message: str,
    branch: str = "main",
) -> str:
    """A new repository with a work tree at path holding files, in one commit; its sha."""
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not empty")
    repo = git.Repo.init(path, initial_branch=branch)
    for rel, data in files.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    repo.git.add("--all")
    env = {
        "GIT_AUTHOR_NAME": author.name,
        "GIT_AUTHOR_EMAIL": author.email,
        "GIT_COMMITTER_NAME": committer.name,
        "GIT_COMMITTER_EMAIL": committer.email,
    }
    repo.git.commit("--quiet", "-m", message, env=env)
    return str(repo.head.commit.hexsha)
