"""Kubernetes list bodies decoded, each object reduced by the caller's ``keep`` as soon as it
is (pure: no I/O; ``cluster`` feeds it the bytes it reads).

A page is decoded whole with orjson, one page at a time across threads, with the cyclic
garbage collector paused; a body too large for that (a server that ignores ``limit``) is
decoded one value at a time as its bytes arrive (``ListStream``). Malformed JSON raises
ValueError.
"""

from __future__ import annotations

import codecs
import contextlib
import gc
import json
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import orjson

Obj = dict[str, Any]
Keep = Callable[[Obj], Obj]  # what to keep of each object read
_JSON = json.JSONDecoder()

_decoding = threading.Lock()
_collector_lock = threading.Lock()
_collector_pauses = 0
_collector_resume = False


@contextlib.contextmanager
def collector_paused(*, promote: bool = False) -> Iterator[None]:
    """The cyclic garbage collector off while a page is decoded and reduced.

    orjson allocates a container per JSON object and array; every allocation counts towards
    a collection, and a collection walks every container still alive (a 46 MB page of
    10,000 pods: 1.3 s to decode with the collector on, 0.3 s with it paused). Decoded JSON
    holds no reference cycles, so nothing waits for the collector meanwhile. Pauses nest
    (pages decoded in several threads): the collector resumes when the last one ends, and
    only if it was on before the first.

    ``promote``: what survived the pause joins the oldest generation at once (``gc.freeze``
    then ``gc.unfreeze``, no walk), instead of being walked by a young collection, then by
    a middle one, then by a full one (after a first listing: 600,000 containers, each walk
    0.2 s); the next full collection walks it once, as it does everything else.
    """
    global _collector_pauses, _collector_resume
    with _collector_lock:
        if _collector_pauses == 0:
            _collector_resume = gc.isenabled()
            gc.disable()
        _collector_pauses += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_pauses -= 1
            if promote:
                gc.freeze()
                gc.unfreeze()
            if _collector_pauses == 0 and _collector_resume:
                gc.enable()


def decode_page(body: bytes, items: list[Obj], keep: Keep | None) -> Obj:
    """A whole list body (orjson) into ``items``, each passed through ``keep`` at once;
    the list's metadata."""
    # one page's full objects at a time (a page of 500 pods: 25 MB of them), whatever the
    # lists read at once: pages decoded in turns take no longer, decoding holds the GIL
    with _decoding, collector_paused():
        data = orjson.loads(body or b"{}")
        if not isinstance(data, dict):
            raise ValueError(f"a list page that is not an object: {body[:80]!r}")
        del body
        page = data.get("items") or []
        items.extend(page if keep is None else map(keep, page))
        meta: Obj = data.get("metadata") or {}
        del data, page  # the page's full objects go now, with the collector still off
    return meta


_WHITESPACE = re.compile(r"[ \t\n\r]*")


class ListStream:
    """A list body parsed as its bytes arrive, one value at a time with the standard
    library's scanner (``raw_decode``; orjson decodes whole documents only), whatever the
    order of the list's keys."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._text = ""
        self._at = 0
        self._ended = False

    def read(self, items: list[Obj], keep: Keep | None) -> Obj:
        meta: Obj = {}
        self._take("{")
        while self._peek() != "}":
            key = self._value()
            self._take(":")
            if key == "items" and self._peek() == "[":
                self._at += 1
                while self._peek() != "]":
                    item = self._value()
                    items.append(item if keep is None else keep(item))
                    if self._peek() == ",":
                        self._at += 1
                self._at += 1
            else:
                value = self._value()
                if key == "metadata" and isinstance(value, dict):
                    meta = value
            if self._peek() == ",":
                self._at += 1
        return meta

    def _more(self) -> bool:
        """Append the next chunk to what is left to parse; False at the end."""
        if self._ended:
            return False
        chunk = next(self._chunks, None)
        if chunk is None:
            self._ended = True
        text = self._utf8.decode(chunk or b"", final=chunk is None)
        self._text = self._text[self._at :] + text
        self._at = 0
        return True

    def _peek(self) -> str:
        """The next character but whitespace; ValueError when the body ends before one."""
        while True:
            self._at = _WHITESPACE.match(self._text, self._at).end()  # type: ignore[union-attr]
            if self._at < len(self._text):
                return self._text[self._at]
            if not self._more():
                raise ValueError("the list ends early")

    def _take(self, char: str) -> None:
        if self._peek() != char:
            raise ValueError(f"expected {char!r}, got {self._text[self._at : self._at + 40]!r}")
        self._at += 1

    def _value(self) -> Any:
        self._peek()
        while True:
            try:
                value, end = _JSON.raw_decode(self._text, self._at)
            except json.JSONDecodeError:
                if not self._more():  # a value cut by the end of a chunk: read on
                    raise
                continue
            if end == len(self._text) and self._more():
                continue  # a number may go on in the next chunk: decode it again, whole
            self._at = end
            return value
