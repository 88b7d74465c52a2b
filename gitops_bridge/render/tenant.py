"""A group's platform files: Namespace, ResourceQuota + LimitRange, RBAC, NetworkPolicy,
and the Flux objects that reconcile the group on its own (sync.yaml, notifications.yaml).

The platform Kustomization ``tenants`` (``clusters/<cluster>/tenants.yaml``) applies these;
the group's apps are applied by the group's own Kustomization, impersonating the group's
service account, from a GitRepository in the group's namespace. This is the layout Flux's
multi-tenancy lockdown expects (flux2-multi-tenancy, ``tenants/base/dev-team/sync.yaml``):
no reference leaves the namespace (``--no-cross-namespace-refs``), and nothing runs as a
default service account (``--default-service-account``).
"""

from __future__ import annotations

import json
from typing import Any

from ruamel.yaml.error import YAMLError

from gitops_bridge import assets, quantity
from gitops_bridge.config import Settings
from gitops_bridge.models import Group, QuotaSpec
from gitops_bridge.render import layout
from gitops_bridge.render.manifest import Manifest
from gitops_bridge.render.yamlio import dump, dump_all, load_all

COUNT_HELMRELEASES = "count/helmreleases.helm.toolkit.fluxcd.io"
LIMIT_FACTOR = 2  # limits = 2 x requests, for the quota and for every container
# HelmReleases deleted in Git stay in the cluster until the group's Kustomization has applied
# the new revision and pruned (kustomize-controller applies first, prunes after a successful
# apply), and while Helm uninstalls them. The object-count quota leaves room for one such
# generation, so an apply that deletes and creates in one go is never refused.
HELMRELEASE_HEADROOM = 2


def _labels(group: Group) -> dict[str, str]:
    return {layout.LABEL_MANAGED_BY: layout.MANAGED_BY, layout.LABEL_GROUP: group.name}


def _meta(name: str, group: Group) -> dict[str, Any]:
    return {"name": name, "namespace": group.namespace, "labels": _labels(group)}


def namespace(group: Group) -> dict[str, Any]:
    quota = group.quota.model_dump()
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": group.namespace,
            "labels": {
                **_labels(group),
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            },
            "annotations": _group_annotations(group, quota),
        },
    }


def _group_annotations(group: Group, quota: dict[str, Any]) -> dict[str, str]:
    annotations = {
        layout.ANNOTATION_MEMBERS: json.dumps(group.members),
        layout.ANNOTATION_QUOTA: json.dumps(quota, sort_keys=True),
    }
    if group.admins:
        annotations[layout.ANNOTATION_ADMINS] = json.dumps(group.admins)
    if group.review:
        annotations[layout.ANNOTATION_REVIEW] = group.review
    return annotations


def helmrelease_limit(quota: QuotaSpec, *, previous: int | None = None) -> int:
    """The ResourceQuota's ``count/helmreleases``: the deployment limit plus room for the
    releases being pruned; it never drops below ``previous`` (the value in Git), because
    releases of a larger past limit may still be waiting for their prune."""
    limit = quota.deployments * HELMRELEASE_HEADROOM
    return max(limit, previous or 0)


def resource_quota(
    group: Group, *, settings: Settings, helmreleases: int | None = None
) -> list[dict[str, Any]]:
    q = group.quota
    cpu, memory = quantity.parse(q.cpu), quantity.parse(q.memory)
    max_pods = q.deployments * (settings.limits.max_replicas + 1)
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _meta("quota", group),
        "spec": {
            "hard": {
                "requests.cpu": cpu.format_cpu(),
                "requests.memory": memory.format_memory(),
                "limits.cpu": (cpu * LIMIT_FACTOR).format_cpu(),
                "limits.memory": (memory * LIMIT_FACTOR).format_memory(),
                "requests.storage": quantity.parse(q.storage).format_memory(),
                "pods": str(max_pods),
                "persistentvolumeclaims": str(q.deployments),
                COUNT_HELMRELEASES: str(helmreleases or helmrelease_limit(q)),
            }
        },
    }
    limits = settings.limits
    limit_range = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": _meta("limits", group),
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
                    "default": {"cpu": "200m", "memory": "256Mi"},
                    "max": {
                        "cpu": (quantity.parse(limits.cpu_max) * LIMIT_FACTOR).format_cpu(),
                        "memory": (
                            quantity.parse(limits.memory_max) * LIMIT_FACTOR
                        ).format_memory(),
                    },
                }
            ]
        },
    }
    return [quota, limit_range]


