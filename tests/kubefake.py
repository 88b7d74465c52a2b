"""A wire-level stand-in for the Kubernetes API server, which cannot run here (test code).

``FakeKube`` is a threaded plain-HTTP server on 127.0.0.1 that answers the official
``kubernetes`` Python client (or any HTTP client) the way a real API server does, for
the kinds gitops-bridge reads: core v1 namespaces/pods(+log)/services/configmaps/secrets/
serviceaccounts/resourcequotas/limitranges/events/persistentvolumeclaims/persistentvolumes,
storage.k8s.io/v1 storageclasses, apps/v1 deployments, autoscaling/v2
horizontalpodautoscalers, coordination.k8s.io/v1 leases, networking.k8s.io/v1
networkpolicies, rbac.authorization.k8s.io/v1 rolebindings,
the Flux kinds (HelmRelease v2, Kustomization v1, GitRepository v1, Receiver v1) and
metrics.k8s.io/v1beta1 PodMetrics. Tests drive the state from Python (``apply``,
``set_status``, ``delete``, ``set_logs``, ``set_metrics``) and inject faults
(``fail_next`` and ``heal``, ``delay``, ``compact``, ``drop_watches``); the benchmark loads
100,000 objects at once (``bulk_load_for_bench``, ``bulk_metrics_for_bench``: no checks).

Wire behaviour kept real: discovery documents, list kinds (``PodList``; built-in list
items without apiVersion/kind, custom resource items with them), a global
resourceVersion, ``limit``/``continue`` pages read from one snapshot (an unknown or
compacted token is 410 Expired with an inconsistent-continue token, a token that does not
decode is 400; list bodies are compact JSON, each object encoded once per version), label
and field selectors, watch streams with ADDED/MODIFIED/DELETED/BOOKMARK events (objects
moving in or out of a selector arrive as ADDED/DELETED) and an ERROR event carrying a 410
Status for a resourceVersion older than the retained history,
optimistic concurrency (409 on a stale resourceVersion in PUT, PATCH or a DELETE
precondition), finalizers (DELETE then only sets deletionTimestamp), ``/status``
subresources (PUT/PATCH on the object keeps its status, on ``/status`` only the status
changes), merge, strategic-merge (maps merged, lists replaced; 415 for custom resources,
as the real server) and JSON patches, pod logs (``container``, ``tailLines``,
``sinceSeconds``, ``timestamps``, ``follow`` streamed until the pod is deleted or the
client leaves, ``previous``; see "pod logs" below) and error ``Status`` objects.

Pod logs: each container has a current log and the log of its last terminated instance
(``set_logs``, ``append_log``, ``terminate_log``: the kubelet keeps only the last
terminated instance, the one ``status.containerStatuses[].lastState.terminated`` names).
Which one a request reads, or the 400 it gets, follows the kubelet's
``validateContainerLogStatus`` (pkg/kubelet/kubelet_pods.go) on the pod's container status:
``previous`` needs ``lastState.terminated.containerID`` (else ``previous terminated
container "c" in pod "p" not found``); otherwise a running container reads its current
log, a terminated or waiting one with a terminated instance reads that instance's, and a
waiting one without is ``container "c" in pod "p" is waiting to start: <reason>``. A pod
without container statuses (written by a test, no kubelet) reads its current log. Each line
gets its own moment (never the same as the line before, as a container runtime stamps
lines in nanoseconds), written with ``timestamps`` as RFC 3339 with nine decimals; a
terminated instance's log is complete, so following it ends after its lines.

Writes (HTTP POST/PUT/PATCH and ``apply()``, which raises the same ``ApiError``) go through
what kube-apiserver checks, in its order; each rule names its Kubernetes source at the code:

- Namespace lifecycle: the fake starts with default, kube-system, kube-public and
  kube-node-lease; creating or updating a namespaced object in a namespace that does not
  exist is 404 ``namespaces "x" not found``, creating in one being terminated is 403; the
  first three may not be deleted (403). Namespaces get status.phase Active, the
  ``kubernetes`` spec finalizer and the ``kubernetes.io/metadata.name`` label.
- Secrets: ``stringData`` is merged into ``data`` (base64) on every write and never stored
  nor returned; a ``data`` value that is not base64 is 400 ``illegal base64 data at input
  byte N`` (pkg/apis/core/v1/conversion.go ``Convert_v1_Secret_To_core_Secret``; the JSON
  decoder's base64). Unknown top-level fields of Secrets and ConfigMaps (k8s.io/api/core/v1
  types.go): ``apply()``, the server-side apply fluxstandin stands for, answers 500 with no
  reason ``failed to create typed patch object (<ns>/<name>; /v1, Kind=Secret): .sops: field
  not declared in schema`` (apimachinery managedfields/internal/structuredmerge.go; the
  missing reason is kubernetes issue #122480); POST and PUT follow ``fieldValidation``
  (``Strict``: 400 ``strict decoding error: unknown field "sops"``; ``Ignore``: dropped;
  the default ``Warn``: dropped with a ``unknown field "sops"`` warning).
- Validation, 422 Invalid with the real message and ``details.causes``: names per kind
  (DNS-1123 subdomain; DNS-1123 label for Namespaces, DNS-1035 label for Services, path
  segment for RoleBindings), generateName, label keys and values, annotation keys and
  their 256 KiB total, finalizer names; a Pod's containers and a Deployment's pod template
  (requests <= limits, no negative quantity; selector required, non-empty and matching the
  template labels; template labels and annotations; ``spec.strategy``: Recreate without
  rollingUpdate, pkg/apis/apps/validation/validation.go ValidateDeploymentStrategy); a
  HorizontalPodAutoscaler's spec (pkg/apis/autoscaling/validation/validation.go
  validateHorizontalPodAutoscalerSpec: minReplicas and maxReplicas at least 1, maxReplicas >=
  minReplicas, scaleTargetRef kind and name, Resource and ContainerResource metrics and their
  targets; scale-to-zero, Object, Pods and External metrics and behavior are not checked); a
  Secret's ``data`` keys (config keys:
  ``[-._a-zA-Z0-9]+``, at most 253, not ``.``/``..``/``..x``) and total size (1 MiB)
  (pkg/apis/core/validation/validation.go ``ValidateSecret``). A quantity that does not
  parse or a label that is not a string is 400, as when the body is decoded.
- Storage (pkg/apis/core/validation/validation.go, pkg/apis/storage/validation/validation.go;
  section "storage" below): PersistentVolumeClaims need valid access modes and a positive
  ``resources.requests.storage``; on update their spec is immutable except the PV controller's
  volumeName, a class where there was none and the storage request of a Bound claim, which
  may not shrink to status.capacity or below ("field can not be less than status.capacity":
  RecoverVolumeExpansionFailure is GA in 1.34). StorageClasses need a provisioner, a known
  reclaimPolicy and volumeBindingMode (defaults Delete, Immediate); parameters, provisioner,
  reclaimPolicy and volumeBindingMode never change. Claims and volumes are defaulted
  (volumeMode Filesystem, a volume's reclaim policy Retain) and start Pending whatever status
  was sent; they carry no metadata.generation. Admission: DefaultStorageClass (a claim
  without a class gets the newest default class), StorageObjectInUseProtection (the
  kubernetes.io/pvc-protection and pv-protection finalizers), PersistentVolumeClaimResize
  (403 unless the claim is Bound and its StorageClass says allowVolumeExpansion: true), and
  ResourceQuota for claims on create and update (``persistentvolumeclaims``,
  ``requests.storage``, both also per ``<class>.storageclass.storage.k8s.io/``).
- Warnings: a memory or ephemeral-storage quantity that is not a whole number of bytes is
  stored, answered with ``Warning: 299 - "..."`` and recorded in ``FakeKube.warnings``.
- LimitRanger on Pod create: Container defaults (``defaultRequest``/``default``, with the
  LimitRange's own defaulting from max and min) and the kubernetes.io/limit-ranger
  annotation, then min/max/maxLimitRequestRatio per Container and per Pod (403).
- ResourceQuota on create: compute resources and ``pods`` of pods (LimitRange defaults
  applied first; Succeeded/Failed pods not charged; a deleted pod charged until its
  deletionTimestamp + grace period, read from ``FakeKube.clock``), ``services*``, the
  legacy ``configmaps``/``secrets``/``resourcequotas`` counts and ``count/<resource>.<group>``
  for every kind (403 ``exceeded quota: ...``; ``must specify ...`` when a quota tracks cpu
  or memory a container does not set). ResourceQuota ``status.hard``/``status.used`` are
  recomputed after every change in the namespace, as the quota controller would.

Not implemented: authorization (one optional bearer token, no RBAC); validation of
anything but the above (other spec fields of built-in kinds, the OpenAPI schemas of custom
resources, immutable fields, ownerReferences); admission plugins other than the three
above (no ServiceAccount, PodSecurity, webhooks ...); the quota scope
CrossNamespacePodAffinity (the other scopes are implemented); quota and LimitRange checks
on updates other than a claim's (a pod resize); LimitRange PersistentVolumeClaim items; most
of a PersistentVolume's spec (sources, node affinity); canonical quantities in
stored objects (they read back as written); a quota's usage changing by time alone (a
terminating pod's grace period running out shows in status.used at the next change);
server-side apply (``application/apply-patch+yaml`` answers 415), ``dryRun`` over HTTP (the
Python ``apply(dry_run=True)`` runs validation and admission and stores nothing),
``deletecollection``, ``resourceVersion``/``resourceVersionMatch`` on GET/LIST (always the
latest state), the ``sendInitialEvents`` watch-list, Table/protobuf/CBOR output,
logs of init and ephemeral containers, ``sinceTime``, ``limitBytes``,
set-based ``>``/``<`` label operators, garbage collection through ownerReferences
(deleting a Namespace removes what is in it, nothing else cascades), graceful deletion of
pods over HTTP (a DELETE removes the pod at once; ``delete(graceful=True)`` keeps it for its
grace period), and controllers of any kind (no scheduler, kubelet or Deployment controller:
tests, or ``fluxstandin``, write the objects and their status).
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import copy
import json
import random
import re
import select
import socket
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

Obj = dict[str, Any]
Key = tuple[str, str]  # (apiVersion, kind)

KUBE_VERSION = {
    "major": "1",
    "minor": "35",
    "emulationMajor": "1",
    "emulationMinor": "35",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "34",
    "gitVersion": "v1.35.0",
    "gitCommit": "66452049f3d692768c39c797b21b793dce80314e",
    "gitTreeState": "clean",
    "buildDate": "2025-12-17T12:32:06Z",
    "goVersion": "go1.25.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
NOT_FOUND_PATH = "the server could not find the requested resource"
TOO_OLD_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter, or use the continue token "
    "in this response to retrieve the remainder of the results. Continuing with the "
    "provided token results in an inconsistent list - objects that were created, "
    "modified, or deleted between the time the first chunk was returned and now may show "
    "up in the list."
)
# Kinds whose objects carry no metadata.generation on a real server.
NO_GENERATION = {"ConfigMap", "Secret", "Namespace", "ServiceAccount", "Lease", "Service"}
NO_GENERATION |= {"ResourceQuota", "LimitRange", "RoleBinding", "Event"}
NO_GENERATION |= {"PersistentVolumeClaim", "PersistentVolume", "StorageClass"}
SNAPSHOTS = 64
STREAM_TICK = 0.2


@dataclass(frozen=True)
class Resource:
    """One REST resource the fake serves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    custom: bool = False
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``pods`` or ``helmreleases.helm.toolkit.fluxcd.io``, as in real error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def key(self) -> Key:
        return (self.api_version, self.kind)


def _flux(group: str, version: str, plural: str, kind: str, *short: str) -> Resource:
    return Resource(group, version, plural, kind, True, True, ("status",), short)


