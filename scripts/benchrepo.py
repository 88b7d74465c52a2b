"""A GitOps repository of N deployments in groups of 100, exactly as the service writes it.

Every file comes from the service's own builders: ``bootstrap.template_files`` (the
repository template and the vendored chart), and per group what ``Service.create_group``
writes (``render.group_files``, ``group_kustomization``, ``apps_placeholder``; one
``tenants_kustomization`` listing them all), then one ``render.helmrelease`` per
deployment. The files are streamed into a bare repository by one ``git fast-import``
process as a single commit (one commit per deployment would take hours at 20,000, and the
service reads the tree, not the history); the service then clones it over file://.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gitops_bridge import bootstrap, gitrepo, models, render
from gitops_bridge.config import Settings

PER_GROUP = 100
OWNER = "bench"
ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class Generated:
    groups: list[str]
    deployments: list[str]  # names ({app}-{id}), in the order written
    files: int


def group_name(index: int) -> str:
    return f"team-{index:04d}"


def group_data(name: str) -> dict[str, object]:
    """A group with room for its 100 deployments and the bench's creates."""
    return {
        "name": name,
        "members": [OWNER],
        "quota": {"cpu": "500", "memory": "1000Gi", "storage": "100Gi", "deployments": 1000},
    }


def deployment_data(group: int, app: int) -> dict[str, object]:
    return {
        "name": f"app{app:03d}",
        "image": f"registry:5000/{group_name(group)}/app{app:03d}:1.{app % 7}",
        "replicas": 1 + app % 3,
        "expose": app % 2 == 0,
        "env": [{"name": f"VAR_{j}", "value": f"value {group}.{app}.{j}"} for j in range(3)],
    }


def _files(settings: Settings, deployments: int, ids: Iterator[str]) -> Iterator[render.Manifest]:
    """Every file of the repository (the template's index is replaced by the full one)."""
    index = render.tenants_kustomization([]).path
    for path, data in bootstrap.template_files(cluster=settings.cluster).items():
        if path != index:
            yield render.Manifest(path, data.decode())
    groups = (deployments + PER_GROUP - 1) // PER_GROUP
    yield render.tenants_kustomization([group_name(g) for g in range(groups)])
    for g in range(groups):
        group = models.parse_group(group_data(group_name(g)))
        writes = render.group_files(group, settings=settings)
        names = [m.path.rsplit("/", 1)[1] for m in writes]
        yield from writes
        yield render.group_kustomization(group.name, files=names)
        yield render.apps_placeholder(group.name)
        for a in range(min(PER_GROUP, deployments - g * PER_GROUP)):
            spec = models.parse_deployment(deployment_data(g, a), limits=settings.limits)
            deployment = models.Deployment(group=group.name, id=next(ids), spec=spec, owner=OWNER)
            yield render.helmrelease(deployment, settings=settings)


def _unique_ids(seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    seen: set[str] = set()
    while True:
        candidate = "".join(rng.choice(ID_ALPHABET) for _ in range(models.ID_LENGTH))
        if candidate not in seen:
            seen.add(candidate)
            yield candidate


def generate(remote: Path, deployments: int, settings: Settings, *, seed: int = 9) -> Generated:
    """Write the repository as one commit on ``settings.branch`` of the bare ``remote``."""
    gitrepo.init_bare(remote, branch=settings.branch)
    groups: set[str] = set()
    names: list[str] = []
    count = 0
    importer = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--done"],
        cwd=remote,
        stdin=subprocess.PIPE,
    )
    assert importer.stdin is not None
    out = importer.stdin
    message = f"Generated: {deployments} deployments in groups of {PER_GROUP}\n".encode()
    out.write(
        f"commit refs/heads/{settings.branch}\n"
        f"committer {settings.committer_name} <{settings.committer_email}> 1700000000 +0000\n"
        f"data {len(message)}\n".encode()
        + message
        + b"\n"
    )
    for manifest in _files(settings, deployments, _unique_ids(seed)):
        data = manifest.data
        out.write(f"M 100644 inline {manifest.path}\ndata {len(data)}\n".encode() + data + b"\n")
        count += 1
        parts = manifest.path.split("/")
        if len(parts) == 4 and parts[2] == render.APPS_DIR and parts[3].endswith(".yaml"):
            groups.add(parts[1])
            names.append(parts[3].removesuffix(".yaml"))
    out.write(b"\ndone\n")
    out.close()
    if importer.wait() != 0:
        raise RuntimeError(f"git fast-import failed ({importer.returncode})")
    return Generated(groups=sorted(groups), deployments=names, files=count)
