"""Objects shaped as a real API server returns them (test code): a Pod, a Deployment and a
HelmRelease of the bridge's chart and a volume's PersistentVolumeClaim, with everything a
cluster adds, managedFields included.

Shapes follow the Kubernetes API reference (Pod v1, Deployment apps/v1, PodMetrics
metrics.k8s.io/v1beta1: https://kubernetes.io/docs/reference/kubernetes-api/) and Flux's
HelmRelease v2 (helm-controller ``api/v2/helmrelease_types.go``): the fields the API server
defaults (``terminationMessagePath``, ``dnsPolicy``, the service account token volume,
tolerations...), what the kubelet, the Deployment controller and helm-controller write into
status, and the managedFields (FieldsV1) of each writer, derived from the fields it owns.
As compact JSON a pod is ~4.8 KB, a HelmRelease ~3.3 KB. The objects of one deployment
share their read-only parts (the API server hands every client its own copy; nothing here
changes them), so a benchmark can hold 50,000 pods.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from gitops_bridge.render import layout, volume

Obj = dict[str, Any]
T0 = "2026-11-26T10:00:00Z"
T1 = "2026-11-26T10:00:07Z"
CHART = "generic-app"
FRPC_IMAGE = "registry:5000/platform/frpc:0.61.1"
# what the API server adds to every pod: the service account token volume (ServiceAccount
# admission) and the not-ready/unreachable tolerations (DefaultTolerationSeconds admission)
VOLUMES = [
    {
        "name": "kube-api-access",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
            ],
            "defaultMode": 420,
        },
    }
]
TOLERATIONS = [
    {
        "key": f"node.kubernetes.io/{taint}",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    }
    for taint in ("not-ready", "unreachable")
]
_CONTROLLER_OWNED: dict[tuple[str, int], Obj] = {}  # the pods of one ReplicaSet share theirs


def _hex(seed: str, length: int = 64) -> str:
    digest = hashlib.sha256(seed.encode()).hexdigest()
    return (digest * (length // 64 + 1))[:length]


def _uid(seed: str) -> str:
    h = _hex(seed, 32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def fields_v1(
    value: Any, *, keyed: tuple[str, ...] = ("name", "type", "ip"), depth: int = 0
) -> Obj:
    """The FieldsV1 set (managedFields[].fieldsV1) a writer of ``value`` owns: ``f:<field>``
    per map key, ``k:{"<key>":...}`` per item of a list keyed by one of ``keyed`` (the
    merge keys of the lists here), ``"."`` for a nested map or an item itself."""
    if isinstance(value, dict):
        owned: Obj = {".": {}} if value and depth > 1 else {}
        for key, inner in value.items():
            owned[f"f:{key}"] = fields_v1(inner, keyed=keyed, depth=depth + 1)
        return owned
    if isinstance(value, list) and value and isinstance(value[0], dict):
        owned = {}
        for item in value:
            key = next((k for k in keyed if k in item), None)
            if key is None:
                return {}  # an atomic list: owned as a whole
            member = json.dumps({key: item[key]}, separators=(",", ":"))
            owned[f"k:{member}"] = fields_v1(item, keyed=keyed, depth=2)
        return owned
    return {}


def _managed(manager: str, operation: str, api_version: str, owned: Obj, **extra: str) -> Obj:
    entry: Obj = {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": T1,
        "fieldsType": "FieldsV1",
        "fieldsV1": {k: v for k, v in owned.items() if k != "."},
    }
    entry.update(extra)
    return entry


def labels(*, deployment_id: str, app: str, group: str, name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/name": CHART,
        layout.LABEL_ID: deployment_id,
        layout.LABEL_APP: app,
        layout.LABEL_GROUP: group,
    }


def _container(name: str, image: str, port: int, env: list[Obj], cpu: str, memory: str) -> Obj:
    probe = {
        "httpGet": {"path": "/", "port": "http", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    return {
        "name": name,
        "image": image,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": env,
        "resources": {
            "limits": {"cpu": cpu, "memory": memory},
            "requests": {"cpu": cpu, "memory": memory},
        },
        "readinessProbe": probe,
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def pod_template(
    *, deployment_id: str, app: str, group: str, name: str, expose: bool = False
) -> Obj:
    """The pod template of the chart's Deployment (the frpc sidecar when exposed), with the
    API server's defaults."""
    env = [
        {"name": "PORT", "value": "8080"},
        {"name": "GREETING", "value": f"hello from {app}"},
    ]
    image = f"registry:5000/{group}/{app}:1.4.2"
    containers = [_container("app", image, 8080, env, "250m", "256Mi")]
    if expose:
        frpc_env = [{"name": "FRP_SUBDOMAIN", "value": name}]
        containers.append(_container("frpc", FRPC_IMAGE, 7400, frpc_env, "10m", "32Mi"))
    return {
        "metadata": {
            "labels": labels(deployment_id=deployment_id, app=app, group=group, name=name)
        },
        "spec": {
            "containers": containers,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "securityContext": {},
            "schedulerName": "default-scheduler",
        },
    }


