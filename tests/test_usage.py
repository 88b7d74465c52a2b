"""Usage over time: the ring keeps one peak sample a step of the app container alone, a bounded
number of steps and series (least recently used out, gone deployments dropped), marks each
restart with its reason; the SVG scales to its values and limits, labels them in human units,
marks restarts and escapes what the cluster says; a follower replica graphs the leader's
readings; the API and the page show the series to members only."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gitops_bridge import config, poller, usage
from gitops_bridge.models import Deployment, parse_deployment
from gitops_bridge.render import layout
from gitops_bridge.webapp import graphs
from tests.apputil import as_user, create_group, deploy, make_app
from tests.kubefake import FakeKube

SVG = "{http://www.w3.org/2000/svg}"
KEY = ("group-demo", "abc123")
STEP = 30
T0 = 1_800_000_000.0  # a step boundary (divisible by 30)


class Clock:
    """Seconds that move only when told."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pod(
    name: str, *, restarts: int = 0, reason: str = "", frpc_restarts: int = 0
) -> dict[str, Any]:
    app: dict[str, Any] = {"name": "app", "ready": True, "restartCount": restarts}
    if reason:
        app["lastState"] = {"terminated": {"reason": reason, "exitCode": 137}}
    frpc = {"name": "frpc", "ready": True, "restartCount": frpc_restarts}
    return {
        "metadata": {"name": name, "namespace": KEY[0], "labels": {layout.LABEL_ID: KEY[1]}},
        "status": {"phase": "Running", "containerStatuses": [app, frpc]},
    }


def sample(name: str, cpu: str, memory: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": KEY[0]},
        "containers": [
            {"name": "app", "usage": {"cpu": cpu, "memory": memory}},
            {"name": "frpc", "usage": {"cpu": "7m", "memory": "30Mi"}},  # never counted
        ],
    }


def reading(
    at: float,
    pods: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    *,
    keys: tuple[tuple[str, str], ...] = (KEY,),
    metrics_available: bool = True,
) -> poller.Reading:
    """Every deployment in ``keys`` with the same pods (names are per deployment anyway)."""
    return poller.Reading(
        taken_at=at,
        helmreleases={},
        deployments={key: {"metadata": {"namespace": key[0]}} for key in keys},
        pods={key: pods for key in keys},
        metrics={(KEY[0], s["metadata"]["name"]): s for s in samples},
        kustomization=None,
        gitrepository=None,
        calls=0,
        duration=0.0,
        metrics_available=metrics_available,
    )


def ring(clock: Clock, **settings: Any) -> usage.Usage:
    return usage.Usage(config.UsageSettings(**settings), clock=clock)


def fed(
    store: usage.Usage,
    at: float,
    cpu: tuple[str, str],
    memory: tuple[str, str] = ("100Mi", "100Mi"),
    *,
    restarts: tuple[int, int] = (0, 0),
    reason: str = "",
    names: tuple[str, str] = ("web-abc123-x-1", "web-abc123-x-2"),
) -> None:
    """One reading of two pods at ``at``."""
    pods = [
        pod(n, restarts=r, reason=reason if r else "") for n, r in zip(names, restarts, strict=True)
    ]
    samples = [sample(n, c, m) for n, c, m in zip(names, cpu, memory, strict=True)]
    store.feed(reading(at, pods, samples))


# ---- amounts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("253417n", 253417e-9),
        ("31236Ki", 31236 * 1024),
        ("250m", 0.25),
        ("2", 2.0),
        ("1.5Gi", 1.5 * 2**30),  # not metrics-server's shape: through quantity.parse
        ("2e3", 2000.0),
        ("12Mi", 12 * 2**20),
        ("", None),
        ("lots", None),
        ("१२Mi", None),  # digits, but not ASCII ones
        (None, None),
        (True, None),
    ],
)
def test_amounts_of_metrics_quantities(text: Any, value: float | None) -> None:
    found = usage.amount(text)
    assert found == value if value is None else found == pytest.approx(value)


# ---- the ring -----------------------------------------------------------------------------


