"""A deployment with a long history (more than 200 versions): every version comes exactly
once page by page, each page equals what its commits hold read one by one, any version can
be restored or reverted, and a commit that is not one of its changes on main is refused
(422 naming ``commit``) with nothing written."""

from __future__ import annotations

import functools
import hashlib
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gitops_bridge import models, render
from gitops_bridge.render import digest, tenancy, yamlio
from gitops_bridge.service import TRAILER_ACTION, Service
from tests.apputil import create_group, deploy, make_app
from tests.gitutil import git, head
from tests.historyutil import Written, append_history

ALICE = {"X-Forwarded-User": "alice"}
CHANGES = 259  # with the create: 260 versions, more than the 200 a log used to reach


@dataclass
class Long:
    app: Flask
    client: FlaskClient
    remote: Path
    name: str
    path: str
    other: str
    written: Written


@pytest.fixture(scope="module")
def long(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Long]:
    with pytest.MonkeyPatch.context() as patch:  # the autouse fixture is per test
        patch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
        patch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        data = tmp_path_factory.mktemp("long") / "data"
        app = make_app(data)
        client = app.test_client()
        create_group(client)
        name, other = deploy(client), deploy(client, "other")
        svc: Service = app.extensions["gitops_bridge"]
        state = svc.state()
        written = append_history(
            data / "remote.git",
            settings=svc.settings,
            deployment=state.deployments[name],
            count=CHANGES,
            others=[state.deployments[other]],
            every_other=7,
            delete_every=41,
            broken_every=53,
        )
        svc.repo.fetch()
        path = render.app_path("team-a", name)
        yield Long(app, client, data / "remote.git", name, path, other, written)


def versions_of(long: Long) -> list[str]:
    """Every commit that changed the deployment on the remote's main, newest first."""
    return git(long.remote, "log", "--format=%H", "main", "--", long.path).split()


def walk(long: Long, url: str) -> Iterator[list[dict[str, Any]]]:
    """Each page, following ``Link: <...>; rel="next"``."""
    address: str | None = url
    while address is not None:
        response = long.client.get(address, headers=ALICE)
        assert response.status_code == 200, response.json
        yield response.json
        link = re.search(r'<([^>]+)>;\s*rel="next"', response.headers.get("Link", ""))
        address = link.group(1) if link else None


def test_every_version_comes_once_page_by_page_newest_first(long: Long) -> None:
    expected = versions_of(long)
    assert len(expected) == CHANGES + 1 > 200
    for limit in (50, 37, 200):
        url = f"/api/v1/deployments/{long.name}/history?limit={limit}"
        pages = list(walk(long, url))
        assert [v["commit"] for page in pages for v in page] == expected, limit
        assert all(len(page) == limit for page in pages[:-1]) and 1 <= len(pages[-1]) <= limit


def test_a_cursor_still_leads_on_after_main_moved(long: Long) -> None:
    url = f"/api/v1/deployments/{long.name}/history?limit=60"
    first = long.client.get(url, headers=ALICE)
    older = first.headers["Link"].split(">", 1)[0].removeprefix("<")
    expected = versions_of(long)
    other = long.client.post(
        f"/api/v1/deployments/{long.other}/scale", json={"replicas": 2}, headers=ALICE
    )
    assert other.status_code == 200, other.json
    rest = [v["commit"] for page in walk(long, older) for v in page]
    assert [v["commit"] for v in first.json] + rest == expected
    # the cursor abbreviated, as a person may paste it: checked against main from scratch
    cursor = older.split("before=", 1)[1].split("&", 1)[0]
    pasted = older.replace(cursor, cursor[:10].upper())
    assert long.client.get(pasted, headers=ALICE).json == long.client.get(older, headers=ALICE).json


def reference(long: Long, commit: str) -> dict[str, Any]:
    """A version as the API shows it, read from git one commit at a time."""
    fields = git(long.remote, "show", "-s", "--format=%an%x00%ae%x00%at%x00%B", commit)
    author, email, when, message = fields.split("\x00", 3)
    parent = git(long.remote, "rev-list", "--parents", "-n1", commit).split()[1:]
    old, _ = parsed(long, f"{parent[0]}:{long.path}" if parent else None)
    new, problem = parsed(long, f"{commit}:{long.path}")
    if problem:
        summary = [f"unreadable: {problem}"]
    else:
        summary = models.spec_differences(old.spec if old else None, new.spec if new else None)
    if new and old and new.restarted_at != old.restarted_at:
        summary.append("restarted")
    trailers = dict(
        line.split(": ", 1) for line in message.splitlines() if line.startswith("Gitops-Bridge-")
    )
    show = ["git", "--git-dir", str(long.remote), "show", "--format=", "--no-color"]
    diff = subprocess.run(
        [*show, commit, "--", long.path],
        check=True,
        capture_output=True,
        text=True,
    )
    return {
        "commit": commit,
        "author": author,
        "email": email,
        "time": int(when),
        "message": message.split("\n", 1)[0],
        "action": trailers.get(TRAILER_ACTION, ""),
        "summary": summary,
        "exists": new is not None or bool(problem),
        "live": False,  # no cluster: nothing runs
        # as git shows it, without the settings digest (tests/test_running.py proves hide)
        "diff": digest.hide(diff.stdout.strip("\n")),
    }


