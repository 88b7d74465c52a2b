"""A read-only view of the repository at one commit."""

from __future__ import annotations

from typing import Any, Protocol

from gitops_bridge.gitrepo.model import blob_id
from gitops_bridge.render.layout import TENANTS_DIR, folder_of


class Reader(Protocol):
    def read_blob(self, sha: str) -> bytes: ...

    def parsed_blob(self, sha: str) -> Any: ...


class Snapshot:
    """The repository at one commit: file listing and contents, read-only and cached.

    The listing is kept by group folder (``tenants/<group>/``) and the rest: a child
    snapshot copies only the folders its commit changed and shares every other one, so
    deriving one costs the change, not the size of the repository.
    """

    def __init__(
        self,
        repo: Reader,
        commit: str | None,
        files: dict[str, str] | None = None,
        *,
        parent: Snapshot | None = None,
        changed: frozenset[str] = frozenset(),
        layout: tuple[dict[str, dict[str, str]], dict[str, str]] | None = None,
    ) -> None:
        self._repo = repo
        self.commit = commit
        # what this snapshot was derived from, and the paths that differ from it
        self.parent = parent.commit if parent is not None else None
        self.changed = changed
        self._files = files  # every file, path -> blob: made on first use when derived
        if layout is None:
            layout = _split(files or {})
        self._folders, self._rest = layout

    @property
    def files(self) -> dict[str, str]:
        """Every file of the commit: path -> blob sha (the caller must not change it)."""
        if self._files is None:
            files = dict(self._rest)
            for inside in self._folders.values():
                files.update(inside)
            self._files = files
        return self._files

    def blob(self, path: str) -> str | None:
        group = folder_of(path)
        if group is None:
            return self._rest.get(path)
        return self._folders.get(group, {}).get(path)

    def read(self, path: str) -> bytes | None:
        sha = self.blob(path)
        return None if sha is None else self._repo.read_blob(sha)

    def yaml(self, path: str) -> Any:
        """The parsed YAML document at path (cached by content); None if absent."""
        sha = self.blob(path)
        return None if sha is None else self._repo.parsed_blob(sha)

    def derive(self, commit: str, changes: dict[str, bytes | None]) -> Snapshot:
        """The snapshot of a child commit that applied changes to this one."""
        return self.child(
            commit, {p: None if c is None else blob_id(c) for p, c in changes.items()}
        )

    def child(self, commit: str, blobs: dict[str, str | None]) -> Snapshot:
        """The snapshot of a commit that differs from this one in ``blobs`` (path -> its
        blob there; None: absent)."""
        folders = dict(self._folders)
        rest = self._rest
        copied: set[str] = set()
        for path, blob in blobs.items():
            group = folder_of(path)
            if group is None:
                if rest is self._rest:
                    rest = dict(rest)
                target = rest
            else:
                if group not in copied:
                    folders[group] = dict(folders.get(group, {}))
                    copied.add(group)
                target = folders[group]
            if blob is None:
                target.pop(path, None)
            else:
                target[path] = blob
        for group in copied:
            if not folders[group]:
                del folders[group]
        return Snapshot(
            self._repo,
            commit,
            parent=self,
            changed=frozenset(blobs),
            layout=(folders, rest),
        )

    def folder(self, group: str) -> dict[str, str]:
        """The files of ``tenants/<group>/`` (path -> blob); the caller must not change it."""
        return self._folders.get(group, {})

    def folders(self) -> dict[str, dict[str, str]]:
        """Every group folder's files: group -> path -> blob (the caller must not change
        it)."""
        return self._folders

    def under(self, prefix: str) -> dict[str, str]:
        prefix = prefix.rstrip("/") + "/"
        if prefix == f"{TENANTS_DIR}/":
            return {p: b for inside in self._folders.values() for p, b in inside.items()}
        group = folder_of(prefix + "x")
        if group is not None:
            inside = self._folders.get(group, {})
            return {p: b for p, b in inside.items() if p.startswith(prefix)}
        return {p: b for p, b in self._rest.items() if p.startswith(prefix)}


def _split(files: dict[str, str]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    folders: dict[str, dict[str, str]] = {}
    rest: dict[str, str] = {}
    for path, blob in files.items():
        group = folder_of(path)
        if group is None:
            rest[path] = blob
        else:
            folders.setdefault(group, {})[path] = blob
    return folders, rest
