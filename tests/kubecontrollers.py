"""Kubernetes' own controllers for the stand-in cluster (test code): the Deployment controller
and the ReplicaSet controller; the kubelet is ``tests/kubelet.py``.

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

Not modelled: ReplicaSet objects (names and uids only), progressDeadlineSeconds (no time
passes: a stuck rollout stays ``ReplicaSetUpdated``), minReadySeconds other than 0, Normal
events (ScalingReplicaSet, SuccessfulCreate/Delete), revision history, the Recreate strategy,
terminatingReplicas.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from tests import kubelet
from tests.kubefake import ApiError, FakeKube, now

Obj = dict[str, Any]
POD = ("v1", "Pod")
DEPLOYMENT = ("apps/v1", "Deployment")
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


class Workloads:
    """The Deployment and ReplicaSet controllers (and, through ``kubelet``, the node)."""

    def __init__(self, fake: FakeKube) -> None:
        self.fake = fake
        self.kubelet = kubelet.Kubelet(fake)

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
        name = deployment["metadata"]["name"]
        replicas = int(deployment["spec"].get("replicas", 1))
        surge, unavailable = fenceposts(deployment)
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
            if self._reconcile_new(deployment, state, replicas=replicas, surge=surge):
                self._sync_pods(state, release=release, health=health)
                if state.failure:
                    break  # manageReplicas failed: the rollout stops where it is
                continue
            if not self._reconcile_old(state, replicas=replicas, unavailable=unavailable):
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
        """``health`` is the new template's; pods of older templates keep theirs."""
        for pod_hash, pods in state.sets.items():
            for index, pod in enumerate(pods):
                own = health if pod_hash == state.new_hash else kubelet.health_of(pod)
                pods[index] = self.kubelet.sync(pod, release=release, health=own)

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
                try:
                    state.new.append(self.fake.apply(pod))
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
        spec["nodeName"] = kubelet.NODE  # the scheduler's binding, done at once
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
