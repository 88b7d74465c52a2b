"""Kubernetes' own controllers for the stand-in cluster (test code): the Deployment controller
and the ReplicaSet controller, the storage controllers and the scheduler's volume binding
(``Volumes``, ``Scheduler``, at the end of this file); the kubelet is ``tests/kubelet.py``.

``Workloads(fake).roll(deployment, release=..., health=...)`` does what the controllers and
the kubelet do for one applied Deployment until nothing more can happen without time
passing, and answers whether the rollout is complete. Behaviour and where it comes from
(kubernetes/kubernetes):

- ``pkg/controller/deployment/rolling.go`` ``rolloutRolling``: scale the new ReplicaSet up
  within ``replicas + maxSurge`` (``reconcileNewReplicaSet``, ``deploymentutil.NewRSNewReplicas``),
  then scale old ones down while ``replicas - maxUnavailable`` pods stay available, unhealthy
  old pods first (``reconcileOldReplicaSets``, ``cleanupUnhealthyReplicas``,
  ``scaleDownOldReplicaSetsForRollingUpdate``), oldest ReplicaSet first. ``maxSurge`` /
  ``maxUnavailable`` resolve as ``deploymentutil.ResolveFenceposts`` does (surge rounds up,
  unavailable down, both 0 means unavailable 1; default 25%). With the chart's ``maxSurge: 1,
  maxUnavailable: 0`` pods are replaced one at a time: surge pod of the new template, it
  becomes available, one old pod goes.
- ``pkg/controller/deployment/recreate.go`` ``rolloutRecreate``: with ``strategy.type:
  Recreate`` every old pod is deleted before the new ReplicaSet scales up to ``replicas``
  (no surge); ``MaxUnavailable`` is 0 for it (``deploymentutil.MaxUnavailable``), so
  Available needs every replica.
- Pods that mount PersistentVolumeClaims go through ``Scheduler`` before they are bound to
  the node: a missing, lost, deleting or unbound immediate claim leaves them Pending and
  unbound, and every ``roll`` tries them again. ``roll`` runs ``Volumes.sync()`` (the PV
  controller and a provisioner) first, so claims applied before it are Bound.
- ReplicaSet names ``<deployment>-<pod-template-hash>``, pods ``<replicaset>-<5 chars>``
  (``pkg/controller/controller_utils.go`` ``ComputeHash``, ``k8s.io/apimachinery``
  ``rand.SafeEncodeString``; the hash here is shaped like it, not computed like it).
  Pods are created through ``FakeKube.apply`` (the API server's admission: quota, limits).
- ``pkg/controller/replicaset/replica_set.go`` ``manageReplicas``: creations in
  ``slowStartBatch`` batches (1, 2, 4...), stopping after a batch with a failure; every
  refused creation is a Warning Event ``FailedCreate`` ``Error creating: <API error>`` on the
  ReplicaSet (``controller_utils.go`` ``RealPodControl.CreatePods``, component
  ``replicaset-controller``). Then the rollout stops where it is: old pods keep running.
  Pods to delete rank not-ready before ready, then newest first (``getPodsToDelete``).
- ``pkg/controller/replicaset/replica_set_utils.go`` ``calculateStatus``: a failed
  ``manageReplicas`` sets ``ReplicaFailure`` True ``FailedCreate`` with the error as message
  (the first message kept while failures go on, removed after a pass without one), which the
  Deployment mirrors
  (``pkg/controller/deployment/progress.go`` ``getReplicaFailures``).
- Deployment status (``pkg/controller/deployment/sync.go`` ``calculateStatus``,
  ``progress.go`` ``syncRolloutStatus``): ``replicas`` pods that exist, ``updatedReplicas``
  those of the new template, ``readyReplicas``, ``availableReplicas``, ``unavailableReplicas``
  = ReplicaSet sizes (what the controller asked for, created or not) - available; Available
  ``MinimumReplicasAvailable`` / ``MinimumReplicasUnavailable``; Progressing True
  ``NewReplicaSetAvailable`` once complete, else ``ReplicaSetUpdated``
  (``deploymentutil.SetDeploymentCondition`` keeps lastTransitionTime while status holds).

Choice on terminating pods: a pod scaled down is deleted and its containers exit on SIGTERM
at once, so it is gone before the controller's next step; the next surge pod is therefore
admitted against the pods that remain. On a real cluster a slow container can still be
terminating then, and it still counts against a ResourceQuota (the quota evaluator counts a
pod until its grace period ends): that can refuse the next pod for a moment (a transient
FailedCreate the ReplicaSet controller retries). Pods someone else marked for deletion
(deletionTimestamp) are no longer the controllers' (``controller.FilterActivePods``): not
counted, kept or replaced here, while the fake's quota admission still charges them until
their grace period ends (``pkg/quota/v1/evaluator/core/pods.go`` ``QuotaV1Pod``).

- ``pkg/controller/podautoscaler/horizontal.go`` ``reconcileAutoscaler``, as far as it acts
  without metrics (``Autoscalers``, run by ``roll`` first): a HorizontalPodAutoscaler brings
  its target Deployment's replicas (1 when the Deployment has none: the API server's default)
  below ``minReplicas`` up to it ("Current number of replicas below Spec.MinReplicas") and
  above ``maxReplicas`` down to it, leaves a target at 0 alone ("scaling is disabled since
  the replica count of the target is zero") and records currentReplicas/desiredReplicas.

Not modelled: scaling on metrics (the autoscaler reads no PodMetrics), ReplicaSet objects
(names and uids only), progressDeadlineSeconds (no time
passes: a stuck rollout stays ``ReplicaSetUpdated``), minReadySeconds other than 0, Normal
events (ScalingReplicaSet, SuccessfulCreate/Delete), revision history, terminatingReplicas.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from tests import kubelet
from tests.kubefake import (
    DEFAULT_CLASS_ANNOTATION,
    PVC_PROTECTION,
    ApiError,
    FakeKube,
    claim_capacity,
    claim_class,
    claim_storage,
    now,
)

Obj = dict[str, Any]
POD = ("v1", "Pod")
DEPLOYMENT = ("apps/v1", "Deployment")
HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")
PVC = ("v1", "PersistentVolumeClaim")
PV = ("v1", "PersistentVolume")
STORAGE_CLASS = ("storage.k8s.io/v1", "StorageClass")
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery rand.SafeEncodeString
COMPONENT = "replicaset-controller"
MAX_STEPS = 1000


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _safe_encode(text: str) -> str:
    return "".join(ALPHABET[ord(char) % len(ALPHABET)] for char in text)


def template_hash(template: Obj) -> str:
    """A pod-template-hash shaped like Kubernetes' (SafeEncodeString of a 32-bit hash)."""
    digest = int(_sha256(json.dumps(template, sort_keys=True))[:8], 16)
    return _safe_encode(str(digest))


