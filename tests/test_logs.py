"""Logs a developer can debug with, through the API: every pod merged in time order and tagged
with its pod (bounded in pods and bytes, followed as one stream that counts one request per pod
against the server's limit), timestamps, the previous container after a crash (a 404 that says
so when there is none) and downloads; bad values name their field; members only. The cluster is
the HTTP-level fake with the Flux stand-in, its controllers and kubelet; the merge itself is
also checked on its own (``podlogs``)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gitops_bridge import podlogs
from tests import connected
from tests.apputil import web
from tests.fluxstandin import FluxStandIn
from tests.kubefake import FakeKube

ALICE = {"X-Forwarded-User": "alice"}
MALLORY = {"X-Forwarded-User": "mallory"}
NS = "group-team-a"
STAMP = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+Z"
CRASH = ["error: connect to postgres:5432: connection refused", "exit status 1"]


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with connected.fake_cluster() as server:
        yield server


@pytest.fixture
def app(tmp_path: Path, fake: FakeKube) -> Iterator[Flask]:
    with connected.connected_app(tmp_path, fake, server={"max_streams": 3}) as built:
        yield built


@pytest.fixture
def client(app: Flask, fake: FakeKube) -> FlaskClient:
    return connected.team_client(app, fake)


@pytest.fixture
def standin(fake: FakeKube, tmp_path: Path, helm: str, kubectl: str) -> FluxStandIn:
    return connected.flux(fake, tmp_path, helm, kubectl)


@pytest.fixture
def running(client: FlaskClient, fake: FakeKube, standin: FluxStandIn) -> tuple[str, list[str]]:
    """A deployment of two replicas, reconciled: (its name, its pods by name)."""
    response = client.post("/api/v1/groups/team-a/deployments", json=web(replicas=2), headers=ALICE)
    assert response.status_code == 201 and response.json, response.json
    name: str = response.json["name"]
    standin.reconcile()
    pods = sorted(
        p["metadata"]["name"]
        for p in fake.items("v1", "Pod", NS)
        if p["metadata"]["name"].startswith(name)
    )
    assert len(pods) == 2, pods
    return name, pods


def logs(client: FlaskClient, name: str, query: str, headers: dict[str, str] = ALICE) -> Any:
    return client.get(f"/api/v1/deployments/{name}/logs?{query}", headers=headers)


def lines_of(response: Any) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    text: str = response.get_data(as_text=True)
    return text.splitlines()


# ---- all pods --------------------------------------------------------------------------------


def test_all_pods_merge_in_time_order_tagged_with_their_pod(
    client: FlaskClient, fake: FakeKube, running: tuple[str, list[str]]
) -> None:
    name, (first, second) = running
    for pod in (first, second):
        fake.set_logs(NS, pod, "app", [])
    # the second pod (by name) speaks first: the merge follows time, not names
    for pod, text in [(second, "b1"), (first, "a1"), (first, "a2"), (second, "b2")]:
        fake.append_log(NS, pod, "app", text)

    assert lines_of(logs(client, name, "pod=*")) == [
        f"[{second}] b1",
        f"[{first}] a1",
        f"[{first}] a2",
        f"[{second}] b2",
    ]
    stamped = lines_of(logs(client, name, "pod=*&timestamps=1"))
    found = [re.fullmatch(rf"\[(\S+)\] ({STAMP}) (\w+)", line) for line in stamped]
    assert all(found), stamped
    assert [(m[1], m[3]) for m in found if m] == [
        (second, "b1"),
        (first, "a1"),
        (first, "a2"),
        (second, "b2"),
    ]
    moments = [m[2] for m in found if m]
    assert moments == sorted(moments)
    # the tail is per pod
    assert lines_of(logs(client, name, "pod=*&tail=1")) == [f"[{first}] a2", f"[{second}] b2"]


def test_all_pods_are_bounded_and_the_answer_says_who_was_left_out(
    client: FlaskClient,
    fake: FakeKube,
    running: tuple[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, pods = running
    monkeypatch.setattr(podlogs, "MAX_PODS", 1)
    note, *rest = lines_of(logs(client, name, "pod=*"))
    found = re.fullmatch(r"\[all pods\] 1 of 2 pods shown \(at most 1\), left out: (\S+)", note)
    assert found, note
    left = found[1]
    shown = {line.split("] ")[0][1:] for line in rest}
    assert left in pods and shown == set(pods) - {left}
    created = {
        p["metadata"]["name"]: p["metadata"]["creationTimestamp"]
        for p in fake.items("v1", "Pod", NS)
    }
    assert created[left] <= created[shown.pop()], "the newest pods are the ones read"


def test_a_merge_that_is_not_followed_keeps_each_pod_within_its_budget() -> None:
    stamp = "2025-03-01T10:00:0{}.5Z "
    source = iter([f"{stamp.format(i)}line {i}\n".encode() for i in range(5)])
    tail = podlogs.read_tail("web-a", _Closable(source), budget=70)
    assert [line for _, line in tail.lines] == [
        b"2025-03-01T10:00:03.5Z line 3",
        b"2025-03-01T10:00:04.5Z line 4",
    ]
    assert tail.cut == 3
    merged = b"".join(podlogs.merged([tail], timestamps=False)).decode().splitlines()
    assert merged == [
        "[all pods] web-a: only its last 512 KiB (3 lines less)",
        "[web-a] line 3",
        "[web-a] line 4",
    ]


def test_merge_order_by_time_with_ties_in_pod_order_and_lines_without_a_time() -> None:
    a = podlogs.Tail(
        "web-a",
        [
            (podlogs.stamp(b"2025-03-01T10:00:00.2Z x") or 0, b"2025-03-01T10:00:00.2Z a1"),
            (podlogs.stamp(b"2025-03-01T10:00:01Z x") or 0, b"2025-03-01T10:00:01Z a2"),
        ],
        cut=0,
    )
    b = podlogs.Tail(
        "web-b",
        [
            (
                podlogs.stamp(b"2025-03-01T12:00:00.1+02:00 x") or 0,
                b"2025-03-01T12:00:00.1+02:00 b1",
            ),
            (
                podlogs.stamp(b"2025-03-01T10:00:01.000000000Z x") or 0,
                b"2025-03-01T10:00:01.000000000Z b2",
            ),
        ],
        cut=0,
    )
    text = b"".join(podlogs.merged([a, b], timestamps=False)).decode()
    assert text.splitlines() == ["[web-b] b1", "[web-a] a1", "[web-a] a2", "[web-b] b2"]
    assert podlogs.stamp(b"no time here") is None
    assert podlogs.stamp(b"2025-02-30T10:00:00Z not a day") is None
    long = b"x" * (podlogs.LONGEST_LINE + 10)
    assert [len(p) for p in podlogs.lines([b"ab\n", long[:100], long[100:] + b"\nend"])] == [
        2,
        podlogs.LONGEST_LINE,
        10,
        3,
    ]


def test_the_newest_pods_are_read() -> None:
    pods = {f"web-{i:02d}": f"2025-03-01T10:{i:02d}:00Z" for i in range(25)}
    chosen, left = podlogs.newest(pods)
    assert chosen == [f"web-{i:02d}" for i in range(5, 25)] and len(chosen) == podlogs.MAX_PODS
    assert left == [f"web-{i:02d}" for i in range(5)]
    assert podlogs.left_out([*left, "web-99"], total=26) == (
        "20 of 26 pods shown (at most 20), left out: web-00, web-01, web-02, web-03, web-04 "
        "and 1 more"
    )


# ---- timestamps, previous, download ------------------------------------------------------


def test_timestamps_prefix_each_line_of_one_pod(
    client: FlaskClient, running: tuple[str, list[str]]
) -> None:
    name, pods = running
    plain = lines_of(logs(client, name, f"pod={pods[0]}"))
    stamped = lines_of(logs(client, name, f"pod={pods[0]}&timestamps=true"))
    assert plain and len(stamped) == len(plain)
    for line, text in zip(stamped, plain, strict=True):
        assert re.fullmatch(rf"{STAMP} {re.escape(text)}", line), line


def test_previous_is_the_crashed_container_and_a_clear_404_before(
    client: FlaskClient, fake: FakeKube, standin: FluxStandIn, running: tuple[str, list[str]]
) -> None:
    name, pods = running
    none = logs(client, name, f"pod={pods[0]}&previous=1")
    assert none.status_code == 404, none.json
    assert none.json["message"] == (
        f"pod {pods[0]} has no previous container app: it has not terminated since the pod started"
    )
    none = logs(client, name, "pod=*&previous=1")
    assert none.status_code == 404, none.json
    assert none.json["message"] == (
        f"no pod of {name} has a previous container app: none has terminated since it started"
    )

    standin.reconcile(scenario={name: "crashloop"})
    previous = lines_of(logs(client, name, f"pod={pods[1]}&previous=1"))
    assert previous[-2:] == CRASH
    merged = lines_of(logs(client, name, "pod=*&previous=1&timestamps=1"))
    for pod in pods:
        mine = [line.split(" ", 2)[2] for line in merged if line.startswith(f"[{pod}] ")]
        assert mine[-2:] == CRASH, merged
    # a pod of the deployment without one is named, the others are shown
    sibling = fake.get("v1", "Pod", NS, pods[0])
    assert sibling is not None
    fake.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-old-x1",
                "namespace": NS,
                "labels": sibling["metadata"]["labels"],
            },
            "spec": {"containers": [{"name": "app", "image": "web:0"}]},
        }
    )
    note, *_ = lines_of(logs(client, name, "pod=*&previous=1"))
    assert note == (
        f"[all pods] pod {name}-old-x1 has no previous container app: "
        "it has not terminated since the pod started"
    )


def test_a_container_without_a_log_yet_is_a_404_with_the_api_server_s_words(
    client: FlaskClient, fake: FakeKube, running: tuple[str, list[str]]
) -> None:
    name, (first, second) = running
    pod = fake.get("v1", "Pod", NS, second)
    assert pod is not None
    statuses = [
        status | {"state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}
        for status in pod["status"]["containerStatuses"]
    ]
    fake.set_status("v1", "Pod", NS, second, pod["status"] | {"containerStatuses": statuses})
    waiting = f'container "app" in pod "{second}" is waiting to start: ContainerCreating'
    response = logs(client, name, f"pod={second}")
    assert response.status_code == 404 and response.json["message"] == waiting
    note, *rest = lines_of(logs(client, name, "pod=*"))
    assert note == f"[all pods] {second}: {waiting}"
    assert rest and all(line.startswith(f"[{first}] ") for line in rest)


def test_download_is_the_shown_range_as_an_attachment(
    client: FlaskClient, running: tuple[str, list[str]]
) -> None:
    name, pods = running
    for query, which in [(f"pod={pods[1]}&tail=2&timestamps=1", pods[1]), ("pod=*", "all")]:
        shown = logs(client, name, query)
        download = logs(client, name, query + "&download=1")
        assert download.status_code == 200 and download.mimetype == "text/plain"
        disposition = download.headers["Content-Disposition"]
        assert re.fullmatch(
            rf'attachment; filename="{name}-{which}-\d{{8}}T\d{{6}}Z\.log"', disposition
        ), disposition
        if "timestamps" not in query:  # stamps are the same lines read again
            assert download.get_data() == shown.get_data()
        else:
            assert len(lines_of(download)) == len(lines_of(shown)) == 2
    refused = logs(client, name, "pod=*&download=1&follow=1")
    assert refused.status_code == 422
    assert refused.json["problems"] == [
        {"field": "follow", "message": "a download is never followed: leave out follow"}
    ]


@pytest.mark.parametrize("field", ["timestamps", "previous", "download"])
def test_bad_flags_name_their_field(
    client: FlaskClient, running: tuple[str, list[str]], field: str
) -> None:
    name, _ = running
    response = logs(client, name, f"pod=*&{field}=maybe")
    assert response.status_code == 422
    assert response.json["problems"] == [
        {"field": field, "message": "must be 1 or 0 (true or false), got 'maybe'"}
    ]


def test_members_only(client: FlaskClient, running: tuple[str, list[str]]) -> None:
    name, _ = running
    for query in ("pod=*", "pod=*&download=1", "pod=*&previous=1", "pod=*&follow=1"):
        response = logs(client, name, query, headers=MALLORY)
        assert response.status_code == 404, query
        assert "team-a" not in response.json["message"] and "[" not in response.json["message"]


# ---- following all pods ----------------------------------------------------------------------


def test_following_all_pods_is_one_stream_holding_a_request_per_pod(
    client: FlaskClient, fake: FakeKube, running: tuple[str, list[str]]
) -> None:
    name, pods = running
    stream = logs(
        client, name, "pod=*&follow=1&tail=1", headers=ALICE | {"Accept": "text/event-stream"}
    )
    chunks = iter(stream.response)  # the test client does not buffer: read as it comes
    assert next(chunks) == b""
    assert _eventually(lambda: fake.open_log_streams == 2)
    # the server allows 3 requests to the API server: this stream holds 2 of them
    refused = logs(client, name, "pod=*&follow=1", headers={"X-Forwarded-User": "bob"})
    assert refused.status_code == 429, refused.json
    assert refused.json["problems"] == [
        {
            "field": "follow",
            "message": "following 2 pods takes 2 of this server's 3 log streams, 1 left",
        }
    ]
    fake.append_log(NS, pods[1], "app", "fresh from the second pod")
    seen = b""
    for chunk in chunks:
        seen += chunk
        if b"fresh from the second pod" in seen:
            break
    events = [e for e in seen.split(b"\n\n") if e]
    assert f"data: [{pods[1]}] fresh from the second pod".encode() in events
    assert {e.split(b"]")[0] for e in events} == {f"data: [{p}".encode() for p in pods}
    stream.close()
    assert _eventually(lambda: fake.open_log_streams == 0), "every pod's request is closed"
    # the slots are free again
    again = logs(client, name, f"pod={pods[0]}&follow=1", headers={"X-Forwarded-User": "bob"})
    assert again.status_code == 200
    again.close()


def _eventually(check: Any, seconds: float = 10.0) -> bool:
    """Whether ``check()`` holds within ``seconds`` (a liveness bound, not a timing claim)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class _Closable:
    """Chunks with a ``close()``, as ``cluster.LogStream``; remembers being closed."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self.closed.set()
