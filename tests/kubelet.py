"""The kubelet of the stand-in cluster (test code): what each container of a pod runs with,
whether it can start, and the pod status that results, as gitops-bridge can observe it.

``Kubelet(fake).sync(pod, release=..., health=...)`` is one ``syncPod`` of a pod bound to
``kind-worker``; ``environment(namespace, pod, container)`` is the environment a started
container got, byte for byte. Behaviour and where it comes from (kubernetes/kubernetes):

- ``pkg/kubelet/kubelet_pods.go`` ``makeEnvironmentVariables``: ``envFrom`` first (ConfigMap /
  Secret, ``prefix``, ``optional``), then ``env`` in order; a non-empty ``value`` is expanded
  (``$(VAR)``, ``$$``: ``tests/kubelet_env.py``, after
  ``third_party/forked/golang/expansion/expand.go``) against the variables so far, then the
  service variables; otherwise ``valueFrom``: ``fieldRef`` (``podFieldSelectorRuntimeValue``),
  ``configMapKeyRef`` (``ConfigMap.data`` only), ``secretKeyRef`` (``Secret.data``, bytes
  taken as they are); ``optional`` leaves a missing source out. ``resourceFieldRef`` and
  ``fileKeyRef`` are not modelled and raise NotImplementedError.
- Errors as the kubelet words them: ``secret "x" not found`` / ``configmap "x" not found``
  (``pkg/kubelet/util/manager/watch_based_manager.go`` ``apierrors.NewNotFound`` with the
  resource ``secret`` / ``configmap`` of ``pkg/kubelet/secret/secret_manager.go`` and
  ``pkg/kubelet/configmap/configmap_manager.go``), ``couldn't find key K in Secret NS/NAME``,
  ``couldn't find key K in ConfigMap NS/NAME`` (``makeEnvironmentVariables``).
- Service variables: ``pkg/kubelet/envvars/envvars.go`` ``FromServices`` for the master
  service ``default/kubernetes`` (always; kind's 10.96.0.1:443 when the fake has none) and,
  unless ``enableServiceLinks`` is false, the pod namespace's services with a cluster IP.
- ``pkg/kubelet/kuberuntime/kuberuntime_container.go`` ``startContainer``: a config error
  leaves the container ``waiting`` with reason ``CreateContainerConfigError`` and the error as
  message, and records a Warning Event ``Failed`` ``Error: <message>`` on the pod; ``SyncPod``
  still starts the pod's other containers. Every sync retries a container that has not
  started; a started container keeps the environment it started with.
- ``pkg/kubelet/kubelet_pods.go`` ``getPhase``: a container that never started keeps the pod
  ``Pending``; ``pkg/kubelet/status/generate.go``: Ready / ContainersReady False with
  ``ContainersNotReady`` ``containers with unready status: [a b]``.
- Events: ``staging/src/k8s.io/client-go/tools/record/event.go`` ``makeEvent`` (name
  ``<object>.<hex nanoseconds>``, count 1, first/last timestamp) and ``events_cache.go``
  (an identical event again raises ``count`` and ``lastTimestamp`` instead).

``health="crashloop"`` makes the first container of each pod crash-loop once it can start
(the Flux stand-in's scenario): it exited with code 1 (``lastState.terminated`` reason
``Error``); ``health="oomkilled"`` the same, killed for exceeding its memory limit: reason
``OOMKilled``, exit code 137 (128 + SIGKILL; the kernel's OOM killer, as the container runtime
reports it: https://kubernetes.io/docs/tasks/configure-pod-container/assign-memory-resource/).
Either way the container waits in ``CrashLoopBackOff`` with the kubelet's message ``back-off
<delay> restarting failed container=<c> pod=<pod>_<ns>(<uid>)``, its ``restartCount`` grows by
one on every sync (at least 5 on the first: it crashed before anyone looked), and each sync
records the Warning Event ``BackOff`` ``Back-off restarting failed container <c> in pod
<pod>_<ns>(<uid>)`` on the pod, fieldPath ``spec.containers{<c>}`` (an identical event again
raises its count): ``pkg/kubelet/kuberuntime/kuberuntime_manager.go`` ``doBackOff``,
``pkg/kubelet/events/event.go`` ``BackOffStartContainer``, ``pkg/kubelet/util/format/pod.go``
``PodDesc``. A ``CreateContainerConfigError`` comes first. Not modelled: probes, image pulls,
mounting volumes (the frpc ConfigMap and bound claims always mount; a pod whose claims are
missing or unbound never reaches the kubelet: the scheduler keeps it Pending and unbound,
``tests/kubecontrollers.py`` ``Scheduler``), the back-off delay growing (always 2m40s),
container restarts other than those scenarios.

Logs: a started container's instance logs a few lines (``FakeKube.set_logs``); a crashed one
logged its crash and terminated (``FakeKube.terminate_log``): its log is the previous one, as
``pkg/kubelet/kubelet_pods.go`` ``validateContainerLogStatus`` finds it through
``lastState.terminated`` (``kubectl logs --previous``, and ``kubectl logs`` while waiting).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import time
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

from gitops_bridge import quantity
from tests import kubelet_env
from tests.kubefake import FakeKube, now

Obj = dict[str, Any]
POD = ("v1", "Pod")
SECRET = ("v1", "Secret")
CONFIGMAP = ("v1", "ConfigMap")
SERVICE = ("v1", "Service")
EVENT = ("v1", "Event")
NODE = "kind-worker"
HOST_IP = "172.18.0.2"
CONFIG_ERROR = "CreateContainerConfigError"
# health -> how the crash-looping container ended last (reason, exit code)
CRASHES = {"crashloop": ("Error", 1), "oomkilled": ("OOMKilled", 137)}
# What kind's API server creates as default/kubernetes (service CIDR 10.96.0.0/16).
MASTER_SERVICE: Obj = {
    "metadata": {"name": "kubernetes", "namespace": "default"},
    "spec": {
        "clusterIP": "10.96.0.1",
        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
    },
}


class ConfigError(Exception):
    """A container's configuration cannot be generated (the kubelet's message)."""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ---- events (client-go tools/record) -----------------------------------------------------


def record_event(
    fake: FakeKube,
    *,
    involved: Obj,
    type_: str,
    reason: str,
    message: str,
    component: str,
    host: str = "",
    field_path: str = "",
) -> Obj:
    """Write a core v1 Event about ``involved`` (an object or an ObjectReference-shaped dict),
    or raise the count of the identical one already written; the stored Event."""
    meta = involved.get("metadata") or {}
    reference: Obj = {
        "kind": involved["kind"],
        "namespace": meta.get("namespace", involved.get("namespace", "")),
        "name": meta.get("name", involved.get("name", "")),
        "uid": meta.get("uid", involved.get("uid", "")),
        "apiVersion": involved["apiVersion"],
    }
    if meta.get("resourceVersion"):
        reference["resourceVersion"] = meta["resourceVersion"]
    if field_path:
        reference["fieldPath"] = field_path
    source = {"component": component, **({"host": host} if host else {})}
    namespace = reference["namespace"]
    for event in fake.items(*EVENT, namespace):
        same_object = {
            k: event["involvedObject"].get(k) for k in ("kind", "name", "uid", "fieldPath")
        } == {k: reference.get(k) for k in ("kind", "name", "uid", "fieldPath")}
        if (
            same_object
            and (event["type"], event["reason"], event["message"]) == (type_, reason, message)
            and event.get("source") == source
        ):
            event["count"] = int(event.get("count", 1)) + 1
            event["lastTimestamp"] = now()
            return fake.apply(event)
    moment = now()
    return fake.apply(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{reference['name']}.{time.time_ns():x}",
                "namespace": namespace,
            },
            "involvedObject": reference,
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": moment,
            "lastTimestamp": moment,
            "count": 1,
            "type": type_,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": host,
        }
    )


# ---- the environment of a container -------------------------------------------------------


def frp_token(
    namespace: str,
    *,
    name: str = "frp-token",
    token: str = "frp-test-token",
    group_key: str = "frp-test-group-key",
) -> Obj:
    """The Secret a platform operator provisions in a group namespace for exposure (never in
    Git): keys ``token`` and ``group-key``, as the chart's frpc sidecar reads them."""
    data = {"token": token, "group-key": group_key}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def cluster_age_key(fake: Any, identity: str) -> None:
    """The cluster's age identity as ``flux-system/sops-age``, made out of band once (the
    README's ``kubectl create secret generic sops-age --from-file=age.agekey=...``)."""
    if fake.get("v1", "Namespace", None, "flux-system") is None:
        fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system"}})
    fake.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "sops-age", "namespace": "flux-system"},
            "data": {"age.agekey": base64.b64encode(f"{identity}\n".encode()).decode()},
        }
    )


