"""Several pods' logs as one: each line tagged with its pod, merged in time order.

A deployment's replicas log the same kinds of lines, so a request that failed on one pod and
was retried on another is only readable with both logs side by side in time. The API server
has no log of several pods, so each pod's log is read on its own, with the time the container
runtime gave each line (``timestamps=true``: an RFC 3339 time with up to nine decimals and a
space before the line, as ``kubectl logs --timestamps``), and the lines are merged here.

Bounds, so that one request holds a known amount: at most ``MAX_PODS`` pods (the newest; the
answer's first line says which were left out), each pod's tail as asked and at most
``POD_BYTES`` of it (the oldest lines go first, and a line says so), lines of at most
``LONGEST_LINE`` bytes. A followed merge reads each pod in a thread of its own into one
queue of ``QUEUE_LINES`` lines; lines come in the order they arrive (a pod's tail as one
burst), and ``close()`` ends every pod's request at once.

Every line of a merge starts with ``[<pod>] ``; notes about the merge itself start with
``[all pods] `` (a pod name has no space, so no pod is tagged so).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import queue
import re
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from gitops_bridge.errors import NotFound

log = logging.getLogger(__name__)

ALL = "*"  # the ``pod`` that asks for every pod of the deployment
MAX_PODS = 20
POD_BYTES = 512 * 1024  # of one pod's tail in a merge that is not followed
LONGEST_LINE = 64 * 1024  # a longer line is cut into pieces of this size
QUEUE_LINES = 256  # lines read ahead of a slow reader of a followed merge
CHUNK = 64 * 1024  # a merged answer goes out in pieces of about this size
TICK = 0.5  # seconds between checks that a followed merge was closed
NOTE = b"[all pods] "

# RFC 3339 as the API server writes it before a line: seconds, up to 9 decimals, a zone.
_STAMP = re.compile(rb"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2}) ")


class Source(Protocol):
    """Log bytes being read (``cluster.LogStream``); ``close()`` ends it from any thread."""

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Log:
    """What a log request reads: ``pod`` (a pod's name, or ``all``), the bytes, and how many
    API server requests they hold open (the followed merge: one per pod)."""

    pod: str
    source: Source
    requests: int = 1


@dataclass(frozen=True)
class Pod:
    """What a log request needs of a pod: its containers, and those with an instance that
    terminated (their ``previous`` log)."""

    name: str
    created: str  # metadata.creationTimestamp: RFC 3339 in UTC, so text order is time order
    containers: frozenset[str]
    terminated: frozenset[str]

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Pod:
        meta = obj.get("metadata") or {}
        statuses = (obj.get("status") or {}).get("containerStatuses") or ()
        return cls(
            name=str(meta.get("name", "")),
            created=str(meta.get("creationTimestamp", "")),
            containers=frozenset(
                str(c.get("name", "")) for c in (obj.get("spec") or {}).get("containers") or ()
            ),
            terminated=frozenset(
                str(s.get("name", ""))
                for s in statuses
                if ((s.get("lastState") or {}).get("terminated") or {}).get("containerID")
            ),
        )

    def unreadable(self, container: str, *, previous: bool) -> str | None:
        """Why the pod has no such log (the API server would answer 400), or None. The
        previous instance is the one in ``lastState.terminated`` with a container ID, as the
        kubelet looks it up (pkg/kubelet/kubelet_pods.go ``validateContainerLogStatus``)."""
        if container not in self.containers:
            unexposed = ": the deployment is not exposed" if container == "frpc" else ""
            return f"pod {self.name} has no container {container}{unexposed}"
        if previous and container not in self.terminated:
            return (
                f"pod {self.name} has no previous container {container}: "
                "it has not terminated since the pod started"
            )
        return None


@dataclass(frozen=True)
class Tail:
    """One pod's tail, read whole: (time in nanoseconds, line with its time) pairs, and how
    many lines went from its start to stay within the byte budget."""

    pod: str
    lines: list[tuple[int, bytes]]
    cut: int


def lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a log read as chunks, without their ``\\n``; a line longer than
    ``LONGEST_LINE`` comes in pieces, so nothing held grows without bound."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            for start in range(0, max(len(line), 1), LONGEST_LINE):
                yield line[start : start + LONGEST_LINE]
        while len(pending) > LONGEST_LINE:
            yield pending[:LONGEST_LINE]
            pending = pending[LONGEST_LINE:]
    if pending:
        yield pending


def stamp(line: bytes) -> int | None:
    """The time a line starts with, in nanoseconds since the epoch (None: it has none)."""
    found = _STAMP.match(line)
    if found is None:
        return None
    zone = "+00:00" if found[3] == b"Z" else found[3].decode()
    try:
        seconds = datetime.fromisoformat(found[1].decode() + zone).timestamp()
    except ValueError:  # digits in the right places, but no such date
        return None
    return int(seconds) * 10**9 + int((found[2] or b"").ljust(9, b"0"))


def unstamped(line: bytes) -> bytes:
    """The line without the time it starts with."""
    found = _STAMP.match(line)
    return line[found.end() :] if found else line


def note(text: str) -> bytes:
    return NOTE + text.encode() + b"\n"


def newest(pods: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """The pods a merge reads (at most ``MAX_PODS``, the newest by creation time, then by
    name) and those left out, both by name; ``pods``: name -> creationTimestamp."""
    ordered = sorted(pods, key=lambda name: (pods[name], name), reverse=True)
    return sorted(ordered[:MAX_PODS]), sorted(ordered[MAX_PODS:])


def left_out(names: Sequence[str], *, total: int, shown: int = 5) -> str:
    """The note for pods a merge does not read."""
    listed = ", ".join(names[:shown]) + (
        f" and {len(names) - shown} more" if len(names) > shown else ""
    )
    return f"{total - len(names)} of {total} pods shown (at most {MAX_PODS}), left out: {listed}"


def read_tail(pod: str, source: Source, *, budget: int = POD_BYTES) -> Tail:
    """A pod's log read whole (with timestamps) and closed; a line without a time keeps the
    time of the line before it, so a line cut in pieces stays together."""
    kept: deque[tuple[int, bytes]] = deque()
    size = cut = key = 0
    try:
        for line in lines(source):
            found = stamp(line)
            key = key if found is None else found
            kept.append((key, line))
            size += len(line) + 1
            while size > budget:
                size -= len(kept.popleft()[1]) + 1
                cut += 1
    finally:
        source.close()
    return Tail(pod=pod, lines=list(kept), cut=cut)


def merged(
    tails: Sequence[Tail], *, timestamps: bool, notes: Sequence[str] = ()
) -> Generator[bytes, None, None]:
    """The tails as one log in time order (a tie keeps the pods' order, by name), each line
    tagged with its pod, with its time when ``timestamps``; the notes first."""
    cut = [
        f"{t.pod}: only its last {POD_BYTES // 1024} KiB ({t.cut} lines less)"
        for t in tails
        if t.cut
    ]
    head = b"".join(note(text) for text in [*notes, *cut])

    def tagged(tail: Tail) -> Iterator[tuple[int, bytes]]:
        tag = b"[" + tail.pod.encode() + b"] "
        for key, line in tail.lines:
            yield key, tag + (line if timestamps else unstamped(line)) + b"\n"

    def pieces() -> Generator[bytes, None, None]:
        buffer = [head] if head else []
        size = len(head)
        for _, line in heapq.merge(*(tagged(t) for t in tails), key=lambda item: item[0]):
            buffer.append(line)
            size += len(line)
            if size >= CHUNK:
                yield b"".join(buffer)
                buffer, size = [], 0
        if buffer:
            yield b"".join(buffer)

    return pieces()


def read_all(
    pods: Mapping[str, Pod],
    read: Callable[[str, bool], Source],
    *,
    name: str,
    container: str,
    follow: bool,
    timestamps: bool,
    previous: bool,
) -> Log:
    """Every pod's log as one (at most ``MAX_PODS``); ``read(pod, timestamps)`` requests one
    pod's. A pod without the log asked for (no such container, no previous instance, gone
    or waiting to start) is named in a note; NotFound when no pod has it. Not followed, each
    pod is read whole in turn (with timestamps, to merge by them) and merged; followed, every
    pod's request stays open (``Followed``)."""
    if not pods:
        raise NotFound(f"{name} has no pods")
    chosen, skipped = newest({pod: info.created for pod, info in pods.items()})
    notes = [left_out(skipped, total=len(pods))] if skipped else []
    readable: list[str] = []
    for pod in chosen:
        problem = pods[pod].unreadable(container, previous=previous)
        if problem is None:
            readable.append(pod)
        else:
            notes.append(problem)
    if not readable and previous and all(container in pods[p].containers for p in chosen):
        raise NotFound(
            f"no pod of {name} has a previous container {container}: "
            "none has terminated since it started"
        )
    if not follow:
        tails = []
        for pod in readable:
            source = _opened(read, pod, stamped=True, notes=notes)
            if source is not None:
                tails.append(read_tail(pod, source))
        if not tails:
            raise NotFound(f"{name}: " + "; ".join(notes))
        return Log("all", merged(tails, timestamps=timestamps, notes=notes))
    sources: dict[str, Source] = {}
    try:
        for pod in readable:
            source = _opened(read, pod, stamped=timestamps, notes=notes)
            if source is not None:
                sources[pod] = source
    except BaseException:
        for source in sources.values():
            source.close()
        raise
    if not sources:
        raise NotFound(f"{name}: " + "; ".join(notes))
    return Log("all", Followed(sources, notes=notes), requests=len(sources))


def _opened(
    read: Callable[[str, bool], Source], pod: str, *, stamped: bool, notes: list[str]
) -> Source | None:
    """One pod's log requested, or None with a note why the API server has none."""
    try:
        return read(pod, stamped)
    except NotFound as exc:
        notes.append(f"{pod}: {exc.message}")
        return None


class Followed:
    """Several pods' followed logs as one: a reader thread per pod puts its lines, tagged,
    into one bounded queue; iterating takes them in the order they came. It ends when every
    pod's log has ended; ``close()`` (from any thread) ends every pod's request at once."""

    def __init__(self, sources: Mapping[str, Source], *, notes: Sequence[str] = ()) -> None:
        self._sources = dict(sources)
        self._notes = deque(note(text) for text in notes)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_LINES)
        self._closed = threading.Event()
        self._reading = len(self._sources)
        for pod, source in self._sources.items():
            threading.Thread(
                target=self._read, args=(pod, source), name=f"log-{pod}", daemon=True
            ).start()

    def __iter__(self) -> Followed:
        return self

    def __next__(self) -> bytes:
        if self._notes:
            return self._notes.popleft()
        while self._reading and not self._closed.is_set():
            try:
                line = self._queue.get(timeout=TICK)
            except queue.Empty:
                continue
            if line is not None:
                return line
            self._reading -= 1  # one pod's log ended
        raise StopIteration

    def close(self) -> None:
        self._closed.set()
        for source in self._sources.values():
            with contextlib.suppress(Exception):
                source.close()

    def _read(self, pod: str, source: Source) -> None:
        tag = b"[" + pod.encode() + b"] "
        try:
            for line in lines(source):
                if not self._put(tag + line + b"\n"):
                    return
        except Exception as exc:  # cut off: this pod's part just ends
            log.info("the followed log of %s ended early: %s", pod, exc)
        finally:
            self._put(None)

    def _put(self, item: bytes | None) -> bool:
        return offer(self._queue, item, self._closed, tick=TICK)


def offer(
    into: queue.Queue[bytes | None], item: bytes | None, closed: threading.Event, *, tick: float
) -> bool:
    """Put ``item`` into a bounded queue, waiting while it is full; False once ``closed`` is
    set (the reader went away: nothing will make room)."""
    while not closed.is_set():
        try:
            into.put(item, timeout=tick)
        except queue.Full:
            continue
        return True
    return False
