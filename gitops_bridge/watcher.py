"""One kind of object kept current in memory: LIST once, then WATCH from there.

The pattern of https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes:
a LIST gives the objects and the resourceVersion they are at; a WATCH from that
resourceVersion sends every change after it (ADDED, MODIFIED, DELETED) and, asked with
``allowWatchBookmarks``, BOOKMARK events that only move the resourceVersion on
(#watch-bookmarks), so a watch started again later resumes from there. When the server
no longer keeps that much history it answers 410 Gone, and the client must clear what it
holds and list again (same page, "410 Gone"): the objects deleted meanwhile are gone with
the old list.

Bookmarks come at the server's discretion ("clients should not assume bookmarks are
returned at any specific interval":
https://kubernetes.io/docs/reference/kubernetes-api/common-parameters/common-parameters/#allowWatchBookmarks),
so nothing here waits for one, and resourceVersions are only stored and sent back, never
compared (#resource-versions: they are opaque).

Each ``Watcher`` owns an ``Index`` of slim objects and one thread reading its watch. A
stream the server ends (``timeoutSeconds``) is started again from the last resourceVersion;
a failed request is retried with backoff, and after ``MAX_FAILURES`` in a row the thread
ends (``running`` is False, ``error`` says why) until ``start()`` is called again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from gitops_bridge import cluster as kube
from gitops_bridge import metrics
from gitops_bridge.errors import ClusterUnavailable, ResourceExpired

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Identity = tuple[str, str]  # namespace, name
MAX_FAILURES = 5  # failed watch requests in a row before the thread gives up
BACKOFF = 0.25  # seconds before the first retry; doubles with each failure


def identity(obj: Obj) -> Identity:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


class Index:
    """Objects of one kind by identity, and by the key a reading looks them up with
    (``key`` returns None for objects a reading does not hold).

    ``snapshot()`` is a dict from key to the object (``many=False``: the last by name when
    several share a key) or to the list of objects sorted by name (``many=True``). It is
    copied on write: a snapshot handed out is never changed, and the next one copies the
    previous and replaces only the keys that changed since.

    ``per_namespace`` bounds what one namespace may hold: past it, the object lowest by
    ``order`` goes (for Events, the least recently seen), so objects anyone in a namespace
    can create cost the index at most that much there, however many are made.
    """

    def __init__(
        self,
        key: Callable[[Obj], Hashable | None],
        *,
        many: bool,
        per_namespace: int | None = None,
        order: Callable[[Obj], Any] = lambda obj: 0,
    ) -> None:
        self._key = key
        self._many = many
        self._keys: dict[Identity, Hashable] = {}
        self._members: dict[Hashable, dict[Identity, Obj]] = {}
        self._dirty: set[Hashable] = set()
        self._published: dict[Any, Any] | None = None
        self._bound = per_namespace
        self._order = order
        self._ranks: dict[str, dict[Identity, Any]] = {}  # namespace -> its held, by order

    def __len__(self) -> int:
        return len(self._keys)

    def put(self, obj: Obj) -> bool:
        """Hold ``obj`` (or drop it: its key is None); whether what the index holds changed."""
        ident = identity(obj)
        key = self._key(obj)
        old = self._keys.get(ident)
        if old is not None and old != key:
            self._discard(ident, old)
        if key is None:
            return old is not None
        self._keys[ident] = key
        self._members.setdefault(key, {})[ident] = obj
        self._dirty.add(key)
        if self._bound is not None:
            ranks = self._ranks.setdefault(ident[0], {})
            ranks[ident] = self._order(obj)
            if len(ranks) > self._bound:
                oldest = min(ranks, key=lambda held: (ranks[held], held))
                self._discard(oldest, self._keys[oldest])
        return True

    def remove(self, obj: Obj) -> bool:
        """Forget ``obj``; whether the index held it."""
        ident = identity(obj)
        key = self._keys.get(ident)
        if key is not None:
            self._discard(ident, key)
        return key is not None

    def reset(self, objects: list[Obj]) -> None:
        self._keys, self._members, self._dirty, self._ranks = {}, {}, set(), {}
        for obj in objects:
            self.put(obj)
        self._published = None

    def snapshot(self) -> dict[Any, Any]:
        if self._published is None:
            self._published = {key: self._value(key) for key in self._members}
        elif self._dirty:
            published = dict(self._published)
            for key in self._dirty:
                if key in self._members:
                    published[key] = self._value(key)
                else:
                    published.pop(key, None)
            self._published = published
        self._dirty = set()
        return self._published

    def _discard(self, ident: Identity, key: Hashable) -> None:
        del self._keys[ident]
        if (ranks := self._ranks.get(ident[0])) is not None:
            ranks.pop(ident, None)
            if not ranks:
                del self._ranks[ident[0]]
        members = self._members[key]
        del members[ident]
        if not members:
            del self._members[key]
        self._dirty.add(key)

    def _value(self, key: Hashable) -> Any:
        members = self._members[key]
        if self._many:
            return [members[ident] for ident in sorted(members)]
        return members[max(members)]


class Watcher:
    """One kind (one label selector, cluster-wide) listed into an ``Index``, then watched."""

    def __init__(
        self,
        cluster: kube.Cluster,
        resource: kube.Resource,
        *,
        index: Index,
        keep: kube.Keep,
        label_selector: str,
        page_size: int,
        timeout_seconds: int = 300,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cluster = cluster
        self.resource = resource
        self.index = index
        self.keep = keep
        self.label_selector = label_selector
        self.page_size = page_size
        self.timeout_seconds = timeout_seconds
        self.on_change = on_change
        self.clock = clock
        self.lock = threading.Lock()  # guards the index and version
        self.version = ""  # the resourceVersion the index is at; "" = not listed (or expired)
        self.changed_at = 0.0  # wall clock of the last event or list applied
        self.error = ""  # why the last watch request failed ("" once one succeeds)
        self.lists = 0  # LISTs made (the first and each after a 410)
        self.watches = 0  # watch requests made
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream: kube.WatchStream | None = None
        self._stream_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.resource[2]

    @property
    def listed(self) -> bool:
        return bool(self.version)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def snapshot(self) -> dict[Any, Any]:
        with self.lock:
            return self.index.snapshot()

    # ---- LIST ------------------------------------------------------------------------

    def relist(self) -> int:
        """List every object anew, replacing what the index held; the calls made."""
        listing = self.cluster.list(
            self.resource,
            label_selector=self.label_selector,
            page_size=self.page_size,
            keep=self.keep,
        )
        with self.lock:
            self.index.reset(listing.items)
            self.version = listing.resource_version
            self.changed_at = self.clock()
            self.lists += 1
        self.on_change()
        return listing.calls

    # ---- WATCH -----------------------------------------------------------------------

    def start(self) -> None:
        """Watch in a thread of its own (nothing when it already does); list first if the
        index is not listed yet."""
        if self.running:
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"watch-{self.resource[2]}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the watch now (the request to the API server is closed) and its thread."""
        self._stopping.set()
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                problem = self._attempt()
            except Exception as exc:  # a bug must not end the watch silently
                log.exception("watching %s crashed", self.name)
                problem = f"{type(exc).__name__}: {exc}"
            if self._stopping.is_set():
                return
            if problem is None:
                failures = 0
                continue
            failures += 1
            self.error = problem
            log.info("watching %s failed (%d in a row): %s", self.name, failures, problem)
            if failures >= MAX_FAILURES:
                log.warning(
                    "watching %s: gave up after %d failures: %s", self.name, failures, problem
                )
                return
            self._stopping.wait(BACKOFF * 2 ** (failures - 1))

    def _attempt(self) -> str | None:
        """A LIST if the index needs one, then one watch read to its end; what went wrong."""
        if not self.listed:
            try:
                metrics.inc("gitops_bridge_watch_relists_total", resource=self.name)
                self.relist()
            except ClusterUnavailable as exc:
                return f"listing again: {exc.message}"
        began = time.monotonic()
        try:
            received = self._watch()
        except ResourceExpired as exc:
            log.info("watching %s: %s; listing again", self.name, exc.message)
            with self.lock:
                self.version = ""
            return None
        except ClusterUnavailable as exc:
            return exc.message
        if received or time.monotonic() - began >= self.timeout_seconds / 2:
            return None
        return "the watch ended at once, with no event"

    def _watch(self) -> bool:
        """One watch request read to its end; whether any event came."""
        with self.lock:
            version = self.version
        stream = self.cluster.watch(
            self.resource,
            resource_version=version,
            label_selector=self.label_selector,
            timeout_seconds=self.timeout_seconds,
            keep=self.keep,
        )
        self.watches += 1
        self.error = ""
        with self._stream_lock:
            self._stream = stream
        if self._stopping.is_set():  # stop() came before the stream was known
            stream.close()
        received = False
        try:
            for event in stream:
                received = True
                self._apply(event)
        finally:
            with self._stream_lock:
                self._stream = None
            stream.close()
        return received

    def _apply(self, event: kube.WatchEvent) -> None:
        """One event into the index. Only a change of what the index holds counts as a
        change: an object the index drops (an Event about none of the deployments) moves
        the resourceVersion on and nothing else, so it neither rebuilds the reading nor
        makes it look newer."""
        with self.lock:
            if event.type in ("ADDED", "MODIFIED"):
                changed = self.index.put(event.object)
            elif event.type == "DELETED":
                changed = self.index.remove(event.object)
            elif event.type == "BOOKMARK":
                changed = False
            else:
                log.debug("%s: ignoring a %s event", self.name, event.type)
                return
            if event.resource_version:
                self.version = event.resource_version
            if not changed:
                return
            self.changed_at = self.clock()
        self.on_change()