def _env_name(text: str) -> str:
    return text.replace("-", "_").upper()


def service_variables(service: Obj) -> dict[str, str]:
    """``FromServices`` for one service (envvars.go): ``<NAME>_SERVICE_HOST``/``_PORT``, named
    ports, and the Docker link variables."""
    spec = service.get("spec") or {}
    cluster_ip, ports = spec.get("clusterIP", ""), spec.get("ports") or []
    if cluster_ip in ("", "None") or not ports:
        return {}
    prefix = _env_name(service["metadata"]["name"])
    found = {
        f"{prefix}_SERVICE_HOST": cluster_ip,
        f"{prefix}_SERVICE_PORT": str(ports[0]["port"]),
    }
    for port in ports:
        if port.get("name"):
            found[f"{prefix}_SERVICE_PORT_{_env_name(port['name'])}"] = str(port["port"])
    host = f"[{cluster_ip}]" if ":" in cluster_ip else cluster_ip
    for index, port in enumerate(ports):
        protocol = str(port.get("protocol") or "TCP")
        url = f"{protocol.lower()}://{host}:{port['port']}"
        if index == 0:
            found[f"{prefix}_PORT"] = url
        base = f"{prefix}_PORT_{port['port']}_{protocol.upper()}"
        found |= {
            base: url,
            f"{base}_PROTO": protocol.lower(),
            f"{base}_PORT": str(port["port"]),
            f"{base}_ADDR": cluster_ip,
        }
    return found


