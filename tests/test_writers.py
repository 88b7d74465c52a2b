"""Three bridge instances writing concurrently to one remote: every accepted change lands on
main exactly once, by its author, with no quota overshoot at any commit; refused ones leave
no trace; Idempotency-Keys hold across instances; concurrent writes share pushes."""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from gitops_bridge import gitrepo, quantity, quota, validate
from gitops_bridge.gitrepo import Author, GitRepo, blob_id
from gitops_bridge.render import Change, Manifest, yamlio
from gitops_bridge.service import (
    TRAILER_ACTION,
    TRAILER_DEPLOYMENT,
    TRAILER_GROUP,
    TRAILER_REQUEST,
    Service,
)
from tests.apputil import TEAM_A, as_user, create_group, make_app, web
from tests.gitutil import git, head

PUSH_ATTEMPTS = 30
BIG_QUOTA = {"cpu": "4", "memory": "8Gi", "storage": "10Gi", "deployments": 100}


# ---- helpers --------------------------------------------------------------------------


def instances(tmp_path: Path, count: int = 3) -> tuple[list[Flask], Path]:
    """``count`` bridges with separate clones; the first one's embedded remote is shared."""
    first = make_app(tmp_path / "bridge0", push_attempts=PUSH_ATTEMPTS)
    remote = tmp_path / "bridge0" / "remote.git"
    others = [
        make_app(tmp_path / f"bridge{i}", repo_url=remote.as_uri(), push_attempts=PUSH_ATTEMPTS)
        for i in range(1, count)
    ]
    return [first, *others], remote


def body_of(response: TestResponse) -> dict[str, Any]:
    body = response.json
    return body if isinstance(body, dict) else {}


def service(app: Flask) -> Service:
    svc: Service = app.extensions["gitops_bridge"]
    return svc


def count_pushes(remote: Path, tmp_path: Path) -> Callable[[], int]:
    """Install a post-receive hook that logs each accepted push; returns a counter."""
    log = tmp_path / "pushes.log"
    hook = remote / "hooks" / "post-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(f"#!/bin/sh\ncat >/dev/null\necho push >> '{log}'\n")
    hook.chmod(0o755)
    return lambda: len(log.read_text().splitlines()) if log.exists() else 0


@dataclass(frozen=True)
class Commit:
    sha: str
    parents: tuple[str, ...]
    author: str
    committer: str
    trailers: dict[str, str]
    paths: tuple[str, ...]


def commits(remote: Path, revs: str) -> dict[str, Commit]:
    """The commits of ``revs`` on the remote, read with the git CLI, by sha."""
    out = git(remote, "log", "--format=%x01%H%x00%P%x00%an%x00%cn%x00%B%x00", "--name-only", revs)
    found: dict[str, Commit] = {}
    for block in out.split("\x01")[1:]:
        sha, parents, author, committer, message, names = block.split("\x00")
        trailers = {}
        for line in message.strip().splitlines():
            key, sep, value = line.partition(": ")
            if sep and key.startswith("Gitops-Bridge-"):
                trailers[key] = value.strip()
        found[sha] = Commit(
            sha=sha,
            parents=tuple(parents.split()),
            author=author,
            committer=committer,
            trailers=trailers,
            paths=tuple(n for n in names.splitlines() if n),
        )
    return found


def assert_linear_and_only_main(remote: Path) -> None:
    assert git(remote, "rev-list", "--min-parents=2", "main") == ""
    assert git(remote, "for-each-ref", "--format=%(refname)") == "refs/heads/main"


def assert_validates(remote: Path, target: Path, helm: str, kubectl: str) -> None:
    subprocess.run(["git", "clone", "-q", str(remote), str(target)], check=True, timeout=60)
    report = validate.validate_repo(target, helm=helm, kubectl=kubectl)
    assert report.findings == []


