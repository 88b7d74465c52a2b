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

Deleting works by manifest digest, as the API allows nothing else: every tag of that
repository pointing at the digest goes with it, and the blobs stay on disk until the
registry's garbage collection runs. ``retention`` and ``unique_bytes`` are the pure
arithmetic for that: which tags to delete, and how many bytes a collection would reclaim.
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
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
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
# the grammar of the distribution spec: a tag, and the path components of a repository name
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
REPOSITORY = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)

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
class TagInfo:
    """One tag of a repository and what it holds in the registry.

    ``size`` is config + layers (an index: the unique blobs of its platforms' manifests);
    ``blobs`` are those blobs' digests (their sizes: ``Registry.blob_sizes``), so that bytes
    of several tags can be summed with shared blobs counted once. ``created`` is the time in
    the image config (or the ``org.opencontainers.image.created`` annotation), RFC 3339, None
    when the image has neither: the registry API records no push time. ``manifests`` are the
    platform manifests an index names (empty for a single image).
    """

    repository: str
    tag: str
    digest: str
    size: int
    created: str | None
    blobs: frozenset[str]
    manifests: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Deleted:
    """A deleted tag: ``digest`` is the manifest deleted, ``also`` the other tags of the
    repository that pointed at it and went with it."""

    repository: str
    tag: str
    digest: str
    also: tuple[str, ...]