def _decoded(secret: Obj) -> dict[str, str]:
    """Secret.data as the kubelet sees it: the bytes, kept exact (surrogateescape)."""
    values: dict[str, str] = {}
    for key, encoded in (secret.get("data") or {}).items():
        try:
            raw = base64.b64decode(str(encoded), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(
                f"Secret data {key!r} is not base64 (the API server refuses it)"
            ) from exc
        values[key] = raw.decode("utf-8", "surrogateescape")
    # stringData is write-only: the API server merges it into data on write.
    values |= {k: str(v) for k, v in (secret.get("stringData") or {}).items()}
    return values


class _Sources:
    """The ConfigMaps and Secrets of one namespace, fetched once per container start."""

    def __init__(self, fake: FakeKube, namespace: str) -> None:
        self.fake = fake
        self.namespace = namespace
        self._secrets: dict[str, dict[str, str] | None] = {}
        self._configmaps: dict[str, dict[str, str] | None] = {}

    def secret(self, name: str) -> dict[str, str] | None:
        if name not in self._secrets:
            found = self.fake.get(*SECRET, self.namespace, name)
            self._secrets[name] = None if found is None else _decoded(found)
        return self._secrets[name]

    def configmap(self, name: str) -> dict[str, str] | None:
        if name not in self._configmaps:
            found = self.fake.get(*CONFIGMAP, self.namespace, name)
            data = None if found is None else found.get("data") or {}
            self._configmaps[name] = None if data is None else {k: str(v) for k, v in data.items()}
        return self._configmaps[name]


def _field(pod: Obj, path: str) -> str:
    """``podFieldSelectorRuntimeValue`` / ``fieldpath.ExtractFieldPathAsString``."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    if path.startswith(("metadata.labels['", "metadata.annotations['")) and path.endswith("']"):
        which, _, key = path[len("metadata.") : -2].partition("['")
        return str((meta.get(which) or {}).get(key, ""))
    simple: dict[str, Callable[[], str]] = {
        "metadata.name": lambda: str(meta["name"]),
        "metadata.namespace": lambda: str(meta["namespace"]),
        "metadata.uid": lambda: str(meta.get("uid", "")),
        "spec.nodeName": lambda: str(spec.get("nodeName", "")),
        "spec.serviceAccountName": lambda: str(spec.get("serviceAccountName", "")),
        "status.hostIP": lambda: HOST_IP,
        "status.hostIPs": lambda: HOST_IP,
        "status.podIP": lambda: str(status.get("podIP", "")),
        "status.podIPs": lambda: ",".join(i["ip"] for i in status.get("podIPs") or []),
    }
    if path not in simple:
        raise ConfigError(f"unsupported fieldPath: {path}")
    return simple[path]()


def make_environment(
    pod: Obj, container: Obj, *, sources: _Sources, services: Mapping[str, str]
) -> dict[str, str]:
    """``makeEnvironmentVariables`` for one container; ConfigError with the kubelet's words."""
    namespace = pod["metadata"]["namespace"]
    variables: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        ref = source.get("configMapRef") or source.get("secretRef")
        if ref is None:
            continue
        kind = "configmap" if "configMapRef" in source else "secret"
        found = (
            sources.configmap(ref["name"]) if kind == "configmap" else sources.secret(ref["name"])
        )
        if found is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f'{kind} "{ref["name"]}" not found')
        variables |= {prefix + k: v for k, v in found.items()}
    mapping = kubelet_env.mapping_for(variables, services)
    for var in container.get("env") or []:
        name, value, origin = str(var["name"]), str(var.get("value") or ""), var.get("valueFrom")
        if value or not origin:
            variables[name] = kubelet_env.expand(value, mapping) if value else ""
            continue
        if "fieldRef" in origin:
            variables[name] = _field(pod, origin["fieldRef"]["fieldPath"])
            continue
        if "resourceFieldRef" in origin or "fileKeyRef" in origin:
            raise NotImplementedError(f"the stand-in kubelet does not resolve {sorted(origin)}")
        ref = origin.get("configMapKeyRef") or origin.get("secretKeyRef") or {}
        kind, label = (
            ("configmap", "ConfigMap") if "configMapKeyRef" in origin else ("secret", "Secret")
        )
        found = (
            sources.configmap(ref["name"]) if kind == "configmap" else sources.secret(ref["name"])
        )
        optional = bool(ref.get("optional"))
        if found is None:
            if optional:
                continue
            raise ConfigError(f'{kind} "{ref["name"]}" not found')
        if ref["key"] not in found:
            if optional:
                continue
            raise ConfigError(
                f"couldn't find key {ref['key']} in {label} {namespace}/{ref['name']}"
            )
        variables[name] = found[ref["key"]]
    return variables | {k: v for k, v in services.items() if k not in variables}