def rbac(group: Group) -> list[dict[str, Any]]:
    """The account Flux impersonates for this group's HelmReleases, admin of its namespace only."""
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(layout.SERVICE_ACCOUNT, group),
        "automountServiceAccountToken": False,
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(layout.SERVICE_ACCOUNT, group),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "admin",
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": layout.SERVICE_ACCOUNT, "namespace": group.namespace}
        ],
    }
    return [account, binding]


def _namespace_selector(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def network_policy(group: Group, *, settings: Settings) -> dict[str, Any]:
    """Ingress only from the group itself; egress to the group, DNS and frps.

    Exposure needs no ingress: the frpc sidecar dials out to frps and hands requests to the
    app over localhost, so nothing outside the namespace ever connects to a tenant pod.
    """
    frp = settings.frp
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta("isolate-group", group),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
            "egress": [
                {"to": [{"podSelector": {}}]},
                {
                    "to": [
                        {
                            **_namespace_selector("kube-system"),
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                },
                {
                    "to": [_namespace_selector(frp.namespace)],
                    "ports": [{"protocol": "TCP", "port": frp.server_port}],
                },
            ],
        },
    }


def oci_source(group: Group, *, settings: Settings) -> dict[str, Any]:
    """The chart as an OCIRepository in the group namespace (``gitops-bridge chart push``)."""
    chart = settings.chart
    spec: dict[str, Any] = {
        "interval": settings.helm_interval,
        "url": chart.oci_url,
        "ref": {"tag": chart.oci_tag or assets.chart_version()},
        "layerSelector": {
            "mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            "operation": "copy",
        },
    }
    if chart.oci_insecure:
        spec["insecure"] = True
    if chart.oci_secret:
        spec["secretRef"] = {"name": chart.oci_secret}
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "OCIRepository",
        "metadata": _meta(layout.CHART_NAME, group),
        "spec": spec,
    }


def sync(group: Group, *, settings: Settings, decryption: bool = False) -> list[dict[str, Any]]:
    """The group's GitRepository and the Kustomization that applies ``tenants/<group>/apps``.

    The GitRepository checks out only the chart and the group's apps (sparse checkout), so
    what Flux fetches and builds per group does not grow with the repository. The
    Kustomization impersonates the group's service account: whatever lands in apps/ can
    only touch the group's namespace.
    """
    flux = settings.flux
    paths = [settings.chart.path.removeprefix("./"), layout.apps_dir(group.name)]
    source: dict[str, Any] = {
        "interval": flux.source_interval,
        "url": flux.git_url,
        "ref": {"branch": settings.branch},
        "sparseCheckout": paths if settings.chart.source == "git" else paths[1:],
    }
    if flux.git_secret:
        source["secretRef"] = {"name": flux.git_secret}
    repository = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": _meta(layout.GROUP_SOURCE, group),
        "spec": source,
    }
    spec: dict[str, Any] = {
        "interval": flux.interval,
        "retryInterval": flux.retry_interval,
        "timeout": flux.timeout,
        "path": f"./{layout.apps_dir(group.name)}",
        "prune": True,
        "wait": False,
        "serviceAccountName": layout.SERVICE_ACCOUNT,
        "sourceRef": {"kind": "GitRepository", "name": layout.GROUP_SOURCE},
    }
    if decryption:
        # the group's own identity (tenants/<group>/sops-age.yaml): opens its Secrets only
        spec["decryption"] = {"provider": "sops", "secretRef": {"name": layout.GROUP_AGE_SECRET}}
    kustomization = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": _meta(layout.GROUP_KUSTOMIZATION, group),
        "spec": spec,
    }
    return [repository, kustomization]