def test_the_settings_keep_at_least_an_hour_in_whole_steps_and_bound_the_series() -> None:
    defaults = config.UsageSettings()
    assert (defaults.step, defaults.window, defaults.max_series) == (30, 3600, 20_000)
    assert config.load(usage={"step": 60, "window": 7200}).usage.window == 7200
    refused = [
        {"window": 1800},  # less than the hour the page shows
        {"step": 7},  # not a whole number of steps
        {"step": 1, "window": 7200},  # 7,200 steps a series
        {"max_series": 0},
        {"steps": 30},
    ]
    for wrong in refused:
        with pytest.raises(ValidationError):
            config.UsageSettings(**wrong)


def test_one_sample_a_step_keeps_the_peak_of_the_app_container_alone() -> None:
    clock = Clock(T0 + 95)
    store = ring(clock)
    fed(store, T0 + 1, ("100m", "50m"), ("100Mi", "100Mi"))
    fed(store, T0 + 11, ("300m", "20m"), ("90Mi", "100Mi"))  # the CPU peak: 320m
    fed(store, T0 + 21, ("10m", "10m"), ("300Mi", "100Mi"))  # the memory peak: 400Mi
    fed(store, T0 + 31, ("40m", "40m"), ("50Mi", "50Mi"))  # the next step
    history = store.history(KEY)
    assert [p.t for p in history.points] == [T0, T0 + STEP]
    first, second = history.points
    assert first.cpu == pytest.approx(0.32) and first.memory == 400 * 2**20  # no frpc in it
    assert second.cpu == pytest.approx(0.08) and second.memory == 100 * 2**20
    assert first.pods == second.pods == 2
    assert (history.start, history.end, history.step) == (T0 + 95 - 3600, T0 + 95, STEP)


def test_a_step_without_metrics_has_no_values_and_no_pods_sampled() -> None:
    clock = Clock(T0 + 40)
    store = ring(clock)
    fed(store, T0 + 1, ("100m", "100m"))
    store.feed(reading(T0 + 31, [pod("web-abc123-x-1")], [], metrics_available=False))
    first, second = store.history(KEY).points
    assert first.cpu is not None and (second.cpu, second.memory, second.pods) == (None, None, 0)
    # one pod started, the other not sampled yet: the total is of the pod sampled
    store.feed(reading(T0 + 61, [pod("a"), pod("b")], [sample("a", "5m", "1Mi")]))
    clock.now = T0 + 70
    assert store.history(KEY).points[-1].pods == 1


def test_the_ring_keeps_the_window_and_no_more() -> None:
    clock = Clock()
    store = ring(clock)
    assert store.capacity == 120  # an hour of 30 s steps
    for n in range(200):  # 100 minutes of steps, one reading each
        fed(store, T0 + n * STEP + 5, (f"{n + 1}m", "0"))
    clock.now = T0 + 199 * STEP + 10
    points = store.history(KEY).points
    assert len(points) == 120
    assert points[0].t == T0 + 80 * STEP and points[-1].t == T0 + 199 * STEP
    assert points[0].cpu == pytest.approx(0.081) and points[-1].cpu == pytest.approx(0.2)
    # a series' arrays never grow: the same 14 bytes a step, however long it is fed
    series = store._series[KEY]
    sizes = [len(a) * a.itemsize for a in (series.cpu, series.memory, series.pods, series.restarts)]
    assert sum(sizes) == 120 * 14


def test_steps_no_reading_reached_are_gaps_and_old_ones_leave_the_window() -> None:
    clock = Clock()
    store = ring(clock)
    fed(store, T0 + 1, ("10m", "10m"))
    fed(store, T0 + 31, ("20m", "20m"))
    fed(store, T0 + 10 * STEP + 1, ("30m", "30m"))  # 8 steps without a reading
    clock.now = T0 + 10 * STEP + 2
    assert [p.t for p in store.history(KEY).points] == [T0, T0 + STEP, T0 + 10 * STEP]
    # more than the window later, with no reading in between: none of it is shown
    fed(store, T0 + 200 * STEP + 1, ("40m", "40m"))
    clock.now = T0 + 200 * STEP + 2
    assert [p.t for p in store.history(KEY).points] == [T0 + 200 * STEP]
    # and when the readings stop, the graph empties as time goes on
    clock.now = T0 + 400 * STEP
    assert store.history(KEY).points == ()


