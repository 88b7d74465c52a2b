"""The fields of cluster objects the bridge reads, and nothing else (pure).

A pod as the API server returns it is ~5 KB of JSON (managedFields, the full container
specs, volumes, status conditions with timestamps); the status of a deployment needs a
tenth of it. Each function takes one object as decoded from a LIST page or a watch event
and returns a new dict of the same nested shape holding only what ``status``, ``monitor``
(``render.parse_helmrelease`` for orphans) and the poller read, so those read slim and full
objects alike. Keys absent from the input stay absent. Values that repeat across thousands
of objects (phases, reasons, namespaces, container names) are interned.

What each kind keeps:

- every kind: ``metadata`` name and namespace (the resourceVersion of a change is read
  from the event or list before it is reduced);
- HelmRelease: metadata generation, deletionTimestamp, the bridge's labels and owner/prune
  annotations; ``spec.values`` image, replicas, port, env, resources (cpu, memory), expose,
  restartedAt; ``status`` observedGeneration, the Ready, Stalled, Reconciling and
  Remediated conditions (type, status, reason, message) and history (chartVersion,
  status, firstDeployed, lastDeployed, configDigest);
- Deployment: the deployment-id label and the spec-digest annotation (``render.digest``:
  which committed settings run); ``spec`` replicas (what an autoscaler set) and the name and
  image of the app container (``template.spec.containers``, the one named ``app``); the
  ReplicaFailure condition (type, status, reason, message);
- Pod: the deployment-id label, creationTimestamp, deletionTimestamp; ``spec.nodeName``;
  status phase, startTime, the PodScheduled condition when it is not True (the only one
  read), and per container name, ready, restartCount, state.waiting / state.terminated
  (reason, message) and lastState.terminated (reason, exitCode, finishedAt): the pods table
  of a deployment's page (age, node, the last termination such as OOMKilled 137);
- PodMetrics: per container name and usage;
- Kustomization: status lastAppliedRevision; GitRepository: status.artifact.revision;
- PersistentVolumeClaim: metadata resourceVersion and the bridge's labels (managed-by,
  group, volume); ``spec`` resources.requests.storage, accessModes, storageClassName;
  ``status`` phase, capacity.storage, accessModes and every condition (type, status,
  reason, message: Resizing, FileSystemResizePending...);
- core v1 Event: type, reason, message (at most ``EVENT_MESSAGE_MAX`` characters), count,
  firstTimestamp, lastTimestamp, eventTime, series (count, lastObservedTime),
  involvedObject kind and name, source.component and reportingComponent (the JSON name of
  core v1's ``ReportingController``). Events written through events.k8s.io/v1 read back in
  core v1 with eventTime and series and null first/lastTimestamp; older writers set
  count and first/lastTimestamp: both shapes are kept as they are, null values dropped.
"""

from __future__ import annotations

import sys
from collections.abc import Container, Iterable, Mapping
from typing import Any

from gitops_bridge.render import digest, layout, volume

Obj = dict[str, Any]

HELMRELEASE_LABELS = (layout.LABEL_ID, layout.LABEL_GROUP, layout.LABEL_APP)
HELMRELEASE_ANNOTATIONS = (layout.ANNOTATION_OWNER, layout.ANNOTATION_PRUNE)
VALUES = ("image", "replicas", "port", "env", "resources", "expose", "restartedAt")
CONDITION = ("type", "status", "reason", "message")
USAGE = ("cpu", "memory")
MESSAGE = ("reason", "message")
EXIT = ("reason", "exitCode", "finishedAt")
RELEASE_CONDITIONS = frozenset({"Ready", "Stalled", "Reconciling", "Remediated"})
HISTORY = ("chartVersion", "status", "firstDeployed", "lastDeployed", "configDigest")
CLAIM_LABELS = (layout.LABEL_MANAGED_BY, layout.LABEL_GROUP, volume.LABEL_VOLUME)
STORAGE = ("storage",)
APP = "app"  # the chart's app container
EVENT_MESSAGE_MAX = 1024  # characters; the events.k8s.io API's own note limit is 1 kB
EVENT_FIELDS = ("type", "reason", "count", "firstTimestamp", "lastTimestamp", "eventTime")
SERIES = ("count", "lastObservedTime")
INVOLVED = ("kind", "name")


def _intern(value: Any) -> Any:
    return sys.intern(value) if type(value) is str else value


