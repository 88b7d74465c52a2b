"""Build the real app on a temporary data dir (embedded bare remote) for API tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from gitops_bridge import config, webapp
from gitops_bridge.webapp import forgery

TEAM_A: dict[str, Any] = {
    "name": "team-a",
    "members": ["alice", "bob"],
    "quota": {"cpu": "2", "memory": "4Gi", "storage": "10Gi", "deployments": 5},
}


def make_app(data_dir: Path, **overrides: Any) -> Flask:
    settings = config.load(data_dir=data_dir, **overrides)
    app = webapp.create_app(settings)
    app.config["TESTING"] = True
    return app


def session_token(client: FlaskClient, user: str) -> str:
    """The CSRF token a form of ``user`` would carry in ``client``'s session. For callers no
    page gives a form (someone in no group is told how to get access instead), so a test of
    their refusals reaches the check it means, not the missing token."""
    with client.session_transaction() as session:
        nonce = session.setdefault(forgery.NONCE, "test-nonce-" + user)
    with client.application.app_context():
        return forgery._token(user, nonce)


def as_user(name: str, groups: str = "") -> dict[str, str]:
    headers = {"X-Forwarded-User": name}
    if groups:
        headers["X-Forwarded-Groups"] = groups
    return headers


def web(name: str = "web", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "image": "registry:5000/team-a/web:1.0"}
    body.update(fields)
    return body


def create_group(client: FlaskClient, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post("/api/v1/groups", json=body or TEAM_A)
    assert response.status_code == 201, response.json
    data: dict[str, Any] = response.json  # type: ignore[assignment]
    return data


def deploy(client: FlaskClient, name: str = "web", **fields: Any) -> str:
    """Create a deployment in team-a as alice; its name ({app}-{id})."""
    response = client.post(
        "/api/v1/groups/team-a/deployments", json=web(name, **fields), headers=as_user("alice")
    )
    assert response.status_code == 201, response.json
    value: str = response.json["name"]
    return value
