"""Status interpretation over realistic Flux and Kubernetes objects, one row per state, and
the problems a person must fix outside the deployment (a missing frp Secret, refused pods)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from gitops_bridge import models, status
from gitops_bridge.quantity import parse

COMMIT = "a" * 40
OLD = "b" * 40
T = "2026-11-26T10:00:00Z"

DEPLOYMENT = models.Deployment(
    group="team-a",
    id="k3x9q2",
    spec=models.parse_deployment(
        {
            "name": "web",
            "image": "registry:5000/team-a/web:1.1",
            "replicas": 2,
            "expose": True,
            "resources": {"cpu": "250m", "memory": "256Mi"},
        }
    ),
)


def cond(kind: str, state: str, reason: str, message: str = "", gen: int = 2) -> dict[str, Any]:
    return {
        "type": kind,
        "status": state,
        "reason": reason,
        "message": message,
        "lastTransitionTime": T,
        "observedGeneration": gen,
    }


def entry(state: str, digest: str = "sha256:1", version: int = 2) -> dict[str, Any]:
    return {
        "chartName": "generic-app",
        "chartVersion": "0.1.0",
        "status": state,
        "firstDeployed": T,
        "lastDeployed": T,
        "configDigest": digest,
        "name": "web-k3x9q2",
        "namespace": "group-team-a",
        "version": version,
    }


def helmrelease(
    *conditions: dict[str, Any],
    generation: int = 2,
    observed: int = 2,
    history: list[dict[str, Any]] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "web-k3x9q2",
        "namespace": "group-team-a",
        "generation": generation,
    }
    if deleting:
        meta["deletionTimestamp"] = T
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": meta,
        "status": {
            "observedGeneration": observed,
            "conditions": list(conditions),
            "history": history or [entry("deployed")],
        },
    }


READY = cond("Ready", "True", "UpgradeSucceeded", "Helm upgrade succeeded for release ...")
RELEASED = cond("Released", "True", "UpgradeSucceeded")


def pod(name: str, *, ready: bool = True, waiting: str = "", restarts: int = 0) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {"startedAt": T}}
    last: dict[str, Any] = {}
    if waiting:
        state = {"waiting": {"reason": waiting, "message": "back-off restarting failed container"}}
        last = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": T, "finishedAt": T}}
    app = {
        "name": "app",
        "ready": ready,
        "restartCount": restarts,
        "state": state,
        "lastState": last,
        "image": "registry:5000/team-a/web:1.1",
        "imageID": "",
        "started": ready,
    }
    frpc = {
        "name": "frpc",
        "ready": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": T}},
        "lastState": {},
        "image": "frpc",
        "imageID": "",
        "started": True,
    }
    return {
        "metadata": {"name": name, "namespace": "group-team-a"},
        "status": {"phase": "Running", "containerStatuses": [app, frpc]},
    }


def metrics(name: str, cpu: str, memory: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "group-team-a"},
        "timestamp": T,
        "window": "30s",
        "containers": [
            {"name": "app", "usage": {"cpu": cpu, "memory": memory}},
            {"name": "frpc", "usage": {"cpu": "1m", "memory": "8Mi"}},
        ],
    }


def view(
    release: dict[str, Any] | None,
    pods: tuple[dict[str, Any], ...] = (),
    *,
    applied: str | None = COMMIT,
    samples: dict[str, Any] | None = None,
) -> status.ClusterView:
    return status.ClusterView(
        helmrelease=release,
        deployment=None,
        pods=pods,
        metrics=samples or {},
        applied_revision=f"main@sha1:{applied}" if applied else None,
        age=3.0,
        stale=False,
    )


def ancestry(commit: str, applied: str) -> bool:
    """The tests' history: only a commit itself counts as applied."""
    return commit == applied


