"""People commit to the GitOps repository too: what they add to a HelmRelease survives the
bridge's writes (byte-stable, comments included); a file the bridge cannot use (invalid
YAML, not its format, against the rules of a group's folder) is reported (API, UI banner,
/readyz), still counts against quota as it last was, and stops the bridge's writes to its
group only until a change repairs it; a group is never created over an existing folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gitops_bridge import config, models, render
from gitops_bridge.render import digest, yamlio
from tests.apputil import TEAM_A, as_user, create_group, deploy, make_app, web
from tests.bridgeutil import KS, Bridge, edit_by_hand, ready
from tests.gitutil import files, git, head, show
from tests.kubefake import FakeKube

ALICE = as_user("alice")
BOB = as_user("bob")
CAROL = as_user("carol")
TEAM_B: dict[str, Any] = {
    "name": "team-b",
    "members": ["carol"],
    "quota": {"cpu": "2", "memory": "4Gi", "storage": "10Gi", "deployments": 5},
}


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    """The app on a fresh embedded remote, reading the remote anew on every request (a
    person's push shows at once), with team-a (alice, bob) and team-b (carol)."""
    client = make_app(tmp_path / "data", fetch_interval=0).test_client()
    create_group(client, TEAM_A)
    create_group(client, TEAM_B)
    return client


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return tmp_path / "data" / "remote.git"


def app_file(name: str, group: str = "team-a") -> str:
    return f"tenants/{group}/apps/{name}.yaml"


def by_hand(remote: Path, tmp: Path, edits: dict[str, str | None], message: str = "By hand") -> str:
    return edit_by_hand(remote, tmp, edits, message)


def hand_tuned(text: str) -> str:
    """What an operator does to a release: a longer timeout with a comment, a value the
    bridge does not model, a comment, a label of the team's."""
    text = text.replace("  timeout: 5m\n", "  timeout: 15m # slow start, see INC-42\n")
    text = text.replace("  values:\n", "  values:\n    # pulled every time: the tag moves\n", 1)
    text = text.replace("    port: 8080\n", "    port: 8080\n    imagePullPolicy: Always\n", 1)
    return text.replace("  labels:\n", "  labels:\n    team: payments\n", 1)


# ---- 12: hand edits survive --------------------------------------------------------------


def test_hand_edits_survive_the_bridges_writes_and_repeats_make_no_commit(
    client: FlaskClient, remote: Path, tmp_path: Path
) -> None:
    name = deploy(client)
    path = app_file(name)
    tuned = hand_tuned(show(remote, path) + "\n")
    assert tuned != show(remote, path) + "\n"
    by_hand(remote, tmp_path, {path: tuned}, "Longer timeout, always pull")

    scaled = client.post(f"/api/v1/deployments/{name}/scale", json={"replicas": 3}, headers=BOB)
    assert scaled.status_code == 200, scaled.json
    assert scaled.json["changed"] is True
    text = show(remote, path)
    assert "  timeout: 15m # slow start, see INC-42\n" in text
    assert "    # pulled every time: the tag moves\n" in text
    assert "    imagePullPolicy: Always\n" in text and "    team: payments\n" in text
    assert text.startswith(yamlio.HEADER)
    release = yamlio.load(text)
    assert release["spec"]["values"]["replicas"] == 3
    # only the replicas line changed (and the digest of the settings, which is not shown as
    # a change): the person's work, and its layout, are untouched
    diff = git(remote, "diff", "--unified=0", "main~1", "main", "--", path)
    assert any(line.startswith("+    specDigest: ") for line in diff.splitlines()), diff
    diff = digest.hide(diff)
    assert [
        line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in "+++---"
    ] == [
        "-    replicas: 1",
        "+    replicas: 3",
    ]

    # the same request again: nothing to change, no commit
    before = head(remote)
    again = client.post(f"/api/v1/deployments/{name}/scale", json={"replicas": 3}, headers=BOB)
    assert again.status_code == 200 and again.json["changed"] is False
    assert head(remote) == before

    # other writes keep them too; the response is the deployment as the bridge models it
    updated = client.patch(
        f"/api/v1/deployments/{name}",
        json={"image": "registry:5000/team-a/web:2.0"},
        headers=ALICE,
    )
    assert updated.status_code == 200, updated.json
    restarted = client.post(f"/api/v1/deployments/{name}/restart", json={}, headers=ALICE)
    assert restarted.status_code == 200, restarted.json
    text = show(remote, path)
    assert "timeout: 15m # slow start" in text and "imagePullPolicy: Always" in text
    assert "web:2.0" in text and "restartedAt:" in text


def test_revert_and_restore_keep_hand_edits(
    client: FlaskClient, remote: Path, tmp_path: Path
) -> None:
    name = deploy(client)
    path = app_file(name)
    by_hand(remote, tmp_path, {path: hand_tuned(show(remote, path) + "\n")})
    scale = client.post(f"/api/v1/deployments/{name}/scale", json={"replicas": 2}, headers=ALICE)
    image = client.patch(
        f"/api/v1/deployments/{name}", json={"image": "registry:5000/team-a/web:2.0"}
    )
    assert scale.status_code == 200 and image.status_code == 200
    # reverting the older change merges field by field onto the current file
    reverted = client.post(
        f"/api/v1/deployments/{name}/revert", json={"commit": scale.json["commit"]}
    )
    assert reverted.status_code == 200, reverted.json
    text = show(remote, path)
    assert "replicas: 1" in text and "web:2.0" in text
    assert "timeout: 15m # slow start" in text and "imagePullPolicy: Always" in text
    # restoring the bridge's own first version brings that version back, as it was
    first = git(remote, "log", "--format=%H", "--", path).splitlines()[-1]
    restored = client.post(f"/api/v1/deployments/{name}/restore", json={"commit": first})
    assert restored.status_code == 200, restored.json
    assert "imagePullPolicy" not in show(remote, path)
    assert show(remote, path) == git(remote, "show", f"{first}:{path}")


def _deployment(**spec: Any) -> models.Deployment:
    settings = config.load(data_dir=Path("/nonexistent"))
    body = {"name": "web", "image": "registry:5000/team-a/web:1.0", **spec}
    parsed = models.parse_deployment(body, limits=settings.limits)
    return models.Deployment(group="team-a", id="abc123", spec=parsed, owner="alice")


@pytest.fixture
def settings() -> config.Settings:
    return config.load(data_dir=Path("/nonexistent"))


def test_tunables_the_bridge_follows_and_those_a_person_keeps(settings: config.Settings) -> None:
    before = _deployment(replicas=1)
    text = render.helmrelease(before, settings=settings).text
    after = before.model_copy(update={"spec": before.spec.model_copy(update={"replicas": 10})})

    # the bridge's own timeout grows with the replicas
    grown = render.helmrelease(after, settings=settings, current=text.encode(), before=before)
    assert grown.text == render.helmrelease(after, settings=settings).text  # no round trip
    assert yamlio.load(grown.text)["spec"]["timeout"] == "12m"
    # a person's longer one stays; a shorter one gives way to what the rollout needs
    longer = text.replace("timeout: 5m", "timeout: 1h")
    kept = render.helmrelease(after, settings=settings, current=longer.encode(), before=before)
    assert yamlio.load(kept.text)["spec"]["timeout"] == "1h"
    shorter = text.replace("timeout: 5m", "timeout: 3m")
    raised = render.helmrelease(after, settings=settings, current=shorter.encode(), before=before)
    assert yamlio.load(raised.text)["spec"]["timeout"] == "12m"
    # a removed tunable comes back; limits are the bridge's (2x the requests, what the
    # ResourceQuota's limits.* are sized for): a hand-set one does not stay
    missing = text.replace("  driftDetection:\n    mode: enabled\n", "")
    back = render.helmrelease(after, settings=settings, current=missing.encode(), before=before)
    assert yamlio.load(back.text)["spec"]["driftDetection"] == {"mode": "enabled"}
    limited = text.replace("        memory: 256Mi\n", "        memory: 1Gi\n")
    owned = render.helmrelease(after, settings=settings, current=limited.encode(), before=before)
    assert yamlio.load(owned.text)["spec"]["values"]["resources"]["limits"]["memory"] == "256Mi"


def test_what_the_bridge_owns_is_the_bridges(settings: config.Settings) -> None:
    before = _deployment(expose=True).model_copy(update={"keep_on_prune": True})
    text = render.helmrelease(before, settings=settings).text
    edited = text.replace(
        "    gitops-bridge.code-hub.com/owner: alice\n",
        "    gitops-bridge.code-hub.com/owner: alice\n    example.com/ticket: OPS-1\n",
    ).replace("frpc:0.65.0", "frpc:evil")
    after = before.model_copy(
        update={"keep_on_prune": False, "spec": before.spec.model_copy(update={"expose": False})}
    )
    written = render.helmrelease(after, settings=settings, current=edited.encode(), before=before)
    release = yamlio.load(written.text)
    # the prune annotation and frpc go with the model; the person's annotation stays
    assert release["metadata"]["annotations"] == {
        "gitops-bridge.code-hub.com/owner": "alice",
        "example.com/ticket": "OPS-1",
    }
    assert "frpc" not in release["spec"]["values"]
    # a value the bridge renders is the bridge's, whatever was written by hand
    exposed = render.helmrelease(before, settings=settings, current=edited.encode(), before=before)
    assert "frpc:evil" not in exposed.text and "OPS-1" in exposed.text
    # strings keep the quoting that keeps them strings for YAML 1.1 readers
    with_env = before.model_copy(
        update={
            "spec": before.spec.model_copy(
                update={"env": [models.EnvVar(name="FLAG", value="yes")]}
            )
        }
    )
    quoted = render.helmrelease(with_env, settings=settings, current=edited.encode(), before=before)
    assert 'value: "yes"' in quoted.text


def test_a_release_written_as_json_by_hand_comes_back_in_the_bridges_layout(
    settings: config.Settings,
) -> None:
    before = _deployment()
    document = yamlio.load(render.helmrelease(before, settings=settings).text)
    document["spec"]["values"]["imagePullPolicy"] = "Always"
    after = before.model_copy(update={"spec": before.spec.model_copy(update={"replicas": 2})})
    current = json.dumps(document).encode()
    written = render.helmrelease(after, settings=settings, current=current, before=before)
    assert "{" not in written.text and "  values:\n" in written.text
    assert yamlio.load(written.text)["spec"]["values"]["imagePullPolicy"] == "Always"


# ---- 13: a file the bridge cannot use -----------------------------------------------------


@pytest.mark.parametrize(
    ("breakage", "said"),
    [
        (lambda text: text.replace("  values:\n", "  values:\n   - broken\n"), "invalid YAML"),
        (
            lambda text: text.replace("    gitops-bridge.code-hub.com/app: web\n", "", 1),
            "'gitops-bridge.code-hub.com/app' is missing",
        ),
    ],
    ids=["invalid-yaml", "not-a-deployment"],
)
def test_a_broken_file_is_reported_counted_and_stops_only_its_group(
    client: FlaskClient, remote: Path, tmp_path: Path, breakage: Any, said: str
) -> None:
    name = deploy(client, replicas=3)
    other = deploy(client, "api")
    path = app_file(name)
    usage = client.get("/api/v1/groups/team-a", headers=ALICE).json["usage"]
    good = show(remote, path) + "\n"
    broke = by_hand(remote, tmp_path, {path: breakage(good)}, "Quick fix")

    # reported: the API, in the group, the UI banner, /readyz
    problems = client.get("/api/v1/problems", headers=BOB).json
    assert [(p["path"], p["group"], p["deployment"]) for p in problems] == [(path, "team-a", name)]
    assert said in problems[0]["problem"]
    assert client.get("/api/v1/problems", headers=CAROL).json == []  # not carol's group
    group = client.get("/api/v1/groups/team-a", headers=ALICE).json
    assert [p["path"] for p in group["repositoryProblems"]] == [path]
    page = client.get("/deployments", headers=ALICE)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-testid="repo-problems"' in html and path in html
    ready_body = client.get("/readyz").json
    assert any(path in line for line in ready_body["degraded"])

    # still counted as it last was: the group's usage does not drop
    assert group["usage"] == usage
    # the deployment does not vanish: it says why it cannot be read; its history works
    got = client.get(f"/api/v1/deployments/{name}", headers=ALICE)
    assert got.status_code == 409 and path in got.json["message"]
    versions = client.get(f"/api/v1/deployments/{name}/history", headers=ALICE)
    assert versions.status_code == 200, versions.json
    assert versions.json[0]["commit"] == broke
    assert versions.json[0]["summary"][0].startswith("unreadable: ")

    # writes to team-a are refused, naming the file and what to do; team-b goes on
    before = head(remote)
    for refused in (
        client.post("/api/v1/groups/team-a/deployments", json=web("worker"), headers=ALICE),
        client.post(f"/api/v1/deployments/{other}/scale", json={"replicas": 2}, headers=ALICE),
        client.post(f"/api/v1/deployments/{name}/scale", json={"replicas": 1}, headers=ALICE),
        client.patch("/api/v1/groups/team-a", json={"members": ["alice"]}),
    ):
        assert refused.status_code == 409, refused.json
        assert path in refused.json["message"] and "fix or delete" in refused.json["message"]
    assert head(remote) == before
    created = client.post("/api/v1/groups/team-b/deployments", json=web("worker"), headers=CAROL)
    assert created.status_code == 201, created.json

    # restoring the last readable version repairs it; then team-a takes writes again
    restored = client.post(
        f"/api/v1/deployments/{name}/restore",
        json={"commit": versions.json[1]["commit"]},
        headers=ALICE,
    )
    assert restored.status_code == 200, restored.json
    assert show(remote, path) + "\n" == good
    assert client.get("/api/v1/problems", headers=BOB).json == []
    assert client.get(f"/api/v1/deployments/{name}", headers=ALICE).status_code == 200
    worker = client.post("/api/v1/groups/team-a/deployments", json=web("worker"), headers=ALICE)
    assert worker.status_code == 201, worker.json


def test_a_broken_deployment_can_be_deleted_and_counts_until_then(
    client: FlaskClient, remote: Path, tmp_path: Path
) -> None:
    name = deploy(client, replicas=9, resources={"cpu": "200m", "memory": "128Mi"})
    path = app_file(name)
    by_hand(remote, tmp_path, {path: "kind: HelmRelease\nspec: [\n"})
    group = client.get("/api/v1/groups/team-a", headers=ALICE).json
    assert group["usage"]["cpu"] == "2"  # (9 + 1) x 200m, as the file last held
    deleted = client.delete(f"/api/v1/deployments/{name}", headers=ALICE)
    assert deleted.status_code == 200, deleted.json
    assert path not in files(remote)
    group = client.get("/api/v1/groups/team-a", headers=ALICE).json
    assert group["usage"]["cpu"] == "0" and group["repositoryProblems"] == []


# ---- 14: a group is never created over an existing folder -------------------------------


def test_recreating_a_group_whose_folder_exists_is_refused(
    client: FlaskClient, remote: Path, tmp_path: Path
) -> None:
    name = deploy(client)
    record = "tenants/team-a/namespace.yaml"
    by_hand(remote, tmp_path, {record: show(remote, record).replace("metadata:", "metadata: [")})
    # the group cannot be read: members see nothing, platform admins see why
    assert client.get("/api/v1/groups/team-a", headers=ALICE).status_code == 404
    unreadable = client.get("/api/v1/groups/team-a")
    assert unreadable.status_code == 409 and record in unreadable.json["message"]
    assert [p["path"] for p in client.get("/api/v1/problems").json] == [record]

    before, kustomization = head(remote), show(remote, "tenants/team-a/kustomization.yaml")
    again = client.post("/api/v1/groups", json=TEAM_A | {"members": ["mallory"]})
    assert again.status_code == 409
    assert "tenants/team-a/ exists already" in again.json["message"]
    assert record in again.json["message"]
    assert head(remote) == before
    assert show(remote, "tenants/team-a/kustomization.yaml") == kustomization
    assert app_file(name) in files(remote)

    # another group's creation keeps the unreadable one listed (or Flux would prune it)
    created = client.post("/api/v1/groups", json=TEAM_B | {"name": "team-c"})
    assert created.status_code == 201, created.json
    index = yamlio.load(show(remote, "tenants/kustomization.yaml"))
    assert index["resources"] == ["demo", "team-a", "team-b", "team-c"]


# ---- 15: the rules of a group's folder ----------------------------------------------------


def _config_map() -> str:
    metadata = {"name": "x", "namespace": "group-team-a"}
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata})


