"""Values the git layer hands out: authors, commits, log entries, branch tips."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass

CHANGES_PREFIX = "changes/"  # review branches: changes/<group>/<deployment>/<change>
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
class FileChange:
    """A commit that changed one file: the file's blob before it (at its first parent) and
    after it; None where the file is absent."""

    entry: LogEntry
    before: str | None
    after: str | None


@dataclass(frozen=True)
class Deletion:
    """A file a commit deleted: the commit, when it was committed (``time``: the committer's
    date, when it landed; ``entry.time`` is the author's), the path and its blob before."""

    entry: LogEntry
    time: int
    path: str
    blob: str


@dataclass(frozen=True)
class BranchTip:
    branch: str
    sha: str


def blob_id(content: bytes) -> str:
    """The sha git gives a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