FAILED = helmrelease(
    cond("Ready", "False", "UpgradeFailed", "Helm upgrade failed: context deadline exceeded"),
    cond("Remediated", "True", "RollbackSucceeded", "Helm rollback to previous release succeeded"),
    cond("Released", "False", "UpgradeFailed"),
    history=[entry("failed", "sha256:2", 3), entry("deployed")],
)
STALLED = helmrelease(
    cond("Stalled", "True", "RetriesExceeded", "Failed to install after 3 attempt(s)"),
    cond("Ready", "False", "InstallFailed", "Helm install failed"),
)
PROGRESSING = helmrelease(
    cond("Reconciling", "True", "Progressing", "Fulfilling prerequisites"),
    cond("Ready", "Unknown", "Progressing"),
)
CRASHING = pod("web-2", ready=False, waiting="CrashLoopBackOff", restarts=5)

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "pending review",
        {"view": None, "last_commit": None, "pending_review": True},
        "pending review",
        "pending review",
    ),
    ("no cluster", {"view": None, "last_commit": COMMIT}, "not connected", "not connected"),
    (
        "flux has not applied the commit",
        {"view": view(helmrelease(READY, RELEASED), applied=OLD), "last_commit": COMMIT},
        "committed",
        "committed aaaaaaa",
    ),
    (
        "kustomization never applied",
        {"view": view(None, applied=None), "last_commit": COMMIT},
        "committed",
        "committed aaaaaaa",
    ),
    (
        "helmrelease not there yet",
        {"view": view(None), "last_commit": COMMIT},
        "reconciling",
        "reconciling",
    ),
    (
        "new generation not observed",
        {"view": view(helmrelease(READY, generation=3, observed=2)), "last_commit": COMMIT},
        "reconciling",
        "reconciling",
    ),
    (
        "progressing",
        {"view": view(PROGRESSING), "last_commit": COMMIT},
        "reconciling",
        "reconciling",
    ),
    (
        "running",
        {
            "view": view(helmrelease(READY, RELEASED), (pod("web-1"), pod("web-2"))),
            "last_commit": COMMIT,
        },
        "running",
        "running 2/2",
    ),
    (
        "starting",
        {
            "view": view(helmrelease(READY, RELEASED), (pod("web-1"), pod("web-2", ready=False))),
            "last_commit": COMMIT,
        },
        "reconciling",
        "starting 1/2",
    ),
    (
        "crash loop",
        {
            "view": view(helmrelease(READY, RELEASED), (pod("web-1"), CRASHING)),
            "last_commit": COMMIT,
        },
        "degraded",
        "degraded 1/2",
    ),
    (
        "image pull",
        {
            "view": view(
                helmrelease(READY), (pod("web-1", ready=False, waiting="ImagePullBackOff"),)
            ),
            "last_commit": COMMIT,
        },
        "degraded",
        "degraded 0/2",
    ),
    (
        "failed upgrade",
        {"view": view(FAILED), "last_commit": COMMIT},
        "failed",
        "failed (UpgradeFailed)",
    ),
    (
        "stalled",
        {"view": view(STALLED), "last_commit": COMMIT},
        "failed",
        "failed (RetriesExceeded)",
    ),
    (
        "deleted in git, still in cluster",
        {"view": view(helmrelease(READY)), "last_commit": COMMIT, "deleted_in_git": True},
        "deleting",
        "deleting",
    ),
    (
        "being deleted",
        {"view": view(helmrelease(READY, deleting=True)), "last_commit": COMMIT},
        "deleting",
        "deleting",
    ),
    (
        "gone from git and cluster",
        {"view": view(None), "last_commit": COMMIT, "deleted_in_git": True},
        "deleted",
        "deleted",
    ),
]


@pytest.mark.parametrize(("case", "kwargs", "state", "label"), CASES, ids=[c[0] for c in CASES])
def test_states(case: str, kwargs: dict[str, Any], state: str, label: str) -> None:
    result = status.interpret(DEPLOYMENT, is_applied=ancestry, **kwargs)
    assert (result.state, result.label) == (state, label)


def test_zero_replicas_is_stopped() -> None:
    stopped = DEPLOYMENT.model_copy(
        update={"spec": DEPLOYMENT.spec.model_copy(update={"replicas": 0})}
    )
    result = status.interpret(
        stopped, view=view(helmrelease(READY)), last_commit=COMMIT, is_applied=ancestry
    )
    assert (result.state, result.label) == ("stopped", "stopped")
    draining = status.interpret(
        stopped,
        view=view(helmrelease(READY), (pod("web-1"),)),
        last_commit=COMMIT,
        is_applied=ancestry,
    )
    assert (draining.state, draining.label) == ("stopped", "stopping (1 left)")


def test_failed_release_carries_reason_message_and_remediation() -> None:
    result = status.interpret(
        DEPLOYMENT, view=view(FAILED), last_commit=COMMIT, is_applied=ancestry
    )
    assert result.reason == "UpgradeFailed"
    assert result.message == "Helm upgrade failed: context deadline exceeded"
    assert result.remediation == "RollbackSucceeded: Helm rollback to previous release succeeded"
    assert [v.status for v in result.history] == ["failed", "deployed"]
    assert (result.generation, result.observed_generation) == (2, 2)