@pytest.mark.parametrize(
    ("edit", "where", "rule"),
    [
        (
            lambda name, text: {"tenants/team-a/apps/extra.yaml": _config_map()},
            "tenants/team-a/apps/extra.yaml",
            "kind ConfigMap (v1) is not allowed in extra.yaml: allowed HelmRelease",
        ),
        (
            lambda name, text: {
                app_file(name): text.replace("namespace: group-team-a", "namespace: group-team-b")
            },
            "{app}",
            "namespace must be the group's group-team-a, got 'group-team-b'",
        ),
        (
            lambda name, text: {
                app_file(name): text.replace(
                    "serviceAccountName: flux-reconciler", "serviceAccountName: default"
                )
            },
            "{app}",
            "spec.serviceAccountName must be flux-reconciler",
        ),
        (
            lambda name, text: {
                app_file(name): text.replace("  labels:\n", "  labels:\n    team: -bad-\n", 1)
            },
            "{app}",
            "metadata.labels['team'] = '-bad-': label value must be",
        ),
        (
            lambda name, text: {"tenants/team-a/apps/more/x.yaml": _config_map()},
            "tenants/team-a/apps/more/x.yaml",
            "one HelmRelease per file directly in apps/",
        ),
        (
            lambda name, text: {"tenants/team-a/apps/kustomization.yaml": "resources: []\n"},
            "tenants/team-a/apps/kustomization.yaml",
            "replaces the list Flux generates",
        ),
        (
            lambda name, text: {"tenants/team-a/apps/copy.yaml": text},
            "tenants/team-a/apps/copy.yaml",
            "the file must be named after it",
        ),
        (
            lambda name, text: {"tenants/team-a/Kustomization": "resources: []\n"},
            "tenants/team-a/Kustomization",
            "kustomize refuses a folder with two kustomization files",
        ),
    ],
    ids=[
        "configmap",
        "namespace",
        "account",
        "label",
        "nested",
        "kustomization",
        "copy",
        "second-index",
    ],
)
def test_files_against_the_folder_rules_are_reported_and_stop_the_group(
    client: FlaskClient, remote: Path, tmp_path: Path, edit: Any, where: str, rule: str
) -> None:
    name = deploy(client)
    by_hand(remote, tmp_path, edit(name, show(remote, app_file(name)) + "\n"))
    where = where.replace("{app}", app_file(name))
    problems = {p["path"]: p["problem"] for p in client.get("/api/v1/problems", headers=ALICE).json}
    assert list(problems) == [where]
    assert problems[where].startswith("not allowed: ") and rule in problems[where], problems
    refused = client.post("/api/v1/groups/team-a/deployments", json=web("api"), headers=ALICE)
    assert refused.status_code == 409 and where in refused.json["message"]
    created = client.post("/api/v1/groups/team-b/deployments", json=web("api"), headers=CAROL)
    assert created.status_code == 201


