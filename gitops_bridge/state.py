"""The desired state at one commit, read from ``tenants/`` and kept up to date by difference.

A group's folder is read on its own: what it holds is a function of its files (a
``Folder``). The state merges the folders; one rule crosses them: a deployment name
(``<app>-<id>``) belongs to one file, the first path in byte order, and the others
claiming it are reported. A new commit reads again only the folders it touched (an
unchanged file's reading is reused) and merges again only the names they claim, so a
change costs what it touched, whatever the size of the repository.

A state is never changed once built; deriving one copies the top-level maps (a few
milliseconds at 20,000 deployments) and shares every unchanged folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pydantic

from gitops_bridge import quota
from gitops_bridge.cache import Bounded
from gitops_bridge.models import Deployment, Group, Volume
from gitops_bridge.render import layout, tenancy, yamlio

log = logging.getLogger(__name__)

HELD_LOOKBACK = 20  # changes of an unreadable file searched for its last readable version
HELD_CACHE = 4096  # last readable versions remembered, by path and content


class Source(Protocol):
    """What reading a state needs from the repository."""

    def read_blob(self, sha: str) -> bytes: ...

    def history(self, path: str, commit: str | None, limit: int) -> list[str | None]:
        """The blob of ``path`` at each of its last ``limit`` changes up to ``commit``,
        newest first (None: deleted there)."""
        ...


@dataclass(frozen=True, eq=False)
class Folder:
    """One group's folder (``tenants/<group>/``) as read, on its own."""

    group: str
    files: dict[str, str]  # path -> blob: every file of the folder
    record: Group | None = None  # from a readable namespace.yaml
    apps: dict[str, Deployment] = field(default_factory=dict)  # readable apps/ files
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> why
    held: dict[str, Deployment] = field(default_factory=dict)  # unreadable app -> last readable
    index: tuple[str, Any] | None = None  # kustomization.yaml: its blob and documents
    ids: frozenset[str] = frozenset()  # ids its apps/ files take, readable or not
    volumes: dict[str, Volume] = field(default_factory=dict)  # readable apps/volumes/ files


def _id_of(path: str) -> str:
    return path.rsplit("-", 1)[-1].removesuffix(".yaml")