def test_degraded_names_the_pod_and_the_container_reason() -> None:
    result = status.interpret(
        DEPLOYMENT,
        view=view(helmrelease(READY), (pod("web-1"), CRASHING)),
        last_commit=COMMIT,
        is_applied=ancestry,
    )
    assert result.reason == "CrashLoopBackOff"
    # why it ended first, then the back-off
    assert (
        result.message
        == "pod web-2: last exit: Error (code 1); back-off restarting failed container"
    )
    assert [(p.name, p.ready, p.restarts) for p in result.pods] == [
        ("web-1", True, 0),
        ("web-2", False, 5),
    ]


def test_the_back_off_message_does_not_name_the_pod_twice() -> None:
    """The kubelet ends its back-off message with ``pod=<name>_<namespace>(<uid>)``; the card
    names the pod already."""
    crashing = pod("web-2", ready=False, waiting="CrashLoopBackOff", restarts=5)
    [app, _] = crashing["status"]["containerStatuses"]
    app["state"]["waiting"]["message"] = (
        "back-off 2m40s restarting failed container=app "
        "pod=web-2_group-team-a(474fae62-cf97-4b53-9009-db94725e311e)"
    )
    result = status.interpret(
        DEPLOYMENT,
        view=view(helmrelease(READY), (pod("web-1"), crashing)),
        last_commit=COMMIT,
        is_applied=ancestry,
    )
    assert result.message == (
        "pod web-2: last exit: Error (code 1); back-off 2m40s restarting failed container=app"
    )


def test_usage_against_limits_sums_every_container_of_every_pod() -> None:
    samples = {
        "web-1": metrics("web-1", "120m", "100Mi"),
        "web-2": metrics("web-2", "80m", "150Mi"),
    }
    result = status.interpret(
        DEPLOYMENT,
        view=view(helmrelease(READY), (pod("web-1"), pod("web-2")), samples=samples),
        last_commit=COMMIT,
        is_applied=ancestry,
        sidecar=(parse("10m"), parse("32Mi")),
    )
    assert result.cpu is not None and result.memory is not None
    assert result.cpu.used == parse("202m") and result.memory.used == parse("266Mi")
    # limits = 2 x requests per pod, sidecar included, x 2 replicas
    assert result.cpu.limit == parse("1040m") and result.memory.limit == parse("1152Mi")


def test_no_metrics_means_unknown_usage_not_zero() -> None:
    result = status.interpret(
        DEPLOYMENT,
        view=view(helmrelease(READY), (pod("web-1"), pod("web-2"))),
        last_commit=COMMIT,
        is_applied=ancestry,
    )
    assert result.cpu is not None and result.cpu.used is None


def test_revision_commit() -> None:
    assert status.revision_commit(f"main@sha1:{COMMIT}") == COMMIT
    assert status.revision_commit(COMMIT) == COMMIT
    assert status.revision_commit(None) is None


# ---- problems: what to fix outside the deployment ----------------------------------------

NS = "group-team-a"
MISSING_SECRET = 'secret "frp-token" not found'  # kubelet: NewNotFound(resource "secret")
MISSING_KEY = f"couldn't find key group-key in Secret {NS}/frp-token"
QUOTA = (
    'pods "web-k3x9q2-5d8f7c9b4-x2x7k" is forbidden: exceeded quota: compute, '
    "requested: pods=1, used: pods=2, limited: pods=2"
)


def config_error(name: str, *, container: str, message: str) -> dict[str, Any]:
    """A pod as the kubelet leaves it when one container's environment cannot be built: that
    container waits with CreateContainerConfigError, the pod stays Pending."""
    found = pod(name)
    found["status"]["phase"] = "Pending"
    for item in found["status"]["containerStatuses"]:
        if item["name"] == container:
            waiting = {"reason": "CreateContainerConfigError", "message": message}
            item |= {"ready": False, "started": False, "imageID": "", "lastState": {}}
            item["state"] = {"waiting": waiting}
    return found


def deployment_object(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-k3x9q2", "namespace": NS, "generation": 2},
        "status": {"observedGeneration": 2, "conditions": list(conditions)},
    }