def test_platform_files_hold_only_their_kinds_and_the_index_only_platform_files(
    client: FlaskClient, remote: Path, tmp_path: Path
) -> None:
    takeover = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "team-a-takes-over"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "x"},
    }
    base = "tenants/team-a"
    index = yamlio.load(show(remote, f"{base}/kustomization.yaml"))
    index["resources"].append("extra.yaml")
    namespace = show(remote, f"{base}/namespace.yaml").replace(
        "pod-security.kubernetes.io/enforce: restricted",
        "pod-security.kubernetes.io/enforce: privileged",
    )
    by_hand(
        remote,
        tmp_path,
        {
            f"{base}/extra.yaml": json.dumps(takeover),
            f"{base}/kustomization.yaml": json.dumps(index),
            f"{base}/rbac.yaml": show(remote, f"{base}/rbac.yaml")
            + "\n---\n"
            + json.dumps(takeover),
            f"{base}/networkpolicy.yaml": show(remote, f"{base}/networkpolicy.yaml"),  # unchanged
        },
    )
    problems = {p["path"]: p["problem"] for p in client.get("/api/v1/problems").json}
    assert sorted(problems) == [f"{base}/kustomization.yaml", f"{base}/rbac.yaml"]
    assert (
        "lists 'extra.yaml': the platform applies only the group's platform files"
        in (problems[f"{base}/kustomization.yaml"])
    )
    assert "object 3: kind ClusterRoleBinding" in problems[f"{base}/rbac.yaml"]
    # the Namespace is the group record: a relaxed Pod Security makes the group unreadable
    by_hand(remote, tmp_path, {f"{base}/namespace.yaml": namespace})
    problems = {p["path"]: p["problem"] for p in client.get("/api/v1/problems").json}
    assert "must stay 'restricted', got 'privileged'" in problems[f"{base}/namespace.yaml"]
    by_hand(
        remote,
        tmp_path,
        {f"{base}/namespace.yaml": show(remote, f"{base}/namespace.yaml", "main~1")},
    )

    # a group update writes the platform files anew: a repair; the index lists only them,
    # and the person's extra.yaml is left alone, unlisted (nothing applies it)
    repaired = client.patch("/api/v1/groups/team-a", json={"members": ["alice", "bob", "dora"]})
    assert repaired.status_code == 200, repaired.json
    assert client.get("/api/v1/problems").json == []
    listed = yamlio.load(show(remote, f"{base}/kustomization.yaml"))["resources"]
    assert "extra.yaml" not in listed and f"{base}/extra.yaml" in files(remote)


