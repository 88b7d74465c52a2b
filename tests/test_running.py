"""After a failed upgrade that Helm rolled back, the API tells what runs from what was committed:
the running image and settings digest (the chart's annotation on the Deployment, written by
the real helm through the Flux stand-in), the commit live for this deployment, and History marks
that version live; a successful reconcile makes them match again. A control proves the checks
fail when the chart does not write the annotation. The digest itself is bookkeeping: diffs
people read do not show it."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from gitops_bridge import config, models, running
from gitops_bridge.render import digest, yamlio
from gitops_bridge.render.helmrelease import document, parse_helmrelease, values
from gitops_bridge.runtime import Runtime
from tests import connected
from tests.apputil import web
from tests.bridgeutil import edit_by_hand
from tests.fluxstandin import FluxStandIn
from tests.gitutil import show
from tests.kubefake import FakeKube
from tests.test_poller import caught_up

ALICE = {"X-Forwarded-User": "alice"}
NS = "group-team-a"
IMAGE = "registry:5000/team-a/web:1.0"
IMAGE_2 = "registry:5000/team-a/web:2.0"
TEMPLATE = "charts/generic-app/templates/deployment.yaml"


# ---- the digest ------------------------------------------------------------------------------


def test_the_digest_is_of_the_values_without_itself_and_every_write_carries_it() -> None:
    spec = models.parse_deployment({"name": "web", "image": IMAGE, "replicas": 2})
    deployment = models.Deployment(group="team-a", id="k3x9q2", spec=spec)
    rendered = values(deployment, settings=config.Settings())
    stored = rendered[digest.KEY]
    assert len(stored) == digest.LENGTH and set(stored) <= set("0123456789abcdef")
    assert digest.of(rendered) == stored
    assert digest.of({**rendered, digest.KEY: "something else"}) == stored
    assert digest.of({**rendered, "replicas": 3}) != stored
    changed = deployment.model_copy(update={"spec": spec.model_copy(update={"image": IMAGE_2})})
    assert values(changed, settings=config.Settings())[digest.KEY] != stored
    written = document(deployment, settings=config.Settings())
    assert digest.stored(written) == stored
    assert digest.stored({"spec": {"values": {"image": IMAGE}}}) == ""  # a file from before
    # a file without it still reads as the same deployment
    del written["spec"]["values"][digest.KEY]
    assert parse_helmrelease(written) == deployment


def test_diffs_people_read_do_not_show_the_digest() -> None:
    spec = models.parse_deployment({"name": "web", "image": IMAGE})
    deployment = models.Deployment(group="team-a", id="k3x9q2", spec=spec)
    changed = deployment.model_copy(update={"spec": spec.model_copy(update={"image": IMAGE_2})})
    old, new = (yamlio.dump(document(d, settings=config.Settings())) for d in (deployment, changed))
    raw = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), "a/f", "b/f", n=1
        )
    )
    assert f"+    {digest.KEY}: " in raw and f"-    {digest.KEY}: " in raw  # two hunks
    shown = digest.hide(raw)
    assert digest.KEY not in shown
    assert shown.splitlines()[:2] == ["--- a/f", "+++ b/f"]
    assert f"-    image: {IMAGE}" in shown and f"+    image: {IMAGE_2}" in shown
    assert shown.count("@@ ") == 1  # the digest's own hunk is gone
    hunk = next(line for line in shown.splitlines() if line.startswith("@@ "))
    body = shown.splitlines()[3:]
    old_lines = sum(1 for line in body if line[:1] in (" ", "-"))
    new_lines = sum(1 for line in body if line[:1] in (" ", "+"))
    assert (
        hunk.startswith("@@ -") and f",{old_lines} +" in hunk and hunk.endswith(f",{new_lines} @@")
    )
    # a change of nothing but the digest shows no diff at all
    only = "".join(
        difflib.unified_diff(
            ["a\n", f'    {digest.KEY}: "0123456789abcdef"\n'],
            ["a\n", f"    {digest.KEY}: fedcba9876543210\n"],
            "a/f",
            "b/f",
        )
    )
    assert only and digest.hide(only) == ""
    # a value that only looks like it stays
    env = '-      value: "x"\n+      value: "    specDigest: 0"\n'
    assert digest.hide(f"--- a/f\n+++ b/f\n@@ -9 +9 @@\n{env}") != ""


# ---- through the API, with the real helm -----------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with connected.fake_cluster() as server:
        yield server


@pytest.fixture
def app(tmp_path: Path, fake: FakeKube) -> Iterator[Flask]:
    with connected.connected_app(tmp_path, fake) as built:
        yield built


@pytest.fixture
def client(app: Flask, fake: FakeKube) -> FlaskClient:
    return connected.team_client(app, fake)


@pytest.fixture
def standin(fake: FakeKube, tmp_path: Path, helm: str, kubectl: str) -> FluxStandIn:
    return connected.flux(fake, tmp_path, helm, kubectl)


def answer(response: TestResponse) -> Any:
    """The JSON body of an answer (there must be one)."""
    data = response.json
    assert data is not None, response.status_code
    return data


@dataclass
class Bridge:
    client: FlaskClient
    rt: Runtime
    standin: FluxStandIn
    fake: FakeKube

    def reconcile(self, **options: Any) -> None:
        self.standin.reconcile(**options)
        assert self.rt.monitor.poller is not None
        assert self.rt.monitor.poller.run_once() is not None, self.rt.monitor.poller.state.error
        caught_up(self.rt.monitor.poller)

    def get(self, name: str) -> Any:
        found = self.client.get(f"/api/v1/deployments/{name}", headers=ALICE)
        assert found.status_code == 200, found.json
        return answer(found)

    def live(self, name: str) -> dict[str, bool]:
        """commit -> live, of the deployment's history."""
        page = self.client.get(f"/api/v1/deployments/{name}/history", headers=ALICE)
        assert page.status_code == 200, page.json
        return {v["commit"]: v["live"] for v in answer(page)}

    def annotation(self, name: str) -> str | None:
        found = self.fake.get("apps/v1", "Deployment", NS, name)
        assert found is not None
        value = (found["metadata"].get("annotations") or {}).get(digest.ANNOTATION)
        return None if value is None else str(value)


