"""Kubernetes' own controllers for the stand-in cluster (test code): Deployment controller,
ReplicaSet controller, scheduler and kubelet, as far as gitops-bridge can observe them.

``Workloads(fake).roll(deployment, release=..., health=...)`` brings the pods of one applied
Deployment to its template: one Pod per replica named ``<deployment>-<pod-template-hash>-<5
chars>``, pods of an older template replaced, Deployment status, PodMetrics and a few log
lines per container.
"""

from __future__ import annotations

import copy
import hashlib
import json
from fractions import Fraction
from typing import Any

from gitops_bridge import quantity
from tests.kubefake import FakeKube, now

Obj = dict[str, Any]
POD = ("v1", "Pod")
DEPLOYMENT = ("apps/v1", "Deployment")
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery rand.SafeEncodeString


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


def _pod_health(pod: Obj) -> str | None:
    statuses = (pod.get("status") or {}).get("containerStatuses")
    if not statuses:
        return None
    return "ok" if all(s.get("ready") for s in statuses) else "crashloop"


def _image_id(image: str) -> str:
    if "@sha256:" in image:
        return image
    repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repository}@sha256:{_sha256(image)}"


def _pod_status(pod: Obj, health: str) -> Obj:
    name = pod["metadata"]["name"]
    moment = now()
    containers = pod["spec"]["containers"]
    broken = [containers[0]["name"]] if health == "crashloop" else []
    statuses = []
    for container in containers:
        cname, image = container["name"], container.get("image", "")
        entry: Obj = {
            "name": cname,
            "image": image,
            "imageID": _image_id(image),
            "containerID": f"containerd://{_sha256(name + '/' + cname)}",
            "ready": cname not in broken,
            "started": cname not in broken,
            "restartCount": 5 if cname in broken else 0,
            "state": {"running": {"startedAt": moment}},
            "lastState": {},
        }
        if cname in broken:
            back_off = f"back-off 2m40s restarting failed container={cname} pod={name}"
            entry["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": back_off}}
            entry["lastState"] = {
                "terminated": {
                    "exitCode": 1,
                    "reason": "Error",
                    "startedAt": moment,
                    "finishedAt": moment,
                    "containerID": entry["containerID"],
                }
            }
        statuses.append(entry)
    ready = "False" if broken else "True"
    conditions = []
    for type_ in (
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ):
        condition: Obj = {
            "type": type_,
            "status": ready if type_ in ("Ready", "ContainersReady") else "True",
            "lastProbeTime": None,
            "lastTransitionTime": moment,
        }
        if broken and type_ in ("Ready", "ContainersReady"):
            condition["reason"] = "ContainersNotReady"
            condition["message"] = f"containers with unready status: [{' '.join(broken)}]"
        conditions.append(condition)
    octet = int(_sha256(name)[:4], 16) % 250 + 2
    return {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": "172.18.0.2",
        "hostIPs": [{"ip": "172.18.0.2"}],
        "podIP": f"10.244.1.{octet}",
        "podIPs": [{"ip": f"10.244.1.{octet}"}],
        "startTime": moment,
        "qosClass": _qos(containers),
        "containerStatuses": statuses,
    }


def _qos(containers: list[Obj]) -> str:
    for container in containers:
        resources = container.get("resources") or {}
        if resources.get("requests") != resources.get("limits"):
            return "Burstable"
    return "Guaranteed"


def _usage(container: Obj, health: str) -> dict[str, str]:
    """Plausible metrics-server usage below the limits: nanocores and Ki, as it reports."""
    resources = container.get("resources") or {}
    limits = resources.get("limits") or resources.get("requests") or {}
    cpu = quantity.parse(limits.get("cpu", "100m")).value
    memory = quantity.parse(limits.get("memory", "128Mi")).value
    cpu_share, memory_share = (
        (Fraction(1, 5), Fraction(2, 5))
        if health == "ok"
        else (
            Fraction(1, 100),
            Fraction(1, 20),
        )
    )
    return {
        "cpu": f"{int(cpu * cpu_share * 10**9)}n",
        "memory": f"{int(memory * memory_share / 1024)}Ki",
    }


