"""The stand-in cluster's pod logs read as the kubelet serves them: a crashed container's log
is its previous one (``previous=true``), read also while it waits to restart; without a
terminated instance ``previous`` is the API server's 400 with the kubelet's words, and a
container waiting to start has no log yet (pkg/kubelet/kubelet_pods.go
``validateContainerLogStatus``)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.kubefake import FakeKube
from tests.kubelet import Kubelet

NS = "team"
STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z) (.*)$")


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        yield server


def new_pod(fake: FakeKube, name: str, **spec: Any) -> dict[str, Any]:
    return fake.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"containers": [{"name": "app", "image": "web:1"}], **spec},
        }
    )


def read_log(fake: FakeKube, pod: str, **query: str) -> tuple[int, str]:
    """(status, body or the Status message) of GET .../pods/<pod>/log, as kubectl logs."""
    params = "&".join(f"{k}={v}" for k, v in {"container": "app", **query}.items())
    url = f"{fake.url}/api/v1/namespaces/{NS}/pods/{pod}/log?{params}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, str(json.loads(exc.read())["message"])


def test_a_crashed_container_s_log_is_the_previous_one(fake: FakeKube) -> None:
    kubelet = Kubelet(fake)
    pod = kubelet.sync(new_pod(fake, "web-1"), release="web", health="ok")
    status, running = read_log(fake, "web-1")
    assert status == 200 and "listening on 0.0.0.0:8080" in running
    assert read_log(fake, "web-1", previous="true") == (
        400,
        'previous terminated container "app" in pod "web-1" not found',
    )

    kubelet.sync(pod, release="web", health="crashloop")
    crash = "starting web:1\nerror: connect to postgres:5432: connection refused\nexit status 1\n"
    assert read_log(fake, "web-1", previous="true") == (200, crash)
    # waiting in CrashLoopBackOff, `kubectl logs` reads the last terminated instance as well
    assert read_log(fake, "web-1") == (200, crash)
    # a terminated instance's log is complete: following it ends after its lines
    assert read_log(fake, "web-1", previous="true", follow="true", tailLines="1") == (
        200,
        "exit status 1\n",
    )
    # what the running instance logged before is gone: the kubelet keeps the last terminated one
    assert "listening" not in read_log(fake, "web-1", previous="true")[1]

    # started again and running: its own log now, and the crashed one is still the previous
    crashed = fake.get("v1", "Pod", NS, "web-1")
    assert crashed is not None
    recovered = kubelet.sync(crashed, release="web", health="ok")
    [app] = recovered["status"]["containerStatuses"]
    assert "running" in app["state"] and app["lastState"]["terminated"]["reason"] == "Error"
    status, running = read_log(fake, "web-1")
    assert status == 200 and "listening on 0.0.0.0:8080" in running
    assert read_log(fake, "web-1", previous="true") == (200, crash)


def test_previous_needs_a_terminated_instance_in_the_status(fake: FakeKube) -> None:
    new_pod(fake, "bare")  # written without a kubelet: no container statuses
    fake.set_logs(NS, "bare", "app", ["hello"])
    assert read_log(fake, "bare") == (200, "hello\n")
    assert read_log(fake, "bare", previous="true") == (
        400,
        'previous terminated container "app" in pod "bare" not found',
    )


def test_a_container_waiting_to_start_has_no_log_yet(fake: FakeKube) -> None:
    env = [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "t"}}}]
    pod = new_pod(fake, "web-2", containers=[{"name": "app", "image": "web:1", "env": env}])
    Kubelet(fake).sync(pod, release="web", health="ok")
    assert read_log(fake, "web-2") == (
        400,
        'container "app" in pod "web-2" is waiting to start: CreateContainerConfigError',
    )


def test_each_line_has_its_own_moment(fake: FakeKube) -> None:
    new_pod(fake, "web-3")
    fake.set_logs(NS, "web-3", "app", ["one", "two"])
    fake.append_log(NS, "web-3", "app", "three")
    status, body = read_log(fake, "web-3", timestamps="true")
    assert status == 200
    matches = [STAMP.match(line) for line in body.splitlines()]
    assert all(matches), body
    assert [m[2] for m in matches if m] == ["one", "two", "three"]
    moments = [datetime.fromisoformat(m[1][:26] + "+00:00") for m in matches if m]
    assert moments == sorted(set(moments)), "every line later than the one before"
