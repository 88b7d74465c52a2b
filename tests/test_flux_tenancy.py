"""The repository as Flux's multi-tenancy lockdown reconciles it, in the stand-in: with
``--no-cross-namespace-refs`` and ``--default-service-account`` every group reconciles on its
own (a hand-made failure in one group stops no other), apply-then-prune at the deployment
limit and after a lowered quota never freezes a group, an unrelated commit upgrades nothing
and restarts no pod, and Flux's events reach the bridge through each group's own Alert.
The cluster is an HTTP-level fake of the Kubernetes API (no API server can run here)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitops_bridge import monitor
from tests.apputil import web
from tests.bridgeutil import ALICE, HR, KS, Bridge, ready
from tests.chartversions import CHART, version
from tests.fluxstandin import FluxStandIn
from tests.gitutil import show
from tests.kubefake import FakeKube

CHART_VERSION = version(CHART)

NS = "group-team-a"
EVENTS_TOKEN = "events-secret"


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        yield server


@pytest.fixture
def bridge(tmp_path: Path, fake: FakeKube, helm: str, kubectl: str) -> Bridge:
    return Bridge(tmp_path / "data", fake, helm, kubectl)


def _template(fake: FakeKube, name: str, namespace: str = NS) -> dict[str, Any]:
    deployment = fake.get("apps/v1", "Deployment", namespace, name)
    assert deployment is not None, name
    return dict(deployment["spec"]["template"])


def _pod_names(bridge: Bridge, name: str, group: str = "team-a") -> set[str]:
    return {p["metadata"]["name"] for p in bridge.pods(name, group)}


# ---- lockdown ---------------------------------------------------------------------------


def test_the_earlier_layout_is_refused_under_lockdown(bridge: Bridge, tmp_path: Path) -> None:
    name = bridge.create("web")
    bridge.flux.reconcile()
    assert ready(bridge.release(name))[:2] == ("True", "InstallSucceeded")

    # What every HelmRelease referenced before: the flux-system GitRepository.
    path = f"tenants/team-a/apps/{name}.yaml"
    text = show(bridge.remote, path).replace(
        "        name: gitops\n", "        name: flux-system\n        namespace: flux-system\n"
    )
    bridge.edit_by_hand(tmp_path, {path: text}, "Chart from flux-system")
    bridge.flux.reconcile()
    status, reason, message = ready(bridge.release(name))
    assert (status, reason) == ("False", "AccessDenied")
    assert message == (
        "can't access 'GitRepository/flux-system/flux-system', "
        "cross-namespace references have been blocked"
    )

    # The platform Kustomization without a service account runs as `default`: no rights.
    tenants = show(bridge.remote, "clusters/dev/tenants.yaml").replace(
        "  serviceAccountName: kustomize-controller\n", ""
    )
    bridge.edit_by_hand(tmp_path, {"clusters/dev/tenants.yaml": tenants}, "No account")
    bridge.flux.reconcile()
    status, reason, message = ready(bridge.fake.get(*KS, "flux-system", "tenants"))
    assert (status, reason) == ("False", "ReconciliationFailed")
    assert 'User "system:serviceaccount:flux-system:default" cannot patch' in message

    # Without the lockdown flags the same repository goes through: the stand-in tells them apart.
    open_flux = FluxStandIn(
        bridge.fake,
        remote=bridge.remote,
        helm=bridge.flux.helm,
        kubectl=bridge.flux.kubectl,
        no_cross_namespace_refs=False,
        default_service_account=None,
    )
    open_flux.reconcile()
    assert ready(bridge.fake.get(*KS, "flux-system", "tenants"))[0] == "True"
    assert ready(bridge.release(name))[0] == "True"


def test_a_failing_group_stops_no_other(bridge: Bridge, fake: FakeKube, tmp_path: Path) -> None:
    bridge.add_group(
        {
            "name": "team-b",
            "members": ["alice"],
            "quota": {"cpu": "2", "memory": "4Gi", "storage": "10Gi", "deployments": 5},
        }
    )
    a1 = bridge.create("web")
    b1 = bridge.create("api", group="team-b")
    bridge.flux.reconcile()
    assert ready(bridge.release(b1, "team-b"))[0] == "True"

    # A hand edit in team-b: what its own service account may not do (a hostile or careless
    # tenant): a ClusterRoleBinding, and a ResourceQuota of its own.
    escalation = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "team-b-takes-over"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cluster-admin",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "group-team-b"}],
    }
    b2 = bridge.create("worker", group="team-b")  # in the same revision Flux gets next
    bridge.edit_by_hand(
        tmp_path,
        {"tenants/team-b/apps/takeover.yaml": json.dumps(escalation)},
        "Take over the cluster",
    )
    # the bridge reads the folder by its rules: no more commits for team-b until it is fixed
    refused = bridge.client.post(
        "/api/v1/groups/team-b/deployments", json=web("cron"), headers=ALICE
    )
    assert refused.status_code == 409
    assert "tenants/team-b/apps/takeover.yaml" in refused.json["message"]
    a2 = bridge.create("api", group="team-a")
    bridge.flux.reconcile()

    status, reason, message = ready(fake.get(*KS, "group-team-b", "apps"))
    assert (status, reason) == ("False", "ReconciliationFailed")
    assert "ClusterRoleBinding/team-b-takes-over dry-run failed (Forbidden)" in message
    assert (
        fake.get("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", None, "team-b-takes-over")
        is None
    )
    assert fake.get(*HR, "group-team-b", b2) is None  # nothing of that revision applied
    assert ready(bridge.release(b1, "team-b"))[0] == "True"  # what ran keeps running
    # team-a, and the platform, go on
    assert ready(fake.get(*KS, NS, "apps"))[0] == "True"
    assert ready(fake.get(*KS, "flux-system", "tenants"))[0] == "True"
    assert ready(bridge.release(a2))[:2] == ("True", "InstallSucceeded")
    assert ready(bridge.release(a1))[0] == "True"


def test_depends_on_waits_for_its_dependency(
    bridge: Bridge, fake: FakeKube, tmp_path: Path
) -> None:
    """A Kustomization added to apps/ by hand (the bridge reports it as not allowed there,
    but Flux applies it: the group's account may, Flux's edit role is aggregated to admin);
    dependsOn holds it back until the dependency is ready."""
    bridge.flux.reconcile()

    def extra(name: str, depends: str) -> str:
        return json.dumps(
            {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "metadata": {"name": name, "namespace": NS},
                "spec": {
                    "interval": "10m",
                    "path": "./tenants/team-a/apps/extra",
                    "prune": True,
                    "serviceAccountName": "flux-reconciler",
                    "sourceRef": {"kind": "GitRepository", "name": "gitops"},
                    "dependsOn": [{"name": depends}],
                },
            }
        )

    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "extra", "namespace": NS},
    }
    bridge.edit_by_hand(
        tmp_path,
        {
            "tenants/team-a/apps/waits.yaml": extra("waits", "missing"),
            "tenants/team-a/apps/extra/kustomization.yaml": json.dumps({"resources": ["cm.yaml"]}),
            "tenants/team-a/apps/extra/cm.yaml": json.dumps(config),
        },
        "Extra Kustomization",
    )
    bridge.flux.reconcile()
    status, reason, message = ready(fake.get(*KS, NS, "waits"))
    assert (status, reason) == ("False", "DependencyNotReady")
    assert message.startswith(f"dependency '{NS}/missing' not found")
    waiting = fake.get(*KS, NS, "waits")
    assert waiting is not None and "lastAppliedRevision" not in waiting["status"]

    bridge.edit_by_hand(
        tmp_path, {"tenants/team-a/apps/waits.yaml": extra("waits", "apps")}, "Depend on apps"
    )
    bridge.flux.reconcile()
    assert ready(fake.get(*KS, NS, "waits"))[:2] == ("True", "ReconciliationSucceeded")
    applied = fake.get(*KS, NS, "waits")
    assert applied is not None and applied["status"]["inventory"]["entries"] == [
        {"id": f"{NS}_extra__ConfigMap", "v": "v1"}
    ]


def test_the_oci_chart_source_reconciles_under_lockdown(
    tmp_path: Path, fake: FakeKube, helm: str, kubectl: str
) -> None:
    bridge = Bridge(tmp_path / "data", fake, helm, kubectl, settings={"chart": {"source": "oci"}})
    name = bridge.create("web", expose=True)
    bridge.flux.reconcile()
    assert ready(bridge.release(name))[:2] == ("True", "InstallSucceeded")
    # helm-controller versions an OCI chart <version>+<12 hex of the digest>
    version = bridge.release(name)["status"]["history"][0]["chartVersion"]
    assert version.startswith(f"{CHART_VERSION}+") and len(version) == len(CHART_VERSION) + 13
    deployment = fake.get("apps/v1", "Deployment", NS, name)
    assert deployment is not None
    assert deployment["metadata"]["labels"]["helm.sh/chart"] == "generic-app-" + version.replace(
        "+", "_"
    )
    assert "helm.sh/chart" not in deployment["spec"]["template"]["metadata"]["labels"]
    source = fake.get("source.toolkit.fluxcd.io/v1", "GitRepository", NS, "gitops")
    assert source is not None and source["spec"]["sparseCheckout"] == ["tenants/team-a/apps"]


# ---- apply before prune ----------------------------------------------------------------------


SMALL = {
    "name": "small",
    "members": ["alice"],
    "quota": {"cpu": "2", "memory": "4Gi", "storage": "10Gi", "deployments": 2},
}


@pytest.mark.parametrize("slow_uninstall", [False, True])
def test_delete_then_create_at_the_limit_applies_then_prunes(
    bridge: Bridge, fake: FakeKube, slow_uninstall: bool
) -> None:
    bridge.add_group(SMALL)
    a = bridge.create("a", group="small")
    b = bridge.create("b", group="small")
    bridge.flux.reconcile()
    bridge.delete(a)
    c = bridge.create("c", group="small")  # a and c meet in one apply: a is pruned after it
    bridge.flux.reconcile(hold_deletes=slow_uninstall)
    assert ready(fake.get(*KS, "group-small", "apps"))[:2] == ("True", "ReconciliationSucceeded")
    assert ready(bridge.release(c, "small"))[:2] == ("True", "InstallSucceeded")
    assert ready(bridge.release(b, "small"))[0] == "True"
    gone = fake.get(*HR, "group-small", a)
    if slow_uninstall:
        assert gone is not None and gone["metadata"]["deletionTimestamp"]
    else:
        assert gone is None
    bridge.flux.reconcile()
    assert fake.get(*HR, "group-small", a) is None and bridge.pods(a, "small") == []


def test_a_lowered_deployment_limit_never_freezes_the_group(bridge: Bridge, fake: FakeKube) -> None:
    bridge.add_group({**SMALL, "quota": {**SMALL["quota"], "deployments": 3}})
    names = [bridge.create(n, group="small") for n in ("a", "b", "c")]
    bridge.flux.reconcile()
    answer = bridge.client.patch("/api/v1/groups/small", json={"quota": {"deployments": 1}})
    assert answer.status_code == 200, answer.json
    for name in names[:2]:
        bridge.delete(name)
    refused = bridge.client.post(
        "/api/v1/groups/small/deployments",
        json={"name": "d", "image": "registry:5000/small/d:1"},
        headers={"X-Forwarded-User": "alice"},
    )
    assert refused.status_code == 422  # c and d would be 2 of 1
    bridge.delete(names[2])
    d = bridge.create("d", group="small")
    # Flux sees a, b, c (not yet pruned, or still uninstalling) and d in one apply
    bridge.flux.reconcile(hold_deletes=True)
    assert ready(fake.get(*KS, "group-small", "apps"))[0] == "True"
    assert ready(bridge.release(d, "small"))[:2] == ("True", "InstallSucceeded")
    bridge.flux.reconcile()
    assert [hr["metadata"]["name"] for hr in fake.items(*HR, "group-small")] == [d]


# ---- upgrades only where something changed ------------------------------------------------------


def test_an_unrelated_commit_upgrades_nothing_and_restarts_no_pod(
    bridge: Bridge, fake: FakeKube
) -> None:
    a = bridge.create("a", replicas=2, expose=True)
    b = bridge.create("b", replicas=1)
    bridge.flux.reconcile()
    template, pods = _template(fake, a), _pod_names(bridge, a)
    upgrades = dict(bridge.flux.upgrades)

    bridge.update(b, image="registry:5000/team-a/b:2.0")
    changed = bridge.client.patch("/api/v1/groups/team-a", json={"members": ["alice", "carol"]})
    assert changed.status_code == 200  # and a platform change in the same group
    bridge.flux.reconcile()

    assert _template(fake, a) == template and _pod_names(bridge, a) == pods
    assert bridge.flux.upgrades[(NS, a)] == upgrades[(NS, a)]
    assert bridge.flux.upgrades[(NS, b)] == upgrades[(NS, b)] + 1
    assert {p["spec"]["containers"][0]["image"] for p in bridge.pods(b)} == {
        "registry:5000/team-a/b:2.0"
    }


# ---- notifications -----------------------------------------------------------------------


def test_events_reach_the_bridge_through_the_groups_own_alert(
    tmp_path: Path, fake: FakeKube, helm: str, kubectl: str
) -> None:
    bridge = Bridge(
        tmp_path / "data",
        fake,
        helm,
        kubectl,
        settings={"kubernetes": {"events_token": EVENTS_TOKEN, "mode": "none"}},
    )
    key = monitor.events_key(EVENTS_TOKEN, NS)
    fake.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "gitops-bridge-events", "namespace": NS},
            "data": {"token": base64.b64encode(key.encode()).decode()},
        }
    )
    name = bridge.create("web")
    bridge.flux.reconcile()
    answers: list[int] = []

    def post(address: str, headers: dict[str, str], body: bytes) -> None:
        assert address.endswith("/api/v1/flux/events")
        answers.append(
            bridge.client.post("/api/v1/flux/events", data=body, headers=headers).status_code
        )

    install = next(e for e in bridge.flux.events if e.name == name)
    assert [a["metadata"]["namespace"] for a in bridge.flux.alerts_for(install)] == [NS]
    assert bridge.flux.deliver(post) >= 2  # the release and the group's Kustomization
    assert answers and set(answers) == {202}
    shown = bridge.client.get(f"/api/v1/deployments/{name}", headers={"X-Forwarded-User": "alice"})
    events = shown.json["events"]  # type: ignore[index]
    assert events[-1]["reason"] == "InstallSucceeded" and events[-1]["revision"] == CHART_VERSION
    # The demo group has no Secret: its Provider cannot sign, nothing is sent for it.
    assert any("group-demo/gitops-bridge-events" in e for e in bridge.flux.dispatch_errors)

    # An Alert written the way the platform one was (namespace "*") matches nothing:
    # notification-controller compares the namespace literally.
    fake.apply(
        {
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Alert",
            "metadata": {"name": "everything", "namespace": "flux-system"},
            "spec": {
                "providerRef": {"name": "gitops-bridge"},
                "eventSources": [{"kind": "HelmRelease", "name": "*", "namespace": "*"}],
            },
        }
    )
    assert [a["metadata"]["name"] for a in bridge.flux.alerts_for(install)] == ["gitops-bridge"]
