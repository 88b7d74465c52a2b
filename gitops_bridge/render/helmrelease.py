"""One HelmRelease (helm.toolkit.fluxcd.io/v2) per deployment, values inline, and back."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import ValidationError

from gitops_bridge import quantity
from gitops_bridge.config import Settings
from gitops_bridge.models import Deployment, DeploymentSpec, SecretChange
from gitops_bridge.render import digest, handedits, layout
from gitops_bridge.render.manifest import Manifest
from gitops_bridge.render.tenant import LIMIT_FACTOR
from gitops_bridge.render.yamlio import dump

ROLLOUT_BASE_MINUTES = 2
ROLLOUT_MINUTES_PER_POD = 1


def app_path(group: str, name: str) -> str:
    return f"{layout.group_dir(group)}/{layout.APPS_DIR}/{name}.yaml"


def values(deployment: Deployment, *, settings: Settings) -> dict[str, Any]:
    """The chart values: the seed's names (image, replicas, port, env, resources) plus ours."""
    spec = deployment.spec
    cpu, memory = quantity.parse(spec.resources.cpu), quantity.parse(spec.resources.memory)
    result: dict[str, Any] = {
        "image": spec.image,
        "replicas": spec.replicas,
        "port": spec.port,
        # secret entries name their key only; the chart reads it from <release>-env
        "env": [var.model_dump() for var in spec.env],
        "resources": {
            "cpu": spec.resources.cpu,
            "memory": spec.resources.memory,
            "limits": {
                "cpu": (cpu * LIMIT_FACTOR).format_cpu(),
                "memory": (memory * LIMIT_FACTOR).format_memory(),
            },
        },
        "expose": spec.expose,
        "labels": _labels(deployment),
    }
    if spec.volumes:
        result["volumes"] = [
            {"name": m.volume, "mountPath": m.path, "readOnly": m.read_only} for m in spec.volumes
        ]
    if spec.health is not None:
        # readiness and liveness GET the path on the app port (the chart's probe defaults for
        # delays and thresholds); without it the chart connects to the port (tcp)
        probe = {"type": "http", "path": spec.health.path}
        result["probes"] = {"readiness": dict(probe), "liveness": dict(probe)}
    if spec.command:
        result["command"] = list(spec.command)
    if spec.args:
        result["args"] = list(spec.args)
    if spec.autoscaling is not None:
        # the chart leaves the Deployment's replicas to the HorizontalPodAutoscaler unless
        # replicas is 0 (stopped: no autoscaler then)
        result["autoscaling"] = {
            "enabled": True,
            "minReplicas": spec.autoscaling.min,
            "maxReplicas": spec.autoscaling.max,
            "targetCPUUtilizationPercentage": spec.autoscaling.cpu,
        }
    if deployment.recreate:
        result["strategy"] = "Recreate"
    if deployment.restarted_at:
        result["restartedAt"] = deployment.restarted_at
    if deployment.secrets and any(var.secret for var in spec.env):
        # a new value restarts the pods (env is read at container start); a digest of who
        # set which key when, so re-encrypting (key rotation) restarts nothing
        result["secretsRevision"] = secrets_revision(deployment)
    if spec.expose:
        frp = settings.frp
        sidecar_cpu, sidecar_memory = quantity.parse(frp.cpu), quantity.parse(frp.memory)
        result["frpc"] = {
            "image": frp.image,
            "serverAddr": frp.server_addr,
            "serverPort": frp.server_port,
            "tokenSecret": frp.token_secret,
            "tokenKey": frp.token_key,
            "subdomain": deployment.name,
            "resources": {
                "requests": {
                    "cpu": sidecar_cpu.format_cpu(),
                    "memory": sidecar_memory.format_memory(),
                },
                "limits": {
                    "cpu": (sidecar_cpu * LIMIT_FACTOR).format_cpu(),
                    "memory": (sidecar_memory * LIMIT_FACTOR).format_memory(),
                },
            },
        }
    # last: which settings these are, for the Deployment's annotation (render.digest)
    result[digest.KEY] = digest.of(result)
    return result


