"""A deployment with a long history, written cheaply: one ``git fast-import`` process appends
the commits to the remote's main, each file as the service writes it (``render.helmrelease``
over the version before), with the service's messages and trailers."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gitops_bridge import models, render
from gitops_bridge.config import Settings
from gitops_bridge.service import TRAILER_ACTION, TRAILER_DEPLOYMENT, TRAILER_GROUP

AUTHORS = (("alice", "alice@example.com"), ("bob", "bob@example.com"))
START = 1_700_000_000  # the first appended commit's time; each next one a minute later


@dataclass
class Written:
    """The appended commits, oldest first."""

    changes: list[str] = field(default_factory=list)  # those that changed the deployment
    others: list[str] = field(default_factory=list)  # those that changed another one
    deletes: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # a hand edit the bridge cannot read


@dataclass
class _Commit:
    message: str
    author: tuple[str, str]
    writes: dict[str, bytes] = field(default_factory=dict)
    deletes: tuple[str, ...] = ()


def append_history(
    remote: Path,
    *,
    settings: Settings,
    deployment: models.Deployment,
    count: int,
    others: Sequence[models.Deployment] = (),
    every_other: int = 0,
    delete_every: int = 0,
    broken_every: int = 0,
) -> Written:
    """``count`` changes of ``deployment`` (on the remote's main, which holds it): scales,
    image updates, env changes and restarts in turn; with ``delete_every`` a delete (then a
    restore) that often, with ``broken_every`` a hand edit that breaks the file (then a
    repair); with ``every_other`` a change of one of ``others`` after that many."""
    branch = settings.branch
    path = _path(deployment)
    current = deployment
    data = _show(remote, f"{branch}:{path}")  # the file now (None: deleted)
    assert data is not None, f"{path} is not on {branch}"
    readable = data  # its newest version the service can read
    versions = {other.name: (other, _show(remote, f"{branch}:{_path(other)}")) for other in others}
    commits: list[tuple[str, _Commit]] = []
    for n in range(count):
        author = AUTHORS[n % len(AUTHORS)]
        if data is None:
            data = readable
            commits.append(("change", _restore(current, data, author)))
        elif delete_every and n % delete_every == delete_every - 1:
            data = None
            commits.append(("delete", _delete(current, author)))
        elif broken_every and n % broken_every == broken_every - 1:
            data = readable.replace(b"  values:\n", b"  values: [\n", 1)
            commits.append(("broken", _Commit("Hand edit", author, {path: data})))
        else:
            after = _changed(current, n)
            written = render.helmrelease(after, settings=settings, current=readable, before=current)
            commits.append(("change", _update(current, after, written.data, author)))
            current, data, readable = after, written.data, written.data
        if every_other and others and n % every_other == every_other - 1:
            other, text = versions[others[n % len(others)].name]
            replicas = 1 + other.spec.replicas % 5
            after = other.model_copy(
                update={"spec": other.spec.model_copy(update={"replicas": replicas})}
            )
            written = render.helmrelease(after, settings=settings, current=text, before=other)
            versions[other.name] = (after, written.data)
            commits.append(("other", _update(other, after, written.data, author)))
    shas = _import(remote, branch=branch, commits=[c for _, c in commits], settings=settings)
    found = Written()
    for (kind, _), sha in zip(commits, shas, strict=True):
        (found.others if kind == "other" else found.changes).append(sha)
        if kind == "delete":
            found.deletes.append(sha)
        elif kind == "broken":
            found.broken.append(sha)
    return found


def _changed(before: models.Deployment, n: int) -> models.Deployment:
    spec = before.spec
    step = n % 4
    if step == 0:
        return before.model_copy(
            update={"spec": spec.model_copy(update={"replicas": 1 + (spec.replicas % 3)})}
        )
    if step == 1:
        return before.model_copy(
            update={"spec": spec.model_copy(update={"image": f"registry:5000/a/web:1.{n}"})}
        )
    if step == 2:
        env = [models.EnvVar(name="N", value=str(n))] if not spec.env else []
        return before.model_copy(update={"spec": spec.model_copy(update={"env": env})})
    stamp = f"2024-01-01T00:00:{n % 60:02d}Z{n}"
    return before.model_copy(update={"restarted_at": stamp})


def _path(deployment: models.Deployment) -> str:
    return render.app_path(deployment.group, deployment.name)


def _trailers(action: str, deployment: models.Deployment) -> dict[str, str]:
    return {
        TRAILER_ACTION: action,
        TRAILER_GROUP: deployment.group,
        TRAILER_DEPLOYMENT: deployment.name,
    }


def _update(
    before: models.Deployment, after: models.Deployment, data: bytes, author: tuple[str, str]
) -> _Commit:
    differences = models.spec_differences(before.spec, after.spec)
    if before.restarted_at != after.restarted_at:
        subject, action = f"Restart {after.name}", "restart"
    elif differences == [f"replicas {before.spec.replicas} -> {after.spec.replicas}"]:
        subject, action = f"Scale {after.name} to {after.spec.replicas} replicas", "update"
    else:
        subject, action = f"Update {after.name}: " + "; ".join(differences), "update"
    change = render.Change(message=subject, trailers=_trailers(action, after))
    return _Commit(change.full_message(), author, {_path(after): data})


def _delete(deployment: models.Deployment, author: tuple[str, str]) -> _Commit:
    change = render.Change(
        message=f"Delete {deployment.name} from {deployment.group}",
        trailers=_trailers("delete", deployment),
    )
    return _Commit(change.full_message(), author, deletes=(_path(deployment),))


def _restore(deployment: models.Deployment, data: bytes, author: tuple[str, str]) -> _Commit:
    change = render.Change(
        message=f"Restore {deployment.name} to an earlier version",
        trailers=_trailers("restore", deployment),
    )
    return _Commit(change.full_message(), author, {_path(deployment): data})


def _show(remote: Path, spec: str) -> bytes | None:
    done = subprocess.run(
        ["git", "--git-dir", str(remote), "cat-file", "blob", spec], capture_output=True
    )
    return done.stdout if done.returncode == 0 else None


def _import(remote: Path, *, branch: str, commits: list[_Commit], settings: Settings) -> list[str]:
    """Append the commits to ``branch`` with one fast-import; their shas, in order."""
    committer = f"{settings.committer_name} <{settings.committer_email}>"
    with tempfile.TemporaryDirectory() as tmp:
        marks = Path(tmp) / "marks"
        importer = subprocess.Popen(
            ["git", "fast-import", "--quiet", "--done", f"--export-marks={marks}"],
            cwd=remote,
            stdin=subprocess.PIPE,
        )
        assert importer.stdin is not None
        out = importer.stdin
        for n, commit in enumerate(commits, start=1):
            when = START + 60 * n
            message = commit.message.encode()
            name, email = commit.author
            out.write(
                f"commit refs/heads/{branch}\nmark :{n}\n"
                f"author {name} <{email}> {when} +0000\n"
                f"committer {committer} {when} +0000\n"
                f"data {len(message)}\n".encode()
                + message
                + b"\n"
            )
            if n == 1:
                out.write(f"from refs/heads/{branch}^0\n".encode())
            for target, data in commit.writes.items():
                out.write(f"M 100644 inline {target}\ndata {len(data)}\n".encode() + data + b"\n")
            for target in commit.deletes:
                out.write(f"D {target}\n".encode())
            out.write(b"\n")
        out.write(b"done\n")
        out.close()
        if importer.wait() != 0:
            raise RuntimeError(f"git fast-import failed ({importer.returncode})")
        shas = dict(line.split(" ", 1) for line in marks.read_text().splitlines())
    return [shas[f":{n}"].strip() for n in range(1, len(commits) + 1)]