# ---- the cluster side: Flux stops the broken group only; the repair reconciles -----------


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        yield server


def test_flux_stops_the_broken_group_only_and_the_restore_reconciles(
    tmp_path: Path, fake: FakeKube, helm: str, kubectl: str
) -> None:
    bridge = Bridge(tmp_path / "data", fake, helm, kubectl, settings={"fetch_interval": 0})
    bridge.add_group(TEAM_B | {"members": ["alice"]})
    name = bridge.create("web")
    bridge.flux.reconcile()
    path = app_file(name)
    good = show(bridge.remote, path)
    bridge.edit_by_hand(tmp_path, {path: good.replace("  values:\n", "  values: [\n")}, "Oops")
    refused = bridge.client.post(
        "/api/v1/groups/team-a/deployments", json=web("api"), headers=ALICE
    )
    assert refused.status_code == 409 and path in refused.json["message"]
    other = bridge.create("api", group="team-b")
    bridge.flux.reconcile()
    status, reason, _ = ready(fake.get(*KS, "group-team-a", "apps"))
    assert (status, reason) == ("False", "BuildFailed")
    assert ready(bridge.release(name))[0] == "True"  # what ran keeps running
    assert ready(bridge.release(other, "team-b"))[:2] == ("True", "InstallSucceeded")

    versions = bridge.client.get(f"/api/v1/deployments/{name}/history", headers=ALICE).json
    restored = bridge.client.post(
        f"/api/v1/deployments/{name}/restore", json={"commit": versions[1]["commit"]}, headers=ALICE
    )
    assert restored.status_code == 200, restored.json
    bridge.create("api")
    bridge.flux.reconcile()
    assert ready(fake.get(*KS, "group-team-a", "apps"))[0] == "True"