def test_a_reading_not_newer_than_the_last_changes_nothing() -> None:
    """A follower may take the same reading of the leader twice; a late one is older."""
    clock = Clock(T0 + 29)
    store = ring(clock)
    fed(store, T0 + 10, ("100m", "100m"), restarts=(1, 0), reason="Error")
    fed(store, T0 + 20, ("100m", "100m"), restarts=(2, 0), reason="Error")
    fed(store, T0 + 20, ("900m", "900m"), restarts=(5, 0), reason="Error")  # the same again
    fed(store, T0 + 15, ("900m", "900m"), restarts=(9, 0), reason="Error")  # late
    history = store.history(KEY)
    assert history.points[0].cpu == pytest.approx(0.2) and history.points[0].restarts == 2
    assert [(r.count, r.reason) for r in history.restarts] == [(1, "Error")]


def test_restarts_are_marked_with_the_last_termination_reason() -> None:
    clock = Clock()
    store = ring(clock)
    # the first reading is the baseline: restarts from before are not marked
    fed(store, T0 + 1, ("10m", "10m"), restarts=(3, 0), reason="Error")
    fed(store, T0 + 31, ("10m", "10m"), restarts=(3, 0), reason="Error")
    fed(store, T0 + 61, ("10m", "10m"), restarts=(5, 1), reason="OOMKilled")
    fed(store, T0 + 71, ("10m", "10m"), restarts=(6, 1), reason="OOMKilled")  # same step: merged
    fed(store, T0 + 91, ("10m", "10m"), restarts=(6, 1), reason="OOMKilled")
    clock.now = T0 + 100
    history = store.history(KEY)
    assert [(r.t, r.count, r.reason) for r in history.restarts] == [(T0 + 71, 4, "OOMKilled")]
    assert [p.restarts for p in history.points] == [3, 3, 7, 7]


def test_pods_replaced_are_no_restart_and_a_new_pod_that_restarted_is() -> None:
    clock = Clock()
    store = ring(clock)
    fed(store, T0 + 1, ("10m", "10m"), restarts=(4, 4), reason="Error")
    # a rollout: new pods, their counts at 0 (the total falls: no restart)
    fed(store, T0 + 31, ("10m", "10m"), names=("web-abc123-y-1", "web-abc123-y-2"))
    # one of them restarted once while the other went (the total falls: per pod, it rose)
    fed(
        store,
        T0 + 61,
        ("10m", "10m"),
        restarts=(1, 0),
        reason="OOMKilled",
        names=("web-abc123-y-1", "web-abc123-z-9"),
    )
    clock.now = T0 + 70
    assert [(r.count, r.reason) for r in store.history(KEY).restarts] == [(1, "OOMKilled")]


def test_frpc_restarts_are_not_the_apps() -> None:
    clock = Clock(T0 + 40)
    store = ring(clock)
    names = ("p1", "p2")
    for at, frpc in ((T0 + 1, 0), (T0 + 31, 3)):
        pods = [pod(n, frpc_restarts=frpc) for n in names]
        store.feed(reading(at, pods, [sample(n, "1m", "1Mi") for n in names]))
    history = store.history(KEY)
    assert history.restarts == () and [p.restarts for p in history.points] == [0, 0]


def test_markers_are_bounded_and_leave_with_the_window() -> None:
    clock = Clock()
    store = ring(clock)
    for n in range(100):  # a restart every step for 50 minutes
        fed(store, T0 + n * STEP + 1, ("1m", "1m"), restarts=(n, 0), reason="Error")
    clock.now = T0 + 99 * STEP + 2
    restarts = store.history(KEY).restarts
    assert len(restarts) == usage.MAX_MARKERS
    assert restarts[-1].t == T0 + 99 * STEP + 1 and all(r.count == 1 for r in restarts)
    clock.now = T0 + 99 * STEP + 3600 - 45  # an hour on: only the newest in the window
    assert len(store.history(KEY).restarts) == 2


