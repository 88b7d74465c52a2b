"""Publish the shipped chart to an OCI registry, where ``chart.source = "oci"`` pulls it from.

``push(url=..., chart_dir=..., helm=...)`` runs ``helm package`` into a temporary directory
and ``helm push <tgz> <base>``. helm push takes the repository *base*: it names the
repository after the chart and tags it with the chart's version, so
``oci://registry:5000/charts/generic-app`` is pushed as ``helm push ... oci://registry:5000/charts``
and lands at ``registry:5000/charts/generic-app:<version>``. ``target`` checks the URL
before anything runs; a URL whose last segment is not the chart's name is refused.

A re-run is idempotent: helm stamps each push with the time the archive was written, so
pushing the same chart again would make a new digest, and each OCIRepository would hand
every HelmRelease of every group a "new" chart to upgrade to. So the version in the
registry is pulled first: the same files push nothing, other files are refused (a chart
version is published once; raise it in Chart.yaml).

Credentials go to ``helm registry login --password-stdin`` with a registry config in the
temporary directory (never on a command line, never kept); without them helm uses the
caller's own ``helm registry login``. helm's messages come back in errors with the
password blanked out.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from gitops_bridge.errors import BridgeError, InvalidRequest, RegistryUnavailable, ToolMissing

TOOL_TIMEOUT = 120
OCI_SCHEME = "oci://"
# helm 4 reports the push on stderr: "Pushed: <host>/<repo>:<tag>" and "Digest: sha256:...".
PUSHED = re.compile(r"^Pushed:\s*(\S+)\s*$", re.MULTILINE)
DIGEST = re.compile(r"^Digest:\s*(sha256:[0-9a-f]{64})\s*$", re.MULTILINE)
# Failures where trying again later may help: the registry was not reachable or not well.
UNAVAILABLE = re.compile(
    r"connection refused|no such host|i/o timeout|timeout|connection reset|"
    r"server misbehaving|network is unreachable|\b50[0234]\b",
    re.IGNORECASE,
)
PLAIN_HTTP_HINT = "server gave HTTP response to HTTPS client"


class PushFailed(BridgeError):
    """helm could not package, log in or push; the message is helm's (retrying will not help)."""


@dataclass(frozen=True)
class Target:
    """Where a chart goes: ``base`` for helm push, ``host`` for helm registry login."""

    base: str  # oci://registry:5000/charts
    host: str  # registry:5000
    repository: str  # charts/generic-app


@dataclass(frozen=True)
class Pushed:
    reference: str  # oci://registry:5000/charts/generic-app:0.2.0
    digest: str  # sha256:... of the manifest
    changed: bool = True  # False: the registry had this version with these files already


def chart_meta(chart_dir: Path) -> tuple[str, str]:
    """(name, version) from ``<chart_dir>/Chart.yaml``."""
    path = chart_dir / "Chart.yaml"
    try:
        data: Any = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as exc:
        raise PushFailed(f"{path}: cannot read the chart: {exc}") from exc
    name = data.get("name") if isinstance(data, dict) else None
    version = data.get("version") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name or not version:
        raise PushFailed(f"{path}: must have a name and a version")
    return name, str(version)


def target(url: str, *, chart: str) -> Target:
    """The push target of ``oci://host[:port]/path/<chart>``; InvalidRequest otherwise."""
    example = f"e.g. oci://registry:5000/charts/{chart}"
    if not url.startswith(OCI_SCHEME):
        raise InvalidRequest.field("url", f"must start with {OCI_SCHEME}, got {url!r}; {example}")
    host, _, path = url[len(OCI_SCHEME) :].rstrip("/").partition("/")
    segments = path.split("/") if path else []
    if not host or not segments or "" in segments:
        raise InvalidRequest.field(
            "url", f"must be {OCI_SCHEME}<host>[:<port>]/<path>/{chart}, got {url!r}; {example}"
        )
    last = segments[-1]
    if last != chart:
        bare = re.split(r"[:@]", last, maxsplit=1)[0]
        why = (
            "must not carry a tag or digest (the chart's version is the tag)"
            if bare == chart
            else f"last path segment must be the chart's name {chart!r} "
            "(helm push names the repository after the chart)"
        )
        raise InvalidRequest.field("url", f"{why}, got {url!r}; {example}")
    base = OCI_SCHEME + "/".join([host, *segments[:-1]])
    return Target(base=base, host=host, repository="/".join(segments))