@dataclass(eq=False)
class State:
    """The desired state at one commit, as models. Equal states hold the same groups,
    deployments and problems, however they were built."""

    commit: str | None
    groups: dict[str, Group] = field(default_factory=dict)
    deployments: dict[str, Deployment] = field(default_factory=dict)  # by {app}-{id}
    # files under tenants/ the bridge cannot use (invalid YAML, not its format, or against
    # the folder's rules: render.tenancy): path -> why. Writes to their group are refused
    # until a change repairs one of them.
    unreadable: dict[str, str] = field(default_factory=dict)
    # an unreadable apps/ file -> what it last held (its newest readable version), which
    # still counts against quota: it may well still run
    held: dict[str, Deployment] = field(default_factory=dict)
    folders: dict[str, Folder] = field(default_factory=dict)
    # name -> the paths that claim it too, after the one that has it (hand edits)
    losers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sidecar: quota.Sidecar = field(default=quota.NO_SIDECAR, repr=False)  # counted per pod
    # per group, filled on first use; a derived state keeps those of untouched groups
    _by_group: dict[str, list[Deployment]] = field(default_factory=dict, repr=False)
    _usage: dict[str, quota.Usage] = field(default_factory=dict, repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return (self.commit, self.groups, self.deployments, self.unreadable, self.held) == (
            other.commit,
            other.groups,
            other.deployments,
            other.unreadable,
            other.held,
        )

    __hash__ = None  # type: ignore[assignment]

    def in_group(self, group: str) -> list[Deployment]:
        """The group's deployments, the last readable versions of unreadable files included."""
        found = self._by_group.get(group)
        if found is None:
            folder = self.folders.get(group)
            found = []
            if folder is not None:
                found = [d for d in folder.apps.values() if self.deployments.get(d.name) is d]
                found += [self.held[p] for p in sorted(folder.files) if p in self.held]
            self._by_group[group] = found
        return list(found)

    def usage(self, group: str) -> quota.Usage:
        """What the group's deployments request (kept with the state)."""
        found = self._usage.get(group)
        if found is None:
            found = quota.usage(self.in_group(group), sidecar=self.sidecar)
            self._usage[group] = found
        return found

    def volumes_in(self, group: str) -> list[Volume]:
        """The group's volumes (readable files), by name."""
        folder = self.folders.get(group)
        if folder is None:
            return []
        return sorted(folder.volumes.values(), key=lambda v: v.name)

    def id_taken(self, candidate: str) -> bool:
        return any(candidate in folder.ids for folder in self.folders.values())

    def ids(self) -> frozenset[str]:
        return frozenset().union(*(folder.ids for folder in self.folders.values()))

    def problems_in(self, group: str) -> dict[str, str]:
        """The unreadable files of one group's folder: path -> why."""
        folder = self.folders.get(group)
        if folder is None:
            return {}
        return {p: self.unreadable[p] for p in sorted(folder.files) if p in self.unreadable}

    def app_file(self, name: str) -> str | None:
        """The file of a deployment, readable or not (None: no such file)."""
        deployment = self.deployments.get(name)
        if deployment is not None:
            return f"{layout.group_dir(deployment.group)}/{layout.APPS_DIR}/{name}.yaml"
        suffix = f"/{layout.APPS_DIR}/{name}.yaml"
        return next((p for p in self.unreadable if p.endswith(suffix)), None)


def _updated(
    usage: quota.Usage, before: list[Deployment], after: list[Deployment], sidecar: quota.Sidecar
) -> quota.Usage:
    """A group's usage after its deployments changed from ``before`` to ``after``: what left
    taken out, what came added (exact: quantities are fractions)."""
    old = {id(d): d for d in before}
    new = {id(d): d for d in after}
    for key, deployment in old.items():
        if key not in new:
            usage = usage - quota.occupies(deployment, sidecar=sidecar)
    for key, deployment in new.items():
        if key not in old:
            usage = usage + quota.occupies(deployment, sidecar=sidecar)
    return usage


class Reader:
    """Reads folders and merges them into states; remembers last readable versions."""

    def __init__(self, source: Source, *, sidecar: quota.Sidecar = quota.NO_SIDECAR) -> None:
        self.source = source
        self.sidecar = sidecar
        self._held: Bounded[tuple[str, str, str], Deployment | None] = Bounded(max_items=HELD_CACHE)

    # ---- building ---------------------------------------------------------------------

    def build(self, commit: str | None, folders: dict[str, dict[str, str]]) -> State:
        """The state of a commit from its folders' files (group -> path -> blob)."""
        return self.derive(State(commit=None), commit, folders)

    def derive(self, base: State, commit: str | None, changed: dict[str, dict[str, str]]) -> State:
        """The state of ``commit``, whose folders differ from ``base``'s in ``changed``
        (group -> its files now; an empty map: the folder is gone)."""
        state = State(
            commit=commit,
            groups=dict(base.groups),
            deployments=dict(base.deployments),
            unreadable=dict(base.unreadable),
            held=dict(base.held),
            folders=dict(base.folders),
            losers=dict(base.losers),
            sidecar=self.sidecar,
        )
        dirty: dict[str, set[str]] = {}  # name -> paths that may claim it now
        affected = set(changed)
        for group, files in changed.items():
            old = base.folders.get(group)
            new = self.read_folder(commit, group, files, old) if files else None
            self._swap(state, group, old, new, dirty)
        for name, paths in dirty.items():
            affected |= self._settle(state, commit, name, paths)
        state._by_group = {g: v for g, v in base._by_group.items() if g not in affected}
        state._usage = {g: v for g, v in base._usage.items() if g not in affected}
        for group in affected & set(base._usage) & set(base._by_group):
            state._usage[group] = _updated(
                base._usage[group], base._by_group[group], state.in_group(group), self.sidecar
            )
        return state

    def _swap(
        self,
        state: State,
        group: str,
        old: Folder | None,
        new: Folder | None,
        dirty: dict[str, set[str]],
    ) -> None:
        """Put a folder's new reading in place of its old one. Only the deployments that
        differ (another object for a path) are taken out or claim their name again."""
        if old is not None and state.groups.get(group) is old.record:
            state.groups.pop(group, None)
        if new is not None and new.record is not None:
            state.groups[group] = new.record
        for path in old.unreadable if old is not None else ():
            state.unreadable.pop(path, None)
        for path in old.held if old is not None else ():
            state.held.pop(path, None)
        if new is not None:
            state.folders[group] = new
            state.unreadable.update(new.unreadable)
            state.held.update(new.held)
        else:
            state.folders.pop(group, None)
        before = old.apps if old is not None else {}
        after = new.apps if new is not None else {}
        for path, deployment in before.items():
            if after.get(path) is not deployment:
                dirty.setdefault(deployment.name, set())
                if state.deployments.get(deployment.name) is deployment:
                    del state.deployments[deployment.name]
        for path, deployment in after.items():
            if before.get(path) is not deployment:
                dirty.setdefault(deployment.name, set()).add(path)

    def _settle(self, state: State, commit: str | None, name: str, fresh: set[str]) -> set[str]:
        """Give a name to the first path (byte order) claiming it; report the others. The
        groups whose deployments this changed."""
        claims = set(fresh) | set(state.losers.pop(name, ()))
        current = state.deployments.get(name)
        if current is not None:
            claims.add(state.app_file(name) or "")
        live = sorted(p for p in claims if self._app_at(state, p) is not None)
        groups = {p.split("/")[1] for p in claims if p}
        for path in claims - set(live) - {""}:  # no longer a claim: its report goes
            folder = state.folders.get(path.split("/")[1])
            if folder is None or path not in folder.unreadable:
                state.unreadable.pop(path, None)
            if folder is None or path not in folder.held:
                state.held.pop(path, None)
        if not live:
            state.deployments.pop(name, None)
            return groups
        winner, others = live[0], live[1:]
        state.deployments[name] = self._app_at(state, winner)  # type: ignore[assignment]
        state.unreadable.pop(winner, None)  # it lost the name before: readable on its own
        state.held.pop(winner, None)
        for path in others:
            state.unreadable[path] = (
                f"not allowed: deployment {name} is {winner} already (ids are unique)"
            )
            found = self._last_readable(commit, path, state.folders[path.split("/")[1]].files)
            if found is not None:
                state.held[path] = found
        if others:
            state.losers[name] = tuple(others)
        return groups

    @staticmethod
    def _app_at(state: State, path: str) -> Deployment | None:
        group = layout.folder_of(path)
        folder = state.folders.get(group) if group else None
        return folder.apps.get(path) if folder is not None else None

    # ---- one folder ---------------------------------------------------------------------

    def read_folder(
        self, commit: str | None, group: str, files: dict[str, str], previous: Folder | None
    ) -> Folder:
        """What a group's folder holds; files unchanged since ``previous`` are not read again."""
        record: Group | None = None
        apps: dict[str, Deployment] = {}
        volumes: dict[str, Volume] = {}
        unreadable: dict[str, str] = {}
        held: dict[str, Deployment] = {}
        index: tuple[str, Any] | None = None
        ids: set[str] = set()
        index_path = ""
        for path in sorted(files):
            blob = files[path]
            kind = tenancy.role(path)
            if kind is None:
                continue
            if kind == tenancy.STRAY:
                unreadable[path] = tenancy.stray_problem(path)
                if path.split("/")[2] == layout.APPS_DIR:
                    ids.add(_id_of(path))
                continue
            if kind == tenancy.INDEX:
                index_path = path
                if previous is not None and previous.index and previous.files.get(path) == blob:
                    index = previous.index
                else:
                    index = (blob, self._documents(blob))
                continue
            same = previous is not None and previous.files.get(path) == blob
            if same:
                assert previous is not None
                value: Any = (
                    previous.apps.get(path)
                    or previous.volumes.get(path)
                    or (previous.record if kind == tenancy.GROUP_RECORD else None)
                )
                why = previous.unreadable.get(path, "")
                if why and path in previous.held:
                    held[path] = previous.held[path]
            else:
                value, why = self._read(group, path, blob, kind)
            if kind == tenancy.APP:
                ids.add(_id_of(path))
            if why:
                unreadable[path] = why
                if kind == tenancy.APP and not same:
                    found = self._last_readable(commit, path, files)
                    if found is not None:
                        held[path] = found
            elif kind == tenancy.GROUP_RECORD:
                record = value
            elif kind == tenancy.APP:
                apps[path] = value
            elif kind == tenancy.VOLUME:
                volumes[path] = value
        if index is not None:
            documents = index[1]
            if isinstance(documents, str):
                unreadable[index_path] = documents
            else:
                present = {p.split("/", 2)[2] for p in files}
                problems = tenancy.index(group, documents, present=present)
                if problems:
                    unreadable[index_path] = "not allowed: " + "; ".join(problems)
        return Folder(
            group=group,
            files=files,
            record=record,
            apps=apps,
            unreadable=unreadable,
            held=held,
            index=index,
            ids=frozenset(ids),
            volumes=volumes,
        )

    def _documents(self, blob: str) -> Any:
        """A file's YAML documents, or why they cannot be read (a str)."""
        try:
            return yamlio.load_all(self.source.read_blob(blob))
        except Exception as exc:  # a hand-edited file we cannot use: say why, don't crash
            return tenancy.describe(exc)

    def _read(self, group: str, path: str, blob: str, kind: str) -> tuple[Any, str]:
        """What a file holds (a Group, a Deployment; None for a platform file), or why the
        bridge cannot use it."""
        try:
            documents = yamlio.load_all(self.source.read_blob(blob))
            if kind == tenancy.GROUP_RECORD:
                return tenancy.group_record(group, path, documents), ""
            if kind == tenancy.APP:
                return tenancy.app(group, path, documents), ""
            if kind == tenancy.SECRETS:
                tenancy.secrets_file(group, path, documents)
                return None, ""
            if kind == tenancy.VOLUME:
                return tenancy.volume(group, path, documents), ""
            tenancy.platform_file(group, path, documents)
            return None, ""
        except Exception as exc:  # a hand-edited file we cannot use: say why, don't crash
            return None, tenancy.describe(exc)

    def _last_readable(
        self, commit: str | None, path: str, files: dict[str, str]
    ) -> Deployment | None:
        """The newest readable version of an apps/ file before its current content, among its
        last HELD_LOOKBACK changes (remembered by path, content and commit)."""
        blob = files[path]
        key = (path, blob, commit or "")
        if key in self._held:
            return self._held.get(key)
        found = None
        group = path.split("/")[1]
        for sha in self.source.history(path, commit, HELD_LOOKBACK):
            if sha is None:
                break  # deleted there: what came before is another deployment's life
            if sha != blob:
                value, why = self._read(group, path, sha, tenancy.APP)
                if not why:
                    found = value
                    break
        self._held.put(key, found)
        return found


# ---- persisted between runs ---------------------------------------------------------------


def _format_key() -> str:
    """Changes with the code that reads folders (and the Python and pydantic that pickle
    its models), so a stored state from another version is never used."""
    digest = hashlib.sha256(f"{sys.version}\0{pydantic.VERSION}\0".encode())
    here = Path(__file__).resolve().parent
    for name in (
        "state.py",
        "models.py",
        "quantity.py",
        "render/tenancy.py",
        "render/helmrelease.py",
        "render/volume.py",
    ):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def save(state: State, path: Path) -> None:
    """Store a state for the next start (written whole, then renamed into place)."""
    payload = (
        _format_key(),
        state.commit,
        state.groups,
        state.deployments,
        state.unreadable,
        state.held,
        state.folders,
        state.losers,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(
    path: Path, exists: Callable[[str], bool], *, sidecar: quota.Sidecar = quota.NO_SIDECAR
) -> State | None:
    """The state ``save`` stored, if this version of gitops-bridge stored it for a commit the
    clone still has; None otherwise. The file is this process's own cache in its clone's
    directory, never read from elsewhere."""
    try:
        with path.open("rb") as fh:
            payload = pickle.load(fh)
        key, commit, groups, deployments, unreadable, held, folders, losers = payload
    except FileNotFoundError:
        return None
    except Exception as exc:
        log.warning("ignoring the stored state %s: %s", path, exc)
        return None
    if key != _format_key() or commit is None or not exists(commit):
        return None
    return State(
        commit=commit,
        groups=groups,
        deployments=deployments,
        unreadable=unreadable,
        held=held,
        folders=folders,
        losers=losers,
        sidecar=sidecar,
    )
