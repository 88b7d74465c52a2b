"""The state read by difference equals the state read whole, after any sequence of changes.

``state.Reader`` reads a group's folder on its own and merges folders; after a commit it
reads only the folders the commit touched. These tests build random histories of files
(what the service writes, what hand edits break: invalid YAML, a deployment in the wrong
folder, the same deployment name in two folders, stray files, platform kustomizations
listing missing files), derive each commit's state from the one before and compare it with
a state read whole from scratch by a fresh reader.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitops_bridge import config, models, quantity, quota, render
from gitops_bridge import state as states
from gitops_bridge.gitrepo import Snapshot
from gitops_bridge.render import layout
from gitops_bridge.service import Service
from gitops_bridge.state import Reader, State
from tests.apputil import TEAM_A, as_user, create_group, make_app, web
from tests.bridgeutil import edit_by_hand

GROUPS = ("aa", "bb", "cc")
SETTINGS = config.Settings()
SIDECAR = quota.Sidecar(cpu=quantity.parse("50m"), memory=quantity.parse("64Mi"))


def _group(name: str) -> models.Group:
    return models.parse_group(
        {
            "name": name,
            "members": ["alice"],
            "quota": {"cpu": "8", "memory": "16Gi", "storage": "10Gi", "deployments": 20},
        }
    )


def _app(group: str, app: str, id_: str, replicas: int = 1) -> str:
    spec = models.parse_deployment({"name": app, "image": "nginx", "replicas": replicas})
    deployment = models.Deployment(group=group, id=id_, spec=spec)
    return render.helmrelease(deployment, settings=SETTINGS).text


def _pool() -> list[tuple[str, str | None]]:
    """(path, content) choices; None deletes the path."""
    choices: list[tuple[str, str | None]] = []
    for group in GROUPS:
        base = layout.group_dir(group)
        record = next(m for m in render.group_files(_group(group), settings=SETTINGS))
        choices += [
            (f"{base}/namespace.yaml", record.text),
            (f"{base}/namespace.yaml", "kind: [unclosed"),
            (f"{base}/namespace.yaml", record.text.replace(f"group-{group}", "group-zz")),
            (f"{base}/namespace.yaml", None),
            (f"{base}/kustomization.yaml", "resources:\n- namespace.yaml\n"),
            (f"{base}/kustomization.yaml", "resources:\n- apps/../../x.yaml\n"),
            (f"{base}/kustomization.yaml", None),
            (f"{base}/apps/extra.yml", "a: 1\n"),
            (f"{base}/apps/extra.yml", None),
            (f"{base}/notes.txt", "not read\n"),
        ]
        for app, id_ in (("web", "aaaaa1"), ("api", "bbbbb2"), ("db", "ccccc3")):
            path = f"{base}/apps/{app}-{id_}.yaml"
            choices += [
                (path, _app(group, app, id_)),
                (path, _app(group, app, id_, replicas=3)),
                (path, "spec: {values: [broken"),
                (path, _app("zz", app, id_)),  # the labels name another group
                (path, None),
            ]
    return choices


POOL = _pool()


class Source:
    """Blobs and per-path histories in memory; commits are numbers."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.histories: dict[str, list[tuple[int, str | None]]] = {}
        self.reads: list[str] = []
        self.lookups = 0  # history asked for (the last readable version of a file)

    def put(self, commit: int, path: str, content: str | None) -> str | None:
        blob = None
        if content is not None:
            data = content.encode()
            blob = hashlib.sha1(data).hexdigest()
            self.blobs[blob] = data
        changes = self.histories.setdefault(path, [])
        if changes and changes[-1][0] == commit:
            changes.pop()  # a commit holds one version of a path, as in git
        if (changes[-1][1] if changes else None) != blob:
            changes.append((commit, blob))  # git's log of a path lists only real changes
        return blob

    def read_blob(self, sha: str) -> bytes:
        self.reads.append(sha)
        return self.blobs[sha]

    def history(self, path: str, commit: str | None, limit: int) -> list[str | None]:
        self.lookups += 1
        upto = int(commit or 0)
        changes = [blob for number, blob in self.histories.get(path, []) if number <= upto]
        return list(reversed(changes))[:limit]


def _folders(files: dict[str, str]) -> dict[str, dict[str, str]]:
    """Files by group folder, as a snapshot keeps them."""
    return Snapshot(Source(), None, files).folders()


