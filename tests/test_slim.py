"""Objects are reduced to what the bridge reads, and nothing it reads changes: every status
(and every orphan parsed back from its HelmRelease) computed from slim objects equals the one
computed from the objects as the API server sent them, and a claim keeps what its volume's
status shows."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from gitops_bridge import config, models, slim, status
from gitops_bridge.render import digest, layout, volume
from gitops_bridge.render.helmrelease import document, parse_helmrelease
from tests import realobjects
from tests.test_status import CASES, DEPLOYMENT, PROBLEM_CASES, ancestry, view

NS = "group-team-a"
NAME = "web-k3x9q2"
IDS = {"deployment_id": "k3x9q2", "app": "web", "group": "team-a"}


def slim_view(seen: status.ClusterView | None) -> status.ClusterView | None:
    if seen is None:
        return None
    return dataclasses.replace(
        seen,
        helmrelease=slim.helmrelease(seen.helmrelease) if seen.helmrelease else None,
        deployment=slim.deployment(seen.deployment) if seen.deployment else None,
        pods=tuple(slim.pod(p) for p in seen.pods),
        metrics={name: slim.pod_metrics(m) for name, m in seen.metrics.items()},
    )


def real_view(*, state: str = "running", expose: bool = True) -> status.ClusterView:
    template = realobjects.pod_template(name=NAME, expose=expose, **IDS)
    pods = tuple(
        realobjects.pod(
            namespace=NS,
            deployment=NAME,
            index=n,
            template=template,
            state=state if n == 1 else "running",
            **IDS,
        )
        for n in range(2)
    )
    return status.ClusterView(
        helmrelease=realobjects.helmrelease(namespace=NS, name=NAME, replicas=2, **IDS),
        deployment=realobjects.deployment(
            namespace=NS, name=NAME, replicas=2, template=template, **IDS
        ),
        pods=pods,
        metrics={
            p["metadata"]["name"]: realobjects.pod_metrics(
                namespace=NS, pod_name=p["metadata"]["name"], labels_of_pod=p["metadata"]["labels"]
            )
            for p in pods
        },
        applied_revision="main@sha1:" + "a" * 40,
        age=1.0,
        stale=False,
    )


def test_a_real_pod_keeps_only_what_is_read() -> None:
    full = real_view(state="crashloop").pods[1]
    full["metadata"]["resourceVersion"] = "812"
    kept = slim.pod(full)
    assert kept == {
        "metadata": {
            "name": full["metadata"]["name"],
            "creationTimestamp": realobjects.T0,
            "namespace": NS,
            "labels": {layout.LABEL_ID: "k3x9q2"},
        },
        "spec": {"nodeName": "worker-1"},  # the pods table: where it runs, its age, ...
        "status": {
            "phase": "Running",
            "startTime": realobjects.T0,
            "containerStatuses": [
                {
                    "ready": False,
                    "restartCount": 7,
                    "name": "app",
                    "state": {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": "back-off 5m0s restarting failed container=app",
                        }
                    },
                    "lastState": {
                        "terminated": {
                            "reason": "Error",
                            "exitCode": 1,
                            "finishedAt": realobjects.T1,
                        }
                    },  # ... and how it ended last, when
                },
                {"ready": True, "restartCount": 0, "name": "frpc"},
            ],
        },
    }
    # the same budget as before the pods table: a tenth of the pod at most
    assert realobjects.size(full) > 4000 and realobjects.size(kept) * 10 < realobjects.size(full)


def test_a_real_helmrelease_keeps_only_what_is_read() -> None:
    full = realobjects.helmrelease(namespace=NS, name=NAME, replicas=2, **IDS)
    full["metadata"]["resourceVersion"] = "4711"
    kept = slim.helmrelease(full)
    assert set(kept) == {"metadata", "spec", "status"}
    assert kept["metadata"] == {
        "name": NAME,
        "generation": 3,
        "namespace": NS,
        "labels": {
            layout.LABEL_ID: "k3x9q2",
            layout.LABEL_GROUP: "team-a",
            layout.LABEL_APP: "web",
        },
        "annotations": {layout.ANNOTATION_OWNER: "alice"},
    }
    assert set(kept["spec"]["values"]) == {
        "image",
        "replicas",
        "port",
        "env",
        "resources",
        "expose",
    }
    assert kept["spec"]["values"]["resources"] == {"cpu": "250m", "memory": "256Mi"}
    assert set(kept["status"]) == {"observedGeneration", "conditions", "history"}
    assert [c["type"] for c in kept["status"]["conditions"]] == ["Ready"]  # not Released
    assert kept["status"]["history"][0] == {
        "chartVersion": "0.1.0",
        "status": "deployed",
        "firstDeployed": realobjects.T0,
        "lastDeployed": realobjects.T1,
        "configDigest": full["status"]["history"][0]["configDigest"],
    }
    assert realobjects.size(kept) * 3 < realobjects.size(full)


def test_deployment_metrics_and_flux_objects() -> None:
    template = realobjects.pod_template(name=NAME, **IDS)
    full = realobjects.deployment(namespace=NS, name=NAME, replicas=2, template=template, **IDS)
    full["metadata"]["annotations"][digest.ANNOTATION] = "0123456789abcdef"
    kept = slim.deployment(full)
    assert kept["metadata"]["labels"] == {layout.LABEL_ID: "k3x9q2"}
    # which committed settings run, and the image the app container runs
    assert kept["metadata"]["annotations"] == {digest.ANNOTATION: "0123456789abcdef"}
    app = next(c for c in full["spec"]["template"]["spec"]["containers"] if c["name"] == "app")
    assert kept["spec"] == {
        "replicas": 2,
        "template": {"spec": {"containers": [{"name": "app", "image": app["image"]}]}},
    }
    assert kept["status"] == {"conditions": []}  # only ReplicaFailure is read
    assert slim.deployment(kept) == kept
    assert realobjects.size(kept) * 8 < realobjects.size(full)
    sample = realobjects.pod_metrics(namespace=NS, pod_name="p", labels_of_pod={"a": "b"})
    assert slim.pod_metrics(sample) == {
        "metadata": {"name": "p", "namespace": NS},
        "containers": [
            {"name": "app", "usage": {"cpu": "3127493n", "memory": "21348Ki"}},
            {"name": "frpc", "usage": {"cpu": "118291n", "memory": "9876Ki"}},
        ],
    }
    sync = {
        "metadata": {"name": "apps", "namespace": NS, "resourceVersion": "9"},
        "spec": {"path": "./tenants/team-a/apps"},
        "status": {"lastAppliedRevision": "main@sha1:abc", "conditions": [{"type": "Ready"}]},
    }
    assert slim.kustomization(sync) == {
        "metadata": {"name": "apps", "namespace": NS},
        "status": {"lastAppliedRevision": "main@sha1:abc"},
    }
    source = {"metadata": {"name": "x"}, "status": {"artifact": {"revision": "r", "size": 9}}}
    assert slim.gitrepository(source) == {
        "metadata": {"name": "x"},
        "status": {"artifact": {"revision": "r"}},
    }


def test_slim_is_idempotent_and_leaves_missing_fields_missing() -> None:
    seen = real_view(state="crashloop")
    assert slim.pod(slim.pod(seen.pods[1])) == slim.pod(seen.pods[1])
    assert seen.helmrelease is not None and seen.deployment is not None
    for reduce, full in ((slim.helmrelease, seen.helmrelease), (slim.deployment, seen.deployment)):
        assert reduce(reduce(full)) == reduce(full)
    assert slim.pod({"metadata": {"name": "p", "namespace": NS}}) == {
        "metadata": {"name": "p", "namespace": NS}
    }
    assert slim.helmrelease({"metadata": {"name": "h"}, "spec": {}}) == {
        "metadata": {"name": "h"},
        "spec": {},
    }


def test_a_real_claim_keeps_what_its_volume_status_reads() -> None:
    """Phase and capacity (the volume's status), the request and access modes and class
    (what was asked), and a resize's conditions: nothing of bindings, finalizers or owners."""
    full = realobjects.persistentvolumeclaim(
        namespace=NS, name="data", group="team-a", requested="2Gi", capacity="1Gi"
    )
    kept = slim.persistentvolumeclaim(full)
    assert kept == {
        "metadata": {
            "name": "data",
            "resourceVersion": "90211",
            "namespace": NS,
            "labels": {
                layout.LABEL_MANAGED_BY: layout.MANAGED_BY,
                layout.LABEL_GROUP: "team-a",
                volume.LABEL_VOLUME: "data",
            },
        },
        "spec": {
            "resources": {"requests": {"storage": "2Gi"}},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "standard",
        },
        "status": {
            "phase": "Bound",
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "conditions": [
                {
                    "type": "FileSystemResizePending",
                    "status": "True",
                    "message": "Waiting for user to (re-)start a pod to finish file system "
                    "resize of volume on node.",
                }
            ],
        },
    }
    assert slim.persistentvolumeclaim(kept) == kept
    assert realobjects.size(kept) * 4 < realobjects.size(full)
    bound = slim.persistentvolumeclaim(
        realobjects.persistentvolumeclaim(namespace=NS, name="data", group="team-a")
    )
    assert bound["status"] == {
        "phase": "Bound",
        "capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteOnce"],
    }
    # as the API server has it before the PV controller binds it: no capacity yet
    pending = {"metadata": {"name": "data", "namespace": NS}, "status": {"phase": "Pending"}}
    assert slim.persistentvolumeclaim(pending) == pending


