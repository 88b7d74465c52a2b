"""The stand-in cluster handles PersistentVolumeClaims as Kubernetes does: the API server
validates claims and StorageClasses and enforces resize and quota rules in the real words,
the PV controller binds or provisions (or says why not), the scheduler keeps pods of missing
or unbound claims Pending, a Recreate rollout never runs old and new pods together, and the
Flux stand-in prunes a claim from Git only without ``kustomize.toolkit.fluxcd.io/prune:
disabled`` and never on a failed reconcile."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gitops_bridge.render import yamlio
from tests.fluxstandin import KUSTOMIZATION, FluxStandIn
from tests.kubecontrollers import Workloads, standard_class, template_hash
from tests.kubefake import ApiError, FakeKube

Obj = dict[str, Any]
NS = "shop"
PVC = ("v1", "PersistentVolumeClaim")
PV = ("v1", "PersistentVolume")
SC = ("storage.k8s.io/v1", "StorageClass")
POD = ("v1", "Pod")
EVENT = ("v1", "Event")
DEPLOYMENT = ("apps/v1", "Deployment")
PRUNE_DISABLED = {"kustomize.toolkit.fluxcd.io/prune": "disabled"}
NOT_HELPFUL = "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."


def storage_class(name: str, **fields: Any) -> Obj:
    return {
        "apiVersion": SC[0],
        "kind": SC[1],
        "metadata": {"name": name},
        "provisioner": "csi.example.com",
        **fields,
    }


def claim(name: str = "data", *, size: str = "1Gi", **spec: Any) -> Obj:
    body: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NS},
        "spec": body | spec,
    }


def refused(fake: FakeKube, obj: Obj) -> tuple[int, str]:
    with pytest.raises(ApiError) as error:
        fake.apply(obj)
    return error.value.code, str(error.value.body["message"])


def stored(fake: FakeKube, name: str = "data") -> Obj:
    found = fake.get(*PVC, NS, name)
    assert found is not None, name
    return found


def events(fake: FakeKube, name: str) -> list[tuple[str, str, str]]:
    return [
        (e["type"], e["reason"], e["message"])
        for e in fake.items(*EVENT, NS)
        if e["involvedObject"]["name"] == name
    ]


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        yield server


@pytest.fixture
def workloads(fake: FakeKube) -> Workloads:
    return Workloads(fake)


# ---- the API server ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"accessModes": []},
            "spec.accessModes: Required value: at least 1 access mode is required",
        ),
        (
            {"accessModes": ["ReadWriteSometimes"]},
            'spec.accessModes: Unsupported value: "ReadWriteSometimes": supported values: '
            '"ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"',
        ),
        (
            {"accessModes": ["ReadWriteOncePod", "ReadOnlyMany"]},
            "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes",
        ),
        ({"resources": {"requests": {}}}, "spec.resources[storage]: Required value"),
        (
            {"resources": {"requests": {"storage": "0"}}},
            'spec.resources[storage]: Invalid value: "0": must be greater than zero',
        ),
        (
            {"storageClassName": "Fast_SSD"},
            'spec.storageClassName: Invalid value: "Fast_SSD": a lowercase RFC 1123 subdomain',
        ),
    ],
)
def test_invalid_claims_are_refused(fake: FakeKube, spec: Obj, message: str) -> None:
    code, text = refused(fake, claim(**spec))
    assert code == 422
    assert text.startswith(f'PersistentVolumeClaim "data" is invalid: {message}'), text
    assert fake.get(*PVC, NS, "data") is None


def test_a_claim_over_http_is_shaped_like_the_real_one(fake: FakeKube) -> None:
    fake.apply(storage_class("standard", metadata={"name": "standard", "annotations": {}}))
    url = f"{fake.url}/api/v1/namespaces/{NS}/persistentvolumeclaims"
    body = json.dumps(claim("x", accessModes=["Bogus"])).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=10)
    status = json.loads(error.value.read())
    assert (error.value.code, status["reason"]) == (422, "Invalid")
    assert status["details"]["causes"][0]["field"] == "spec.accessModes"
    request = urllib.request.Request(
        url, json.dumps(claim("x")).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        created = json.loads(response.read())
    assert created["status"] == {"phase": "Pending"}
    assert created["spec"]["volumeMode"] == "Filesystem"
    assert created["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    assert "generation" not in created["metadata"]
    with urllib.request.urlopen(f"{fake.url}/apis/storage.k8s.io/v1", timeout=10) as response:
        served = {r["name"]: r for r in json.loads(response.read())["resources"]}
    assert served["storageclasses"]["namespaced"] is False


def test_storage_classes_are_validated_and_defaulted(fake: FakeKube) -> None:
    created = fake.apply(storage_class("fast") | {"metadata": {"name": "fast", "namespace": NS}})
    assert "namespace" not in created["metadata"]  # cluster-scoped
    assert (created["reclaimPolicy"], created["volumeBindingMode"]) == ("Delete", "Immediate")
    code, text = refused(fake, storage_class("x", provisioner=""))
    assert (code, text) == (
        422,
        'StorageClass.storage.k8s.io "x" is invalid: provisioner: Required value',
    )
    code, text = refused(fake, storage_class("y", volumeBindingMode="Later"))
    assert code == 422 and 'volumeBindingMode: Unsupported value: "Later"' in text
    changed = created | {"provisioner": "other.example.com", "reclaimPolicy": "Retain"}
    code, text = refused(fake, changed)
    assert code == 422
    assert text == (
        'StorageClass.storage.k8s.io "fast" is invalid: [provisioner: Forbidden: updates to '
        "provisioner are forbidden., reclaimPolicy: Forbidden: updates to reclaimPolicy are "
        "forbidden.]"
    )


def test_the_default_class_fills_a_claim_without_one(fake: FakeKube) -> None:
    fake.apply(standard_class())
    assert stored_after(fake, claim("a"))["spec"]["storageClassName"] == "standard"
    assert stored_after(fake, claim("b", storageClassName=""))["spec"]["storageClassName"] == ""


def stored_after(fake: FakeKube, obj: Obj) -> Obj:
    fake.apply(obj)
    return stored(fake, obj["metadata"]["name"])


def test_the_spec_is_immutable_and_only_a_bound_claim_grows(
    fake: FakeKube, workloads: Workloads
) -> None:
    fake.apply(storage_class("fixed"))
    fake.apply(claim(storageClassName="missing"))
    pending = stored(fake)
    pending["spec"]["resources"]["requests"]["storage"] = "2Gi"
    code, text = refused(fake, pending)
    assert code == 422
    assert text.startswith(
        'PersistentVolumeClaim "data" is invalid: spec: Forbidden: spec is immutable after '
        "creation except resources.requests and volumeAttributesClassName for bound claims\n"
    )
    fake.delete(*PVC, NS, "data")
    fake.apply(claim(storageClassName="fixed"))
    workloads.volumes.sync()
    bound = stored(fake)
    assert bound["status"]["phase"] == "Bound"
    bound["spec"]["accessModes"] = ["ReadWriteMany"]
    code, text = refused(fake, bound)
    assert code == 422 and "spec: Forbidden: spec is immutable" in text
    bound = stored(fake)
    bound["spec"]["resources"]["requests"]["storage"] = "2Gi"
    code, text = refused(fake, bound)
    assert (code, text) == (
        403,
        'persistentvolumeclaims "data" is forbidden: only dynamically provisioned pvc can be '
        "resized and the storageclass that provisions the pvc must support resize",
    )
    bound["spec"]["resources"]["requests"]["storage"] = "512Mi"
    code, text = refused(fake, bound)
    assert (code, text) == (
        422,
        'PersistentVolumeClaim "data" is invalid: spec.resources.requests.storage: Forbidden: '
        "field can not be less than status.capacity",
    )


def test_a_grown_claim_gets_its_capacity_where_the_class_allows(
    fake: FakeKube, workloads: Workloads
) -> None:
    fake.apply(storage_class("elastic", allowVolumeExpansion=True))
    fake.apply(claim(storageClassName="elastic"))
    workloads.volumes.sync()
    grown = stored(fake)
    grown["spec"]["resources"]["requests"]["storage"] = "3Gi"
    fake.apply(grown)
    assert stored(fake)["status"]["capacity"] == {"storage": "1Gi"}  # until the resizer ran
    workloads.volumes.sync()
    status = stored(fake)["status"]
    assert status["capacity"] == status["allocatedResources"] == {"storage": "3Gi"}
    volume = fake.get(*PV, None, stored(fake)["spec"]["volumeName"])
    assert volume is not None and volume["spec"]["capacity"] == {"storage": "3Gi"}


def test_the_quota_counts_claims_and_storage(fake: FakeKube, workloads: Workloads) -> None:
    fake.apply(storage_class("elastic", allowVolumeExpansion=True))
    hard = {"requests.storage": "2Gi", "persistentvolumeclaims": "2"}
    fake.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "quota", "namespace": NS},
            "spec": {
                "hard": hard | {"elastic.storageclass.storage.k8s.io/requests.storage": "5Gi"}
            },
        }
    )
    code, text = refused(fake, claim("big", size="3Gi", storageClassName="elastic"))
    assert (code, text) == (
        403,
        'persistentvolumeclaims "big" is forbidden: exceeded quota: quota, requested: '
        "requests.storage=3Gi, used: requests.storage=0, limited: requests.storage=2Gi",
    )
    fake.apply(claim("a", size="1Gi", storageClassName="elastic"))
    fake.apply(claim("b", size="1Gi", storageClassName="elastic"))
    quota = fake.get("v1", "ResourceQuota", NS, "quota")
    assert quota is not None
    assert quota["status"]["used"]["requests.storage"] == "2Gi"
    assert quota["status"]["used"]["persistentvolumeclaims"] == "2"
    code, text = refused(fake, claim("c", size="1", storageClassName="elastic"))
    assert code == 403 and "requested: persistentvolumeclaims=1,requests.storage=1," in text
    workloads.volumes.sync()
    grown = stored(fake, "a")
    grown["spec"]["resources"]["requests"]["storage"] = "1536Mi"
    code, text = refused(fake, grown)
    assert (code, text) == (
        403,
        'persistentvolumeclaims "a" is forbidden: exceeded quota: quota, requested: '
        "requests.storage=512Mi, used: requests.storage=2Gi, limited: requests.storage=2Gi",
    )


# ---- the PV controller and the scheduler --------------------------------------------------


def test_a_claim_of_an_existing_class_is_provisioned_and_bound(
    fake: FakeKube, workloads: Workloads
) -> None:
    fake.apply(storage_class("fast", reclaimPolicy="Retain"))
    fake.apply(claim(storageClassName="fast", accessModes=["ReadWriteOncePod"], size="5Gi"))
    workloads.volumes.sync()
    bound = stored(fake)
    assert bound["status"] == {
        "phase": "Bound",
        "accessModes": ["ReadWriteOncePod"],
        "capacity": {"storage": "5Gi"},
    }
    annotations = bound["metadata"]["annotations"]
    assert annotations["pv.kubernetes.io/bind-completed"] == "yes"
    assert annotations["volume.kubernetes.io/storage-provisioner"] == "csi.example.com"
    volume = fake.get(*PV, None, bound["spec"]["volumeName"])
    assert volume is not None
    assert volume["metadata"]["name"] == f"pvc-{bound['metadata']['uid']}"
    assert volume["spec"]["capacity"] == {"storage": "5Gi"}
    assert volume["spec"]["accessModes"] == ["ReadWriteOncePod"]
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    ref = volume["spec"]["claimRef"]
    assert (ref["namespace"], ref["name"], ref["uid"]) == (NS, "data", bound["metadata"]["uid"])
    assert volume["status"] == {"phase": "Bound"}
    assert [r for _, r, _ in events(fake, "data")] == [
        "ExternalProvisioning",
        "Provisioning",
        "ProvisioningSucceeded",
    ]
    workloads.volumes.sync()  # nothing more to do
    assert stored(fake)["metadata"]["resourceVersion"] == bound["metadata"]["resourceVersion"]


def test_without_a_class_the_claim_stays_pending_and_says_why(
    fake: FakeKube, workloads: Workloads
) -> None:
    fake.apply(claim("ghost", storageClassName="ghost"))
    fake.apply(claim("none", storageClassName=""))
    workloads.volumes.sync()
    assert stored(fake, "ghost")["status"] == {"phase": "Pending"}
    assert stored(fake, "none")["status"] == {"phase": "Pending"}
    assert events(fake, "ghost") == [
        ("Warning", "ProvisioningFailed", 'storageclass.storage.k8s.io "ghost" not found')
    ]
    assert events(fake, "none") == [
        (
            "Normal",
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set",
        )
    ]
    assert fake.items(*PV) == []


def pod_deployment(claims: list[str], *, replicas: int = 1, strategy: Obj | None = None) -> Obj:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": replicas,
            "strategy": strategy
            or {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry:5000/shop/web:1",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                            "volumeMounts": [
                                {"name": f"vol-{c}", "mountPath": f"/{c}"} for c in claims
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": f"vol-{c}", "persistentVolumeClaim": {"claimName": c}}
                        for c in claims
                    ],
                },
            },
        },
    }


def roll(fake: FakeKube, workloads: Workloads, deployment: Obj) -> bool:
    return workloads.roll(fake.apply(deployment), release="web", health="ok")


def scheduled(pod: Obj) -> dict[str, Any]:
    return next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")


def test_a_pod_waits_for_its_claim_with_the_schedulers_words(
    fake: FakeKube, workloads: Workloads
) -> None:
    fake.apply(storage_class("fast"))
    assert not roll(fake, workloads, pod_deployment(["data"]))
    [pod] = fake.items(*POD, NS)
    waiting = pod["metadata"]["uid"]
    assert pod["status"]["phase"] == "Pending" and "nodeName" not in pod["spec"]
    message = f'0/1 nodes are available: persistentvolumeclaim "data" not found. {NOT_HELPFUL}'
    condition = scheduled(pod)
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "False",
        "Unschedulable",
        message,
    )
    assert ("Warning", "FailedScheduling", message) in events(fake, pod["metadata"]["name"])
    deployment = fake.get(*DEPLOYMENT, NS, "web")
    assert deployment is not None and deployment["status"].get("availableReplicas", 0) == 0

    fake.apply(claim(storageClassName="fast"))
    assert roll(fake, workloads, pod_deployment(["data"]))
    [pod] = fake.items(*POD, NS)
    assert pod["metadata"]["uid"] == waiting  # the same pod, bound once its claim was
    assert pod["spec"]["nodeName"] == "kind-worker"
    assert pod["status"]["phase"] == "Running"
    assert scheduled(pod)["status"] == "True"
    assert stored(fake)["status"]["phase"] == "Bound"


def test_an_unbound_immediate_claim_keeps_the_pod_pending(
    fake: FakeKube, workloads: Workloads
) -> None:
    fake.apply(claim(storageClassName="later"))
    assert not roll(fake, workloads, pod_deployment(["data"]))
    [pod] = fake.items(*POD, NS)
    assert scheduled(pod)["message"] == (
        f"0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. {NOT_HELPFUL}"
    )
    fake.apply(storage_class("later"))
    assert roll(fake, workloads, pod_deployment(["data"]))


def test_wait_for_first_consumer_binds_when_a_pod_uses_the_claim(
    fake: FakeKube, workloads: Workloads
) -> None:
    fake.apply(standard_class())
    fake.apply(claim())
    workloads.volumes.sync()
    assert stored(fake)["status"]["phase"] == "Pending"
    assert events(fake, "data") == [
        (
            "Normal",
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding",
        )
    ]
    assert roll(fake, workloads, pod_deployment(["data"]))
    bound = stored(fake)
    assert bound["status"]["phase"] == "Bound"
    assert bound["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == "kind-worker"
    [pod] = fake.items(*POD, NS)
    assert pod["status"]["phase"] == "Running"


def test_a_deleted_claim_waits_for_its_pods_then_takes_its_volume(
    fake: FakeKube, workloads: Workloads
) -> None:
    fake.apply(storage_class("fast"))
    fake.apply(claim(storageClassName="fast"))
    assert roll(fake, workloads, pod_deployment(["data"]))
    volume = stored(fake)["spec"]["volumeName"]
    fake.delete(*PVC, NS, "data", graceful=True)
    workloads.volumes.sync()
    assert stored(fake)["metadata"]["deletionTimestamp"]  # in use: pvc-protection holds it
    for pod in fake.items(*POD, NS):
        fake.delete(*POD, NS, pod["metadata"]["name"])
    workloads.volumes.sync()
    assert fake.get(*PVC, NS, "data") is None
    workloads.volumes.sync()
    assert fake.get(*PV, None, volume) is None  # reclaimPolicy Delete


def test_recreate_never_runs_old_and_new_pods_together(
    fake: FakeKube, workloads: Workloads
) -> None:
    """With room for one pod only, RollingUpdate cannot add its surge pod; Recreate can."""
    fake.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "pods", "namespace": NS},
            "spec": {"hard": {"pods": "1"}},
        }
    )
    fake.apply(storage_class("fast"))
    fake.apply(claim(storageClassName="fast"))
    for strategy, complete in (
        ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, False),
        ({"type": "Recreate"}, True),
    ):
        first = pod_deployment(["data"], strategy=strategy)
        assert roll(fake, workloads, first)
        second = pod_deployment(["data"], strategy=strategy)
        second["spec"]["template"]["metadata"]["annotations"] = {"restartedAt": strategy["type"]}
        assert roll(fake, workloads, second) is complete
        hashes = {p["metadata"]["labels"]["pod-template-hash"] for p in fake.items(*POD, NS)}
        wanted = template_hash(second["spec"]["template"])
        assert hashes == ({wanted} if complete else {template_hash(first["spec"]["template"])})


# ---- Flux: a claim from Git -------------------------------------------------------------------


@dataclass
class Repo:
    path: Path
    fake: FakeKube
    flux: FluxStandIn

    def commit(self, files: dict[str, str | None]) -> None:
        for name, text in files.items():
            target = self.path / name
            if text is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        for args in (["add", "-A"], ["commit", "-q", "-m", "change"]):
            subprocess.run(["git", *args], cwd=self.path, check=True, capture_output=True)

    def ready(self) -> Obj:
        ks = self.fake.get(*KUSTOMIZATION, "flux-system", "apps")
        assert ks is not None
        return next(c for c in ks["status"]["conditions"] if c["type"] == "Ready")


def apps_kustomization() -> str:
    return yamlio.dump(
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": "flux-system"},
            "spec": {
                "interval": "10m",
                "path": "./apps",
                "prune": True,
                "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
                "serviceAccountName": "kustomize-controller",
            },
        }
    )


def config_map(name: str, namespace: str) -> str:
    """Something besides the claims, so that no directory of the repository is empty."""
    meta = {"name": name, "namespace": namespace}
    return yamlio.dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}
    )


def claim_file(name: str, *, keep: bool) -> str:
    doc = claim(name, storageClassName="fast")
    if keep:
        doc["metadata"]["annotations"] = dict(PRUNE_DISABLED)
    return yamlio.dump(doc)


@pytest.fixture
def repo(tmp_path: Path, helm: str, kubectl: str) -> Iterator[Repo]:
    path = tmp_path / "gitops"
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    for key, value in (("user.name", "t"), ("user.email", "t@example.com")):
        subprocess.run(["git", "config", key, value], cwd=path, check=True)
    with FakeKube() as fake:
        for name in ("flux-system", NS):
            fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        fake.apply(storage_class("fast"))
        flux = FluxStandIn(fake, remote=path, helm=helm, kubectl=kubectl, cluster="dev")
        built = Repo(path, fake, flux)
        built.commit(
            {
                "clusters/dev/apps.yaml": apps_kustomization(),
                "clusters/dev/info.yaml": config_map("cluster-info", "flux-system"),
                "apps/settings.yaml": config_map("settings", NS),
                "apps/kept.yaml": claim_file("kept", keep=True),
                "apps/plain.yaml": claim_file("plain", keep=False),
            }
        )
        built.flux.reconcile()
        yield built


def test_claims_from_git_are_bound_after_a_reconcile(repo: Repo) -> None:
    assert repo.ready()["status"] == "True"
    for name in ("kept", "plain"):
        assert stored(repo.fake, name)["status"]["phase"] == "Bound"
    # applied again from Git, as Flux does every interval: what the cluster filled in stays
    repo.commit({"apps/other.yaml": claim_file("other", keep=False)})
    repo.flux.reconcile()
    assert repo.ready()["status"] == "True", repo.ready()
    assert stored(repo.fake, "kept")["spec"]["volumeName"]


def test_prune_spares_only_the_annotated_claim(repo: Repo) -> None:
    kept_volume = stored(repo.fake, "kept")["spec"]["volumeName"]
    plain_volume = stored(repo.fake, "plain")["spec"]["volumeName"]
    repo.commit({"apps/kept.yaml": None, "apps/plain.yaml": None})
    repo.flux.reconcile()
    assert repo.ready()["status"] == "True", repo.ready()
    assert stored(repo.fake, "kept")["status"]["phase"] == "Bound"
    assert repo.fake.get(*PV, None, kept_volume) is not None
    assert repo.fake.get(*PVC, NS, "plain") is None
    assert repo.fake.get(*PV, None, plain_volume) is None


def test_a_failed_reconcile_prunes_nothing(repo: Repo) -> None:
    repo.commit({"apps/plain.yaml": None, "apps/broken.yaml": "kind: [unclosed\n"})
    repo.flux.reconcile()
    ready = repo.ready()
    assert (ready["status"], ready["reason"]) == ("False", "BuildFailed")
    assert stored(repo.fake, "plain")["status"]["phase"] == "Bound"
    # a claim the API server refuses fails the apply: nothing is pruned either
    refused_claim = yamlio.dump(claim("huge", size="0", storageClassName="fast"))
    repo.commit({"apps/broken.yaml": None, "apps/huge.yaml": refused_claim})
    repo.flux.reconcile()
    ready = repo.ready()
    assert (ready["status"], ready["reason"]) == ("False", "ReconciliationFailed")
    assert "must be greater than zero" in ready["message"]
    assert stored(repo.fake, "plain")["status"]["phase"] == "Bound"


def test_deleting_the_kustomization_spares_only_the_annotated_claim(repo: Repo) -> None:
    """kustomize-controller's finalizer garbage-collects a deleted Kustomization's objects
    (deletionPolicy MirrorPrune with prune: true), with the same exclusions as a prune."""
    repo.commit({"clusters/dev/apps.yaml": None})
    repo.flux.reconcile()
    assert repo.fake.get(*KUSTOMIZATION, "flux-system", "apps") is None
    assert stored(repo.fake, "kept")["status"]["phase"] == "Bound"
    assert repo.fake.get(*PVC, NS, "plain") is None


def test_a_claim_back_in_git_while_in_use_and_deleting_stays_deleting(repo: Repo) -> None:
    """A pruned claim a pod still mounts waits (pvc-protection); applying it again from Git
    patches it, as server-side apply does: the delete is not undone."""
    workloads = repo.flux.workloads
    assert roll(repo.fake, workloads, pod_deployment(["plain"]))
    text = (repo.path / "apps/plain.yaml").read_text()
    repo.commit({"apps/plain.yaml": None})
    repo.flux.reconcile()
    assert stored(repo.fake, "plain")["metadata"]["deletionTimestamp"]
    repo.commit({"apps/plain.yaml": text})
    repo.flux.reconcile()
    assert repo.ready()["status"] == "True", repo.ready()
    assert stored(repo.fake, "plain")["metadata"]["deletionTimestamp"]
    for pod in repo.fake.items(*POD, NS):
        repo.fake.delete(*POD, NS, pod["metadata"]["name"])
    workloads.volumes.sync()
    assert repo.fake.get(*PVC, NS, "plain") is None