# ---- pod status -----------------------------------------------------------------------------


def _image_id(image: str) -> str:
    if "@sha256:" in image:
        return image
    repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repository}@sha256:{_sha256(image)}"


def _qos(containers: list[Obj]) -> str:
    for container in containers:
        resources = container.get("resources") or {}
        if resources.get("requests") != resources.get("limits"):
            return "Burstable"
    return "Guaranteed"


def _usage(container: Obj, *, crashing: bool) -> dict[str, str]:
    """Plausible metrics-server usage below the limits: nanocores and Ki, as it reports."""
    resources = container.get("resources") or {}
    limits = resources.get("limits") or resources.get("requests") or {}
    cpu = quantity.parse(limits.get("cpu", "100m")).value
    memory = quantity.parse(limits.get("memory", "128Mi")).value
    cpu_share, memory_share = (
        (Fraction(1, 100), Fraction(1, 20)) if crashing else (Fraction(1, 5), Fraction(2, 5))
    )
    return {
        "cpu": f"{int(cpu * cpu_share * 10**9)}n",
        "memory": f"{int(memory * memory_share / 1024)}Ki",
    }


def health_of(pod: Obj) -> str:
    """``crashloop`` or ``oomkilled`` when the pod's first container is crash-looping (by how
    it ended last), else ``ok``."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    waiting = (statuses[0].get("state") or {}).get("waiting") or {} if statuses else {}
    if waiting.get("reason") != "CrashLoopBackOff":
        return "ok"
    last = (statuses[0].get("lastState") or {}).get("terminated") or {}
    return "oomkilled" if last.get("reason") == "OOMKilled" else "crashloop"


def _pod_desc(pod: Obj) -> str:
    """``pkg/kubelet/util/format/pod.go`` ``PodDesc``: ``<name>_<namespace>(<uid>)``."""
    meta = pod["metadata"]
    return f"{meta['name']}_{meta['namespace']}({meta.get('uid', '')})"


def _restarts(statuses: list[Obj]) -> list[int]:
    return [int(s.get("restartCount", 0)) for s in statuses]


def is_ready(pod: Obj) -> bool:
    """The pod's Ready condition (available, as minReadySeconds is 0 here)."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _shape(statuses: list[Obj]) -> list[tuple[Any, ...]]:
    """What a status update would change: state kind, reason, message, readiness per container."""
    shape = []
    for status in statuses:
        (kind, detail), *_ = (status.get("state") or {"unknown": {}}).items()
        shape.append(
            (status["name"], kind, detail.get("reason"), detail.get("message"), status["ready"])
        )
    return shape