def assert_quota_never_exceeded(svc: Service, remote: Path) -> None:
    """Replay every commit on main: each group's usage fits its quota."""
    svc.repo.refresh(max_age=0)
    shas = git(remote, "rev-list", "main").splitlines()
    for sha in shas:
        state = svc.state(svc.repo.snapshot(sha))
        assert state.unreadable == {}, sha
        for group in state.groups.values():
            used = quota.usage(state.in_group(group.name), sidecar=svc.sidecar)
            where = f"group {group.name} at {sha}: {used}"
            assert used.cpu <= quantity.parse(group.quota.cpu), where
            assert used.memory <= quantity.parse(group.quota.memory), where
            assert used.deployments <= group.quota.deployments, where


# ---- the 50-request mix ----------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One API request of the mix and what it may answer."""

    instance: int
    user: str
    method: str
    path: str
    body: Any
    group: str
    action: str  # the Gitops-Bridge-Action trailer its commit carries
    expect: frozenset[int]
    tag: str
    target: str | None = None  # the deployment, for everything but creates
    app: str | None = None  # the app name, for creates


@dataclass
class Outcome:
    call: Call
    status: int
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


def send(apps: list[Flask], call: Call) -> Outcome:
    client = apps[call.instance].test_client()
    kwargs: dict[str, Any] = {"headers": as_user(call.user)}
    if call.body is not None:
        kwargs["json"] = call.body
    response = client.open(call.path, method=call.method, **kwargs)
    return Outcome(call=call, status=response.status_code, body=body_of(response))


GROUPS: list[dict[str, Any]] = [
    # 2 existing deployments, 4 free slots, 10 creates race for them
    {
        "name": "team-a",
        "members": ["alice", "bob"],
        "quota": {"cpu": "4", "memory": "8Gi", "deployments": 6},
    },
    # 6 x 200m cpu used of 2: scaling one to 3 replicas adds 200m, only 4 of 6 fit
    {
        "name": "team-b",
        "members": ["carol", "dave"],
        "quota": {"cpu": "2", "memory": "8Gi", "deployments": 10},
    },
    # full (3 of 3): creates fit only after concurrent deletes
    {
        "name": "team-c",
        "members": ["erin", "frank"],
        "quota": {"cpu": "4", "memory": "8Gi", "deployments": 3},
    },
]
EXISTING = {  # group -> (user, app names) created before the race
    "team-a": ("alice", ["a-base0", "a-base1"]),
    "team-b": ("carol", [f"b-base{i}" for i in range(6)]),
    "team-c": ("erin", ["c-base0", "c-base1", "c-base2"]),
    "demo": ("admin", ["d-base0", "d-base1"]),
}
OK, QUOTA_OR_OK, ALIVE = frozenset({200}), frozenset({200, 422}), frozenset({200, 404})