def parsed(long: Long, spec: str | None) -> tuple[models.Deployment | None, str]:
    if spec is None:
        return None, ""
    shown = subprocess.run(
        ["git", "--git-dir", str(long.remote), "show", spec], capture_output=True
    )
    if shown.returncode != 0:
        return None, ""  # absent at that commit
    try:
        return render.parse_helmrelease(yamlio.load(shown.stdout)), ""
    except Exception as exc:
        return None, tenancy.describe(exc)


def test_pages_equal_what_each_commit_holds(long: Long) -> None:
    expected = versions_of(long)
    interesting = {expected.index(sha) for sha in long.written.deletes + long.written.broken}
    starts = {0, len(expected) - 30} | {max(0, index - 3) for index in sorted(interesting)[:4]}
    shown = []
    for start in sorted(starts):
        url = f"/api/v1/deployments/{long.name}/history?limit=30&diff=1"
        if start > 0:
            url += f"&before={expected[start - 1][:12]}"
        page = long.client.get(url, headers=ALICE)
        assert page.status_code == 200, page.json
        assert page.json == [reference(long, sha) for sha in expected[start : start + 30]]
        shown += page.json
    # the pages compared hold every kind of version
    summaries = [summary for version in shown for summary in version["summary"]]
    for kind in ("created with image", "deleted", "unreadable: invalid YAML", "restarted"):
        assert any(summary.startswith(kind) for summary in summaries), kind
    assert {"create", "update", "restart", "delete", "restore", ""} <= {
        version["action"] for version in shown
    }


def test_the_oldest_version_is_restored_with_one_commit(long: Long) -> None:
    oldest = versions_of(long)[-1]
    before = head(long.remote)
    response = long.client.post(
        f"/api/v1/deployments/{long.name}/restore", json={"commit": oldest}, headers=ALICE
    )
    assert response.status_code == 200, response.json
    assert git(long.remote, "rev-list", "--count", f"{before}..main") == "1"
    assert git(long.remote, "diff", "--name-only", before, "main") == long.path
    restored = render.parse_helmrelease(yamlio.load(git(long.remote, "show", f"main:{long.path}")))
    created = render.parse_helmrelease(
        yamlio.load(git(long.remote, "show", f"{oldest}:{long.path}"))
    )
    assert restored.spec == created.spec
    assert f"its version of {oldest[:7]}" in git(long.remote, "log", "-1", "--format=%s")


def test_an_old_delete_and_an_old_change_are_found(long: Long) -> None:
    versions = versions_of(long)
    deleted = long.written.deletes[0]
    assert versions.index(deleted) > 200
    before = head(long.remote)
    restore = long.client.post(
        f"/api/v1/deployments/{long.name}/restore", json={"commit": deleted}, headers=ALICE
    )
    assert (
        restore.status_code == 422 and "pick a commit where it existed" in (restore.json["message"])
    )
    now = render.parse_helmrelease(yamlio.load(git(long.remote, "show", f"main:{long.path}")))
    for sha in versions[201:]:
        subject = git(long.remote, "log", "-1", "--format=%s", sha)
        scaled = re.fullmatch(r"Scale \S+ to (\d+) replicas", subject)
        parent, _ = parsed(long, f"{sha}^:{long.path}")
        if scaled and parent and now.spec.replicas not in (int(scaled[1]), parent.spec.replicas):
            break
    else:
        pytest.fail("no old scale to revert")
    revert = long.client.post(
        f"/api/v1/deployments/{long.name}/revert", json={"commit": sha}, headers=ALICE
    )
    assert (
        revert.status_code == 409
        and "conflicts with later changes of replicas" in (revert.json["message"])
    )
    assert head(long.remote) == before


