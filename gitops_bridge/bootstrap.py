"""The initial content of a GitOps repository: repo-template/ plus the vendored chart."""

from __future__ import annotations

from pathlib import Path

from gitops_bridge import assets, render
from gitops_bridge.render import layout, yamlio

CLUSTER_PLACEHOLDER = "CLUSTER"
TENANTS_FILE = f"clusters/{CLUSTER_PLACEHOLDER}/tenants.yaml"


def _files_under(base: Path) -> dict[str, bytes]:
    return {
        path.relative_to(base).as_posix(): path.read_bytes()
        for path in sorted(base.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def template_files(*, cluster: str, decryption: bool = False) -> dict[str, bytes]:
    """Every file of a new GitOps repository for the named cluster (path -> bytes).

    ``decryption``: secrets are configured (``secrets.age_recipients``), so the platform
    Kustomization decrypts the groups' SOPS-encrypted Secrets with ``flux-system/sops-age``.
    """
    files: dict[str, bytes] = {}
    for rel, data in _files_under(assets.repo_template()).items():
        parts = [cluster if part == CLUSTER_PLACEHOLDER else part for part in rel.split("/")]
        data = data.replace(b"${CLUSTER}", cluster.encode())
        if decryption and rel == TENANTS_FILE:
            data = _with_decryption(data)
        files["/".join(parts)] = data
    for rel, data in _files_under(assets.chart()).items():
        files[f"charts/{assets.chart().name}/{rel}"] = data
    index = render.tenants_kustomization([])
    files[index.path] = index.data
    return files


def _with_decryption(data: bytes) -> bytes:
    """The Kustomization with ``spec.decryption`` (its comments kept)."""
    document = yamlio.load_roundtrip(data)
    document["spec"]["decryption"] = {
        "provider": "sops",
        "secretRef": {"name": layout.CLUSTER_AGE_SECRET},
    }
    return yamlio.dump_roundtrip(document).encode()


def initial_change(*, cluster: str, decryption: bool = False) -> render.Change:
    files = template_files(cluster=cluster, decryption=decryption)
    return render.Change(
        message=f"Initialise the GitOps repository for cluster {cluster}",
        writes=tuple(render.Manifest(path, data.decode()) for path, data in files.items()),
    )