def notifications(group: Group, *, settings: Settings) -> list[dict[str, Any]]:
    """A Provider + Alert in the group namespace: notification-controller matches an
    Alert's event sources by exact namespace (only ``name`` may be ``*``) and, locked
    down, drops events from other namespaces than the Alert's."""
    flux = settings.flux
    provider = {
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
        "kind": "Provider",
        "metadata": _meta(layout.EVENTS_PROVIDER, group),
        "spec": {
            "type": "generic-hmac",
            "address": flux.events_url,
            "secretRef": {"name": flux.events_secret},
        },
    }
    alert = {
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
        "kind": "Alert",
        "metadata": _meta(layout.EVENTS_PROVIDER, group),
        "spec": {
            "providerRef": {"name": layout.EVENTS_PROVIDER},
            "eventSeverity": "info",
            "eventSources": [
                {"kind": "HelmRelease", "name": "*"},
                {"kind": "Kustomization", "name": layout.GROUP_KUSTOMIZATION},
                {"kind": "GitRepository", "name": layout.GROUP_SOURCE},
            ],
        },
    }
    return [provider, alert]


def group_files(
    group: Group, *, settings: Settings, helmreleases: int | None = None, decryption: bool = False
) -> list[Manifest]:
    """Every platform file of a group except its kustomization.yaml (apps/ is the group's).

    ``helmreleases``: the ResourceQuota's HelmRelease count already in Git (see
    ``helmrelease_limit``).
    """
    base = layout.group_dir(group.name)
    limit = helmrelease_limit(group.quota, previous=helmreleases)
    files = [
        Manifest(f"{base}/namespace.yaml", dump(namespace(group))),
        Manifest(
            f"{base}/quota.yaml",
            dump_all(resource_quota(group, settings=settings, helmreleases=limit)),
        ),
        Manifest(f"{base}/rbac.yaml", dump_all(rbac(group))),
        Manifest(f"{base}/networkpolicy.yaml", dump(network_policy(group, settings=settings))),
        Manifest(
            f"{base}/{layout.SYNC_FILE}",
            dump_all(sync(group, settings=settings, decryption=decryption)),
        ),
    ]
    if settings.flux.events_url:
        files.append(
            Manifest(
                f"{base}/{layout.NOTIFICATIONS_FILE}",
                dump_all(notifications(group, settings=settings)),
            )
        )
    if settings.chart.source == "oci":
        files.append(
            Manifest(f"{base}/{layout.OCI_SOURCE_FILE}", dump(oci_source(group, settings=settings)))
        )
    return files


def quota_helmreleases(text: bytes | None) -> int | None:
    """The ``count/helmreleases`` of a quota.yaml's ResourceQuota, if it has one."""
    if text is None:
        return None
    try:
        for document in load_all(text):
            if document.get("kind") == "ResourceQuota":
                return int(document["spec"]["hard"][COUNT_HELMRELEASES])
    except (KeyError, TypeError, ValueError, AttributeError, YAMLError):
        return None
    return None


def parse_group(document: Any) -> Group:
    """The group record back from its Namespace (raises ValueError/KeyError if not one)."""
    meta = document["metadata"]
    annotations = meta.get("annotations") or {}
    name = meta["labels"][layout.LABEL_GROUP]
    return Group(
        name=name,
        members=json.loads(annotations.get(layout.ANNOTATION_MEMBERS, "[]")),
        admins=json.loads(annotations.get(layout.ANNOTATION_ADMINS, "[]")),
        quota=QuotaSpec.model_validate(json.loads(annotations[layout.ANNOTATION_QUOTA])),
        review=annotations.get(layout.ANNOTATION_REVIEW) or None,
    )