REPLICA_FAILURE = cond("ReplicaFailure", "True", "FailedCreate", QUOTA)
# case, pods, options, (state, label, reason, message), problems
PROBLEM_CASES: list[
    tuple[str, tuple[dict[str, Any], ...], dict[str, Any], tuple[str, ...], tuple[str, ...]]
] = [
    (
        "frp Secret missing",
        (
            config_error("web-1", container="frpc", message=MISSING_SECRET),
            config_error("web-2", container="frpc", message=MISSING_SECRET),
        ),
        {},
        ("degraded", "degraded 0/2", "CreateContainerConfigError", f"pod web-1: {MISSING_SECRET}"),
        (f"exposure not configured: Secret frp-token missing in {NS}",),
    ),
    (
        "frp Secret without the group key",
        (pod("web-1"), config_error("web-2", container="frpc", message=MISSING_KEY)),
        {},
        ("degraded", "degraded 1/2", "CreateContainerConfigError", f"pod web-2: {MISSING_KEY}"),
        (f"exposure not configured: Secret frp-token in {NS} has no key group-key",),
    ),
    (
        "configured frp Secret name",
        (config_error("web-1", container="frpc", message='secret "frp-auth" not found'),),
        {"frp_secret": "frp-auth"},
        (
            "degraded",
            "degraded 0/2",
            "CreateContainerConfigError",
            'pod web-1: secret "frp-auth" not found',
        ),
        (f"exposure not configured: Secret frp-auth missing in {NS}",),
    ),
    (
        "a user's Secret missing: degraded with the kubelet's words, an env note",
        (config_error("web-1", container="app", message='secret "db-credentials" not found'),),
        {},
        (
            "degraded",
            "degraded 0/2",
            "CreateContainerConfigError",
            'pod web-1: secret "db-credentials" not found',
        ),
        (f"env reads Secret db-credentials, missing in {NS}",),
    ),
    (
        "a key missing in a user's Secret: an env note naming the key",
        (
            config_error(
                "web-1",
                container="app",
                message=f"couldn't find key password in Secret {NS}/db-credentials",
            ),
        ),
        {},
        (
            "degraded",
            "degraded 0/2",
            "CreateContainerConfigError",
            f"pod web-1: couldn't find key password in Secret {NS}/db-credentials",
        ),
        ("env reads key password of Secret db-credentials, which has none",),
    ),
    (
        "frpc waiting on another Secret than the frp one",
        (config_error("web-1", container="frpc", message='secret "other" not found'),),
        {},
        (
            "degraded",
            "degraded 0/2",
            "CreateContainerConfigError",
            'pod web-1: secret "other" not found',
        ),
        (),
    ),
    (
        "rollout stopped by quota: old pods run, the refusal is a problem",
        (pod("web-1"), pod("web-2")),
        {"deployment": deployment_object(REPLICA_FAILURE)},
        ("running", "running 2/2", "", ""),
        (f"pods cannot be created: {QUOTA}",),
    ),
    ("all well", (pod("web-1"), pod("web-2")), {}, ("running", "running 2/2", "", ""), ()),
]


@pytest.mark.parametrize(
    ("case", "pods", "options", "expected", "problems"),
    PROBLEM_CASES,
    ids=[c[0] for c in PROBLEM_CASES],
)
def test_problems(
    case: str,
    pods: tuple[dict[str, Any], ...],
    options: dict[str, Any],
    expected: tuple[str, ...],
    problems: tuple[str, ...],
) -> None:
    seen = view(helmrelease(READY, RELEASED), pods)
    if "deployment" in options:
        seen = dataclasses.replace(seen, deployment=options["deployment"])
    kwargs = {k: v for k, v in options.items() if k == "frp_secret"}
    result = status.interpret(
        DEPLOYMENT, view=seen, last_commit=COMMIT, is_applied=ancestry, **kwargs
    )
    assert (result.state, result.label, result.reason, result.message) == expected
    assert result.problems == problems


def test_exposure_problem_only_for_an_exposed_deployment_and_live_pods() -> None:
    missing = config_error("web-1", container="frpc", message=MISSING_SECRET)
    hidden = DEPLOYMENT.model_copy(
        update={"spec": DEPLOYMENT.spec.model_copy(update={"expose": False})}
    )
    quiet = status.interpret(
        hidden, view=view(helmrelease(READY), (missing,)), last_commit=COMMIT, is_applied=ancestry
    )
    assert quiet.problems == ()
    leaving = copy.deepcopy(missing)
    leaving["metadata"]["deletionTimestamp"] = T
    gone = status.interpret(
        DEPLOYMENT,
        view=view(helmrelease(READY), (leaving,)),
        last_commit=COMMIT,
        is_applied=ancestry,
    )
    assert gone.problems == ()
    # the group's note, from pods alone (the Groups page)
    assert status.problems_of((missing, missing), secret="frp-token") == (
        f"exposure not configured: Secret frp-token missing in {NS}",
    )
