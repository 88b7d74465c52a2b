"""The only module that talks to Kubernetes (through the official client).

Requests are built as data (a path and query) and sent through the client's HTTP layer
with the raw JSON body parsed by orjson: a typed ``V1PodList`` of 5,000 pods costs 4 s to
deserialise, the raw body a fraction of that. LISTs come a page of ``limit`` objects at a
time, each page decoded (``listbody``) and reduced at once by the caller's ``keep``
(``slim``), so no more than one page of full objects is ever held, and a body larger than
``STREAM_BYTES`` (from a server that ignores ``limit``) is decoded an item at a time as it
arrives; WATCH streams are read a line (one event) at a time. Errors are translated here:
404 NotFound, 409 Conflict, 410 ResourceExpired, anything else (timeouts, refused
connections, 5xx) ClusterUnavailable.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from gitops_bridge import listbody, metrics
from gitops_bridge.errors import (
    BridgeError,
    ClusterUnavailable,
    Conflict,
    NotFound,
    ResourceExpired,
)

log = logging.getLogger(__name__)

HELMRELEASES = ("helm.toolkit.fluxcd.io", "v2", "helmreleases")
KUSTOMIZATIONS = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
GITREPOSITORIES = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
RECEIVERS = ("notification.toolkit.fluxcd.io", "v1", "receivers")
DEPLOYMENTS = ("apps", "v1", "deployments")
PODS = ("", "v1", "pods")
PERSISTENTVOLUMECLAIMS = ("", "v1", "persistentvolumeclaims")
EVENTS = ("", "v1", "events")
PODMETRICS = ("metrics.k8s.io", "v1beta1", "pods")
LEASES = ("coordination.k8s.io", "v1", "leases")

Resource = tuple[str, str, str]  # group ("" = core), version, plural
Keep = listbody.Keep
LIST_RESTARTS = 2  # a list whose continue token expired starts over at most this often
# A page larger than this is decoded an item at a time: a server that ignores ``limit``
# (metrics-server lists every PodMetrics at once) must not cost its whole list decoded.
STREAM_BYTES = 8 << 20
READ_BYTES = 1 << 19


def path(resource: Resource, namespace: str | None = None, name: str | None = None) -> str:
    group, version, plural = resource
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return f"{base}/{name}" if name else base


@dataclass(frozen=True)
class Listing:
    items: list[dict[str, Any]]
    resource_version: str
    calls: int


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK
    object: dict[str, Any]  # kept (``keep``) for ADDED/MODIFIED/DELETED; a bookmark's as sent
    resource_version: str


class Cluster:
    """A connection to one cluster; thread-safe (urllib3 pools)."""

    def __init__(self, api: k8s.ApiClient, *, timeout: float = 10.0, name: str = "") -> None:
        self.api = api
        self.timeout = timeout
        self.name = name
        self.calls = 0  # API calls made, for metrics and tests
        self._lock = threading.Lock()

    @classmethod
    def connect(
        cls,
        *,
        kubeconfig: str | None,
        context: str | None = None,
        timeout: float = 10.0,
        pool_size: int = 10,
    ) -> Cluster | None:
        """From a kubeconfig file, or the in-cluster service account; None if neither.
        ``pool_size``: connections kept for reuse (one per followed log while it is open)."""
        configuration = k8s.Configuration()
        try:
            if kubeconfig:
                k8s_config.load_kube_config(
                    config_file=kubeconfig, context=context, client_configuration=configuration
                )
                name = f"{Path(kubeconfig).name}:{context or 'current'}"
            else:
                k8s_config.load_incluster_config(client_configuration=configuration)
                name = "in-cluster"
        except (ConfigException, OSError) as exc:
            if kubeconfig:
                raise ClusterUnavailable(f"cannot read kubeconfig {kubeconfig}: {exc}") from exc
            return None
        configuration.retries = 0
        configuration.connection_pool_maxsize = pool_size
        return cls(k8s.ApiClient(configuration), timeout=timeout, name=name)

    def close(self) -> None:
        self.api.close()

    # ---- requests ------------------------------------------------------------------

    def request(
        self,
        method: str,
        resource_path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        stream: bool = False,
        timeout: float | tuple[float, float] | None = None,
        refused: type[BridgeError] | None = None,
    ) -> Any:
        """One API call; the parsed JSON body (or the raw response when streaming).
        ``refused``: what a 400 answer raises (otherwise ClusterUnavailable)."""
        response = self._call(
            method,
            resource_path,
            query=query,
            body=body,
            content_type=content_type,
            timeout=timeout,
            refused=refused,
        )
        if stream:
            return response.response
        return orjson.loads(response.read() or b"null")

    def _call(
        self,
        method: str,
        resource_path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] | None = None,
        refused: type[BridgeError] | None = None,
    ) -> Any:
        """One API call; the response (status below 400), its body not read yet."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            method, url, headers, payload, post = self.api.param_serialize(
                method=method,
                resource_path=resource_path,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            with self._lock:
                self.calls += 1
            response = self.api.call_api(
                method,
                url,
                header_params=headers,
                body=payload,
                post_params=post,
                _request_timeout=timeout or self.timeout,
            )
        except (urllib3.exceptions.HTTPError, k8s.ApiException, OSError) as exc:
            metrics.inc("gitops_bridge_kubernetes_api_errors_total")
            raise ClusterUnavailable(f"cluster {self.name} unreachable: {exc}") from exc
        if response.status >= 400:
            if response.status != 404:
                metrics.inc("gitops_bridge_kubernetes_api_errors_total")
            data = response.read()
            message = _status_message(data) or f"HTTP {response.status}"
            if response.status == 404:
                raise NotFound(message)
            if response.status == 409:
                raise Conflict(message)
            if response.status == 410:
                raise ResourceExpired(f"cluster {self.name}: {message}")
            if response.status == 400 and refused is not None:
                raise refused(message)
            raise ClusterUnavailable(f"cluster {self.name}: {message}")
        return response

    def list(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        page_size: int = 500,
        keep: Keep | None = None,
    ) -> Listing:
        """Every object of a kind, one call per page of ``page_size``; each object passed
        through ``keep`` as soon as its page is decoded.

        A continue token can expire between pages (410): the list then starts over, as
        https://kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks
        says a client that needs a consistent list must (at most ``LIST_RESTARTS`` times).
        """
        calls = 0
        for restart in range(LIST_RESTARTS + 1):
            items: list[dict[str, Any]] = []
            token = ""
            resource_version = ""
            try:
                while True:
                    query = [("limit", str(page_size))]
                    if label_selector:
                        query.append(("labelSelector", label_selector))
                    if token:
                        query.append(("continue", token))
                    calls += 1
                    response = self._call("GET", path(resource, namespace), query=query)
                    meta = _read_page(response.response, items, keep)
                    resource_version = meta.get("resourceVersion", resource_version)
                    token = meta.get("continue") or ""
                    if not token:
                        return Listing(items=items, resource_version=resource_version, calls=calls)
            except ResourceExpired:
                if not token or restart == LIST_RESTARTS:
                    raise
                log.info("listing %s: the continue token expired, listing again", resource[2])
        raise AssertionError("unreachable")

    def watch(
        self,
        resource: Resource,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
        keep: Keep | None = None,
    ) -> WatchStream:
        """The changes to a kind after ``resource_version`` (from a LIST), with BOOKMARK
        events; the server ends the stream after ``timeout_seconds``.

        https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
        (a watch from a list's resourceVersion misses nothing) and #watch-bookmarks; a
        resourceVersion older than the server's history is 410 Gone, before the stream (an
        HTTP 410) or in it (an ERROR event with a Status of code 410): ResourceExpired.
        """
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if label_selector:
            query.append(("labelSelector", label_selector))
        # quiet longer than the server's own end of the stream: the connection is gone
        limit = (self.timeout, timeout_seconds + 30.0)
        response = self.request(
            "GET", path(resource, namespace), query=query, stream=True, timeout=limit
        )
        return WatchStream(
            LogStream(response, what=f"the watch of {resource[2]}", follow=True), keep=keep
        )

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.request("GET", path(resource, namespace, name))
        except NotFound:
            return None
        return result

    def merge_patch(
        self, resource: Resource, namespace: str | None, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PATCH",
            path(resource, namespace, name),
            body=patch,
            content_type="application/merge-patch+json",
        )
        return result

    def create(
        self, resource: Resource, namespace: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", path(resource, namespace), body=body)
        return result

    def replace(
        self, resource: Resource, namespace: str | None, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.request("PUT", path(resource, namespace, name), body=body)
        return result

    def logs(
        self,
        namespace: str,
        pod: str,
        *,
        container: str | None = None,
        tail: int | None = None,
        follow: bool = False,
        timestamps: bool = False,
        previous: bool = False,
        timeout: float | None = None,
    ) -> LogStream:
        """A pod's log, requested now (errors raise here) and read as chunks of bytes; with
        follow, until the pod ends, the log is quiet for ``timeout`` seconds or the stream
        is closed (connecting takes at most the cluster's own timeout). ``timestamps``: each
        line starts with its RFC 3339 time and a space; ``previous``: the container instance
        that last terminated (``kubectl logs --previous``).

        The API server answers 400 when the container has no such log now (waiting to start,
        no terminated instance: the kubelet's ``validateContainerLogStatus``): NotFound with
        its message, not a cluster that is unavailable."""
        query: list[tuple[str, str]] = []
        if container:
            query.append(("container", container))
        if tail is not None:
            query.append(("tailLines", str(tail)))
        if follow:
            query.append(("follow", "true"))
        if timestamps:
            query.append(("timestamps", "true"))
        if previous:
            query.append(("previous", "true"))
        resource_path = path(PODS, namespace, pod) + "/log"
        limit = None if timeout is None else (self.timeout, timeout)
        response = self.request(
            "GET", resource_path, query=query, stream=True, timeout=limit, refused=NotFound
        )
        return LogStream(response, what=f"the log of {pod}", follow=follow)


class LogStream:
    """A pod's log (or a watch) being read: iterate for chunks of bytes; ``close()`` ends it
    from any thread, and closes the request to the API server at once (a read blocked in
    another thread wakes up), so a follow stream nobody reads holds nothing upstream."""

    def __init__(self, response: Any, *, what: str, follow: bool) -> None:
        self._response = response
        self._chunks = response.stream(4096, decode_content=True)
        self.what = what
        self.follow = follow
        self._lock = threading.Lock()
        self._closed = False  # no more reading: asked to close, or the end was reached
        self._reading = False  # a thread is inside next() right now
        self._released = False

    def __iter__(self) -> LogStream:
        return self

    def __next__(self) -> bytes:
        with self._lock:
            if self._closed:
                self._release()
                raise StopIteration
            self._reading = True
        try:
            chunk: bytes = next(self._chunks)
        except StopIteration:
            self._end(complete=True)
            raise
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            closed = self._end()
            if closed or self.follow:  # closed on purpose, or a follow cut off: just the end
                raise StopIteration from None
            raise ClusterUnavailable(f"reading {self.what} failed: {exc}") from exc
        with self._lock:
            self._reading = False
            if self._closed:
                self._release()
        return chunk

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self._reading:
                self._release()
                return
        # another thread is blocked reading: shut the socket so its read returns; that
        # thread then closes the connection (closing it here would not wake the read)
        with contextlib.suppress(Exception):
            self._response.shutdown()

    def _end(self, *, complete: bool = False) -> bool:
        """After the last read: whether close() asked for it; the connection is released."""
        with self._lock:
            asked = self._closed
            self._closed = True
            self._reading = False
            self._release(complete=complete and not asked)
        return asked

    def _release(self, *, complete: bool = False) -> None:
        """Give the connection back (read to its end) or close it (cut short, so the API
        server sees the request end); the caller holds ``_lock``."""
        if self._released:
            return
        self._released = True
        with contextlib.suppress(Exception):
            if not complete:
                self._response.close()
            self._response.release_conn()


class WatchStream:
    """One watch being read: iterate for ``WatchEvent``s, one per line of the stream, until
    the server ends it or the connection breaks; ``close()`` ends it from any thread. An
    ERROR event raises (ResourceExpired for code 410, ClusterUnavailable otherwise)."""

    def __init__(self, chunks: LogStream, *, keep: Keep | None) -> None:
        self._chunks = chunks
        self._keep = keep
        self._lines = self._read()

    def __iter__(self) -> WatchStream:
        return self

    def __next__(self) -> WatchEvent:
        return next(self._lines)

    def close(self) -> None:
        self._chunks.close()

    def _read(self) -> Iterator[WatchEvent]:
        rest = b""
        for chunk in self._chunks:
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                if line.strip():
                    yield self._event(line)
        if rest.strip():  # the last event of a stream cut short is incomplete: dropped
            log.debug("watch ended within an event (%d bytes)", len(rest))

    def _event(self, line: bytes) -> WatchEvent:
        try:
            event = orjson.loads(line)
            kind, obj = str(event["type"]), event["object"]
            meta = obj.get("metadata") or {}
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ClusterUnavailable(f"a watch event that does not decode: {exc}") from exc
        if kind == "ERROR":
            message = str(obj.get("message") or obj.get("reason") or "watch error")
            if obj.get("code") == 410:
                raise ResourceExpired(message)
            raise ClusterUnavailable(f"watch error: {message}")
        version = str(meta.get("resourceVersion", ""))
        if kind != "BOOKMARK" and self._keep is not None:
            obj = self._keep(obj)
        return WatchEvent(type=kind, object=obj, resource_version=version)


def _read_page(response: Any, items: list[dict[str, Any]], keep: Keep | None) -> dict[str, Any]:
    """One list page from the response into ``items`` (kept); the page's list metadata.

    A page up to ``STREAM_BYTES`` is decoded whole with orjson. A larger one (from a server
    that ignores ``limit``: metrics-server lists every PodMetrics at once) is decoded an item
    at a time as it arrives, so neither its bytes nor its full objects are ever all held."""
    chunks = response.stream(READ_BYTES, decode_content=True)
    head: deque[bytes] = deque()
    size, complete = 0, False
    try:
        for chunk in chunks:
            head.append(chunk)
            size += len(chunk)
            if size > STREAM_BYTES:
                break
        else:
            body = b"".join(head)
            head.clear()
            complete = True
            return listbody.decode_page(body, items, keep)

        def rest() -> Iterator[bytes]:
            while head:
                yield head.popleft()
            yield from chunks

        with listbody.collector_paused():
            meta = listbody.ListStream(rest()).read(items, keep)
        complete = True
        return meta
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ClusterUnavailable(f"reading a list page failed: {exc}") from exc
    except ValueError as exc:  # JSONDecodeError included
        raise ClusterUnavailable(f"a list page that does not decode: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            if not complete:  # cut short: the connection cannot serve another request
                response.close()
            response.release_conn()


def _status_message(data: bytes) -> str:
    try:
        status = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data[:200].decode(errors="replace")
    if isinstance(status, dict):
        return str(status.get("message") or status.get("reason") or "")
    return ""