@dataclass(frozen=True)
class _Manifest:
    digest: str
    blobs: dict[str, int]  # digest -> size
    created: str | None
    children: frozenset[str] = frozenset()  # an index: the manifests it names

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
    generation: int = 0  # bumped by forget: a load begun before is not stored

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
            generation = self.generation
        value = load()
        with self.lock:
            if generation != self.generation and not immutable:
                return value
            if immutable:
                self.kept[key] = value
                while len(self.kept) > KEPT:
                    self.kept.popitem(last=False)
            elif self.ttl > 0:
                now = self.clock()
                self.fresh = {k: e for k, e in self.fresh.items() if e[0] > now}
                self.fresh[key] = (now + self.ttl, value)
        return value

    def forget(self, stale: Callable[[Hashable], bool]) -> None:
        """Drop the listings whose key is ``stale`` (entries kept by digest stay true)."""
        with self.lock:
            self.generation += 1
            self.fresh = {k: e for k, e in self.fresh.items() if not stale(k)}


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
            order = sorted(
                tagged, key=lambda tag: _newest_first(tag, tagged[tag].created), reverse=True
            )
            newest = self._image(repo, order[0], tagged[order[0]])
            result.append(Repository(name=repo, tags=tuple(order), newest=newest))
        return result

    def usage(self, prefix: str) -> int:
        """Bytes the repositories under ``prefix`` hold: each blob counted once, however many
        tags and repositories of the group share it (the registry stores it once)."""
        return sum(self.blob_sizes(prefix).values())

    def blob_sizes(self, prefix: str) -> dict[str, int]:
        """Size by digest of every blob (configs and layers) the tags under ``prefix`` use."""
        sizes: dict[str, int] = {}
        for _, tagged in self._group(prefix):
            for manifest in tagged.values():
                sizes.update(manifest.blobs)
        return sizes

    def tag_infos(self, prefix: str) -> list[TagInfo]:
        """Every tag of the repositories under ``prefix``: repositories sorted, each one's
        tags newest first (by ``created``; an unknown time counts as oldest; for the same
        time a pinned tag before ``latest``, higher versions first)."""
        infos = []
        for repo, tagged in self._group(prefix):
            for tag in sorted(
                tagged, key=lambda t: _newest_first(t, tagged[t].created), reverse=True
            ):
                manifest = tagged[tag]
                infos.append(
                    TagInfo(
                        repository=repo,
                        tag=tag,
                        digest=manifest.digest,
                        size=manifest.size,
                        created=manifest.created,
                        blobs=frozenset(manifest.blobs),
                        manifests=manifest.children,
                    )
                )
        return infos

    def delete_tag(self, repository: str, tag: str) -> Deleted:
        """Delete ``repository:tag`` by deleting the manifest it points at.

        The API deletes manifests by digest only, which takes every tag of the repository
        pointing at that digest: they are read first and returned in ``also``. (A tag
        pointed there between that read and the delete goes too, unreported.) The digest
        is the one the registry answers for all four manifest types (``ACCEPT``): asked
        with fewer, registry 2.8 answers a Docker manifest list with its linux/amd64
        platform's manifest and digest (deleting that would delete a platform, not the
        image), an OCI manifest or index with 404 and a Docker manifest with 400; older
        registries convert to schema 1, another digest again. A manifest that a remaining
        index names as a platform is not deleted (``Conflict``): that image would lose it.

        ``NotFound`` for an unknown repository or tag; ``Conflict`` when the registry does
        not allow deleting (405: its configuration needs ``storage.delete.enabled: true``).
        The blobs stay on disk until the registry's garbage collection runs.
        """
        _check_name(repository, tag)
        reference = self.reference(repository, tag)
        try:
            tags = sorted(set(self._tags(repository)) | {tag}, key=_version_key)
        except errors.NotFound as exc:
            raise errors.NotFound(f"image {reference} not found: no such repository") from exc
        # fresh answers, not the listings cache: what is deleted must be what is there now
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            heads = pool.map(lambda t: self._pointer(repository, t), tags)
            pointers = {t: found for t, found in zip(tags, heads, strict=True) if found}
        if tag not in pointers:
            raise errors.NotFound(f"image {reference} not found")
        digest = pointers[tag][0]
        also = tuple(t for t in tags if t != tag and t in pointers and pointers[t][0] == digest)
        going = {tag, *also}
        users = [
            t
            for t, (other, kind) in pointers.items()
            if t not in going and kind in INDEXES and digest in self._children(repository, other)
        ]
        if users:
            names = ", ".join(f"{repository}:{t}" for t in users)
            raise errors.Conflict(
                f"image {reference} ({digest}) is a platform of {names}: deleting it "
                f"would break that image; delete {names} first"
            )
        url = f"{self.url}/v2/{_path(repository)}/manifests/{digest}"
        refusals = {
            405: errors.Conflict(
                f"registry {self.host} does not allow deleting images (405 UNSUPPORTED): "
                "its configuration needs storage.delete.enabled: true (or the environment "
                "REGISTRY_STORAGE_DELETE_ENABLED=true); nothing was deleted, retrying will "
                "not help until then"
            ),
            404: errors.NotFound(f"image {reference} not found (deleted meanwhile)"),
        }
        try:
            self._send("DELETE", url, refusals=refusals)
        finally:  # whatever happened, the next listing asks the registry again
            self._forget(repository)
        return Deleted(repository=repository, tag=tag, digest=digest, also=also)

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

    def _pointer(self, repo: str, tag: str) -> tuple[str, str] | None:
        """The digest and media type ``repo:tag`` points at now (a HEAD); None if untagged."""
        url = f"{self.url}/v2/{_path(repo)}/manifests/{urllib.parse.quote(tag, safe='')}"
        try:
            reply = self._send("HEAD", url, accept=ACCEPT)
        except errors.NotFound:
            return None
        digest = reply.headers.get("docker-content-digest", "")
        if not digest:
            raise errors.RegistryUnavailable(
                f"registry: no Docker-Content-Digest header for {repo}:{tag}"
            )
        return digest, reply.headers.get("content-type", "").split(";")[0].strip()

    def _children(self, repo: str, digest: str) -> frozenset[str]:
        """The manifests the index ``digest`` names (kept by digest once read)."""
        try:
            return self._manifest(repo, digest).children
        except errors.NotFound:  # deleted meanwhile
            return frozenset()

    def _forget(self, repo: str) -> None:
        def stale(key: Hashable) -> bool:
            if not isinstance(key, tuple) or len(key) < 2:
                return False
            kind, name = key[0], key[1]
            if kind in ("tags", "tag"):
                return bool(name == repo)
            return kind == "group" and isinstance(name, str) and repo.startswith(name)

        self._cache.forget(stale)

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
        children: set[str] = set()
        for entry in document.get("manifests") or []:
            child = entry.get("digest") if isinstance(entry, dict) else None
            if not isinstance(child, str):
                continue
            children.add(child)
            try:
                manifest = self._manifest(repo, child)
            except errors.NotFound:  # an index may name platforms that were never pushed
                continue
            blobs.update(manifest.blobs)
            created = created or manifest.created
        return _Manifest(digest=digest, blobs=blobs, created=created, children=frozenset(children))

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
        return self._send("GET", url, accept=accept)

    def _send(
        self,
        method: str,
        url: str,
        *,
        accept: str = "application/json",
        refusals: Mapping[int, errors.BridgeError] | None = None,
    ) -> _Reply:
        """One request; an HTTP error status is raised as ``refusals[status]`` if given."""
        down = self._down
        if down is not None and down[0] > self._clock():
            raise down[1]
        request = urllib.request.Request(url, method=method, headers={"Accept": accept})
        if self._auth:  # never forwarded on a redirect (to blob storage, say)
            request.add_unredirected_header("Authorization", self._auth)
        where = f"registry {self.host}: {method} {urllib.parse.urlsplit(url).path}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                headers = {k.lower(): v for k, v in reply.headers.items()}
                body = reply.read(MAX_BODY + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            if refusals and exc.code in refusals:
                raise refusals[exc.code] from exc
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
    tag: str, created: str | None
) -> tuple[float, bool, tuple[tuple[int, int, str], ...]]:
    """Sort key (reverse=True): newer images first; for the same time a pinned tag before
    ``latest``, higher versions before lower."""
    return (_timestamp(created), tag != "latest", _version_key(tag))


