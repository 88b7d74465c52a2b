"""Followed logs: limits on open streams, heartbeats, and the end of a stream nobody reads.

A follow stream holds a worker (on its own lane, see ``gitops_bridge.serving``) and a
request to the Kubernetes API for as long as it is open. So:

- at most ``server.max_streams`` are open at once, ``server.max_streams_per_user`` per
  user; one more answers 429 (retryable, ``Retry-After``) naming the limit. The server-wide
  limit counts requests to the API server: a followed merge of all pods is one stream of its
  user and one request per pod (``podlogs.Followed``), so the connection pool and the open
  files sized from ``server.max_streams`` still suffice;
- while the pod is quiet a server-sent-events stream sends a ``: heartbeat`` comment every
  ``server.stream_heartbeat`` seconds, and whether the client is still connected is checked
  every second (waitress notices a closed connection): a client that left is noticed within
  seconds, and the upstream log request is closed at once;
- a stream ends after ``server.stream_max_seconds`` (``event: end``, as when the pod goes).

The upstream log is read by a helper thread into a small queue, so the worker wakes up for
heartbeats and checks without a socket read timeout (a timed-out read cannot be resumed).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from flask import Flask

from gitops_bridge import metrics, podlogs
from gitops_bridge.config import ServerSettings
from gitops_bridge.errors import FieldProblem, TooManyRequests

log = logging.getLogger(__name__)

HEARTBEAT = b": heartbeat\n\n"
END = b"event: end\ndata: \n\n"
TICK = 1.0  # seconds between checks that the client is still there
QUEUE = 64  # chunks (of at most 4 KiB) read ahead of a slow client
LONGEST_LINE = 64 * 1024  # an SSE event carries at most this much of a line without "\n"

metrics.describe(
    "gitops_bridge_log_streams_total", "counter", "Followed log streams (opened, refused)"
)


class Upstream(Protocol):
    """A log being read (``cluster.LogStream``, ``podlogs.Followed``): chunks; ``close()``
    from any thread."""

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class Streams:
    """The open follow streams of this process, and their limits."""

    def __init__(
        self,
        *,
        limit: int,
        per_user: int,
        heartbeat: float,
        max_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.per_user = per_user
        self.heartbeat = heartbeat
        self.max_seconds = max_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._by_user: dict[str, int] = {}
        self._total = 0

    @classmethod
    def from_settings(cls, server: ServerSettings) -> Streams:
        return cls(
            limit=server.max_streams,
            per_user=server.max_streams_per_user,
            heartbeat=server.stream_heartbeat,
            max_seconds=server.stream_max_seconds,
        )

    @property
    def open_count(self) -> int:
        with self._lock:
            return self._total

    def open(
        self, user: str, read: Callable[[], podlogs.Log], *, sse: bool, gone: Callable[[], bool]
    ) -> Stream:
        """Take a slot (429 when none is left), then start reading the log (and take a slot
        more for each further API server request it holds: 429 when they are not left)."""
        self._acquire(user)
        try:
            opened = read()
        except BaseException:
            self._release(user)
            raise
        upstream: Upstream = opened.source
        extra = max(0, opened.requests - 1)
        if extra:
            try:
                self._acquire_more(extra)
            except BaseException:
                upstream.close()
                self._release(user)
                raise
        metrics.inc("gitops_bridge_log_streams_total", outcome="opened")
        return Stream(self, user, upstream, sse=sse, gone=gone, extra=extra)

    def _acquire(self, user: str) -> None:
        with self._lock:
            mine = self._by_user.get(user, 0)
            if mine >= self.per_user:
                refused = FieldProblem(
                    "follow", f"at most {self.per_user} open log streams per user, you have {mine}"
                )
            elif self._total >= self.limit:
                refused = FieldProblem(
                    "follow", f"at most {self.limit} open log streams on this server, all in use"
                )
            else:
                self._by_user[user] = mine + 1
                self._total += 1
                return
        metrics.inc("gitops_bridge_log_streams_total", outcome="refused")
        raise TooManyRequests(
            f"{refused}: close a log stream or retry later", problems=[refused], retry_after=5
        )

    def _acquire_more(self, extra: int) -> None:
        """Room for the further API server requests of one stream (a merge of all pods)."""
        with self._lock:
            if self._total + extra <= self.limit:
                self._total += extra
                return
            free = self.limit - self._total
        refused = FieldProblem(
            "follow",
            f"following {extra + 1} pods takes {extra + 1} of this server's {self.limit} log "
            f"streams, {free + 1} left",
        )
        metrics.inc("gitops_bridge_log_streams_total", outcome="refused")
        raise TooManyRequests(
            f"{refused}: follow one pod, or retry later", problems=[refused], retry_after=5
        )

    def _release(self, user: str, extra: int = 0) -> None:
        with self._lock:
            left = self._by_user.get(user, 0) - 1
            if left > 0:
                self._by_user[user] = left
            else:
                self._by_user.pop(user, None)
            self._total -= 1 + extra


class Stream:
    """One follow stream as a WSGI body: log bytes (as SSE events or text), heartbeats;
    ``close()`` (the server calls it when the response ends) frees everything it holds."""

    def __init__(
        self,
        owner: Streams,
        user: str,
        upstream: Upstream,
        *,
        sse: bool,
        gone: Callable[[], bool],
        extra: int = 0,
    ) -> None:
        self._owner = owner
        self._user = user
        self._extra = extra  # further API server requests held (``Streams._acquire_more``)
        self._upstream = upstream
        self._sse = sse
        self._gone = gone
        self._clock = owner.clock
        now = self._clock()
        self._deadline = now + owner.max_seconds
        self._next_beat = now + owner.heartbeat
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE)
        self._closed = threading.Event()
        self._close_lock = threading.Lock()
        self._started = False
        self._finished = False
        self._pending = b""
        self._reader = threading.Thread(target=self._read, name=f"log-stream-{user}", daemon=True)
        self._reader.start()

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> bytes:
        if not self._started:
            self._started = True
            return b""  # the status line and headers go out now, not with the first line
        while not self._finished and not self._closed.is_set():
            now = self._clock()
            if now >= self._deadline:
                return self._finish()
            wait = min(TICK, self._deadline - now)
            if self._sse:
                wait = min(wait, self._next_beat - now)
            try:
                chunk = self._queue.get(timeout=max(0.0, wait))
            except queue.Empty:
                if self._gone():
                    break
                if self._sse and self._clock() >= self._next_beat:
                    self._next_beat = self._clock() + self._owner.heartbeat
                    return HEARTBEAT
                continue
            if chunk is None:  # the log ended (the pod is gone, or the API server ended it)
                return self._finish()
            out = self._format(chunk)
            if out:
                self._next_beat = self._clock() + self._owner.heartbeat
                return out
        self.close()
        raise StopIteration

    def close(self) -> None:
        with self._close_lock:
            if self._closed.is_set():
                return
            self._closed.set()
        with contextlib.suppress(Exception):
            self._upstream.close()
        self._owner._release(self._user, self._extra)

    # ---- the reading side ---------------------------------------------------------------

    def _read(self) -> None:
        try:
            for chunk in self._upstream:
                if not self._offer(chunk):
                    return
        except Exception as exc:  # cut off mid-stream: the stream just ends
            log.info("a followed log ended early: %s", exc)
        finally:
            self._offer(None)

    def _offer(self, item: bytes | None) -> bool:
        return podlogs.offer(self._queue, item, self._closed, tick=TICK)

    # ---- formatting -----------------------------------------------------------------------

    def _format(self, chunk: bytes) -> bytes:
        if not self._sse:
            return chunk
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        if len(self._pending) > LONGEST_LINE:
            lines.append(self._pending)
            self._pending = b""
        return b"".join(b"data: " + line.rstrip(b"\r") + b"\n\n" for line in lines)

    def _finish(self) -> bytes:
        self._finished = True
        if not self._sse:
            return b""
        tail = b"data: " + self._pending + b"\n\n" if self._pending else b""
        self._pending = b""
        return tail + END


def of(app: Flask) -> Streams:
    value = app.extensions["gitops_bridge.streams"]
    assert isinstance(value, Streams)
    return value
