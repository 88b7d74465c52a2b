"""The platform registry over the Docker Registry HTTP API v2: repositories, tags, image sizes.

Speaks the API with ``urllib.request`` (no extra dependency) and translates every failure
here, at the edge: no answer, timeouts, 5xx and 429 are ``RegistryUnavailable`` (retryable);
401/403 are ``Forbidden``; 404 is ``NotFound``. Credentials (HTTP Basic) go only to the
configured origin: redirects (e.g. a blob served from object storage) do not carry them.

Sizes are what the registry stores: a manifest's config blob plus its layers, and for an
index (multi-platform image) the unique blobs of all its manifests. A group's usage counts
each blob once across its repositories, as the registry stores it once. Listings are
reused for ``cache_seconds``; manifests and configs fetched by digest never change, so
they are kept (bounded). After a failed connection the registry counts as down for a few
seconds, so pages that show images do not each wait for the timeout.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import SecretStr

from gitops_bridge import errors
from gitops_bridge.config import RegistrySettings

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
INDEXES = (OCI_INDEX, DOCKER_LIST)
CONFIGS = (
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
)
CREATED = "org.opencontainers.image.created"  # the annotation, if a builder sets it
MAX_BODY = 4 * 1024 * 1024  # manifests are limited to 4 MiB by the registry too
DOWN_SECONDS = 5.0
WORKERS = 8
KEPT = 4096  # manifests and configs by digest

T = TypeVar("T")


@dataclass(frozen=True)
class Image:
    """One tagged image: ``reference`` is how a deployment names it (``host/repo:tag``)."""

    reference: str
    digest: str
    size: int  # bytes: config + layers; for an index the unique blobs of its manifests
    created: str | None = None  # RFC 3339, from the image config


@dataclass(frozen=True)
class Repository:
    """A repository with its tags, newest first (by the image's creation time)."""

    name: str
    tags: tuple[str, ...]
    newest: Image


@dataclass(frozen=True)
class _Manifest:
    digest: str
    blobs: dict[str, int]  # digest -> size
    created: str | None

    @property
    def size(self) -> int:
        return sum(self.blobs.values())


@dataclass(frozen=True)
class _Reply:
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class _Cache:
    """Values by key: fresh ones for ``ttl`` seconds, immutable ones (by digest) while kept."""

    ttl: float
    clock: Callable[[], float]
    fresh: dict[Hashable, tuple[float, Any]] = field(default_factory=dict)
    kept: OrderedDict[Hashable, Any] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: Hashable, load: Callable[[], T], *, immutable: bool = False) -> T:
        with self.lock:
            if immutable and key in self.kept:
                self.kept.move_to_end(key)
                value: T = self.kept[key]
                return value
            entry = self.fresh.get(key)
            if entry is not None and entry[0] > self.clock():
                value = entry[1]
                return value
        value = load()
        with self.lock:
            if immutable:
                self.kept[key] = value
                while len(self.kept) > KEPT:
                    self.kept.popitem(last=False)
            elif self.ttl > 0:
                now = self.clock()
                self.fresh = {k: e for k, e in self.fresh.items() if e[0] > now}
                self.fresh[key] = (now + self.ttl, value)
        return value


