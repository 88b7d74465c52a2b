"""What runs beside what was committed, and which commit is live for one deployment.

After a failed upgrade that Helm rolled back, the cluster runs an older version than main
holds, and the group's last applied commit says nothing about which one: it is the commit
Flux applied to the whole folder. The chart writes the digest of the values it was rendered
from on the Deployment's metadata (``render.digest``), and Helm changes the Deployment only
when an upgrade succeeds. So the running digest names the version that runs: the newest
version of the deployment's file in Git whose values carry that digest (and that image: a
person may edit the image by hand without the digest) is its live commit.

That lookup walks at most ``LOOKBACK`` versions of one file (one git process); its answer is
cached by deployment, digest, image and the commit that last changed the file (a bounded
LRU), so a page of cards walks no history while nothing changes, and none at all when what
runs is what was committed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from gitops_bridge import history, render, slim
from gitops_bridge.cache import Bounded
from gitops_bridge.models import Deployment
from gitops_bridge.render import digest
from gitops_bridge.service import Service

LOOKBACK = 50  # versions of a deployment's file searched for the one that runs


@dataclasses.dataclass(frozen=True)
class Running:
    """What the cluster's Deployment runs, against what main holds."""

    image: str  # the app container's image ("" when the Deployment names none)
    digest: str  # its spec-digest annotation ("": a chart before the annotation, or a hand edit)
    committed_image: str
    committed_digest: str  # the digest main's file carries ("" when it carries none)
    committed_commit: str | None  # the commit that last changed the file on main
    commit: str | None  # the live commit: the newest version carrying what runs; None: unknown
    older: bool  # what runs is older than the last LOOKBACK versions
    settings: Deployment | None  # the live version as Git holds it (None: unknown)

    @property
    def matches(self) -> bool | None:
        """Whether what runs is what main holds; None when the Deployment carries no digest
        (and runs the committed image: nothing says otherwise)."""
        if not self.digest:
            return None if self.image == self.committed_image else False
        return self.digest == self.committed_digest and self.image == self.committed_image


def observed(obj: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """The app container's image and the spec-digest annotation of a Deployment as the
    cluster has it (slim or full); None without one."""
    if obj is None:
        return None
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    template = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = template.get("containers")
    image = next(
        (str(c.get("image", "")) for c in containers or () if c.get("name") == slim.APP),
        "",
    )
    return image, str(annotations.get(digest.ANNOTATION, ""))


# (clone, file, digest, image, the file's last commit) -> (live commit, its blob, older)
_live: Bounded[tuple[str, str, str, str, str], tuple[str | None, str | None, bool]] = Bounded(
    max_items=4096
)


def lookup(
    svc: Service,
    deployment: Deployment,
    *,
    cluster: Mapping[str, Any] | None,
    commit: str | None,
) -> Running | None:
    """What runs for a deployment on main, given its Deployment in the cluster (None: none
    there yet, and nothing to say) and ``commit``, the last commit that changed its file."""
    seen = observed(cluster)
    if seen is None:
        return None
    image, running = seen
    path = render.app_path(deployment.group, deployment.name)
    found = Running(
        image=image,
        digest=running,
        committed_image=deployment.spec.image,
        committed_digest=_stored(svc, deployment.group, path),
        committed_commit=commit,
        commit=None,
        older=False,
        settings=None,
    )
    if found.matches:
        return dataclasses.replace(found, commit=commit, settings=deployment)
    if not running or commit is None:
        return found
    key = (str(svc.repo.path), path, running, image, commit)
    live = _live.get(key)
    if live is None:
        live = _walk(svc, path, running=running, image=image, head=commit)
        _live.put(key, live)
    sha, blob, older = live
    settings = history.deployment_at(svc, blob)[0] if blob is not None else None
    return dataclasses.replace(found, commit=sha, older=older, settings=settings)


def _stored(svc: Service, group: str, path: str) -> str:
    """The digest main's version of the file carries (parsed once per blob)."""
    folder = svc.state().folders.get(group)
    blob = folder.files.get(path) if folder is not None else None
    if blob is None:
        return ""
    try:
        return digest.stored(svc.repo.parsed_blob(blob))
    except Exception:  # unreadable: the state reports it; nothing runs from it
        return ""


def _walk(
    svc: Service, path: str, *, running: str, image: str, head: str
) -> tuple[str | None, str | None, bool]:
    """The newest of the file's last LOOKBACK versions up to ``head`` carrying the running
    digest and image: its commit and blob; and whether the history went on beyond them."""
    changes = svc.repo.file_log(path, commit=head, limit=LOOKBACK)
    for change in changes:
        if change.after is None:
            continue  # deleted there
        try:
            document = svc.repo.parsed_blob(change.after)
            values = document["spec"]["values"]
        except Exception:  # a version a hand edit broke cannot have been rendered
            continue
        if digest.stored(document) == running and values.get("image") == image:
            return change.entry.sha, change.after, False
    return None, None, len(changes) >= LOOKBACK


def last_commit(svc: Service, deployment: Deployment) -> str | None:
    """The commit that last changed the deployment's file on main (kept incrementally by
    the clone: a new head walks only the commits since the last one seen)."""
    found = svc.repo.last_changes(svc.repo.head(), render.TENANTS_DIR).get(
        render.app_path(deployment.group, deployment.name)
    )
    return found.sha if found is not None else None