@pytest.fixture
def bridge(client: FlaskClient, app: Flask, standin: FluxStandIn, fake: FakeKube) -> Bridge:
    return Bridge(client, app.extensions["gitops_bridge.runtime"], standin, fake)


def created_and_rolled_back(bridge: Bridge) -> tuple[str, str, str]:
    """Create (runs), then a new image whose upgrade fails and is rolled back; the name, the
    first commit and the second."""
    made = bridge.client.post(
        "/api/v1/groups/team-a/deployments", json=web(image=IMAGE), headers=ALICE
    )
    assert made.status_code == 201, made.json
    name, first = answer(made)["name"], answer(made)["commit"]
    bridge.reconcile()
    assert bridge.get(name)["status"]["state"] == "running"
    updated = bridge.client.patch(
        f"/api/v1/deployments/{name}", json={"image": IMAGE_2}, headers=ALICE
    )
    assert updated.status_code == 200, updated.json
    second = answer(updated)["commit"]
    bridge.reconcile(scenario={name: "failed-upgrade"})
    return name, first, second


def digests(bridge: Bridge, name: str, *commits: str) -> list[str]:
    """The digest each commit's version of the deployment's file carries."""
    path = f"tenants/team-a/apps/{name}.yaml"
    return [digest.stored(yamlio.load(show(bridge.standin.remote, path, sha))) for sha in commits]


def check_rolled_back(bridge: Bridge, name: str, first: str, second: str) -> None:
    """What runs is the first version: its image, its digest, its commit; History marks it."""
    body = bridge.get(name)
    assert body["status"]["state"] == "failed" and body["status"]["reason"] == "UpgradeFailed"
    assert (body["image"], body["commit"]) == (IMAGE_2, second)  # what is committed
    carried = digests(bridge, name, first, second)
    assert carried[0] != carried[1] and all(carried)
    assert body["running"] == {
        "image": IMAGE,
        "digest": carried[0],
        "commit": first,
        "matches": False,
        "committedDigest": carried[1],
        "olderThan": None,
    }, body["running"]
    assert bridge.annotation(name) == carried[0]  # the chart wrote it, Helm kept it
    assert bridge.live(name) == {second: False, first: True}
    listed = answer(bridge.client.get("/api/v1/deployments", headers=ALICE))
    assert [item["running"]["commit"] for item in listed if item["name"] == name] == [first]