def _pick(source: Mapping[str, Any], keys: Iterable[str], *, intern: bool = False) -> Obj:
    if intern:
        return {k: _intern(source[k]) for k in keys if k in source}
    return {k: source[k] for k in keys if k in source}


def _metadata(
    obj: Mapping[str, Any],
    *,
    labels: tuple[str, ...] = (),
    annotations: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
) -> Obj:
    meta = obj.get("metadata") or {}
    kept: Obj = {}
    if "name" in meta:
        kept["name"] = meta["name"]
    for key in extra:
        if key in meta:
            kept[key] = meta[key]
    if "namespace" in meta:
        kept["namespace"] = _intern(meta["namespace"])
    if labels and isinstance(source := meta.get("labels"), dict):
        kept["labels"] = {k: source[k] for k in labels if k in source}
    if annotations and isinstance(source := meta.get("annotations"), dict):
        kept["annotations"] = {k: source[k] for k in annotations if k in source}
    return kept


def _conditions(status: Mapping[str, Any], kinds: Container[str]) -> list[Obj]:
    return [
        _pick(item, CONDITION, intern=True)
        for item in status.get("conditions") or ()
        if item.get("type") in kinds
    ]


def helmrelease(obj: Mapping[str, Any]) -> Obj:
    slim: Obj = {
        "metadata": _metadata(
            obj,
            labels=HELMRELEASE_LABELS,
            annotations=HELMRELEASE_ANNOTATIONS,
            extra=("generation", "deletionTimestamp"),
        )
    }
    spec = obj.get("spec")
    if isinstance(spec, dict):
        slim["spec"] = {}
        if "values" in spec:
            values = spec["values"]
            slim["spec"]["values"] = _values(values) if isinstance(values, dict) else values
    status = obj.get("status")
    if isinstance(status, dict):
        kept = _pick(status, ("observedGeneration",))
        if "conditions" in status:
            kept["conditions"] = _conditions(status, RELEASE_CONDITIONS)
        if "history" in status:
            kept["history"] = [
                _pick(item, HISTORY, intern=True) for item in status.get("history") or ()
            ]
        slim["status"] = kept
    return slim


def _values(values: Mapping[str, Any]) -> Obj:
    kept = _pick(values, VALUES)
    if isinstance(kept.get("resources"), dict):
        kept["resources"] = _pick(kept["resources"], USAGE)
    return kept


def deployment(obj: Mapping[str, Any]) -> Obj:
    slim: Obj = {
        "metadata": _metadata(obj, labels=(layout.LABEL_ID,), annotations=(digest.ANNOTATION,))
    }
    spec = obj.get("spec")
    if isinstance(spec, dict):
        kept = _pick(spec, ("replicas",))
        pod = ((spec.get("template") or {}).get("spec") or {}).get("containers")
        app = [c for c in pod or () if isinstance(c, dict) and c.get("name") == APP]
        if app:
            kept["template"] = {"spec": {"containers": [_pick(app[0], ("name", "image"))]}}
        slim["spec"] = kept
    status = obj.get("status")
    if isinstance(status, dict):
        conditions = _conditions(status, ("ReplicaFailure",))
        slim["status"] = {"conditions": conditions} if "conditions" in status else {}
    return slim


def _container_status(item: Mapping[str, Any]) -> Obj:
    kept: Obj = {}
    if "ready" in item:
        kept["ready"] = item["ready"]
    if "restartCount" in item:
        kept["restartCount"] = item["restartCount"]
    if "name" in item:
        kept["name"] = _intern(item["name"])
    if state := item.get("state"):
        if (waiting := state.get("waiting")) is not None:
            kept["state"] = {"waiting": _pick(waiting, MESSAGE, intern=True)}
        elif (terminated := state.get("terminated")) is not None:
            kept["state"] = {"terminated": _pick(terminated, MESSAGE, intern=True)}
    if (last := item.get("lastState")) and (terminated := last.get("terminated")) is not None:
        kept["lastState"] = {"terminated": _pick(terminated, EXIT, intern=True)}
    return kept


