"""A read-only view of the repository at one commit."""

from __future__ import annotations

from typing import Any, Protocol

from gitops_bridge.gitrepo.model import blob_id
from gitops_bridge.render.layout import TENANTS_DIR


class Reader(Protocol):
    def read_blob(self, sha: str) -> bytes: ...

    def parsed_blob(self, sha: str) -> Any: ...


class Snapshot:
    """The repository at one commit: file listing and contents, read-only and cached."""

    def __init__(
        self,
        repo: Reader,
        commit: str | None,
        files: dict[str, str],
        *,
        parent: Snapshot | None = None,
        changed: frozenset[str] = frozenset(),
    ) -> None:
        self._repo = repo
        self.commit = commit
        self.files = files  # path -> blob sha, every file of the commit
        # what this snapshot was derived from, and the paths that differ from it
        self.parent = parent.commit if parent is not None else None
        self.changed = changed
        self._folders: dict[str, dict[str, str]] | None = None
        if parent is not None and parent._folders is not None:
            self._folders = _refold(parent._folders, files, changed)

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
        return self.child(
            commit, {p: None if c is None else blob_id(c) for p, c in changes.items()}
        )

    def child(self, commit: str, blobs: dict[str, str | None]) -> Snapshot:
        """The snapshot of a commit that differs from this one in ``blobs`` (path -> its
        blob there; None: absent)."""
        files = dict(self.files)
        for path, blob in blobs.items():
            if blob is None:
                files.pop(path, None)
            else:
                files[path] = blob
        return Snapshot(self._repo, commit, files, parent=self, changed=frozenset(blobs))

    def folder(self, group: str) -> dict[str, str]:
        """The files of ``tenants/<group>/`` (path -> blob); the caller must not change it."""
        return self.folders().get(group, {})

    def folders(self) -> dict[str, dict[str, str]]:
        """Every group folder's files: group -> path -> blob (built once per snapshot; a
        child snapshot copies only the folders it changed)."""
        if self._folders is None:
            folders: dict[str, dict[str, str]] = {}
            for path, blob in self.files.items():
                group = _group(path)
                if group is not None:
                    folders.setdefault(group, {})[path] = blob
            self._folders = folders
        return self._folders

    def under(self, prefix: str) -> dict[str, str]:
        prefix = prefix.rstrip("/") + "/"
        return {path: sha for path, sha in self.files.items() if path.startswith(prefix)}


def _group(path: str) -> str | None:
    parts = path.split("/", 2)
    if len(parts) < 3 or parts[0] != TENANTS_DIR:
        return None
    return parts[1]


def _refold(
    folders: dict[str, dict[str, str]], files: dict[str, str], changed: frozenset[str]
) -> dict[str, dict[str, str]]:
    refolded = dict(folders)
    for group in {g for g in map(_group, changed) if g is not None}:
        prefix = f"{TENANTS_DIR}/{group}/"
        inside = dict(folders.get(group, {}))
        for path in changed:
            if path.startswith(prefix):
                if path in files:
                    inside[path] = files[path]
                else:
                    inside.pop(path, None)
        if inside:
            refolded[group] = inside
        else:
            refolded.pop(group, None)
    return refolded
