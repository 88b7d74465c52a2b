"""Process metrics in the Prometheus text format (counters and summaries, no dependency)."""

from __future__ import annotations

import threading
from collections import defaultdict

_lock = threading.Lock()
_counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
_summaries: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # count, sum
_help: dict[str, tuple[str, str]] = {}


def describe(name: str, kind: str, text: str) -> None:
    _help[name] = (kind, text)


def inc(name: str, amount: float = 1.0, **labels: str) -> None:
    key = (name, tuple(sorted(labels.items())))
    with _lock:
        _counters[key] += amount


def observe(name: str, value: float) -> None:
    with _lock:
        entry = _summaries[name]
        entry[0] += 1
        entry[1] += value


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition() -> str:
    lines: list[str] = []
    with _lock:
        counters = dict(_counters)
        summaries = {k: list(v) for k, v in _summaries.items()}
    names = sorted({name for name, _ in counters} | set(summaries) | set(_help))
    for name in names:
        kind, text = _help.get(name, ("summary" if name in summaries else "counter", name))
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        if name in summaries:
            count, total = summaries[name]
            lines.append(f"{name}_count {count:g}")
            lines.append(f"{name}_sum {total:.6f}")
            continue
        for (counter, labels), value in sorted(counters.items()):
            if counter != name:
                continue
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}")
    return "\n".join(lines) + "\n"


describe("gitops_bridge_http_requests_total", "counter", "HTTP requests by endpoint and status")
describe("gitops_bridge_commits_total", "counter", "Commits pushed to the GitOps remote")
describe("gitops_bridge_push_retries_total", "counter", "Pushes rejected because main moved")
describe(
    "gitops_bridge_commits_built_during_push_total",
    "counter",
    "Commits built on a push while it ran (pushed right after it)",
)
describe("gitops_bridge_push_batches_total", "counter", "Pushes of one or more commits")
describe("gitops_bridge_poll_duration_seconds", "summary", "Duration of one poll cycle")
describe("gitops_bridge_poll_api_calls_total", "counter", "Kubernetes API calls made by the poller")
describe("gitops_bridge_poll_errors_total", "counter", "Poll cycles that failed")
describe("gitops_bridge_kubernetes_api_errors_total", "counter", "Failed Kubernetes API calls")
describe(
    "gitops_bridge_watch_relists_total",
    "counter",
    "LISTs made again by a watch (after 410 Gone), by resource",
)