def test_a_deployment_gone_from_the_readings_is_dropped() -> None:
    clock = Clock(T0 + 40)
    store = ring(clock)
    other = ("group-demo", "zzz999")
    names = [pod("p")]
    store.feed(reading(T0 + 1, names, [sample("p", "1m", "1Mi")], keys=(KEY, other)))
    assert len(store) == 2
    store.feed(reading(T0 + 31, names, [sample("p", "1m", "1Mi")], keys=(KEY,)))
    assert len(store) == 1 and other not in store and store.history(other).points == ()


def test_series_are_bounded_and_the_least_recently_used_leaves_for_one_asked_for() -> None:
    clock = Clock(T0 + 100)
    store = ring(clock, max_series=2)
    a, b, c = ("group-demo", "aaa111"), ("group-demo", "bbb222"), ("group-demo", "ccc333")
    every = (a, b, c)
    p = [pod("p")]

    def feed(at: float) -> None:
        store.feed(reading(at, p, [sample("p", "1m", "1Mi")], keys=every))

    feed(T0 + 1)
    assert (a in store, b in store, c in store) == (True, True, False)
    feed(T0 + 31)  # full: no churn, the same two go on
    assert (a in store, b in store, c in store) == (True, True, False)
    assert len(store.history(a).points) == 2  # a was looked at: b is the least recently used
    assert store.history(c).points == ()  # asked for while full: the next feed makes room
    feed(T0 + 61)
    assert (a in store, b in store, c in store) == (True, False, True)
    assert len(store.history(a).points) == 3 and len(store.history(c).points) == 1


# ---- the SVG ------------------------------------------------------------------------------


def spec(cpu: str = "500m", memory: str = "256Mi") -> Deployment:
    body = {"name": "web", "image": "registry:5000/demo/web:1.0", "replicas": 2}
    body["resources"] = {"cpu": cpu, "memory": memory}
    return Deployment(group="demo", id="abc123", spec=parse_deployment(body))


def svg_of(history: usage.History, kind: str = "cpu", **fit: str) -> tuple[ET.Element, str]:
    found = next(g for g in graphs.kinds(usage.footprint(spec(**fit))) if g.key == kind)
    drawn = graphs.graph(history, found)
    assert drawn is not None
    return ET.fromstring(str(drawn.svg)), drawn.label


def history_of(
    *points: tuple[float, float | None, int], restarts: tuple[usage.Restart, ...] = ()
) -> usage.History:
    """Points (seconds before the end, cores, pods) of an hour ending at T0 + 3600."""
    end = T0 + 3600
    return usage.History(
        step=STEP,
        window=3600,
        start=end - 3600,
        end=end,
        points=tuple(
            usage.Point(t=end - before, cpu=cpu, memory=None, pods=pods, restarts=0)
            for before, cpu, pods in points
        ),
        restarts=restarts,
    )


def texts(svg: ET.Element, css: str) -> list[str]:
    found = svg.iter(f"{SVG}text")
    return [" ".join(t.itertext()) for t in found if css in (t.get("class") or "")]


