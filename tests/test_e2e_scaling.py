"""Health checks, a start command and autoscaling end to end through the JSON API and the
form: request -> commit -> Flux (FluxStandIn: real helm and kubectl on the real remote) ->
the stand-in cluster (the API server's HorizontalPodAutoscaler validation, an autoscaler that
keeps the Deployment within its bounds) -> the poller -> the API's answer and the card. The
quota counts the autoscaler's maximum plus the rolling-update pod; a ReadWriteOnce volume
refuses autoscaling beyond one pod."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import kubelet
from tests.apputil import as_user, make_app
from tests.fluxstandin import FluxStandIn
from tests.gitutil import git
from tests.kubefake import FakeKube

NS = "group-team-a"
ALICE = as_user("alice")
HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")
DEPLOYMENT = ("apps/v1", "Deployment")
IMAGE = "registry:5000/team-a/web:1.0"
TEAM = {
    "name": "team-a",
    "members": ["alice"],
    "quota": {"cpu": "4", "memory": "8Gi", "storage": "10Gi", "deployments": 10},
}


@dataclass
class Stack:
    app: Flask
    client: FlaskClient
    fake: FakeKube
    flux: FluxStandIn
    remote: Path

    def reconcile(self) -> None:
        self.flux.reconcile()
        poller = self.app.extensions["gitops_bridge.runtime"].monitor.poller
        assert poller.run_once() is not None, poller.state.error

    def get(self, name: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/deployments/{name}", headers=ALICE)
        assert response.status_code == 200, response.json
        data: dict[str, Any] = response.json  # type: ignore[assignment]
        return data

    def patch(self, name: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        response = self.client.patch(f"/api/v1/deployments/{name}", json=body, headers=ALICE)
        assert response.status_code == status, response.json
        data: dict[str, Any] = response.json  # type: ignore[assignment]
        return data

    def pods(self, name: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.fake.items("v1", "Pod", NS)
            if p["metadata"]["labels"].get("app.kubernetes.io/instance") == name
            and not p["metadata"].get("deletionTimestamp")
        ]


@pytest.fixture
def stack(tmp_path: Path, helm: str, kubectl: str) -> Iterator[Stack]:
    with FakeKube() as fake:
        kubernetes = {"mode": "kubeconfig", "kubeconfig": str(fake.kubeconfig(tmp_path / "kc"))}
        app = make_app(tmp_path / "data", kubernetes=kubernetes)
        client = app.test_client()
        assert client.post("/api/v1/groups", json=TEAM).status_code == 201
        fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        fake.apply(kubelet.frp_token(NS))  # provisioned out of band
        remote = tmp_path / "data" / "remote.git"
        flux = FluxStandIn(fake, remote=remote, helm=helm, kubectl=kubectl)
        yield Stack(app=app, client=client, fake=fake, flux=flux, remote=remote)


def create(stack: Stack, status: int = 201, **fields: Any) -> dict[str, Any]:
    body = {"name": "web", "image": IMAGE} | fields
    response = stack.client.post("/api/v1/groups/team-a/deployments", json=body, headers=ALICE)
    assert response.status_code == status, response.json
    data: dict[str, Any] = response.json  # type: ignore[assignment]
    return data


def test_create_runs_with_http_probes_the_command_and_an_autoscaler(stack: Stack) -> None:
    created = create(
        stack,
        expose=True,
        health={"path": "/healthz"},
        command=["sh", "-c", 'exec "$0" "$@"'],
        args=["gunicorn", "--bind", "0.0.0.0:8080", "$(NOT_EXPANDED)"],
        autoscaling={"min": 2, "max": 4, "cpu": 60},
    )
    name = created["name"]
    assert created["replicas"] == 2  # left out: the minimum
    assert created["autoscaling"] == {"min": 2, "max": 4, "cpu": 60}
    assert created["health"] == {"path": "/healthz"}
    message = git(stack.remote, "log", "-1", "--format=%B")
    assert "autoscaling: 2..4 at 60% cpu" in message
    assert "health: http /healthz" in message
    assert "args: gunicorn --bind 0.0.0.0:8080 '$(NOT_EXPANDED)'" in message

    stack.reconcile()
    hpa = stack.fake.get(*HPA, NS, name)
    assert hpa is not None
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    assert hpa["spec"]["scaleTargetRef"]["name"] == name
    assert hpa["status"]["desiredReplicas"] == 2
    deployment = stack.fake.get(*DEPLOYMENT, NS, name)
    assert deployment is not None and deployment["spec"]["replicas"] == 2  # the autoscaler's
    app = deployment["spec"]["template"]["spec"]["containers"][0]
    assert app["command"] == ["sh", "-c", 'exec "$$0" "$$@"']
    assert app["args"][-1] == "$$(NOT_EXPANDED)"
    assert app["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert app["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert len(stack.pods(name)) == 2

    found = stack.get(name)
    assert found["status"]["label"] == "running 2/2"
    assert (found["command"], found["args"]) == (created["command"], created["args"])


def test_turning_autoscaling_off_and_on_again_and_stopping(stack: Stack) -> None:
    name = create(stack, autoscaling={"min": 2, "max": 5})["name"]
    stack.reconcile()
    off = stack.patch(name, {"autoscaling": None})
    assert (off["autoscaling"], off["replicas"]) == (None, 2)
    assert "autoscaling 2..5 at 70% cpu -> off" in git(stack.remote, "log", "-1", "--format=%s")
    stack.reconcile()
    assert stack.fake.get(*HPA, NS, name) is None  # helm removes what the chart no longer renders
    deployment = stack.fake.get(*DEPLOYMENT, NS, name)
    assert deployment is not None and deployment["spec"]["replicas"] == 2

    on = stack.patch(name, {"autoscaling": {"min": 3, "max": 6}})
    assert on["replicas"] == 3
    stack.reconcile()
    assert len(stack.pods(name)) == 3
    assert stack.get(name)["status"]["label"] == "running 3/3"

    # scaling within the bounds changes nothing: the autoscaler decides
    same = stack.client.post(
        f"/api/v1/deployments/{name}/scale", json={"replicas": 5}, headers=ALICE
    )
    assert same.status_code == 200 and same.json["changed"] is False
    refused = stack.client.post(
        f"/api/v1/deployments/{name}/scale", json={"replicas": 9}, headers=ALICE
    )
    assert refused.status_code == 422
    assert refused.json["problems"] == [
        {
            "field": "replicas",
            "message": "must be 0 (stopped) or within autoscaling.min..autoscaling.max (3..6): "
            "the autoscaler sets the number of pods, got 9",
        }
    ]
    stopped = stack.patch(name, {"replicas": 0})
    assert (stopped["replicas"], stopped["autoscaling"]["max"]) == (0, 6)
    stack.reconcile()
    assert stack.fake.get(*HPA, NS, name) is None
    assert stack.pods(name) == []


def test_a_new_command_replaces_the_pods(stack: Stack) -> None:
    name = create(stack, replicas=2, command=["run"])["name"]
    stack.reconcile()
    before = {p["metadata"]["name"] for p in stack.pods(name)}
    stack.patch(name, {"command": ["run", "--fast"], "health": {"path": "/up"}})
    subject = git(stack.remote, "log", "-1", "--format=%s")
    assert subject == f"Update {name}: health tcp -> http /up; command run -> run --fast"
    stack.reconcile()
    after = {p["metadata"]["name"] for p in stack.pods(name)}
    assert len(after) == 2 and not before & after


def test_the_quota_counts_the_autoscalers_maximum_and_the_surge_pod(stack: Stack) -> None:
    # 4 cpu: 7 pods x 500m = 3.5 fit; 8 x 500m = 4 fit; 9 x 500m do not
    fits = create(stack, resources={"cpu": "500m"}, autoscaling={"min": 1, "max": 7})
    refused = stack.client.patch(
        f"/api/v1/deployments/{fits['name']}", json={"autoscaling": {"max": 8}}, headers=ALICE
    )
    assert refused.status_code == 422, refused.json
    assert "autoscaling up to 8 replicas + 1 rolling-update pod = 9 pods" in refused.json["message"]
    assert stack.patch(fits["name"], {"autoscaling": {"max": 7}}).get("changed") is False


def test_a_read_write_once_volume_refuses_autoscaling(stack: Stack) -> None:
    volume = {"name": "data", "size": "1Gi", "accessMode": "ReadWriteOnce"}
    response = stack.client.post("/api/v1/groups/team-a/volumes", json=volume, headers=ALICE)
    assert response.status_code == 201, response.json
    body = create(
        stack,
        status=422,
        volumes=[{"volume": "data", "path": "/data"}],
        autoscaling={"min": 1, "max": 3},
    )
    assert body["problems"] == [
        {
            "field": "autoscaling.max",
            "message": "must be 1: volume 'data' is ReadWriteOnce (one pod mounts it), got 3; "
            "turn autoscaling off or put the data on a ReadWriteMany class",
        }
    ]


# ---- the form and the card ------------------------------------------------------------------


def form_token(stack: Stack) -> str:
    page = stack.client.get("/deployments/new", headers=ALICE).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


FORM = {
    "group": "team-a",
    "name": "api",
    "image": IMAGE,
    "replicas": "1",
    "port": "8080",
    "cpu": "100m",
    "memory": "128Mi",
    "health_path": "/healthz",
    "command": "gunicorn",
    "args": "--bind 0.0.0.0:8080 --name 'my app' app:app",
    "autoscale": "on",
    "autoscale_min": "2",
    "autoscale_max": "4",
    "autoscale_cpu": "65",
}


def test_the_form_creates_it_and_the_card_and_edit_form_show_it(stack: Stack) -> None:
    response = stack.client.post(
        "/deployments/new", data=FORM | {"csrf_token": form_token(stack)}, headers=ALICE
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    listed = stack.client.get("/api/v1/deployments", headers=ALICE).json
    (api,) = [d for d in listed if d["app"] == "api"]
    assert api["args"] == ["--bind", "0.0.0.0:8080", "--name", "my app", "app:app"]
    assert (api["command"], api["health"], api["replicas"]) == (
        ["gunicorn"],
        {"path": "/healthz"},
        2,
    )
    assert api["autoscaling"] == {"min": 2, "max": 4, "cpu": 65}
    stack.reconcile()

    page = stack.client.get("/deployments?group=team-a", headers=ALICE).get_data(as_text=True)
    card = page[page.index(f'data-name="{api["name"]}"') :]
    assert 'data-testid="autoscaling">2 now, autoscaled 2\u20134 at 65% of the CPU' in card
    assert "HTTP <code>GET /healthz</code>" in card
    assert "--bind 0.0.0.0:8080 --name &#39;my app&#39; app:app" in card

    edit = stack.client.get(f"/deployments/{api['name']}/edit", headers=ALICE)
    text = edit.get_data(as_text=True)
    assert 'name="args" value="--bind 0.0.0.0:8080 --name &#39;my app&#39; app:app"' in text
    assert 'name="health_path" value="/healthz"' in text
    assert re.search(r'name="autoscale"\s+checked', text)


def test_the_form_names_the_field_that_is_wrong(stack: Stack) -> None:
    bad = FORM | {
        "command": "sh -c 'unclosed",
        "autoscale_min": "3",
        "autoscale_max": "2",
        "health_path": "healthz",
        "csrf_token": form_token(stack),
    }
    response = stack.client.post("/deployments/new", data=bad, headers=ALICE)
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "Cannot be split into words like a shell line (No closing quotation)" in text
    assert 'value="sh -c &#39;unclosed"' in text  # shown again as typed
    fixed = bad | {"command": "sh -c 'closed'"}
    response = stack.client.post("/deployments/new", data=fixed, headers=ALICE)
    text = response.get_data(as_text=True)
    assert "Must be &gt;= Min pods (3), got 2." in text  # at Max pods, the field named
    assert "Must be a URL path starting with" in text
