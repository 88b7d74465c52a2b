"""A deployment's pods and Kubernetes events, through the API and its page, from the Flux
stand-in's cluster: a pod killed out of memory shows its OOMKilled 137 and restarts, the
kubelet's BackOff and the ReplicaSet controller's FailedCreate (the group's quota lowered
below what runs) show as warnings, newest first, and only to the group's members."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gitops_bridge import status
from gitops_bridge.runtime import Runtime
from tests import connected, kubelet
from tests.apputil import web
from tests.fluxstandin import FluxStandIn
from tests.kubefake import FakeKube
from tests.test_poller import caught_up

ALICE = {"X-Forwarded-User": "alice"}
MALLORY = {"X-Forwarded-User": "mallory"}
NS = "group-team-a"


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with connected.fake_cluster() as server:
        yield server


@pytest.fixture
def app(tmp_path: Path, fake: FakeKube) -> Iterator[Flask]:
    with connected.connected_app(tmp_path, fake) as built:
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


def poll(rt: Runtime) -> None:
    assert rt.monitor.poller is not None
    assert rt.monitor.poller.run_once() is not None, rt.monitor.poller.state.error
    caught_up(rt.monitor.poller)


def pods_of(fake: FakeKube, name: str) -> list[dict[str, Any]]:
    return [
        p
        for p in fake.items("v1", "Pod", NS)
        if p["metadata"]["labels"].get("app.kubernetes.io/instance") == name
    ]


def oom_killed_and_over_quota(
    client: FlaskClient, fake: FakeKube, standin: FluxStandIn
) -> tuple[str, str]:
    """A deployment of 2 pods whose app container is killed out of memory; then the group's
    quota is lowered below what runs and one pod goes (evicted, say): its replacement is
    refused. (name, the ReplicaSet that could not create it)."""
    response = client.post(
        "/api/v1/groups/team-a/deployments", json=web(replicas=2, expose=True), headers=ALICE
    )
    assert response.status_code == 201, response.json
    name: str = response.json["name"]
    oom = {name: "oomkilled"}
    standin.reconcile(scenario=oom)
    # each pod requests 110m (100m + the frpc sidecar's 10m): 220m run, 150m allowed now
    lowered = client.patch("/api/v1/groups/team-a", json={"quota": {"cpu": "150m"}})
    assert lowered.status_code == 200, lowered.json
    standin.reconcile(scenario=oom)  # the new ResourceQuota applied; both pods still run
    assert len(pods_of(fake, name)) == 2
    gone = pods_of(fake, name)[0]
    fake.delete("v1", "Pod", NS, gone["metadata"]["name"])
    standin.reconcile(scenario=oom)  # the ReplicaSet controller tries to replace it
    assert len(pods_of(fake, name)) == 1
    replica_set = gone["metadata"]["ownerReferences"][0]["name"]
    return name, replica_set


def test_the_api_and_the_page_show_the_oom_killed_pod_and_the_quota_warning(
    client: FlaskClient, rt: Runtime, fake: FakeKube, standin: FluxStandIn
) -> None:
    name, replica_set = oom_killed_and_over_quota(client, fake, standin)
    [pod] = pods_of(fake, name)
    pod_name = pod["metadata"]["name"]
    poll(rt)

    found = client.get(f"/api/v1/deployments/{name}", headers=ALICE).json["status"]["pods"]
    assert [p["name"] for p in found] == [pod_name]
    shown = found[0]
    assert shown["lastTermination"]["reason"] == "OOMKilled"
    assert (shown["lastTermination"]["exitCode"], shown["lastTermination"]["container"]) == (
        137,
        "app",
    )
    assert shown["restarts"] >= 6  # it crashed on every sync since it started
    assert (shown["readyContainers"], shown["containers"]) == (1, 2)  # frpc runs
    assert shown["node"] == kubelet.NODE and shown["created"] and shown["started"]

    response = client.get(f"/api/v1/deployments/{name}/events", headers=ALICE)
    assert response.status_code == 200, response.json
    items = response.json["items"]
    by_reason = {item["reason"]: item for item in items}
    refused = by_reason["FailedCreate"]
    assert refused["type"] == "Warning" and refused["source"] == "replicaset-controller"
    assert refused["object"] == {"kind": "ReplicaSet", "name": replica_set}  # the RS mapping
    assert re.match(r"^Error creating: .*exceeded quota: quota, requested: ", refused["message"])
    assert "requests.cpu" in refused["message"]
    back_off = [i for i in items if i["reason"] == "BackOff"]
    assert {i["object"]["name"] for i in back_off} >= {pod_name}  # the Pod mapping
    survivor = next(i for i in back_off if i["object"]["name"] == pod_name)
    assert survivor["type"] == "Warning" and survivor["object"]["kind"] == "Pod"
    uid = pod["metadata"]["uid"]
    assert survivor["message"] == (
        f"Back-off restarting failed container app in pod {pod_name}_{NS}({uid})"
    )
    assert survivor["count"] >= 3  # one event, counted on every sync
    seen = [status.instant(i["lastSeen"]) for i in items]
    assert all(seen) and seen == sorted(seen, reverse=True)  # type: ignore[type-var]

    page = client.get(f"/deployments/{name}", headers=ALICE)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    pods = section(html, "pods")
    assert pod_name in pods and "<strong>OOMKilled</strong>, exit code 137" in pods
    assert "<caption>" in pods and '<th scope="col">Last termination</th>' in pods
    events = section(html, "events")
    rows = re.findall(r'<tr class="([^"]*)" data-testid="event" data-reason="([^"]+)">', events)
    assert ("event event-warning", "FailedCreate") in rows
    assert ("event event-warning", "BackOff") in rows
    warning_row = events.split('data-reason="FailedCreate">', 1)[1].split("</tr>", 1)[0]
    assert "Warning" in warning_row and f"ReplicaSet/{replica_set}" in warning_row
    assert "exceeded quota" in warning_row


def test_events_are_for_the_groups_members_only(
    client: FlaskClient, rt: Runtime, standin: FluxStandIn
) -> None:
    response = client.post("/api/v1/groups/team-a/deployments", json=web(), headers=ALICE)
    name = response.json["name"]
    standin.reconcile()
    poll(rt)
    assert client.get(f"/api/v1/deployments/{name}/events", headers=ALICE).status_code == 200
    refused = client.get(f"/api/v1/deployments/{name}/events", headers=MALLORY)
    assert refused.status_code == 404  # the same answer as for a deployment that does not exist
    assert client.get("/api/v1/deployments/nope-abc123/events", headers=ALICE).status_code == 404


def test_a_normal_deployment_has_no_warnings(
    client: FlaskClient, rt: Runtime, standin: FluxStandIn
) -> None:
    response = client.post("/api/v1/groups/team-a/deployments", json=web(), headers=ALICE)
    name = response.json["name"]
    standin.reconcile()
    poll(rt)
    items = client.get(f"/api/v1/deployments/{name}/events", headers=ALICE).json["items"]
    assert [i for i in items if i["type"] == "Warning"] == []
    html = client.get(f"/deployments/{name}", headers=ALICE).get_data(as_text=True)
    assert "event-warning" not in html
    pods = section(html, "pods")
    assert pods.count('data-testid="pod"') == 1 and ">none<" in pods  # no termination yet


def section(html: str, testid: str) -> str:
    """The page's ``<section data-testid=...>`` as text."""
    start = html.index(f'data-testid="{testid}"')
    return html[start : html.index("</section>", start)]