def _status_entries(names: tuple[str, ...], *, state: str, image: str, seed: str) -> list[Obj]:
    entries = []
    for cname in names:
        ready = state == "running" or cname != "app"
        running = {"running": {"startedAt": T1}}
        entry: Obj = {
            "name": cname,
            "state": running,
            "lastState": {},
            "ready": ready,
            "restartCount": 0,
            "image": image if cname == "app" else FRPC_IMAGE,
            "imageID": f"{image}@sha256:{_hex(image)}",
            "containerID": f"containerd://{_hex(seed + cname)}",
            "started": ready,
        }
        if not ready and state == "crashloop":
            entry["state"] = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off 5m0s restarting failed container={cname}",
                }
            }
            entry["lastState"] = {
                "terminated": {
                    "exitCode": 1,
                    "reason": "Error",
                    "startedAt": T0,
                    "finishedAt": T1,
                    "containerID": entry["containerID"],
                }
            }
            entry["restartCount"] = 7
        entries.append(entry)
    return entries


def _conditions(kinds: tuple[str, ...], *, ready: bool) -> list[Obj]:
    found = []
    for kind in kinds:
        ok = ready or kind in ("PodReadyToStartContainers", "Initialized", "PodScheduled")
        item: Obj = {
            "type": kind,
            "status": "True" if ok else "False",
            "lastProbeTime": None,
            "lastTransitionTime": T1,
        }
        if not ok:
            item["reason"] = "ContainersNotReady"
            item["message"] = "containers with unready status: [app]"
        found.append(item)
    return found


def pod(
    *,
    namespace: str,
    deployment: str,
    deployment_id: str,
    app: str,
    group: str,
    index: int,
    template: Obj | None = None,
    state: str = "running",
) -> Obj:
    """A pod of the chart's Deployment as ``GET /api/v1/namespaces/NS/pods/NAME`` returns it
    (``state``: running | crashloop); ``template``: the Deployment's, shared."""
    template = template or pod_template(
        deployment_id=deployment_id, app=app, group=group, name=deployment
    )
    replicaset = f"{deployment}-{_hex(deployment, 10)}"
    name = f"{replicaset}-{_hex(f'{deployment}/{index}', 5)}"
    pod_ip = f"10.244.{index % 250}.{(index // 250) % 250 + 2}"
    pod_labels = dict(template["metadata"]["labels"], **{"pod-template-hash": replicaset[-10:]})
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": replicaset,
        "uid": _uid(replicaset),
        "controller": True,
        "blockOwnerDeletion": True,
    }
    spec = dict(
        template["spec"],
        volumes=VOLUMES,
        serviceAccountName="default",
        serviceAccount="default",
        nodeName=f"worker-{index % 40}",
        tolerations=TOLERATIONS,
        priority=0,
        enableServiceLinks=True,
        preemptionPolicy="PreemptLowerPriority",
    )
    kinds = ("Initialized", "Ready", "ContainersReady", "PodScheduled")
    status = {
        "phase": "Running",
        "conditions": _conditions(kinds, ready=state == "running"),
        "hostIP": f"172.18.0.{index % 40 + 2}",
        "hostIPs": [{"ip": f"172.18.0.{index % 40 + 2}"}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": T0,
        "containerStatuses": _status_entries(
            tuple(c["name"] for c in template["spec"]["containers"]),
            state=state,
            image=template["spec"]["containers"][0]["image"],
            seed=name,
        ),
        "qosClass": "Guaranteed",
    }
    shared = (owner["uid"], len(template["spec"]["containers"]))
    controller_owned = _CONTROLLER_OWNED.get(shared) or _CONTROLLER_OWNED.setdefault(
        shared,
        fields_v1(
            {
                "metadata": {
                    "generateName": "",
                    "labels": pod_labels,
                    "ownerReferences": [{"uid": owner["uid"]}],
                },
                "spec": template["spec"],
            },
            keyed=("uid", "name", "containerPort"),
        ),
    )
    kubelet_owned = fields_v1(
        {
            "status": {
                "conditions": status["conditions"],
                "containerStatuses": None,
                "hostIP": "",
                "hostIPs": None,
                "phase": "",
                "podIP": "",
                "podIPs": status["podIPs"],
                "startTime": "",
            }
        },
        keyed=("type", "ip"),
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": f"{replicaset}-",
            "namespace": namespace,
            "uid": _uid(name),
            "creationTimestamp": T0,
            "labels": pod_labels,
            "ownerReferences": [owner],
            "managedFields": [
                _managed("kube-controller-manager", "Update", "v1", controller_owned),
                _managed("kubelet", "Update", "v1", kubelet_owned, subresource="status"),
            ],
        },
        "spec": spec,
        "status": status,
    }