class Registry:
    """A Docker Registry HTTP API v2 client for one registry (e.g. Docker registry 2.8)."""

    def __init__(
        self,
        url: str,
        *,
        host: str = "",
        username: str = "",
        password: SecretStr | None = None,
        timeout: float = 5.0,
        cache_seconds: float = 30.0,
        page_size: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url.rstrip("/")
        self.host = host or urllib.parse.urlsplit(self.url).netloc
        self.timeout = timeout
        self.page_size = page_size
        self._auth = ""
        if username:
            secret = password.get_secret_value() if password is not None else ""
            pair = f"{username}:{secret}".encode()
            self._auth = "Basic " + base64.b64encode(pair).decode()
        self._cache = _Cache(ttl=cache_seconds, clock=clock)
        self._clock = clock
        self._down: tuple[float, errors.RegistryUnavailable] | None = None

    # ---- what callers use ----------------------------------------------------------------

    def repositories(self, prefix: str) -> list[str]:
        """Repositories whose names start with ``prefix`` (e.g. ``team-a/``), sorted."""
        return self._cache.get(("repositories", prefix), lambda: self._repositories(prefix))

    def tags(self, repo: str) -> list[str]:
        """The tags of ``repo``, sorted by name; ``NotFound`` if there is no such repository."""
        try:
            return self._cache.get(("tags", repo), lambda: self._tags(repo))
        except errors.NotFound as exc:
            raise errors.NotFound(f"repository {repo!r} not found in {self.host}") from exc

    def image(self, repo: str, tag: str) -> Image:
        """The image ``repo:tag`` with its digest and size; ``NotFound`` for an unknown tag."""
        try:
            found = self._tagged(repo, tag)
        except errors.NotFound as exc:
            raise errors.NotFound(f"image {self.reference(repo, tag)} not found") from exc
        return self._image(repo, tag, found)

    def images(self, prefix: str) -> list[Repository]:
        """The repositories under ``prefix`` that have tags, each with its tags newest first."""
        result = []
        for repo, tagged in self._group(prefix):
            if not tagged:  # every tag deleted: nothing to deploy from it
                continue
            order = sorted(tagged, key=lambda tag: _newest_first(tag, tagged[tag]), reverse=True)
            newest = self._image(repo, order[0], tagged[order[0]])
            result.append(Repository(name=repo, tags=tuple(order), newest=newest))
        return result

    def usage(self, prefix: str) -> int:
        """Bytes the repositories under ``prefix`` hold: each blob counted once."""
        blobs: dict[str, int] = {}
        for _, tagged in self._group(prefix):
            for manifest in tagged.values():
                blobs.update(manifest.blobs)
        return sum(blobs.values())

    def reference(self, repo: str, tag: str) -> str:
        return f"{self.host}/{repo}:{tag}"

    # ---- listing ---------------------------------------------------------------------------

    def _repositories(self, prefix: str) -> list[str]:
        names: list[str] = []
        # the catalog is sorted and `last` is exclusive: start just before the prefix; the
        # names with one prefix are contiguous, so the first other name after them ends it
        query: dict[str, str | int] = {"n": self.page_size}
        if prefix[:-1]:
            query["last"] = prefix[:-1]
        for page in self._pages("/v2/_catalog", query, key="repositories"):
            for name in page:
                if name.startswith(prefix):
                    names.append(name)
                elif names:
                    return sorted(names)
        return sorted(names)

    def _tags(self, repo: str) -> list[str]:
        path = f"/v2/{_path(repo)}/tags/list"
        tags = [
            tag for page in self._pages(path, {"n": self.page_size}, key="tags") for tag in page
        ]
        return sorted(set(tags), key=_version_key)

    def _pages(self, path: str, query: dict[str, str | int], *, key: str) -> Iterable[list[str]]:
        """Follow ``Link: <...>; rel="next"`` from page to page."""
        url: str | None = f"{self.url}{path}?{urllib.parse.urlencode(query)}"
        seen: set[str] = set()
        while url is not None and url not in seen:
            seen.add(url)
            reply = self._get(url)
            items = _json(reply, url).get(key) or []  # an emptied repository has "tags": null
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise errors.RegistryUnavailable(f"registry: unexpected answer to {path}: {key}")
            yield items
            url = _next_link(reply.headers.get("link", ""), self.url)

    def _group(self, prefix: str) -> list[tuple[str, dict[str, _Manifest]]]:
        """Every repository under ``prefix`` with its tags' manifests (fetched in parallel)."""

        def load() -> list[tuple[str, dict[str, _Manifest]]]:
            repos = self.repositories(prefix)
            pairs = [(repo, tag) for repo in repos for tag in self._tags_or_none(repo)]
            with ThreadPoolExecutor(max_workers=WORKERS) as pool:
                found = list(pool.map(lambda pair: self._tagged_or_none(*pair), pairs))
            by_repo: dict[str, dict[str, _Manifest]] = {repo: {} for repo in repos}
            for (repo, tag), manifest in zip(pairs, found, strict=True):
                if manifest is not None:
                    by_repo[repo][tag] = manifest
            return list(by_repo.items())

        return self._cache.get(("group", prefix), load)

    def _tags_or_none(self, repo: str) -> list[str]:
        try:
            return self.tags(repo)
        except errors.NotFound:  # deleted since the catalog was read
            return []

    def _tagged_or_none(self, repo: str, tag: str) -> _Manifest | None:
        try:
            return self._tagged(repo, tag)
        except errors.NotFound:  # untagged meanwhile
            return None

    # ---- manifests -------------------------------------------------------------------------

    def _tagged(self, repo: str, tag: str) -> _Manifest:
        return self._cache.get(("tag", repo, tag), lambda: self._manifest(repo, tag))

    def _manifest(self, repo: str, reference: str) -> _Manifest:
        """The manifest ``reference`` (a tag or digest) points at, with its blobs' sizes."""
        url = f"{self.url}/v2/{_path(repo)}/manifests/{urllib.parse.quote(reference, safe=':')}"
        reply = self._get(url, accept=ACCEPT)
        document = _json(reply, url)
        digest = reply.headers.get("docker-content-digest", "")
        if not digest:
            raise errors.RegistryUnavailable(
                f"registry: no Docker-Content-Digest header for {repo}:{reference}"
            )
        media_type = document.get("mediaType") or reply.headers.get("content-type", "")
        build = self._index if media_type in INDEXES or "manifests" in document else self._single
        key = ("manifest", repo, digest)
        return self._cache.get(key, lambda: build(repo, digest, document), immutable=True)

    def _single(self, repo: str, digest: str, document: dict[str, Any]) -> _Manifest:
        """An image manifest (or an OCI artifact, e.g. a Helm chart): its config and layers.
        Anything else (an old schema 1 manifest) counts as no blobs rather than failing."""
        config = document.get("config")
        config = config if isinstance(config, dict) else {}
        layers = document.get("layers")
        blobs = {}
        for descriptor in [config, *(layers if isinstance(layers, list) else [])]:
            if not isinstance(descriptor, dict):
                continue
            blob, size = descriptor.get("digest"), descriptor.get("size")
            if isinstance(blob, str) and isinstance(size, int) and not isinstance(size, bool):
                blobs[blob] = size
        annotations = document.get("annotations")
        stamp = annotations.get(CREATED) if isinstance(annotations, dict) else None
        created = stamp if isinstance(stamp, str) and stamp else None
        if created is None and config.get("mediaType") in CONFIGS:
            config_digest = config.get("digest")
            if isinstance(config_digest, str):
                created = self._created(repo, config_digest)
        return _Manifest(digest=digest, blobs=blobs, created=created)

    def _index(self, repo: str, digest: str, document: dict[str, Any]) -> _Manifest:
        blobs: dict[str, int] = {}
        created: str | None = None
        for entry in document.get("manifests") or []:
            child = entry.get("digest") if isinstance(entry, dict) else None
            if not isinstance(child, str):
                continue
            try:
                manifest = self._manifest(repo, child)
            except errors.NotFound:  # an index may name platforms that were never pushed
                continue
            blobs.update(manifest.blobs)
            created = created or manifest.created
        return _Manifest(digest=digest, blobs=blobs, created=created)

    def _created(self, repo: str, config: str) -> str | None:
        def load() -> str | None:
            try:
                reply = self._get(f"{self.url}/v2/{_path(repo)}/blobs/{config}")
                document = json.loads(reply.body)
            except (errors.NotFound, ValueError):  # gone meanwhile, or not JSON after all
                return None
            value = document.get("created") if isinstance(document, dict) else None
            return value if isinstance(value, str) else None

        return self._cache.get(("created", config), load, immutable=True)

    def _image(self, repo: str, tag: str, manifest: _Manifest) -> Image:
        return Image(
            reference=self.reference(repo, tag),
            digest=manifest.digest,
            size=manifest.size,
            created=manifest.created,
        )

    # ---- HTTP ------------------------------------------------------------------------------

    def _get(self, url: str, *, accept: str = "application/json") -> _Reply:
        down = self._down
        if down is not None and down[0] > self._clock():
            raise down[1]
        request = urllib.request.Request(url, headers={"Accept": accept})
        if self._auth:  # never forwarded on a redirect (to blob storage, say)
            request.add_unredirected_header("Authorization", self._auth)
        where = f"registry {self.host}: GET {urllib.parse.urlsplit(url).path}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                headers = {k.lower(): v for k, v in reply.headers.items()}
                body = reply.read(MAX_BODY + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _http_error(where, exc.code) from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            # URLError: refused/DNS/TLS; TimeoutError (an OSError): no answer in time;
            # HTTPException: garbled reply; ValueError: a bad URL in the settings
            reason = getattr(exc, "reason", exc)
            error = errors.RegistryUnavailable(f"{where}: unreachable ({reason}); retry later")
            self._down = (self._clock() + DOWN_SECONDS, error)
            raise error from exc
        if len(body) > MAX_BODY:
            raise errors.RegistryUnavailable(f"{where}: answer larger than {MAX_BODY} bytes")
        return _Reply(headers=headers, body=body)


def from_settings(settings: RegistrySettings) -> Registry | None:
    """The configured registry, or None when there is none (``url`` empty)."""
    if not settings.url:
        return None
    return Registry(
        settings.url,
        host=settings.host,
        username=settings.username,
        password=settings.password,
        timeout=settings.timeout,
        cache_seconds=settings.cache_seconds,
    )


def _http_error(where: str, status: int) -> errors.BridgeError:
    if status >= 500 or status == 429:
        return errors.RegistryUnavailable(f"{where}: {status}; retry later")
    if status in (401, 403):
        return errors.Forbidden(f"{where}: {status}, the registry refused the bridge's access")
    if status == 404:
        return errors.NotFound(f"{where}: 404 not found")
    return errors.BridgeError(f"{where}: {status}")


def _json(reply: _Reply, url: str) -> dict[str, Any]:
    try:
        document = json.loads(reply.body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        path = urllib.parse.urlsplit(url).path
        raise errors.RegistryUnavailable(f"registry: {path} did not answer with a JSON object")
    return document


_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')


def _next_link(header: str, base: str) -> str | None:
    """The next page from a ``Link`` header, resolved against the registry; same origin only."""
    match = _LINK.search(header)
    if match is None:
        return None
    url = urllib.parse.urljoin(base + "/", str(match[1]))
    if urllib.parse.urlsplit(url)[:2] != urllib.parse.urlsplit(base)[:2]:
        return None
    return url


def _path(repo: str) -> str:
    return "/".join(urllib.parse.quote(part, safe="") for part in repo.split("/"))


_CHUNKS = re.compile(r"(\d+)")


def _version_key(tag: str) -> tuple[tuple[int, int, str], ...]:
    """Natural order: 1.9 < 1.10; numbers before words at the same place."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in _CHUNKS.split(tag)
        if part
    )


def _timestamp(created: str | None) -> float:
    if not created:
        return 0.0
    try:
        moment = datetime.fromisoformat(created)
    except ValueError:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _newest_first(
    tag: str, manifest: _Manifest
) -> tuple[float, bool, tuple[tuple[int, int, str], ...]]:
    """Sort key (reverse=True): newer images first; for the same image a pinned tag before
    ``latest``, higher versions before lower."""
    return (_timestamp(manifest.created), tag != "latest", _version_key(tag))
