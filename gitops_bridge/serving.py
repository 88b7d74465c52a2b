"""How ``serve`` runs the app: waitress, with worker lanes that cannot starve each other.

waitress reads and writes every socket on one I/O thread (an idle or half-sent connection
costs a socket, never a worker) and runs each complete request on a worker thread. With one
pool of workers, eight followed logs or a burst of slow requests take every worker and
``/healthz`` waits behind them. So a request goes to a lane by its path, and each lane has
its own workers:

- ``health``: ``/healthz`` and ``/metrics`` (``server.health_threads``);
- ``streams``: followed logs, ``/api/v1/deployments/<name>/logs?follow=1`` — one worker
  for every stream the limits allow (``server.max_streams``) and a few more, so one over
  the limits is answered 429 at once (``webapp.streams`` holds the limits and heartbeats);
- ``history``: a deployment's history, API and page (``server.history_threads``): the
  costliest reads (a page of commits with their diffs) queue among themselves;
- ``requests``: everything else, the UI, the API and ``/readyz`` (``server.threads``).

Connections: ``connection_limit`` bounds open sockets (idle keep-alive ones included; at
the limit new ones wait in the listen backlog), ``channel_timeout`` closes idle ones,
``poll()`` replaces ``select()`` so more than 1024 descriptors work, and
``channel_request_lookahead`` keeps reading a connection while its request runs, so a
client that hangs up is noticed at once (``waitress.client_disconnected``).
"""

from __future__ import annotations

import logging
import re
import resource
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import waitress
from waitress.task import ThreadedTaskDispatcher

from gitops_bridge.config import Settings

log = logging.getLogger(__name__)

HEALTH = "health"
STREAMS = "streams"
HISTORY = "history"
REQUESTS = "requests"
HEALTH_PATHS = frozenset({"/healthz", "/metrics"})
STREAM_HEADROOM = 8  # stream workers beyond the limit: enough to answer 429 without a queue
_LOGS = re.compile(r"/api/v1/deployments/[^/]+/logs")
_HISTORY = re.compile(r"(?:/api/v1)?/deployments/[^/]+/history")


def lane(path: str, query: str) -> str:
    """The lane a request runs on, from its path and query string."""
    path = "/" + path.lstrip("/")
    if path in HEALTH_PATHS:
        return HEALTH
    if _LOGS.fullmatch(path):
        follow = parse_qs(query, keep_blank_values=True).get("follow", [""])[0]
        if follow in ("1", "true", "yes"):  # as the logs endpoint reads it
            return STREAMS
    if _HISTORY.fullmatch(path):
        return HISTORY
    return REQUESTS


class _Lane(ThreadedTaskDispatcher):  # type: ignore[misc]
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def start_new_thread(self, target: Callable[[int], None], thread_no: int) -> None:
        thread = threading.Thread(
            target=target, name=f"waitress-{self.name}-{thread_no}", args=(thread_no,)
        )
        thread.daemon = True
        thread.start()


class Lanes:
    """waitress's task dispatcher (``add_task``, ``set_thread_count``, ``shutdown``) over
    one thread pool per lane; a task is a connection whose next request is complete."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.lanes = {name: _Lane(name) for name in sizes}
        for name, count in sizes.items():
            self.lanes[name].set_thread_count(count)

    def route(self, task: Any) -> str:
        requests = getattr(task, "requests", None)
        request = requests[0] if requests else None
        if request is None or getattr(request, "error", None) is not None:
            return REQUESTS
        return lane(str(getattr(request, "path", "") or ""), str(request.query or ""))

    def add_task(self, task: Any) -> None:
        self.lanes[self.route(task)].add_task(task)

    def set_thread_count(self, count: int) -> None:
        self.lanes[REQUESTS].set_thread_count(count)

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        done = True
        for pool in self.lanes.values():
            done = bool(pool.shutdown(cancel_pending=cancel_pending, timeout=timeout)) and done
        return done


def lane_sizes(settings: Settings) -> dict[str, int]:
    server = settings.server
    return {
        HEALTH: server.health_threads,
        STREAMS: server.max_streams + STREAM_HEADROOM,
        HISTORY: server.history_threads,
        REQUESTS: server.threads,
    }


def create(app: Any, settings: Settings) -> Any:
    """The waitress server for the WSGI app, listening on settings.host:port."""
    server = settings.server
    _raise_open_files(server.connection_limit + 2 * server.max_streams + 256)
    return waitress.create_server(
        app,
        _dispatcher=Lanes(lane_sizes(settings)),
        host=settings.host,
        port=settings.port,
        threads=server.threads,
        connection_limit=server.connection_limit,
        channel_timeout=server.channel_timeout,
        cleanup_interval=max(1, min(10, server.channel_timeout)),
        asyncore_use_poll=True,
        channel_request_lookahead=1,
        ident="gitops-bridge",
    )


def serve(app: Any, settings: Settings) -> None:
    create(app, settings).run()


def _raise_open_files(wanted: int) -> None:
    """Every connection, upstream log request, git process and file takes a descriptor:
    raise the soft limit toward the hard one if it is below what the settings allow."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning(
            "open files limited to %d, fewer than server.connection_limit and streams need (%d)",
            target,
            wanted,
        )