def test_the_graph_scales_to_the_limit_and_labels_in_human_units() -> None:
    oom = usage.Restart(t=T0 + 3600 - 300, count=2, reason="OOMKilled")
    history = history_of((120, 0.45, 2), (90, 0.9, 2), (60, 0.3, 2), (30, 0.2, 2), restarts=(oom,))
    svg, label = svg_of(history)
    assert svg.get("role") == "img" and svg.get("aria-label") == label
    assert label == (
        "CPU of the app container over the last hour: now 200m, peak 900m of a 2 cores limit "
        "(request 1 core, total of 2 pods); 2 restarts"
    )
    # the limit of 2 pods (2 x 1 core) fits under the top, a round 1, 2, 4 or 5 x 10^n
    assert texts(svg, "graph-tick")[:3] == ["0", "2 cores", "4 cores"]
    assert texts(svg, "graph-tick")[3:] == ["60m ago", "45m ago", "30m ago", "15m ago", "now"]
    assert texts(svg, "graph-limit-label") == ["limit 2 cores"]
    assert texts(svg, "graph-request-label") == ["request 1 core"]
    # the usage line: one point a step, in the middle of it, at value / top of the plot
    (line,) = [p for p in svg.iter(f"{SVG}path") if p.get("class") == "graph-usage"]
    coords = re.findall(r"[ML]([\d.]+) ([\d.]+)", line.get("d", ""))
    assert len(coords) == 4
    x0, y0 = (float(c) for c in coords[1])
    assert y0 == pytest.approx(graphs.TOP + graphs.PLOT_H * (1 - 0.9 / 4), abs=0.06)
    expected_x = graphs.LEFT + graphs.PLOT_W * (3600 - 90 + STEP / 2) / 3600
    assert x0 == pytest.approx(expected_x, abs=0.06)
    # the limit: dashed, at 2 cores for the 2 pods, half way up
    (limit,) = [p for p in svg.iter(f"{SVG}path") if p.get("class") == "graph-limit"]
    assert f"V{graphs.TOP + graphs.PLOT_H / 2:.1f}" in limit.get("d", "")
    # the restart: a vertical line where it happened, its title says what it was
    (marker,) = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "graph-restart"]
    assert marker.findtext(f"{SVG}title") == "2 restarts 5m ago: OOMKilled"
    line_x = float(marker.find(f"{SVG}line").get("x1", ""))  # type: ignore[union-attr]
    assert line_x == pytest.approx(graphs.LEFT + graphs.PLOT_W * (3600 - 300) / 3600, abs=0.06)


def test_requests_and_limits_follow_the_pods_sampled() -> None:
    svg, label = svg_of(history_of((90, 0.1, 1), (60, 0.1, 3), (30, 0.1, 3)))
    (limit,) = [p for p in svg.iter(f"{SVG}path") if p.get("class") == "graph-limit"]
    steps = [float(v.split("H")[0]) for v in limit.get("d", "").split("V")[1:]]
    # 1 pod: 1 core of 4 (a quarter up); 3 pods: 3 cores (three quarters up)
    bottom, height = graphs.TOP + graphs.PLOT_H, graphs.PLOT_H
    expected = [bottom - height / 4, bottom - 3 * height / 4, bottom - 3 * height / 4]
    assert steps == pytest.approx(expected, abs=0.06)
    assert "(request 1.5 cores, total of 3 pods); no restarts" in label


def test_memory_scales_in_binary_units() -> None:
    end = T0 + 3600
    history = usage.History(
        step=STEP,
        window=3600,
        start=T0,
        end=end,
        points=(usage.Point(t=end - 30, cpu=None, memory=300 * 2**20, pods=2, restarts=0),),
        restarts=(),
    )
    svg, label = svg_of(history, "memory")
    assert texts(svg, "graph-tick")[:3] == ["0", "768Mi", "1.5Gi"]  # limit 2 x 512Mi = 1Gi
    assert label.startswith("Memory of the app container over the last hour: now 300Mi, peak 300Mi")
    assert len(list(svg.iter(f"{SVG}circle"))) == 1  # a lone step: a dot, not a line
    assert graphs.graph(history, graphs.kinds(usage.footprint(spec()))[0]) is None  # no CPU


def test_gaps_break_the_line_and_the_label_says_when_the_newest_sample_is_missing() -> None:
    svg, label = svg_of(history_of((300, 0.1, 2), (270, 0.2, 2), (60, 0.1, 2), (30, None, 2)))
    assert label.startswith("CPU of the app container over the last hour: no sample now, peak ")
    paths = [p for p in svg.iter(f"{SVG}path") if p.get("class") == "graph-usage"]
    circles = list(svg.iter(f"{SVG}circle"))
    assert len(paths) == 1 and paths[0].get("d", "").count("M") == 1
    assert len(circles) == 1  # the step alone after the gap (the last has no metrics)
    _, stopped = svg_of(history_of((600, 0.1, 2)))  # the readings stopped 10 minutes ago
    assert ": last 100m, 10m ago, peak 100m of a 2 cores limit" in stopped