@pytest.mark.parametrize("which", ["other deployment", "not on main", "unknown", "garbage"])
def test_a_commit_that_is_not_a_change_of_it_on_main_is_refused(long: Long, which: str) -> None:
    if which == "other deployment":
        commit = long.written.others[0]
    elif which == "not on main":
        text = git(long.remote, "show", f"main:{long.path}").replace("port: 8080", "port: 8081")
        body = commit_object(head(long.remote), tree_with(long, text), "Side change")
        commit = write_commit(long, body, ref=f"refs/heads/changes/team-a/{long.name}/side")
    elif which == "unknown":
        commit = "0" * 40
    else:
        commit = "12345zz"
    before = head(long.remote)
    for action in ("restore", "revert"):
        response = long.client.post(
            f"/api/v1/deployments/{long.name}/{action}", json={"commit": commit}, headers=ALICE
        )
        assert response.status_code == 422, response.json
        assert response.json["problems"][0]["field"] == "commit"
    assert head(long.remote) == before


def test_an_ambiguous_prefix_is_refused_a_longer_one_taken(long: Long) -> None:
    """Two commits whose shas share their first 7 hex digits: a change of the deployment on
    main, and one on a review branch (a birthday search: ~16,000 candidates a side)."""
    now = git(long.remote, "show", f"main:{long.path}")
    ours = tree_with(long, now.replace("port: 8080", "port: 8082"))
    theirs = tree_with(long, now.replace("port: 8080", "port: 8083"))
    main = head(long.remote)
    seen: dict[str, dict[str, bytes]] = {"ours": {}, "theirs": {}}
    for n in range(400_000):
        side, tree = ("ours", ours) if n % 2 == 0 else ("theirs", theirs)
        body = commit_object(main, tree, f"Change the port ({n})")
        prefix = sha_of(body)[:7]
        seen[side][prefix] = body
        other = seen["theirs" if side == "ours" else "ours"]
        if prefix in other:
            break
    else:
        pytest.fail("no two commits with the same 7-digit prefix")
    on_main = write_commit(long, seen["ours"][prefix], ref="refs/heads/main")
    write_commit(long, seen["theirs"][prefix], ref=f"refs/heads/changes/team-a/{long.name}/twin")
    before = head(long.remote)
    for action in ("restore", "revert"):
        response = long.client.post(
            f"/api/v1/deployments/{long.name}/{action}", json={"commit": prefix}, headers=ALICE
        )
        assert response.status_code == 422 and response.json["problems"][0]["field"] == "commit"
    assert head(long.remote) == before
    twin = sha_of(seen["theirs"][prefix])
    unique = next(on_main[:n] for n in range(8, 41) if on_main[:n] != twin[:n])
    reverted = long.client.post(
        f"/api/v1/deployments/{long.name}/revert", json={"commit": unique}, headers=ALICE
    )
    assert reverted.status_code == 200, reverted.json
    assert "port: 8080" in git(long.remote, "show", f"main:{long.path}")


def commit_object(parent: str, tree: str, message: str) -> bytes:
    """A commit with this tree over ``parent``, as git stores it."""
    return (
        f"tree {tree}\nparent {parent}\n"
        "author alice <alice@example.com> 1700000000 +0000\n"
        "committer alice <alice@example.com> 1700000000 +0000\n\n"
        f"{message}\n"
    ).encode()


def sha_of(body: bytes) -> str:
    return hashlib.sha1(b"commit %d\0" % len(body) + body).hexdigest()


def tree_with(long: Long, text: str) -> str:
    """Main's tree with the deployment's file holding ``text``."""
    run = functools.partial(git, long.remote)
    blob = subprocess.run(
        ["git", "--git-dir", str(long.remote), "hash-object", "-w", "--stdin"],
        input=text.rstrip("\n") + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    index = long.remote.parent / "scratch-index"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GIT_INDEX_FILE", str(index))
        run("read-tree", "main")
        run("update-index", "--add", "--cacheinfo", f"100644,{blob},{long.path}")
        tree = run("write-tree")
    index.unlink()
    return tree


def write_commit(long: Long, body: bytes, *, ref: str) -> str:
    """Store the commit in the remote, point ``ref`` at it, and let the clone fetch it."""
    sha = (
        subprocess.run(
            ["git", "--git-dir", str(long.remote), "hash-object", "-t", "commit", "-w", "--stdin"],
            input=body,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    assert sha == sha_of(body)
    git(long.remote, "update-ref", ref, sha)
    svc: Service = long.app.extensions["gitops_bridge"]
    svc.repo.fetch()
    return sha
