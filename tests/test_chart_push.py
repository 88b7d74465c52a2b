"""`gitops-bridge chart push`, as a real process with the real helm, publishes the shipped chart to
a real Docker registry as the OCI artifact an OCIRepository pulls; a re-run pushes nothing,
bad URLs push nothing, helm's errors come back, and the password is never printed."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from gitops_bridge import assets, chartpush
from tests.registryutil import OCI_MANIFEST, RegistryServer, digest_of, free_port, running_registry

CHART = "generic-app"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"  # the layerSelector rendered
PASSWORD = "pa55-w0rd-never-printed"


def htpasswd_file(path: Path, user: str, password: str) -> Path:
    with warnings.catch_warnings():  # stdlib crypt: deprecated, still the bcrypt we have
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    path.write_text(f"{user}:{hashed}\n")
    return path


def helm_env(home: Path, **settings: str) -> dict[str, str]:
    """A clean environment: helm's config and caches under ``home``, no bridge settings but
    the tools' location and these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITOPS_BRIDGE_", "HELM_"))}
    for key in ("GITOPS_BRIDGE_TOOLS", "GITOPS_BRIDGE_HELM_BIN"):
        if key in os.environ:
            env[key] = os.environ[key]
    for kind in ("CONFIG", "CACHE", "DATA"):
        env[f"HELM_{kind}_HOME"] = str(home / kind.lower())
    env.update(settings)
    return env