def test_what_the_cluster_says_is_escaped() -> None:
    evil = usage.Restart(t=T0 + 3000, count=1, reason='<script>alert(1)</script>" onload="x')
    svg, _ = svg_of(history_of((30, 0.1, 1), restarts=(evil,)))
    assert not list(svg.iter(f"{SVG}script"))
    assert all("onload" not in element.attrib for element in svg.iter())
    title = next(svg.iter(f"{SVG}title")).text
    assert title == '1 restart 10m ago: <script>alert(1)</script>" onload="x'  # as text


def test_no_section_without_a_value_to_draw() -> None:
    fit = usage.footprint(spec())
    assert graphs.section(history_of(), fit) is None
    assert graphs.section(history_of((30, None, 0)), fit) is None
    shown = graphs.section(history_of((60, 0.25, 2), (30, None, 0)), fit)
    assert shown is not None and [g.key for g in shown["graphs"]] == ["cpu"]
    assert [r["cpu"] for r in shown["rows"]] == ["—", "250m"]  # newest first
    assert graphs.window_text(7200) == "the last 2 hours" and graphs.ago(9000) == "2h30m ago"


# ---- fed by the poller: the API, the page, a follower replica -------------------------------


def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for a watch event to reach the poller's reading (never for a step of time)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.01)


def ensure_namespace(fake: FakeKube, name: str) -> None:
    if fake.get("v1", "Namespace", None, name) is None:
        fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def workload(fake: FakeKube, namespace: str, name: str, pods: int) -> list[str]:
    """A Deployment and its running pods as the chart makes them (labels), with metrics."""
    ensure_namespace(fake, namespace)
    ident = name.rsplit("-", 1)[1]
    labels = {layout.LABEL_ID: ident, "app.kubernetes.io/instance": name}
    fake.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": pods,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": []}},
            },
        }
    )
    names = [f"{name}-5d8f7-{n}" for n in range(pods)]
    for pod_name in names:
        fake.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": namespace, "labels": labels},
                "spec": {"containers": [{"name": "app", "image": "nginx"}]},
            }
        )
        restart(fake, namespace, pod_name, count=0)
    return names


def restart(fake: FakeKube, namespace: str, pod_name: str, *, count: int) -> None:
    """The app container's restart count as the kubelet reports it, OOMKilled last when > 0."""
    app: dict[str, Any] = {"name": "app", "ready": True, "restartCount": count}
    if count:
        app["lastState"] = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
    fake.set_status(
        "v1", "Pod", namespace, pod_name, {"phase": "Running", "containerStatuses": [app]}
    )


def use(fake: FakeKube, namespace: str, pods: list[str], cpu: str, memory: str) -> None:
    for pod_name in pods:
        fake.set_metrics(
            namespace, pod_name, {"app": {"cpu": cpu, "memory": memory}, "frpc": {"cpu": "9m"}}
        )


def restarts_seen(pl: poller.Poller, key: tuple[str, str], count: int) -> bool:
    reading = pl.state.reading
    statuses = [
        s
        for p in (reading.pods.get(key, ()) if reading is not None else ())
        for s in p.get("status", {}).get("containerStatuses", ())
    ]
    return sum(int(s.get("restartCount", 0)) for s in statuses) == count