def deployment(
    *,
    namespace: str,
    name: str,
    deployment_id: str,
    app: str,
    group: str,
    replicas: int,
    template: Obj | None = None,
) -> Obj:
    """The chart's Deployment as helm-controller applied it, with the controller's status."""
    template = template or pod_template(
        deployment_id=deployment_id, app=app, group=group, name=name
    )
    meta_labels = dict(
        template["metadata"]["labels"],
        **{
            "app.kubernetes.io/managed-by": "Helm",
            "helm.toolkit.fluxcd.io/name": name,
            "helm.toolkit.fluxcd.io/namespace": namespace,
        },
    )
    annotations = {
        "deployment.kubernetes.io/revision": "3",
        "meta.helm.sh/release-name": name,
        "meta.helm.sh/release-namespace": namespace,
    }
    selector = {"matchLabels": {layout.LABEL_ID: deployment_id}}
    spec = {
        "replicas": replicas,
        "selector": selector,
        "template": template,
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
        },
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    }
    conditions = [
        {
            "type": "Available",
            "status": "True",
            "lastUpdateTime": T1,
            "lastTransitionTime": T1,
            "reason": "MinimumReplicasAvailable",
            "message": "Deployment has minimum availability.",
        },
        {
            "type": "Progressing",
            "status": "True",
            "lastUpdateTime": T1,
            "lastTransitionTime": T0,
            "reason": "NewReplicaSetAvailable",
            "message": f'ReplicaSet "{name}-{_hex(name, 10)}" has successfully progressed.',
        },
    ]
    status = {
        "observedGeneration": 3,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": conditions,
    }
    helm_owned = fields_v1(
        {"metadata": {"annotations": annotations, "labels": meta_labels}, "spec": spec},
        keyed=("name", "containerPort"),
    )
    controller_owned = fields_v1({"status": status}, keyed=("type",))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": _uid(f"deployment/{namespace}/{name}"),
            "generation": 3,
            "creationTimestamp": T0,
            "labels": meta_labels,
            "annotations": annotations,
            "managedFields": [
                _managed("helm-controller", "Update", "apps/v1", helm_owned),
                _managed(
                    "kube-controller-manager",
                    "Update",
                    "apps/v1",
                    controller_owned,
                    subresource="status",
                ),
            ],
        },
        "spec": spec,
        "status": status,
    }


