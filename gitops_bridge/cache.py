"""A bounded cache: the least recently used entries go once a count or a size is reached.

Every cache the service keeps for the life of the process is one of these (or is bounded by
what such a cache holds), so memory stays flat however many writes and reads it serves.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Bounded(Generic[K, V]):
    """At most ``max_items`` entries and ``max_bytes`` of their declared sizes; thread-safe.

    An entry larger than ``max_bytes`` on its own is not kept at all.
    """

    def __init__(self, *, max_items: int, max_bytes: int | None = None) -> None:
        if max_items < 1 or (max_bytes is not None and max_bytes < 1):
            raise ValueError("a bounded cache needs room for at least one entry")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def put(self, key: K, value: V, *, size: int = 0) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if self.max_bytes is not None and size > self.max_bytes:
                return
            self._entries[key] = (value, size)
            self._bytes += size
            while len(self._entries) > self.max_items or (
                self.max_bytes is not None and self._bytes > self.max_bytes
            ):
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def size(self) -> int:
        """The sum of the declared sizes of what is kept."""
        with self._lock:
            return self._bytes
