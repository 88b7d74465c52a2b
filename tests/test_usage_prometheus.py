"""Usage over time from Prometheus: with ``usage.prometheus_url`` the API and the page draw
what a real Prometheus 2.42 holds of the deployment's app container (samples backfilled with
promtool, in the last hour) and nothing of another deployment whose name has it as a prefix,
of another namespace or of other containers; the restart markers still come from the
poller's ring; a Prometheus that is down, answers 500, garbage, too much or nothing in time
leaves the ring's points on the page with a note, logged once per streak of failures."""

from __future__ import annotations

import http.server
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gitops_bridge import config, prometheus, usage, usagehistory
from gitops_bridge.models import Deployment
from tests import promutil
from tests.apputil import as_user, create_group, deploy, make_app
from tests.kubefake import FakeKube
from tests.test_usage import (
    KEY,
    Clock,
    eventually,
    fed,
    restart,
    restarts_seen,
    spec,
    use,
    workload,
)

STEP = 30
MI = 2**20
# without the binaries: skipped with the reason, except in CI (CI=true), where the fixture fails
needs_prometheus = pytest.mark.skipif(
    promutil.skip_reason() is not None, reason=promutil.skip_reason() or ""
)


# ---- which pods are the deployment's -------------------------------------------------------


def test_the_pod_pattern_takes_the_deployments_pods_and_no_other_deployments() -> None:
    pattern = re.compile(usagehistory.pod_pattern("web-b2c4d5"))  # RE2's syntax is re's here
    ours = ["web-b2c4d5-5d8f7c9b4-x2x7q", "web-b2c4d5-7f9-k9m2z", "web-b2c4d5-b-22222"]
    assert all(pattern.fullmatch(name) for name in ours)
    others = [
        "web-b2c4d5-x7k9m2-5d8f7c9b4-x2x7q",  # deployment web-b2c4d5-x7k9m2 (app web-b2c4d5)
        "web-b2c4d5x-c4d5f6-5d8f7c9b4-x2x7q",  # deployment web-b2c4d5x-c4d5f6
        "web-b2c4d5-5d8f7c9b4",  # the ReplicaSet
        "web-b2c4d5-5d8f7c9b4-x2x7",  # 4 random characters
        "web-b2c4d5-5d8f7c9b4-x2x7qq",
        "web-b2c4d5-5d8f7c9b4-xaeio",  # not of Kubernetes' alphabet
        "web-b2c4d5-5d8f7c9b44444-x2x7q",  # a hash of 11
        "xweb-b2c4d5-5d8f7c9b4-x2x7q",
    ]
    assert not any(pattern.fullmatch(name) for name in others)


def test_a_long_name_whose_pods_are_cut_at_58_characters_still_matches() -> None:
    """The API server cuts ``generateName`` to 58 characters before adding 5."""
    name = "a" * 46 + "-b2c4d5"  # 53: the longest a release name may be
    generated = f"{name}-5d8f7c9b46-"[:58] + "x2x7q"
    assert len(generated) == 63
    pattern = re.compile(usagehistory.pod_pattern(name))
    assert pattern.fullmatch(generated) and pattern.fullmatch(f"{name}-5d8-x2x7q")  # not cut
    assert not pattern.fullmatch(f"{name}-5d8f7c9b46-x2x7q")  # 64: no pod is named so
    short = "web-b2c4d5"  # 10 characters: nothing is ever cut, no other form
    assert "{" + str(62 - len(short)) + "}" not in usagehistory.pod_pattern(short)


def test_names_are_escaped_for_re2_and_quoted_for_promql() -> None:
    assert usagehistory.pod_pattern("a.b+c").startswith(r"a\.b\+c-(?:")
    (cpu, memory, pods) = usagehistory.queries(namespace='ns"x', deployment="a.b", step=30)
    assert cpu == (
        'sum(rate(container_cpu_usage_seconds_total{namespace="ns\\"x",'
        'pod=~"a\\\\.b-(?:[bcdfghjklmnpqrstvwxz2456789]{1,10}-[bcdfghjklmnpqrstvwxz2456789]{5})",'
        'container="app"}[60s]))'
    )
    assert memory.startswith("sum(container_memory_working_set_bytes{namespace=")
    assert pods.startswith("count(count by (pod) (container_memory_working_set_bytes{")
    assert usagehistory.rate_window(30) == 60 and usagehistory.rate_window(60) == 120


