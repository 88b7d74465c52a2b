"""Prometheus over its HTTP API: range queries (``GET /api/v1/query_range``), bounded.

The one module that speaks to Prometheus, with ``urllib.request`` (no extra dependency).
Every failure is translated here into ``PrometheusUnavailable``: no answer by the deadline,
an HTTP error status, a body that is not the API's JSON, a ``status`` other than
``success``, a result that is not a matrix, or more than was asked for. Callers see
nothing else, so they can fall back to what they have.

What is read is bounded before it is parsed: at most ``max_series`` series of at most
``max_points`` points each, in a body of at most ``body_limit`` bytes; a larger body is
refused, not truncated. The body is read chunk by chunk against the caller's deadline, so a
server that drips stops being read once the deadline has passed (one socket wait, at most
the time that was left, may run past it).
"""

from __future__ import annotations

import http.client
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gitops_bridge import errors

BYTES_A_POINT = 64  # `[1795825567.123,"1.2345678901234567e+10"],` is 43
BODY_OVERHEAD = 16 * 1024  # the envelope, labels, warnings
CHUNK = 64 * 1024
ERROR_SHOWN = 200  # characters of Prometheus' own error message kept in ours


class PrometheusUnavailable(errors.BridgeError):
    """Prometheus did not answer by the deadline, or answered something unusable."""

    retryable = True
    status = 503


@dataclass(frozen=True)
class Series:
    """One series of a range query: its labels and its ``(t, value)`` points, oldest first
    (a value that is not finite, NaN or an infinity, is left out)."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]


def body_limit(*, max_series: int, max_points: int) -> int:
    """The most bytes an answer of that many series and points can take."""
    return BODY_OVERHEAD + max_series * (BODY_OVERHEAD + max_points * BYTES_A_POINT)


class Prometheus:
    """One Prometheus server (``url``: its base, e.g. ``http://prometheus:9090``)."""

    def __init__(self, url: str, *, token: str = "") -> None:
        self.url = url.rstrip("/")
        self._headers = {"Accept": "application/json"}
        if token:  # never in a message: errors name the host only
            self._headers["Authorization"] = f"Bearer {token}"

    def query_range(
        self,
        query: str,
        *,
        start: float,
        end: float,
        step: int,
        deadline: float,
        max_series: int = 1,
    ) -> list[Series]:
        """The matrix of ``query`` evaluated at ``start``, ``start + step``... ``<= end``
        (Unix seconds), answered before ``deadline`` (``time.monotonic`` seconds)."""
        max_points = int((end - start) // step) + 1
        params = {"query": query, "start": _seconds(start), "end": _seconds(end), "step": step}
        url = f"{self.url}/api/v1/query_range?{urllib.parse.urlencode(params)}"
        body = self._get(
            url, deadline=deadline, limit=body_limit(max_series=max_series, max_points=max_points)
        )
        return matrix(body, start=start, end=end, step=step, max_series=max_series)

    def _get(self, url: str, *, deadline: float, limit: int) -> bytes:
        where = f"Prometheus {urllib.parse.urlsplit(self.url).netloc}"
        left = deadline - time.monotonic()
        if left <= 0:
            raise PrometheusUnavailable(f"{where}: no time left to ask")
        request = urllib.request.Request(url, headers=self._headers)
        chunks: list[bytes] = []
        size = 0
        try:
            with urllib.request.urlopen(request, timeout=left) as reply:
                while chunk := reply.read1(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise PrometheusUnavailable(f"{where}: answer larger than {limit} bytes")
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise PrometheusUnavailable(f"{where}: no complete answer in time")
        except urllib.error.HTTPError as exc:
            detail = _error_of(exc)
            exc.close()
            raise PrometheusUnavailable(f"{where}: HTTP {exc.code}{detail}") from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            # URLError: refused, DNS, TLS; TimeoutError (an OSError): no answer in time;
            # HTTPException: a garbled reply; ValueError: a bad URL
            reason = getattr(exc, "reason", exc)
            raise PrometheusUnavailable(f"{where}: unreachable ({reason})") from exc
        return b"".join(chunks)


def matrix(
    body: bytes, *, start: float, end: float, step: int, max_series: int = 1
) -> list[Series]:
    """The series of a ``query_range`` answer; ``PrometheusUnavailable`` for anything that
    is not one: every timestamp must be on the grid of ``start`` and ``step`` within
    ``[start, end]``, once, in order; every value a number as text (Prometheus' own shape)."""
    try:
        document = json.loads(body)
    except ValueError as exc:  # UnicodeDecodeError too
        raise _garbage("not JSON") from exc
    if not isinstance(document, dict):
        raise _garbage("not a JSON object")
    if document.get("status") != "success":
        message = str(document.get("error") or document.get("status"))[:ERROR_SHOWN]
        raise PrometheusUnavailable(f"Prometheus refused the query: {message}")
    data = document.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        raise _garbage("not a matrix")
    result = data.get("result")
    if not isinstance(result, list) or len(result) > max_series:
        raise _garbage(f"not a list of at most {max_series} series")
    max_points = int((end - start) // step) + 1
    found = []
    for item in result:
        labels = item.get("metric") if isinstance(item, dict) else None
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise _garbage("a series without string labels")
        if not isinstance(values, list) or len(values) > max_points:
            raise _garbage(f"a series without a list of at most {max_points} points")
        found.append(Series(labels=labels, points=_points(values, start, step, max_points)))
    return found


def _garbage(what: str) -> PrometheusUnavailable:
    return PrometheusUnavailable(f"Prometheus answered garbage: {what}")


def _points(
    values: list[Any], start: float, step: int, max_points: int
) -> tuple[tuple[float, float], ...]:
    points: list[tuple[float, float]] = []
    last = -1
    for value in values:
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)):
            raise _garbage('a point that is not [time, "value"]')
        t = value[0]
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
            raise _garbage("a point without a time")
        index = round((t - start) / step)
        if not last < index < max_points or abs(t - (start + index * step)) > 1e-3:
            raise _garbage(f"a point off the query's steps: {t}")
        last = index
        try:
            number = float(value[1])
        except ValueError as exc:
            raise _garbage(f"a value that is not a number: {value[1][:40]!r}") from exc
        if math.isfinite(number):
            points.append((float(start + index * step), number))
    return tuple(points)


def _error_of(exc: urllib.error.HTTPError) -> str:
    """Prometheus' own reason for an error status (``{"error": ...}``), when it says one."""
    try:
        document = json.loads(exc.read(4096))
    except (ValueError, OSError, http.client.HTTPException):
        return ""
    message = document.get("error") if isinstance(document, dict) else None
    return f": {str(message)[:ERROR_SHOWN]}" if message else ""


def _seconds(t: float) -> str:
    """Unix seconds as Prometheus takes them (``1795825530`` or ``1795825530.5``)."""
    return str(int(t)) if t == int(t) else f"{t:.3f}"