def chart_push(
    *args: str, env: dict[str, str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitops_bridge", "chart", "push", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_helm(helm: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [helm, *args, "--plain-http"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{cmd}: {result.stdout}{result.stderr}"
    return result


def get(url: str, accept: str = "application/json") -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return {k.lower(): v for k, v in response.headers.items()}, response.read()


def get_json(url: str, accept: str = "application/json") -> Any:
    return json.loads(get(url, accept)[1])


def chart_url(server: RegistryServer) -> str:
    return f"oci://127.0.0.1:{server.port}/charts/{CHART}"


def test_push_publishes_the_chart_as_the_oci_artifact_flux_pulls(
    registry_server: RegistryServer, helm: str, tmp_path: Path
) -> None:
    env = helm_env(tmp_path / "helm")
    version = assets.chart_version()
    result = chart_push("--url", chart_url(registry_server), "--plain-http", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"pushed {chart_url(registry_server)}:{version}"
    assert lines[1].startswith("digest sha256:") and len(lines) == 2
    digest = lines[1].removeprefix("digest ")

    # the registry's own API: the tag, the manifest helm pushed, its config and chart layer
    base = f"{registry_server.url}/v2/charts/{CHART}"
    assert version in get_json(f"{base}/tags/list")["tags"]
    headers, body = get(f"{base}/manifests/{version}", accept=OCI_MANIFEST)
    assert headers["content-type"] == OCI_MANIFEST
    assert headers["docker-content-digest"] == digest == digest_of(body)
    manifest = json.loads(body)
    assert manifest["config"]["mediaType"] == HELM_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [HELM_LAYER]
    config = get_json(f"{base}/blobs/{manifest['config']['digest']}")
    assert (config["name"], config["version"]) == (CHART, version)
    _, archive = get(f"{base}/blobs/{manifest['layers'][0]['digest']}", accept="*/*")
    assert digest_of(archive) == manifest["layers"][0]["digest"]
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        shipped = tar.extractfile(f"{CHART}/templates/deployment.yaml")
        assert shipped is not None
        assert shipped.read() == (assets.chart() / "templates" / "deployment.yaml").read_bytes()

    # and helm itself finds the chart at the reference the command printed
    reference = chart_url(registry_server)
    shown = run_helm(helm, "show", "chart", reference, "--version", version, env=env)
    meta = YAML(typ="safe").load(shown.stdout)
    assert (meta["name"], str(meta["version"])) == (CHART, version)
    (tmp_path / "pulled").mkdir()
    pulled = run_helm(
        helm,
        "pull",
        reference,
        "--version",
        version,
        "--destination",
        str(tmp_path / "pulled"),
        env=env,
    )
    assert f"Digest: {digest}" in pulled.stderr + pulled.stdout
    assert (tmp_path / "pulled" / f"{CHART}-{version}.tgz").read_bytes() == archive

    # a re-run pushes nothing: a new push would be a new digest, a "new" chart for every release
    again = chart_push("--url", chart_url(registry_server), "--plain-http", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout == f"unchanged {reference}:{version}\ndigest {digest}\n"
    assert get(f"{base}/manifests/{version}", accept=OCI_MANIFEST)[0]["docker-content-digest"] == (
        digest
    )


def test_the_same_files_push_nothing_and_other_files_under_the_same_version_are_refused(
    registry_server: RegistryServer, helm: str, tmp_path: Path
) -> None:
    url = chart_url(registry_server)
    first = chartpush.push(url=url, chart_dir=assets.chart(), helm=helm, plain_http=True)
    assert first.changed

    # the same files written at another time (a fresh clone): other archive bytes, same chart
    copy = tmp_path / CHART
    shutil.copytree(assets.chart(), copy)
    for path in copy.rglob("*"):
        os.utime(path, (978307200, 978307200))
    same = chartpush.push(url=url, chart_dir=copy, helm=helm, plain_http=True)
    assert same == chartpush.Pushed(reference=first.reference, digest=first.digest, changed=False)

    values = copy / "values.yaml"
    values.write_text(values.read_text() + "# changed without a new version\n")
    with pytest.raises(chartpush.PushFailed, match="in the registry already with other files"):
        chartpush.push(url=url, chart_dir=copy, helm=helm, plain_http=True)
    manifest = f"{registry_server.url}/v2/charts/{CHART}/manifests/{assets.chart_version()}"
    assert get(manifest, accept=OCI_MANIFEST)[0]["docker-content-digest"] == first.digest


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        ("/charts/other-app", "last path segment must be the chart's name 'generic-app'"),
        ("/charts", "last path segment must be the chart's name 'generic-app'"),
        (f"/charts/{CHART}:0.1.0", "must not carry a tag or digest"),
        ("", "must be oci://<host>[:<port>]/<path>/generic-app"),
    ],
)
def test_a_url_not_ending_in_the_chart_name_is_refused_before_any_push(
    registry_server: RegistryServer, tmp_path: Path, suffix: str, message: str
) -> None:
    url = f"oci://127.0.0.1:{registry_server.port}{suffix}"
    result = chart_push("--url", url, "--plain-http", env=helm_env(tmp_path / "helm"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert f"error: url: {message}" in result.stderr and repr(url) in result.stderr
    assert "e.g. oci://registry:5000/charts/generic-app" in result.stderr
    assert get_json(f"{registry_server.url}/v2/_catalog")["repositories"] == []


def test_a_url_of_another_scheme_is_refused(tmp_path: Path) -> None:
    url = f"https://127.0.0.1:5000/charts/{CHART}"
    result = chart_push("--url", url, env=helm_env(tmp_path / "helm"))
    assert result.returncode == 2 and "error: url: must start with oci://" in result.stderr


def test_settings_and_credentials_push_and_the_password_is_never_printed(tmp_path: Path) -> None:
    htpasswd = htpasswd_file(tmp_path / "htpasswd", "bridge", PASSWORD)
    with running_registry(tmp_path / "auth", htpasswd=htpasswd) as server:
        env = helm_env(
            tmp_path / "helm",
            GITOPS_BRIDGE_CHART__OCI_URL=chart_url(server),
            GITOPS_BRIDGE_CHART__OCI_INSECURE="true",  # plain HTTP from the settings
        )
        anonymous = chart_push(env=env)
        assert anonymous.returncode == 2, anonymous.stdout + anonymous.stderr
        assert "error: helm push failed:" in anonymous.stderr
        assert "basic credential not found" in anonymous.stderr  # helm's own words

        wrong = chart_push("--username", "bridge", "--password-stdin", env=env, stdin="nope\n")
        assert wrong.returncode == 2 and "error: helm registry login failed:" in wrong.stderr

        good = chart_push("--username", "bridge", "--password-stdin", env=env, stdin=PASSWORD)
        assert good.returncode == 0, good.stdout + good.stderr
        assert good.stdout.startswith(f"pushed {chart_url(server)}:{assets.chart_version()}\n")
        for result in (anonymous, wrong, good):
            assert PASSWORD not in result.stdout + result.stderr
        # the login went to a throwaway registry config: nothing left in helm's own
        assert not (tmp_path / "helm" / "config" / "registry" / "config.json").exists()

    half = chart_push("--username", "bridge", env=env)
    assert half.returncode == 2 and "error: password: a username needs a password" in half.stderr


def test_helms_error_comes_back_and_says_whether_retrying_helps(
    registry_server: RegistryServer, tmp_path: Path
) -> None:
    env = helm_env(tmp_path / "helm")
    https = chart_push("--url", chart_url(registry_server), env=env)  # plain HTTP registry
    assert https.returncode == 2, https.stdout + https.stderr
    assert "server gave HTTP response to HTTPS client" in https.stderr
    assert "use --plain-http or chart.oci_insecure" in https.stderr

    nobody = f"oci://127.0.0.1:{free_port()}/charts/{CHART}"
    refused = chart_push("--url", nobody, "--plain-http", env=env)
    assert refused.returncode == 3, refused.stdout + refused.stderr  # retryable
    assert "error: helm push failed:" in refused.stderr and "connection refused" in refused.stderr
