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


def group_kustomization(
    group: str, *, files: Iterable[str], legacy: Iterable[str] = ()
) -> Manifest:
    """Lists the group's platform files (paths relative to the group dir); never apps/,
    which the group's own Kustomization applies. ``legacy``: apps/ entries the earlier
    layout listed, kept while ``upgrade-repo`` moves them (see Service.upgrade_repository)."""
    names = {name for name in files if "/" not in name}
    fixed = [name for name in layout.PLATFORM_FILES if name in names]
    return Manifest(
        f"{layout.group_dir(group)}/kustomization.yaml",
        _kustomization(fixed + sorted(set(legacy))),
    )