def push(
    *,
    url: str,
    chart_dir: Path,
    helm: str,
    plain_http: bool = False,
    username: str = "",
    password: str = "",
) -> Pushed:
    """Package ``chart_dir`` and push it to ``url`` (which ends in the chart's name).

    When the registry holds this version with the same files already, nothing is pushed
    (``changed`` False): a new push would give a new digest, and every OCIRepository would
    hand every HelmRelease a new chart. This version with other files is refused: a chart
    version is published once.

    InvalidRequest for a bad URL or half a credential (nothing runs then); PushFailed with
    helm's message when helm fails, RegistryUnavailable when the registry was unreachable.
    """
    name, version = chart_meta(chart_dir)
    where = target(url, chart=name)
    if bool(username) != bool(password):
        raise InvalidRequest.field(
            "password" if username else "username",
            "a username needs a password (on standard input) and a password a username",
        )
    secrets = [password] if password else []
    reference = f"{OCI_SCHEME}{where.host}/{where.repository}"
    with tempfile.TemporaryDirectory(prefix="gitops-bridge-chart-") as tmp:
        out = Path(tmp)
        _run([helm, "package", str(chart_dir), "--destination", str(out)], secrets=secrets)
        packages = sorted(out.glob("*.tgz"))
        if len(packages) != 1:
            raise PushFailed(f"helm package wrote {len(packages)} archives to {out}, expected 1")
        flags = ["--plain-http"] if plain_http else []
        if username:
            flags += ["--registry-config", str(out / "registry.json")]
            login = [helm, "registry", "login", where.host, "--username", username]
            _run([*login, "--password-stdin", *flags], secrets=secrets, stdin=password)
        current = out / "current"
        current.mkdir()
        pull = [helm, "pull", reference, "--version", version, "--destination", str(current)]
        pulled = _run([*pull, *flags], secrets=secrets, check=False)
        archives = sorted(current.glob("*.tgz"))
        if pulled.returncode == 0 and len(archives) == 1:
            digest = _digest(pulled, secrets=secrets)
            if _files(archives[0]) != _files(packages[0]):
                raise PushFailed(
                    f"{reference}:{version} is in the registry already with other files "
                    f"(digest {digest}); a chart version is published once: raise version in "
                    f"{chart_dir / 'Chart.yaml'}"
                )
            return Pushed(reference=f"{reference}:{version}", digest=digest, changed=False)
        pushed = _run([helm, "push", str(packages[0]), where.base, *flags], secrets=secrets)
    found = PUSHED.search(pushed.stdout + "\n" + pushed.stderr)
    if found is None:
        raise PushFailed(f"helm push reported no reference: {_output(pushed, secrets)}")
    return Pushed(reference=OCI_SCHEME + found.group(1), digest=_digest(pushed, secrets=secrets))


def _files(archive: Path) -> dict[str, bytes]:
    """Name -> content of every file in a chart archive (times and owners left out)."""
    with tarfile.open(archive, mode="r:gz") as tar:
        return {
            member.name: extracted.read()
            for member in tar.getmembers()
            if member.isfile() and (extracted := tar.extractfile(member)) is not None
        }


def _digest(proc: subprocess.CompletedProcess[str], *, secrets: list[str]) -> str:
    found = DIGEST.search(proc.stdout + "\n" + proc.stderr)
    if found is None:
        raise PushFailed(f"helm reported no digest: {_output(proc, secrets)}")
    return found.group(1)


def _run(
    cmd: list[str], *, secrets: list[str], stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run helm; a failure raises with helm's message (secrets blanked out) unless not check."""
    what = " ".join(cmd[1:3]) if cmd[1] == "registry" else cmd[1]
    try:
        proc = subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=TOOL_TIMEOUT,
        )
    except FileNotFoundError as exc:
        raise ToolMissing(f"{cmd[0]}: not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise RegistryUnavailable(f"helm {what}: timed out after {TOOL_TIMEOUT}s") from exc
    if proc.returncode == 0 or not check:
        return proc
    message = _clean(proc.stderr or proc.stdout, secrets).removeprefix("Error: ")
    message = message or f"exit code {proc.returncode}"
    if PLAIN_HTTP_HINT in message:
        message += " (the registry speaks plain HTTP: use --plain-http or chart.oci_insecure)"
    error = RegistryUnavailable if UNAVAILABLE.search(message) else PushFailed
    raise error(f"helm {what} failed: {message}")


def _output(proc: subprocess.CompletedProcess[str], secrets: list[str]) -> str:
    return _clean(proc.stdout + "\n" + proc.stderr, secrets)


def _clean(text: str, secrets: list[str]) -> str:
    """helm's output on one line, every secret replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return " ".join(text.split())