def _check_name(repository: str, tag: str) -> None:
    if REPOSITORY.fullmatch(repository) is None or len(repository) > 255:
        raise errors.InvalidRequest.field(
            "repository",
            f"must be a repository name (lower-case a-z, 0-9, separators . _ __ - and /; "
            f"max 255), got {repository!r}",
        )
    if TAG.fullmatch(tag) is None:
        raise errors.InvalidRequest.field(
            "tag",
            f"must be a tag (A-Z, a-z, 0-9, _ . -; not starting with . or -; max 128), got {tag!r}",
        )


# ---- what deleting takes and frees: pure ------------------------------------------------


def unique_bytes(
    removed: Iterable[TagInfo], kept: Iterable[TagInfo], sizes: Mapping[str, int]
) -> int:
    """Bytes a garbage collection of the registry would reclaim once ``removed`` are deleted:
    the blobs a removed tag references and no kept tag does, each counted once.

    ``kept`` is every tag that stays and may share blobs with ``removed``: the other tags of
    the group, and of other groups too when images are built on each other's layers. Tags
    that go with a removed one (the same digest in the same repository, ``Deleted.also``)
    belong in ``removed``. The manifests themselves (a few KiB) are not counted; a blob
    missing from ``sizes`` counts as 0. Deleting an index leaves its platform manifests in
    the repository untagged: their blobs are reclaimed only by a collection that removes
    untagged manifests too (``registry garbage-collect --delete-untagged``).
    """
    staying: set[str] = set()
    for info in kept:
        staying |= info.blobs
    going: set[str] = set()
    for info in removed:
        going |= info.blobs
    return sum(sizes.get(blob, 0) for blob in going - staying)


def retention(
    tags: Sequence[TagInfo], keep: int, in_use: Callable[[TagInfo], bool]
) -> list[TagInfo]:
    """The tags to delete so that each repository keeps its newest ``keep`` images and every
    tag ``in_use`` says is used; an in-use tag is never among them.

    Newest is by ``created``, then as ``Registry.tag_infos`` orders (a tag with no known
    time counts as oldest). Deleting a tag deletes its manifest, and with it every tag of
    the same repository pointing at the same digest: so tags sharing a digest are one image
    here, kept or deleted together (``latest`` next to ``1.2`` does not take a place of its
    own, and is never deleted while ``1.2`` stays). A tag whose manifest an index of the
    repository names as a platform is part of that index's image: kept while the index is
    kept (or used), without taking a place of its own.

    The tags come back in the order given, except that an index comes before the tags of
    its platforms, so that deleting them one by one never meets a platform an index still
    names (``Registry.delete_tag`` refuses that).
    """
    if keep < 0:
        raise errors.InvalidRequest.field("keep", f"must be 0 or more, got {keep}")
    by_repo: dict[str, list[TagInfo]] = {}
    for info in tags:
        by_repo.setdefault(info.repository, []).append(info)
    doomed: set[tuple[str, str]] = set()
    for repo, infos in by_repo.items():
        platforms = frozenset().union(*(i.manifests for i in infos))
        newest: list[str] = []  # digests, one per image
        for info in sorted(infos, key=lambda i: _newest_first(i.tag, i.created), reverse=True):
            if len(newest) >= keep:
                break
            if info.digest not in newest and info.digest not in platforms:
                newest.append(info.digest)
        held = set(newest) | {i.digest for i in infos if in_use(i)}
        while True:  # and the platforms of every index held (of an index of indexes too)
            grown = held.union(*(i.manifests for i in infos if i.digest in held))
            if grown == held:
                break
            held = grown
        doomed |= {(repo, i.tag) for i in infos if i.digest not in held}
    place = {repo: n for n, repo in enumerate(by_repo)}
    chosen = [info for info in tags if (info.repository, info.tag) in doomed]
    return sorted(chosen, key=lambda i: (place[i.repository], not i.manifests))