def secrets_revision(deployment: Deployment) -> str:
    text = json.dumps({k: v.model_dump() for k, v in deployment.secrets.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def secrets_annotation(deployment: Deployment) -> str:
    """``{"KEY": {"by": user, "at": time}}``: which secret values were set by whom, when."""
    return json.dumps(
        {k: v.model_dump() for k, v in sorted(deployment.secrets.items())}, separators=(",", ":")
    )


def _labels(deployment: Deployment) -> dict[str, str]:
    return {
        layout.LABEL_MANAGED_BY: layout.MANAGED_BY,
        layout.LABEL_GROUP: deployment.group,
        layout.LABEL_APP: deployment.app,
        layout.LABEL_ID: deployment.id,
    }


def _chart(settings: Settings) -> dict[str, Any]:
    """The chart from a source in the release's own namespace (Flux lockdown allows no other).

    ``ChartVersion``: source-controller packages a new chart artifact only when Chart.yaml's
    version changes (https://fluxcd.io/flux/components/source/helmcharts/#reconcile-strategy),
    so a commit that does not touch a release's values upgrades nothing. ``Revision`` would
    make every commit upgrade every release.
    """
    chart = settings.chart
    if chart.source == "oci":
        return {"chartRef": {"kind": "OCIRepository", "name": layout.CHART_NAME}}
    return {
        "chart": {
            "spec": {
                "chart": chart.path,
                "reconcileStrategy": "ChartVersion",
                "sourceRef": {"kind": "GitRepository", "name": layout.GROUP_SOURCE},
            }
        }
    }


def timeout(replicas: int) -> str:
    """How long Helm may wait for a rollout: pods are replaced one at a time (maxSurge 1,
    maxUnavailable 0), so a minute per pod on top of the base, never under 5 minutes."""
    return f"{max(ROLLOUT_BASE_MINUTES + replicas * ROLLOUT_MINUTES_PER_POD, 5)}m"


def document(deployment: Deployment, *, settings: Settings) -> dict[str, Any]:
    retries = settings.remediation_retries
    metadata: dict[str, Any] = {
        "name": deployment.name,
        "namespace": deployment.namespace,
        "labels": _labels(deployment),
    }
    annotations: dict[str, str] = {}
    if deployment.owner:
        annotations[layout.ANNOTATION_OWNER] = deployment.owner
    if deployment.keep_on_prune:
        annotations[layout.ANNOTATION_PRUNE] = "disabled"
    if deployment.secrets:
        annotations[layout.ANNOTATION_SECRETS] = secrets_annotation(deployment)
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": metadata,
        "spec": {
            "interval": settings.helm_interval,
            "timeout": timeout(deployment.spec.most_replicas),
            "releaseName": deployment.name,
            "serviceAccountName": layout.SERVICE_ACCOUNT,
            **_chart(settings),
            "install": {"remediation": {"retries": retries}},
            "upgrade": {
                "cleanupOnFail": True,
                "remediation": {"retries": retries, "remediateLastFailure": True},
            },
            "driftDetection": {"mode": "enabled"},
            "values": values(deployment, settings=settings),
        },
    }


def helmrelease(
    deployment: Deployment,
    *,
    settings: Settings,
    current: bytes | None = None,
    before: Deployment | None = None,
) -> Manifest:
    """The deployment's file. ``current``: the file as it is in Git, which a person may have
    edited; their edits are kept (see ``handedits``). ``before``: the deployment that file
    was read as, so the bridge can tell its own values from the person's."""
    path = app_path(deployment.group, deployment.name)
    theirs = document(deployment, settings=settings)
    text = dump(theirs)
    if current is None or current == text.encode():
        return Manifest(path, text)
    base = document(before, settings=settings) if before is not None else None
    if base is not None and current == dump(base).encode():
        return Manifest(path, text)  # all the bridge's own: no round trip needed
    merged = handedits.merge(current, base=base, theirs=theirs)
    return Manifest(path, text if merged is None else merged)


def parse_helmrelease(doc: Any) -> Deployment:
    """The deployment back from its HelmRelease (raises KeyError/ValueError if not ours)."""
    meta = doc["metadata"]
    labels = meta["labels"]
    vals = doc["spec"]["values"]
    resources = vals.get("resources") or {}
    readiness = (vals.get("probes") or {}).get("readiness") or {}
    scaling = vals.get("autoscaling") or {}
    spec = DeploymentSpec.model_validate(
        {
            "name": labels[layout.LABEL_APP],
            "image": vals["image"],
            "replicas": vals.get("replicas", 1),
            "port": vals.get("port", 8080),
            "env": vals.get("env") or [],
            "resources": {k: resources[k] for k in ("cpu", "memory") if k in resources},
            "expose": vals.get("expose", False),
            "volumes": [
                {"volume": v["name"], "path": v["mountPath"], "readOnly": v.get("readOnly", False)}
                for v in vals.get("volumes") or []
            ],
            "health": (
                {"path": readiness.get("path", "/")} if readiness.get("type") == "http" else None
            ),
            "command": vals.get("command") or [],
            "args": vals.get("args") or [],
            "autoscaling": (
                {  # a key left out (by hand) is the chart's default
                    "min": scaling.get("minReplicas", 1),
                    "max": scaling.get("maxReplicas", 3),
                    "cpu": scaling.get("targetCPUUtilizationPercentage", 70),
                }
                if scaling.get("enabled")
                else None
            ),
        }
    )
    return Deployment(
        group=labels[layout.LABEL_GROUP],
        id=labels[layout.LABEL_ID],
        spec=spec,
        owner=(meta.get("annotations") or {}).get(layout.ANNOTATION_OWNER, ""),
        keep_on_prune=(meta.get("annotations") or {}).get(layout.ANNOTATION_PRUNE) == "disabled",
        restarted_at=vals.get("restartedAt", ""),
        recreate=vals.get("strategy") == "Recreate",
        secrets=_secret_changes((meta.get("annotations") or {}).get(layout.ANNOTATION_SECRETS)),
    )


def _secret_changes(text: object) -> dict[str, SecretChange]:
    """The secrets annotation back; a hand-broken one reads as unknown (nothing shown)."""
    if not isinstance(text, str):
        return {}
    try:
        found = json.loads(text)
        return {str(k): SecretChange.model_validate(v) for k, v in found.items()}
    except (ValueError, AttributeError, ValidationError):
        return {}
