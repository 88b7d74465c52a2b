"""A read-only view of the repository at one commit."""

from __future__ import annotations

from typing import Any, Protocol

from gitops_bridge.gitrepo.model import blob_id


class Reader(Protocol):
    def read_blob(self, sha: str) -> bytes: ...

    def parsed_blob(self, sha: str) -> Any: ...


class Snapshot:
    """The repository at one commit: file listing and contents, read-only and cached."""

    def __init__(self, repo: Reader, commit: str | None, files: dict[str, str]) -> None:
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