# ---- what a query_range answer may be -------------------------------------------------------


def answer(*values: list[Any], status: str = "success", result_type: str = "matrix") -> bytes:
    """A ``query_range`` answer with one series of each ``values`` (none: an empty matrix)."""
    result = [{"metric": {}, "values": points} for points in values]
    return json.dumps(
        {"status": status, "data": {"resultType": result_type, "result": result}}
    ).encode()


def test_a_matrix_is_read_on_the_querys_steps_and_anything_else_is_refused() -> None:
    def read(body: bytes, **bounds: Any) -> list[prometheus.Series]:
        return prometheus.matrix(body, start=1000.0, end=1090.0, step=30, **bounds)

    (series,) = read(answer([[1000, "1.5"], [1060, "NaN"], [1090, "2e3"]]))
    assert series.points == ((1000.0, 1.5), (1090.0, 2000.0))  # NaN left out
    assert read(answer()) == []
    garbage = [
        b"<html>",
        b"\xff\xfe",
        b"[]",
        answer([[1000, "1"]], status="error"),
        answer([[1000, "1"]], result_type="vector"),
        answer([[1000, "1"], [1015, "1"]]),  # off the steps
        answer([[1030, "1"], [1000, "1"]]),  # out of order
        answer([[1030, "1"], [1030, "1"]]),  # twice
        answer([[1120, "1"]]),  # after the end
        answer([[970, "1"]]),  # before the start
        answer([[1000, 1.0]]),  # a value not as text
        answer([[1000, "lots"]]),
        answer([["1000", "1"]]),
        answer([[True, "1"]]),
        b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},'
        b'"values":[[Infinity,"1"]]}]}}',  # Python's JSON reads Infinity; no time is that
        answer([[1000 + 30 * n, "1"] for n in range(5)]),  # more points than the range has
    ]
    for body in garbage:
        with pytest.raises(prometheus.PrometheusUnavailable):
            read(body)
    two = answer([], [])
    with pytest.raises(prometheus.PrometheusUnavailable, match="at most 1 series"):
        read(two)
    assert len(read(two, max_series=2)) == 2
    refused = json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"})
    with pytest.raises(prometheus.PrometheusUnavailable, match="refused the query: parse error"):
        read(refused.encode())


# ---- a Prometheus that fails: the ring's points, said so, logged once a streak ---------------


