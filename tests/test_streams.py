"""Log streams and idle connections cannot freeze the service: the real `gitops-bridge serve`
(waitress with its worker lanes), reading logs from the fake Kubernetes API, holds 200
abandoned follow streams and 300 idle connections while /healthz and the API keep answering;
a stream over the per-user or the global limit answers 429, a held stream carries heartbeats,
and a client that left has its upstream log request closed within seconds.

No timing is asserted beyond generous timeouts (liveness); scripts/bench measures latency."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gitops_bridge import serving
from gitops_bridge.render import layout
from tests.kubefake import FakeKube

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
USERS = [f"u{i}" for i in range(51)]  # members of team-a
PER_USER = 4
LIMIT = 200  # open streams on the server (u0..u49 x 4)
HEARTBEAT = 1.0
NS = "group-team-a"
TIMEOUT = 10.0  # any single socket operation of a client


@dataclass
class Stack:
    url: str
    port: int
    fake: FakeKube
    name: str  # the deployment
    log: Path

    @property
    def logs_path(self) -> str:
        return f"/api/v1/deployments/{self.name}/logs?follow=1&tail=1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def call(
    url: str, method: str, path: str, body: Any = None, user: str | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if user:
        headers["X-Forwarded-User"] = user
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def healthz(url: str) -> float:
    """/healthz answers (within 5 s, or the test fails); how long it took."""
    start = time.perf_counter()
    with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
        assert response.status == 200 and response.read() == b"ok\n"
    return time.perf_counter() - start


@dataclass
class Held:
    """A follow request on a raw socket: status, headers and what has arrived since."""

    sock: socket.socket
    status: int
    headers: str
    data: bytes

    def read_until(self, wanted: bytes, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while wanted not in self.data and time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            self.data += chunk
        return wanted in self.data

    def json(self) -> Any:
        length = int(self.headers.split("content-length: ", 1)[1].split("\r\n", 1)[0])
        self.read_until(b"}", TIMEOUT)
        return json.loads(self.data[:length])

    def close(self) -> None:
        with suppress(OSError):
            self.sock.close()


def open_stream(stack: Stack, user: str) -> Held:
    sock = socket.create_connection((HOST, stack.port), timeout=TIMEOUT)
    request = (
        f"GET {stack.logs_path} HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-User: {user}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    )
    sock.sendall(request.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the connection: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    return Held(sock=sock, status=int(text.split()[1]), headers=text.lower(), data=rest)


@contextmanager
def running_bridge(tmp: Path, **server: object) -> Iterator[Stack]:
    """``python -m gitops_bridge serve`` on a fresh data dir, reading a fake cluster (its
    ``server.*`` settings given), with a group of 51 members, one deployment and its pod
    (with a line of log). scripts/bench measures on this too."""
    with FakeKube() as fake:
        port = free_port()
        env = os.environ | {
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GITOPS_BRIDGE_KUBERNETES__MODE": "kubeconfig",
            "GITOPS_BRIDGE_KUBERNETES__KUBECONFIG": str(fake.kubeconfig(tmp / "kubeconfig")),
            "GITOPS_BRIDGE_KUBERNETES__POLL_INTERVAL": "60",
        }
        env |= {f"GITOPS_BRIDGE_SERVER__{key.upper()}": str(value) for key, value in server.items()}
        log = tmp / "serve.log"
        command = [sys.executable, "-m", "gitops_bridge", "serve", "--port", str(port)]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*command, "--data-dir", str(tmp / "data")],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://{HOST}:{port}"
        try:

            def up() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"serve exited with {proc.returncode}:\n{log.read_text()}")
                with suppress(OSError):
                    healthz(url)
                    return True
                return False

            wait_for(up, 60, f"{url}/healthz")
            quota = {"cpu": "4", "memory": "8Gi", "storage": "1Gi", "deployments": 5}
            group = {"name": "team-a", "members": USERS, "quota": quota}
            assert call(url, "POST", "/api/v1/groups", group)[0] == 201
            web = {"name": "web", "image": "registry:5000/team-a/web:1.0"}
            status, body = call(url, "POST", "/api/v1/groups/team-a/deployments", web, "u0")
            assert status == 201, body
            fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
            pod = f"{body['name']}-abc12-xyz34"
            fake.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": pod,
                        "namespace": NS,
                        "labels": {layout.LABEL_ID: body["id"]},
                    },
                    "spec": {"containers": [{"name": "app", "image": web["image"]}]},
                }
            )
            fake.set_logs(NS, pod, "app", ["started"])
            yield Stack(url=url, port=port, fake=fake, name=body["name"], log=log)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("streams")
    limits = {"max_streams": LIMIT, "max_streams_per_user": PER_USER}
    with running_bridge(tmp, **limits, stream_heartbeat=HEARTBEAT) as running:
        yield running


def no_streams_upstream(stack: Stack) -> None:
    wait_for(lambda: stack.fake.open_log_streams == 0, 20, "no log request open upstream")


def test_requests_go_to_lanes_by_path() -> None:
    assert serving.lane("/healthz", "") == serving.HEALTH
    assert serving.lane("//healthz", "x=1") == serving.HEALTH  # as waitress normalises it
    assert serving.lane("/metrics", "") == serving.HEALTH
    logs = "/api/v1/deployments/web-abc123/logs"
    for query in ("follow=1", "tail=5&follow=true", "follow=yes&follow=0"):
        assert serving.lane(logs, query) == serving.STREAMS, query
    for query in ("", "follow=0", "follow=", "tail=1", "follow=0&follow=1"):
        assert serving.lane(logs, query) == serving.REQUESTS, query
    assert serving.lane("/api/v1/deployments/web-abc123/history", "diff=1") == serving.HISTORY
    assert serving.lane("/deployments/web-abc123/history", "") == serving.HISTORY
    assert serving.lane("/deployments/web-abc123/revert", "") == serving.REQUESTS
    assert serving.lane("/readyz", "") == serving.REQUESTS
    assert serving.lane("/api/v1/deployments", "follow=1") == serving.REQUESTS


def test_streams_over_the_per_user_limit_answer_429(stack: Stack) -> None:
    held = [open_stream(stack, "u1") for _ in range(PER_USER)]
    try:
        assert [h.status for h in held] == [200] * PER_USER
        refused = open_stream(stack, "u1")
        assert refused.status == 429
        assert "retry-after: " in refused.headers
        body = refused.json()
        refused.close()
        assert body["retryable"] is True and body["error"] == "TooManyRequests"
        assert body["problems"][0]["field"] == "follow"
        assert f"at most {PER_USER} open log streams per user" in body["message"]
        other = open_stream(stack, "u2")  # the limit is per user
        assert other.status == 200
        other.close()
    finally:
        for h in held:
            h.close()

    def slot_again() -> bool:  # the streams u1 left are noticed, their slots given back
        again = open_stream(stack, "u1")
        again.close()
        return again.status == 200

    wait_for(slot_again, 15, "a slot freed by a closed stream")
    no_streams_upstream(stack)


def test_a_held_stream_carries_heartbeats(stack: Stack) -> None:
    held = open_stream(stack, "u2")
    try:
        assert held.status == 200 and "content-type: text/event-stream" in held.headers
        assert held.read_until(b"data: started\n\n", TIMEOUT)
        # the pod is quiet: comments keep the connection observably alive
        assert held.read_until(b": heartbeat\n\n", 5 * HEARTBEAT + 5)
        stack.fake.append_log(
            NS, stack.fake.items("v1", "Pod", NS)[0]["metadata"]["name"], "app", "fresh"
        )
        assert held.read_until(b"data: fresh\n\n", TIMEOUT)
    finally:
        held.close()
    no_streams_upstream(stack)


def test_a_gone_clients_upstream_log_request_is_closed(stack: Stack) -> None:
    no_streams_upstream(stack)
    held = open_stream(stack, "u3")
    assert held.status == 200
    wait_for(lambda: stack.fake.open_log_streams == 1, TIMEOUT, "the upstream log request")
    held.close()  # the client leaves without a word; the pod logs nothing more
    wait_for(lambda: stack.fake.open_log_streams == 0, 10, "the upstream request to close")


def test_abandoned_streams_and_idle_connections_do_not_freeze_the_service(stack: Stack) -> None:
    idle: list[socket.socket] = []
    held: list[Held] = []
    pool = ThreadPoolExecutor(16)
    try:
        for n in range(300):  # half send nothing, half a request that never ends
            sock = socket.create_connection((HOST, stack.port), timeout=TIMEOUT)
            if n % 2:
                sock.sendall(b"GET /api/v1/groups HTTP/1.1\r\nHost: x\r\n")
            idle.append(sock)
        latencies = [healthz(stack.url)]

        users = [user for user in USERS[:50] for _ in range(PER_USER)]
        for opened in pool.map(lambda user: open_stream(stack, user), users):
            held.append(opened)
            assert opened.status == 200, opened.data
        assert len(held) == LIMIT
        latencies.append(healthz(stack.url))
        wait_for(lambda: stack.fake.open_log_streams == LIMIT, 30, "every stream upstream")

        refused = open_stream(stack, USERS[50])  # a user with none open: the server is full
        assert refused.status == 429
        assert f"at most {LIMIT} open log streams on this server" in refused.json()["message"]
        refused.close()

        # everything is held: health and the API answer, history with diffs too
        status, body = call(stack.url, "GET", f"/api/v1/deployments/{stack.name}", user="u0")
        assert status == 200 and body["name"] == stack.name
        history = f"/api/v1/deployments/{stack.name}/history?diff=1"
        calls = [pool.submit(call, stack.url, "GET", history, None, "u0") for _ in range(16)]
        while not all(c.done() for c in calls):
            latencies.append(healthz(stack.url))
            time.sleep(0.05)
        assert [c.result()[0] for c in calls] == [200] * 16

        for h in held:  # every client leaves without a word
            h.close()
        held.clear()
        latencies.append(healthz(stack.url))
        status, _ = call(stack.url, "GET", "/api/v1/groups", user="u0")
        assert status == 200
        no_streams_upstream(stack)

        def slot_again() -> bool:  # and their slots are given back
            again = open_stream(stack, "u0")
            again.close()
            return again.status == 200

        wait_for(slot_again, 15, "slots freed by the abandoned streams")
        latencies.append(healthz(stack.url))
        latencies.sort()
        print(
            f"/healthz under load: {len(latencies)} checks, median "
            f"{latencies[len(latencies) // 2] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
        )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        for h in held:
            h.close()
        for sock in idle:
            with suppress(OSError):
                sock.close()
