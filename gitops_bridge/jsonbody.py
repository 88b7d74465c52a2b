"""Reading JSON request bodies: nesting is bounded before anything parses them.

Python's parser recurses once per level, so a body of ``[[[[...`` a few thousand deep
raises RecursionError (a 500) here or in whatever walks the result later. No document
the bridge accepts nests deeper than a handful of levels; anything beyond ``MAX_DEPTH``
is a 400.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from gitops_bridge.errors import BadRequest

MAX_DEPTH = 32
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def depth(data: bytes) -> int:
    """How deeply arrays and objects nest in a JSON text (brackets inside strings ignored)."""
    opening = data.count(b"[") + data.count(b"{")
    if opening <= 1:
        return opening
    brackets = _STRINGS.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def loads(data: bytes | str, *, what: str = "the body", max_depth: int = MAX_DEPTH) -> Any:
    """The parsed JSON; ``BadRequest`` when it is not JSON or nests deeper than max_depth."""
    raw = data.encode() if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") > max_depth and depth(raw) > max_depth:
        raise BadRequest(f"{what}: JSON nests deeper than {max_depth} levels")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"{what} must be valid JSON: {exc}") from exc