@pytest.mark.parametrize(("case", "kwargs", "state", "label"), CASES, ids=[c[0] for c in CASES])
def test_status_of_every_state_is_the_same_from_slim_objects(
    case: str, kwargs: dict[str, Any], state: str, label: str
) -> None:
    full = status.interpret(DEPLOYMENT, is_applied=ancestry, **kwargs)
    reduced = dict(kwargs, view=slim_view(kwargs.get("view")))
    assert status.interpret(DEPLOYMENT, is_applied=ancestry, **reduced) == full
    assert (full.state, full.label) == (state, label)


@pytest.mark.parametrize(
    ("case", "pods", "options", "expected", "problems"),
    PROBLEM_CASES,
    ids=[c[0] for c in PROBLEM_CASES],
)
def test_problems_are_the_same_from_slim_objects(
    case: str,
    pods: tuple[dict[str, Any], ...],
    options: dict[str, Any],
    expected: tuple[str, ...],
    problems: tuple[str, ...],
) -> None:
    from tests.test_status import READY, RELEASED, helmrelease

    seen = view(helmrelease(READY, RELEASED), pods)
    if "deployment" in options:
        seen = dataclasses.replace(seen, deployment=options["deployment"])
    kwargs = {k: v for k, v in options.items() if k == "frp_secret"}
    common = {"last_commit": "a" * 40, "is_applied": ancestry, **kwargs}
    full = status.interpret(DEPLOYMENT, view=seen, **common)
    assert status.interpret(DEPLOYMENT, view=slim_view(seen), **common) == full
    assert full.problems == problems
    assert status.problems_of(
        [slim.pod(p) for p in pods],
        deployment=slim_view(seen).deployment,  # type: ignore[union-attr]
    ) == status.problems_of(pods, deployment=seen.deployment)


