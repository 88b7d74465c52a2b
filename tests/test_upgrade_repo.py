"""`gitops-bridge upgrade-repo` moves a repository of the earlier layout (the platform
Kustomization applied every HelmRelease, charts from flux-system) to the groups' own
Kustomizations without Flux ever deleting a release on the way, and afterwards the repository
reconciles under the multi-tenancy lockdown; a current repository gets no commit. Flux and
the API server are the test stand-ins (no cluster can run here)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops_bridge.identity import User
from gitops_bridge.render import yamlio
from tests.bridgeutil import HR, KS, Bridge, ready
from tests.fluxstandin import FluxStandIn
from tests.gitutil import files, head, show
from tests.kubefake import FakeKube

NS = "group-team-a"
ADMIN = User(name="admin", email="admin@code-hub.com", admin=True)


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        yield server


def _earlier_layout(bridge: Bridge, tmp: Path, name: str) -> None:
    """Rewrite the repository by hand into what the earlier release wrote."""
    app = f"tenants/team-a/apps/{name}.yaml"
    release = yamlio.load(show(bridge.remote, app))
    release["spec"].pop("timeout")
    release["spec"]["chart"]["spec"] |= {
        "reconcileStrategy": "Revision",
        "sourceRef": {"kind": "GitRepository", "name": "flux-system", "namespace": "flux-system"},
    }
    index = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [
            "namespace.yaml",
            "quota.yaml",
            "rbac.yaml",
            "networkpolicy.yaml",
            f"apps/{name}.yaml",
        ],
    }
    tenants = show(bridge.remote, "clusters/dev/tenants.yaml").replace(
        "  serviceAccountName: kustomize-controller\n", ""
    )
    edits: dict[str, str | None] = {
        app: json.dumps(release),
        "tenants/team-a/kustomization.yaml": json.dumps(index),
        "tenants/team-a/sync.yaml": None,
        "tenants/team-a/notifications.yaml": None,
        "tenants/team-a/apps/.gitkeep": None,
        "clusters/dev/tenants.yaml": tenants,
    }
    bridge.edit_by_hand(tmp, edits, "The earlier layout")


def test_three_runs_move_every_release_without_deleting_one(
    tmp_path: Path, fake: FakeKube, helm: str, kubectl: str
) -> None:
    # the earlier layout only ever ran without the lockdown flags
    bridge = Bridge(
        tmp_path / "data",
        fake,
        helm,
        kubectl,
        no_cross_namespace_refs=False,
        default_service_account=None,
    )
    name = bridge.create("web", replicas=2)
    _earlier_layout(bridge, tmp_path, name)
    bridge.flux.reconcile()
    uid = bridge.release(name)["metadata"]["uid"]
    assert bridge.release(name)["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == (
        "tenants"
    )
    svc = bridge.client.application.extensions["gitops_bridge"]

    notes = []
    for _ in range(3):
        written = svc.upgrade_repository(ADMIN)
        assert written.commit.changed and written.commit.sha == head(bridge.remote)
        notes.append(written.message)
        bridge.flux.reconcile()
        release = bridge.release(name)  # never deleted, never recreated
        assert release["metadata"]["uid"] == uid and "deletionTimestamp" not in release["metadata"]
        assert ready(release)[0] == "True"
    assert [n.split(":")[0] for n in notes] == ["stage 1", "stage 2", "stage 3"]
    assert ready(fake.get(*KS, NS, "apps"))[:2] == ("True", "ReconciliationSucceeded")
    release = bridge.release(name)
    assert release["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "apps"
    assert "kustomize.toolkit.fluxcd.io/prune" not in release["metadata"].get("annotations", {})
    index = yamlio.load(show(bridge.remote, "tenants/team-a/kustomization.yaml"))
    assert not [r for r in index["resources"] if r.startswith("apps/")]
    assert "tenants/team-a/sync.yaml" in files(bridge.remote)

    # current now: no commit, and the lockdown reconciles it
    again = svc.upgrade_repository(ADMIN)
    assert not again.commit.changed and again.message == "done"
    locked = FluxStandIn(fake, remote=bridge.remote, helm=helm, kubectl=kubectl)
    locked.reconcile()
    assert ready(fake.get(*KS, "flux-system", "tenants"))[0] == "True"
    assert ready(bridge.release(name))[0] == "True"
    assert bridge.release(name)["metadata"]["uid"] == uid
    assert fake.get(*HR, NS, name) is not None


def test_only_platform_admins_upgrade(
    tmp_path: Path, fake: FakeKube, helm: str, kubectl: str
) -> None:
    bridge = Bridge(tmp_path / "data", fake, helm, kubectl)
    svc = bridge.client.application.extensions["gitops_bridge"]
    before = head(bridge.remote)
    with pytest.raises(Exception, match="only platform admins"):
        svc.upgrade_repository(User(name="alice", email="alice@code-hub.com", admin=False))
    assert head(bridge.remote) == before
