"""A real Docker registry 2.8 (Debian's docker-registry) on 127.0.0.1, and test images pushed
to it over HTTP with the v2 upload protocol (POST an upload, PUT the blob, PUT the manifest).
The demo (``tests/demo.py``) runs its registry with this module too, without pytest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from urllib.parse import urljoin

BINARY = Path("/usr/bin/docker-registry")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: {delete}
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: gitops-bridge-tests
{auth}"""


@dataclass
class RegistryServer:
    url: str
    port: int
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def start(self) -> None:
        """Start (again, on the same port and storage) and wait until ``/v2/`` answers."""
        if not BINARY.is_file():
            _fail(
                f"{BINARY} not found: install Debian's docker-registry package "
                "(scripts/test does: apt-get install docker-registry)"
            )
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BINARY), "serve", str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                _fail(f"docker-registry exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # up, and asking for credentials
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        _fail(f"docker-registry did not answer on {self.url}: {self.log.read_text()[-2000:]}")


def _fail(message: str) -> NoReturn:
    """The test fails with the message under pytest; elsewhere (the demo) it is an error."""
    pytest = sys.modules.get("pytest")
    if pytest is not None:
        pytest.fail(message, pytrace=False)
    raise RuntimeError(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_registry(
    directory: Path, *, htpasswd: Path | None = None, delete: bool = True
) -> Iterator[RegistryServer]:
    """docker-registry with its own config: 127.0.0.1, a free port, storage under directory;
    deleting manifests is allowed (``storage.delete.enabled``) unless ``delete`` is False."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    auth = ""
    if htpasswd is not None:
        auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n"
    config = directory / "config.yml"
    config.write_text(
        CONFIG.format(
            root=directory / "storage", port=port, auth=auth, delete="true" if delete else "false"
        )
    )
    server = RegistryServer(
        url=f"http://127.0.0.1:{port}", port=port, config=config, log=directory / "registry.log"
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory / "storage", ignore_errors=True)


# ---- pushing test images over HTTP ----------------------------------------------------


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(files: dict[str, bytes]) -> bytes:
    """A gzip tarball of the given files (fixed mtimes: the same files give the same bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(buffer.getvalue(), mtime=0)


def config_blob(*, created: str, diff_ids: list[str], label: str = "") -> bytes:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {"Labels": {"test": label}} if label else {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    return json.dumps(config, sort_keys=True).encode()


def _request(
    method: str, url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        return response.status, dict(response.headers.items())


def push_blob(base: str, repo: str, data: bytes) -> str:
    """POST /v2/<repo>/blobs/uploads/ then PUT <location>&digest=... with the bytes."""
    digest = digest_of(data)
    status, headers = _request("POST", f"{base}/v2/{repo}/blobs/uploads/", data=b"")
    assert status == 202, status
    location = urljoin(base + "/", headers["Location"])
    separator = "&" if "?" in location else "?"
    status, headers = _request(
        "PUT",
        f"{location}{separator}digest={digest}",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert status == 201, status
    assert headers["Docker-Content-Digest"] == digest
    return digest


def push_manifest(base: str, repo: str, reference: str, manifest: bytes, media_type: str) -> str:
    status, headers = _request(
        "PUT",
        f"{base}/v2/{repo}/manifests/{reference}",
        data=manifest,
        headers={"Content-Type": media_type},
    )
    assert status == 201, status
    digest = headers["Docker-Content-Digest"]
    assert digest == digest_of(manifest)
    return digest


@dataclass
class Pushed:
    """What a push sent: the manifest's digest and every blob's size."""

    repo: str
    tag: str
    digest: str
    manifest: bytes
    config: tuple[str, int]
    layers: list[tuple[str, int]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.config[1] + sum(size for _, size in self.layers)

    @property
    def blobs(self) -> dict[str, int]:
        return dict([self.config, *self.layers])


def push_image(
    base: str,
    repo: str,
    tag: str,
    *,
    layers: list[bytes] | None = None,
    created: str = "2024-01-01T00:00:00Z",
    label: str = "",
    docker: bool = False,
) -> Pushed:
    """Push a small image: a config blob, one or two gzip tarball layers, the manifest (OCI,
    or Docker image manifest v2 schema 2 with ``docker``)."""
    if layers is None:
        layers = [layer({"app/hello.txt": f"{repo}:{tag}\n".encode()})]
    diff_ids = [digest_of(gzip.decompress(blob)) for blob in layers]
    config = config_blob(created=created, diff_ids=diff_ids, label=label or f"{repo}:{tag}")
    config_digest = push_blob(base, repo, config)
    pushed_layers = [(push_blob(base, repo, blob), len(blob)) for blob in layers]
    manifest_type, config_type, layer_type = (
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
        if docker
        else (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
    )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": config_digest, "size": len(config)},
            "layers": [
                {"mediaType": layer_type, "digest": digest, "size": size}
                for digest, size in pushed_layers
            ],
        },
        indent=2,
    ).encode()
    digest = push_manifest(base, repo, tag, manifest, manifest_type)
    return Pushed(
        repo=repo,
        tag=tag,
        digest=digest,
        manifest=manifest,
        config=(config_digest, len(config)),
        layers=pushed_layers,
    )


def push_index(
    base: str, repo: str, tag: str, images: list[Pushed], *, docker: bool = False
) -> str:
    """An image index over images already pushed to ``repo`` (e.g. two platforms): OCI, or
    a Docker manifest list with ``docker`` (over images pushed with ``docker`` too)."""
    index_type, entry_type = (DOCKER_LIST, DOCKER_MANIFEST) if docker else (OCI_INDEX, OCI_MANIFEST)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": index_type,
            "manifests": [
                {
                    "mediaType": entry_type,
                    "digest": image.digest,
                    "size": len(image.manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for image, arch in zip(images, ("amd64", "arm64", "s390x"), strict=False)
            ],
        }
    ).encode()
    return push_manifest(base, repo, tag, index, index_type)


# ---- reading back over HTTP, without the client under test ------------------------------


def listed_tags(base: str, repo: str) -> list[str]:
    """The tags ``GET /v2/<repo>/tags/list`` names, sorted (an emptied repository: [])."""
    with urllib.request.urlopen(f"{base}/v2/{repo}/tags/list", timeout=10) as response:
        tags: list[str] = json.loads(response.read())["tags"] or []
    return sorted(tags)


def manifest_head(base: str, repo: str, reference: str, accept: str | None) -> tuple[int, str]:
    """``HEAD /v2/<repo>/manifests/<reference>`` with this Accept header: the status and the
    Docker-Content-Digest answered ("" with an error)."""
    headers = {"Accept": accept} if accept is not None else {}
    request = urllib.request.Request(
        f"{base}/v2/{repo}/manifests/{reference}", method="HEAD", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Docker-Content-Digest", "")
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, ""