def _uid(seed: str) -> str:
    hexed = _sha256(seed)
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:32]}"


def _scaled(value: Any, total: int, *, round_up: bool) -> int:
    """``intstr.GetScaledValueFromIntOrPercent``."""
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        return int(text)
    share = int(text[:-1]) * total / 100
    return math.ceil(share) if round_up else math.floor(share)


def fenceposts(deployment: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) of a RollingUpdate Deployment (``ResolveFenceposts``)."""
    spec = deployment["spec"]
    replicas = int(spec.get("replicas", 1))
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    surge = _scaled(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = _scaled(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _created(pod: Obj) -> tuple[str, str]:
    """Creation order (creationTimestamp has 1 s resolution: ties break by name)."""
    meta = pod["metadata"]
    return (str(meta.get("creationTimestamp", "")), str(meta["name"]))


def _delete_order(pods: list[Obj]) -> list[Obj]:
    """``getPodsToDelete`` ranking: not ready first, then the newest."""
    newest_first = sorted(pods, key=_created, reverse=True)
    return sorted(newest_first, key=kubelet.is_ready)


@dataclass
class _Rollout:
    """What one roll saw and did: pods per ReplicaSet, oldest first, the new one last."""

    new_hash: str
    sets: dict[str, list[Obj]]  # pod-template-hash -> pods (creation order)
    new_size: int = 0  # the new ReplicaSet's spec.replicas (asked for, created or not)
    failure: str = ""  # the last refused creation, as the API server said it
    steps: int = 0

    @property
    def new(self) -> list[Obj]:
        return self.sets[self.new_hash]

    @property
    def old(self) -> list[Obj]:
        return [p for h, pods in self.sets.items() if h != self.new_hash for p in pods]

    def all(self) -> list[Obj]:
        return [p for pods in self.sets.values() for p in pods]


class Autoscalers:
    """The HorizontalPodAutoscaler controller without metrics (see the module docstring)."""

    def __init__(self, fake: FakeKube) -> None:
        self.fake = fake

    def of(self, deployment: Obj) -> Obj | None:
        """The autoscaler whose scaleTargetRef is the Deployment, if any."""
        namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        for hpa in self.fake.items(*HPA, namespace):
            ref = hpa["spec"].get("scaleTargetRef") or {}
            if ref.get("kind") == "Deployment" and ref.get("name") == name:
                return hpa
        return None

    def scale(self, deployment: Obj) -> Obj:
        """The Deployment after its autoscaler acted (through the scale subresource: a new
        spec.replicas, the pod template untouched)."""
        hpa = self.of(deployment)
        if hpa is None:
            return deployment
        current = int(deployment["spec"].get("replicas", 1))
        low, high = int(hpa["spec"].get("minReplicas", 1)), int(hpa["spec"]["maxReplicas"])
        desired = 0 if current == 0 else min(max(current, low), high)
        namespace, name = hpa["metadata"]["namespace"], hpa["metadata"]["name"]
        self.fake.set_status(
            *HPA, namespace, name, {"currentReplicas": current, "desiredReplicas": desired}
        )
        if desired == current:
            return deployment
        scaled = copy.deepcopy(deployment)
        scaled["spec"]["replicas"] = desired
        return self.fake.apply(scaled)


class Workloads:
    """The Deployment and ReplicaSet controllers (and, through ``kubelet``, the node), and
    the HorizontalPodAutoscaler's (``Autoscalers``)."""

    def __init__(self, fake: FakeKube) -> None:
        self.fake = fake
        self.autoscalers = Autoscalers(fake)
        self.kubelet = kubelet.Kubelet(fake)
        self.volumes = Volumes(fake)
        self.scheduler = Scheduler(fake, self.volumes)

    def pods_of(self, deployment: Obj) -> list[Obj]:
        selector = deployment["spec"]["selector"].get("matchLabels") or {}
        namespace = deployment["metadata"]["namespace"]
        return [
            pod
            for pod in self.fake.items(*POD, namespace)
            if selector.items() <= (pod["metadata"].get("labels") or {}).items()
        ]

    def environment(self, namespace: str, pod: str, container: str) -> dict[str, str] | None:
        """The environment a container of a pod started with (None: it never started)."""
        return self.kubelet.environment(namespace, pod, container)

    def roll(self, deployment: Obj, *, release: str, health: str) -> bool:
        """Bring the Deployment's pods towards its template as far as they can go now; True
        when the rollout is complete (all replicas updated and available, no old pods)."""
        deployment = self.autoscalers.scale(deployment)
        name = deployment["metadata"]["name"]
        replicas = int(deployment["spec"].get("replicas", 1))
        recreate = (deployment["spec"].get("strategy") or {}).get("type") == "Recreate"
        # MaxUnavailable is 0 for a strategy other than RollingUpdate (deploymentutil).
        surge, unavailable = (0, 0) if recreate else fenceposts(deployment)
        self.volumes.sync()
        new_hash = template_hash(deployment["spec"]["template"])
        state = _Rollout(new_hash=new_hash, sets={new_hash: []})
        for pod in self.pods_of(deployment):
            if pod["metadata"].get("deletionTimestamp"):
                continue  # being deleted by someone else: not the controllers' any more
            pod_hash = pod["metadata"].get("labels", {}).get("pod-template-hash", "")
            state.sets.setdefault(pod_hash, []).append(pod)
        for pods in state.sets.values():
            pods.sort(key=_created)
        old_first = sorted(
            (h for h in state.sets if h != new_hash), key=lambda h: _created(state.sets[h][0])
        )
        state.sets = {h: state.sets[h] for h in [*old_first, new_hash]}
        state.new_size = len(state.new)
        self._sync_pods(state, release=release, health=health)
        while state.steps < MAX_STEPS:
            state.steps += 1
            if recreate and state.old:
                # recreate.go rolloutRecreate: every old pod goes before the new ReplicaSet
                # scales up (they exit at once here, see the module docstring).
                for pod in list(state.old):
                    self._delete(state, pod)
                continue
            if self._reconcile_new(deployment, state, replicas=replicas, surge=surge):
                self._sync_pods(state, release=release, health=health)
                if state.failure:
                    break  # manageReplicas failed: the rollout stops where it is
                continue
            if recreate or not self._reconcile_old(
                state, replicas=replicas, unavailable=unavailable
            ):
                break
        available = sum(1 for p in state.all() if kubelet.is_ready(p))
        complete = not state.old and len(state.new) == replicas and available == replicas
        self.fake.set_status(
            *DEPLOYMENT,
            deployment["metadata"]["namespace"],
            name,
            self._status(
                deployment, state, replicas=replicas, unavailable=unavailable, complete=complete
            ),
        )
        return complete

    # ---- the kubelet, for every pod the controllers own --------------------------------------

    def _sync_pods(self, state: _Rollout, *, release: str, health: str) -> None:
        """``health`` is the new template's; pods of older templates keep theirs. A pod the
        scheduler left unbound is tried again first; the kubelet runs bound pods only."""
        for pod_hash, pods in state.sets.items():
            for index, pod in enumerate(pods):
                if not pod["spec"].get("nodeName"):
                    pod = self._schedule(pod)
                    if not pod["spec"].get("nodeName"):
                        pods[index] = pod
                        continue
                own = health if pod_hash == state.new_hash else kubelet.health_of(pod)
                pods[index] = self.kubelet.sync(pod, release=release, health=own)

    def _schedule(self, pod: Obj) -> Obj:
        """One scheduling cycle for an unbound pod: bound to the node, or rejected."""
        message = self.scheduler.schedulable(pod)
        if message is not None:
            return self.scheduler.reject(pod, message)
        bound = copy.deepcopy(pod)
        bound["spec"]["nodeName"] = kubelet.NODE  # the binding subresource
        return self.fake.apply(bound)

    # ---- Deployment controller: rolling.go ---------------------------------------------------

    def _reconcile_new(
        self, deployment: Obj, state: _Rollout, *, replicas: int, surge: int
    ) -> bool:
        """Scale the new ReplicaSet; True when it changed (or a creation was refused)."""
        new = state.new
        if len(new) > replicas:
            for pod in _delete_order(new)[: len(new) - replicas]:
                self._delete(state, pod)
            state.new_size = replicas
            return True
        if len(new) == replicas:
            return False
        current = len(state.all())
        room = replicas + surge - current
        if room <= 0:
            return False
        wanted = min(room, replicas - len(new))
        state.new_size = len(new) + wanted
        self._create(deployment, state, wanted)
        return True

    def _reconcile_old(self, state: _Rollout, *, replicas: int, unavailable: int) -> bool:
        """Scale old ReplicaSets down as far as availability allows; True when any pod went."""
        old = state.old
        if not old:
            return False
        min_available = replicas - unavailable
        new_unavailable = state.new_size - sum(1 for p in state.new if kubelet.is_ready(p))
        room = len(old) + state.new_size - min_available - new_unavailable
        if room <= 0:
            return False
        removed = 0
        for pod_hash in [h for h in state.sets if h != state.new_hash]:  # oldest first
            for pod in _delete_order(state.sets[pod_hash]):
                if removed >= room:
                    break
                if not kubelet.is_ready(pod):
                    self._delete(state, pod)
                    removed += 1
        available = sum(1 for p in state.all() if kubelet.is_ready(p))
        budget = available - min_available
        for pod_hash in [h for h in state.sets if h != state.new_hash]:
            for pod in _delete_order(state.sets[pod_hash]):
                if budget <= 0:
                    break
                self._delete(state, pod)
                removed += 1
                budget -= 1
        return removed > 0

    # ---- ReplicaSet controller: replica_set.go -------------------------------------------------

    def _create(self, deployment: Obj, state: _Rollout, count: int) -> None:
        replica_set = f"{deployment['metadata']['name']}-{state.new_hash}"
        taken = {
            p["metadata"]["name"]
            for p in self.fake.items(*POD, deployment["metadata"]["namespace"])
        }
        batch, left, attempt = 1, count, 0
        while left > 0:
            size = min(batch, left)
            failed = False
            for _ in range(size):
                name = ""
                while not name or name in taken:
                    attempt += 1
                    name = f"{replica_set}-{_safe_encode(_sha256(f'{replica_set}/{attempt}'))[:5]}"
                taken.add(name)
                pod = self._new_pod(deployment, replica_set, state.new_hash, name)
                message = self.scheduler.schedulable(pod) if claims_of(pod) else None
                if message is not None:
                    del pod["spec"]["nodeName"]  # left for the scheduler's next cycle
                try:
                    stored = self.fake.apply(pod)
                    if message is not None:
                        stored = self.scheduler.reject(stored, message)
                    state.new.append(stored)
                except ApiError as exc:
                    failed = True
                    state.failure = str(exc.body.get("message") or exc)
                    kubelet.record_event(
                        self.fake,
                        involved={
                            "kind": "ReplicaSet",
                            "apiVersion": "apps/v1",
                            "namespace": deployment["metadata"]["namespace"],
                            "name": replica_set,
                            "uid": _uid(replica_set),
                        },
                        type_="Warning",
                        reason="FailedCreate",
                        message=f"Error creating: {state.failure}",
                        component=COMPONENT,
                    )
            left -= size
            if failed:
                return
            batch *= 2

    def _delete(self, state: _Rollout, pod: Obj) -> None:
        """Scale down: the pod is deleted; its containers exit on SIGTERM, so it is gone."""
        self.fake.delete(*POD, pod["metadata"]["namespace"], pod["metadata"]["name"])
        for pods in state.sets.values():
            if pod in pods:
                pods.remove(pod)

    @staticmethod
    def _new_pod(deployment: Obj, replica_set: str, pod_hash: str, name: str) -> Obj:
        """``GetPodFromTemplate`` plus what the API server defaults; bound to the node."""
        template = deployment["spec"]["template"]
        meta = template.get("metadata") or {}
        spec = copy.deepcopy(template["spec"])
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("enableServiceLinks", True)
        spec["nodeName"] = kubelet.NODE  # the scheduler's binding, done at once (see Scheduler)
        pod: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "generateName": f"{replica_set}-",
                "namespace": deployment["metadata"]["namespace"],
                "labels": {**(meta.get("labels") or {}), "pod-template-hash": pod_hash},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": replica_set,
                        "uid": _uid(replica_set),
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": spec,
            "status": {"phase": "Pending"},
        }
        if meta.get("annotations"):
            pod["metadata"]["annotations"] = dict(meta["annotations"])
        return pod

    # ---- Deployment status: sync.go calculateStatus, progress.go ---------------------------------

    @staticmethod
    def _status(
        deployment: Obj, state: _Rollout, *, replicas: int, unavailable: int, complete: bool
    ) -> Obj:
        name = deployment["metadata"]["name"]
        replica_set = f"{name}-{state.new_hash}"
        pods = state.all()
        ready = sum(1 for p in pods if kubelet.is_ready(p))
        sizes = len(state.old) + state.new_size
        counts = {
            "replicas": len(pods),
            "updatedReplicas": len(state.new),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(sizes - ready, 0),
        }
        status: Obj = {"observedGeneration": deployment["metadata"]["generation"]}
        status |= {k: v for k, v in counts.items() if v}  # omitempty
        previous = {c["type"]: c for c in (deployment.get("status") or {}).get("conditions") or []}
        wanted = [
            (
                "Available",
                ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
                if ready >= replicas - unavailable
                else (
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                ),
            ),
            (
                "Progressing",
                (
                    "True",
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{replica_set}" has successfully progressed.',
                )
                if complete
                else ("True", "ReplicaSetUpdated", f'ReplicaSet "{replica_set}" is progressing.'),
            ),
        ]
        failure = previous.get("ReplicaFailure")
        if state.failure and failure is None:
            wanted.append(("ReplicaFailure", ("True", "FailedCreate", state.failure)))
        elif state.failure and failure is not None:
            wanted.append(
                ("ReplicaFailure", (failure["status"], failure["reason"], failure["message"]))
            )
        moment = now()
        conditions = []
        for type_, (value, reason, message) in wanted:
            before = previous.get(type_)
            if before and (before["status"], before.get("reason"), before.get("message")) == (
                value,
                reason,
                message,
            ):
                conditions.append(before)
                continue
            kept = before["lastTransitionTime"] if before and before["status"] == value else moment
            conditions.append(
                {
                    "type": type_,
                    "status": value,
                    "lastUpdateTime": moment,
                    "lastTransitionTime": kept,
                    "reason": reason,
                    "message": message,
                }
            )
        status["conditions"] = conditions
        return status


