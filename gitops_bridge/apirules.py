"""The API server's own rules that the OpenAPI schemas do not check, as pure functions.

A manifest can pass every JSON schema and still be refused (or warned about) when it is
applied: label and annotation syntax, name formats per kind, quantities. Each function takes
plain data and returns problems as text (``[]`` when there are none), each naming where it
is, what is wrong and what is allowed; ``object_problems`` runs every rule on one object.

Sources (Kubernetes): kubernetes/apimachinery ``pkg/util/validation/validation.go``
(``IsQualifiedName``, ``IsValidLabelValue``, ``IsDNS1123Label``, ``IsDNS1123Subdomain``,
``IsDNS1035Label``; since 1.34 the label rules live in ``pkg/api/validate/content/kube.go``),
``pkg/api/validation/objectmeta.go`` (``ValidateAnnotations``), kubernetes/kubernetes
``pkg/apis/core/validation/validation.go`` (``ValidateResourceRequirements``),
``pkg/api/pod/warnings.go`` (fractional byte values). Helm: helm/helm
``pkg/chartutil/validate_name.go`` (``ValidateReleaseName``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from gitops_bridge import quantity

Obj = dict[str, Any]

# validation.go: dns1123LabelFmt, dns1123SubdomainFmt, dns1035LabelFmt and their max lengths.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
# kube.go: labelKeyFmt (the name part of a qualified name) and labelValueFmt, both max 63.
LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
LABEL_NAME_MAX = 63
LABEL_VALUE_MAX = 63
# objectmeta.go: TotalAnnotationSizeLimitB, keys plus values.
ANNOTATIONS_MAX_BYTES = 256 * 1024
# validate_name.go: maxReleaseNameLen, and the release name must be a DNS subdomain.
RELEASE_NAME_MAX = 53

LABEL_NAME_RULE = "a-z, A-Z, 0-9, '-', '_', '.'; start and end alphanumeric; max 63"
LABEL_VALUE_RULE = f"empty or {LABEL_NAME_RULE}"
SUBDOMAIN_RULE = "a DNS subdomain (a-z, 0-9, '-', '.'; start and end alphanumeric)"

# Where a pod template sits in each workload kind (group, kind) -> path to the template.
POD_TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("apps", "Deployment"): ("spec", "template"),
    ("apps", "ReplicaSet"): ("spec", "template"),
    ("apps", "StatefulSet"): ("spec", "template"),
    ("apps", "DaemonSet"): ("spec", "template"),
    ("batch", "Job"): ("spec", "template"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
    ("", "ReplicationController"): ("spec", "template"),
    ("", "PodTemplate"): ("template",),
}


# --- labels and annotations ------------------------------------------------------------


def label_key(key: str) -> list[str]:
    """``IsQualifiedName``: ``[prefix/]name``, prefix a DNS subdomain, name a label name."""
    if key.count("/") > 1:
        return [f"at most one '/' (an optional DNS subdomain prefix, then a name), got {key!r}"]
    prefix, slash, name = key.rpartition("/")
    problems = []
    if slash:
        if not prefix:
            problems.append("prefix part must not be empty")
        elif not DNS_SUBDOMAIN.fullmatch(prefix) or len(prefix) > DNS_SUBDOMAIN_MAX:
            problems.append(f"prefix part must be {SUBDOMAIN_RULE}; max {DNS_SUBDOMAIN_MAX}")
    if not name:
        problems.append("name part must not be empty")
    elif not LABEL_NAME.fullmatch(name) or len(name) > LABEL_NAME_MAX:
        problems.append(f"name part must be {LABEL_NAME_RULE}")
    return problems


def label_value(value: str) -> list[str]:
    """``IsValidLabelValue``."""
    if value == "" or (LABEL_NAME.fullmatch(value) and len(value) <= LABEL_VALUE_MAX):
        return []
    return [f"must be {LABEL_VALUE_RULE}"]


def label_set(mapping: object, where: str) -> list[str]:
    """``ValidateLabels``: every key a qualified name, every value a label value."""
    if not isinstance(mapping, dict):
        return []
    problems = []
    for key, value in mapping.items():
        for problem in label_key(str(key)):
            problems.append(f"{where} key {key!r}: {problem}")
        if isinstance(value, str):
            for problem in label_value(value):
                problems.append(f"{where}[{key!r}] = {value!r}: label value {problem}")
    return problems


def annotation_set(mapping: object, where: str) -> list[str]:
    """``ValidateAnnotations``: keys are qualified names (checked lowercased), total size."""
    if not isinstance(mapping, dict):
        return []
    problems = [
        f"{where} key {key!r}: {problem}"
        for key in mapping
        for problem in label_key(str(key).lower())
    ]
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in mapping.items())
    if size > ANNOTATIONS_MAX_BYTES:
        problems.append(
            f"{where}: {size} bytes of keys and values, the limit is {ANNOTATIONS_MAX_BYTES}"
        )
    return problems


# --- names -------------------------------------------------------------------------------


def dns_problem(
    where: str, value: str, *, pattern: re.Pattern[str], rule: str, limit: int
) -> list[str]:
    if pattern.fullmatch(value) and len(value) <= limit:
        return []
    return [f"{where} {value!r}: must be {rule}; start and end alphanumeric; max {limit}"]


def object_name(*, group: str, kind: str, name: str) -> list[str]:
    """metadata.name as the API server checks it for the kind (the common cases).

    Namespace: DNS label (``ValidateNamespaceName``); Service: DNS-1035 label
    (``ValidateServiceName``); RBAC kinds: a path segment (``ValidateRBACName``); everything
    else: DNS subdomain (``NameIsDNSSubdomain``).
    """
    where = "metadata.name"
    if group == "rbac.authorization.k8s.io":
        if name in (".", "..") or "/" in name or "%" in name:
            return [f"{where} {name!r}: must not be '.' or '..' or contain '/' or '%'"]
        return []
    if group == "" and kind == "Namespace":
        rule = "a DNS label (a-z, 0-9, '-')"
        return dns_problem(where, name, pattern=DNS_LABEL, rule=rule, limit=DNS_LABEL_MAX)
    if group == "" and kind == "Service":
        rule = "a DNS-1035 label (a-z, 0-9, '-'; start with a letter)"
        return dns_problem(where, name, pattern=DNS_1035_LABEL, rule=rule, limit=DNS_LABEL_MAX)
    rule = "a DNS subdomain (a-z, 0-9, '-', '.')"
    return dns_problem(where, name, pattern=DNS_SUBDOMAIN, rule=rule, limit=DNS_SUBDOMAIN_MAX)


def namespace_name(namespace: str) -> list[str]:
    rule = "a DNS label (a-z, 0-9, '-')"
    return dns_problem(
        "metadata.namespace", namespace, pattern=DNS_LABEL, rule=rule, limit=DNS_LABEL_MAX
    )


def release_name(name: str) -> list[str]:
    """Helm's ``ValidateReleaseName``: a DNS subdomain of at most 53 characters."""
    if DNS_SUBDOMAIN.fullmatch(name) and len(name) <= RELEASE_NAME_MAX:
        return []
    return [
        f"Helm release name {name!r}: must be {SUBDOMAIN_RULE}; max {RELEASE_NAME_MAX} "
        f"(got {len(name)})"
    ]