def the_mix(names: dict[str, str]) -> list[Call]:
    """50 requests over 4 groups, 7 users and 3 instances; see the expectations inline."""
    calls: list[Call] = []

    def create(group: str, user: str, app: str, tag: str, expect: set[int], **kw: Any) -> None:
        path = f"/api/v1/groups/{group}/deployments"
        body = web(app, image=f"registry:5000/{group}/{app}:1.0", **kw)
        calls.append(
            Call(0, user, "POST", path, body, group, "create", frozenset(expect), tag, app=app)
        )

    def on(
        app: str, group: str, user: str, kind: str, body: Any, tag: str, ex: frozenset[int]
    ) -> None:
        name = names[app]
        method, path, action = {
            "patch": ("PATCH", f"/api/v1/deployments/{name}", "update"),
            "scale": ("POST", f"/api/v1/deployments/{name}/scale", "update"),
            "restart": ("POST", f"/api/v1/deployments/{name}/restart", "restart"),
            "delete": ("DELETE", f"/api/v1/deployments/{name}", "delete"),
        }[kind]
        calls.append(Call(0, user, method, path, body, group, action, ex, tag, target=name))

    # team-a: exactly 4 of 10 creates fit; edits of the existing ones; refusals
    for i in range(10):
        create("team-a", ["alice", "bob"][i % 2], f"a-new{i}", "a-quota", {201, 422})
    for i in range(2):
        on(f"a-base{i}", "team-a", "bob", "restart", {}, "a-edit", OK)
        env = [{"name": "REQ", "value": f"a{i}"}]
        on(f"a-base{i}", "team-a", "alice", "patch", {"env": env}, "a-edit", OK)
    create("team-a", "alice", "a-invalid", "invalid", {422}, replicas=50)
    create("team-a", "mallory", "a-outsider", "forbidden", {404})  # hidden from non-members
    # team-b: exactly 4 of 6 scales fit; every image update lands; refusals
    for i in range(6):
        app, user = f"b-base{i}", ["carol", "dave"][i % 2]
        on(app, "team-b", user, "scale", {"replicas": 3}, "b-scale", QUOTA_OR_OK)
        image = {"image": f"registry:5000/team-b/{app}:2.{i}"}
        on(app, "team-b", "dave", "patch", image, "b-image", OK)
    on("b-base0", "team-b", "carol", "scale", {"replicas": -1}, "invalid", frozenset({422}))
    on("b-base1", "team-b", "dave", "patch", {"image": "Not An Image"}, "invalid", frozenset({422}))
    # team-c: deletes free slots for creates; edits of deleted ones may find them gone
    on("c-base0", "team-c", "frank", "delete", None, "c-delete", OK)
    on("c-base1", "team-c", "frank", "delete", None, "c-delete", OK)
    for i in range(3):
        create("team-c", "erin", f"c-new{i}", "c-create", {201, 422})
    on("c-base2", "team-c", "erin", "restart", {}, "c-edit", OK)
    on("c-base2", "team-c", "frank", "patch", {"env": [{"name": "C", "value": "2"}]}, "c-edit", OK)
    on("c-base0", "team-c", "erin", "scale", {"replicas": 2}, "c-racy", ALIVE)
    on("c-base1", "team-c", "erin", "patch", {"port": 9090}, "c-racy", ALIVE)
    # demo: one name, three instances: exactly one wins
    for _ in range(3):
        create("demo", "admin", "dup", "dup", {201, 409})
    for i in range(4):
        create("demo", "admin", f"d-new{i}", "d-create", {201})
    on("d-base0", "demo", "admin", "delete", None, "d-edit", OK)
    on("d-base1", "demo", "admin", "scale", {"replicas": 0}, "d-edit", OK)
    on("d-base1", "demo", "admin", "patch", {"expose": True}, "d-edit", OK)
    on("d-base1", "demo", "admin", "restart", {}, "d-edit", OK)
    assert len(calls) == 50
    random.Random(50).shuffle(calls)
    calls.sort(key=lambda c: c.tag == "c-create")  # last, to race the deletes' commits
    spread = [replace(c, instance=i % 3) for i, c in enumerate(calls)]
    dups = [i for i, c in enumerate(spread) if c.tag == "dup"]
    for instance, index in enumerate(dups):  # the same name reaches all three instances
        spread[index] = replace(spread[index], instance=instance)
    return spread