@pytest.mark.parametrize("state", ["running", "crashloop"])
@pytest.mark.parametrize("expose", [True, False])
def test_status_of_real_objects_is_the_same_from_slim_ones(state: str, expose: bool) -> None:
    seen = real_view(state=state, expose=expose)
    deployment = DEPLOYMENT.model_copy(
        update={"spec": DEPLOYMENT.spec.model_copy(update={"expose": expose})}
    )
    common = {"last_commit": "a" * 40, "is_applied": ancestry}
    full = status.interpret(deployment, view=seen, **common)
    assert status.interpret(deployment, view=slim_view(seen), **common) == full
    assert full.state == ("running" if state == "running" else "degraded")
    assert full.cpu is not None and full.cpu.used is not None  # the metrics were read


def test_a_pending_pod_keeps_why_it_is_not_scheduled() -> None:
    pending = copy.deepcopy(real_view().pods[0])
    pending["status"] = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": realobjects.T1,
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu.",
            }
        ],
        "qosClass": "Guaranteed",
    }
    assert status.pod_view(slim.pod(pending)) == status.pod_view(pending)
    assert status.pod_view(pending).reason == "Unschedulable"


@pytest.mark.parametrize("expose", [True, False])
def test_an_orphan_parses_back_the_same_from_its_slim_helmrelease(expose: bool) -> None:
    spec = models.parse_deployment(
        {
            "name": "web",
            "image": "registry:5000/team-a/web:1.1",
            "replicas": 3,
            "port": 9000,
            "expose": expose,
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "two\nlines"}],
            "resources": {"cpu": "500m", "memory": "1Gi"},
        }
    )
    deployment = models.Deployment(
        group="team-a",
        id="k3x9q2",
        spec=spec,
        owner="alice",
        keep_on_prune=True,
        restarted_at="2026-11-26T10:00:00Z",
    )
    written = document(deployment, settings=config.Settings())
    assert parse_helmrelease(slim.helmrelease(written)) == parse_helmrelease(written) == deployment