# --- resources ---------------------------------------------------------------------------


def resources(spec: object, where: str) -> list[str]:
    """A container's ``resources``: quantities the API server keeps as given, requests <= limits.

    Memory must be whole bytes (warnings.go: "fractional byte value ... is invalid, must be
    an integer"; the kubelet rounds up); cpu must be whole millicores ("Kubernetes doesn't
    allow you to specify CPU resources with a precision finer than 1m", kubernetes.io,
    Resource Management for Pods and Containers); ``ValidateResourceRequirements``: a request
    "must be less than or equal to" its limit.
    """
    if not isinstance(spec, dict):
        return []
    problems: list[str] = []
    parsed: dict[str, dict[str, quantity.Quantity]] = {}
    for part in ("requests", "limits"):
        amounts = spec.get(part)
        if not isinstance(amounts, dict):
            continue
        parsed[part] = {}
        for name, raw in amounts.items():
            at = f"{where}.{part}.{name}"
            try:
                q = quantity.parse(raw)
            except (quantity.QuantityError, TypeError):
                problems.append(f"{at} {raw!r}: {quantity.RULE}")
                continue
            parsed[part][str(name)] = q
            problem = None
            if name in ("memory", "ephemeral-storage"):
                problem = quantity.whole_bytes_problem(q, raw)
            elif name == "cpu":
                problem = quantity.millicores_problem(q, raw)
            if problem:
                problems.append(f"{at}: {problem}")
    requests, limits = parsed.get("requests", {}), parsed.get("limits", {})
    for name, request in requests.items():
        limit = limits.get(name)
        if limit is not None and request > limit:
            problems.append(
                f"{where}.requests.{name} {spec['requests'][name]!r}: must be less than or "
                f"equal to the {name} limit {spec['limits'][name]!r}"
            )
    return problems


# --- one object --------------------------------------------------------------------------


def object_problems(body: Obj) -> list[str]:
    """Every rule above that applies to one object (its kind decides where pods are)."""
    api_version = str(body.get("apiVersion", ""))
    group, kind = api_version.rpartition("/")[0], str(body.get("kind", ""))
    metadata = _dict(body.get("metadata"))
    problems = []
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        problems.append("metadata.name: missing")
    else:
        problems += object_name(group=group, kind=kind, name=name)
    namespace = metadata.get("namespace")
    if isinstance(namespace, str):
        problems += namespace_name(namespace)
    problems += _meta_problems(metadata, "metadata")
    for where, value in _selectors(body, group, kind):
        problems += label_set(value, where)
    pod = _pod(body, group, kind)
    if pod is not None:
        where, template = pod
        if where != "spec":  # a template: its own metadata, then its spec
            problems += _meta_problems(_dict(template.get("metadata")), f"{where}.metadata")
            where, template = f"{where}.spec", _dict(template.get("spec"))
        for field in ("initContainers", "containers"):
            for index, container in enumerate(_list(template.get(field))):
                if isinstance(container, dict):
                    at = f"{where}.{field}[{index}].resources"
                    problems += resources(container.get("resources"), at)
    return problems


def _meta_problems(metadata: Obj, where: str) -> list[str]:
    return label_set(metadata.get("labels"), f"{where}.labels") + annotation_set(
        metadata.get("annotations"), f"{where}.annotations"
    )


def _selectors(body: Obj, group: str, kind: str) -> Iterator[tuple[str, object]]:
    spec = _dict(body.get("spec"))
    if (group, kind) == ("", "Service"):
        yield "spec.selector", spec.get("selector")
    elif (group, kind) in POD_TEMPLATES:
        yield "spec.selector.matchLabels", _dict(spec.get("selector")).get("matchLabels")


def _pod(body: Obj, group: str, kind: str) -> tuple[str, Obj] | None:
    """(path, pod template or spec) of a workload; the spec itself for a Pod."""
    if (group, kind) == ("", "Pod"):
        return "spec", _dict(body.get("spec"))
    path = POD_TEMPLATES.get((group, kind))
    if path is None:
        return None
    node: object = body
    for key in path:
        node = _dict(node).get(key)
    return ".".join(path), _dict(node)


def _dict(value: object) -> Obj:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