def _same(incremental: State, whole: State) -> None:
    assert incremental == whole
    assert set(incremental.folders) == set(whole.folders)
    for group in {*GROUPS, "zz"}:
        assert incremental.in_group(group) == whole.in_group(group), group
        assert incremental.usage(group) == whole.usage(group), group
        assert incremental.problems_in(group) == whole.problems_in(group), group
    assert incremental.ids() == whole.ids()
    for name in whole.deployments:
        assert incremental.app_file(name) == whole.app_file(name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(st.sampled_from(range(len(POOL))), min_size=1, max_size=4),
        min_size=1,
        max_size=25,
    )
)
def test_a_state_derived_commit_by_commit_equals_one_read_whole(commits: list[list[int]]) -> None:
    source = Source()
    reader = Reader(source, sidecar=SIDECAR)
    files: dict[str, str] = {}
    current = reader.build("0", {})
    for number, picks in enumerate(commits, start=1):
        touched: set[str] = set()
        for pick in picks:
            path, content = POOL[pick]
            blob = source.put(number, path, content)
            if blob is None:
                files.pop(path, None)
            else:
                files[path] = blob
            touched.add(path)
        folders = _folders(files)
        changed = {path.split("/")[1] for path in touched}
        source.reads.clear()
        source.lookups = 0
        current = reader.derive(current, str(number), {g: folders.get(g, {}) for g in changed})
        if not source.lookups:  # (older versions are read to find the last readable one)
            written = {files[p] for p in touched if p in files}
            untouched = {blob for p, blob in files.items() if p not in touched} - written
            assert not set(source.reads) & untouched, "an unchanged file was read again"
        whole = Reader(source, sidecar=SIDECAR).build(str(number), folders)
        _same(current, whole)


def test_the_first_path_keeps_a_name_claimed_twice_and_the_other_is_reported() -> None:
    source = Source()
    reader = Reader(source, sidecar=SIDECAR)
    a = f"{layout.group_dir('aa')}/apps/web-aaaaa1.yaml"
    b = f"{layout.group_dir('bb')}/apps/web-aaaaa1.yaml"
    blob_b = source.put(1, b, _app("bb", "web", "aaaaa1"))
    assert blob_b is not None
    first = reader.build("1", {"bb": {b: blob_b}})
    assert first.deployments["web-aaaaa1"].group == "bb" and not first.unreadable
    blob_a = source.put(2, a, _app("aa", "web", "aaaaa1"))
    assert blob_a is not None
    second = reader.derive(first, "2", {"aa": {a: blob_a}})
    assert second.deployments["web-aaaaa1"].group == "aa"  # tenants/aa/ sorts first
    assert second.unreadable == {
        b: f"not allowed: deployment web-aaaaa1 is {a} already (ids are unique)"
    }
    assert second.in_group("bb") == [] and second.usage("bb").deployments == 0
    third = reader.derive(second, "3", {"aa": {}})  # the first goes: the other has it again
    assert third.deployments["web-aaaaa1"].group == "bb" and not third.unreadable
    assert first.deployments["web-aaaaa1"].group == "bb"  # states are never changed


def test_a_stored_state_is_used_only_for_this_version_and_a_known_commit(tmp_path: Path) -> None:
    source = Source()
    path = f"{layout.group_dir('aa')}/apps/web-aaaaa1.yaml"
    blob = source.put(1, path, _app("aa", "web", "aaaaa1"))
    assert blob is not None
    built = Reader(source, sidecar=SIDECAR).build("1", {"aa": {path: blob}})
    stored = tmp_path / "state.pickle"
    states.save(built, stored)
    loaded = states.load(stored, lambda commit: commit == "1")
    assert loaded == built and loaded is not None and loaded.folders["aa"].files == {path: blob}
    assert states.load(stored, lambda commit: False) is None  # the clone lost that commit
    stored.write_bytes(b"garbage")
    assert states.load(stored, lambda commit: True) is None
    assert states.load(tmp_path / "absent", lambda commit: True) is None