class Failing(http.server.ThreadingHTTPServer):
    """Answers every request as ``mode`` says: 500, garbage (200, not JSON), too much (a
    body larger than the bound), slow (nothing until the test ends), or empty (a matrix
    without a series: Prometheus has nothing of what was asked)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FailingHandler)
        self.mode = "500"
        self.asked = 0
        self.authorization: list[str | None] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FailingHandler(http.server.BaseHTTPRequestHandler):
    server: Failing

    def do_GET(self) -> None:
        self.server.asked += 1
        self.server.authorization.append(self.headers.get("Authorization"))
        mode = self.server.mode
        if mode == "slow":
            self.server.release.wait(30)
            return
        if mode == "500":
            body, status = b'{"status":"error","errorType":"internal","error":"boom"}', 500
        elif mode == "garbage":
            body, status = b"<html>It works!</html>", 200
        elif mode == "empty":
            body, status = answer(), 200
        else:  # too much: valid JSON, far beyond the bound of 120 points
            body, status = answer([[0, "1"]] * 100_000), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def failing() -> Iterator[Failing]:
    server = Failing()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def ring_deployment() -> Deployment:
    found = spec()
    assert (found.namespace, found.id) == KEY
    return found


def test_a_token_is_sent_as_a_bearer_and_said_nowhere(
    failing: Failing, caplog: pytest.LogCaptureFixture
) -> None:
    token = "pr0m-s3cret-t0ken"
    settings = config.UsageSettings(
        prometheus_url=failing.url, prometheus_timeout=0.5, prometheus_token=token
    )
    assert token not in repr(settings)
    ring = usage.Usage(settings, clock=Clock(1_800_000_000.0))
    caplog.set_level(logging.DEBUG)
    found = usagehistory.Reader(settings, ring=ring).read(ring_deployment())
    assert failing.authorization == [f"Bearer {token}"]
    assert found.note == usagehistory.UNAVAILABLE and token not in (found.note or "")
    assert all(token not in record.getMessage() for record in caplog.records)
    without = config.UsageSettings(prometheus_url=failing.url, prometheus_timeout=0.5)
    later = usage.Usage(without, clock=Clock(1_800_000_000.0 + 3600))
    usagehistory.Reader(without, ring=later).read(ring_deployment())
    assert failing.authorization[-1] is None


def test_a_failing_prometheus_leaves_the_rings_points_said_and_logged_once(
    failing: Failing, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(1_800_000_000.0 + 100)
    settings = config.UsageSettings(prometheus_url=failing.url, prometheus_timeout=0.5)
    ring = usage.Usage(settings, clock=clock)
    t0 = 1_800_000_000.0
    fed(ring, t0 + 1, ("10m", "10m"), restarts=(0, 0))
    fed(ring, t0 + 31, ("20m", "20m"), restarts=(1, 0), reason="OOMKilled")
    reader = usagehistory.Reader(settings, ring=ring)
    caplog.set_level(logging.INFO, logger="gitops_bridge.usagehistory")

    seen = []
    for mode in ("500", "garbage", "too much", "slow"):
        failing.mode = mode
        asked = failing.asked
        found = reader.read(ring_deployment())
        assert failing.asked == asked + 1, mode
        assert (found.source, found.note) == ("poller", usagehistory.UNAVAILABLE), mode
        assert found.history == ring.history(KEY) and len(found.history.points) == 2
        assert [(r.count, r.reason) for r in found.history.restarts] == [(1, "OOMKilled")]
        # within DOWN_SECONDS of a failure it is not asked again: no page waits for it
        again = reader.read(ring_deployment())
        assert failing.asked == asked + 1 and again.note == usagehistory.UNAVAILABLE
        seen.append(mode)
        clock.now += usagehistory.DOWN_SECONDS + 1
    assert seen == ["500", "garbage", "too much", "slow"]
    ours = [r for r in caplog.records if r.name == "gitops_bridge.usagehistory"]
    assert len(ours) == 1 and "HTTP 500: boom" in ours[0].getMessage()
    document = usage.document(
        "web-abc123", found.history, usage.footprint(spec()), source=found.source, note=found.note
    )
    assert (document["source"], document["note"]) == ("poller", usagehistory.UNAVAILABLE)


def test_a_deployment_prometheus_has_no_sample_of_shows_the_rings_points(failing: Failing) -> None:
    failing.mode = "empty"
    clock = Clock(1_800_000_000.0 + 40)
    settings = config.UsageSettings(prometheus_url=failing.url)
    ring = usage.Usage(settings, clock=clock)
    fed(ring, 1_800_000_000.0 + 1, ("10m", "10m"))
    reader = usagehistory.Reader(settings, ring=ring)
    found = reader.read(ring_deployment())
    assert failing.asked == 3  # CPU, memory, pods
    assert (found.source, found.note) == ("poller", usagehistory.NO_SAMPLES)
    assert found.history == ring.history(KEY)
    # nothing on either side: Prometheus' answer stands, with no points
    other = Deployment(group="demo", id="zzz999", spec=spec().spec)
    found = reader.read(other)
    assert (found.source, found.note, found.history.points) == ("prometheus", None, ())


def test_the_page_says_prometheus_is_unavailable_even_with_nothing_to_draw(
    tmp_path: Path, failing: Failing
) -> None:
    app = make_app(tmp_path / "data", usage={"prometheus_url": failing.url})
    client = app.test_client()
    create_group(client)
    name = deploy(client)
    body = client.get(f"/api/v1/deployments/{name}/usage", headers=as_user("alice")).json
    assert body is not None and body["points"] == [] and body["restarts"] == []
    assert (body["source"], body["note"]) == ("poller", usagehistory.UNAVAILABLE)
    html = client.get(f"/deployments/{name}", headers=as_user("alice")).get_data(as_text=True)
    assert 'data-testid="usage-note"' in html and "No samples yet." in html
    assert 'data-testid="graph-cpu"' not in html and 'data-testid="usage-table"' not in html


def test_without_a_prometheus_url_the_ring_is_the_source() -> None:
    clock = Clock(1_800_000_000.0 + 40)
    settings = config.UsageSettings()
    ring = usage.Usage(settings, clock=clock)
    fed(ring, 1_800_000_000.0 + 1, ("10m", "10m"))
    found = usagehistory.Reader(settings, ring=ring).read(ring_deployment())
    assert (found.source, found.note, found.history) == ("poller", None, ring.history(KEY))
    assert (
        config.UsageSettings(prometheus_url="http://prom:9090/").prometheus_url
        == "http://prom:9090"
    )
    with pytest.raises(ValueError):
        config.UsageSettings(prometheus_url="prom:9090")


# ---- a real Prometheus ---------------------------------------------------------------------


CPU = {"x2x7q": 0.05, "k9m2z": 0.12}  # cores of each of the deployment's two pods
DECOY_CPU = 5.0  # anything else: other deployments, namespaces, containers


def cadvisor(namespace: str, pod: str, container: str) -> dict[str, str]:
    """The labels of a series of the kubelet's /metrics/cadvisor as kube-prometheus keeps it."""
    labels = {
        "namespace": namespace,
        "pod": pod,
        "container": container,
        "id": f"/kubepods/burstable/pod-{pod}/{container or 'cgroup'}",
        "instance": "10.0.0.4:10250",
        "job": "kubelet",
        "metrics_path": "/metrics/cadvisor",
        "node": "node-1",
    }
    if container:
        labels["image"] = "registry:5000/team-a/web:1.0"
        labels["name"] = f"k8s_{container}_{pod}"
    return labels


