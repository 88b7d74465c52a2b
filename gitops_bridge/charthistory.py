"""What the Git history of a GitOps repository says about its charts (git CLI, read only).

``head(root)`` is the commit Flux would build from a checkout at root. ``unbumped(root)``
finds chart content that changed without a version bump: with ``reconcileStrategy:
ChartVersion`` (Flux's default) helm-controller upgrades a release only when the chart
version changes, so content committed under a version that was already released never
reaches a cluster that has that version (and clusters that installed it at different
commits run different content under one name). The rule: one version of ``charts/<chart>``
names one content, the Git tree id of the chart directory, in every commit that touched it.

Only the version the chart has now (its Chart.yaml at root) is reported: bumping the version
is the fix, after which every cluster upgrades to one content again, so history that a bump
has settled is not held against the repository forever.

The cost grows with the commits that touched a chart, not with the repository:
``git log -- charts/<chart>`` lists them, one ``git cat-file --batch`` reads each one's tree
id and Chart.yaml. Not a git checkout, or no git: nothing to say (``None`` / ``[]``).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

TIMEOUT = 120


@dataclass(frozen=True)
class Unbumped:
    """Chart content committed under a version that was released with other content."""

    chart: str  # repo-relative directory, e.g. charts/generic-app
    version: str
    commit: str  # short id of the commit that changed the content
    released: str  # short id of the first commit with this version (and other content)

    @property
    def message(self) -> str:
        return (
            f"content changed in {self.commit} without a version bump (version "
            f"{self.version} was released with other content in {self.released})"
        )


def head(root: Path) -> str | None:
    """The full id of the commit checked out at root, or None when root is not in a git repo."""
    out = _git(root, "rev-parse", "--verify", "-q", "HEAD^{commit}")
    return out.decode().strip() if out else None


def unbumped(root: Path) -> list[Unbumped]:
    """Commits that changed a chart under ``root/charts/`` and kept its current version."""
    prefix = _git(root, "rev-parse", "--show-prefix")
    if prefix is None or head(root) is None:
        return []
    charts_dir = root / "charts"
    charts = (
        sorted(p.name for p in charts_dir.iterdir() if (p / "Chart.yaml").is_file())
        if charts_dir.is_dir()
        else []
    )
    found: list[Unbumped] = []
    for chart in charts:
        top = f"{prefix.decode().strip()}charts/{chart}"  # as git names it, from the top
        current = _version((charts_dir / chart / "Chart.yaml").read_bytes())
        found += [
            change
            for change in _chart_history(root, top, label=f"charts/{chart}")
            if change.version == current
        ]
    return found


def _chart_history(root: Path, path: str, *, label: str) -> list[Unbumped]:
    log = _git(root, "log", "--format=%H %h", "--", f":(top){path}")
    if not log:
        return []
    commits = [line.split(" ", 1) for line in reversed(log.decode().splitlines())]
    requests = "".join(f"{full}:{path}\n{full}:{path}/Chart.yaml\n" for full, _ in commits)
    objects = _cat_file(root, requests)
    if objects is None:
        return []
    released: dict[str, tuple[str, str]] = {}  # version -> (tree id, short commit)
    seen: set[tuple[str, str]] = set()
    found = []
    for index, (_, short) in enumerate(commits):
        tree, chart_yaml = objects[2 * index], objects[2 * index + 1]
        version = _version(chart_yaml[1]) if chart_yaml else ""
        if tree is None or not version or (version, tree[0]) in seen:
            continue
        seen.add((version, tree[0]))
        first = released.setdefault(version, (tree[0], short))
        if first[0] != tree[0]:
            found.append(Unbumped(chart=label, version=version, commit=short, released=first[1]))
    return found


def _version(chart_yaml: bytes) -> str:
    try:
        meta = YAML(typ="safe").load(chart_yaml.decode("utf-8", errors="replace"))
    except YAMLError:
        return ""
    version = meta.get("version") if isinstance(meta, dict) else None
    return str(version) if version is not None else ""


def _cat_file(root: Path, requests: str) -> list[tuple[str, bytes] | None] | None:
    """(object id, content) per request line of ``git cat-file --batch``; None when missing."""
    out = _git(root, "cat-file", "--batch", stdin=requests.encode())
    if out is None:
        return None
    objects: list[tuple[str, bytes] | None] = []
    pos = 0
    while pos < len(out):
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) == 3 and header[2].isdigit():  # <oid> <type> <size>, then the content
            size = int(header[2])
            objects.append((header[0].decode(), out[pos : pos + size]))
            pos += size + 1
        else:  # <request> missing (or ambiguous)
            objects.append(None)
    return objects


def _git(root: Path, *args: str, stdin: bytes | None = None) -> bytes | None:
    """stdout of ``git -C root args``, or None when git is missing or the command fails."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), *args],
            input=stdin,
            capture_output=True,
            check=False,
            timeout=TIMEOUT,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None