def test_fifty_mixed_requests_on_three_instances(tmp_path: Path, helm: str, kubectl: str) -> None:
    apps, remote = instances(tmp_path)
    admin = apps[0].test_client()
    for body in GROUPS:
        create_group(admin, {**body, "quota": {"storage": "10Gi", **body["quota"]}})
    names: dict[str, str] = {}
    for group, (user, existing) in EXISTING.items():
        for app in existing:
            response = admin.post(
                f"/api/v1/groups/{group}/deployments", json=web(app), headers=as_user(user)
            )
            assert response.status_code == 201, response.json
            names[app] = body_of(response)["name"]
    base = head(remote)
    pushes = count_pushes(remote, tmp_path)

    calls = the_mix(names)
    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(lambda call: send(apps, call), calls, timeout=120))

    # -- every answer is one its request may give; the races resolve as the quotas say
    for out in outcomes:
        assert out.status in out.call.expect, (out.call, out.status, out.body)
    accepted = [o for o in outcomes if o.accepted]
    by_tag = Counter(o.call.tag for o in accepted)
    assert by_tag["a-quota"] == 4 and by_tag["b-scale"] == 4 and by_tag["dup"] == 1, by_tag
    assert by_tag["c-create"] <= by_tag["c-delete"] == 2, by_tag
    refused = [o for o in outcomes if not o.accepted]
    assert {o.call.tag for o in refused if o.status == 422} >= {"a-quota", "b-scale", "invalid"}

    # -- one commit per accepted change, on main, by its author; nothing else was committed
    new = commits(remote, f"{base}..main")
    shas = [o.body["commit"] for o in accepted]
    assert len(set(shas)) == len(shas) == len(accepted), "two answers name the same commit"
    assert set(shas) == set(new), "main holds commits nobody was told about, or lost some"
    assert all(o.body.get("changed", True) for o in accepted)
    for out in accepted:
        commit = new[out.body["commit"]]
        name = out.call.target or out.body["name"]
        assert (commit.author, commit.committer) == (out.call.user, "gitops-bridge"), out.call
        assert commit.trailers[TRAILER_ACTION] == out.call.action, (out.call, commit)
        assert commit.trailers[TRAILER_DEPLOYMENT] == name == out.body["name"]
        assert commit.trailers[TRAILER_GROUP] == out.call.group
        if out.call.app:
            assert name.startswith(out.call.app + "-")
    on_main = Counter(
        (c.trailers[TRAILER_DEPLOYMENT], c.trailers[TRAILER_ACTION]) for c in new.values()
    )
    answered = Counter((o.body["name"], o.call.action) for o in accepted)
    assert on_main == answered
    assert_linear_and_only_main(remote)

    # -- refused requests left no trace: no file of a refused create was ever on main
    ever = set(git(remote, "log", "--all", "--format=", "--name-only").splitlines())
    for out in outcomes:
        if out.call.app is None:
            continue
        prefix = f"tenants/{out.call.group}/apps/{out.call.app}-"
        made = {p for p in ever if p.startswith(prefix)}
        wanted = 1 if out.call.app == "dup" or out.accepted else 0
        assert len(made) == wanted, (out.call, out.status, made)

    # -- no commit on main, before or during the race, puts a group over its quota
    assert_quota_never_exceeded(service(apps[0]), remote)

    # -- every instance sees the same final state, and it holds every accepted change
    views = []
    for instance in apps:
        svc = service(instance)
        svc.repo.refresh(max_age=0)
        assert svc.repo.head() == head(remote)
        state = svc.state()
        views.append((state.groups, state.deployments))
    assert views[0] == views[1] == views[2]
    listed = [a.test_client().get("/api/v1/deployments").json or [] for a in apps]
    assert listed[0] == listed[1] == listed[2]
    final = {d["name"]: d for d in listed[0]}
    deleted = {o.body["name"] for o in accepted if o.call.action == "delete"}
    for out in outcomes:
        name = out.call.target or out.body.get("name")
        now = final.get(name) if name else None
        if out.call.action == "delete" and out.accepted:
            assert now is None
        elif out.accepted and name not in deleted:  # no lost update
            assert now is not None, out.call
            if out.call.action == "restart":
                assert now["restartedAt"], out.call
            elif out.call.action == "update":
                assert {k: now[k] for k in out.call.body} == out.call.body, (out.call, now)
        elif not out.accepted and now is not None and out.call.action == "update":
            assert {k: now[k] for k in out.call.body} != out.call.body, (out.call, now)

    assert_validates(remote, tmp_path / "checkout", helm, kubectl)
    assert 1 <= pushes() <= len(new)


# ---- Idempotency-Key across instances --------------------------------------------------


def test_idempotency_key_holds_across_instances(tmp_path: Path) -> None:
    apps, remote = instances(tmp_path)
    create_group(apps[0].test_client())
    base = head(remote)
    body = web("once", replicas=2)
    headers = as_user("alice") | {"Idempotency-Key": "deploy-once-7"}

    def post(instance: int) -> tuple[int, dict[str, Any]]:
        client = apps[instance].test_client()
        response = client.post("/api/v1/groups/team-a/deployments", json=body, headers=headers)
        return response.status_code, body_of(response)

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(post, [0, 1, 2, 0, 1, 2], timeout=60))

    assert [status for status, _ in answers] == [201] * 6, answers
    named = {(data["name"], data["commit"]) for _, data in answers}
    assert len(named) == 1, named
    [(name, sha)] = named
    assert sum(data["changed"] for _, data in answers) == 1
    new = commits(remote, f"{base}..main")
    assert list(new) == [sha] == [head(remote)]
    assert new[sha].author == "alice" and new[sha].trailers[TRAILER_DEPLOYMENT] == name
    assert TRAILER_REQUEST in new[sha].trailers
    assert new[sha].paths == (f"tenants/team-a/apps/{name}.yaml",)
    assert_linear_and_only_main(remote)

    # later retries anywhere answer the same; the key with another body is refused
    status, again = post(2)
    assert (status, again["name"], again["commit"]) == (201, name, sha)
    client = apps[1].test_client()
    other = client.post("/api/v1/groups/team-a/deployments", json=web("other"), headers=headers)
    assert other.status_code == 422 and "Idempotency-Key" in body_of(other)["message"]
    assert head(remote) == sha


