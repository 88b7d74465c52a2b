"""Operations and peer endpoints answer only those they are for: the leader's reading to
peers holding a real secret, /metrics and /readyz to trusted networks, /healthz to anyone;
the shipped manifest trusts only the identity proxy and fences the port with a
NetworkPolicy."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from gitops_bridge import poller
from gitops_bridge.render import yamlio
from gitops_bridge.runtime import Runtime
from tests.apputil import make_app

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "repo-template" / "clusters" / "CLUSTER" / "gitops-bridge.yaml"
MARKER = "env-value-of-team-b-7c1d"
# what every installation without secret_key used to accept
PUBLIC_CONSTANT = hmac.new(b"gitops-bridge", b"gitops-bridge/reading", hashlib.sha256).hexdigest()


def with_reading(app: Flask) -> Runtime:
    """The app's runtime holding a reading (as the leader's poller would), with a marker."""
    rt: Runtime = app.extensions["gitops_bridge.runtime"]
    reader = poller.Poller(None)  # type: ignore[arg-type]  # never polls here
    reader.state.reading = poller.Reading(
        taken_at=1.0,
        helmreleases={("group-team-b", "web-abc123"): {"spec": {"values": {"env": MARKER}}}},
        deployments={},
        pods={},
        metrics={},
        kustomization=None,
        gitrepository=None,
        calls=1,
        duration=0.1,
        metrics_available=False,
    )
    rt.monitor.poller = reader
    return rt


def read(app: Flask, token: str, address: str = "127.0.0.1") -> Any:
    return app.test_client().get(
        "/internal/v1/reading",
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": address},
    )


def test_the_reading_needs_a_real_secret_not_a_public_constant(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data")  # no secret_key: the README's default
    rt = with_reading(app)
    refused = read(app, PUBLIC_CONSTANT)
    assert refused.status_code == 401 and MARKER not in refused.get_data(as_text=True)
    # the key generated into data_dir is a real secret; the peer token derives from it
    generated = (tmp_path / "data" / "secret_key").read_text().strip()
    token = rt.peer_token()
    assert token is not None and token != PUBLIC_CONSTANT
    assert token == hmac.new(generated.encode(), b"gitops-bridge/reading", "sha256").hexdigest()
    assert read(app, token).status_code == 200


def test_the_reading_is_refused_without_a_peer_secret(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", secret_key="shared")
    rt = with_reading(app)
    token = rt.peer_token()
    assert token is not None
    rt.secret = ""  # no secret at all: nothing may be derived, nothing is served
    assert rt.peer_token() is None
    for given in (token, PUBLIC_CONSTANT, ""):
        response = read(app, given)
        assert response.status_code == 404 and MARKER not in response.get_data(as_text=True)


def test_the_reading_answers_peers_only(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", secret_key="shared", peers=["10.42.0.0/16"])
    rt = with_reading(app)
    token = rt.peer_token()
    assert token is not None
    outsider = read(app, token, "10.9.9.9")  # the right token from outside the peers
    assert outsider.status_code == 403 and MARKER not in outsider.get_data(as_text=True)
    peer = read(app, token, "10.42.3.4")
    assert peer.status_code == 200 and MARKER in peer.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/metrics", "/readyz"])
def test_metrics_and_readiness_answer_trusted_networks_only(tmp_path: Path, path: str) -> None:
    app = make_app(
        tmp_path / "data",
        identity="proxy",
        trusted_proxies=["10.1.2.0/24"],
        peers=["10.42.0.0/16"],
    )
    client = app.test_client()

    def status(address: str) -> int:
        return client.get(path, environ_base={"REMOTE_ADDR": address}).status_code

    assert status("127.0.0.1") == 200 and status("10.42.0.9") == 200  # loopback, a peer
    assert status("10.1.2.7") == 403  # the proxy relays anyone's request: not by default
    assert status("192.0.2.1") == 403
    assert client.get("/healthz", environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 200
    # e.g. Prometheus: added to loopback and the peers, not instead of them
    scraper = make_app(tmp_path / "other", ops_networks=["192.0.2.0/28"]).test_client()
    for address, expected in (("192.0.2.1", 200), ("127.0.0.1", 200), ("192.0.2.99", 403)):
        assert scraper.get(path, environ_base={"REMOTE_ADDR": address}).status_code == expected


# ---- the shipped manifest ---------------------------------------------------------------


def manifest() -> list[dict[str, Any]]:
    return [d for d in yamlio.load_all(MANIFEST.read_text()) if d]


def bridge_env() -> dict[str, Any]:
    (deployment,) = [d for d in manifest() if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]} | {"_container": container}


def test_the_manifest_trusts_only_a_narrow_proxy_range() -> None:
    env = bridge_env()
    proxies = yamlio.load(env["GITOPS_BRIDGE_TRUSTED_PROXIES"]["value"])
    assert proxies, "no trusted proxy"
    for net in proxies:
        network = ipaddress.ip_network(net)
        assert network.prefixlen >= (24 if network.version == 4 else 120), net
    # readiness runs where /readyz answers without configuration: inside the pod
    probe = env["_container"]["readinessProbe"]
    assert "httpGet" not in probe and "127.0.0.1" in " ".join(probe["exec"]["command"])
    assert env["_container"]["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_manifest_fences_the_port_with_a_network_policy() -> None:
    policies = [d for d in manifest() if d["kind"] == "NetworkPolicy"]
    assert len(policies) == 1
    spec = policies[0]["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "gitops-bridge"}}
    assert spec["policyTypes"] == ["Ingress"]
    sources = []
    for rule in spec["ingress"]:
        assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
        assert rule["from"], "a rule without `from` admits everyone"
        for peer in rule["from"]:
            assert "ipBlock" not in peer and peer.get("podSelector"), peer
            sources.append(peer)
    selected = [(p.get("namespaceSelector"), p["podSelector"]) for p in sources]
    # the replicas themselves, for the leader's reading
    assert (None, {"matchLabels": {"app.kubernetes.io/name": "gitops-bridge"}}) in selected
    # the proxy: its namespace and pods, not the whole cluster
    assert any(ns is not None and ns.get("matchLabels") for ns, _ in selected)
