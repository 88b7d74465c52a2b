"""Per-request and per-process bounds: JSON nested beyond 32 levels answers 400 wherever a
request body is parsed (API, forge webhooks; Flux events in test_monitor), the service's
caches stay within their bounds over many writes, and a deployment's history comes in pages
of bounded cost that together list every version once."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gitops_bridge import jsonbody, service
from gitops_bridge import state as states
from gitops_bridge.cache import Bounded
from gitops_bridge.gitrepo import clone
from gitops_bridge.identity import User
from tests.apputil import create_group, deploy, make_app

ALICE = {"X-Forwarded-User": "alice"}
DEEP = b"[" * 10_000 + b"]" * 10_000
WRITES = 130  # more than twice service.PARSED_FLOOR: the parsed files must be cleaned up


def nested(depth: int) -> bytes:
    return b'{"name": "web", "image": "nginx", "env": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    create_group(client)
    return client


def test_deeply_nested_api_bodies_answer_400(client: FlaskClient) -> None:
    for path, method in [
        ("/api/v1/groups/team-a/deployments", "POST"),
        ("/api/v1/groups", "POST"),
        ("/api/v1/deployments/web-abc123", "PATCH"),
    ]:
        for body in (DEEP, nested(5_000), nested(33)):
            response = client.open(
                path, method=method, data=body, headers=ALICE, content_type="application/json"
            )
            assert response.status_code == 400, (path, response.json)
            assert response.json["message"] == "the body: JSON nests deeper than 32 levels"
    # nesting within the bound is read as usual (and refused by validation here: 422)
    ok = client.post(
        "/api/v1/groups/team-a/deployments",
        data=nested(30),
        headers=ALICE,
        content_type="application/json",
    )
    assert ok.status_code == 422, ok.json


def test_nesting_is_measured_outside_strings() -> None:
    assert jsonbody.depth(b'{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert jsonbody.loads(b'{"v": "' + b"[" * 100 + b'"}') == {"v": "[" * 100}
    with pytest.raises(Exception, match="nests deeper than 32"):
        jsonbody.loads(DEEP)


def test_deeply_nested_forge_webhooks_answer_400(tmp_path: Path) -> None:
    secret = "hook-secret"
    app = make_app(
        tmp_path / "data",
        review={
            "forge": "github",
            "forge_url": "http://127.0.0.1:9",
            "forge_repo": "platform/gitops",
            "forge_token": "t",
            "webhook_secret": secret,
        },
    )
    body = b'{"action": "closed", "pull_request": ' + DEEP + b"}"
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    response = app.test_client().post(
        "/api/v1/forge/events",
        data=body,
        headers={
            "X-GitHub-Event": "pull_request",
            "X-Hub-Signature-256": f"sha256={digest}",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 400, response.json
    assert "nests deeper than 32 levels" in response.json["message"]


def test_a_bounded_cache_drops_the_least_recently_used() -> None:
    cache: Bounded[str, str] = Bounded(max_items=3, max_bytes=100)
    for key in "abc":
        cache.put(key, key.upper(), size=30)
    assert cache.get("a") == "A"  # now the most recently used
    cache.put("d", "D", size=30)  # 120 bytes: "b" (least recently used) goes
    assert "b" not in cache and [k for k in "acd" if k in cache] == ["a", "c", "d"]
    cache.put("e", "E", size=10)  # four entries: "c" goes
    assert len(cache) == 3 and "c" not in cache and cache.size == 70
    cache.put("big", "X", size=101)  # larger than the whole cache: not kept
    assert "big" not in cache and cache.size == 70


def test_caches_stay_bounded_over_many_writes_and_history_comes_in_pages(
    client: FlaskClient, app: Flask
) -> None:
    svc: service.Service = app.extensions["gitops_bridge"]
    alice = User(name="alice", email="alice@example.com")
    name = deploy(client)
    for n in range(WRITES):
        env = [{"name": "N", "value": f"{n}-" + "x" * 512}]
        svc.update_deployment(alice, name, {"env": env})
        assert len(svc._states) <= service.STATES and len(svc.repo._snapshots) <= clone.SNAPSHOTS
        assert len(svc.reader._held) <= states.HELD_CACHE, n
    assert svc.state().deployments[name].spec.env[0].value.startswith(f"{WRITES - 1}-")

    first = client.get(f"/api/v1/deployments/{name}/history?diff=1", headers=ALICE)
    assert first.status_code == 200 and len(first.json) == 50
    assert all(v["diff"].startswith("diff --git ") for v in first.json)
    seen = [v["commit"] for v in first.json]
    link = first.headers["Link"]
    while link:
        url = link.split(">", 1)[0].removeprefix("<")
        assert "diff=1" in url and "before=" in url
        following = client.get(url, headers=ALICE)
        assert following.status_code == 200 and 1 <= len(following.json) <= 50
        seen += [v["commit"] for v in following.json]
        link = following.headers.get("Link", "")
    assert len(seen) == WRITES + 1 == len(set(seen))  # every update and the create, once
    assert (
        client.get(f"/api/v1/deployments/{name}/history", headers=ALICE).json[0]["commit"]
        == (seen[0])
    )
    # history read each version's YAML: kept by size, not one entry per version forever
    assert svc.repo._parsed.size <= clone.PARSED_BYTES and len(svc.repo._parsed) <= 4096

    # the History page too: the newest 50 (the first the current version), then older ones
    page = client.get(f"/deployments/{name}/history", headers=ALICE).get_data(as_text=True)
    assert page.count('data-testid="version"') == 50 and page.count("current version") == 1
    older = page.split('data-testid="older" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    page = client.get(older, headers=ALICE).get_data(as_text=True)
    assert page.count('data-testid="version"') == 50 and "current version" not in page
    assert f'data-commit="{seen[50]}"' in page and "Restore this version" in page

    too_many = client.get(f"/api/v1/deployments/{name}/history?limit=201", headers=ALICE)
    assert too_many.status_code == 422 and too_many.json["problems"][0]["field"] == "limit"
    empty = client.get(f"/api/v1/deployments/{name}/history?limit=", headers=ALICE)
    assert empty.status_code == 422 and empty.json["problems"][0]["field"] == "limit"
    unknown = client.get(f"/api/v1/deployments/{name}/history?before=zzzzzzz", headers=ALICE)
    assert unknown.status_code == 422 and unknown.json["problems"][0]["field"] == "before"
    stranger = client.get(f"/api/v1/deployments/{name}/history?before={'0' * 40}", headers=ALICE)
    assert stranger.status_code == 422
    assert json.loads(stranger.data)["problems"][0]["field"] == "before"