RESOURCES = (
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, subresources=("status",)),
    Resource("", "v1", "pods", "Pod", subresources=("status", "log"), short_names=("po",)),
    Resource("", "v1", "services", "Service", subresources=("status",), short_names=("svc",)),
    Resource("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    Resource("", "v1", "resourcequotas", "ResourceQuota", subresources=("status",)),
    Resource("", "v1", "limitranges", "LimitRange", short_names=("limits",)),
    Resource("", "v1", "events", "Event", short_names=("ev",)),
    Resource(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        subresources=("status",),
        short_names=("pvc",),
    ),
    Resource(
        "",
        "v1",
        "persistentvolumes",
        "PersistentVolume",
        namespaced=False,
        subresources=("status",),
        short_names=("pv",),
    ),
    Resource("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, short_names=("sc",)),
    Resource("apps", "v1", "deployments", "Deployment", subresources=("status",)),
    Resource(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        subresources=("status",),
        short_names=("hpa",),
    ),
    Resource("coordination.k8s.io", "v1", "leases", "Lease"),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _flux("helm.toolkit.fluxcd.io", "v2", "helmreleases", "HelmRelease", "hr"),
    _flux("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "Kustomization", "ks"),
    _flux("source.toolkit.fluxcd.io", "v1", "gitrepositories", "GitRepository", "gitrepo"),
    _flux("notification.toolkit.fluxcd.io", "v1", "receivers", "Receiver"),
)
METRICS = Resource("metrics.k8s.io", "v1beta1", "pods", "PodMetrics")
BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KEY = {r.key: r for r in RESOURCES}
NAMESPACE_KEY: Key = ("v1", "Namespace")
POD_KEY: Key = ("v1", "Pod")
QUOTA_KEY: Key = ("v1", "ResourceQuota")
LIMIT_RANGE_KEY: Key = ("v1", "LimitRange")
PVC_KEY: Key = ("v1", "PersistentVolumeClaim")
PV_KEY: Key = ("v1", "PersistentVolume")
STORAGE_CLASS_KEY: Key = ("storage.k8s.io/v1", "StorageClass")


def now() -> str:
    """The current time as the API server writes metav1.Time."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _nano(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


def status_object(
    code: int, message: str, *, reason: str | None = None, details: Obj | None = None
) -> Obj:
    """A ``v1 Status`` failure, as every API error body is."""
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class ApiError(Exception):
    """An answer with an error Status; raised anywhere while serving a request."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: Obj | None = None,
        metadata: Obj | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.body = status_object(code, message, reason=reason, details=details)
        if metadata:
            self.body["metadata"] = metadata


def _details(resource: Resource, name: str) -> Obj:
    details: Obj = {"name": name, "kind": resource.plural}
    if resource.group:
        details["group"] = resource.group
    return details


def not_found(resource: Resource, name: str) -> ApiError:
    return ApiError(
        404, f'{resource.qualified} "{name}" not found', details=_details(resource, name)
    )


def conflict(resource: Resource, name: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        details=_details(resource, name),
    )


# ---- selectors ------------------------------------------------------------------------

_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SET_REQ = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\((.*)\)\s*$")
_EQ_REQ = re.compile(r"^\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Requirement:
    """One label requirement: ``op`` is =, !=, in, notin, exists or !."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def parse_label_selector(text: str) -> list[Requirement]:
    """``a=b,c!=d,e in (f,g),h notin (i),j,!k`` -> requirements (all must hold); 400 if bad."""
    if not text.strip():
        return []
    requirements = []
    for part in _split_top(text):
        if match := _SET_REQ.match(part):
            key, op = match[1], match[2]
            values = frozenset(v.strip() for v in match[3].split(","))
        elif part.strip().startswith("!"):
            key, op, values = part.strip()[1:].strip(), "!", frozenset()
        elif match := _EQ_REQ.match(part):
            key, op, values = match[1], "!=" if match[2] == "!=" else "=", frozenset([match[3]])
        else:
            key, op, values = part.strip(), "exists", frozenset()
        if not _LABEL_KEY.match(key) or not all(_LABEL_VALUE.match(v) for v in values):
            raise ApiError(400, f"unable to parse requirement: invalid label selector {text!r}")
        requirements.append(Requirement(key, op, values))
    return requirements


def _field_getters(resource: Resource) -> dict[str, Callable[[Obj], str]]:
    getters: dict[str, Callable[[Obj], str]] = {
        "metadata.name": lambda o: str(o["metadata"].get("name", "")),
        "metadata.namespace": lambda o: str(o["metadata"].get("namespace", "")),
    }
    if resource.kind in ("Pod", "PodMetrics"):
        getters["status.phase"] = lambda o: str(o.get("status", {}).get("phase", ""))
        getters["spec.nodeName"] = lambda o: str(o.get("spec", {}).get("nodeName", ""))
    return getters


def parse_field_selector(text: str, resource: Resource) -> list[tuple[str, bool, str]]:
    """``metadata.name=x,status.phase!=Running`` -> (field, equal?, value); 400 if bad."""
    if not text.strip():
        return []
    getters = _field_getters(resource)
    requirements = []
    for part in text.split(","):
        match = _EQ_REQ.match(part)
        if not match:
            raise ApiError(400, f"invalid selector: '{text}'; can't understand '{part}'")
        name, op, value = match[1], match[2], match[3]
        if name not in getters:
            if resource.custom:
                raise ApiError(
                    400,
                    f'"{name}" is not a known field selector: only "metadata.name", '
                    '"metadata.namespace"',
                )
            raise ApiError(400, f"field label not supported: {name}")
        requirements.append((name, op != "!=", value))
    return requirements


def _matcher(
    resource: Resource, namespace: str | None, query: dict[str, str]
) -> Callable[[Obj], bool]:
    labels = parse_label_selector(query.get("labelSelector", ""))
    fields = parse_field_selector(query.get("fieldSelector", ""), resource)
    getters = _field_getters(resource)

    def match(obj: Obj) -> bool:
        meta = obj.get("metadata", {})
        if namespace is not None and meta.get("namespace") != namespace:
            return False
        obj_labels = meta.get("labels") or {}
        if not all(r.matches(obj_labels) for r in labels):
            return False
        return all((getters[name](obj) == value) == equal for name, equal, value in fields)

    return match


# ---- patches --------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (also used for strategic merge: maps merge, lists replace)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 add/replace/remove/test on a copy of ``doc``; 422 when a path does not apply."""
    if not isinstance(operations, list):
        raise ApiError(400, "json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for operation in operations:
        op, path = operation.get("op"), operation.get("path", "")
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]]
        if op not in ("add", "replace", "remove", "test") or not tokens:
            raise ApiError(422, f"Unexpected kind: {op}" if tokens else "invalid path: ''")
        parent = doc
        try:
            for token in tokens[:-1]:
                parent = parent[int(token)] if isinstance(parent, list) else parent[token]
            last: Any = tokens[-1]
            if isinstance(parent, list):
                last = len(parent) if last == "-" else int(last)
            elif not isinstance(parent, dict):
                raise KeyError(last)
            if op == "test":
                if parent[last] != operation.get("value"):
                    raise ApiError(422, f"testing value {path} failed: test failed")
            elif op == "remove":
                del parent[last]
            elif op == "add" and isinstance(parent, list):
                parent.insert(last, copy.deepcopy(operation.get("value")))
            else:
                if op == "replace" and (isinstance(parent, dict) and last not in parent):
                    raise KeyError(last)
                parent[last] = copy.deepcopy(operation.get("value"))
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(
                422, f"jsonpatch {op} operation does not apply: doc is missing path: {path}"
            ) from exc
    return doc


# ---- validation and admission ---------------------------------------------------------
# What kube-apiserver refuses, changes or warns about on a write, each rule with its source.
# Paths are in kubernetes/kubernetes; ``staging/src/k8s.io/<repo>/...`` is the published
# k8s.io/<repo> module (k8s.io/apimachinery, k8s.io/apiserver). Go iterates maps in random
# order; where a message lists map entries, the fake sorts them so the text is stable.

_NANO = Fraction(1, 10**9)
# staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go (ParseQuantity, ErrFormatWrong)
_QUANTITY = re.compile(
    r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?"
)
QUANTITY_FORMAT_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12}
_DECIMAL_SUFFIXES |= {"P": 15, "E": 18}
_DECIMAL_BY_EXPONENT = {exponent: suffix for suffix, exponent in _DECIMAL_SUFFIXES.items()}


@dataclass(frozen=True)
class Quantity:
    """A resource.Quantity: an exact value and the format its text was written in.

    Source: staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go (ParseQuantity
    rounds up to nano precision; String() is CanonicalizeBytes; Add keeps the format of the
    left operand unless that is zero) and amount.go (AsCanonicalBytes,
    AsCanonicalBase1024Bytes).
    """

    value: Fraction
    format: str = "DecimalSI"  # BinarySI | DecimalSI | DecimalExponent

    @classmethod
    def parse(cls, raw: Any) -> Quantity:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise ValueError(QUANTITY_FORMAT_ERROR)
        text = raw if isinstance(raw, str) else repr(raw)
        match = _QUANTITY.fullmatch(text)
        if match is None:
            raise ValueError(QUANTITY_FORMAT_ERROR)
        number, suffix = Fraction(match[1]), match[2] or ""
        if suffix in _BINARY_SUFFIXES[1:]:
            value, fmt = number * 1024 ** _BINARY_SUFFIXES.index(suffix), "BinarySI"
        elif suffix in _DECIMAL_SUFFIXES:
            value, fmt = number * Fraction(10) ** _DECIMAL_SUFFIXES[suffix], "DecimalSI"
        else:
            value, fmt = number * Fraction(10) ** int(suffix[1:]), "DecimalExponent"
        if (value / _NANO).denominator != 1:  # more precise than nano: rounded up (away from 0)
            nanos = -((-abs(value)) // _NANO)
            value = nanos * _NANO * (1 if value > 0 else -1)
        return cls(value, fmt)

    def __add__(self, other: Quantity) -> Quantity:
        return Quantity(self.value + other.value, other.format if not self.value else self.format)

    def milli(self) -> int:
        """MilliValue(): the value in thousandths, rounded up."""
        return -((-self.value * 1000) // 1)

    def __str__(self) -> str:
        value = self.value
        if not value:
            return "0"
        fmt = self.format
        if fmt == "BinarySI" and (abs(value) < 1024 or value.denominator != 1):
            fmt = "DecimalSI"
        sign, value = ("-" if value < 0 else ""), abs(value)
        if fmt == "BinarySI":
            number, power = value.numerator, 0
            while number % 1024 == 0 and power < len(_BINARY_SUFFIXES) - 1:
                number, power = number // 1024, power + 1
            return f"{sign}{number}{_BINARY_SUFFIXES[power]}"
        exponent = 0
        while value.denominator != 1:
            value, exponent = value * 10, exponent - 1
        mantissa = value.numerator
        while mantissa % 10 == 0:
            mantissa, exponent = mantissa // 10, exponent + 1
        shift = exponent % 3  # down to a multiple of 3, as AsCanonicalBytes does
        mantissa, exponent = mantissa * 10**shift, exponent - shift
        if fmt == "DecimalSI" and exponent in _DECIMAL_BY_EXPONENT:
            suffix = _DECIMAL_BY_EXPONENT[exponent]
        else:
            suffix = f"e{exponent}" if exponent else ""
        return f"{sign}{mantissa}{suffix}"


ZERO = Quantity(Fraction(0))

# staging/src/k8s.io/apimachinery/pkg/util/validation/field/errors.go: ErrorType and how
# Error() renders (Required, Forbidden and TooLong leave the value out).
_ERROR_WORDS = {
    "FieldValueRequired": "Required value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueNotSupported": "Unsupported value",
}


def _mapping(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _go_value(value: Any) -> str:
    """A bad value as field.Error prints it: strings quoted, structures as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class FieldError:
    """One field.Error: ``metadata.labels: Invalid value: "x": <detail>``."""

    type: str
    field: str
    value: Any = ""
    detail: str = ""

    def body(self) -> str:
        text = _ERROR_WORDS[self.type]
        if self.type not in ("FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong"):
            text += f": {_go_value(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def _bad(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", path, value, detail)


def _aggregate(messages: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message alone, several in [a, b]."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def invalid(resource: Resource, name: str, errors: list[FieldError]) -> ApiError:
    """422: staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go NewInvalid."""
    qualified_kind = f"{resource.kind}.{resource.group}" if resource.group else resource.kind
    details: Obj = {"name": name}
    if resource.group:
        details["group"] = resource.group
    details["kind"] = resource.kind
    details["causes"] = [{"reason": e.type, "message": e.body(), "field": e.field} for e in errors]
    message = f'{qualified_kind} "{name}" is invalid: {_aggregate([str(e) for e in errors])}'
    return ApiError(422, message, details=details)


def forbidden(
    resource: Resource, name: str, reason: str, *, causes: list[Obj] | None = None
) -> ApiError:
    """403: errors.go NewForbidden, as admission.NewForbidden (apiserver/pkg/admission/errors.go)
    builds it from the request's resource and the object's name."""
    subject = f'{resource.qualified} "{name}"' if name else resource.qualified
    details = _details(resource, name)
    if causes:
        details["causes"] = causes
    return ApiError(403, f"{subject} is forbidden: {reason}", details=details)


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    """staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go RegexError."""
    if not examples:
        return f"{message} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{example}', " for example in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{fmt}')"


def _size(text: str) -> int:
    return len(text.encode())  # Go's len(): bytes


# Names: staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go (IsDNS1123Label,
# IsDNS1123Subdomain, IsDNS1035Label; MaxLenError there says "characters").
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character"
)
_DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character"
)


def dns1123_subdomain(value: str, *, unit: str = "characters") -> list[str]:
    problems = []
    if _size(value) > 253:
        problems.append(f"must be no more than 253 {unit}")
    if not re.fullmatch(_DNS1123_SUBDOMAIN_FMT, value):
        problems.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return problems


def dns1123_label(value: str) -> list[str]:
    problems = []
    if _size(value) > 63:
        problems.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1123_LABEL_FMT, value):
        if re.fullmatch(_DNS1123_SUBDOMAIN_FMT, value):
            problems.append("must not contain dots")
        else:
            problems.append(
                _regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc")
            )
    return problems


def dns1035_label(value: str) -> list[str]:
    problems = []
    if _size(value) > 63:
        problems.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1035_LABEL_FMT, value):
        problems.append(_regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return problems


def path_segment_name(value: str) -> list[str]:
    """staging/src/k8s.io/apimachinery/pkg/api/validation/path/name.go IsValidPathSegmentName."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in value]


# Label keys and values: staging/src/k8s.io/apimachinery/pkg/api/validate/content/kube.go
# (IsLabelKey, which IsQualifiedName is; IsLabelValue) and content/errors.go, whose MaxLenError
# says "bytes"; the key prefix is content/dns.go IsDNS1123Subdomain.
_LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _LABEL_KEY_FMT + ")?"
_LABEL_KEY_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character"
)


def qualified_name(value: str) -> list[str]:
    parts = value.split("/")
    problems: list[str] = []
    if len(parts) > 2:
        rule = _regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
        return [
            f"a valid label key {rule} with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        if not parts[0]:
            problems.append("prefix part must be non-empty")
        else:
            problems += [f"prefix part {p}" for p in dns1123_subdomain(parts[0], unit="bytes")]
    if not name:
        problems.append("name part must be non-empty")
    elif _size(name) > 63:
        problems.append("name part must be no more than 63 bytes")
    if not re.fullmatch(_LABEL_KEY_FMT, name):
        rule = _regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
        problems.append(f"name part {rule}")
    return problems


def label_value(value: str) -> list[str]:
    problems = []
    if _size(value) > 63:
        problems.append("must be no more than 63 bytes")
    if not re.fullmatch(_LABEL_VALUE_FMT, value):
        problems.append(
            _regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345")
        )
    return problems


# Which name rule each stored kind has: pkg/apis/core/validation/validation.go
# (ValidateNamespaceName = NameIsDNSLabel, ValidateServiceName = NameIsDNS1035Label; Pod,
# ConfigMap, Secret, ServiceAccount, ResourceQuota, LimitRange: NameIsDNSSubdomain),
# pkg/apis/apps/validation/validation.go (Deployment: NameIsDNSSubdomain),
# pkg/apis/coordination/validation/validation.go (Lease: NameIsDNSSubdomain),
# pkg/apis/networking/validation/validation.go (NetworkPolicy: NameIsDNSSubdomain),
# pkg/apis/rbac/validation/validation.go (ValidateRBACName = IsValidPathSegmentName) and
# staging/src/k8s.io/apiextensions-apiserver/pkg/registry/customresource/validator.go
# (custom resources: NameIsDNSSubdomain). Everything else: DNS subdomain.
NAME_RULES: dict[str, Callable[[str], list[str]]] = {
    "Namespace": dns1123_label,
    "Service": dns1035_label,
    "RoleBinding": path_segment_name,
}


def _name_rule(kind: str) -> Callable[[str], list[str]]:
    return NAME_RULES.get(kind, dns1123_subdomain)


def _mask_trailing_dash(name: str) -> str:
    """staging/src/k8s.io/apimachinery/pkg/api/validation/generic.go maskTrailingDash
    (a generateName may end in '-'; Go replaces the last two characters with 'a')."""
    return name[:-2] + "a" if name.endswith("-") else name


def _labels_errors(labels: Any, path: str) -> list[FieldError]:
    """staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/validation/validation.go ValidateLabels."""
    errors: list[FieldError] = []
    for key in sorted(labels or {}):
        errors += [_bad(path, key, msg) for msg in qualified_name(key)]
        errors += [_bad(path, labels[key], msg) for msg in label_value(labels[key])]
    return errors


TOTAL_ANNOTATION_SIZE = 256 * 1024
MAX_SECRET_SIZE = 1024 * 1024  # pkg/apis/core/types.go MaxSecretSize
# Top-level fields of the kinds whose unknown fields the fake refuses (k8s.io/api/core/v1).
KNOWN_FIELDS = {
    "Secret": frozenset(
        {"apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable"}
    ),
    "ConfigMap": frozenset({"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"}),
}
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
_BASE64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def _annotations_errors(annotations: Any, path: str) -> list[FieldError]:
    """staging/src/k8s.io/apimachinery/pkg/api/validation/objectmeta.go ValidateAnnotations:
    keys are qualified names (case does not matter), keys + values at most 256 KiB."""
    errors: list[FieldError] = []
    annotations = annotations or {}
    for key in sorted(annotations):
        errors += [_bad(path, key, msg) for msg in qualified_name(key.lower())]
    if sum(_size(k) + _size(v) for k, v in annotations.items()) > TOTAL_ANNOTATION_SIZE:
        errors.append(
            FieldError(
                "FieldValueTooLong", path, "", f"must have at most {TOTAL_ANNOTATION_SIZE} bytes"
            )
        )
    return errors


def config_key(value: str) -> list[str]:
    """staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go IsConfigMapKey."""
    problems = []
    if _size(value) > 253:
        problems.append("must be no more than 253 characters")
    if not re.fullmatch(_CONFIG_KEY_FMT, value):
        problems.append(
            _regex_error(_CONFIG_KEY_MSG, _CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name")
        )
    if value == ".":
        problems.append("must not be '.'")
    elif value == "..":
        problems.append("must not be '..'")
    elif value.startswith(".."):
        problems.append("must not start with '..'")
    return problems


def go_base64_error(text: str) -> int | None:
    """Where Go's ``base64.StdEncoding.Decode`` (what encoding/json runs for ``[]byte``)
    gives up on ``text``: the N of "illegal base64 data at input byte N"; None when it
    decodes. Line breaks are skipped, as Go does."""
    chars = [(i, c) for i, c in enumerate(text) if c not in "\r\n"]
    quantum = 0
    for k, (i, c) in enumerate(chars):
        if c in _BASE64:
            quantum = (quantum + 1) % 4
            continue
        if c != "=" or quantum < 2:
            return i
        padding = chars[k : k + 4 - quantum]
        if len(padding) < 4 - quantum:
            return len(text)
        if any(ch != "=" for _, ch in padding):
            return next(j for j, ch in padding if ch != "=")
        rest = chars[k + 4 - quantum :]
        return rest[0][0] if rest else None
    if quantum:
        return chars[len(chars) - quantum][0]
    return None


def unknown_fields(resource: Resource, obj: Obj) -> list[str]:
    known = None if resource.group else KNOWN_FIELDS.get(resource.kind)
    return [] if known is None else [name for name in obj if name not in known]


def typed_patch_error(resource: Resource, obj: Obj, unknown: list[str]) -> ApiError:
    """A server-side apply of unknown fields: 500, and the Status carries no reason
    (managedfields/internal/structuredmerge.go wraps the schema error in fmt.Errorf)."""
    meta = _mapping(obj.get("metadata"))
    where = f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"
    fields = "\n".join(f".{name}: field not declared in schema" for name in unknown)
    error = ApiError(
        500,
        f"failed to create typed patch object ({where}; {resource.group}/{resource.version}, "
        f"Kind={resource.kind}): {fields}",
    )
    error.body.pop("reason")
    return error


def drop_unknown_fields(resource: Resource, obj: Obj, request: _Request) -> None:
    """POST/PUT/PATCH: ``fieldValidation`` Strict refuses unknown fields, Ignore drops them,
    Warn (the default) drops them with a warning (apiserver handlers/fieldmanager)."""
    unknown = unknown_fields(resource, obj)
    if not unknown:
        return
    mode = request.query.get("fieldValidation", "Warn")
    if mode == "Strict":
        raise ApiError(
            400,
            "strict decoding error: " + ", ".join(f'unknown field "{n}"' for n in unknown),
        )
    for name in unknown:
        obj.pop(name)
        if mode != "Ignore":
            request.warnings.append(f'unknown field "{name}"')


def _secret_decode(obj: Obj, prefix: str) -> None:
    """A Secret as the v1 -> internal conversion reads it: ``data`` values are base64
    strings, ``stringData`` values strings merged over ``data`` (then gone)."""
    data = obj.get("data")
    string_data = obj.get("stringData")
    for field_name, values, want in (
        ("data", data, "[]uint8"),
        ("stringData", string_data, "string"),
    ):
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ApiError(
                400,
                f"{prefix}: json: cannot unmarshal {_json_kind(values)} into Go struct field "
                f"Secret.{field_name} of type map[string]{want}",
            )
        for value in values.values():
            if not isinstance(value, str):
                raise ApiError(
                    400,
                    f"{prefix}: json: cannot unmarshal {_json_kind(value)} into Go struct field "
                    f"Secret.{field_name} of type {want}",
                )
            if field_name == "data":
                at = go_base64_error(value)
                if at is not None:
                    raise ApiError(400, f"{prefix}: illegal base64 data at input byte {at}")
    if string_data is not None:
        merged = dict(data or {})
        for key, value in string_data.items():
            merged[key] = base64.b64encode(value.encode()).decode()
        obj["data"] = merged
        del obj["stringData"]


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string" if isinstance(value, str) else "null"


def _secret_errors(obj: Obj) -> list[FieldError]:
    errors: list[FieldError] = []
    total = 0
    for key, value in _mapping(obj.get("data")).items():
        errors += [_bad(f"data[{key}]", key, msg) for msg in config_key(str(key))]
        total += len(base64.b64decode("".join(str(value).split())))
    if total > MAX_SECRET_SIZE:
        errors.append(
            FieldError(
                "FieldValueTooLong", "data", "", f"must have at most {MAX_SECRET_SIZE} bytes"
            )
        )
    return errors


def _meta_errors(resource: Resource, meta: Obj, *, create: bool) -> list[FieldError]:
    """objectmeta.go ValidateObjectMetaAccessor (create) / ValidateObjectMetaAccessorUpdate:
    generateName, name, namespace, labels, annotations, finalizers, in that order."""
    errors: list[FieldError] = []
    rule = _name_rule(resource.kind)
    if create:
        if meta.get("generateName"):
            generate = str(meta["generateName"])
            errors += [
                _bad("metadata.generateName", generate, msg)
                for msg in rule(_mask_trailing_dash(generate))
            ]
        name = str(meta.get("name") or "")
        if not name:
            errors.append(
                FieldError(
                    "FieldValueRequired", "metadata.name", "", "name or generateName is required"
                )
            )
        else:
            errors += [_bad("metadata.name", name, msg) for msg in rule(name)]
        if resource.namespaced:
            namespace = str(meta.get("namespace") or "")
            if not namespace:
                errors.append(FieldError("FieldValueRequired", "metadata.namespace"))
            else:
                errors += [
                    _bad("metadata.namespace", namespace, m) for m in dns1123_label(namespace)
                ]
    errors += _labels_errors(meta.get("labels"), "metadata.labels")
    errors += _annotations_errors(meta.get("annotations"), "metadata.annotations")
    for finalizer in meta.get("finalizers") or []:
        errors += [_bad("metadata.finalizers", finalizer, m) for m in qualified_name(finalizer)]
    return errors


def _decode_errors(resource: Resource, obj: Obj) -> None:
    """What fails before validation, when the body is decoded into the Go type: 400 for a
    label that is not a string and for a quantity that does not parse
    (staging/src/k8s.io/apimachinery/pkg/runtime/serializer: "<Kind> in version ... cannot be
    handled as a <Kind>: ...")."""
    prefix = (
        f'{resource.kind} in version "{resource.version}" cannot be handled as a {resource.kind}'
    )
    meta = obj.get("metadata")
    for name in ("labels", "annotations"):
        found = meta.get(name) if isinstance(meta, dict) else None
        if found is None:
            continue
        if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
            raise ApiError(
                400,
                f"{prefix}: json: cannot unmarshal into Go struct field ObjectMeta.metadata.{name} "
                "of type string",
            )
    for quantities in _quantity_maps(resource, obj):
        for raw in quantities.values():
            try:
                Quantity.parse(raw)
            except ValueError as exc:
                raise ApiError(400, f"{prefix}: {exc}") from exc
    if resource.kind == "Secret" and not resource.group:
        _secret_decode(obj, prefix)


def _containers(pod_spec: Obj) -> list[tuple[str, Obj]]:
    """(field name, container) for init, regular and ephemeral containers, as
    pkg/apis/core/pods/helpers.go VisitContainersWithPath visits them."""
    found = []
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for index, container in enumerate(pod_spec.get(group) or []):
            if isinstance(container, dict):
                found.append((f"{group}[{index}]", container))
    return found


def _pod_spec_of(resource: Resource, obj: Obj) -> tuple[str, Obj] | None:
    """The pod spec a Pod or a Deployment carries, and its field path."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return None
    if resource.kind == "Pod":
        return "spec", spec
    if resource.kind == "Deployment":
        template = spec.get("template")
        inner = template.get("spec") if isinstance(template, dict) else None
        return ("spec.template.spec", inner) if isinstance(inner, dict) else None
    return None


def _quantity_maps(resource: Resource, obj: Obj) -> list[Obj]:
    maps: list[Obj] = []
    pod = _pod_spec_of(resource, obj)
    if pod is not None:
        for _, container in _containers(pod[1]):
            resources = container.get("resources") or {}
            maps += [resources.get(b) or {} for b in ("requests", "limits")]
        maps.append(pod[1].get("overhead") or {})
    spec = _mapping(obj.get("spec"))
    if resource.kind == "ResourceQuota":
        maps.append(spec.get("hard") or {})
    if resource.kind == "LimitRange":
        for item in spec.get("limits") or []:
            maps += [item.get(k) or {} for k in _LIMIT_KEYS]
    if resource.kind == "PersistentVolumeClaim" and not resource.group:
        requirements = _mapping(spec.get("resources"))
        status = _mapping(obj.get("status"))
        maps += [requirements.get("requests") or {}, requirements.get("limits") or {}]
        maps += [status.get("capacity") or {}, status.get("allocatedResources") or {}]
    if resource.kind == "PersistentVolume" and not resource.group:
        maps.append(spec.get("capacity") or {})
    return [m for m in maps if isinstance(m, dict)]


def _resources_errors(pod_spec: Obj, path: str) -> list[FieldError]:
    """pkg/apis/core/validation/validation.go ValidateResourceRequirements, per container
    (ValidatePodSpec checks containers, then init containers): no negative quantity, and a
    request may not exceed its limit."""
    errors: list[FieldError] = []
    ordered = [c for c in _containers(pod_spec) if c[0].startswith("containers")]
    ordered += [c for c in _containers(pod_spec) if c[0].startswith("initContainers")]
    for where, container in ordered:
        resources = container.get("resources") or {}
        limits = {k: Quantity.parse(v) for k, v in (resources.get("limits") or {}).items()}
        requests = {k: Quantity.parse(v) for k, v in (resources.get("requests") or {}).items()}
        base = f"{path}.{where}.resources"
        for bucket, values in (("limits", limits), ("requests", requests)):
            for name in sorted(values):
                if values[name].value < 0:
                    errors.append(
                        _bad(
                            f"{base}.{bucket}[{name}]",
                            str(values[name]),
                            "must be greater than or equal to 0",
                        )
                    )
                if (
                    bucket == "requests"
                    and name in limits
                    and values[name].value > limits[name].value
                ):
                    errors.append(
                        _bad(
                            f"{base}.requests",
                            str(values[name]),
                            f"must be less than or equal to {name} limit of {limits[name]}",
                        )
                    )
    return errors


def _selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, op = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        present = key in labels
        if (
            (op == "In" and not (present and labels[key] in values))
            or (op == "NotIn" and present and labels[key] in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


def _deployment_errors(obj: Obj) -> list[FieldError]:
    """pkg/apis/apps/validation/validation.go ValidateDeploymentSpec and
    ValidatePodTemplateSpecForReplicaSet; template labels and annotations as
    pkg/apis/core/validation/validation.go ValidatePodTemplateSpec checks them (its path is
    spec.template, so they appear as spec.template.labels)."""
    spec = obj.get("spec") or {}
    errors: list[FieldError] = []
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and replicas < 0:
        errors.append(_bad("spec.replicas", replicas, "must be greater than or equal to 0"))
    selector = spec.get("selector")
    if selector is None:
        errors.append(FieldError("FieldValueRequired", "spec.selector"))
    else:
        errors += _labels_errors(selector.get("matchLabels"), "spec.selector.matchLabels")
        for index, expression in enumerate(selector.get("matchExpressions") or []):
            path = f"spec.selector.matchExpressions[{index}].key"
            errors += [
                _bad(path, expression.get("key"), m)
                for m in qualified_name(str(expression.get("key")))
            ]
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            errors.append(
                _bad("spec.selector", selector, "empty selector is invalid for deployment")
            )
    template = spec.get("template") or {}
    template_meta = template.get("metadata") or {}
    template_labels = template_meta.get("labels") or {}
    # A missing selector converts to labels.Nothing(), which matches nothing; an empty one
    # selects everything and is not compared.
    empty = (
        selector is not None
        and not selector.get("matchLabels")
        and not selector.get("matchExpressions")
    )
    if not empty and (selector is None or not _selector_matches(selector, template_labels)):
        errors.append(
            _bad(
                "spec.template.metadata.labels",
                template_labels,
                "`selector` does not match template `labels`",
            )
        )
    errors += _labels_errors(template_labels, "spec.template.labels")
    errors += _annotations_errors(template_meta.get("annotations"), "spec.template.annotations")
    if isinstance(template.get("spec"), dict):
        errors += _resources_errors(template["spec"], "spec.template.spec")
    errors += _strategy_errors(spec.get("strategy"))
    return errors


def _int_or_percent(value: Any) -> tuple[int | None, bool]:
    """(number, is a percentage) of an IntOrString; (None, False) when it is neither."""
    if isinstance(value, bool):
        return None, False
    if isinstance(value, int):
        return value, False
    text = str(value)
    if re.fullmatch(r"-?[0-9]+%", text):
        return int(text[:-1]), True
    return None, False


def _strategy_errors(strategy: Any) -> list[FieldError]:
    """pkg/apis/apps/validation/validation.go ValidateDeploymentStrategy and
    ValidateRollingUpdateDeployment (ValidatePositiveIntOrPercent, IsNotMoreThan100Percent):
    Recreate may not carry rollingUpdate; the type is Recreate or RollingUpdate (a missing type
    is RollingUpdate, as pkg/apis/apps/v1/defaults.go SetDefaults_Deployment fills it, and so
    is a missing rollingUpdate, 25%/25%: the fake stores neither default)."""
    strategy = _mapping(strategy)
    kind = strategy.get("type", "RollingUpdate")
    path = "spec.strategy"
    if kind == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            return [
                FieldError(
                    "FieldValueForbidden",
                    f"{path}.rollingUpdate",
                    "",
                    "may not be specified when strategy `type` is 'Recreate'",
                )
            ]
        return []
    if kind != "RollingUpdate":
        return [
            FieldError(
                "FieldValueNotSupported",
                path,
                strategy,
                'supported values: "Recreate", "RollingUpdate"',
            )
        ]
    rolling = _mapping(strategy.get("rollingUpdate"))
    errors: list[FieldError] = []
    values: dict[str, tuple[int | None, bool]] = {}
    for name in ("maxUnavailable", "maxSurge"):
        raw = rolling.get(name, "25%")
        number, percent = _int_or_percent(raw)
        values[name] = (number, percent)
        where = f"{path}.rollingUpdate.{name}"
        if number is None:
            errors.append(_bad(where, raw, "must be an integer or percentage (e.g '5%')"))
        elif number < 0:
            errors.append(_bad(where, raw, "must be greater than or equal to 0"))
    if values["maxUnavailable"][0] == 0 and values["maxSurge"][0] == 0:
        errors.append(
            _bad(
                f"{path}.rollingUpdate.maxUnavailable",
                rolling.get("maxUnavailable"),
                "may not be 0 when `maxSurge` is 0",
            )
        )
    number, percent = values["maxUnavailable"]
    if percent and number is not None and number > 100:
        errors.append(
            _bad(
                f"{path}.rollingUpdate.maxUnavailable",
                rolling.get("maxUnavailable"),
                "must not be greater than 100%",
            )
        )
    return errors


_METRIC_TYPES = ("ContainerResource", "External", "Object", "Pods", "Resource")
_TARGET_TYPES = ("Utilization", "Value", "AverageValue")


def hpa_errors(obj: Obj) -> list[FieldError]:
    """pkg/apis/autoscaling/validation/validation.go validateHorizontalPodAutoscalerSpec (the
    HPAScaleToZero feature gate off: minReplicas at least 1), ValidateCrossVersionObjectReference
    and, for Resource and ContainerResource metrics, validateResourceSource,
    validateContainerResourceSource and validateMetricTarget. Not checked: the other metric
    sources and behavior."""
    spec = _mapping(obj.get("spec"))
    errors: list[FieldError] = []
    low, high = spec.get("minReplicas"), spec.get("maxReplicas", 0)
    if isinstance(low, int) and low < 1:
        errors.append(_bad("spec.minReplicas", low, "must be greater than or equal to 1"))
    if not isinstance(high, int) or high < 1:
        errors.append(_bad("spec.maxReplicas", high, "must be greater than 0"))
    elif isinstance(low, int) and high < low:
        errors.append(
            _bad("spec.maxReplicas", high, "must be greater than or equal to `minReplicas`")
        )
    ref = _mapping(spec.get("scaleTargetRef"))
    for key in ("kind", "name"):
        where = f"spec.scaleTargetRef.{key}"
        value = str(ref.get(key) or "")
        if not value:
            errors.append(FieldError("FieldValueRequired", where))
        errors += [_bad(where, value, m) for m in path_segment_name(value) if value]
    for index, metric in enumerate(spec.get("metrics") or []):
        errors += _metric_errors(_mapping(metric), f"spec.metrics[{index}]")
    return errors


def _metric_errors(metric: Obj, path: str) -> list[FieldError]:
    kind = metric.get("type", "")
    if kind not in _METRIC_TYPES:
        supported = ", ".join(f'"{t}"' for t in _METRIC_TYPES)
        return [
            FieldError(
                "FieldValueNotSupported", f"{path}.type", kind, f"supported values: {supported}"
            )
        ]
    key = kind[0].lower() + kind[1:]
    source = metric.get(key)
    if not isinstance(source, dict):
        return [
            FieldError(
                "FieldValueRequired",
                f"{path}.{key}",
                "",
                "must populate information for the given metric source",
            )
        ]
    if kind not in ("Resource", "ContainerResource"):
        return []
    where = f"{path}.{key}"
    errors: list[FieldError] = []
    if not source.get("name"):
        errors.append(
            FieldError("FieldValueRequired", f"{where}.name", "", "must specify a resource name")
        )
    if kind == "ContainerResource":
        container = str(source.get("container") or "")
        if not container:
            errors.append(
                FieldError(
                    "FieldValueRequired", f"{where}.container", "", "must specify a container"
                )
            )
        errors += [
            _bad(f"{where}.container", container, m) for m in dns1123_label(container) if container
        ]
    target = _mapping(source.get("target"))
    if target.get("type") not in _TARGET_TYPES:
        errors.append(
            _bad(
                f"{where}.target.type",
                target.get("type", ""),
                "must be either Utilization, Value, or AverageValue",
            )
        )
    utilization = target.get("averageUtilization")
    if isinstance(utilization, int) and utilization < 1:
        errors.append(
            _bad(f"{where}.target.averageUtilization", utilization, "must be greater than 0")
        )
    if utilization is None and target.get("averageValue") is None:
        errors.append(
            FieldError(
                "FieldValueRequired",
                f"{where}.target.averageUtilization",
                "",
                "must set either a target raw value or a target utilization",
            )
        )
    return errors


def _validation_errors(resource: Resource, obj: Obj, old: Obj | None) -> list[FieldError]:
    errors = _meta_errors(resource, obj["metadata"], create=old is None)
    if resource.kind == "Pod" and isinstance(obj.get("spec"), dict):
        errors += _resources_errors(obj["spec"], "spec")
    if resource.kind == "Deployment":
        errors += _deployment_errors(obj)
    if resource.kind == "HorizontalPodAutoscaler":
        errors += hpa_errors(obj)
    if resource.kind == "Secret" and not resource.group:
        errors += _secret_errors(obj)
    if resource.kind == "PersistentVolumeClaim" and not resource.group:
        errors += pvc_errors(obj, old)
    if resource.kind == "PersistentVolume" and not resource.group:
        errors += pv_errors(obj)
    if resource.kind == "StorageClass":
        errors += storage_class_errors(obj, old)
    return errors


def pod_warnings(resource: Resource, obj: Obj) -> list[str]:
    """pkg/api/pod/warnings.go warningsForPodSpecAndMeta, the fractional-byte rule: memory
    and ephemeral-storage quantities that are not whole bytes are stored, with a warning."""
    found = _pod_spec_of(resource, obj)
    if found is None:
        return []
    path, spec = found
    warnings = []

    def check(where: str, raw: Any) -> None:
        quantity = Quantity.parse(raw)
        if quantity.milli() % 1000:
            warnings.append(
                f'{where}: fractional byte value "{quantity}" is invalid, must be an integer'
            )

    overhead = spec.get("overhead") or {}
    for name in ("memory", "ephemeral-storage"):
        if name in overhead:
            check(f"{path}.overhead[{name}]", overhead[name])
    for where, container in _containers(spec):
        resources = container.get("resources") or {}
        for name in ("memory", "ephemeral-storage"):
            for bucket in ("limits", "requests"):
                values = resources.get(bucket) or {}
                if name in values:
                    check(f"{path}.{where}.resources.{bucket}[{name}]", values[name])
    return warnings


def warning_header(text: str) -> str:
    """staging/src/k8s.io/apimachinery/pkg/util/net/http.go NewWarningHeader: code 299,
    agent "-", the text quoted with " and \\ escaped."""
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    quoted = "".join(c if c.isprintable() else " " for c in quoted)
    return f'299 - "{quoted}"'.encode("latin-1", "replace").decode("latin-1")


# LimitRanger: plugin/pkg/admission/limitranger/admission.go. Pods only, on create (updates
# are skipped: SupportsAttributes). A LimitRangeItem of type Container is first defaulted as
# pkg/apis/core/v1/defaults.go SetDefaults_LimitRangeItem does when the LimitRange is stored:
# default <- max, defaultRequest <- default, then defaultRequest <- min.
_LIMIT_KEYS = ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio")
LIMIT_RANGER_ANNOTATION = "kubernetes.io/limit-ranger"


def _limit_items(limit_range: Obj) -> list[Obj]:
    items = []
    for raw in (limit_range.get("spec") or {}).get("limits") or []:
        item = {k: dict(raw.get(k) or {}) for k in _LIMIT_KEYS} | {"type": raw.get("type")}
        if item["type"] == "Container":
            for source, target in (
                ("max", "default"),
                ("default", "defaultRequest"),
                ("min", "defaultRequest"),
            ):
                for name, value in item[source].items():
                    item[target].setdefault(name, value)
        items.append(item)
    return items


def _limit_defaults(pod: Obj, limit_range: Obj) -> None:
    """PodMutateLimitFunc: a container without a request or limit gets the LimitRange's."""
    defaults: dict[str, dict[str, str]] = {"requests": {}, "limits": {}}
    for item in _limit_items(limit_range):
        if item["type"] == "Container":
            defaults["requests"].update(
                {k: str(Quantity.parse(v)) for k, v in item["defaultRequest"].items()}
            )
            defaults["limits"].update(
                {k: str(Quantity.parse(v)) for k, v in item["default"].items()}
            )
    spec = pod.get("spec") or {}
    notes = []
    for group, prefix in (("containers", "container"), ("initContainers", "init container")):
        for container in spec.get(group) or []:
            resources = container.setdefault("resources", {})
            set_limits = [k for k in defaults["limits"] if k not in (resources.get("limits") or {})]
            set_requests = [
                k for k in defaults["requests"] if k not in (resources.get("requests") or {})
            ]
            if set_limits:
                resources["limits"] = (resources.get("limits") or {}) | {
                    k: defaults["limits"][k] for k in set_limits
                }
            if set_requests:
                resources["requests"] = (resources.get("requests") or {}) | {
                    k: defaults["requests"][k] for k in set_requests
                }
            name = container.get("name", "")
            if set_requests:
                notes.append(f"{', '.join(sorted(set_requests))} request for {prefix} {name}")
            if set_limits:
                notes.append(f"{', '.join(sorted(set_limits))} limit for {prefix} {name}")
    if notes:
        annotations = pod["metadata"].get("annotations") or {}
        annotations[LIMIT_RANGER_ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)
        pod["metadata"]["annotations"] = annotations


def _resource_list(values: Any) -> dict[str, Quantity]:
    return {k: Quantity.parse(v) for k, v in (values or {}).items()}


def _min_problem(
    kind: str,
    name: str,
    enforced: Quantity,
    requests: dict[str, Quantity],
    limits: dict[str, Quantity],
) -> str | None:
    if name not in requests:
        return f"minimum {name} usage per {kind} is {enforced}.  No request is specified"
    if requests[name].milli() < enforced.milli():
        return f"minimum {name} usage per {kind} is {enforced}, but request is {requests[name]}"
    if name in limits and limits[name].milli() < enforced.milli():
        return f"minimum {name} usage per {kind} is {enforced}, but limit is {limits[name]}"
    return None


def _max_problem(
    kind: str,
    name: str,
    enforced: Quantity,
    requests: dict[str, Quantity],
    limits: dict[str, Quantity],
) -> str | None:
    if name not in limits:
        return f"maximum {name} usage per {kind} is {enforced}.  No limit is specified"
    if limits[name].milli() > enforced.milli():
        return f"maximum {name} usage per {kind} is {enforced}, but limit is {limits[name]}"
    if name in requests and requests[name].milli() > enforced.milli():
        return f"maximum {name} usage per {kind} is {enforced}, but request is {requests[name]}"
    return None


def _ratio_problem(
    kind: str,
    name: str,
    enforced: Quantity,
    requests: dict[str, Quantity],
    limits: dict[str, Quantity],
) -> str | None:
    request, limit = requests.get(name, ZERO).milli(), limits.get(name, ZERO).milli()
    rule = f"{name} max limit to request ratio per {kind} is {enforced}"
    if not request:
        return f"{rule}, but no request is specified or request is 0"
    if not limit:
        return f"{rule}, but no limit is specified or limit is 0"
    ratio = limit / request
    if ratio * 1000 > enforced.milli():
        return f"{rule}, but provided ratio is {ratio:f}"
    return None


def _pod_totals(spec: Obj, bucket: str, *, overhead: bool) -> dict[str, Quantity]:
    """A pod's requests or limits: pkg/api/v1/resource/helpers.go PodRequests/PodLimits
    (containers add up; an init container counts as the maximum, a restartable one adds)."""
    total: dict[str, Quantity] = {}
    restartable: dict[str, Quantity] = {}
    init_max: dict[str, Quantity] = {}
    for container in spec.get("containers") or []:
        for name, value in _resource_list((container.get("resources") or {}).get(bucket)).items():
            total[name] = total.get(name, ZERO) + value
    for container in spec.get("initContainers") or []:
        own = _resource_list((container.get("resources") or {}).get(bucket))
        if container.get("restartPolicy") == "Always":
            for name, value in own.items():
                total[name] = total.get(name, ZERO) + value
                restartable[name] = restartable.get(name, ZERO) + value
            own = dict(restartable)
        else:
            own = {
                n: own.get(n, ZERO) + restartable.get(n, ZERO) for n in set(own) | set(restartable)
            }
        for name, value in own.items():
            if name not in init_max or value.value > init_max[name].value:
                init_max[name] = value
    for name, value in init_max.items():
        if name not in total or value.value > total[name].value:
            total[name] = value
    if overhead and bucket == "requests":
        for name, value in _resource_list(spec.get("overhead")).items():
            total[name] = total.get(name, ZERO) + value
    return total


def limit_range_problem(pod: Obj, limit_range: Obj) -> str | None:
    """PodValidateLimitFunc: min, max and maxLimitRequestRatio per Container and per Pod."""
    spec = pod.get("spec") or {}
    problems: list[str | None] = []
    checks = (
        ("min", _min_problem),
        ("max", _max_problem),
        ("maxLimitRequestRatio", _ratio_problem),
    )
    for item in _limit_items(limit_range):
        kind = str(item["type"])
        if kind == "Container":
            targets = [
                (
                    _resource_list((c.get("resources") or {}).get("requests")),
                    _resource_list((c.get("resources") or {}).get("limits")),
                )
                for group in ("containers", "initContainers")
                for c in spec.get(group) or []
            ]
        elif kind == "Pod":
            targets = [
                (
                    _pod_totals(spec, "requests", overhead=False),
                    _pod_totals(spec, "limits", overhead=False),
                )
            ]
        else:
            continue
        for requests, limits in targets:
            for key, check in checks:
                for name in sorted(item[key]):
                    problems.append(
                        check(kind, name, Quantity.parse(item[key][name]), requests, limits)
                    )
    found = [p for p in problems if p]
    return _aggregate(found) if found else None


# ResourceQuota: staging/src/k8s.io/apiserver/pkg/admission/plugin/resourcequota/controller.go
# (CheckRequest; "exceeded quota: ..." with prettyPrint: name=value sorted, comma-separated),
# the pod evaluator pkg/quota/v1/evaluator/core/pods.go (podResources, validationSet,
# Constraints, PodUsageFunc, QuotaV1Pod), the service evaluator
# pkg/quota/v1/evaluator/core/services.go, the object-count aliases of
# pkg/quota/v1/evaluator/core/registry.go and the generic object-count evaluator
# staging/src/k8s.io/apiserver/pkg/quota/v1/generic/evaluator.go (count/<resource>.<group>;
# create only). Pods are evaluated on create (updates only through the resize subresource).
POD_QUOTA_RESOURCES = frozenset(
    {
        "count/pods",
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "pods",
    }
)
QUOTA_VALIDATION_SET = frozenset(
    {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}
)
SERVICE_QUOTA_RESOURCES = frozenset(
    {"count/services", "services", "services.loadbalancers", "services.nodeports"}
)
# pkg/quota/v1/evaluator/core/persistent_volume_claims.go: pvcResources, refined per class as
# <class>.storageclass.storage.k8s.io/<resource>; evaluated on create and on update.
PVC_QUOTA_RESOURCES = frozenset({"persistentvolumeclaims", "requests.storage"})
LEGACY_COUNT_NAMES = {
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "ResourceQuota": "resourcequotas",
}
ONE = Quantity(Fraction(1))


def quota_resources(resource: Resource) -> frozenset[str]:
    """The quota resource names an evaluator answers for (MatchingResources)."""
    names = {f"count/{resource.qualified}"}
    if resource.kind == "Pod":
        names |= POD_QUOTA_RESOURCES
    if resource.kind == "Service":
        names |= SERVICE_QUOTA_RESOURCES
    if resource.kind in LEGACY_COUNT_NAMES:
        names.add(LEGACY_COUNT_NAMES[resource.kind])
    if resource.key == PVC_KEY:
        names |= PVC_QUOTA_RESOURCES
    return frozenset(names)


def matching_resources(resource: Resource, names: Any) -> set[str]:
    """MatchingResources: the names of ``names`` the resource's evaluator answers for (for
    claims also any ``<class>.storageclass.storage.k8s.io/<pvc resource>``)."""
    own = quota_resources(resource)
    found = {str(n) for n in names if n in own}
    if resource.key == PVC_KEY:
        for name in names:
            prefix, sep, rest = str(name).partition(CLASS_QUOTA_SUFFIX)
            if sep and prefix and rest in PVC_QUOTA_RESOURCES:
                found.add(str(name))
    return found


def _parse_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def pod_counts(pod: Obj, moment: float) -> bool:
    """QuotaV1Pod: a pod in phase Succeeded or Failed is not charged; a pod being deleted is
    charged until deletionTimestamp + deletionGracePeriodSeconds has passed."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    meta = pod.get("metadata") or {}
    stamp, grace = meta.get("deletionTimestamp"), meta.get("deletionGracePeriodSeconds")
    return not (stamp and grace is not None and moment > _parse_time(stamp) + int(grace))


def quota_usage(resource: Resource, obj: Obj, moment: float) -> dict[str, Quantity]:
    """What one object uses (PodUsageFunc for pods; services; object counts)."""
    usage = {f"count/{resource.qualified}": ONE}
    if resource.kind in LEGACY_COUNT_NAMES:
        usage[LEGACY_COUNT_NAMES[resource.kind]] = ONE
    spec = _mapping(obj.get("spec"))
    if resource.kind == "Service":
        usage["services"] = ONE
        kind = spec.get("type", "ClusterIP")
        if kind == "LoadBalancer":
            usage["services.loadbalancers"] = ONE
        if kind in ("NodePort", "LoadBalancer"):
            usage["services.nodeports"] = Quantity(Fraction(len(spec.get("ports") or [])))
    if resource.key == PVC_KEY:
        usage |= pvc_usage(obj)
    if resource.kind == "Pod" and pod_counts(obj, moment):
        usage["pods"] = ONE
        requests = _pod_totals(spec, "requests", overhead=True)
        limits = _pod_totals(spec, "limits", overhead=True)
        for name in ("cpu", "memory", "ephemeral-storage"):
            if name in requests:
                usage[name] = usage[f"requests.{name}"] = requests[name]
            if name in limits:
                usage[f"limits.{name}"] = limits[name]
    return usage


def pvc_usage(claim: Obj) -> dict[str, Quantity]:
    """pvcEvaluator.Usage: one claim, and its storage request (the allocated size when that
    is larger; rounded up to whole bytes), both also per storage class."""
    usage = {"persistentvolumeclaims": ONE}
    class_name = claim_class(claim)
    if class_name:
        usage[f"{class_name}{CLASS_QUOTA_SUFFIX}persistentvolumeclaims"] = ONE
    storage = claim_storage(claim)
    allocated = _mapping(_mapping(claim.get("status")).get("allocatedResources"))
    if storage is not None and "storage" in allocated:
        given = Quantity.parse(allocated["storage"])
        storage = given if given.value > storage.value else storage
    if storage is not None:
        whole = -((-storage.value) // 1)
        storage = storage if whole == storage.value else Quantity(Fraction(whole), storage.format)
        usage["requests.storage"] = storage
        if class_name:
            usage[f"{class_name}{CLASS_QUOTA_SUFFIX}requests.storage"] = storage
    return usage


def quota_constraints(pod: Obj, required: set[str]) -> str | None:
    """podEvaluator.Constraints: a quota on cpu or memory needs every container to set it."""
    missing: dict[str, set[str]] = {}
    spec = pod.get("spec") or {}
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        resources = container.get("resources") or {}
        has = {"pods"}
        for name in ("cpu", "memory"):
            if name in (resources.get("requests") or {}):
                has |= {name, f"requests.{name}"}
            if name in (resources.get("limits") or {}):
                has.add(f"limits.{name}")
        for name in required & QUOTA_VALIDATION_SET - has:
            missing.setdefault(name, set()).add(str(container.get("name", "")))
    if not missing:
        return None
    parts = [f"{name} for: {','.join(sorted(missing[name]))}" for name in sorted(missing)]
    return f"must specify {'; '.join(parts)}"


def quota_matches(resource: Resource, obj: Obj, quota: Obj) -> bool:
    """Whether a quota's scopes (spec.scopes, spec.scopeSelector) take in an object: only pods
    have scopes (podMatchesScopeFunc); the object-count evaluators match no scope
    (generic.MatchesNoScopeFunc). CrossNamespacePodAffinity is not implemented (no match)."""
    spec = _mapping(quota.get("spec"))
    scopes = [(str(name), "Exists", []) for name in spec.get("scopes") or []]
    for expression in _mapping(spec.get("scopeSelector")).get("matchExpressions") or []:
        scopes.append(
            (
                str(expression.get("scopeName")),
                str(expression.get("operator")),
                list(expression.get("values") or []),
            )
        )
    if not scopes:
        return True
    if resource.kind != "Pod":
        return False
    pod_spec = _mapping(obj.get("spec"))
    deadline = pod_spec.get("activeDeadlineSeconds")
    terminating = isinstance(deadline, int) and deadline >= 0
    # pkg/apis/core/v1/helper/qos/qos.go: BestEffort when no container asks for cpu or memory
    best_effort = not any(
        name in ((container.get("resources") or {}).get(bucket) or {})
        for _, container in _containers(pod_spec)
        for bucket in ("requests", "limits")
        for name in ("cpu", "memory")
    )
    priority = str(pod_spec.get("priorityClassName") or "")
    for name, operator, values in scopes:
        if name == "PriorityClass":
            matched = {
                "Exists": bool(priority),
                "DoesNotExist": not priority,
                "In": bool(priority) and priority in values,
                "NotIn": not priority or priority not in values,
            }.get(operator, False)
        else:
            matched = {
                "Terminating": terminating,
                "NotTerminating": not terminating,
                "BestEffort": best_effort,
                "NotBestEffort": not best_effort,
            }.get(name, False)
        if not matched:
            return False
    return True


def pretty(values: dict[str, Quantity]) -> str:
    return ",".join(f"{name}={values[name]}" for name in sorted(values))


# ---- storage: PersistentVolumeClaims, PersistentVolumes, StorageClasses ---------------------
# Validation: pkg/apis/core/validation/validation.go (ValidatePersistentVolumeClaimSpec,
# ValidatePersistentVolumeClaimUpdate, ValidatePersistentVolumeSpec) and
# pkg/apis/storage/validation/validation.go (ValidateStorageClass, ValidateStorageClassUpdate).
# Defaults: pkg/apis/core/v1/defaults.go (SetDefaults_PersistentVolumeClaim{,Spec},
# SetDefaults_PersistentVolume), pkg/apis/storage/v1/defaults.go (SetDefaults_StorageClass),
# and the strategies' PrepareForCreate, which drop a status sent on create
# (pkg/registry/core/persistentvolumeclaim/strategy.go, .../persistentvolume/strategy.go).

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
VOLUME_MODES = ("Block", "Filesystem")
RECLAIM_POLICIES = ("Delete", "Retain")
BINDING_MODES = ("Immediate", "WaitForFirstConsumer")
BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
CLASS_QUOTA_SUFFIX = ".storageclass.storage.k8s.io/"


def _supported(values: tuple[str, ...]) -> str:
    return "supported values: " + ", ".join(json.dumps(v) for v in values)


def claim_class(claim: Obj) -> str:
    """k8s.io/component-helpers/storage/volume GetPersistentVolumeClaimClass: the beta
    annotation first, then spec.storageClassName ("" for none)."""
    annotations = _mapping(claim.get("metadata")).get("annotations") or {}
    if BETA_CLASS_ANNOTATION in annotations:
        return str(annotations[BETA_CLASS_ANNOTATION])
    return str(_mapping(claim.get("spec")).get("storageClassName") or "")


def claim_storage(claim: Obj) -> Quantity | None:
    requests = _mapping(_mapping(_mapping(claim.get("spec")).get("resources")).get("requests"))
    return Quantity.parse(requests["storage"]) if "storage" in requests else None


def claim_capacity(claim: Obj) -> Quantity | None:
    capacity = _mapping(_mapping(claim.get("status")).get("capacity"))
    return Quantity.parse(capacity["storage"]) if "storage" in capacity else None


def storage_defaults(resource: Resource, obj: Obj, *, create: bool) -> None:
    """What decoding defaults and PrepareForCreate do to the storage kinds."""
    if resource.group == "storage.k8s.io" and resource.kind == "StorageClass":
        obj.setdefault("reclaimPolicy", "Delete")
        obj.setdefault("volumeBindingMode", "Immediate")
        return
    if resource.group or resource.kind not in ("PersistentVolumeClaim", "PersistentVolume"):
        return
    spec = obj.get("spec")
    if isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")
        if resource.kind == "PersistentVolume":
            spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    if create:
        obj["status"] = {"phase": "Pending"}


def _access_mode_errors(modes: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    modes = modes if isinstance(modes, list) else []
    if not modes:
        errors.append(
            FieldError("FieldValueRequired", path, "", "at least 1 access mode is required")
        )
    for mode in modes:
        if mode not in ACCESS_MODES:
            errors.append(
                FieldError("FieldValueNotSupported", path, mode, _supported(ACCESS_MODES))
            )
    if "ReadWriteOncePod" in modes and any(m in ACCESS_MODES[:3] for m in modes):
        errors.append(
            FieldError(
                "FieldValueForbidden",
                path,
                "",
                "may not use ReadWriteOncePod with other access modes",
            )
        )
    return errors


def _pvc_spec_errors(spec: Obj) -> list[FieldError]:
    """ValidatePersistentVolumeClaimSpec, in its order (the storage request's path is
    spec.resources[storage], as the Go code builds it)."""
    errors = _access_mode_errors(spec.get("accessModes"), "spec.accessModes")
    requests = _mapping(_mapping(spec.get("resources")).get("requests"))
    if "storage" not in requests:
        errors.append(FieldError("FieldValueRequired", "spec.resources[storage]"))
    else:
        storage = Quantity.parse(requests["storage"])
        if storage.value <= 0:
            errors.append(
                _bad("spec.resources[storage]", str(storage), "must be greater than zero")
            )
    class_name = spec.get("storageClassName")
    if class_name:
        errors += [
            _bad("spec.storageClassName", class_name, m) for m in dns1123_subdomain(class_name)
        ]
    mode = spec.get("volumeMode")
    if mode is not None and mode not in VOLUME_MODES:
        errors.append(
            FieldError("FieldValueNotSupported", "spec.volumeMode", mode, _supported(VOLUME_MODES))
        )
    return errors


def _spec_diff(old: Obj, new: Obj) -> str:
    """The changed fields, one ``-``/``+`` pair each. The real message carries go-cmp's
    cmp.Diff of the Go structs here, which the fake does not reproduce."""
    lines = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            lines.append(f"-\t{key}: {_go_value(old.get(key))}")
            lines.append(f"+\t{key}: {_go_value(new.get(key))}")
    return "\n".join(lines)


def pvc_errors(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidatePersistentVolumeClaim on create; ValidatePersistentVolumeClaimUpdate on update:
    the spec is immutable except spec.volumeName (set once, by the PV controller), a
    storageClassName set where there was none, and resources.requests of a Bound claim; a
    request may shrink (RecoverVolumeExpansionFailure, GA and locked on since 1.34) only to
    above status.capacity ("field can not be less than status.capacity"); with the gate off
    it was "field can not be less than previous value"."""
    spec = _mapping(obj.get("spec"))
    errors = _pvc_spec_errors(spec)
    if old is None:
        return errors
    old_spec = copy.deepcopy(_mapping(old.get("spec")))
    new_spec = copy.deepcopy(spec)
    if not old_spec.get("volumeName"):
        old_spec.pop("volumeName", None)
        new_spec.pop("volumeName", None)
    old_annotations = _mapping(old["metadata"].get("annotations"))
    new_class = new_spec.get("storageClassName")
    if (
        "storageClassName" not in old_spec
        and new_class is not None
        and old_annotations.get(BETA_CLASS_ANNOTATION, new_class) == new_class
    ):
        new_spec.pop("storageClassName")
    bound = _mapping(old.get("status")).get("phase") == "Bound"  # the status kept on update
    if bound:
        for one in (old_spec, new_spec):
            requests = _mapping(_mapping(one.get("resources")).get("requests"))
            requests.pop("storage", None)
    for one in (old_spec, new_spec):
        one.pop("volumeAttributesClassName", None)
    if new_spec != old_spec:
        errors.append(
            FieldError(
                "FieldValueForbidden",
                "spec",
                "",
                "spec is immutable after creation except resources.requests and "
                f"volumeAttributesClassName for bound claims\n{_spec_diff(old_spec, new_spec)}",
            )
        )
    old_size, new_size = claim_storage(old), claim_storage(obj)
    capacity = claim_capacity(old) or ZERO
    shrinks = old_size is not None and new_size is not None and new_size.value < old_size.value
    if shrinks and new_size is not None and new_size.value <= capacity.value:
        errors.append(
            FieldError(
                "FieldValueForbidden",
                "spec.resources.requests.storage",
                "",
                "field can not be less than status.capacity",
            )
        )
    old_mode, new_mode = old_spec.get("volumeMode"), new_spec.get("volumeMode")
    if old_mode != new_mode:
        errors.append(_bad("volumeMode", new_mode, "field is immutable"))
    return errors


def pv_errors(obj: Obj) -> list[FieldError]:
    """ValidatePersistentVolumeSpec, the parts the stand-in's provisioner relies on: access
    modes, spec.capacity with storage only, a positive size, reclaim policy, volume mode."""
    spec = _mapping(obj.get("spec"))
    errors = _access_mode_errors(spec.get("accessModes"), "spec.accessModes")
    capacity = _mapping(spec.get("capacity"))
    if not capacity:
        errors.append(FieldError("FieldValueRequired", "spec.capacity"))
    for name in sorted(capacity):
        if name != "storage":
            errors.append(
                FieldError(
                    "FieldValueNotSupported", "spec.capacity", name, _supported(("storage",))
                )
            )
        elif Quantity.parse(capacity[name]).value <= 0:
            errors.append(
                _bad("spec.capacity[storage]", capacity[name], "must be greater than zero")
            )
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy not in (*RECLAIM_POLICIES, "Recycle"):
        errors.append(
            FieldError(
                "FieldValueNotSupported",
                "spec.persistentVolumeReclaimPolicy",
                policy,
                _supported(("Delete", "Recycle", "Retain")),
            )
        )
    return errors


def storage_class_errors(obj: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateStorageClass and, on update, ValidateStorageClassUpdate."""
    errors: list[FieldError] = []
    provisioner = obj.get("provisioner")
    if not provisioner:
        errors.append(FieldError("FieldValueRequired", "provisioner"))
    else:
        errors += [
            _bad("provisioner", provisioner, m) for m in qualified_name(str(provisioner).lower())
        ]
    for key in _mapping(obj.get("parameters")):
        if not key:
            errors.append(_bad("parameters", key, "field can not be empty."))
    policy = obj.get("reclaimPolicy")
    if policy and policy not in RECLAIM_POLICIES:
        errors.append(
            FieldError(
                "FieldValueNotSupported", "reclaimPolicy", policy, _supported(RECLAIM_POLICIES)
            )
        )
    mode = obj.get("volumeBindingMode")
    if mode not in BINDING_MODES:
        errors.append(
            FieldError(
                "FieldValueNotSupported", "volumeBindingMode", mode, _supported(BINDING_MODES)
            )
        )
    if old is None:
        return errors
    if (old.get("parameters") or {}) != (obj.get("parameters") or {}):
        errors.append(
            FieldError(
                "FieldValueForbidden", "parameters", "", "updates to parameters are forbidden."
            )
        )
    if old.get("provisioner") != provisioner:
        errors.append(
            FieldError(
                "FieldValueForbidden", "provisioner", "", "updates to provisioner are forbidden."
            )
        )
    if old.get("reclaimPolicy") != policy:
        errors.append(
            FieldError(
                "FieldValueForbidden",
                "reclaimPolicy",
                "",
                "updates to reclaimPolicy are forbidden.",
            )
        )
    if old.get("volumeBindingMode") != mode:
        errors.append(_bad("volumeBindingMode", mode, "field is immutable"))
    return errors


def default_storage_class(classes: list[Obj]) -> str | None:
    """pkg/volume/util/storageclass.go GetDefaultClass: of the classes annotated
    storageclass.kubernetes.io/is-default-class "true", the newest (then by name)."""
    defaults = [
        c
        for c in classes
        if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
    ]
    if not defaults:
        return None
    defaults.sort(key=lambda c: str(c["metadata"]["name"]))
    defaults.sort(key=lambda c: str(c["metadata"].get("creationTimestamp", "")), reverse=True)
    return str(defaults[0]["metadata"]["name"])


# pkg/controlplane/controller/systemnamespaces/system_namespaces_controller.go creates these;
# staging/src/k8s.io/apiserver/pkg/admission/plugin/namespace/lifecycle/admission.go Register
# refuses to delete the first three.
INITIAL_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# staging/src/k8s.io/apimachinery/pkg/util/rand/rand.go: what generateName appends.
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def namespace_defaults(obj: Obj, old: Obj | None) -> None:
    """pkg/registry/core/namespace/strategy.go: on create status.phase Active and the
    "kubernetes" finalizer in spec.finalizers (PrepareForCreate), on update the finalizers
    stay (PrepareForUpdate); always the kubernetes.io/metadata.name label, set when the body
    is decoded (pkg/apis/core/v1/defaults.go SetDefaults_Namespace), so validated too."""
    meta = obj["metadata"]
    meta["labels"] = (meta.get("labels") or {}) | {NAMESPACE_NAME_LABEL: meta.get("name", "")}
    spec = _mapping(obj.get("spec"))
    if old is None:
        finalizers = list(spec.get("finalizers") or [])
        obj["spec"] = spec | {"finalizers": finalizers or ["kubernetes"]}
        obj.setdefault("status", {"phase": "Active"})
    elif (old.get("spec") or {}).get("finalizers"):
        obj["spec"] = spec | {"finalizers": list(old["spec"]["finalizers"])}


def _stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the store and the server ---------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    rv: int
    key: Key
    type: str
    obj: Obj  # stored objects are never mutated in place, so events share them
    old: Obj | None


@dataclass
class _Snapshot:
    rv: int
    items: list[Obj]
    keys: list[str]  # _sort_key of each item, to find where a continue token starts


@dataclass
class _Failure:
    status: int
    times: int
    path_contains: str


@dataclass
class _LogLine:
    ts: float
    text: str


def _identity(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace", ""), meta["name"])


def _spec_of(obj: Obj | None) -> Obj:
    if obj is None:
        return {}
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _truthy(value: str | None) -> bool:
    return value in ("1", "true", "True")


def _terminated_instance(pod: Obj, container: str, *, previous: bool) -> bool:
    """Whether a log request reads the container's last terminated instance (else its
    current one), or the 400 the kubelet answers: pkg/kubelet/kubelet_pods.go
    ``validateContainerLogStatus``, on the container's status in the pod."""
    name = pod["metadata"]["name"]
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    status = next((s for s in statuses if s.get("name") == container), None)
    last = ((status or {}).get("lastState") or {}).get("terminated") or {}
    where = f'container "{container}" in pod "{name}"'
    if previous:
        if not last.get("containerID"):
            raise ApiError(400, f"previous terminated {where} not found")
        return True
    if not statuses:
        return False  # a pod a test wrote, with no kubelet: its current log
    if status is None:
        raise ApiError(400, f"{where} is not available")
    state = status.get("state") or {}
    if "running" in state:
        return False
    if "terminated" in state and (state["terminated"] or {}).get("containerID"):
        return False
    if "terminated" in state or last:
        if not last.get("containerID"):
            raise ApiError(400, f"{where} is terminated")
        return True
    if "waiting" in state:
        reason = str((state["waiting"] or {}).get("reason", ""))
        reason = {
            "ErrImagePull": "image can't be pulled",
            "ImagePullBackOff": "trying and failing to pull image",
        }.get(reason, reason)
        raise ApiError(400, f"{where} is waiting to start: {reason}")
    raise ApiError(400, f"{where} is waiting to start - no logs yet")


def _encode_continue(snapshot: str | None, start: str, rv: int) -> str:
    token = {"v": "meta.k8s.io/v1", "rv": rv, "start": start, "snapshot": snapshot}
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[str | None, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if data.get("v") != "meta.k8s.io/v1" or not isinstance(data.get("start"), str):
            raise ValueError("unknown continue token version")
        return data.get("snapshot"), data["start"]
    except (ValueError, TypeError, AttributeError) as exc:
        raise ApiError(400, f"continue key is not valid: {exc}") from exc


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _sort_key(obj: Obj) -> str:
    namespace, name = _identity(obj)
    return f"{namespace}/{name}" if namespace else name


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeKube


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes: without this, Nagle + delayed ACK
        # add ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._connection(self.connection, open_=True)

    def finish(self) -> None:
        self.server.fake._connection(self.connection, open_=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.fake._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.fake._handle(self, "POST")

    def do_PUT(self) -> None:
        self.server.fake._handle(self, "PUT")

    def do_PATCH(self) -> None:
        self.server.fake._handle(self, "PATCH")

    def do_DELETE(self) -> None:
        self.server.fake._handle(self, "DELETE")


@dataclass
class _Request:
    handler: _Handler
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    content_type: str = field(default="")
    warnings: list[str] = field(default_factory=list)

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise ApiError(400, f"the body of the request could not be decoded: {exc}") from exc


class FakeKube:
    """The fake API server; see the module docstring for what it does and does not do."""

    def __init__(
        self, *, token: str | None = None, history: int = 1000, bookmark_interval: float = 1.0
    ) -> None:
        self.token = token
        self.delay = 0.0
        self.metrics_enabled = True
        self.bookmark_interval = bookmark_interval
        self._lock = threading.Condition(threading.RLock())
        self._objects: dict[Key, dict[tuple[str, str], Obj]] = {}
        self._rv = 0
        self._events: deque[_Event] = deque(maxlen=history)
        self._compacted = 0
        self._snapshots: OrderedDict[str, _Snapshot] = OrderedDict()
        self._encodings: dict[tuple[Key, tuple[str, str]], tuple[Obj, bytes]] = {}
        self._metrics_encodings: dict[tuple[str, str], tuple[Obj, Any, bytes, bytes]] = {}
        self._watch_epoch = 0  # drop_watches() ends the watches of earlier epochs
        self._logs: dict[tuple[str, str, str], list[_LogLine]] = {}
        self._previous_logs: dict[tuple[str, str, str], list[_LogLine]] = {}
        self._log_stamp = 0.0  # the moment of the last log line written
        self._metrics: dict[tuple[str, str], tuple[str, dict[str, dict[str, str]]]] = {}
        self._requests: list[tuple[str, str, dict[str, str]]] = []
        self._failures: list[_Failure] = []
        self._connections: set[socket.socket] = set()
        self._log_streams = 0  # follow log requests being served right now
        self._closing = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # Every warning a write drew: (kind, namespace/name or name, text).
        self.warnings: list[tuple[str, str, str]] = []
        # The time admission and graceful deletion use (seconds since the epoch).
        self.clock: Callable[[], float] = time.time
        self._syncing = False
        with self._lock:
            for name in INITIAL_NAMESPACES:
                initial: Obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                namespace_defaults(initial, None)
                self._commit(NAMESPACE_KEY, initial, None)

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> FakeKube:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.name = "kubefake"
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        with self._lock:
            self._closing = True
            self._lock.notify_all()
            connections = list(self._connections)
        self._server.shutdown()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> FakeKube:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeKube is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def kubeconfig(self, path: Path | str, *, namespace: str = "default") -> Path:
        """Write a kubeconfig for this server (JSON is YAML); returns the path."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake-user", "user": {"token": self.token or "fake-token"}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake-user", "namespace": namespace},
                }
            ],
            "current-context": "fake",
            "preferences": {},
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return target

    # ---- the Python side: state ---------------------------------------------------------

    @property
    def resource_version(self) -> str:
        """The newest resourceVersion (what a LIST answers now)."""
        with self._lock:
            return str(self._rv)

    def apply(self, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Create or replace by apiVersion/kind/namespace/name; returns the stored object.

        ``dry_run``: everything a request with ``?dryRun=All`` goes through (validation and
        admission, errors raised alike), nothing stored; returns the object as it would be.

        The server owns uid, creationTimestamp, resourceVersion and generation (+1 when
        anything but metadata/status changes). A body without ``status`` keeps the stored
        status, one without ``metadata.finalizers`` keeps the stored finalizers (as a
        controller's server-side apply would); a deletionTimestamp is never undone.
        """
        new = copy.deepcopy(obj)
        key: Key = (new["apiVersion"], new["kind"])
        meta = new.setdefault("metadata", {})
        resource = BY_KEY.get(key)
        if resource is not None and resource.namespaced:
            meta.setdefault("namespace", "default")
        elif resource is not None:
            meta.pop("namespace", None)
        with self._lock:
            old = self._objects.get(key, {}).get(_identity(new)) if meta.get("name") else None
            if old is not None:
                if "status" not in new and "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                if "finalizers" not in meta and "finalizers" in old["metadata"]:
                    meta["finalizers"] = list(old["metadata"]["finalizers"])
            if resource is not None:
                unknown = unknown_fields(resource, new)
                if unknown:
                    raise typed_patch_error(resource, new, unknown)
                self._admit(resource, new, old, [])
            if dry_run:
                return copy.deepcopy(new)
            stored = self._commit(key, new, old)
            # The latest version: a ResourceQuota comes back with the status just computed.
            return copy.deepcopy(self._objects.get(key, {}).get(_identity(stored), stored))

    def set_status(
        self, api_version: str, kind: str, namespace: str | None, name: str, status: Obj
    ) -> Obj:
        """Replace ``.status`` (no generation change); KeyError when there is no such object."""
        key = (api_version, kind)
        with self._lock:
            old = self._objects.get(key, {}).get((namespace or "", name))
            if old is None:
                raise KeyError(f"{kind} {namespace}/{name} does not exist")
            new = copy.deepcopy(old)
            new["status"] = copy.deepcopy(status)
            return copy.deepcopy(self._commit(key, new, old))

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        with self._lock:
            found = self._objects.get((api_version, kind), {}).get((namespace or "", name))
            return copy.deepcopy(found) if found is not None else None

    def items(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
        """Every stored object of a kind (in one namespace when given), sorted like a LIST."""
        with self._lock:
            found = [
                copy.deepcopy(o)
                for o in self._objects.get((api_version, kind), {}).values()
                if namespace is None or o["metadata"].get("namespace", "") == namespace
            ]
        return sorted(found, key=_sort_key)

    def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        graceful: bool = False,
    ) -> Obj | None:
        """Remove an object (a Namespace takes its contents along); None when absent.

        ``graceful``: the first call only sets metadata.deletionTimestamp (the object is
        still listed: the "deleting"/"Terminating" state), a second call removes it.
        """
        key = (api_version, kind)
        if key == NAMESPACE_KEY and name in IMMORTAL_NAMESPACES:
            raise forbidden(BY_KEY[key], name, "this namespace may not be deleted")
        with self._lock:
            old = self._objects.get(key, {}).get((namespace or "", name))
            if old is None:
                return None
            if graceful and "deletionTimestamp" not in old["metadata"]:
                return copy.deepcopy(self._mark_deleted(key, old))
            return copy.deepcopy(self._remove(key, old))

    def compact(self) -> None:
        """Forget the watch history and every list snapshot (like an etcd compaction)."""
        with self._lock:
            self._events.clear()
            self._compacted = self._rv
            self._snapshots.clear()
            self._lock.notify_all()

    def drop_watches(self) -> None:
        """End every watch stream now, cleanly, as an API server does at its shutdown (or a
        load balancer between): a client must watch again from its last resourceVersion
        (https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes)."""
        with self._lock:
            self._watch_epoch += 1
            self._lock.notify_all()

    def set_logs(self, namespace: str, pod: str, container: str, lines: list[str]) -> None:
        """The current log of a container: ``lines`` replace what it had, each line stamped
        now (one after the other)."""
        with self._lock:
            stamped = [_LogLine(self._next_log_stamp(), line) for line in lines]
            self._logs[(namespace, pod, container)] = stamped
            self._lock.notify_all()

    def append_log(self, namespace: str, pod: str, container: str, line: str) -> None:
        with self._lock:
            self._logs.setdefault((namespace, pod, container), []).append(
                _LogLine(self._next_log_stamp(), line)
            )
            self._lock.notify_all()

    def terminate_log(self, namespace: str, pod: str, container: str) -> None:
        """The container's current instance terminated: its log becomes the previous one,
        replacing the one before (the kubelet keeps only the last terminated instance, the
        one ``lastState.terminated`` names), and the next instance's log starts empty."""
        with self._lock:
            key = (namespace, pod, container)
            self._previous_logs[key] = self._logs.pop(key, [])
            self._lock.notify_all()

    def _next_log_stamp(self) -> float:
        """Now, but after the last line written (by 2 µs, so the two differ once written in
        microseconds); the caller holds the lock."""
        self._log_stamp = max(time.time(), self._log_stamp + 2e-6)
        return self._log_stamp

    def set_metrics(self, namespace: str, pod: str, containers: dict[str, dict[str, str]]) -> None:
        """Usage per container, e.g. ``{"app": {"cpu": "250m", "memory": "300Mi"}}``.

        Served as PodMetrics while the pod exists (metrics-server only reports live pods).
        """
        with self._lock:
            self._metrics[(namespace, pod)] = (now(), copy.deepcopy(containers))

    # ---- the Python side: requests and faults -------------------------------------------

    @property
    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        """Every request so far: (method, path, query with the last value per key)."""
        with self._lock:
            return list(self._requests)

    @property
    def open_log_streams(self) -> int:
        """Follow log requests being served now (a client that left ends its own)."""
        with self._lock:
            return self._log_streams

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def fail_next(self, status: int, times: int = 1, path_contains: str = "") -> None:
        """Answer the next ``times`` requests whose path contains ``path_contains`` with
        an error Status of that code (no Retry-After header: urllib3 would retry silently)."""
        with self._lock:
            self._failures.append(_Failure(status, times, path_contains))

    def heal(self) -> None:
        """Forget the failures ``fail_next`` injected and no request used yet."""
        with self._lock:
            self._failures = []

    # ---- the Python side: many objects at once, for scripts/bench.py only -----------------

    def bulk_load_for_bench(self, objects: list[Obj]) -> None:
        """Store many objects at once, as if created one by one long ago: for the benchmark
        only (``apply`` runs admission, keeps quotas current and copies every object, which
        takes minutes for 100,000 objects). Nothing is checked: no validation, admission,
        namespace lifecycle or quota (their namespaces must exist all the same), and nothing
        is copied: the objects are handed over and must not be touched afterwards. Each
        gets what a create gives it (uid, creationTimestamp, resourceVersion, generation)
        and an ADDED event, and is encoded for lists at once."""
        stamp = now()
        with self._lock:
            for obj in objects:
                key: Key = (obj["apiVersion"], obj["kind"])
                resource = BY_KEY[key]
                meta = obj["metadata"]
                if (key != NAMESPACE_KEY and resource.namespaced) and (
                    ("", meta["namespace"]) not in self._objects.get(NAMESPACE_KEY, {})
                ):
                    raise ApiError(404, f'namespaces "{meta["namespace"]}" not found')
                meta["uid"] = str(uuid.uuid4())
                meta.setdefault("creationTimestamp", stamp)
                if key[1] not in NO_GENERATION:
                    meta.setdefault("generation", 1)
                self._rv += 1
                meta["resourceVersion"] = str(self._rv)
                self._objects.setdefault(key, {})[_identity(obj)] = obj
                self._record(key, "ADDED", obj, None)
                self._encoded(resource, obj)

    def bulk_metrics_for_bench(
        self, entries: list[tuple[str, str, dict[str, dict[str, str]]]]
    ) -> None:
        """``set_metrics`` for many pods at once, (namespace, pod, containers) each, without
        copying: for the benchmark only."""
        stamp = now()
        with self._lock:
            for namespace, pod, containers in entries:
                self._metrics[(namespace, pod)] = (stamp, containers)

    # ---- store internals (callers hold the lock) ----------------------------------------

    def _commit(self, key: Key, new: Obj, old: Obj | None) -> Obj:
        meta = new.setdefault("metadata", {})
        new_kind = key[1]
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            meta.pop("generation", None)
            if new_kind not in NO_GENERATION:
                meta["generation"] = 1
            meta.pop("deletionTimestamp", None)
            meta.pop("deletionGracePeriodSeconds", None)
        else:
            old_meta = old["metadata"]
            meta["uid"] = old_meta["uid"]
            meta["creationTimestamp"] = old_meta["creationTimestamp"]
            for field_name in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                if field_name in old_meta:
                    meta[field_name] = old_meta[field_name]
                else:
                    meta.pop(field_name, None)
            if "generation" in old_meta:
                changed = _spec_of(new) != _spec_of(old)
                meta["generation"] = old_meta["generation"] + (1 if changed else 0)
            else:
                meta.pop("generation", None)
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self._objects.setdefault(key, {})[_identity(new)] = new
        self._record(key, "ADDED" if old is None else "MODIFIED", new, old)
        # Removing the last finalizer of an object being deleted completes the delete.
        finalized = old is not None and old["metadata"].get("finalizers")
        if "deletionTimestamp" in meta and finalized and not meta.get("finalizers"):
            self._remove(key, new)
        self._sync_quotas(key, str(meta.get("namespace") or ""))
        return new

    def _mark_deleted(self, key: Key, old: Obj) -> Obj:
        """Graceful deletion: staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go
        BeforeDelete sets deletionTimestamp = now + grace period; a Pod's grace period is
        spec.terminationGracePeriodSeconds (default 30), or 0 when it is not scheduled or has
        finished (pkg/registry/core/pod/strategy.go CheckGracefulDelete)."""
        new = copy.deepcopy(old)
        grace = 0
        if key == POD_KEY:
            spec, phase = old.get("spec") or {}, (old.get("status") or {}).get("phase")
            if spec.get("nodeName") and phase not in ("Succeeded", "Failed"):
                grace = int(spec.get("terminationGracePeriodSeconds", 30))
        new["metadata"]["deletionTimestamp"] = _stamp(self.clock() + grace)
        new["metadata"]["deletionGracePeriodSeconds"] = grace
        if key[1] == "Namespace":
            new["status"] = {"phase": "Terminating"}
        self._rv += 1
        new["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[key][_identity(new)] = new
        self._record(key, "MODIFIED", new, old)
        self._sync_quotas(key, namespace=str(new["metadata"].get("namespace") or ""))
        return new

    def _remove(self, key: Key, old: Obj) -> Obj:
        namespace, name = _identity(old)
        self._objects[key].pop((namespace, name), None)
        self._encodings.pop((key, (namespace, name)), None)
        self._rv += 1
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._record(key, "DELETED", gone, old)
        if key == ("v1", "Pod"):
            self._metrics.pop((namespace, name), None)
            self._metrics_encodings.pop((namespace, name), None)
            for logs in (self._logs, self._previous_logs):
                for log_key in [k for k in logs if k[:2] == (namespace, name)]:
                    del logs[log_key]
        if key == ("v1", "Namespace"):
            for other_key, objects in list(self._objects.items()):
                for inner in sorted(objects.values(), key=_sort_key):
                    if inner["metadata"].get("namespace") == name:
                        self._remove(other_key, inner)
        self._sync_quotas(key, namespace)
        return gone

    def _in_namespace(self, key: Key, namespace: str) -> list[Obj]:
        found = self._objects.get(key, {}).values()
        return sorted(
            (o for o in found if o["metadata"].get("namespace") == namespace), key=_sort_key
        )

    def _quota_used(self, quota: Obj, names: set[str], moment: float) -> dict[str, Quantity]:
        """A quota's usage as the quota controller sums it (generic CalculateUsageStats:
        every object of the namespace in storage that the quota's scopes take in)."""
        namespace = str(quota["metadata"]["namespace"])
        used = dict.fromkeys(names, ZERO)
        for resource in RESOURCES:
            if not resource.namespaced or not matching_resources(resource, names):
                continue
            for obj in self._in_namespace(resource.key, namespace):
                if not quota_matches(resource, obj, quota):
                    continue
                for name, value in quota_usage(resource, obj, moment).items():
                    if name in used:
                        used[name] = used[name] + value
        return used

    def _sync_quotas(self, key: Key, namespace: str) -> None:
        """The resource quota controller (pkg/controller/resourcequota/
        resource_quota_controller.go syncResourceQuota): status.hard is spec.hard and
        status.used the namespace's usage; recomputed here after every change in the
        namespace (a terminating pod's grace period running out is no change)."""
        if self._syncing or not namespace or key == NAMESPACE_KEY:
            return
        if ("", namespace) not in self._objects.get(NAMESPACE_KEY, {}):
            return  # the namespace is being removed with everything in it
        self._syncing = True
        try:
            moment = self.clock()
            for quota in self._in_namespace(QUOTA_KEY, namespace):
                try:
                    hard = _resource_list((quota.get("spec") or {}).get("hard"))
                except ValueError:
                    continue
                used = self._quota_used(quota, set(hard), moment)
                status = {
                    "hard": {name: str(hard[name]) for name in sorted(hard)},
                    "used": {name: str(used[name]) for name in sorted(used)},
                }
                if quota.get("status") != status:
                    self._commit(QUOTA_KEY, copy.deepcopy(quota) | {"status": status}, quota)
        finally:
            self._syncing = False

    # ---- admission (callers hold the lock) ----------------------------------------------

    def _admit(self, resource: Resource, obj: Obj, old: Obj | None, warnings: list[str]) -> None:
        """Take a create (``old`` None) or an update of the whole object through what
        kube-apiserver does before it stores it, in its order: decoding (400), mutating
        admission (NamespaceLifecycle 404/403, LimitRanger defaults, DefaultStorageClass,
        StorageObjectInUseProtection), name generation, the Namespace strategy, validation
        (422), warnings (appended to ``warnings`` and to ``self.warnings``), validating
        admission (LimitRanger 403, PersistentVolumeClaimResize 403, ResourceQuota 403).
        Raises ApiError; may change ``obj`` as the real mutations do."""
        create = old is None
        meta = obj["metadata"]
        _decode_errors(resource, obj)
        storage_defaults(resource, obj, create=create)
        namespace = str(meta.get("namespace") or "")
        if resource.namespaced and namespace:
            self._namespace_lifecycle(resource, obj, create=create)
        if create and resource.kind == "Pod":
            for limit_range in self._in_namespace(LIMIT_RANGE_KEY, namespace):
                _limit_defaults(obj, limit_range)
        if create and resource.key in (PVC_KEY, PV_KEY):
            self._storage_mutations(resource, obj)
        if create and not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choice(NAME_ALPHABET) for _ in range(5))
            meta["name"] = f"{meta['generateName']}{suffix}"
        if resource.kind == "Namespace":
            namespace_defaults(obj, old)
        name = str(meta.get("name") or "")
        errors = _validation_errors(resource, obj, old)
        if errors:
            raise invalid(resource, name, errors)
        if create or _spec_of(obj) != _spec_of(old):
            where = f"{namespace}/{name}" if resource.namespaced else name
            for text in pod_warnings(resource, obj):
                warnings.append(text)
                self.warnings.append((resource.kind, where, text))
        if not create:
            if resource.key == PVC_KEY:
                self._resize_admit(resource, obj, old)
                self._quota_admit(resource, obj, old)
            return
        if resource.kind == "Pod":
            for limit_range in self._in_namespace(LIMIT_RANGE_KEY, namespace):
                problem = limit_range_problem(obj, limit_range)
                if problem:
                    raise forbidden(resource, name, problem)
        if resource.namespaced and namespace:
            self._quota_admit(resource, obj)

    def _storage_mutations(self, resource: Resource, obj: Obj) -> None:
        """On create: DefaultStorageClass (plugin/pkg/admission/storage/storageclass/
        setdefault/admission.go: a claim with neither spec.storageClassName nor the beta
        annotation gets the default class, if there is one; "" is a choice and stays) and
        StorageObjectInUseProtection (plugin/pkg/admission/storage/
        storageobjectinuseprotection/admission.go: the kubernetes.io/pvc-protection or
        kubernetes.io/pv-protection finalizer)."""
        meta = obj["metadata"]
        if resource.key == PVC_KEY:
            spec = obj.get("spec")
            annotations = meta.get("annotations") or {}
            if (
                isinstance(spec, dict)
                and "storageClassName" not in spec
                and BETA_CLASS_ANNOTATION not in annotations
            ):
                classes = list(self._objects.get(STORAGE_CLASS_KEY, {}).values())
                chosen = default_storage_class(classes)
                if chosen is not None:
                    spec["storageClassName"] = chosen
        finalizer = PVC_PROTECTION if resource.key == PVC_KEY else PV_PROTECTION
        finalizers = list(meta.get("finalizers") or [])
        if finalizer not in finalizers:
            meta["finalizers"] = [*finalizers, finalizer]

    def _resize_admit(self, resource: Resource, obj: Obj, old: Obj | None) -> None:
        """PersistentVolumeClaimResize (plugin/pkg/admission/storage/persistentvolume/resize/
        admission.go Validate): a larger storage request needs a Bound claim, and the same
        non-empty class before and after, a StorageClass that exists and says
        allowVolumeExpansion: true."""
        if old is None:
            return
        new_size, old_size = claim_storage(obj), claim_storage(old)
        if new_size is None or (old_size is not None and new_size.value <= old_size.value):
            return
        name = str(obj["metadata"]["name"])
        if _mapping(old.get("status")).get("phase") != "Bound":
            raise forbidden(resource, name, "Only bound persistent volume claims can be expanded")
        class_name, old_class = claim_class(obj), claim_class(old)
        found = self._objects.get(STORAGE_CLASS_KEY, {}).get(("", class_name))
        if (
            not class_name
            or class_name != old_class
            or found is None
            or found.get("allowVolumeExpansion") is not True
        ):
            raise forbidden(
                resource,
                name,
                "only dynamically provisioned pvc can be resized and the storageclass that "
                "provisions the pvc must support resize",
            )

    def _namespace_lifecycle(self, resource: Resource, obj: Obj, *, create: bool) -> None:
        """staging/src/k8s.io/apiserver/pkg/admission/plugin/namespace/lifecycle/admission.go:
        nothing is created or updated in a namespace that does not exist (404 for the
        namespace); nothing is created in one being terminated (403). Exempt: cluster-scoped
        resources, Namespaces themselves, deletes and localsubjectaccessreviews."""
        meta = obj["metadata"]
        namespace = str(meta["namespace"])
        found = self._objects.get(NAMESPACE_KEY, {}).get(("", namespace))
        if found is None:
            raise not_found(BY_KEY[NAMESPACE_KEY], namespace)
        if create and (found.get("status") or {}).get("phase") == "Terminating":
            cause = {
                "reason": "NamespaceTerminating",
                "message": f"namespace {namespace} is being terminated",
                "field": "metadata.namespace",
            }
            raise forbidden(
                resource,
                str(meta.get("name") or ""),
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
                causes=[cause],
            )

    def _quota_admit(self, resource: Resource, obj: Obj, old: Obj | None = None) -> None:
        """ResourceQuota admission (controller.go CheckRequest): every quota of the
        namespace that tracks something this object uses must still fit it. The usage it
        adds to is recomputed now, not read from a status that may be stale. On an update
        (claims only: the other evaluators here answer creates) only what grows is charged
        (quota.SubtractWithNonNegativeResult against the old object)."""
        meta = obj["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        quotas = self._in_namespace(QUOTA_KEY, namespace)
        if not quotas:
            return
        moment = self.clock()
        usage = quota_usage(resource, obj, moment)
        negative = sorted(k for k, v in usage.items() if v.value < 0)
        if negative:
            raise forbidden(
                resource, name, f"quota usage is negative for resource(s): {','.join(negative)}"
            )
        tracked: list[tuple[Obj, dict[str, Quantity]]] = []
        for quota in quotas:
            hard = _resource_list((quota.get("spec") or {}).get("hard"))
            restricted = matching_resources(resource, hard)
            if not restricted or not quota_matches(resource, obj, quota):
                continue
            quota_name = quota["metadata"]["name"]
            if resource.kind == "Pod":
                problem = quota_constraints(obj, restricted)
                if problem:
                    raise forbidden(resource, name, f"failed quota: {quota_name}: {problem}")
            tracked.append((quota, hard))
        if old is not None:
            before = quota_usage(resource, old, moment)
            usage = {
                k: Quantity(max(v.value - before.get(k, ZERO).value, Fraction(0)), v.format)
                for k, v in usage.items()
            }
        delta = {k: v for k, v in usage.items() if v.value}
        for quota, hard in tracked:
            requested = {k: v for k, v in delta.items() if k in hard}
            if not requested:
                continue
            quota_name = quota["metadata"]["name"]
            used = self._quota_used(quota, set(requested), moment)
            exceeded = {k for k in requested if (used[k] + requested[k]).value > hard[k].value}
            if exceeded:
                shown = [pretty({k: v[k] for k in exceeded}) for v in (requested, used, hard)]
                raise forbidden(
                    resource,
                    name,
                    f"exceeded quota: {quota_name}, requested: {shown[0]}, used: {shown[1]}, "
                    f"limited: {shown[2]}",
                )

    def _record(self, key: Key, type_: str, obj: Obj, old: Obj | None) -> None:
        if self._events.maxlen is not None and len(self._events) == self._events.maxlen:
            self._compacted = self._events[0].rv
        self._events.append(_Event(self._rv, key, type_, obj, old))
        self._lock.notify_all()

    def _connection(self, conn: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # ---- HTTP ---------------------------------------------------------------------------

    def _handle(self, handler: _Handler, method: str) -> None:
        split = urlsplit(handler.path)
        path = "/" + "/".join(p for p in split.path.split("/") if p)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        content_type = (handler.headers.get("Content-Type") or "").split(";")[0].strip()
        request = _Request(handler, method, path, query, body, content_type)
        with self._lock:
            self._requests.append((method, path, dict(query)))
        try:
            self._authorize(handler)
            if self.delay:
                time.sleep(self.delay)
            self._inject(path)
            self._route(request)
        except ApiError as exc:
            self._send(handler, exc.code, exc.body, warnings=request.warnings)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
        except Exception as exc:  # a bug in the fake: say so on the wire
            self._send(handler, 500, status_object(500, f"kubefake: {exc!r}"))

    def _authorize(self, handler: _Handler) -> None:
        if self.token and handler.headers.get("Authorization") != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized")

    def _inject(self, path: str) -> None:
        with self._lock:
            for failure in self._failures:
                if failure.path_contains in path and failure.times > 0:
                    failure.times -= 1
                    self._failures = [f for f in self._failures if f.times > 0]
                    raise ApiError(failure.status, f"kubefake: injected {failure.status}")

    def _send(
        self,
        handler: _Handler,
        code: int,
        body: Any,
        *,
        content_type: str = "application/json",
        warnings: list[str] | None = None,
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for text in warnings or []:
            handler.send_header("Warning", warning_header(text))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, request: _Request) -> None:
        parts = request.path.split("/")[1:]
        if request.path == "/version":
            return self._send(request.handler, 200, KUBE_VERSION)
        if parts == ["api"]:
            return self._send(request.handler, 200, self._api_versions(request))
        if parts == ["apis"]:
            return self._send(request.handler, 200, self._group_list())
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) == 2:
            return self._send(request.handler, 200, self._group(parts[1]))
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, NOT_FOUND_PATH, details={})
        if group == METRICS.group:
            return self._serve_metrics(request, version, rest)
        if not rest:
            return self._send(request.handler, 200, self._resource_list(group, version))
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and (group, version, rest[2]) in BY_PATH:
            namespace, resource, tail = rest[1], BY_PATH[(group, version, rest[2])], rest[3:]
            if not resource.namespaced:
                raise ApiError(404, NOT_FOUND_PATH, details={})
        elif (group, version, rest[0]) in BY_PATH:
            resource, tail = BY_PATH[(group, version, rest[0])], rest[1:]
            if resource.namespaced and tail:
                raise ApiError(404, NOT_FOUND_PATH, details={})
        else:
            raise ApiError(404, NOT_FOUND_PATH, details={})
        if len(tail) > 2 or (len(tail) == 2 and tail[1] not in resource.subresources):
            raise ApiError(404, NOT_FOUND_PATH, details={})
        name = tail[0] if tail else None
        sub = tail[1] if len(tail) == 2 else None
        return self._dispatch(request, resource, namespace, name, sub)

    def _dispatch(
        self,
        request: _Request,
        resource: Resource,
        namespace: str | None,
        name: str | None,
        sub: str | None,
    ) -> None:
        method = request.method
        if name is None and method == "GET":
            if _truthy(request.query.get("watch")):
                return self._watch(request, resource, namespace)
            return self._send(request.handler, 200, self._list(request, resource, namespace))
        if name is None and method == "POST":
            created = self._create(request, resource, namespace)
            return self._send(request.handler, 201, created, warnings=request.warnings)
        if name is not None and sub == "log" and method == "GET":
            return self._pod_log(request, namespace or "", name)
        if name is not None and sub in (None, "status"):
            if method == "GET":
                found = self.get(resource.api_version, resource.kind, namespace, name)
                if found is None:
                    raise not_found(resource, name)
                return self._send(request.handler, 200, found)
            status_only = sub == "status"
            if method == "PUT":
                body = self._replace(request, resource, namespace, name, status_only=status_only)
                return self._send(request.handler, 200, body, warnings=request.warnings)
            if method == "PATCH":
                body = self._patch(request, resource, namespace, name, status_only=status_only)
                return self._send(request.handler, 200, body, warnings=request.warnings)
            if method == "DELETE" and sub is None:
                return self._send(
                    request.handler, 200, self._delete(request, resource, namespace, name)
                )
        raise ApiError(405, "the server does not allow this method on the requested resource")

    # ---- discovery ------------------------------------------------------------------------

    def _api_versions(self, request: _Request) -> Obj:
        host = urlsplit(self.url).netloc
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
        }

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for resource in RESOURCES:
            if resource.group and resource.version not in groups.get(resource.group, []):
                groups.setdefault(resource.group, []).append(resource.version)
        if self.metrics_enabled:
            groups[METRICS.group] = [METRICS.version]
        return groups

    def _group(self, name: str) -> Obj:
        versions = self._groups().get(name)
        if not versions:
            raise ApiError(404, NOT_FOUND_PATH, details={})
        listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": name,
            "versions": listed,
            "preferredVersion": listed[0],
        }

    def _group_list(self) -> Obj:
        groups = [self._group(name) for name in self._groups()]
        for group in groups:
            del group["kind"], group["apiVersion"]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def _resource_list(self, group: str, version: str) -> Obj:
        served = [r for r in RESOURCES if (r.group, r.version) == (group, version)]
        if group == METRICS.group and version == METRICS.version and self.metrics_enabled:
            served = [METRICS]
        if not served:
            raise ApiError(404, NOT_FOUND_PATH, details={})
        listed: list[Obj] = []
        for resource in served:
            verbs = ["get", "list"] if resource is METRICS else VERBS
            entry: Obj = {
                "name": resource.plural,
                "singularName": resource.kind.lower(),
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": verbs,
            }
            if resource.short_names:
                entry["shortNames"] = list(resource.short_names)
            listed.append(entry)
            for sub in resource.subresources:
                sub_verbs = ["get"] if sub == "log" else ["get", "patch", "update"]
                listed.append(
                    {
                        "name": f"{resource.plural}/{sub}",
                        "singularName": "",
                        "namespaced": resource.namespaced,
                        "kind": resource.kind,
                        "verbs": sub_verbs,
                    }
                )
        group_version = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": listed,
        }

    # ---- read -----------------------------------------------------------------------------

    def _list(self, request: _Request, resource: Resource, namespace: str | None) -> bytes:
        match = _matcher(resource, namespace, request.query)
        try:
            limit = int(request.query.get("limit") or 0)
        except ValueError as exc:
            raise ApiError(400, f"invalid limit: {exc}") from exc
        token = request.query.get("continue")
        snapshot_id: str | None = None
        with self._lock:
            if token:
                snapshot_id, start = _decode_continue(token)
                snapshot = self._snapshots.get(snapshot_id) if snapshot_id else None
                if snapshot_id and snapshot is None:
                    raise ApiError(
                        410,
                        TOO_OLD_CONTINUE,
                        reason="Expired",
                        metadata={"continue": _encode_continue(None, start, self._rv)},
                    )
                if snapshot is not None:
                    rv, items, keys = snapshot.rv, snapshot.items, snapshot.keys
                else:  # an inconsistent continuation: the current state from `start` on
                    rv, items = self._rv, self._matching(resource, match)
                    keys = [_sort_key(i) for i in items]
                first = bisect.bisect_left(keys, start)
                items, keys = items[first:], keys[first:]
            else:
                rv, items = self._rv, self._matching(resource, match)
                keys = [_sort_key(i) for i in items]
            page, rest = (items[:limit], items[limit:]) if limit > 0 else (items, [])
            meta: Obj = {"resourceVersion": str(rv)}
            if rest:
                if snapshot_id is None or snapshot_id not in self._snapshots:
                    snapshot_id = uuid.uuid4().hex
                    self._snapshots[snapshot_id] = _Snapshot(rv, items, keys)
                    while len(self._snapshots) > SNAPSHOTS:
                        self._snapshots.popitem(last=False)
                meta["continue"] = _encode_continue(snapshot_id, keys[limit], rv)
                meta["remainingItemCount"] = len(rest)
        kind = f"{resource.kind}List"
        head = {"kind": kind, "apiVersion": resource.api_version, "metadata": meta}
        encoded = b",".join(self._encoded(resource, item) for item in page)
        return _compact(head)[:-1] + b',"items":[' + encoded + b"]}"

    def _encoded(self, resource: Resource, item: Obj) -> bytes:
        """A list item as JSON, encoded once per stored version of the object (stored
        objects are replaced, never changed in place), as compact as a real server's."""
        key = (resource.key, _identity(item))
        cached = self._encodings.get(key)
        if cached is not None and cached[0] is item:
            return cached[1]
        data = _compact(self._list_item(resource, item))
        self._encodings[key] = (item, data)
        return data

    def _matching(self, resource: Resource, match: Callable[[Obj], bool]) -> list[Obj]:
        found = [o for o in self._objects.get(resource.key, {}).values() if match(o)]
        return sorted(found, key=_sort_key)

    @staticmethod
    def _list_item(resource: Resource, item: Obj) -> Obj:
        if resource.custom:
            return item
        return {k: v for k, v in item.items() if k not in ("apiVersion", "kind")}

    # ---- write ----------------------------------------------------------------------------

    def _incoming(self, request: _Request, resource: Resource, namespace: str | None) -> Obj:
        obj = request.json()
        if not isinstance(obj, dict):
            raise ApiError(400, "the body of the request must be an object")
        api_version = obj.setdefault("apiVersion", resource.api_version)
        obj.setdefault("kind", resource.kind)
        if api_version != resource.api_version or obj["kind"] != resource.kind:
            raise ApiError(
                400,
                f"the API version in the data ({api_version}) does not match the expected "
                f"API version ({resource.api_version})"
                if api_version != resource.api_version
                else f"the kind in the data ({obj['kind']}) does not match {resource.kind}",
            )
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "metadata must be an object")
        if resource.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiError(
                    400,
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request",
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        drop_unknown_fields(resource, obj, request)
        return obj

    def _create(self, request: _Request, resource: Resource, namespace: str | None) -> Obj:
        obj = self._incoming(request, resource, namespace)
        meta = obj["metadata"]
        for owned in ("uid", "resourceVersion", "generation", "creationTimestamp"):
            meta.pop(owned, None)
        with self._lock:
            self._admit(resource, obj, None, request.warnings)  # names a generateName too
            if _identity(obj) in self._objects.get(resource.key, {}):
                raise ApiError(
                    409,
                    f'{resource.qualified} "{meta["name"]}" already exists',
                    reason="AlreadyExists",
                    details=_details(resource, meta["name"]),
                )
            return copy.deepcopy(self._commit(resource.key, obj, None))

    def _existing(self, resource: Resource, namespace: str | None, name: str) -> Obj:
        old = self._objects.get(resource.key, {}).get((namespace or "", name))
        if old is None:
            raise not_found(resource, name)
        return old

    def _finish_update(
        self,
        resource: Resource,
        old: Obj,
        new: Obj,
        *,
        status_only: bool,
        name: str,
        warnings: list[str],
    ) -> Obj:
        wanted = str(new.get("metadata", {}).get("resourceVersion") or "")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise conflict(resource, name)
        if status_only:
            result = copy.deepcopy(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            result = new
            result["apiVersion"], result["kind"] = old["apiVersion"], old["kind"]
            meta = result.setdefault("metadata", {})
            meta["name"] = old["metadata"]["name"]
            if "namespace" in old["metadata"]:
                meta["namespace"] = old["metadata"]["namespace"]
            if "status" in resource.subresources:
                if "status" in old:
                    result["status"] = copy.deepcopy(old["status"])
                else:
                    result.pop("status", None)
            # /status writes keep the stored metadata and spec, so only these are admitted.
            self._admit(resource, result, old, warnings)
        return copy.deepcopy(self._commit(resource.key, result, old))

    def _replace(
        self,
        request: _Request,
        resource: Resource,
        namespace: str | None,
        name: str,
        *,
        status_only: bool,
    ) -> Obj:
        obj = self._incoming(request, resource, namespace)
        if obj["metadata"].get("name") not in (None, name):
            raise ApiError(
                400,
                f"the name of the object ({obj['metadata']['name']}) does not match the name "
                f"on the URL ({name})",
            )
        with self._lock:
            old = self._existing(resource, namespace, name)
            return self._finish_update(
                resource, old, obj, status_only=status_only, name=name, warnings=request.warnings
            )

    def _patch(
        self,
        request: _Request,
        resource: Resource,
        namespace: str | None,
        name: str,
        *,
        status_only: bool,
    ) -> Obj:
        kind = request.content_type
        if kind == "application/strategic-merge-patch+json" and resource.custom:
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml",
            )
        if kind not in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/json-patch+json",
        ):
            raise ApiError(415, f"kubefake: patch type {kind!r} is not implemented")
        patch = request.json()
        with self._lock:
            old = self._existing(resource, namespace, name)
            if kind == "application/json-patch+json":
                patched = json_patch(old, patch)
            else:
                if not isinstance(patch, dict):
                    raise ApiError(400, "a merge patch must be a JSON object")
                patched = merge_patch(copy.deepcopy(old), patch)
            if not isinstance(patched, dict):
                raise ApiError(422, "the patched object is not an object")
            drop_unknown_fields(resource, patched, request)
            return self._finish_update(
                resource,
                old,
                patched,
                status_only=status_only,
                name=name,
                warnings=request.warnings,
            )

    def _delete(
        self, request: _Request, resource: Resource, namespace: str | None, name: str
    ) -> Obj:
        options = request.json() or {}
        preconditions = options.get("preconditions") or {} if isinstance(options, dict) else {}
        if resource.key == NAMESPACE_KEY and name in IMMORTAL_NAMESPACES:
            raise forbidden(resource, name, "this namespace may not be deleted")
        with self._lock:
            old = self._existing(resource, namespace, name)
            for field_name, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                wanted, actual = preconditions.get(field_name), old["metadata"][field_name]
                if wanted and wanted != actual:
                    raise ApiError(
                        409,
                        f"Precondition failed: {label} in precondition: {wanted}, {label} in "
                        f"object meta: {actual}",
                        details=_details(resource, name),
                    )
            if old["metadata"].get("finalizers"):
                if "deletionTimestamp" in old["metadata"]:
                    return copy.deepcopy(old)
                return copy.deepcopy(self._mark_deleted(resource.key, old))
            gone = self._remove(resource.key, old)
        if resource.custom or resource.kind == "Pod":
            return copy.deepcopy(gone)
        details = _details(resource, name) | {"uid": gone["metadata"]["uid"]}
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }

    # ---- streams: watch and logs ----------------------------------------------------------

    @staticmethod
    def _start_stream(handler: _Handler, content_type: str) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("Cache-Control", "no-cache, private")
        handler.end_headers()

    @staticmethod
    def _chunk(handler: _Handler, data: bytes) -> None:
        if data:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    @staticmethod
    def _end_stream(handler: _Handler) -> None:
        with contextlib.suppress(OSError):
            handler.wfile.write(b"0\r\n\r\n")

    @staticmethod
    def _client_gone(handler: _Handler) -> bool:
        sock = handler.connection
        try:
            poller = select.poll()  # not select(): descriptors above 1024 in busy tests
            poller.register(sock, select.POLLIN)
            readable = poller.poll(0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _watch(self, request: _Request, resource: Resource, namespace: str | None) -> None:
        match = _matcher(resource, namespace, request.query)
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        bookmarks = _truthy(request.query.get("allowWatchBookmarks"))
        since = request.query.get("resourceVersion", "")
        if since not in ("", "0") and not since.isdigit():
            raise ApiError(400, f"invalid resource version: {since}")
        handler = request.handler
        deadline = time.monotonic() + timeout
        with self._lock:
            epoch = self._watch_epoch
            if since in ("", "0"):
                initial = [("ADDED", o) for o in self._matching(resource, match)]
                last = self._rv
            else:
                initial, last = [], int(since)
        self._start_stream(handler, "application/json")
        try:
            self._send_events(handler, initial)
            last_sent = time.monotonic()
            while True:
                with self._lock:
                    self._lock.wait_for(partial(self._woken, last, epoch), timeout=STREAM_TICK)
                    if self._closing or self._watch_epoch != epoch:
                        break
                    if last < self._compacted:
                        expired = status_object(
                            410, f"too old resource version: {last} ({self._compacted + 1})"
                        )
                        self._send_events(handler, [("ERROR", expired)])
                        break
                    events = [e for e in self._events if e.rv > last and e.key == resource.key]
                    last = self._rv
                translated = [t for t in (self._translate(e, match) for e in events) if t]
                self._send_events(handler, translated)
                moment = time.monotonic()
                if translated:
                    last_sent = moment
                elif bookmarks and moment - last_sent >= self.bookmark_interval:
                    bookmark = {
                        "kind": resource.kind,
                        "apiVersion": resource.api_version,
                        "metadata": {"resourceVersion": str(last)},
                    }
                    self._send_events(handler, [("BOOKMARK", bookmark)])
                    last_sent = moment
                if moment >= deadline or self._client_gone(handler):
                    break
        except OSError:
            handler.close_connection = True
            return
        self._end_stream(handler)

    def _woken(self, last: int, epoch: int = -1) -> bool:
        return (
            self._closing
            or self._rv > last
            or last < self._compacted
            or epoch not in (-1, self._watch_epoch)
        )

    @staticmethod
    def _translate(event: _Event, match: Callable[[Obj], bool]) -> tuple[str, Obj] | None:
        now_matches = match(event.obj)
        if event.type != "MODIFIED":
            return (event.type, event.obj) if now_matches else None
        was_matching = event.old is not None and match(event.old)
        if now_matches:
            return ("MODIFIED" if was_matching else "ADDED", event.obj)
        return ("DELETED", event.obj) if was_matching else None

    def _send_events(self, handler: _Handler, events: list[tuple[str, Obj]]) -> None:
        for type_, obj in events:
            line = json.dumps({"type": type_, "object": obj}) + "\n"
            self._chunk(handler, line.encode())

    def _pod_log(self, request: _Request, namespace: str, name: str) -> None:
        pods = BY_PATH[("", "v1", "pods")]
        query = request.query
        with self._lock:
            pod = self._existing(pods, namespace, name)
        containers = [c.get("name", "") for c in pod.get("spec", {}).get("containers", [])]
        container = query.get("container", "")
        if not container and len(containers) == 1:
            container = containers[0]
        elif not container:
            raise ApiError(
                400,
                f"a container name must be specified for pod {name}, choose one of: "
                f"[{' '.join(containers)}]",
            )
        elif container not in containers:
            raise ApiError(400, f"container {container} is not valid for pod {name}")
        terminated = _terminated_instance(pod, container, previous=_truthy(query.get("previous")))
        try:
            tail = int(query["tailLines"]) if query.get("tailLines") else None
            since = float(query["sinceSeconds"]) if query.get("sinceSeconds") else None
        except ValueError as exc:
            raise ApiError(400, f"invalid log options: {exc}") from exc
        stamps = _truthy(query.get("timestamps"))
        key = (namespace, name, container)

        def render(lines: list[_LogLine]) -> bytes:
            if stamps:
                return "".join(f"{_nano(line.ts)} {line.text}\n" for line in lines).encode()
            return "".join(f"{line.text}\n" for line in lines).encode()

        logs = self._previous_logs if terminated else self._logs
        with self._lock:
            lines = list(logs.get(key, []))
        sent = len(lines)
        if since is not None:
            lines = [line for line in lines if line.ts >= time.time() - since]
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        handler = request.handler
        if not _truthy(query.get("follow")) or terminated:  # a terminated log is complete
            return self._send(handler, 200, render(lines), content_type="text/plain")
        self._start_stream(handler, "text/plain")
        with self._lock:
            self._log_streams += 1
        try:
            self._chunk(handler, render(lines))
            while True:
                with self._lock:
                    self._lock.wait(timeout=STREAM_TICK)
                    current = self._objects.get(pods.key, {}).get((namespace, name))
                    alive = (
                        current is not None and current["metadata"]["uid"] == pod["metadata"]["uid"]
                    )
                    fresh = list(self._logs.get(key, []))[sent:]
                    sent += len(fresh)
                    closing = self._closing
                self._chunk(handler, render(fresh))
                if closing or not alive or self._client_gone(handler):
                    break
        except OSError:
            handler.close_connection = True
            return
        finally:
            with self._lock:
                self._log_streams -= 1
        self._end_stream(handler)

    # ---- metrics.k8s.io -------------------------------------------------------------------

    def _serve_metrics(self, request: _Request, version: str, rest: list[str]) -> None:
        if not self.metrics_enabled or version != METRICS.version:
            raise ApiError(404, NOT_FOUND_PATH, details={})
        if not rest:
            return self._send(request.handler, 200, self._resource_list(METRICS.group, version))
        if rest[0] == "namespaces" and len(rest) in (3, 4) and rest[2] == "pods":
            namespace: str | None = rest[1]
            name = rest[3] if len(rest) == 4 else None
        elif rest == ["pods"]:
            namespace, name = None, None
        else:
            raise ApiError(404, NOT_FOUND_PATH, details={})
        if request.method != "GET":
            raise ApiError(405, "the server does not allow this method on the requested resource")
        if name is not None:
            for item in self._pod_metrics(namespace):
                if item["metadata"]["name"] == name:
                    return self._send(request.handler, 200, item)
            raise ApiError(
                404, f'podmetrics.metrics.k8s.io "{name}" not found', details={"name": name}
            )
        if _truthy(request.query.get("watch")):
            # metrics-server installs no watch (https://github.com/kubernetes-sigs/metrics-server/issues/87):
            # the generic API server answers a watch of a storage without one 405
            # (k8s.io/apiserver/pkg/endpoints/handlers/get.go ListResource)
            raise ApiError(405, "the server does not allow this method on the requested resource")
        match = _matcher(METRICS, namespace, request.query)
        stamp = json.dumps(now()).encode()
        parts: list[bytes] = []
        with self._lock:
            pods = self._objects.get(POD_KEY, {})
            for (pod_namespace, pod_name), entry in sorted(self._metrics.items()):
                pod = pods.get((pod_namespace, pod_name))
                if pod is None or namespace not in (None, pod_namespace):
                    continue
                labels = pod["metadata"].get("labels") or {}
                meta = {"name": pod_name, "namespace": pod_namespace, "labels": labels}
                if match({"metadata": meta}):
                    head, tail = self._metrics_encoded(pod, entry)
                    parts.append(head + stamp + tail)
        envelope = {"kind": "PodMetricsList", "apiVersion": METRICS.api_version, "metadata": {}}
        body = _compact(envelope)[:-1] + b',"items":[' + b",".join(parts) + b"]}"
        return self._send(request.handler, 200, body)

    def _metrics_encoded(
        self, pod: Obj, entry: tuple[str, dict[str, dict[str, str]]]
    ) -> tuple[bytes, bytes]:
        """A PodMetrics list item as JSON around its creationTimestamp (metrics-server sets
        it to the time of the request), encoded once per version of the pod and its usage."""
        key = _identity(pod)
        cached = self._metrics_encodings.get(key)
        if cached is not None and cached[0] is pod and cached[1] is entry:
            return cached[2], cached[3]
        marker = "\x00stamp\x00"
        item = self._list_item(METRICS, self._metrics_item(pod, entry, marker))
        head, tail = _compact(item).split(_compact(marker))
        self._metrics_encodings[key] = (pod, entry, head, tail)
        return head, tail

    def _pod_metrics(self, namespace: str | None) -> list[Obj]:
        found: list[Obj] = []
        with self._lock:
            pods = self._objects.get(("v1", "Pod"), {})
            entries = sorted(self._metrics.items())
            for (pod_namespace, pod_name), (stamp, containers) in entries:
                pod = pods.get((pod_namespace, pod_name))
                if pod is None or namespace not in (None, pod_namespace):
                    continue
                found.append(self._metrics_item(pod, (stamp, containers), now()))
        return found

    @staticmethod
    def _metrics_item(pod: Obj, entry: tuple[str, dict[str, dict[str, str]]], created: str) -> Obj:
        stamp, containers = entry
        return {
            "kind": METRICS.kind,
            "apiVersion": METRICS.api_version,
            "metadata": {
                "name": pod["metadata"]["name"],
                "namespace": pod["metadata"]["namespace"],
                "creationTimestamp": created,
                "labels": dict(pod["metadata"].get("labels") or {}),
            },
            "timestamp": stamp,
            "window": "15s",
            "containers": [
                {"name": cname, "usage": dict(usage)} for cname, usage in containers.items()
            ],
        }
