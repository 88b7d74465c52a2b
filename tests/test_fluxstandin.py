"""The Flux stand-in applies repositories written through gitops-bridge's API as Flux would:
revisions, HelmRelease status per scenario, pods, metrics, logs, graceful deletes, and every
Flux object it publishes validates against the CRD schemas (status included)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from kubernetes import client, config, watch

from gitops_bridge import quantity
from tests.apputil import as_user
from tests.bridgeutil import Bridge
from tests.chartversions import CHART, version
from tests.gitutil import head
from tests.kubefake import FakeKube

CHART_VERSION = version(CHART)

HR = ("helm.toolkit.fluxcd.io/v2", "HelmRelease")
KS = ("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
GIT = ("source.toolkit.fluxcd.io/v1", "GitRepository")
NS = "group-team-a"
ALICE = as_user("alice")
SAFE = "[bcdfghjklmnpqrstvwxz2456789]"  # the alphabet of generated Kubernetes names
POD_NAME = re.compile(rf"^(?P<deploy>[a-z0-9-]+)-{SAFE}{{6,10}}-{SAFE}{{5}}$")
CONDITION_FIELDS = {"type", "status", "reason", "message", "lastTransitionTime"}
CONDITION_FIELDS |= {"observedGeneration"}


@pytest.fixture
def bridge(tmp_path: Path, helm: str, kubectl: str) -> Iterator[Bridge]:
    with FakeKube() as fake:
        yield Bridge(tmp_path / "data", fake, helm, kubectl)


@pytest.fixture
def api(bridge: Bridge, tmp_path: Path) -> Iterator[client.ApiClient]:
    configuration = client.Configuration()
    kubeconfig = bridge.fake.kubeconfig(tmp_path / "kubeconfig")
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    api_client = client.ApiClient(configuration)
    yield api_client
    api_client.close()


def _date_time(value: object) -> bool:
    if isinstance(value, str):
        datetime.fromisoformat(value)
    return True


FORMATS = jsonschema.FormatChecker()
FORMATS.checks("date-time", raises=ValueError)(_date_time)


def flux_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    group, version = api_version.split("/")
    text = resources.files("gitops_bridge.schemas").joinpath(f"{group}_{version}_{kind}.json")
    return jsonschema.Draft202012Validator(json.loads(text.read_text()), format_checker=FORMATS)


def assert_flux_objects_valid(fake: FakeKube) -> int:
    """Every Flux object in the fake validates against its CRD schema; returns how many."""
    count = 0
    for api_version, kind in (HR, KS, GIT):
        validator = flux_validator(api_version, kind)
        for obj in fake.items(api_version, kind):
            errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]
            assert errors == [], f"{kind} {obj['metadata']['name']}: {errors}"
            for condition in obj.get("status", {}).get("conditions", []):
                assert set(condition) == CONDITION_FIELDS, condition
            count += 1
    return count


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj["status"]["conditions"]}


# ---- create, apply, delete ----------------------------------------------------------------


def test_create_reconcile_then_delete(bridge: Bridge, api: client.ApiClient) -> None:
    web_name = bridge.create("web", replicas=2, expose=True)
    first = head(bridge.remote)
    api_name = bridge.create("api", replicas=1)

    # An older commit: only what it holds is applied.
    assert bridge.flux.reconcile(first) == first
    assert bridge.fake.get(*HR, NS, api_name) is None
    first_pods = {p["metadata"]["name"] for p in bridge.pods(web_name)}
    platform = bridge.fake.get(*KS, "flux-system", "tenants")
    assert platform is not None
    assert platform["status"]["lastAppliedRevision"] == f"main@sha1:{first}"
    # the group's apps are applied by the group's own Kustomization, as its service account
    kustomization = bridge.fake.get(*KS, NS, "apps")
    assert kustomization is not None
    assert kustomization["status"]["lastAppliedRevision"] == f"main@sha1:{first}"
    assert kustomization["spec"]["serviceAccountName"] == "flux-reconciler"

    # What gitops-bridge does after a push (`flux reconcile --with-source`); it survives
    # the apply and is acknowledged in status.lastHandledReconcileAt.
    requested = {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "now-1"}}}
    custom = client.CustomObjectsApi(api)
    custom.patch_namespaced_custom_object(
        "source.toolkit.fluxcd.io", "v1", NS, "gitrepositories", "gitops", requested
    )
    custom.patch_namespaced_custom_object(
        "kustomize.toolkit.fluxcd.io", "v1", NS, "kustomizations", "apps", requested
    )

    commit = bridge.flux.reconcile()
    assert commit == head(bridge.remote) != first
    revision = f"main@sha1:{commit}"
    source = bridge.fake.get(*GIT, NS, "gitops")
    assert source is not None and source["status"]["artifact"]["revision"] == revision
    assert conditions(source)["Ready"]["status"] == "True"
    kustomization = bridge.fake.get(*KS, NS, "apps")
    assert kustomization is not None
    status = kustomization["status"]
    assert status["lastAppliedRevision"] == status["lastAttemptedRevision"] == revision
    ready = conditions(kustomization)["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "ReconciliationSucceeded")
    assert ready["message"] == f"Applied revision: {revision}"
    assert status["observedGeneration"] == kustomization["metadata"]["generation"]
    assert status["lastHandledReconcileAt"] == "now-1"
    assert source["status"]["lastHandledReconcileAt"] == "now-1"
    inventory = {e["id"] for e in status["inventory"]["entries"]}
    assert inventory == {
        f"{NS}_{web_name}_helm.toolkit.fluxcd.io_HelmRelease",
        f"{NS}_{api_name}_helm.toolkit.fluxcd.io_HelmRelease",
    }

    release = bridge.release(api_name)
    ready = conditions(release)["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "InstallSucceeded")
    assert ready["message"] == (
        f"Helm install succeeded for release {NS}/{api_name}.v1 "
        f"with chart generic-app@{CHART_VERSION}"
    )
    assert release["status"]["observedGeneration"] == release["metadata"]["generation"]
    assert release["metadata"]["finalizers"] == ["finalizers.fluxcd.io"]
    assert release["status"]["helmChart"] == f"{NS}/{NS}-{api_name}"
    (snapshot,) = release["status"]["history"]
    assert snapshot["status"] == "deployed" and snapshot["chartVersion"] == CHART_VERSION
    assert snapshot["configDigest"] == release["status"]["lastAttemptedConfigDigest"]
    assert release["status"]["lastAttemptedRevision"] == snapshot["chartVersion"]
    # reconcileStrategy ChartVersion: a new commit that does not change web's values or the
    # chart's version upgrades nothing, and its pods stay.
    release = bridge.release(web_name)
    assert conditions(release)["Ready"]["reason"] == "InstallSucceeded"
    assert len(release["status"]["history"]) == 1
    assert bridge.flux.upgrades[(NS, web_name)] == 1
    assert {p["metadata"]["name"] for p in bridge.pods(web_name)} == first_pods
    # releases; Kustomizations flux-system, tenants and apps of demo and team-a; sources
    assert assert_flux_objects_valid(bridge.fake) == 2 + 4 + 3

    # What the poller sees through the official client, typed.
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    pods = core.list_namespaced_pod(NS, label_selector=f"app.kubernetes.io/instance={web_name}")
    assert len(pods.items) == 2
    deployment = apps.read_namespaced_deployment(web_name, NS)
    assert deployment.status.ready_replicas == deployment.status.available_replicas == 2
    assert deployment.status.observed_generation == deployment.metadata.generation
    for pod in pods.items:
        match = POD_NAME.match(pod.metadata.name)
        assert match and match["deploy"] == web_name, pod.metadata.name
        assert pod.metadata.labels["pod-template-hash"] in pod.metadata.name
        assert pod.status.phase == "Running"
        assert [s.name for s in pod.status.container_statuses] == ["app", "frpc"]
        assert all(s.ready for s in pod.status.container_statuses)
        log = core.read_namespaced_pod_log(pod.metadata.name, NS, container="frpc")
        assert f"proxy added: [{web_name}]" in log
        assert "listening" in core.read_namespaced_pod_log(pod.metadata.name, NS, container="app")
    assert core.read_namespaced_service(web_name, NS).spec.ports[0].port == 8080
    assert core.read_namespaced_config_map(web_name, NS).data["frpc.toml"]

    selector = f"app.kubernetes.io/instance={web_name}"
    metrics = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", NS, "pods", label_selector=selector
    )
    assert len(metrics["items"]) == 2
    limits = {c.name: c.resources.limits for c in deployment.spec.template.spec.containers}
    for item in metrics["items"]:
        for container in item["containers"]:
            usage, limit = container["usage"], limits[container["name"]]
            assert 0 < quantity.parse(usage["cpu"]).value < quantity.parse(limit["cpu"]).value
            memory = quantity.parse(usage["memory"]).value
            assert 0 < memory < quantity.parse(limit["memory"]).value

    # Delete: the HelmRelease goes through a deletionTimestamp first, then it is gone.
    bridge.delete(api_name)
    bridge.flux.reconcile(hold_deletes=True)
    deleting = bridge.release(api_name)
    assert deleting["metadata"]["deletionTimestamp"] and bridge.pods(api_name)
    bridge.flux.reconcile()
    assert bridge.fake.get(*HR, NS, api_name) is None and bridge.pods(api_name) == []

    events: list[tuple[str, bool]] = []
    since = bridge.fake.resource_version

    def watch_releases() -> None:
        stream = watch.Watch()
        for event in stream.stream(
            client.CustomObjectsApi(api).list_namespaced_custom_object,
            "helm.toolkit.fluxcd.io",
            "v2",
            NS,
            "helmreleases",
            resource_version=since,
            field_selector=f"metadata.name={web_name}",
            timeout_seconds=10,
        ):
            meta = event["raw_object"]["metadata"]
            events.append((event["type"], "deletionTimestamp" in meta))
            if event["type"] == "DELETED":
                stream.stop()

    watcher = threading.Thread(target=watch_releases)
    watcher.start()
    bridge.delete(web_name)
    bridge.flux.reconcile()
    watcher.join(10)
    assert events[-2:] == [("MODIFIED", True), ("DELETED", True)], events
    assert bridge.fake.items(*HR) == [] and bridge.fake.items("v1", "Pod") == []
    assert bridge.fake.get("apps/v1", "Deployment", NS, web_name) is None
    assert_flux_objects_valid(bridge.fake)
    assert bridge.fake.warnings == []  # nothing the API server would warn about


# ---- upgrades and scenarios ------------------------------------------------------------------


def test_upgrade_then_failed_upgrade_keeps_previous_pods(bridge: Bridge) -> None:
    name = bridge.create("web", replicas=2)
    bridge.flux.reconcile()
    first_pods = {p["metadata"]["name"] for p in bridge.pods(name)}

    bridge.update(name, image="registry:5000/team-a/web:2.0")
    bridge.flux.reconcile()
    release = bridge.release(name)
    assert release["metadata"]["generation"] == release["status"]["observedGeneration"] == 2
    ready = conditions(release)["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "UpgradeSucceeded")
    assert ready["message"].startswith(f"Helm upgrade succeeded for release {NS}/{name}.v2 ")
    assert [h["status"] for h in release["status"]["history"]] == ["deployed", "superseded"]
    upgraded = bridge.pods(name)
    assert len(upgraded) == 2 and not first_pods & {p["metadata"]["name"] for p in upgraded}
    images = {p["spec"]["containers"][0]["image"] for p in upgraded}
    assert images == {"registry:5000/team-a/web:2.0"}

    bridge.update(name, image="registry:5000/team-a/web:3.0")
    bridge.flux.reconcile(scenario={name: "failed-upgrade"})
    release = bridge.release(name)
    found = conditions(release)
    assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("False", "UpgradeFailed")
    assert found["Ready"]["message"] == (
        f"Helm upgrade failed for release {NS}/{name} with chart "
        f"generic-app@{release['status']['lastAttemptedRevision']}: context deadline exceeded"
    )
    assert (found["Released"]["status"], found["Released"]["reason"]) == ("False", "UpgradeFailed")
    remediated = found["Remediated"]
    assert (remediated["status"], remediated["reason"]) == ("True", "RollbackSucceeded")
    history = release["status"]["history"]
    assert [h["status"] for h in history] == ["failed", "deployed", "superseded"]
    assert [h["version"] for h in history] == [3, 2, 1]
    assert history[0]["configDigest"] == release["status"]["lastAttemptedConfigDigest"]
    assert history[0]["configDigest"] != history[1]["configDigest"]
    assert release["status"]["upgradeFailures"] == 1
    kept = bridge.pods(name)
    assert {p["metadata"]["name"] for p in kept} == {p["metadata"]["name"] for p in upgraded}
    assert {p["spec"]["containers"][0]["image"] for p in kept} == {"registry:5000/team-a/web:2.0"}

    bridge.flux.reconcile()  # the next attempt succeeds
    release = bridge.release(name)
    assert conditions(release)["Ready"]["reason"] == "UpgradeSucceeded"
    assert "Remediated" not in conditions(release) and "upgradeFailures" not in release["status"]
    assert {p["spec"]["containers"][0]["image"] for p in bridge.pods(name)} == {
        "registry:5000/team-a/web:3.0"
    }
    assert_flux_objects_valid(bridge.fake)


def test_crashloop_stalled_and_progressing(bridge: Bridge) -> None:
    crashing = bridge.create("crash", replicas=2, expose=True)
    stuck = bridge.create("stuck")
    slow = bridge.create("slow")
    bridge.flux.reconcile(scenario={crashing: "crashloop", stuck: "stalled", slow: "progressing"})

    release = bridge.release(crashing)
    assert conditions(release)["Ready"]["status"] == "True"
    pods = bridge.pods(crashing)
    assert len(pods) == 2
    for pod in pods:
        app, frpc = pod["status"]["containerStatuses"]
        assert (app["ready"], app["restartCount"]) == (False, 5)
        assert app["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        assert app["lastState"]["terminated"]["exitCode"] == 1
        assert app["lastState"]["terminated"]["reason"] == "Error"
        assert frpc["ready"] is True and pod["status"]["phase"] == "Running"
        ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"
        meta = pod["metadata"]
        [back_off] = [
            e
            for e in bridge.fake.items("v1", "Event", NS)
            if e["involvedObject"]["name"] == meta["name"] and e["reason"] == "BackOff"
        ]
        assert (back_off["type"], back_off["source"]["component"]) == ("Warning", "kubelet")
        assert back_off["message"] == (
            f"Back-off restarting failed container app in pod {meta['name']}_{NS}({meta['uid']})"
        )
    deployment = bridge.fake.get("apps/v1", "Deployment", NS, crashing)
    assert deployment is not None
    assert deployment["status"].get("readyReplicas", 0) == 0
    assert deployment["status"]["unavailableReplicas"] == 2

    release = bridge.release(stuck)
    found = conditions(release)
    assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("False", "InstallFailed")
    assert (found["Stalled"]["status"], found["Stalled"]["reason"]) == ("True", "RetriesExceeded")
    assert release["status"]["installFailures"] == 3
    assert release["status"]["history"][0]["status"] == "failed"
    assert bridge.pods(stuck) == [] and bridge.fake.get("apps/v1", "Deployment", NS, stuck) is None

    release = bridge.release(slow)
    found = conditions(release)
    assert (found["Reconciling"]["status"], found["Reconciling"]["reason"]) == (
        "True",
        "Progressing",
    )
    assert found["Ready"]["status"] == "Unknown"
    assert release["status"]["observedGeneration"] < release["metadata"]["generation"]
    assert assert_flux_objects_valid(bridge.fake) == 3 + 4 + 3

    # the same scenarios again: each sync restarts the crashing container once more
    bridge.flux.reconcile(scenario={crashing: "crashloop", stuck: "stalled", slow: "progressing"})
    for pod in bridge.pods(crashing):
        app = pod["status"]["containerStatuses"][0]
        assert (app["restartCount"], app["lastState"]["terminated"]["reason"]) == (6, "Error")

    # A later successful reconcile heals all three; transition times move only on change.
    before = conditions(bridge.release(crashing))["Ready"]["lastTransitionTime"]
    bridge.flux.reconcile()
    for name in (crashing, stuck, slow):
        release = bridge.release(name)
        assert conditions(release)["Ready"]["status"] == "True", name
        assert set(conditions(release)) == {"Ready", "Released"}
        assert release["status"]["observedGeneration"] == release["metadata"]["generation"]
    assert conditions(bridge.release(crashing))["Ready"]["lastTransitionTime"] == before
    assert all(s["ready"] for p in bridge.pods(crashing) for s in p["status"]["containerStatuses"])
    assert conditions(bridge.release(stuck))["Ready"]["reason"] == "InstallSucceeded"
    with pytest.raises(ValueError, match="unknown scenario"):
        bridge.flux.reconcile(scenario={crashing: "on-fire"})