# ---- storage: the PV controller, a provisioner/resizer, pvc-protection, the scheduler's ----
# ---- volume binding ------------------------------------------------------------------------

BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
PV_CONTROLLER = "persistentvolume-controller"
SCHEDULER = "default-scheduler"
# Annotations controllers set on a claim: kept when Flux re-applies the claim from Git
# (server-side apply leaves fields it never set alone).
CONTROLLER_ANNOTATIONS = frozenset(
    {BOUND_BY_CONTROLLER, BIND_COMPLETED, STORAGE_PROVISIONER, BETA_STORAGE_PROVISIONER}
    | {SELECTED_NODE}
)


def standard_class() -> Obj:
    """kind's default StorageClass "standard" (kubernetes-sigs/kind
    pkg/build/nodeimage/const_storage.go): rancher.io/local-path, WaitForFirstConsumer,
    reclaimPolicy Delete, no volume expansion."""
    return {
        "apiVersion": STORAGE_CLASS[0],
        "kind": STORAGE_CLASS[1],
        "metadata": {
            "name": "standard",
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"},
        },
        "provisioner": "rancher.io/local-path",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }


def claims_of(pod: Obj) -> list[str]:
    """The claim names a pod's volumes use, in the order of spec.volumes."""
    volumes = (pod.get("spec") or {}).get("volumes") or []
    return [
        str(v["persistentVolumeClaim"]["claimName"])
        for v in volumes
        if isinstance(v, dict) and isinstance(v.get("persistentVolumeClaim"), dict)
    ]


