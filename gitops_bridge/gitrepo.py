"""The only module that talks to Git.

gitops-bridge keeps a bare clone of the GitOps remote and never uses a work tree
or an index: a change is written by building only the trees it touches (blob ->
trees on its path -> commit), which costs the same in a 20-file and a
20,000-file repository. A commit becomes visible only once the remote accepted
it; a rejected push (someone else pushed first) is fetched and the change is
rebuilt on the new main (validation and quota included) a bounded number of times.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import logging
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git
from git.objects.fun import tree_entries_from_data, tree_to_stream
from gitdb.base import IStream

from gitops_bridge import metrics
from gitops_bridge.errors import Conflict, RepoUnavailable
from gitops_bridge.render import Change, yamlio

log = logging.getLogger(__name__)

CHANGES_PREFIX = "changes/"  # review branches: changes/<group>/<deployment>/<change>
MAINTAIN_EVERY = 50  # pushes between `git gc --auto` runs
TREE_MODE = 0o040000
BLOB_MODE = 0o100644
_REJECTED = re.compile(r"\[rejected\]|\[remote rejected\]|non-fast-forward|fetch first|stale info")
_UNSAFE_IDENT = re.compile(r"[<>\n\r\x00]")


@dataclass(frozen=True)
class Author:
    name: str
    email: str

    def ident(self, when: float) -> str:
        name = _UNSAFE_IDENT.sub("", self.name).strip() or "unknown"
        email = _UNSAFE_IDENT.sub("", self.email).strip()
        offset = time.strftime("%z", time.localtime(when))
        return f"{name} <{email}> {int(when)} {offset}"


@dataclass(frozen=True)
class CommitResult:
    """The commit on the remote main after a write (unchanged: no commit was needed)."""

    sha: str | None
    changed: bool
    attempts: int = 1


@dataclass(frozen=True)
class LastChange:
    sha: str
    author: str
    time: int


@dataclass(frozen=True)
class LogEntry:
    sha: str
    parent: str | None
    author: str
    email: str
    time: int
    message: str
    paths: tuple[str, ...]

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]

    def trailer(self, key: str) -> str | None:
        for line in reversed(self.message.splitlines()):
            name, sep, value = line.partition(": ")
            if sep and name == key:
                return value.strip()
        return None


@dataclass(frozen=True)
class BranchTip:
    branch: str
    sha: str


@dataclass
class _Request:
    """One queued write and, once done, its outcome."""

    build: Callable[[Snapshot], Change | None]
    author: Author
    done: bool = False
    result: CommitResult | None = None
    error: BaseException | None = None


class _Rejected(Exception):
    """The remote refused the push because its main moved on."""


class Snapshot:
    """The repository at one commit: file listing and contents, read-only and cached."""

    def __init__(self, repo: GitRepo, commit: str | None, files: dict[str, str]) -> None:
        self._repo = repo
        self.commit = commit
        self.files = files  # path -> blob sha, every file of the commit

    def blob(self, path: str) -> str | None:
        return self.files.get(path)

    def read(self, path: str) -> bytes | None:
        sha = self.files.get(path)
        return None if sha is None else self._repo.read_blob(sha)

    def yaml(self, path: str) -> Any:
        """The parsed YAML document at path (cached by content); None if absent."""
        sha = self.files.get(path)
        return None if sha is None else self._repo.parsed_blob(sha)

    def derive(self, commit: str, changes: dict[str, bytes | None]) -> Snapshot:
        """The snapshot of a child commit that applied changes to this one."""
        files = dict(self.files)
        for path, content in changes.items():
            if content is None:
                files.pop(path, None)
            else:
                files[path] = blob_id(content)
        return Snapshot(self._repo, commit, files)

    def under(self, prefix: str) -> dict[str, str]:
        prefix = prefix.rstrip("/") + "/"
        return {path: sha for path, sha in self.files.items() if path.startswith(prefix)}


class GitRepo:
    """A bare working clone of the GitOps remote; writes go through ``apply``."""

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
        self.path = path
        self.url = url
        self.branch = branch
        self.committer = committer
        self.push_attempts = push_attempts
        self.fetch_interval = fetch_interval
        self._lock = threading.RLock()
        self._odb_lock = threading.Lock()
        self._last_fetch = 0.0
        self._snapshots: OrderedDict[str, Snapshot] = OrderedDict()
        self._parsed: OrderedDict[str, Any] = OrderedDict()
        self._last_changes: dict[str, tuple[dict[str, LastChange], str | None]] = {}
        self.on_push: list[Callable[[str], None]] = []
        self._pushes = 0  # called with the new main after a push
        self._queue: list[_Request] = []
        self._queue_lock = threading.Lock()
        self.repo = self._open()

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
        try:
            self.repo.git.fetch(
                "--quiet",
                "--no-tags",
                "origin",
                f"+refs/heads/{self.branch}:{self.tracking_ref}",
            )
        except git.GitCommandError as exc:
            if "couldn't find remote ref" in str(exc.stderr):
                self._last_fetch = time.monotonic()
                return  # an empty remote: nothing to fetch yet
            raise RepoUnavailable(f"cannot fetch from the GitOps remote: {_stderr(exc)}") from exc
        self._last_fetch = time.monotonic()

    def refresh(self, *, max_age: float | None = None) -> None:
        """Fetch if the last fetch is older than max_age seconds (default: fetch_interval)."""
        limit = self.fetch_interval if max_age is None else max_age
        if time.monotonic() - self._last_fetch >= limit:
            with self._lock:
                if time.monotonic() - self._last_fetch >= limit:
                    self.fetch()

    def head(self) -> str | None:
        try:
            return str(self.repo.git.rev_parse("--verify", "--quiet", self.tracking_ref))
        except git.GitCommandError:
            return None

    def snapshot(self, commit: str | None = None) -> Snapshot:
        commit = commit or self.head()
        if commit is None:
            return Snapshot(self, None, {})
        cached = self._snapshots.get(commit)
        if cached is not None:
            self._snapshots.move_to_end(commit)
            return cached
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

    def read_blob(self, sha: str) -> bytes:
        with self._odb_lock:
            data: bytes = self.repo.odb.stream(bytes.fromhex(sha)).read()
        return data

    def parsed_blob(self, sha: str) -> Any:
        cached = self._parsed.get(sha)
        if cached is None:
            cached = yamlio.load(self.read_blob(sha))
            self._parsed[sha] = cached
            while len(self._parsed) > 50_000:
                self._parsed.popitem(last=False)
        return cached

    def last_changes(self, commit: str | None, prefix: str) -> dict[str, LastChange]:
        """For every path under prefix at commit: the newest commit that changed it.

        Kept incrementally: a new head only walks the commits since the last one seen.
        """
        if commit is None:
            return {}
        with self._lock:
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
            sha, parents, author, email, when, message = header.split("\x00", 5)
            entries.append(
                LogEntry(
                    sha=sha,
                    parent=parents.split(" ")[0] if parents else None,
                    author=author,
                    email=email,
                    time=int(when),
                    message=message.strip(),
                    paths=tuple(n for n in names.split("\n") if n),
                )
            )
        return entries

    def changed_paths(self, commit: str) -> list[str]:
        out = self.repo.git.diff_tree("--no-commit-id", "-r", "--name-only", "--root", commit)
        return [line for line in out.splitlines() if line]

    def diff(self, commit: str, path: str) -> str:
        """The unified diff a commit made to one path."""
        return str(self.repo.git.show("--format=", "--no-color", commit, "--", path))

    def find_message(self, line: str, *, since: str = "24 hours ago") -> str | None:
        """The newest recent commit on main with a message line that starts with ``line``."""
        head = self.head()
        if head is None:
            return None
        out = self.repo.git.log(
            "--format=%H", "--fixed-strings", f"--grep={line}", f"--since={since}", head
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
        """Open review branches (as of the last fetch)."""
        out = self.repo.git.for_each_ref(
            "--format=%(refname)%00%(objectname)", f"refs/remotes/origin/{CHANGES_PREFIX}"
        )
        tips = []
        for line in out.splitlines():
            ref, _, sha = line.partition("\x00")
            tips.append(BranchTip(branch=ref.removeprefix("refs/remotes/origin/"), sha=sha))
        return tips

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

    def is_ancestor(self, older: str, newer: str) -> bool:
        try:
            self.repo.git.merge_base("--is-ancestor", older, newer)
        except git.GitCommandError:
            return False
        return True

    # ---- writing ---------------------------------------------------------------

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
                for hook in self.on_push:
                    hook(tip)
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

    def _remember(self, snap: Snapshot) -> None:
        if snap.commit is not None:
            self._snapshots[snap.commit] = snap
            while len(self._snapshots) > 16:
                self._snapshots.popitem(last=False)

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
            if _REJECTED.search(text):
                raise _Rejected from exc
            raise RepoUnavailable(f"cannot push to the GitOps remote: {_stderr(exc)}") from exc


def blob_id(content: bytes) -> str:
    """The sha git gives a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _flatten(change: Change) -> dict[str, bytes | None]:
    changes: dict[str, bytes | None] = {path: None for path in change.deletes}
    changes.update({manifest.path: manifest.data for manifest in change.writes})
    return changes


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