def pod(obj: Mapping[str, Any]) -> Obj:
    slim: Obj = {
        "metadata": _metadata(
            obj, labels=(layout.LABEL_ID,), extra=("creationTimestamp", "deletionTimestamp")
        )
    }
    spec = obj.get("spec")
    if isinstance(spec, dict) and "nodeName" in spec:
        slim["spec"] = {"nodeName": _intern(spec["nodeName"])}
    status = obj.get("status")
    if isinstance(status, dict):
        kept: Obj = {}
        if "phase" in status:
            kept["phase"] = _intern(status["phase"])
        if "startTime" in status:
            kept["startTime"] = status["startTime"]
        unscheduled = [
            _pick(c, CONDITION, intern=True)
            for c in status.get("conditions") or ()
            if c.get("type") == "PodScheduled" and c.get("status") != "True"
        ]
        if unscheduled:
            kept["conditions"] = unscheduled
        if "containerStatuses" in status:
            kept["containerStatuses"] = [
                _container_status(item) for item in status["containerStatuses"] or ()
            ]
        slim["status"] = kept
    return slim


def pod_metrics(obj: Mapping[str, Any]) -> Obj:
    containers = []
    for item in obj.get("containers") or ():
        usage = item.get("usage") or {}
        kept = {k: usage[k] for k in USAGE if k in usage}
        containers.append({"name": _intern(item.get("name", "")), "usage": kept})
    return {"metadata": _metadata(obj), "containers": containers}


def kustomization(obj: Mapping[str, Any]) -> Obj:
    slim: Obj = {"metadata": _metadata(obj)}
    status = obj.get("status")
    if isinstance(status, dict):
        slim["status"] = _pick(status, ("lastAppliedRevision",))
    return slim


def gitrepository(obj: Mapping[str, Any]) -> Obj:
    slim: Obj = {"metadata": _metadata(obj)}
    status = obj.get("status")
    if isinstance(status, dict):
        artifact = status.get("artifact")
        slim["status"] = (
            {"artifact": _pick(artifact, ("revision",))} if isinstance(artifact, dict) else {}
        )
    return slim


def _modes(modes: Any) -> Any:
    return [_intern(mode) for mode in modes] if isinstance(modes, list) else modes


def persistentvolumeclaim(obj: Mapping[str, Any]) -> Obj:
    slim: Obj = {"metadata": _metadata(obj, labels=CLAIM_LABELS, extra=("resourceVersion",))}
    spec = obj.get("spec")
    if isinstance(spec, dict):
        kept: Obj = {}
        requests = (spec.get("resources") or {}).get("requests")
        if isinstance(requests, dict):
            kept["resources"] = {"requests": _pick(requests, STORAGE)}
        if "accessModes" in spec:
            kept["accessModes"] = _modes(spec["accessModes"])
        if "storageClassName" in spec:
            kept["storageClassName"] = _intern(spec["storageClassName"])
        slim["spec"] = kept
    status = obj.get("status")
    if isinstance(status, dict):
        observed: Obj = {}
        if "phase" in status:
            observed["phase"] = _intern(status["phase"])
        if isinstance(capacity := status.get("capacity"), dict):
            observed["capacity"] = _pick(capacity, STORAGE)
        if "accessModes" in status:
            observed["accessModes"] = _modes(status["accessModes"])
        if "conditions" in status:
            observed["conditions"] = [
                _pick(item, CONDITION, intern=True) for item in status["conditions"] or ()
            ]
        slim["status"] = observed
    return slim


def event(obj: Mapping[str, Any]) -> Obj:
    """A core v1 Event: what the events table of a deployment's page shows."""
    slim: Obj = {"metadata": _metadata(obj)}
    for key in EVENT_FIELDS:
        if obj.get(key) is not None:
            slim[key] = _intern(obj[key]) if key in ("type", "reason") else obj[key]
    message = obj.get("message")
    if isinstance(message, str):
        slim["message"] = (
            message
            if len(message) <= EVENT_MESSAGE_MAX
            else message[: EVENT_MESSAGE_MAX - 1] + "\u2026"
        )
    if isinstance(series := obj.get("series"), dict):
        slim["series"] = {k: series[k] for k in SERIES if series.get(k) is not None}
    if isinstance(involved := obj.get("involvedObject"), dict):
        slim["involvedObject"] = _pick(involved, INVOLVED)
        if "kind" in involved:
            slim["involvedObject"]["kind"] = _intern(involved["kind"])
    if isinstance(source := obj.get("source"), dict) and source.get("component"):
        slim["source"] = {"component": _intern(source["component"])}
    if obj.get("reportingComponent"):
        slim["reportingComponent"] = _intern(obj["reportingComponent"])
    return slim
