"""One PersistentVolumeClaim per volume, in ``tenants/<group>/apps/volumes/``, and back.

The group's Kustomization applies it with the deployments (as the group's account, in its
namespace) and prunes what leaves Git, except what says
``kustomize.toolkit.fluxcd.io/prune: disabled`` in the cluster. Every claim says so while it
exists, so removing a deployment, reverting the volume's creation, restoring an older
version or a failed reconcile never deletes data. An explicit delete is two commits: the
first drops the annotation (``deleting``: the claim is released), and once Flux applied it
the second removes the file, which Flux then prunes.
"""

from __future__ import annotations

from typing import Any

from gitops_bridge.models import Volume, VolumeSpec
from gitops_bridge.render import layout
from gitops_bridge.render.manifest import Manifest
from gitops_bridge.render.yamlio import dump

VOLUMES_DIR = "volumes"
LABEL_VOLUME = f"{layout.DOMAIN}/volume"
ANNOTATION_DELETING = f"{layout.DOMAIN}/deleting"


def volumes_dir(group: str) -> str:
    return f"{layout.apps_dir(group)}/{VOLUMES_DIR}"


def volume_path(group: str, name: str) -> str:
    return f"{volumes_dir(group)}/{name}.yaml"


def document(volume: Volume) -> dict[str, Any]:
    annotations: dict[str, str] = {}
    if volume.owner:
        annotations[layout.ANNOTATION_OWNER] = volume.owner
    if volume.deleting:
        annotations[ANNOTATION_DELETING] = volume.deleting
    else:
        annotations[layout.ANNOTATION_PRUNE] = "disabled"
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": volume.name,
            "namespace": volume.namespace,
            "labels": {
                layout.LABEL_MANAGED_BY: layout.MANAGED_BY,
                layout.LABEL_GROUP: volume.group,
                LABEL_VOLUME: volume.name,
            },
            "annotations": annotations,
        },
        "spec": {
            "accessModes": [volume.spec.access_mode],
            "storageClassName": volume.spec.storage_class,
            "resources": {"requests": {"storage": volume.spec.size}},
        },
    }


def manifest(volume: Volume) -> Manifest:
    return Manifest(volume_path(volume.group, volume.name), dump(document(volume)))


def parse_volume(doc: Any) -> Volume:
    """The volume back from its claim (raises KeyError/ValueError if not one of ours)."""
    meta = doc["metadata"]
    spec = doc["spec"]
    modes = spec["accessModes"]
    if not isinstance(modes, list) or len(modes) != 1:
        raise ValueError("spec.accessModes: gitops-bridge writes exactly one access mode")
    annotations = meta.get("annotations") or {}
    return Volume(
        group=meta["labels"][layout.LABEL_GROUP],
        spec=VolumeSpec.model_validate(
            {
                "name": meta["name"],
                "size": spec["resources"]["requests"]["storage"],
                "storageClass": spec.get("storageClassName") or "",
                "accessMode": modes[0],
            }
        ),
        owner=annotations.get(layout.ANNOTATION_OWNER, ""),
        deleting=annotations.get(ANNOTATION_DELETING, ""),
    )