def helmrelease(
    *, namespace: str, name: str, deployment_id: str, app: str, group: str, replicas: int
) -> Obj:
    """The bridge's HelmRelease (helm.toolkit.fluxcd.io/v2) after helm-controller's upgrade to
    its third release."""
    meta_labels = {
        layout.LABEL_MANAGED_BY: layout.MANAGED_BY,
        layout.LABEL_GROUP: group,
        layout.LABEL_APP: app,
        layout.LABEL_ID: deployment_id,
        "kustomize.toolkit.fluxcd.io/name": layout.GROUP_KUSTOMIZATION,
        "kustomize.toolkit.fluxcd.io/namespace": namespace,
    }
    annotations = {layout.ANNOTATION_OWNER: "alice"}
    spec = {
        "interval": "10m",
        "chart": {
            "spec": {
                "chart": CHART,
                "version": "0.1.0",
                "sourceRef": {"kind": "HelmRepository", "name": "platform", "namespace": namespace},
                "interval": "10m",
                "reconcileStrategy": "ChartVersion",
            }
        },
        "values": {
            "image": f"registry:5000/{group}/{app}:1.4.2",
            "replicas": replicas,
            "port": 8080,
            "env": [{"name": "GREETING", "value": f"hello from {app}"}],
            "resources": {
                "cpu": "250m",
                "memory": "256Mi",
                "limits": {"cpu": "500m", "memory": "512Mi"},
            },
            "expose": False,
        },
    }

    def snapshot(version: int, state: str) -> Obj:
        return {
            "name": name,
            "namespace": namespace,
            "version": version,
            "status": state,
            "chartName": CHART,
            "chartVersion": "0.1.0",
            "appVersion": "1.0.0",
            "configDigest": f"sha256:{_hex(f'{name}/{version}')}",
            "digest": f"sha256:{_hex(f'{name}/{version}/digest')}",
            "firstDeployed": T0,
            "lastDeployed": T1,
        }

    conditions = [
        {
            "type": kind,
            "status": "True",
            "observedGeneration": 3,
            "lastTransitionTime": T1,
            "reason": "UpgradeSucceeded",
            "message": f"Helm upgrade succeeded for release {namespace}/{name}.v3 with chart "
            f"{CHART}@0.1.0",
        }
        for kind in ("Ready", "Released")
    ]
    status = {
        "observedGeneration": 3,
        "conditions": conditions,
        "helmChart": f"{namespace}/{namespace}-{name}",
        "history": [snapshot(3, "deployed")],
        "lastAttemptedConfigDigest": f"sha256:{_hex(f'{name}/3')}",
        "lastAttemptedGeneration": 3,
        "lastAttemptedReleaseAction": "upgrade",
        "lastAttemptedRevision": "0.1.0",
        "storageNamespace": namespace,
    }
    applied = fields_v1(
        {"metadata": {"labels": meta_labels, "annotations": annotations}, "spec": spec}
    )
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": _uid(f"helmrelease/{namespace}/{name}"),
            "generation": 3,
            "creationTimestamp": T0,
            "labels": meta_labels,
            "annotations": annotations,
            "finalizers": ["finalizers.fluxcd.io"],
            "managedFields": [
                _managed("kustomize-controller", "Apply", "helm.toolkit.fluxcd.io/v2", applied),
                _managed(
                    "helm-controller",
                    "Update",
                    "helm.toolkit.fluxcd.io/v2",
                    fields_v1({"status": {"conditions": conditions, "history": None}}),
                    subresource="status",
                ),
            ],
        },
        "spec": spec,
        "status": status,
    }


def pod_metrics(
    *,
    namespace: str,
    pod_name: str,
    labels_of_pod: dict[str, str],
    containers: tuple[str, ...] = ("app", "frpc"),
) -> Obj:
    """A PodMetrics as metrics-server returns it (one entry per container of the pod)."""
    usage = {
        "app": {"cpu": "3127493n", "memory": "21348Ki"},
        "frpc": {"cpu": "118291n", "memory": "9876Ki"},
    }
    return {
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {
            "name": pod_name,
            "namespace": namespace,
            "creationTimestamp": T1,
            "labels": labels_of_pod,
        },
        "timestamp": T1,
        "window": "15.012s",
        "containers": [{"name": name, "usage": dict(usage[name])} for name in containers],
    }