def written(name: str, first: int, last: int) -> str:
    """Every 15 s from ``first`` to ``last``: the deployment's two pods (app container: CPU
    at a steady rate, memory one value a step, pod x2x7q 1Mi more each step), and decoys."""
    hash_ = "5d8f7c9b4"
    times = range(first, last + 1, 15)
    cpu, memory = [], []

    def add(
        namespace: str, pod: str, container: str, cores: float, bytes_: Callable[[int], float]
    ) -> None:
        labels = cadvisor(namespace, pod, container)
        counter = [(t, 1000.0 + cores * (t - first)) for t in times]
        cpu.append(promutil.Series("container_cpu_usage_seconds_total", labels, counter))
        memory.append(
            promutil.Series(
                "container_memory_working_set_bytes", labels, [(t, bytes_(t)) for t in times]
            )
        )

    for suffix, cores in CPU.items():
        pod = f"{name}-{hash_}-{suffix}"
        if suffix == "x2x7q":
            add("group-team-a", pod, "app", cores, lambda t: (100 + (t - first) // STEP) * MI)
        else:
            add("group-team-a", pod, "app", cores, lambda t: 200 * MI)
        add("group-team-a", pod, "frpc", DECOY_CPU, lambda t: 3 * 2**30)  # the sidecar
        add("group-team-a", pod, "", DECOY_CPU, lambda t: 3 * 2**30)  # the pod's cgroup
        add("group-team-b", pod, "app", DECOY_CPU, lambda t: 3 * 2**30)  # another namespace
    # a deployment whose name has this one as its prefix (app "<name>", id b2c4d5)
    add("group-team-a", f"{name}-b2c4d5-7f9c6d8b4-q2w4z", "app", DECOY_CPU, lambda t: 3 * 2**30)
    return promutil.openmetrics(
        {
            ("container_cpu_usage_seconds", "counter"): cpu,
            ("container_memory_working_set_bytes", "gauge"): memory,
        }
    )


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[promutil.PrometheusServer]:
    """A real Prometheus on a free port (not started: the test backfills first)."""
    server = promutil.PrometheusServer(tmp_path / "prometheus")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.prometheus
@needs_prometheus
def test_graphs_come_from_prometheus_and_fall_back_to_the_ring_when_it_is_down(
    tmp_path: Path, prometheus_server: promutil.PrometheusServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = prometheus_server
    caplog.set_level(logging.INFO, logger="gitops_bridge.usagehistory")
    with FakeKube() as fake:
        kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig")
        app = make_app(
            tmp_path / "data",
            kubernetes={"mode": "kubeconfig", "kubeconfig": str(kubeconfig)},
            usage={"prometheus_url": server.url},
        )
        rt = app.extensions["gitops_bridge.runtime"]
        pl = rt.monitor.poller
        # the newest whole step before now; 40 minutes of samples up to it
        last = (int(time.time()) // STEP) * STEP - STEP
        first = last - 40 * 60
        clock = Clock(float(last - 59))
        pl.clock = clock  # before the first cycle: its watches take it too
        try:
            client = app.test_client()
            create_group(client)
            name = deploy(client)  # 100m and 128Mi per pod, as the form's defaults
            namespace, ident = "group-team-a", name.rsplit("-", 1)[1]
            server.backfill(written(name, first, last))
            server.start()

            # the poller's ring: other values (1m, 1Mi a pod), a restart in the newest step
            pods = workload(fake, namespace, name, 2)
            use(fake, namespace, pods, "1m", "1Mi")
            for at in (last - 59, last - 29, last + 1):
                if at == last + 1:
                    restart(fake, namespace, pods[1], count=1)
                    eventually(lambda: restarts_seen(pl, (namespace, ident), 1), "the restart")
                clock.now = float(at)
                assert pl.run_once() is not None, pl.state.error
            clock.now = float(last + 10)

            def usage_of() -> dict[str, Any]:
                response = client.get(f"/api/v1/deployments/{name}/usage", headers=as_user("alice"))
                assert response.status_code == 200
                body: dict[str, Any] = response.json  # type: ignore[assignment]
                return body

            def page() -> str:
                response = client.get(f"/deployments/{name}", headers=as_user("alice"))
                assert response.status_code == 200
                return response.get_data(as_text=True)

            body = usage_of()
            assert (body["source"], body["note"]) == ("prometheus", None)
            points = {p[0]: p for p in body["points"]}
            # one point a step from the first sample on, none before; the newest is `last`
            assert sorted(points) == [float(t) for t in range(first, last + 1, STEP)]
            ring_totals = {last - 60: 0, last - 30: 0, last: 1}
            for t in range(first, last + 1, STEP):
                _, cpu, memory, sampled, restarts = points[float(t)]
                assert memory == (300 + (t - first) // STEP) * MI, t  # what was written
                assert sampled == 2, t
                assert restarts == ring_totals.get(t), t  # from the ring where it has the step
                if t >= first + 60:  # a rate over 60 s of samples
                    assert cpu == pytest.approx(sum(CPU.values())), t
                elif t == first:
                    assert cpu is None  # one sample: no rate yet
                else:
                    assert 0 < cpu < sum(CPU.values())
            assert body["restarts"] == [{"t": last + 1, "count": 1, "reason": "OOMKilled"}]

            html = page()
            assert 'data-testid="usage-note"' not in html
            assert "From Prometheus, every 30 s: CPU as the rate over the 60 s before" in html
            assert (
                'aria-label="CPU of the app container over the last hour: now 170m, peak 170m of '
                'a 400m limit (request 200m, total of 2 pods); 1 restart"'
            ) in html
            assert (
                'aria-label="Memory of the app container over the last hour: now 380Mi, peak '
                '380Mi of a 512Mi limit (request 256Mi, total of 2 pods); 1 restart"'
            ) in html
            assert html.count('data-testid="restart-marker"') == 2  # the ring's, on both graphs
            assert "1 restart 9s ago: OOMKilled" in html
            assert not [r for r in caplog.records if r.name == "gitops_bridge.usagehistory"]

            # Prometheus goes away: the ring's points, said so on the page and in the API
            server.stop()
            clock.now += 1
            body = usage_of()
            assert (body["source"], body["note"]) == ("poller", usagehistory.UNAVAILABLE)
            assert [p[1:4] for p in body["points"]] == [[0.002, 2 * MI, 2]] * 3
            assert body["restarts"] == [{"t": last + 1, "count": 1, "reason": "OOMKilled"}]
            html = page()
            assert "Prometheus unavailable: showing what this replica read" in html
            assert html.count('data-testid="restart-marker"') == 2
            assert "The peak of each 30 s step" in html
            clock.now += usagehistory.DOWN_SECONDS + 1
            assert usage_of()["source"] == "poller"  # asked again, still down: not logged again
            ours = [r for r in caplog.records if r.name == "gitops_bridge.usagehistory"]
            assert len(ours) == 1 and "unreachable" in ours[0].getMessage()

            # back (the same storage on the same port): Prometheus' points again
            server.start()
            clock.now += usagehistory.DOWN_SECONDS + 1
            body = usage_of()
            assert (body["source"], body["note"]) == ("prometheus", None)
            (newest,) = [p for p in body["points"] if p[0] == last]
            assert newest[1:] == [pytest.approx(0.17), 380 * MI, 2, 1]
            ours = [r for r in caplog.records if r.name == "gitops_bridge.usagehistory"]
            assert [r.levelno for r in ours] == [logging.WARNING, logging.INFO]
            assert "answers again" in ours[1].getMessage()
        finally:
            rt.stop()