def _deployment_status(deployment: Obj, replica_set: str, health: str) -> Obj:
    replicas = int(deployment["spec"].get("replicas", 1))
    moment = now()
    status: Obj = {"observedGeneration": deployment["metadata"]["generation"]}
    if replicas:
        status |= {"replicas": replicas, "updatedReplicas": replicas}
    if health == "ok":
        if replicas:
            status |= {"readyReplicas": replicas, "availableReplicas": replicas}
        available = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        progressing = (
            "True",
            "NewReplicaSetAvailable",
            f'ReplicaSet "{replica_set}" has successfully progressed.',
        )
    else:
        status["unavailableReplicas"] = replicas
        available = (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
        progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{replica_set}" is progressing.')
    status["conditions"] = [
        {
            "type": type_,
            "status": state,
            "reason": reason,
            "message": message,
            "lastUpdateTime": moment,
            "lastTransitionTime": moment,
        }
        for type_, (state, reason, message) in (
            ("Available", available),
            ("Progressing", progressing),
        )
    ]
    return status


class Workloads:
    """The Deployment controller and kubelet of the stand-in cluster."""

    def __init__(self, fake: FakeKube) -> None:
        self.fake = fake

    def pods_of(self, deployment: Obj) -> list[Obj]:
        selector = deployment["spec"]["selector"].get("matchLabels") or {}
        namespace = deployment["metadata"]["namespace"]
        return [
            pod
            for pod in self.fake.items(*POD, namespace)
            if selector.items() <= (pod["metadata"].get("labels") or {}).items()
        ]

    def roll(self, deployment: Obj, *, release: str, health: str) -> None:
        namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        replicas = int(deployment["spec"].get("replicas", 1))
        template = deployment["spec"]["template"]
        pod_hash = template_hash(template)
        replica_set = f"{name}-{pod_hash}"
        pods = self.pods_of(deployment)
        current = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == pod_hash]
        keep = current[:replicas]
        for pod in pods:
            if pod not in keep:
                self.fake.delete(*POD, namespace, pod["metadata"]["name"])
        taken = {p["metadata"]["name"] for p in pods}
        attempt = 0
        while len(keep) < replicas:
            attempt += 1
            suffix = _safe_encode(_sha256(f"{replica_set}/{attempt}"))[:5]
            if f"{replica_set}-{suffix}" in taken:
                continue
            keep.append(self._new_pod(deployment, replica_set, pod_hash, suffix))
        for pod in keep:
            was = _pod_health(pod)
            if was != health:
                pod["status"] = _pod_status(pod, health)
                pod = self.fake.apply(pod)
                self._pod_logs(pod, release=release, health=health)
            usage = {c["name"]: _usage(c, health) for c in pod["spec"]["containers"]}
            self.fake.set_metrics(namespace, pod["metadata"]["name"], usage)
        self.fake.set_status(
            *DEPLOYMENT, namespace, name, _deployment_status(deployment, replica_set, health)
        )

    @staticmethod
    def _new_pod(deployment: Obj, replica_set: str, pod_hash: str, suffix: str) -> Obj:
        template = deployment["spec"]["template"]
        meta = template.get("metadata") or {}
        spec = copy.deepcopy(template["spec"])
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec["nodeName"] = "kind-worker"
        pod: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{replica_set}-{suffix}",
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
        }
        if meta.get("annotations"):
            pod["metadata"]["annotations"] = dict(meta["annotations"])
        return pod

    def _pod_logs(self, pod: Obj, *, release: str, health: str) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        for index, container in enumerate(pod["spec"]["containers"]):
            cname = container["name"]
            ports = container.get("ports") or [{"containerPort": 8080}]
            if cname == "frpc":
                run_id = _sha256(name)[:16]
                lines = [
                    "[I] [sub/root.go:149] start frpc service for config file "
                    "[/etc/frpc/frpc.toml]",
                    "[I] [client/service.go:314] try to connect to server...",
                    f"[I] [client/service.go:306] [{run_id}] login to server success, "
                    f"get run id [{run_id}]",
                    f"[I] [proxy/proxy_manager.go:177] [{run_id}] proxy added: [{release}]",
                    f"[I] [client/control.go:172] [{run_id}] [{name}.{release}] start proxy "
                    "success",
                ]
            elif health == "crashloop" and index == 0:
                lines = [
                    f"starting {container.get('image', cname)}",
                    "error: connect to postgres:5432: connection refused",
                    "exit status 1",
                ]
            else:
                lines = [
                    f"starting {container.get('image', cname)}",
                    f"listening on 0.0.0.0:{ports[0]['containerPort']}",
                    "GET / 200 1.2ms",
                ]
            self.fake.set_logs(namespace, name, cname, lines)
