"""Usage over time as inline SVG, drawn on the server: no script, no chart library.

One graph per resource of a deployment's app container over the usage window (``usage``):
the usage as a line through each step's peak; the requests and limits as dashed step lines,
per pod x the pods sampled in each step (the same pods the usage is the total of, so a
scale-up does not look like a drop against the limit); each restart as a vertical line
with a ``<title>``; a time axis ending now; value labels in ``units``' one rule.

Each graph is ``role="img"`` with an ``aria-label`` saying what a glance would (now, the
peak, the limit, the restarts); the page adds the samples as a table. Text from the cluster
(a termination reason) goes through ``escape``; every attribute is a number or a constant.
Colours are classes of app.css, each at least 3:1 against white (WCAG 1.4.11), text 4.5:1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

from gitops_bridge import units
from gitops_bridge.usage import Footprint, History, Point, Restart

WIDTH, HEIGHT = 520, 184  # drawn 1:1 in one of two columns of the page
LEFT, RIGHT, TOP, BOTTOM = 60, 62, 12, 26  # margins: values; request and limit; time
LABEL_GAP = 26  # the least height between the request's and the limit's two-line labels
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
TICKS = 4  # time axis: the window in quarters


@dataclass(frozen=True)
class Kind:
    """One resource: how its values read, what one pod requests and may use."""

    key: str  # cpu | memory
    title: str
    show: Callable[[float], str]
    request: float  # per pod
    limit: float
    nice: Callable[[float], float]

    def value(self, point: Point) -> float | None:
        return point.cpu if self.key == "cpu" else point.memory


@dataclass(frozen=True)
class Graph:
    key: str
    title: str
    svg: Markup
    label: str  # the aria-label: the graph in one sentence
    caption: str  # what the figure's caption says beside the title


def _nice_cores(value: float) -> float:
    """The top of a CPU scale: 1, 2, 4 or 5 x a power of ten (halves read 500m, 1 core...)."""
    if value <= 0:
        return 0.001
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 4, 5, 10) if m * power >= value * (1 - 1e-9))


def _nice_bytes(value: float) -> float:
    """The top of a memory scale: 1 or 1.5 x a power of two (halves read 512Mi, 768Mi...)."""
    if value <= 0:
        return float(2**20)
    power = 2.0 ** math.floor(math.log2(value))
    return next(m * power for m in (1, 1.5, 2) if m * power >= value * (1 - 1e-9))


def kinds(fit: Footprint) -> tuple[Kind, Kind]:
    return (
        Kind("cpu", "CPU", units.cpu, fit.cpu_request, fit.cpu_limit, _nice_cores),
        Kind("memory", "Memory", units.memory, fit.memory_request, fit.memory_limit, _nice_bytes),
    )


def window_text(seconds: int) -> str:
    """``the last hour``, ``the last 2 hours``, ``the last 90 minutes``."""
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "the last hour" if hours == 1 else f"the last {hours} hours"
    return f"the last {round(seconds / 60)} minutes"


def ago(seconds: float) -> str:
    """``now``, ``45s ago``, ``12m ago``, ``2h ago``, ``2h30m ago``."""
    whole = max(0, round(seconds))
    if whole == 0:
        return "now"
    if whole < 120:
        return f"{whole}s ago"
    if whole < 7200:
        return f"{round(whole / 60)}m ago"
    hours, minutes = divmod(round(whole / 60), 60)
    return f"{hours}h{minutes}m ago" if minutes else f"{hours}h ago"


def _runs(points: Sequence[Point], kind: Kind, step: int) -> list[list[Point]]:
    """The points with a value, split where a step has none (no reading, no metrics)."""
    runs: list[list[Point]] = []
    for point in points:
        if kind.value(point) is None:
            continue
        if runs and point.t - runs[-1][-1].t <= step:
            runs[-1].append(point)
        else:
            runs.append([point])
    return runs


def _restarts_text(restarts: Sequence[Restart]) -> str:
    total = sum(r.count for r in restarts)
    return "no restarts" if not total else units.count(total, "restart")


def graph(history: History, kind: Kind) -> Graph | None:
    """The SVG of one resource; None when no step has a value of it."""
    runs = _runs(history.points, kind, history.step)
    if not runs:
        return None
    sampled = [p for run in runs for p in run]
    values = [v for p in sampled if (v := kind.value(p)) is not None]
    newest = sampled[-1]
    highest = max([*values, *(kind.limit * p.pods for p in sampled), kind.request])
    top = kind.nice(highest * 1.05)
    start, end = history.start, history.end
    span = max(end - start, 1.0)

    def x(t: float) -> float:
        return LEFT + min(max((t - start) / span, 0.0), 1.0) * PLOT_W

    def y(value: float) -> float:
        return TOP + PLOT_H - min(max(value / top, 0.0), 1.0) * PLOT_H

    label = _label(history, kind, values, newest)
    parts = [
        f'<svg class="graph" viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg" '
        f'role="img" aria-label="{escape(label)}" data-testid="graph-{kind.key}">'
    ]
    # value grid: 0, half, top
    for share in (0.0, 0.5, 1.0):
        level = y(top * share)
        parts.append(
            f'<line class="graph-grid" x1="{LEFT}" x2="{LEFT + PLOT_W}" '
            f'y1="{level:.1f}" y2="{level:.1f}"/>'
            f'<text class="graph-tick" x="{LEFT - 6}" y="{level + 4:.1f}" text-anchor="end">'
            f"{escape(kind.show(top * share))}</text>"
        )
    # time axis: the window in quarters, ending now
    for index in range(TICKS + 1):
        at = start + span * index / TICKS
        anchor = "start" if index == 0 else "end" if index == TICKS else "middle"
        parts.append(
            f'<line class="graph-grid" x1="{x(at):.1f}" x2="{x(at):.1f}" '
            f'y1="{TOP}" y2="{TOP + PLOT_H}"/>'
            f'<text class="graph-tick" x="{x(at):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">'
            f"{escape(ago(end - at))}</text>"
        )
    # requests and limits of the pods sampled: steps, dashed; named in the right margin at
    # their newest level (the request's label kept clear of the limit's)
    request_at = y(kind.request * newest.pods)
    limit_at = y(kind.limit * newest.pods)
    request_at = min(max(request_at, limit_at + LABEL_GAP), TOP + PLOT_H + 6)
    for css, per_pod, name, at in (
        ("graph-request", kind.request, "request", request_at),
        ("graph-limit", kind.limit, "limit", limit_at),
    ):
        path = []
        for run in runs:
            path.append(f"M{x(run[0].t):.1f} {y(per_pod * run[0].pods):.1f}")
            for point in run:
                path.append(f"V{y(per_pod * point.pods):.1f}H{x(point.t + history.step):.1f}")
        parts.append(
            f'<path class="{css}" fill="none" d="{"".join(path)}"/>'
            f'<text class="graph-line-label {css}-label" x="{LEFT + PLOT_W + 6}" '
            f'y="{at - 2:.1f}">{escape(name)}'
            f'<tspan x="{LEFT + PLOT_W + 6}" dy="12">'
            f"{escape(kind.show(per_pod * newest.pods))}</tspan></text>"
        )
    # the usage: a line through the middle of each step (a lone step: a dot)
    for run in runs:
        coords = [
            (x(p.t + history.step / 2), y(v)) for p in run if (v := kind.value(p)) is not None
        ]
        if len(coords) == 1:
            cx, cy = coords[0]
            parts.append(f'<circle class="graph-point" cx="{cx:.1f}" cy="{cy:.1f}" r="3"/>')
        else:
            d = "".join(
                f"{'M' if i == 0 else 'L'}{cx:.1f} {cy:.1f}" for i, (cx, cy) in enumerate(coords)
            )
            parts.append(f'<path class="graph-usage" fill="none" d="{d}"/>')
    # restarts: a vertical line each, with what happened as its title
    for restart in history.restarts:
        at = x(restart.t)
        parts.append(
            f'<g class="graph-restart" data-testid="restart-marker">'
            f"<title>{escape(restart_text(restart, end))}</title>"
            f'<line x1="{at:.1f}" x2="{at:.1f}" y1="{TOP}" y2="{TOP + PLOT_H}"/>'
            f'<line class="graph-hit" x1="{at:.1f}" x2="{at:.1f}" y1="{TOP}" y2="{TOP + PLOT_H}"/>'
            f'<circle cx="{at:.1f}" cy="{TOP + 3}" r="3.5"/></g>'
        )
    parts.append("</svg>")
    caption = (
        f"{_latest(history, kind)} · peak {kind.show(max(values))} · "
        f"limit {kind.show(kind.limit * newest.pods)}"
    )
    return Graph(kind.key, kind.title, Markup("".join(parts)), label, caption)


def _shown(kind: Kind, value: float | None) -> str:
    return "—" if value is None else kind.show(value)


def _latest(history: History, kind: Kind) -> str:
    """``now 120m`` (the step of now or the one before); ``last 120m, 12m ago`` when the
    readings stopped; ``no sample now`` when the newest step has none of this resource."""
    latest = history.points[-1]
    value = kind.value(latest)
    if value is None:
        return "no sample now"
    if history.end - (latest.t + history.step) > history.step:
        return f"last {kind.show(value)}, {ago(history.end - latest.t)}"
    return f"now {kind.show(value)}"


def _label(history: History, kind: Kind, values: list[float], newest: Point) -> str:
    """``CPU over the last hour: now 120m, peak 450m of a 1 core limit (total of 2 pods);
    3 restarts``; the limit is that of the pods of the newest step with a sample."""
    pods = units.count(newest.pods, "pod")
    return (
        f"{kind.title} of the app container over {window_text(history.window)}: "
        f"{_latest(history, kind)}, peak {kind.show(max(values))} "
        f"of a {kind.show(kind.limit * newest.pods)} limit "
        f"(request {kind.show(kind.request * newest.pods)}, total of {pods}); "
        f"{_restarts_text(history.restarts)}"
    )


def restart_text(restart: Restart, now: float) -> str:
    """``2 restarts 5m ago: OOMKilled``."""
    reason = f": {restart.reason}" if restart.reason else ""
    return f"{units.count(restart.count, 'restart')} {ago(now - restart.t)}{reason}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def section(history: History, fit: Footprint) -> dict[str, Any] | None:
    """What the page's usage section shows; None when no step has a value to draw."""
    drawn = [g for kind in kinds(fit) if (g := graph(history, kind)) is not None]
    if not drawn:
        return None
    cpu, memory = kinds(fit)
    newest = next(p for p in reversed(history.points) if p.cpu is not None or p.memory is not None)
    return {
        "window": window_text(history.window),
        "step": history.step,
        "pods": newest.pods,
        "graphs": drawn,
        "restarts": [
            {
                "text": restart_text(r, history.end),
                "count": r.count,
                "reason": r.reason,
                "at": _iso(r.t),
            }
            for r in reversed(history.restarts)
        ],
        "rows": [
            {
                "ago": ago(history.end - p.t),
                "at": _iso(p.t),
                "cpu": _shown(cpu, p.cpu),
                "memory": _shown(memory, p.memory),
                "pods": p.pods,
                "restarts": "—" if p.restarts is None else p.restarts,
            }
            for p in reversed(history.points)
        ],
    }
