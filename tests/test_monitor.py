"""Reading the cluster back through the API: statuses and problems (a missing frp Secret) from
the Flux stand-in, fast feedback, signed Flux events, retry, logs with authorization, metrics
and peers. The cluster is an
HTTP-level fake of the Kubernetes API (no API server can run here)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gitops_bridge import monitor, poller
from gitops_bridge.runtime import Runtime
from tests import connected, kubelet
from tests.apputil import create_group, make_app, web
from tests.fluxstandin import FluxStandIn
from tests.kubefake import FakeKube
from tests.test_poller import caught_up

ALICE = {"X-Forwarded-User": "alice"}
NS = "group-team-a"
JSON = "application/json"
EVENTS_TOKEN = "events-secret"


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with connected.fake_cluster() as server:
        yield server


@pytest.fixture
def app(tmp_path: Path, fake: FakeKube) -> Iterator[Flask]:
    with connected.connected_app(
        tmp_path, fake, secret_key="peer-secret", kubernetes={"events_token": EVENTS_TOKEN}
    ) as built:
        yield built


@pytest.fixture
def rt(app: Flask) -> Runtime:
    value: Runtime = app.extensions["gitops_bridge.runtime"]
    return value


@pytest.fixture
def client(app: Flask, fake: FakeKube) -> FlaskClient:
    return connected.team_client(app, fake)


@pytest.fixture
def standin(fake: FakeKube, tmp_path: Path, helm: str, kubectl: str) -> FluxStandIn:
    return connected.flux(fake, tmp_path, helm, kubectl)


def deploy(client: FlaskClient, **fields: Any) -> str:
    response = client.post("/api/v1/groups/team-a/deployments", json=web(**fields), headers=ALICE)
    assert response.status_code == 201, response.json
    name: str = response.json["name"]
    return name


def poll(rt: Runtime) -> None:
    """One cycle, then wait for the watches to bring every change made so far (they do in
    the background: a reading follows the cluster within moments, not at once)."""
    assert rt.monitor.poller is not None
    assert rt.monitor.poller.run_once() is not None, rt.monitor.poller.state.error
    caught_up(rt.monitor.poller)


def status_of(client: FlaskClient, rt: Runtime, name: str) -> dict[str, Any]:
    poll(rt)
    body: dict[str, Any] = client.get(f"/api/v1/deployments/{name}", headers=ALICE).json
    return body["status"]  # type: ignore[no-any-return]


def test_committed_then_running_with_usage(
    client: FlaskClient, rt: Runtime, standin: FluxStandIn
) -> None:
    name = deploy(client, replicas=2, expose=True)
    before = status_of(client, rt, name)
    assert before["state"] == "committed" and before["label"].startswith("committed ")
    applied = standin.reconcile()
    now = status_of(client, rt, name)
    assert (now["state"], now["label"]) == ("running", "running 2/2")
    assert now["appliedCommit"] == applied and now["ready"] == 2
    assert now["cpu"]["used"] and now["cpu"]["limit"] == "440m"  # 2 x (2 x (100m + 10m))
    assert now["memory"]["limit"] == "640Mi" and now["history"][0]["status"] == "deployed"
    assert len(now["pods"]) == 2 and all(p["ready"] for p in now["pods"])


def test_a_missing_frp_secret_is_a_problem_on_the_card_and_the_groups_page(
    client: FlaskClient, rt: Runtime, fake: FakeKube, standin: FluxStandIn
) -> None:
    fake.delete("v1", "Secret", NS, "frp-token")  # not provisioned for this group yet
    name = deploy(client, replicas=2, expose=True)
    standin.reconcile()
    note = f"exposure not configured: Secret frp-token missing in {NS}"
    now = status_of(client, rt, name)
    assert now["problems"] == [note]
    assert (now["state"], now["reason"]) == ("degraded", "CreateContainerConfigError")
    assert now["message"].endswith('secret "frp-token" not found')
    groups = client.get("/api/v1/groups", headers=ALICE).json
    assert [g["problems"] for g in groups if g["name"] == "team-a"] == [[note]]
    for page in ("/deployments", "/groups"):
        assert note in client.get(page, headers=ALICE).get_data(as_text=True), page

    fake.apply(kubelet.frp_token(NS))  # provisioned: the kubelet starts frpc on its next sync
    standin.reconcile()
    now = status_of(client, rt, name)
    assert (now["state"], now["label"], now["problems"]) == ("running", "running 2/2", [])
    groups = client.get("/api/v1/groups", headers=ALICE).json
    assert [g["problems"] for g in groups if g["name"] == "team-a"] == [[]]
    assert note not in client.get("/groups", headers=ALICE).get_data(as_text=True)


def test_failed_upgrade_shows_reason_message_and_remediation(
    client: FlaskClient, rt: Runtime, standin: FluxStandIn
) -> None:
    name = deploy(client)
    standin.reconcile()
    client.patch(f"/api/v1/deployments/{name}", json={"image": "nginx:broken"}, headers=ALICE)
    standin.reconcile(scenario={name: "failed-upgrade"})
    now = status_of(client, rt, name)
    assert (now["state"], now["reason"]) == ("failed", "UpgradeFailed")
    assert "Helm upgrade failed" in now["message"]
    assert now["remediation"].startswith("RollbackSucceeded")
    assert [h["status"] for h in now["history"][:2]] == ["failed", "deployed"]


@pytest.mark.parametrize(
    ("scenario", "state", "reason"),
    [
        ("crashloop", "degraded", "CrashLoopBackOff"),
        ("stalled", "failed", "RetriesExceeded"),
        ("progressing", "reconciling", "Progressing"),
    ],
)
def test_scenarios(
    client: FlaskClient, rt: Runtime, standin: FluxStandIn, scenario: str, state: str, reason: str
) -> None:
    name = deploy(client)
    standin.reconcile(scenario={name: scenario})
    now = status_of(client, rt, name)
    assert (now["state"], now["reason"]) == (state, reason)


def test_stopped_and_deleting(client: FlaskClient, rt: Runtime, standin: FluxStandIn) -> None:
    name = deploy(client)
    standin.reconcile()
    client.post(f"/api/v1/deployments/{name}/scale", json={"replicas": 0}, headers=ALICE)
    standin.reconcile()
    assert status_of(client, rt, name)["state"] == "stopped"
    client.delete(f"/api/v1/deployments/{name}", headers=ALICE)
    standin.reconcile(hold_deletes=True)
    poll(rt)
    page = client.get("/deployments", headers=ALICE).get_data(as_text=True)
    assert f'data-name="{name}"' in page and ">deleting<" in page
    standin.reconcile()
    poll(rt)
    assert f'data-name="{name}"' not in client.get("/deployments", headers=ALICE).get_data(
        as_text=True
    )


def test_a_push_asks_flux_to_reconcile(
    client: FlaskClient, fake: FakeKube, standin: FluxStandIn
) -> None:
    standin.reconcile()  # Flux's own objects exist
    deploy(client)
    for _ in range(100):  # the request is sent from a background thread
        source = fake.get(
            "source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", "flux-system"
        )
        kustomization = fake.get(
            "kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system", "tenants"
        )
        marks = [
            ((o or {}).get("metadata") or {}).get("annotations", {})
            for o in (source, kustomization)
        ]
        if all("reconcile.fluxcd.io/requestedAt" in m for m in marks):
            break
        threading.Event().wait(0.05)
    else:
        pytest.fail(f"no reconcile request: {marks}")


def test_retry_sets_force_and_reset(
    client: FlaskClient, fake: FakeKube, standin: FluxStandIn
) -> None:
    name = deploy(client)
    standin.reconcile(scenario={name: "stalled"})
    response = client.post(f"/api/v1/deployments/{name}/retry", headers=ALICE, content_type=JSON)
    assert response.status_code == 202
    release: Any = fake.get("helm.toolkit.fluxcd.io/v2", "HelmRelease", "group-team-a", name)
    annotations = release["metadata"]["annotations"]
    stamp = response.json["requestedAt"]
    assert annotations["reconcile.fluxcd.io/requestedAt"] == stamp
    assert annotations["reconcile.fluxcd.io/forceAt"] == stamp
    assert annotations["reconcile.fluxcd.io/resetAt"] == stamp
    outsider = client.post(
        f"/api/v1/deployments/{name}/retry",
        headers={"X-Forwarded-User": "mallory"},
        content_type=JSON,
    )
    assert outsider.status_code == 404  # to a non-member it does not exist


def signed(
    body: bytes, token: str = EVENTS_TOKEN, namespace: str = "group-team-a"
) -> dict[str, str]:
    key = monitor.events_key(token, namespace)
    digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature": f"sha256={digest}", "Content-Type": "application/json"}


def test_flux_events_are_verified_and_shown(client: FlaskClient, standin: FluxStandIn) -> None:
    name = deploy(client)
    standin.reconcile()
    event = {
        "involvedObject": {
            "kind": "HelmRelease",
            "namespace": "group-team-a",
            "name": name,
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
        },
        "severity": "error",
        "timestamp": "2026-11-26T10:00:00Z",
        "reason": "UpgradeFailed",
        "message": "Helm upgrade failed: timed out",
        "reportingController": "helm-controller",
        "metadata": {"revision": "0.1.0+abc"},
    }
    body = json.dumps(event).encode()
    assert client.post("/api/v1/flux/events", data=body, headers=signed(body)).status_code == 202
    shown = client.get(f"/api/v1/deployments/{name}", headers=ALICE).json["events"]
    assert shown[-1]["reason"] == "UpgradeFailed" and shown[-1]["revision"] == "0.1.0+abc"
    bad = client.post("/api/v1/flux/events", data=body, headers=signed(body, "wrong"))
    assert bad.status_code == 401
    unsigned = client.post("/api/v1/flux/events", data=body, content_type=JSON)
    assert unsigned.status_code == 401
    tampered = client.post("/api/v1/flux/events", data=body + b" ", headers=signed(body))
    assert tampered.status_code == 401
    # another group's Provider key (readable by that group) cannot speak for team-a
    forged = signed(body, namespace="group-team-b")
    assert client.post("/api/v1/flux/events", data=body, headers=forged).status_code == 401


def test_replayed_flux_events_are_recorded_once(client: FlaskClient, fake: FakeKube) -> None:
    name = deploy(client)
    event = {
        "involvedObject": {"kind": "HelmRelease", "namespace": NS, "name": name, "uid": "u-1"},
        "severity": "error",
        "timestamp": "2026-11-26T10:00:00Z",
        "reason": "UpgradeFailed",
        "message": "Helm upgrade failed: timed out",
    }
    body = json.dumps(event).encode()
    first = client.post("/api/v1/flux/events", data=body, headers=signed(body))
    assert first.status_code == 202 and "duplicate" not in first.json
    # a retried delivery, or a captured one replayed (other key order, same event)
    replay = json.dumps(event, sort_keys=True).encode()
    again = client.post("/api/v1/flux/events", data=replay, headers=signed(replay))
    assert again.status_code == 200 and again.json["duplicate"] is True
    later = json.dumps(event | {"timestamp": "2026-11-26T10:05:00Z"}).encode()
    assert client.post("/api/v1/flux/events", data=later, headers=signed(later)).status_code == 202
    shown = client.get(f"/api/v1/deployments/{name}", headers=ALICE).json["events"]
    assert [e["timestamp"] for e in shown] == ["2026-11-26T10:00:00Z", "2026-11-26T10:05:00Z"]


def test_deeply_nested_flux_events_answer_400(client: FlaskClient) -> None:
    body = b'{"involvedObject": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = client.post("/api/v1/flux/events", data=body, headers=signed(body))
    assert response.status_code == 400, response.json
    assert "nests deeper than" in response.json["message"]


def test_logs_for_members_only(client: FlaskClient, fake: FakeKube, standin: FluxStandIn) -> None:
    name = deploy(client, replicas=1)
    standin.reconcile()
    response = client.get(f"/api/v1/deployments/{name}/logs?tail=50", headers=ALICE)
    assert response.status_code == 200 and response.get_data(as_text=True).strip()
    outsider = client.get(
        f"/api/v1/deployments/{name}/logs", headers={"X-Forwarded-User": "mallory"}
    )
    assert outsider.status_code == 404 and "team-a" not in outsider.json["message"]
    bad = client.get(f"/api/v1/deployments/{name}/logs?tail=-1", headers=ALICE)
    assert bad.status_code == 422 and bad.json["problems"][0]["field"] == "tail"
    wrong_pod = client.get(f"/api/v1/deployments/{name}/logs?pod=other", headers=ALICE)
    assert wrong_pod.status_code == 404


def test_logs_follow_streams_server_sent_events(
    client: FlaskClient, fake: FakeKube, standin: FluxStandIn
) -> None:
    name = deploy(client, replicas=1)
    standin.reconcile()
    pod = client.get(f"/api/v1/deployments/{name}", headers=ALICE)  # status lists pods
    assert pod.status_code == 200
    pods = [p["name"] for p in pod.json["status"]["pods"]] if pod.json["status"].get("pods") else []
    response = client.get(
        f"/api/v1/deployments/{name}/logs?follow=1&tail=1",
        headers=ALICE | {"Accept": "text/event-stream"},
        buffered=False,
    )
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    stream = iter(response.response)  # type: ignore[attr-defined]
    assert next(stream) == b""  # the headers go out at once, before any line
    first = next(stream)
    assert first.startswith(b"data: ")
    pod_name = pods[0] if pods else fake.items("v1", "Pod", "group-team-a")[0]["metadata"]["name"]
    fake.append_log("group-team-a", pod_name, "app", "a fresh line")
    for chunk in stream:
        if b"a fresh line" in chunk:
            assert chunk == b"data: a fresh line\n\n"
            break
    response.close()


def test_without_a_cluster_everything_says_not_connected(tmp_path: Path) -> None:
    client = make_app(tmp_path / "data", kubernetes={"mode": "none"}).test_client()
    create_group(client)
    name = deploy(client)
    status = client.get(f"/api/v1/deployments/{name}", headers=ALICE).json["status"]
    assert status["state"] == "not connected" and status["label"].startswith("committed ")
    logs = client.get(f"/api/v1/deployments/{name}/logs", headers=ALICE)
    assert logs.status_code == 503 and logs.json["retryable"] is True
    page = client.get("/deployments", headers=ALICE)
    assert page.status_code == 200 and b'data-testid="not-connected"' in page.data


def test_health_readiness_and_metrics(
    client: FlaskClient, rt: Runtime, standin: FluxStandIn
) -> None:
    deploy(client)
    standin.reconcile()
    assert rt.monitor.poller is not None
    rt.monitor.poller.run_once()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["cluster"] == "ok"
    text = client.get("/metrics").get_data(as_text=True)
    for name in (
        "gitops_bridge_commits_total",
        "gitops_bridge_poll_duration_seconds_count",
        "gitops_bridge_http_requests_total",
        "gitops_bridge_poll_api_calls_total",
    ):
        assert name in text, name
    commits = next(
        line for line in text.splitlines() if line.startswith("gitops_bridge_commits_total")
    )
    assert float(commits.split()[-1]) >= 1


def test_followers_take_the_leaders_reading(
    client: FlaskClient, rt: Runtime, standin: FluxStandIn
) -> None:
    deploy(client)
    standin.reconcile()
    poll(rt)
    denied = client.get("/internal/v1/reading")
    assert denied.status_code == 401
    shared = client.get(
        "/internal/v1/reading", headers={"Authorization": f"Bearer {rt.peer_token()}"}
    )
    assert shared.status_code == 200
    assert rt.monitor.poller is not None
    assert poller.reading_from_json(shared.data) == rt.monitor.poller.state.reading
