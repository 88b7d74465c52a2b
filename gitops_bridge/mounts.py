"""Pure rules of mounting a group's volumes into a deployment, and the storage quota.

A ReadWriteOnce volume is mounted read-write by one pod: a deployment using it runs at most
one replica (autoscaling too), no other deployment mounts it, and it rolls out with
``Recreate`` (the old pod lets go of the volume before the new one starts; no surge pod).
ReadWriteMany volumes allow replicas and rolling updates; ReadOnlyMany ones are mounted
read-only.

The storage quota counts the volumes' requested sizes plus the group's registry images;
a change that grows the volumes past it is refused, naming the numbers.
"""

from __future__ import annotations

from collections.abc import Iterable

from gitops_bridge import quantity
from gitops_bridge.errors import Conflict, FieldProblem, InvalidRequest, QuotaExceeded
from gitops_bridge.models import Deployment, Group, Volume

STORAGE_TAB = "free space in the Storage tab (old image tags, unused volumes)"


def check(
    deployment: Deployment, volumes: Iterable[Volume], others: Iterable[Deployment]
) -> Deployment:
    """The deployment with ``recreate`` set from what it mounts; InvalidRequest naming the
    field when a mount breaks a rule. ``others``: the group's other deployments."""
    found = {v.name: v for v in volumes}
    spec = deployment.spec
    problems: list[FieldProblem] = []
    one_pod = False
    for i, mount in enumerate(spec.volumes):
        volume = found.get(mount.volume)
        where = f"volumes[{i}]"
        if volume is None:
            problems.append(
                FieldProblem(
                    f"{where}.volume",
                    f"group {deployment.group} has no volume {mount.volume!r} (create it in the "
                    "Storage tab)",
                )
            )
            continue
        if volume.deleting:
            problems.append(
                FieldProblem(f"{where}.volume", f"volume {mount.volume!r} is being deleted")
            )
            continue
        if volume.spec.access_mode == "ReadOnlyMany" and not mount.read_only:
            problems.append(
                FieldProblem(
                    f"{where}.readOnly",
                    f"must be true: volume {mount.volume!r} is ReadOnlyMany",
                )
            )
        if not volume.one_pod:
            continue
        one_pod = True
        if spec.replicas > 1:
            problems.append(
                FieldProblem(
                    "replicas",
                    f"must be 0 or 1: volume {mount.volume!r} is ReadWriteOnce (one pod mounts "
                    "it); put the data on a ReadWriteMany class for more replicas",
                )
            )
        if spec.autoscaling is not None and spec.autoscaling.max > 1:
            problems.append(
                FieldProblem(
                    "autoscaling.max",
                    f"must be 1: volume {mount.volume!r} is ReadWriteOnce (one pod mounts it), "
                    f"got {spec.autoscaling.max}; turn autoscaling off or put the data on a "
                    "ReadWriteMany class",
                )
            )
        holders = sorted(
            other.name
            for other in others
            if other.name != deployment.name
            and any(m.volume == mount.volume for m in other.spec.volumes)
        )
        if holders:
            problems.append(
                FieldProblem(
                    f"{where}.volume",
                    f"volume {mount.volume!r} is ReadWriteOnce and mounted by {', '.join(holders)}",
                )
            )
    if problems:
        raise InvalidRequest.of(problems)
    if deployment.recreate == one_pod:
        return deployment
    return deployment.model_copy(update={"recreate": one_pod})


def mounted_by(volume: str, deployments: Iterable[Deployment]) -> list[str]:
    return sorted(d.name for d in deployments if any(m.volume == volume for m in d.spec.volumes))


def volume_bytes(volumes: Iterable[Volume]) -> int:
    return sum(int(quantity.parse(v.spec.size).value) for v in volumes)


def check_storage(
    group: Group, *, volumes_before: int, volumes_after: int, images: int | None
) -> None:
    """Refuse growing the volumes (bytes) past the group's storage quota, registry images
    included (``None``: not known, counted as nothing)."""
    limit = int(quantity.parse(group.quota.storage).value)
    used_images = images or 0
    if volumes_after <= volumes_before or volumes_after + used_images <= limit:
        return
    requested = volumes_after - volumes_before
    raise QuotaExceeded(
        f"storage quota of group {group.name} exceeded: volumes {human(volumes_before)} + "
        f"images {human(used_images)}{'' if images is not None else ' (not known)'} + "
        f"requested {human(requested)} = {human(volumes_after + used_images)}, allowed "
        f"{human(limit)}; {STORAGE_TAB}, or ask a platform admin to raise the quota"
    )


def over_quota(group: Group, *, volumes: int, images: int | None) -> int:
    """Bytes the group is over its storage quota (0: within it)."""
    limit = int(quantity.parse(group.quota.storage).value)
    return max(0, volumes + (images or 0) - limit)


def human(size: int) -> str:
    return quantity.Quantity(size).human_memory()


def refuse_delete(volume: Volume, deployments: Iterable[Deployment]) -> None:
    holders = mounted_by(volume.name, deployments)
    if holders:
        raise Conflict(
            f"volume {volume.name} is mounted by {', '.join(holders)}: unmount it there first"
        )