def real_event() -> dict[str, Any]:
    """A kubelet BackOff Event as the API server sends it in a list (client-go's recorder
    creates it, then PATCHes count and lastTimestamp; managedFields of both writes)."""
    pod_name = "web-k3x9q2-34c3b01d9b-b8a17"
    uid = "a521c352-36c2-8a78-3679-daa2e26a15f3"
    written = {
        "involvedObject": {
            "kind": "Pod",
            "namespace": NS,
            "name": pod_name,
            "uid": uid,
            "apiVersion": "v1",
            "resourceVersion": "88121",
            "fieldPath": "spec.containers{app}",
        },
        "reason": "BackOff",
        "message": f"Back-off restarting failed container app in pod {pod_name}_{NS}({uid})",
        "source": {"component": "kubelet", "host": "worker-1"},
        "firstTimestamp": realobjects.T0,
        "lastTimestamp": realobjects.T1,
        "count": 7,
        "type": "Warning",
        "eventTime": None,
        "reportingComponent": "kubelet",
        "reportingInstance": "worker-1",
    }
    return {
        "metadata": {
            "name": f"{pod_name}.18b7e6f0c3a2d1e4",
            "namespace": NS,
            "uid": "c0ffee00-1234-4c1e-9a7b-0badc0de0001",
            "resourceVersion": "90412",
            "creationTimestamp": realobjects.T0,
            "managedFields": [
                realobjects._managed("kubelet", "Update", "v1", realobjects.fields_v1(written)),
            ],
        },
        **written,
    }


def test_a_real_event_keeps_what_the_events_table_shows() -> None:
    full = real_event()
    kept = slim.event(full)
    assert kept == {
        "metadata": {"name": full["metadata"]["name"], "namespace": NS},
        "type": "Warning",
        "reason": "BackOff",
        "count": 7,
        "firstTimestamp": realobjects.T0,
        "lastTimestamp": realobjects.T1,
        "message": full["message"],
        "involvedObject": {"kind": "Pod", "name": full["involvedObject"]["name"]},
        "source": {"component": "kubelet"},
        "reportingComponent": "kubelet",
    }  # no uids, versions, fieldPath, host, null eventTime
    assert slim.event(kept) == kept
    # what stays is mostly the message and the names the table shows: under half of it
    assert realobjects.size(kept) * 2 < realobjects.size(full)
