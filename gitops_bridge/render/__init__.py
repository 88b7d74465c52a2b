"""Pure builders: models in, ``Manifest(path, text)`` out. No I/O.

A ``Change`` is what one user request does to the GitOps repository: files to
write, files to delete, and the commit message. The git layer applies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gitops_bridge.render import layout
from gitops_bridge.render.helmrelease import (
    app_path,
    helmrelease,
    parse_helmrelease,
)
from gitops_bridge.render.kustomize import group_kustomization, tenants_kustomization
from gitops_bridge.render.layout import APPS_DIR, TENANTS_DIR, group_dir
from gitops_bridge.render.manifest import Manifest
from gitops_bridge.render.tenant import group_files, parse_group, quota_helmreleases

__all__ = [
    "APPS_DIR",
    "TENANTS_DIR",
    "Change",
    "Manifest",
    "app_path",
    "apps_placeholder",
    "group_dir",
    "group_files",
    "group_kustomization",
    "helmrelease",
    "parse_group",
    "parse_helmrelease",
    "quota_helmreleases",
    "tenants_kustomization",
]


def apps_placeholder(group: str) -> Manifest:
    """Keeps ``tenants/<group>/apps`` in Git while the group has no deployment: Git has no
    empty folders, and the group's GitRepository (sparse checkout) and Kustomization
    (path) need it. Not YAML, so Flux's generated kustomization skips it."""
    return Manifest(f"{layout.apps_dir(group)}/.gitkeep", "")


@dataclass(frozen=True)
class Change:
    """Files to write and paths to delete, as one commit with this message."""

    message: str
    writes: tuple[Manifest, ...] = ()
    deletes: tuple[str, ...] = ()
    trailers: dict[str, str] = field(default_factory=dict)

    def full_message(self) -> str:
        if not self.trailers:
            return self.message
        trailer_lines = "\n".join(f"{key}: {value}" for key, value in self.trailers.items())
        return f"{self.message.rstrip()}\n\n{trailer_lines}\n"