def test_the_last_termination_is_the_latest_of_the_containers() -> None:
    def ended(name: str, reason: str, code: int, at: str | None) -> dict[str, Any]:
        terminated: dict[str, Any] = {"reason": reason, "exitCode": code}
        if at is not None:
            terminated["finishedAt"] = at
        return {"name": name, "ready": False, "lastState": {"terminated": terminated}}

    pod = {
        "metadata": {"name": "p"},
        "status": {
            "containerStatuses": [
                ended("app", "Error", 1, "2026-11-26T10:00:00Z"),
                ended("frpc", "OOMKilled", 137, "2026-11-26T10:05:00Z"),
                {"name": "x", "ready": True},
            ]
        },
    }
    seen = status.pod_view(pod)
    assert seen.last_termination == status.Termination(
        container="frpc", reason="OOMKilled", exit_code=137, finished_at="2026-11-26T10:05:00Z"
    )
    assert (seen.ready_containers, seen.containers) == (1, 3)
    pod["status"]["containerStatuses"][1] = ended("frpc", "OOMKilled", 137, None)
    assert status.pod_view(pod).last_termination == status.Termination(  # no time: not newer
        container="app", reason="Error", exit_code=1, finished_at="2026-11-26T10:00:00Z"
    )
    assert status.pod_view({"metadata": {"name": "p"}}).last_termination is None