def persistentvolumeclaim(
    *,
    namespace: str,
    name: str,
    group: str,
    requested: str = "1Gi",
    capacity: str = "1Gi",
    storage_class: str = "standard",
) -> Obj:
    """A volume's claim (the bridge's ``render.volume`` document) as kustomize-controller
    applied it, bound by kube-controller-manager's PV controller to a volume its class's
    provisioner made (bind annotations, ``spec.volumeName``, the pvc-protection finalizer
    the API server adds). ``requested`` above ``capacity`` is a resize the CSI driver did (the
    external-resizer's ``allocatedResources``) and the kubelet has not finished: the
    FileSystemResizePending condition, as ``kubectl get pvc -o json`` shows it."""
    provisioner = "rancher.io/local-path"
    meta_labels = {
        layout.LABEL_MANAGED_BY: layout.MANAGED_BY,
        layout.LABEL_GROUP: group,
        volume.LABEL_VOLUME: name,
        "kustomize.toolkit.fluxcd.io/name": layout.GROUP_KUSTOMIZATION,
        "kustomize.toolkit.fluxcd.io/namespace": namespace,
    }
    applied_annotations = {layout.ANNOTATION_OWNER: "alice", layout.ANNOTATION_PRUNE: "disabled"}
    bound_annotations = {
        "pv.kubernetes.io/bind-completed": "yes",
        "pv.kubernetes.io/bound-by-controller": "yes",
        "volume.beta.kubernetes.io/storage-provisioner": provisioner,
        "volume.kubernetes.io/storage-provisioner": provisioner,
        "volume.kubernetes.io/selected-node": "node-1",
    }
    applied_spec = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": requested}},
        "storageClassName": storage_class,
    }
    volume_name = f"pvc-{_uid(f'pvc/{namespace}/{name}')}"
    status: Obj = {
        "phase": "Bound",
        "accessModes": ["ReadWriteOnce"],
        "capacity": {"storage": capacity},
    }
    bound_status = tuple(status)  # what the PV controller wrote
    resizer: list[Obj] = []
    if requested != capacity:
        status["allocatedResources"] = {"storage": requested}
        status["allocatedResourceStatuses"] = {"storage": "NodeResizePending"}
        status["conditions"] = [
            {
                "type": "FileSystemResizePending",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": T1,
                "message": "Waiting for user to (re-)start a pod to finish file system resize "
                "of volume on node.",
            }
        ]
        resizer = [
            _managed(
                "csi-resizer",
                "Update",
                "v1",
                fields_v1({"status": {k: status[k] for k in status if k not in bound_status}}),
                subresource="status",
            )
        ]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": _uid(f"pvc/{namespace}/{name}"),
            "resourceVersion": "90211",
            "creationTimestamp": T0,
            "labels": meta_labels,
            "annotations": applied_annotations | bound_annotations,
            "finalizers": ["kubernetes.io/pvc-protection"],
            "managedFields": [
                _managed(
                    "kustomize-controller",
                    "Apply",
                    "v1",
                    fields_v1(
                        {
                            "metadata": {
                                "labels": meta_labels,
                                "annotations": applied_annotations,
                            },
                            "spec": applied_spec,
                        }
                    ),
                ),
                _managed(
                    "kube-scheduler",
                    "Update",
                    "v1",
                    fields_v1(
                        {"metadata": {"annotations": {"volume.kubernetes.io/selected-node": ""}}}
                    ),
                ),
                _managed(
                    "kube-controller-manager",
                    "Update",
                    "v1",
                    fields_v1(
                        {
                            "metadata": {
                                "annotations": {
                                    k: v
                                    for k, v in bound_annotations.items()
                                    if "selected-node" not in k
                                }
                            },
                            "spec": {"volumeName": volume_name},
                        }
                    ),
                ),
                _managed(
                    "kube-controller-manager",
                    "Update",
                    "v1",
                    fields_v1({"status": {k: status[k] for k in bound_status}}),
                    subresource="status",
                ),
                *resizer,
            ],
        },
        "spec": {
            **applied_spec,
            "volumeMode": "Filesystem",
            "volumeName": volume_name,
        },
        "status": status,
    }


def size(obj: Obj) -> int:
    """Bytes of ``obj`` as the compact JSON an API server sends."""
    return len(json.dumps(obj, separators=(",", ":")))