def _terminated(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def unschedulable_message(reason: str) -> str:
    """The PodScheduled condition's message for a PreFilter rejection on the one node:
    pkg/scheduler/framework/types.go FitError.Error ("0/%v nodes are available" and " %v."
    per message) with the PostFilter message of DefaultPreemption, which has nothing to
    evict for a rejection that preemption cannot resolve (pkg/scheduler/framework/
    preemption/preemption.go). Clusters whose DynamicResources plugin runs a PostFilter add
    its own words before "preemption:"; not modelled."""
    return (
        f"0/1 nodes are available: {reason}. preemption: 0/1 nodes are available: "
        "1 Preemption is not helpful for scheduling."
    )


class Volumes:
    """The storage controllers of the stand-in cluster, one ``sync()`` pass each:

    - pvc-protection (pkg/controller/volume/pvcprotection/pvc_protection_controller.go): a
      claim being deleted loses its ``kubernetes.io/pvc-protection`` finalizer once no pod
      that has not terminated uses it.
    - The PV controller (pkg/controller/volume/persistentvolume/pv_controller.go,
      ``syncUnboundClaim``, ``syncVolume``) with an external provisioner for every class:
      a claim without a class stays Pending (Normal ``FailedBinding`` "no persistent volumes
      available for this claim and no storage class is set"); a class that does not exist
      is Warning ``ProvisioningFailed`` ``storageclass.storage.k8s.io "<x>" not found``
      (``provisionClaim``/``findProvisionablePlugin``); a WaitForFirstConsumer class waits
      for the scheduler's ``volume.kubernetes.io/selected-node`` (Normal
      ``WaitForFirstConsumer`` "waiting for first consumer to be created before binding",
      ``WaitForPodScheduled`` "waiting for pod <p> to be scheduled" while an unscheduled pod
      uses it: ``emitEventForUnboundDelayBindingClaim``). Otherwise the claim gets the
      ``volume.kubernetes.io/storage-provisioner`` annotations and Normal
      ``ExternalProvisioning`` (``provisionClaimOperationExternal``), and the provisioner
      (kubernetes-sigs/sig-storage-lib-external-provisioner controller.go: Normal
      ``Provisioning`` / ``ProvisioningSucceeded``, event source the provisioner's name)
      creates PersistentVolume ``pvc-<claim uid>``: the request as capacity, the claim's
      access modes and volume mode, ``claimRef``, the class's reclaim policy (default
      Delete), ``pv.kubernetes.io/provisioned-by``, a CSI source (kubernetes-csi/
      external-provisioner pkg/controller/controller.go). ``bind`` then makes both Bound:
      the volume's status.phase, the claim's ``spec.volumeName``, annotations
      ``pv.kubernetes.io/bind-completed`` and ``bound-by-controller``, status.phase,
      accessModes and capacity.
    - Expansion (kubernetes-csi/external-resizer pkg/controller/controller.go): a Bound
      claim whose request exceeds its capacity (the API server let it grow only for a class
      with allowVolumeExpansion) gets it: the volume's spec.capacity, the claim's
      status.capacity and status.allocatedResources.
    - Reclaim (``syncVolume``, ``reclaimVolume``): a volume whose claim is gone is Released;
      with reclaimPolicy Delete (dynamically provisioned volumes take the class's, Delete by
      default) it is deleted.

    Not modelled: static PersistentVolumes matched to claims (``findBestMatchForClaim``),
    selectors, data sources, volume attributes classes, provisioning failures other than a
    missing class, the resizer's events and conditions, pv-protection, Recycle.
    """

    def __init__(self, fake: FakeKube) -> None:
        self.fake = fake

    def sync(self) -> None:
        for claim in self.fake.items(*PVC):
            self._sync_claim(claim)
        for volume in self.fake.items(*PV):
            self._sync_volume(volume)

    # ---- claims ------------------------------------------------------------------------------

    def _users(self, claim: Obj) -> list[Obj]:
        namespace, name = claim["metadata"]["namespace"], claim["metadata"]["name"]
        return [
            pod
            for pod in self.fake.items(*POD, namespace)
            if name in claims_of(pod) and not _terminated(pod)
        ]

    def _event(self, claim: Obj, type_: str, reason: str, message: str, component: str) -> None:
        kubelet.record_event(
            self.fake,
            involved=claim,
            type_=type_,
            reason=reason,
            message=message,
            component=component,
        )

    def _sync_claim(self, claim: Obj) -> None:
        meta = claim["metadata"]
        if meta.get("deletionTimestamp"):
            finalizers = list(meta.get("finalizers") or [])
            if PVC_PROTECTION in finalizers and not self._users(claim):
                claim = copy.deepcopy(claim)
                claim["metadata"]["finalizers"] = [f for f in finalizers if f != PVC_PROTECTION]
                self.fake.apply(claim)
            return
        if claim["spec"].get("volumeName"):
            self._resize(claim)
            return
        class_name = claim_class(claim)
        if not class_name:
            self._event(
                claim,
                "Normal",
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
                PV_CONTROLLER,
            )
            return
        found = self.fake.get(*STORAGE_CLASS, None, class_name)
        if found is None:
            self._event(
                claim,
                "Warning",
                "ProvisioningFailed",
                f'storageclass.storage.k8s.io "{class_name}" not found',
                PV_CONTROLLER,
            )
            return
        delayed = found.get("volumeBindingMode") == "WaitForFirstConsumer"
        if delayed and SELECTED_NODE not in (meta.get("annotations") or {}):
            waiting = [
                p["metadata"]["name"]
                for p in self._users(claim)
                if not (p.get("spec") or {}).get("nodeName")
            ]
            if not waiting:
                reason, message = (
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                )
            else:
                reason = "WaitForPodScheduled"
                plural = "pods" if len(waiting) > 1 else "pod"
                message = f"waiting for {plural} {','.join(waiting)} to be scheduled"
            self._event(claim, "Normal", reason, message, PV_CONTROLLER)
            return
        self._provision(claim, found)

    def _provision(self, claim: Obj, storage_class: Obj) -> None:
        provisioner = str(storage_class["provisioner"])
        claim = copy.deepcopy(claim)
        annotations = claim["metadata"].setdefault("annotations", {})
        if annotations.get(STORAGE_PROVISIONER) != provisioner:
            annotations[STORAGE_PROVISIONER] = provisioner
            annotations[BETA_STORAGE_PROVISIONER] = provisioner
            claim = self.fake.apply(claim)
        self._event(
            claim,
            "Normal",
            "ExternalProvisioning",
            f"Waiting for a volume to be created either by the external provisioner "
            f"'{provisioner}' or manually by the system administrator. If volume creation is "
            "delayed, please verify that the provisioner is running and correctly registered.",
            PV_CONTROLLER,
        )
        meta = claim["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        self._event(
            claim,
            "Normal",
            "Provisioning",
            f'External provisioner is provisioning volume for claim "{key}"',
            provisioner,
        )
        name = f"pvc-{meta['uid']}"
        storage = claim_storage(claim)
        assert storage is not None  # the API server requires it
        volume = self.fake.get(*PV, None, name) or self.fake.apply(
            {
                "apiVersion": PV[0],
                "kind": PV[1],
                "metadata": {"name": name, "annotations": {PROVISIONED_BY: provisioner}},
                "spec": {
                    "accessModes": list(claim["spec"]["accessModes"]),
                    "capacity": {"storage": str(storage)},
                    "claimRef": {
                        "kind": "PersistentVolumeClaim",
                        "namespace": meta["namespace"],
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "apiVersion": "v1",
                        "resourceVersion": meta["resourceVersion"],
                    },
                    "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy", "Delete"),
                    "storageClassName": claim_class(claim),
                    "volumeMode": claim["spec"].get("volumeMode", "Filesystem"),
                    "csi": {"driver": provisioner, "volumeHandle": name},
                },
            }
        )
        self._event(
            claim,
            "Normal",
            "ProvisioningSucceeded",
            f"Successfully provisioned volume {name}",
            provisioner,
        )
        self._bind(volume, claim)

    def _bind(self, volume: Obj, claim: Obj) -> None:
        """``bind``: the volume Bound, then the claim (volumeName, annotations, status)."""
        self.fake.set_status(*PV, None, volume["metadata"]["name"], {"phase": "Bound"})
        claim = copy.deepcopy(claim)
        claim["spec"]["volumeName"] = volume["metadata"]["name"]
        annotations = claim["metadata"].setdefault("annotations", {})
        annotations |= {BIND_COMPLETED: "yes", BOUND_BY_CONTROLLER: "yes"}
        stored = self.fake.apply(claim)
        self.fake.set_status(
            *PVC,
            stored["metadata"]["namespace"],
            stored["metadata"]["name"],
            {
                "phase": "Bound",
                "accessModes": list(volume["spec"]["accessModes"]),
                "capacity": dict(volume["spec"]["capacity"]),
            },
        )

    def _resize(self, claim: Obj) -> None:
        requested, capacity = claim_storage(claim), claim_capacity(claim)
        if requested is None or capacity is None or requested.value <= capacity.value:
            return
        volume = self.fake.get(*PV, None, claim["spec"]["volumeName"])
        if volume is None:
            return
        size = str(requested)
        volume["spec"]["capacity"] = {"storage": size}
        self.fake.apply(volume)
        status = copy.deepcopy(claim.get("status") or {})
        status["capacity"] = {"storage": size}
        status["allocatedResources"] = {"storage": size}
        meta = claim["metadata"]
        self.fake.set_status(*PVC, meta["namespace"], meta["name"], status)

    # ---- volumes -----------------------------------------------------------------------------

    def _sync_volume(self, volume: Obj) -> None:
        ref = volume["spec"].get("claimRef")
        if not ref:
            return
        claim = self.fake.get(*PVC, ref["namespace"], ref["name"])
        if claim is not None and claim["metadata"]["uid"] == ref.get("uid"):
            return
        name = volume["metadata"]["name"]
        if volume["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
            self.fake.delete(*PV, None, name)
        elif (volume.get("status") or {}).get("phase") != "Released":
            self.fake.set_status(*PV, None, name, {"phase": "Released"})


class Scheduler:
    """kube-scheduler for the one node, as far as volumes decide it: the VolumeBinding
    plugin (pkg/scheduler/framework/plugins/volumebinding/volume_binding.go). PreFilter
    (``podHasPVCs``, in the order of spec.volumes): ``persistentvolumeclaim "x" not found``
    (the lister's NotFound), ``persistentvolumeclaim "x" bound to non-existent
    persistentvolume "y"`` (phase Lost), ``persistentvolumeclaim "x" is being deleted``;
    then "pod has unbound immediate PersistentVolumeClaims" for an unbound claim whose class
    is not WaitForFirstConsumer (a missing class counts as immediate:
    storagehelpers.IsDelayBindingMode). A rejected pod stays Pending and unbound with
    PodScheduled False ``Unschedulable`` and a Warning ``FailedScheduling`` event
    (pkg/scheduler/schedule_one.go ``handleSchedulingFailure``). Claims of
    WaitForFirstConsumer classes get ``volume.kubernetes.io/selected-node`` (Reserve,
    ``AssumePodVolumes``) and the PV controller provisions them before the pod is bound
    (PreBind waits for that). Pods without claims bind at once, as before. Not modelled:
    VolumeRestrictions (ReadWriteOncePod conflicts), node affinity of volumes, capacity."""

    def __init__(self, fake: FakeKube, volumes: Volumes) -> None:
        self.fake = fake
        self.volumes = volumes

    def problem(self, pod: Obj) -> str | None:
        """Why VolumeBinding's PreFilter rejects the pod now (None: it passes)."""
        namespace = pod["metadata"]["namespace"]
        unbound_immediate = False
        for name in claims_of(pod):
            claim = self.fake.get(*PVC, namespace, name)
            if claim is None:
                return f'persistentvolumeclaim "{name}" not found'
            if (claim.get("status") or {}).get("phase") == "Lost":
                volume = claim["spec"].get("volumeName", "")
                return (
                    f'persistentvolumeclaim "{name}" bound to non-existent persistentvolume '
                    f'"{volume}"'
                )
            if claim["metadata"].get("deletionTimestamp"):
                return f'persistentvolumeclaim "{name}" is being deleted'
            if self._bound(claim):
                continue
            found = self.fake.get(*STORAGE_CLASS, None, claim_class(claim))
            if found is None or found.get("volumeBindingMode") != "WaitForFirstConsumer":
                unbound_immediate = True
        return "pod has unbound immediate PersistentVolumeClaims" if unbound_immediate else None

    @staticmethod
    def _bound(claim: Obj) -> bool:
        """``isPVCFullyBound``: spec.volumeName and the bind-completed annotation."""
        annotations = claim["metadata"].get("annotations") or {}
        return bool(claim["spec"].get("volumeName")) and BIND_COMPLETED in annotations

    def schedulable(self, pod: Obj) -> str | None:
        """Run the volume part of a scheduling cycle: None when the pod can be bound to the
        node now (its delayed claims selected for the node and provisioned), else the
        PodScheduled message."""
        reason = self.problem(pod)
        if reason is not None:
            return unschedulable_message(reason)
        namespace = pod["metadata"]["namespace"]
        for name in claims_of(pod):
            claim = self.fake.get(*PVC, namespace, name)
            if claim is None or self._bound(claim):
                continue
            annotations = claim["metadata"].setdefault("annotations", {})
            if annotations.get(SELECTED_NODE) != kubelet.NODE:
                annotations[SELECTED_NODE] = kubelet.NODE
                self.fake.apply(claim)
        self.volumes.sync()
        reason = self.problem(pod)
        return None if reason is None else unschedulable_message(reason)

    def reject(self, pod: Obj, message: str) -> Obj:
        """The failed cycle written back: PodScheduled False, the Warning event."""
        status = copy.deepcopy(pod.get("status") or {})
        previous = {c["type"]: c for c in status.get("conditions") or []}.get("PodScheduled")
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "lastProbeTime": None,
            "lastTransitionTime": previous["lastTransitionTime"]
            if previous and previous["status"] == "False"
            else now(),
            "reason": "Unschedulable",
            "message": message,
        }
        status["phase"] = "Pending"
        status["conditions"] = [condition]
        meta = pod["metadata"]
        stored = pod
        if pod.get("status") != status:
            stored = self.fake.set_status(*POD, meta["namespace"], meta["name"], status)
        kubelet.record_event(
            self.fake,
            involved=pod,
            type_="Warning",
            reason="FailedScheduling",
            message=message,
            component=SCHEDULER,
        )
        return stored