def test_a_rolled_back_upgrade_shows_what_runs_and_its_commit_until_a_reconcile_succeeds(
    bridge: Bridge,
) -> None:
    name, first, second = created_and_rolled_back(bridge)
    check_rolled_back(bridge, name, first, second)

    bridge.reconcile()  # the cause went away: the upgrade succeeds
    body = bridge.get(name)
    assert body["status"]["state"] == "running", body["status"]
    assert bridge.annotation(name) == digests(bridge, name, second)[0]
    assert body["running"]["matches"] is True and body["running"]["image"] == IMAGE_2
    assert body["running"]["commit"] == second
    assert bridge.live(name) == {second: True, first: False}


def test_an_unrelated_commit_moves_nothing_and_a_revert_is_live_again(bridge: Bridge) -> None:
    """The live commit is the newest version carrying what runs: a change of another
    deployment does not move it; reverting the failed change writes the first version's
    digest again, so that (newest) revert is live once Flux applied it."""
    name, first, second = created_and_rolled_back(bridge)
    other = bridge.client.post("/api/v1/groups/team-a/deployments", json=web("api"), headers=ALICE)
    assert other.status_code == 201, other.json
    bridge.reconcile(scenario={name: "failed-upgrade"})
    assert bridge.get(name)["running"]["commit"] == first
    reverted = bridge.client.post(
        f"/api/v1/deployments/{name}/revert", json={"commit": second}, headers=ALICE
    )
    assert reverted.status_code == 200, reverted.json
    bridge.reconcile()
    body = bridge.get(name)
    assert body["image"] == IMAGE and body["running"]["matches"] is True
    assert body["running"]["commit"] == answer(reverted)["commit"] != first
    assert body["running"]["digest"] == body["running"]["committedDigest"]
    assert bridge.live(name)[answer(reverted)["commit"]] is True
    history = bridge.client.get(f"/api/v1/deployments/{name}/history?diff=1", headers=ALICE)
    assert all(digest.KEY not in version["diff"] for version in answer(history))


def test_control_without_the_annotation_the_checks_fail(bridge: Bridge, tmp_path: Path) -> None:
    """The same steps with a chart that does not write the annotation (a person's edit of the
    vendored chart): the running version cannot be told, and the checks above fail."""
    remote = bridge.standin.remote
    template = show(remote, TEMPLATE)
    start = template.index("  {{- with .Values.specDigest }}")
    end = template.index("{{- end }}", start) + len("{{- end }}\n")
    without = template[:start] + template[end:]
    assert digest.ANNOTATION not in without and without != template
    edit_by_hand(remote, tmp_path, {TEMPLATE: without}, "Chart without the digest annotation")
    name, first, second = created_and_rolled_back(bridge)
    assert bridge.annotation(name) is None
    with pytest.raises(AssertionError, match="'commit': None"):  # the bridge cannot tell
        check_rolled_back(bridge, name, first, second)


def test_the_lookup_is_cached_and_bounded(bridge: Bridge) -> None:
    name, first, _ = created_and_rolled_back(bridge)
    assert running._live.max_items <= 4096
    walks = []
    file_log = bridge.rt.svc.repo.file_log

    def counted(*args: Any, **kwargs: Any) -> Any:
        walks.append(args)
        return file_log(*args, **kwargs)

    bridge.rt.svc.repo.file_log = counted  # type: ignore[method-assign]
    running._live.clear()
    for _ in range(3):
        assert bridge.get(name)["running"]["commit"] == first
    assert len(walks) == 1  # one walk of the file's history, then the cache


def test_hide_keeps_created_files_and_leaves_other_diffs_alone() -> None:
    created = (
        "diff --git a/f b/f\nnew file mode 100644\n--- /dev/null\n+++ b/f\n@@ -0,0 +1,3 @@\n"
        f"+a\n+  values:\n+    {digest.KEY}: abcdef0123456789"
    )
    assert digest.hide(created).splitlines()[4:] == ["@@ -0,0 +1,2 @@", "+a", "+  values:"]
    merge = "diff --cc f\n@@@ -1,1 -1,1 +1,1 @@@\n- a\n -b\n++c"
    assert digest.hide(merge) == merge