class Kubelet:
    """The kubelet of node ``kind-worker``: syncs the pods the controllers create."""

    def __init__(self, fake: FakeKube) -> None:
        self.fake = fake
        self._env: dict[tuple[str, str], dict[str, str]] = {}  # (pod uid, container) -> env

    def environment(self, namespace: str, pod: str, container: str) -> dict[str, str] | None:
        """The environment ``container`` of ``pod`` runs with; None if it never started.
        Bytes from a Secret that are not UTF-8 come back as surrogate escapes
        (``value.encode("utf-8", "surrogateescape")`` gives them back exactly)."""
        found = self.fake.get(*POD, namespace, pod)
        if found is None:
            return None
        env = self._env.get((found["metadata"]["uid"], container))
        return dict(env) if env is not None else None

    def _services(self, pod: Obj) -> dict[str, str]:
        master = self.fake.get(*SERVICE, "default", "kubernetes") or MASTER_SERVICE
        found: dict[str, str] = {}
        if (pod.get("spec") or {}).get("enableServiceLinks", True):
            namespace = pod["metadata"]["namespace"]
            for service in self.fake.items(*SERVICE, namespace):
                found |= service_variables(service)
        return found | service_variables(master)

    def sync(self, pod: Obj, *, release: str, health: str) -> Obj:
        """One syncPod: start the containers that can start, write the status if it changed,
        logs for containers that just started, and PodMetrics; the stored pod."""
        if health != "ok" and health not in CRASHES:
            raise ValueError(f"unknown health {health!r}; choose from ok, {', '.join(CRASHES)}")
        namespace, name, uid = (pod["metadata"][k] for k in ("namespace", "name", "uid"))
        containers = pod["spec"]["containers"]
        sources = _Sources(self.fake, namespace)
        services = self._services(pod)
        previous = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []}
        moment = now()
        statuses: list[Obj] = []
        for index, container in enumerate(containers):
            cname = container["name"]
            if (uid, cname) not in self._env:
                try:
                    self._env[(uid, cname)] = make_environment(
                        pod, container, sources=sources, services=services
                    )
                except ConfigError as exc:
                    statuses.append(self._waiting(pod, container, str(exc)))
                    continue
            crash = CRASHES.get(health) if index == 0 else None
            before = previous.get(cname)
            statuses.append(
                self._running(pod, container, crash=crash, before=before, moment=moment)
            )
            if crash is not None:
                self._back_off(pod, cname)
        current = (pod.get("status") or {}).get("containerStatuses") or []
        if (
            _shape(statuses) != _shape(current)
            or _restarts(statuses) != _restarts(current)
            or not (pod.get("status") or {}).get("conditions")
        ):
            status = self._pod_status(pod, statuses, moment)
            pod = self.fake.set_status(*POD, namespace, name, status)
        crashing_pod = any(
            s["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff" for s in statuses
        )
        usage: dict[str, dict[str, str]] = {}
        for status, container in zip(statuses, containers, strict=True):
            if status["state"].get("waiting", {}).get("reason") == CONFIG_ERROR:
                continue  # never started: no logs, no usage
            usage[container["name"]] = _usage(container, crashing=crashing_pod)
            before = previous.get(container["name"])
            if before is None or _shape([before]) != _shape([status]):
                ended = (status.get("lastState") or {}).get("terminated") or {}
                self._logs(
                    pod,
                    container,
                    release=release,
                    crashing="waiting" in status["state"],
                    killed=ended.get("reason") == "OOMKilled",
                )
        if usage:
            self.fake.set_metrics(namespace, name, usage)
        return pod

    def _waiting(self, pod: Obj, container: Obj, message: str) -> Obj:
        record_event(
            self.fake,
            involved=pod,
            type_="Warning",
            reason="Failed",
            message=f"Error: {message}",
            component="kubelet",
            host=NODE,
            field_path=f"spec.containers{{{container['name']}}}",
        )
        return {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": {"waiting": {"reason": CONFIG_ERROR, "message": message}},
            "lastState": {},
        }

    def _back_off(self, pod: Obj, container: str) -> None:
        """``doBackOff``: the Warning event of a container waiting to be restarted."""
        record_event(
            self.fake,
            involved=pod,
            type_="Warning",
            reason="BackOff",
            message=f"Back-off restarting failed container {container} in pod {_pod_desc(pod)}",
            component="kubelet",
            host=NODE,
            field_path=f"spec.containers{{{container}}}",
        )

    @staticmethod
    def _running(
        pod: Obj, container: Obj, *, crash: tuple[str, int] | None, before: Obj | None, moment: str
    ) -> Obj:
        cname, image = container["name"], container.get("image", "")
        name = pod["metadata"]["name"]
        was_running = before is not None and "running" in (before.get("state") or {})
        restarts = int((before or {}).get("restartCount", 0))
        entry: Obj = {
            "name": cname,
            "image": image,
            "imageID": _image_id(image),
            "containerID": f"containerd://{_sha256(name + '/' + cname)}",
            "ready": crash is None,
            "started": crash is None,
            "restartCount": restarts if crash is None else max(restarts + 1, 5),
            "state": {"running": {"startedAt": moment}},
            "lastState": {},
        }
        if was_running and crash is None:
            assert before is not None
            entry["state"] = copy.deepcopy(before["state"])
            entry["lastState"] = copy.deepcopy(before.get("lastState") or {})
        elif before is not None and crash is None:
            # started again after a crash: lastState keeps the instance that terminated until
            # the next one does (``pkg/kubelet/kubelet_pods.go`` convertToAPIContainerStatuses)
            entry["lastState"] = copy.deepcopy(before.get("lastState") or {})
        if crash is not None:
            reason, code = crash
            back_off = f"back-off 2m40s restarting failed container={cname} pod={_pod_desc(pod)}"
            entry["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": back_off}}
            entry["lastState"] = {
                "terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "startedAt": moment,
                    "finishedAt": moment,
                    "containerID": entry["containerID"],
                }
            }
        return entry

    @staticmethod
    def _pod_status(pod: Obj, statuses: list[Obj], moment: str) -> Obj:
        name = pod["metadata"]["name"]
        before = pod.get("status") or {}
        unready = [s["name"] for s in statuses if not s["ready"]]
        never_started = any(
            "waiting" in s["state"] and not s["lastState"].get("terminated") for s in statuses
        )
        old_conditions = {c["type"]: c for c in before.get("conditions") or []}
        conditions = []
        for type_ in (
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ):
            ready_kind = type_ in ("Ready", "ContainersReady")
            state = "False" if ready_kind and unready else "True"
            old = old_conditions.get(type_)
            condition: Obj = {
                "type": type_,
                "status": state,
                "lastProbeTime": None,
                "lastTransitionTime": old["lastTransitionTime"]
                if old and old["status"] == state
                else moment,
            }
            if ready_kind and unready:
                condition["reason"] = "ContainersNotReady"
                condition["message"] = f"containers with unready status: [{' '.join(unready)}]"
            conditions.append(condition)
        octet = int(_sha256(name)[:4], 16) % 250 + 2
        return {
            "phase": "Pending" if never_started else "Running",
            "conditions": conditions,
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": f"10.244.1.{octet}",
            "podIPs": [{"ip": f"10.244.1.{octet}"}],
            "startTime": before.get("startTime") or moment,
            "qosClass": _qos(pod["spec"]["containers"]),
            "containerStatuses": statuses,
        }

    def _logs(
        self, pod: Obj, container: Obj, *, release: str, crashing: bool, killed: bool = False
    ) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        cname = container["name"]
        ports = container.get("ports") or [{"containerPort": 8080}]
        if cname == "frpc":
            run_id = _sha256(name)[:16]
            lines = [
                "[I] [sub/root.go:149] start frpc service for config file [/etc/frpc/frpc.toml]",
                "[I] [client/service.go:314] try to connect to server...",
                f"[I] [client/service.go:306] [{run_id}] login to server success, "
                f"get run id [{run_id}]",
                f"[I] [proxy/proxy_manager.go:177] [{run_id}] proxy added: [{release}]",
                f"[I] [client/control.go:172] [{run_id}] [{name}.{release}] start proxy success",
            ]
        elif crashing and killed:  # SIGKILLed by the OOM killer: no last words of its own
            lines = [
                f"starting {container.get('image', cname)}",
                f"listening on 0.0.0.0:{ports[0]['containerPort']}",
                "loading the catalogue into memory (2,400,000 items)",
            ]
        elif crashing:
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
        if crashing:
            # the instance that logged these lines terminated (lastState.terminated): the
            # kubelet keeps its log as the previous one, replacing the one before, and reads it
            # for `kubectl logs` too while the container waits (validateContainerLogStatus)
            self.fake.terminate_log(namespace, name, cname)
