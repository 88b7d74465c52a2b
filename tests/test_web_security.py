"""Pages and forms hold against a hostile page next door (tenant apps live on the platform's
own domain): CSRF tokens bound to the principal, `__Host-` cookies behind the proxy, the
Origin checked on every write, and a CSP with anti-framing headers on every answer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.apputil import TEAM_A, as_user, create_group, make_app
from tests.gitutil import head

PROXY = {"REMOTE_ADDR": "10.1.2.7"}
BRIDGE = "deploy.code-hub.com"  # the host browsers see
NEIGHBOUR = "https://evil-abc123.code-hub.com"  # a tenant app: same site, another origin


@pytest.fixture
def proxied(tmp_path: Path) -> Flask:
    app = make_app(tmp_path / "data", identity="proxy", trusted_proxies=["10.1.2.0/24"])
    create_group(client_as(app, "admin"), TEAM_A | {"members": ["alice", "mallory"]})
    return app


def client_as(app: Flask, user: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base.update(PROXY | {"HTTP_X_FORWARDED_USER": user})
    return client


def form_token(client: FlaskClient) -> str:
    page = client.get("/deployments/new").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no form on the page"
    return match.group(1)


def new_deployment(token: str, name: str = "sneaky") -> dict[str, str]:
    return {
        "csrf_token": token,
        "group": "team-a",
        "name": name,
        "image": "registry:5000/team-a/web:1.0",
        "replicas": "1",
        "port": "8080",
        "cpu": "100m",
        "memory": "128Mi",
    }


def test_a_token_works_only_for_the_principal_it_was_made_for(
    proxied: Flask, tmp_path: Path
) -> None:
    """Cookie tossing: mallory's session cookie and token in alice's browser act as nobody."""
    remote = tmp_path / "data" / "remote.git"
    mallory = client_as(proxied, "mallory")
    token = form_token(mallory)
    before = head(remote)
    # the same cookie jar (mallory's session), but the proxy says the browser is alice's
    tossed = mallory.post(
        "/deployments/new", data=new_deployment(token), headers={"X-Forwarded-User": "alice"}
    )
    assert tossed.status_code == 403, tossed.get_data(as_text=True)
    assert "did not come from this site" in tossed.get_data(as_text=True)
    assert head(remote) == before
    own = mallory.post("/deployments/new", data=new_deployment(token, "mine"))
    assert own.status_code == 302 and head(remote) != before


def cookies(response: TestResponse) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    found = {}
    for header in response.headers.getlist("Set-Cookie"):
        found[header.split("=", 1)[0]] = header
    return found


def test_behind_the_proxy_cookies_are_host_only_and_secure(proxied: Flask) -> None:
    response = client_as(proxied, "alice").get("/deployments/new")
    (name, header), *rest = cookies(response).items()
    assert not rest
    assert name.startswith("__Host-"), header
    attributes = [part.strip().lower() for part in header.split(";")[1:]]
    assert "secure" in attributes and "path=/" in attributes and "httponly" in attributes
    assert not [a for a in attributes if a.startswith("domain=")]


def test_dev_mode_over_plain_http_keeps_host_only_cookies(tmp_path: Path) -> None:
    """Browsers drop `__Host-`/Secure cookies on http://127.0.0.1; dev mode serves only
    loopback, and the token is bound to the principal either way."""
    response = make_app(tmp_path / "data").test_client().get("/deployments/new")
    (name, header), *rest = cookies(response).items()
    assert not rest and not name.startswith("__Host-")
    attributes = [part.strip().lower() for part in header.split(";")[1:]]
    assert "secure" not in attributes and "httponly" in attributes and "path=/" in attributes
    assert not [a for a in attributes if a.startswith("domain=")]


def test_writes_from_another_origin_are_refused(proxied: Flask, tmp_path: Path) -> None:
    remote = tmp_path / "data" / "remote.git"
    alice = client_as(proxied, "alice")
    token = form_token(alice)
    before = head(remote)
    form = alice.post("/deployments/new", data=new_deployment(token), headers={"Origin": NEIGHBOUR})
    assert form.status_code == 403 and "Origin" in form.get_data(as_text=True)
    api = alice.post(
        "/api/v1/groups/team-a/deployments",
        json={"name": "api", "image": "nginx"},
        headers={"Origin": NEIGHBOUR},
    )
    assert api.status_code == 403 and "Origin" in api.json["message"]
    opaque = alice.post("/deployments/new", data=new_deployment(token), headers={"Origin": "null"})
    assert opaque.status_code == 403
    assert head(remote) == before
    # the Origin names the Host the proxy passed on (the test client's: localhost) ...
    same = alice.post(
        "/deployments/new", data=new_deployment(token), headers={"Origin": "http://localhost"}
    )
    assert same.status_code == 302, same.get_data(as_text=True)
    # ... or the host the proxy names in X-Forwarded-Host
    relayed = alice.post(
        "/deployments/new",
        data=new_deployment(token, "relayed"),
        headers={"Origin": f"https://{BRIDGE}", "X-Forwarded-Host": BRIDGE},
    )
    assert relayed.status_code == 302, relayed.get_data(as_text=True)
    assert head(remote) != before


@pytest.mark.parametrize(
    "path", ["/deployments", "/api/v1/groups", "/api/v1/deployments/nope-zzzzzz", "/healthz"]
)
def test_every_answer_forbids_framing_and_sniffing(tmp_path: Path, path: str) -> None:
    response = make_app(tmp_path / "data").test_client().get(path, headers=as_user("admin"))
    policy = response.headers["Content-Security-Policy"]
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["default-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
