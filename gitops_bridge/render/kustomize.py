"""kustomization.yaml files: the tenants index and one per group."""

from __future__ import annotations

from collections.abc import Iterable

from gitops_bridge.render import layout
from gitops_bridge.render.manifest import Manifest
from gitops_bridge.render.yamlio import dump


def _kustomization(resources: list[str]) -> str:
    return dump(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": resources,
        }
    )


def tenants_kustomization(groups: Iterable[str]) -> Manifest:
    return Manifest(f"{layout.TENANTS_DIR}/kustomization.yaml", _kustomization(sorted(groups)))


def group_kustomization(group: str, *, files: Iterable[str]) -> Manifest:
    """Lists the group's files (paths relative to the group dir), tenant files first."""
    names = set(files)
    fixed = [name for name in (*layout.GROUP_FILES, layout.OCI_SOURCE_FILE) if name in names]
    rest = sorted(names - set(fixed))
    return Manifest(f"{layout.group_dir(group)}/kustomization.yaml", _kustomization(fixed + rest))
