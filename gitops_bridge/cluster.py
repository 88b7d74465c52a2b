"""The only module that talks to Kubernetes (through the official client).

Requests are built as data (a path and query) and sent through the client's HTTP layer
with the raw JSON body parsed by orjson: a typed ``V1PodList`` of 5,000 pods costs 4 s to
deserialise, the raw body a fraction of that. Errors are translated here: 404 NotFound,
409 Conflict, anything else (timeouts, refused connections, 5xx) ClusterUnavailable.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from gitops_bridge import metrics
from gitops_bridge.errors import ClusterUnavailable, Conflict, NotFound

log = logging.getLogger(__name__)

HELMRELEASES = ("helm.toolkit.fluxcd.io", "v2", "helmreleases")
KUSTOMIZATIONS = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
GITREPOSITORIES = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
RECEIVERS = ("notification.toolkit.fluxcd.io", "v1", "receivers")
DEPLOYMENTS = ("apps", "v1", "deployments")
PODS = ("", "v1", "pods")
PODMETRICS = ("metrics.k8s.io", "v1beta1", "pods")
LEASES = ("coordination.k8s.io", "v1", "leases")

Resource = tuple[str, str, str]  # group ("" = core), version, plural


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
    ) -> Any:
        """One API call; the parsed JSON body (or the raw response when streaming)."""
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
            raise ClusterUnavailable(f"cluster {self.name}: {message}")
        if stream:
            return response.response
        return orjson.loads(response.read() or b"null")

    def list(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        page_size: int = 10_000,
    ) -> Listing:
        """Every object of a kind (one call per page of page_size)."""
        items: list[dict[str, Any]] = []
        token = ""
        calls = 0
        resource_version = ""
        while True:
            query = [("limit", str(page_size))]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if token:
                query.append(("continue", token))
            data = self.request("GET", path(resource, namespace), query=query)
            calls += 1
            items.extend(data.get("items") or [])
            meta = data.get("metadata") or {}
            resource_version = meta.get("resourceVersion", resource_version)
            token = meta.get("continue") or ""
            if not token:
                return Listing(items=items, resource_version=resource_version, calls=calls)

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
        timeout: float | None = None,
    ) -> LogStream:
        """A pod's log, requested now (errors raise here) and read as chunks of bytes; with
        follow, until the pod ends, the log is quiet for ``timeout`` seconds or the stream
        is closed (connecting takes at most the cluster's own timeout)."""
        query: list[tuple[str, str]] = []
        if container:
            query.append(("container", container))
        if tail is not None:
            query.append(("tailLines", str(tail)))
        if follow:
            query.append(("follow", "true"))
        resource_path = path(PODS, namespace, pod) + "/log"
        limit = None if timeout is None else (self.timeout, timeout)
        response = self.request("GET", resource_path, query=query, stream=True, timeout=limit)
        return LogStream(response, pod=pod, follow=follow)


class LogStream:
    """A pod's log being read: iterate for chunks of bytes; ``close()`` ends it from any
    thread, and closes the request to the API server at once (a read blocked in another
    thread wakes up), so a follow stream nobody reads holds nothing upstream."""

    def __init__(self, response: Any, *, pod: str, follow: bool) -> None:
        self._response = response
        self._chunks = response.stream(4096, decode_content=True)
        self.pod = pod
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
            raise ClusterUnavailable(f"reading the log of {self.pod} failed: {exc}") from exc
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


def _status_message(data: bytes) -> str:
    try:
        status = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data[:200].decode(errors="replace")
    if isinstance(status, dict):
        return str(status.get("message") or status.get("reason") or "")
    return ""