def _show(repo: Path, path: str) -> str:
    return subprocess.run(
        ["git", "show", f"main:{path}"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def _listed(repo: Path, commit: str) -> dict[str, str]:
    """Every file of a commit, as ``git ls-tree`` lists it (path -> blob)."""
    out = subprocess.run(
        ["git", "ls-tree", "-r", "-z", commit], cwd=repo, check=True, capture_output=True
    ).stdout.decode()
    files = {}
    for entry in out.split("\0"):
        if entry:
            meta, _, path = entry.partition("\t")
            files[path] = meta.split(" ")[2]
    return files


def test_the_service_follows_its_writes_and_hand_edits_as_a_full_read_would(
    tmp_path: Path,
) -> None:
    """Through the API and by people's commits fetched from the remote (both ways a state
    is derived: from the commit the writer made, and from a diff after a fetch), then a
    restart that starts from the state the last run stored."""
    data = tmp_path / "data"
    app = make_app(data)
    client = app.test_client()
    svc: Service = app.extensions["gitops_bridge"]
    roomy = {**TEAM_A["quota"], "cpu": "50", "memory": "100Gi", "deployments": 50}
    create_group(client, {**TEAM_A, "quota": roomy})
    create_group(client, {**TEAM_A, "name": "team-b", "members": ["alice"], "quota": roomy})
    remote = data / "remote.git"
    rng = random.Random(20261127)
    names: list[str] = []
    seen = {"deployments": 0, "unreadable": 0, "losers": 0}
    for step in range(50):
        action = rng.choice(["create", "create", "update", "delete", "break", "copy", "stray"])
        if svc.state().unreadable and rng.random() < 0.6:
            action = "repair"
        live = [n for n in names if n in svc.state().deployments]
        if action == "create" or not live:
            group = rng.choice(["team-a", "team-b"])
            response = client.post(
                f"/api/v1/groups/{group}/deployments",
                json=web(f"app{step}", replicas=rng.randrange(0, 2)),
                headers=as_user("alice"),
            )
            if response.status_code == 201:
                names.append(response.json["name"])  # type: ignore[index]
            continue
        name = rng.choice(live)
        path = svc.state().app_file(name)
        assert path is not None
        if action == "repair":  # a person deletes what broke
            broken = sorted(svc.state().unreadable)
            edit_by_hand(remote, tmp_path, dict.fromkeys(broken), "rm")
        elif action == "update":
            client.patch(
                f"/api/v1/deployments/{name}",
                json={"replicas": rng.randrange(3)},
                headers=as_user("alice"),
            )
        elif action == "delete":
            client.delete(f"/api/v1/deployments/{name}", headers=as_user("alice"))
        elif action == "break":
            edit_by_hand(remote, tmp_path, {path: "spec: [unclosed\n"}, f"break {name}")
        elif action == "copy":  # the same deployment name in the other group's folder
            other = "team-b" if "/team-a/" in path else "team-a"
            copy = path.replace(path.split("/")[1], other)
            mine = path.split("/")[1]
            text = _show(remote, path).replace(mine, other)  # readable there too
            text += "" if copy not in svc.repo.snapshot().files else f"# {step}\n"
            edit_by_hand(remote, tmp_path, {copy: text}, "copy")
        else:
            folder = "/".join(path.split("/")[:3])
            edit_by_hand(remote, tmp_path, {f"{folder}/notes-{step}.yml": "a: 1\n"}, "stray")
        svc.repo.refresh(max_age=0)
        state = svc.state()
        whole = Reader(svc.reader.source, sidecar=svc.sidecar).build(
            state.commit, _folders(_listed(remote, str(state.commit)))
        )
        assert state == whole, step
        assert svc.repo.snapshot().files == _listed(remote, str(state.commit)), step
        for group in ("team-a", "team-b"):
            assert state.usage(group) == whole.usage(group), (step, group)
            assert state.problems_in(group) == whole.problems_in(group), (step, group)
        seen["deployments"] = max(seen["deployments"], len(state.deployments))
        seen["unreadable"] += bool(state.unreadable)
        seen["losers"] += bool(state.losers)
    assert seen["deployments"] >= 4 and seen["unreadable"] and seen["losers"], seen
    final = svc.state()

    svc._store(final, now=True)
    svc._storing.acquire()  # the store in the background is done
    svc._storing.release()
    restarted = make_app(data)  # the same clone: the state the last run stored, then a diff
    edit_by_hand(remote, tmp_path, {f"{layout.group_dir('team-a')}/apps/extra.yml": "b: 2\n"}, "x")
    again: Service = restarted.extensions["gitops_bridge"]
    again.repo.refresh(max_age=0)
    reread = again.state()
    whole = Reader(again.reader.source, sidecar=again.sidecar).build(
        reread.commit, _folders(_listed(remote, str(reread.commit)))
    )
    assert reread == whole and again._looked
