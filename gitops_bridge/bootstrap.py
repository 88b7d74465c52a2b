"""The initial content of a GitOps repository: repo-template/ plus the vendored chart."""

from __future__ import annotations

from pathlib import Path

from gitops_bridge import assets, render

CLUSTER_PLACEHOLDER = "CLUSTER"


def _files_under(base: Path) -> dict[str, bytes]:
    return {
        path.relative_to(base).as_posix(): path.read_bytes()
        for path in sorted(base.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def template_files(*, cluster: str) -> dict[str, bytes]:
    """Every file of a new GitOps repository for the named cluster (path -> bytes)."""
    files: dict[str, bytes] = {}
    for rel, data in _files_under(assets.repo_template()).items():
        parts = [cluster if part == CLUSTER_PLACEHOLDER else part for part in rel.split("/")]
        files["/".join(parts)] = data.replace(b"${CLUSTER}", cluster.encode())
    for rel, data in _files_under(assets.chart()).items():
        files[f"charts/{assets.chart().name}/{rel}"] = data
    index = render.tenants_kustomization([])
    files[index.path] = index.data
    return files


def initial_change(*, cluster: str) -> render.Change:
    files = template_files(cluster=cluster)
    return render.Change(
        message=f"Initialise the GitOps repository for cluster {cluster}",
        writes=tuple(render.Manifest(path, data.decode()) for path, data in files.items()),
    )