# ---- batching: many writers on one instance share pushes --------------------------------


def test_concurrent_creates_on_one_instance_share_pushes(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data")
    remote = tmp_path / "data" / "remote.git"
    create_group(app.test_client(), {**TEAM_A, "quota": BIG_QUOTA})
    base = head(remote)
    pushes = count_pushes(remote, tmp_path)

    def post(index: int) -> tuple[int, dict[str, Any]]:
        user = ["alice", "bob"][index % 2]
        response = app.test_client().post(
            "/api/v1/groups/team-a/deployments", json=web(f"app{index}"), headers=as_user(user)
        )
        return response.status_code, body_of(response)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(post, range(20), timeout=60))

    assert [status for status, _ in answers] == [201] * 20, answers
    new = commits(remote, f"{base}..main")
    assert len(new) == 20 and {data["commit"] for _, data in answers} == set(new)
    assert all(len(c.parents) == 1 for c in new.values())
    assert_linear_and_only_main(remote)
    for index, (_, data) in enumerate(answers):
        assert new[data["commit"]].author == ["alice", "bob"][index % 2]
        assert new[data["commit"]].trailers[TRAILER_DEPLOYMENT] == data["name"]
    assert 1 <= pushes() < 20, f"{pushes()} pushes for 20 commits: no batching"


# ---- what the mix found (both fixed since) ----------------------------------------------


def test_yaml_rendering_is_thread_safe() -> None:
    """Several instances in one process render concurrently (a shared emitter garbled output)."""
    document = {"kind": "ConfigMap", "data": {f"key{i}": f"value {i}" for i in range(40)}}
    expected = yamlio.dump(document)

    def render(_: int) -> bool:
        return all(yamlio.dump(document) == expected for _ in range(50))

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(render, range(4), timeout=60))


def maintenance_in(path: Path) -> list[str]:
    """git processes working in path, but for GitPython's long-lived cat-file readers."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(proc / "cwd")) != path:
                continue
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "cat-file" not in args:
            found.append(" ".join(args).strip())
    return found


def test_no_maintenance_outlives_a_write_or_fetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A detached `git gc --auto` pruned objects/xx dirs while the next write created a loose
    object there ('unable to create temporary file'): 500/503 about once in 30 mixes."""
    monkeypatch.setattr(gitrepo.writer, "MAINTAIN_EVERY", 1)  # maintain after every push
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    bridge = Author("gitops-bridge", "bridge@example.com")
    repo = GitRepo(path=tmp_path / "clone.git", url=remote.as_uri(), committer=bridge)
    # enough loose objects, 3 of them under objects/17/, the sample `git gc --auto` counts
    in_17 = (text for n in range(100_000) if blob_id((text := f"n: {n}\n").encode())[:2] == "17")
    texts = [f"a: {i}\n" for i in range(300)] + [next(in_17) for _ in range(3)]
    files = tuple(Manifest(f"dir{i}/app.yaml", text) for i, text in enumerate(texts))
    clone = repo.path.resolve()
    try:
        repo.apply(lambda snap: Change(message="many objects", writes=files), author=bridge)
        assert maintenance_in(clone) == []  # the write lock is free: the next write may start
        repo.fetch()
        assert maintenance_in(clone) == []
    finally:
        deadline = time.monotonic() + 30
        while maintenance_in(clone) and time.monotonic() < deadline:
            time.sleep(0.05)