def test_the_api_and_the_page_show_what_the_poller_read_to_members_only(tmp_path: Path) -> None:
    with FakeKube() as fake:
        kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig")
        app = make_app(
            tmp_path / "data", kubernetes={"mode": "kubeconfig", "kubeconfig": str(kubeconfig)}
        )
        rt = app.extensions["gitops_bridge.runtime"]
        pl = rt.monitor.poller
        clock = Clock()
        pl.clock = clock  # before the first cycle: its watches take it too
        try:
            client = app.test_client()
            create_group(client)
            name = deploy(client)  # 100m and 128Mi per pod, as the form's defaults
            namespace, ident = "group-team-a", name.rsplit("-", 1)[1]
            pods = workload(fake, namespace, name, 2)
            empty = client.get(f"/api/v1/deployments/{name}/usage", headers=as_user("alice"))
            assert empty.status_code == 200 and empty.json["points"] == []  # type: ignore[index]
            for at, cpu, memory in ((1, "20m", "60Mi"), (31, "70m", "90Mi"), (61, "40m", "80Mi")):
                if at == 61:
                    restart(fake, namespace, pods[1], count=1)
                    eventually(lambda: restarts_seen(pl, (namespace, ident), 1), "the restart")
                use(fake, namespace, pods, cpu, memory)
                clock.now = T0 + at
                assert pl.run_once() is not None, pl.state.error
            clock.now = T0 + 70

            answer = client.get(f"/api/v1/deployments/{name}/usage", headers=as_user("alice"))
            assert answer.status_code == 200
            body: dict[str, Any] = answer.json  # type: ignore[assignment]
            assert (body["name"], body["container"], body["step"], body["window"]) == (
                name,
                "app",
                30,
                3600,
            )
            assert body["end"] == T0 + 70 and body["start"] == T0 + 70 - 3600
            # two pods of the app container each step (the frpc sidecar's 9m is not in it)
            assert body["points"] == [
                [T0, 0.04, 120 * 2**20, 2, 0],
                [T0 + 30, 0.14, 180 * 2**20, 2, 0],
                [T0 + 60, 0.08, 160 * 2**20, 2, 1],
            ]
            assert body["restarts"] == [{"t": T0 + 61, "count": 1, "reason": "OOMKilled"}]
            assert body["requests"] == {"cpu": 0.1, "memory": 128 * 2**20}
            assert body["limits"] == {"cpu": 0.2, "memory": 256 * 2**20}
            hidden = client.get(f"/api/v1/deployments/{name}/usage", headers=as_user("mallory"))
            assert hidden.status_code == 404

            page = client.get(f"/deployments/{name}", headers=as_user("alice"))
            assert page.status_code == 200
            html = page.get_data(as_text=True)
            assert 'data-testid="graph-cpu"' in html and 'data-testid="graph-memory"' in html
            assert (
                'aria-label="CPU of the app container over the last hour: now 80m, peak 140m of '
                'a 400m limit (request 200m, total of 2 pods); 1 restart"'
            ) in html
            assert html.count('data-testid="restart-marker"') == 2  # on both graphs
            assert "1 restart 9s ago: OOMKilled" in html
        finally:
            rt.stop()


def test_a_follower_replica_graphs_the_leaders_readings(tmp_path: Path) -> None:
    from tests.e2eutil import serve

    with FakeKube() as fake:
        ensure_namespace(fake, "gitops-bridge")
        pods = workload(fake, "group-demo", "web-abc123", 2)
        kubeconfig = str(fake.kubeconfig(tmp_path / "kubeconfig"))
        replicas = []
        clock = Clock()
        for who in ("a", "b"):
            kubernetes = {
                "mode": "kubeconfig",
                "kubeconfig": kubeconfig,
                "lease_namespace": "gitops-bridge",
                "identity": who,
            }
            app = make_app(tmp_path / who, secret_key="k" * 32, kubernetes=kubernetes)
            app.extensions["gitops_bridge.runtime"].monitor.poller.clock = clock
            replicas.append(app)
        leader, follower = (app.extensions["gitops_bridge.runtime"] for app in replicas)
        try:
            with serve(replicas[0]) as url:
                assert leader.elector is not None and follower.elector is not None
                leader.elector.advertise_url = url
                for at, cpu in ((1, "10m"), (31, "50m")):
                    use(fake, "group-demo", pods, cpu, "10Mi")
                    clock.now = T0 + at
                    leader.cycle()  # takes the Lease, polls
                    follower.cycle()  # the Lease is held: takes the leader's reading
                    follower.cycle()  # the same reading again: nothing changes
                assert leader.elector.is_leader and not follower.elector.is_leader
                assert follower.monitor.poller is not None and not follower.monitor.poller.watching
            clock.now = T0 + 40
            seen = [rt.monitor.usage.history(KEY) for rt in (leader, follower)]
            assert [p.cpu for p in seen[1].points] == pytest.approx([0.02, 0.1])
            assert seen[0].points == seen[1].points
        finally:
            leader.stop()
            follower.stop()
