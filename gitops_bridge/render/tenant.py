"""A group's tenant files: Namespace, ResourceQuota + LimitRange, RBAC, NetworkPolicy."""

from __future__ import annotations

import json
from typing import Any

from gitops_bridge import quantity
from gitops_bridge.config import Settings
from gitops_bridge.models import Group, QuotaSpec
from gitops_bridge.render import layout
from gitops_bridge.render.manifest import Manifest
from gitops_bridge.render.yamlio import dump, dump_all

LIMIT_FACTOR = 2  # limits = 2 x requests, for the quota and for every container


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


def resource_quota(group: Group, *, settings: Settings) -> list[dict[str, Any]]:
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
                "count/helmreleases.helm.toolkit.fluxcd.io": str(q.deployments),
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
    """Ingress only from the group itself and the FRP namespace; egress to the group, DNS, frps."""
    frp = settings.frp
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta("isolate-group", group),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": [{"podSelector": {}}, _namespace_selector(frp.namespace)]},
            ],
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
    """The chart as an OCIRepository inside the group namespace (Flux lockdown mode)."""
    chart = settings.chart
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "OCIRepository",
        "metadata": _meta(layout.CHART_NAME, group),
        "spec": {
            "interval": settings.helm_interval,
            "url": chart.oci_url,
            "ref": {"tag": chart.oci_tag},
            "layerSelector": {
                "mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                "operation": "copy",
            },
        },
    }


def group_files(group: Group, *, settings: Settings) -> list[Manifest]:
    """Every tenant file of a group except its kustomization.yaml and apps/."""
    base = layout.group_dir(group.name)
    files = [
        Manifest(f"{base}/namespace.yaml", dump(namespace(group))),
        Manifest(f"{base}/quota.yaml", dump_all(resource_quota(group, settings=settings))),
        Manifest(f"{base}/rbac.yaml", dump_all(rbac(group))),
        Manifest(f"{base}/networkpolicy.yaml", dump(network_policy(group, settings=settings))),
    ]
    if settings.chart.source == "oci":
        files.append(
            Manifest(f"{base}/{layout.OCI_SOURCE_FILE}", dump(oci_source(group, settings=settings)))
        )
    return files


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
