"""The JSON API keeps its OpenAPI description: /api/v1/openapi.json is valid OpenAPI 3.1,
describes exactly the app's /api/v1 routes with the rules models.py enforces, Schemathesis run
against the app (a real GitOps remote and a Flux-reconciled fake cluster, as a platform admin)
finds no 5xx and no answer off the description, and what it found stays fixed."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate
from schemathesis import engine
from schemathesis.engine import events
from schemathesis.openapi.checks import UseAfterFree

import gitops_bridge
from gitops_bridge import models, monitor, quantity
from gitops_bridge.webapp import apidoc
from tests import kubelet
from tests.apputil import as_user, make_app, web
from tests.fluxstandin import FluxStandIn
from tests.kubefake import FakeKube
from tests.registryutil import RegistryServer, push_image

ADMIN = as_user("admin")
PREFIX = "/api/v1"
EVENTS_TOKEN = "events-secret"
EXAMPLES = 20  # per operation and phase: the whole run stays within ~1 min on 2 cores


def _doc() -> dict[str, Any]:
    return apidoc.description()


def _schema(name: str) -> dict[str, Any]:
    value: dict[str, Any] = _doc()["components"]["schemas"][name]
    return value


# ---- the description itself ----------------------------------------------------------------


SCHEMA_KEYWORDS = {
    "$ref", "type", "enum", "const", "properties", "additionalProperties", "required",
    "items", "allOf", "anyOf", "oneOf", "not", "unevaluatedProperties", "minimum", "maximum",
    "exclusiveMinimum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
    "description", "default", "example",
}  # fmt: skip


def _schemas(value: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Schema Object of the description, with where it is."""
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{where}/{key}"
            if key == "schema" or where.endswith(("/schemas", "/properties")):
                yield from _schema_tree(item, here)
            elif key not in ("examples", "example"):
                yield from _schemas(item, here)


def _schema_tree(schema: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(schema, dict):
        return
    yield where, schema
    for key in ("items", "not", "additionalProperties", "unevaluatedProperties"):
        yield from _schema_tree(schema.get(key), f"{where}/{key}")
    for key in ("allOf", "anyOf", "oneOf"):
        for i, item in enumerate(schema.get(key, ())):
            yield from _schema_tree(item, f"{where}/{key}/{i}")
    for name, item in schema.get("properties", {}).items():
        yield from _schema_tree(item, f"{where}/properties/{name}")


def test_the_description_is_valid_openapi_and_served_without_identity(tmp_path: Path) -> None:
    validate(_doc())  # OpenAPI 3.1 with JSON Schema 2020-12 schemas
    # and no keyword JSON Schema would ignore (a typo, or YAML reading "a, b" in {...})
    unknown = {where: set(s) - SCHEMA_KEYWORDS for where, s in _schemas(_doc(), "")}
    assert {where: keys for where, keys in unknown.items() if keys} == {}
    app = make_app(tmp_path / "data", identity="proxy")
    response = app.test_client().get(f"{PREFIX}/openapi.json")  # no X-Forwarded-User
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.json == _doc()
    assert _doc()["servers"] == [{"url": PREFIX}]
    assert _doc()["info"]["version"] == gitops_bridge.__version__


def _template(path: str) -> str:
    """``/groups/<group>`` and ``/groups/{group}`` alike: ``/groups/{}``."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)


def test_the_description_names_every_api_route_and_nothing_else(app: Flask) -> None:
    described = {
        (_template(PREFIX + path), method.upper()): operation["operationId"]
        for path, item in _doc()["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    }
    routed = {
        (_template(rule.rule), method): rule.endpoint.removeprefix("api.")
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(PREFIX + "/")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert sorted(set(routed) - set(described)) == [], "routes the description lacks"
    assert sorted(set(described) - set(routed)) == [], "described, but not routed"
    assert described == routed  # operationId = the Flask endpoint, for people and tests


def test_the_description_states_the_rules_models_enforce() -> None:
    def strip(pattern: str) -> str:  # named groups are Python's, not ECMA-262's
        return re.sub(r"\(\?P<\w+>", "(?:", pattern)

    image = _schema("Image")["pattern"]
    assert image == strip(models.IMAGE_REFERENCE.pattern)
    assert _schema("Quantity")["anyOf"][0]["pattern"] == strip(quantity._PATTERN.pattern)
    env = _schema("EnvVar")["properties"]
    assert env["name"]["pattern"] == models.ENV_NAME.pattern
    assert env["value"]["maxLength"] == models.DEFAULT_LIMITS.max_env_value_bytes
    assert _schema("Env")["maxItems"] == models.DEFAULT_LIMITS.max_env
    assert _schema("GroupName")["pattern"] == models.DNS_LABEL.pattern
    assert _schema("GroupName")["maxLength"] == models.GROUP_NAME_MAX
    assert _schema("UserName")["pattern"] == models.USER_NAME.pattern
    app_name = _schema("DeploymentCreate")["properties"]["name"]
    assert (app_name["pattern"], app_name["maxLength"]) == (
        models.DNS_LABEL.pattern,
        models.APP_NAME_MAX,
    )
    assert _schema("Replicas")["maximum"] == models.DEFAULT_LIMITS.max_replicas
    # the value pattern refuses exactly the characters models refuses (and NUL)
    value = re.compile(env["value"]["pattern"])
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        refused = char == "\x00" or models._CONTROL.fullmatch(char) is not None
        assert (value.fullmatch(char) is None) == refused, hex(code)


def test_the_description_states_the_start_health_and_autoscaling_rules() -> None:
    argv = _schema("Argv")
    assert (argv["maxItems"], argv["items"]["maxLength"]) == (
        models.MAX_ARGS,
        models.MAX_ARG_LENGTH,
    )
    path = _schema("Health")["properties"]["path"]
    assert (path["pattern"], path["maxLength"]) == (
        models.HEALTH_PATH.pattern,
        models.HEALTH_PATH_MAX,
    )
    scaling = _schema("Autoscaling")["properties"]
    high = models.DEFAULT_LIMITS.max_replicas
    assert (scaling["min"]["maximum"], scaling["max"]["maximum"]) == (high, high)
    assert scaling["cpu"]["maximum"] == models.CPU_TARGET_MAX
    for name in ("DeploymentCreate", "DeploymentPatch", "Deployment"):
        assert {"health", "command", "args", "autoscaling"} <= set(_schema(name)["properties"])
    # a word's pattern refuses exactly the characters models refuses
    word = re.compile(argv["items"]["pattern"])
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        refused = models._ARG_CONTROL.fullmatch(char) is not None
        assert (word.fullmatch(char) is None) == refused, hex(code)


# ---- Schemathesis against the app ----------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        yield server


@dataclass
class World:
    """The app behind an identity proxy, connected to a (fake) cluster that Flux reconciled:
    two groups (one in review mode), running and deleted deployments, a change request."""

    app: Flask
    groups: list[str]
    deployments: list[str]
    changes: list[str]
    commits: list[str]


def _post(client: FlaskClient, path: str, body: dict[str, Any], user: str) -> dict[str, Any]:
    response = client.post(path, json=body, headers=as_user(user))
    assert response.status_code in (201, 202), response.json
    data: dict[str, Any] = response.json  # type: ignore[assignment]
    return data


@pytest.fixture
def world(
    tmp_path: Path, fake: FakeKube, helm: str, kubectl: str, registry_server: RegistryServer
) -> World:
    kubernetes = {
        "mode": "kubeconfig",
        "kubeconfig": str(fake.kubeconfig(tmp_path / "kubeconfig")),
        "events_token": EVENTS_TOKEN,  # Flux events are taken (when signed)
    }
    for tag in ("1.0", "1.1", "1.2"):  # 1.0 runs; the others may go
        push_image(registry_server.url, "team-a/web", tag, created=f"2024-0{tag[-1]}-02T00:00:00Z")
    registry = {"url": registry_server.url, "host": "registry:5000", "cache_seconds": 0}
    app = make_app(tmp_path / "data", identity="proxy", kubernetes=kubernetes, registry=registry)
    client = app.test_client()
    quota = {"cpu": "200", "memory": "400Gi", "deployments": 1000}
    for name, review in (("team-a", "direct"), ("team-r", "pull-request")):
        body = {"name": name, "members": ["alice", "rita"], "quota": quota, "review": review}
        _post(client, f"{PREFIX}/groups", body, "admin")
    for group in ("demo", "team-a", "team-r"):  # provisioned out of band
        namespace = f"group-{group}"
        fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        fake.apply(kubelet.frp_token(namespace))
    running = [
        _post(client, f"{PREFIX}/groups/team-a/deployments", web(name, **fields), "alice")["name"]
        for name, fields in (
            ("web", {"replicas": 2, "env": [{"name": "GREETING", "value": "hi"}]}),
            ("api", {"expose": True}),
            ("old", {}),
        )
    ]
    for volume in ("data", "cache"):
        body = {"name": volume, "size": "1Gi"}
        _post(client, f"{PREFIX}/groups/team-a/volumes", body, "alice")
    deleted = running.pop()
    assert client.delete(f"{PREFIX}/deployments/{deleted}", headers=ADMIN).status_code == 200
    FluxStandIn(
        fake, remote=tmp_path / "data" / "remote.git", helm=helm, kubectl=kubectl
    ).reconcile()
    runtime = app.extensions["gitops_bridge.runtime"]
    runtime.monitor.poller.run_once()
    proposed = _post(client, f"{PREFIX}/groups/team-r/deployments", web("svc"), "rita")
    commits = [
        version["commit"]
        for name in (*running, deleted)
        for version in client.get(f"{PREFIX}/deployments/{name}/history", headers=ADMIN).json
    ]
    app.wsgi_app = _through_the_proxy(app.wsgi_app)  # type: ignore[method-assign]
    return World(
        app=app,
        groups=["team-a", "team-r", "demo"],
        deployments=[*running, deleted, proposed["name"]],
        changes=[proposed["change"]["id"]],
        commits=commits,
    )


def _through_the_proxy(wsgi: Any) -> Any:
    """Calls from loopback, the trusted proxy's address (werkzeug's Client sets none); a
    Flux event with an ``X-Signature`` signed as its namespace's Provider would; a
    followed log as events, not text: text would stream until the pod goes, events are read
    for ``request-timeout`` and closed."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        environ = environ | {"REMOTE_ADDR": "127.0.0.1"}
        if "HTTP_X_SIGNATURE" in environ and environ.get("PATH_INFO", "").endswith("/flux/events"):
            environ["HTTP_X_SIGNATURE"] = _signed(environ)
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        following = query.get("follow", [""])[0] in ("1", "true", "yes")
        if environ.get("PATH_INFO", "").endswith("/logs") and following:
            environ["HTTP_ACCEPT"] = "text/event-stream"
        return wsgi(environ, start_response)

    return app


def _signed(environ: dict[str, Any]) -> str:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.input"] = io.BytesIO(body)
    try:
        namespace = str(json.loads(body)["involvedObject"]["namespace"])
    except (ValueError, KeyError, TypeError):
        namespace = ""
    key = monitor.events_key(EVENTS_TOKEN, namespace).encode()
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def _config(world: World) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            # one seed, so a CI run is reproducible; set GITOPS_BRIDGE_FUZZ_SEED to explore others
            "seed": int(os.environ.get("GITOPS_BRIDGE_FUZZ_SEED", "20261127")),
            "generation": {"max-examples": EXAMPLES, "database": "none"},
            "phases": {"stateful": {"max-steps": 20}},
            "request-timeout": 2,  # an event stream is read this long
            # the platform admin, as the proxy asserts it
            "auth": {"openapi": {"forwardedUser": {"api_key": "admin"}}},
            # path parameters and commits that exist, half of the time
            "dictionaries": {
                "groups": {"values": world.groups},
                "deployments": {"values": world.deployments},
                "changes": {"values": world.changes},
                "volumes": {"values": ["data", "cache"]},
                "repositories": {"values": ["web"]},
                "tags": {"values": ["1.1", "1.2"]},
                "commits": {"values": world.commits},
            },
            "parameters": {
                "path.group": {"dictionary": "groups", "probability": 0.5},
                "path.name": {"dictionary": "deployments", "probability": 0.5},
                "path.change": {"dictionary": "changes", "probability": 0.5},
                "path.volume": {"dictionary": "volumes", "probability": 0.5},
                "path.repository": {"dictionary": "repositories", "probability": 0.5},
                "path.tag": {"dictionary": "tags", "probability": 0.5},
                "body.commit": {"dictionary": "commits", "probability": 0.5},
                "query.before": {"dictionary": "commits", "probability": 0.3},
            },
            "checks": {
                # identity is the proxy's word: any user name it asserts is someone
                "ignored_auth": {"enabled": False},
                # quantity ranges and the group's quota are beyond JSON Schema: 422
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
                },
            },
        }
    )


@dataclass
class Finding:
    operation: str
    check: str
    title: str
    message: str
    request: str
    answer: str


def _run(schema: Any) -> tuple[list[Finding], list[str], dict[str, dict[int, int]]]:
    """Every phase (examples, coverage, fuzzing, stateful): what failed, what could not run,
    and the statuses each operation answered."""
    findings: dict[tuple[str, str, str], Finding] = {}
    errors: list[str] = []
    statuses: dict[str, dict[int, int]] = {}
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.info.message}")
        if isinstance(event, events.FatalError):
            errors.append(repr(event.exception))
        if not isinstance(event, events.ScenarioFinished):
            continue
        recorder = event.recorder
        for case_id, interaction in recorder.interactions.items():
            case = recorder.cases[case_id].value
            if (
                interaction.response is not None
                and case.method.upper() == case.operation.method.upper()
            ):
                counts = statuses.setdefault(case.operation.label, {})
                code = interaction.response.status_code
                counts[code] = counts.get(code, 0) + 1
        for case_id, checks in recorder.checks.items():
            for check in checks:
                info = check.failure_info
                if check.status != engine.Status.FAILURE or info is None:
                    continue
                failure = info.failure
                key = (recorder.label, check.name, failure.title)
                if key in findings:
                    continue
                case = recorder.cases[case_id].value
                interaction = recorder.interactions.get(case_id)
                response = interaction.response if interaction is not None else None
                answer = (
                    "" if response is None else f"{response.status_code} {response.content[:300]!r}"
                )
                findings[key] = Finding(
                    operation=recorder.label,
                    check=check.name,
                    title=failure.title,
                    message=str(failure.message)[:500],
                    request=case.as_curl_command()[:600],
                    answer=answer,
                )
    return list(findings.values()), errors, statuses


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_description(
    world: World,
) -> None:
    config = _config(world)
    schema = schemathesis.openapi.from_wsgi(f"{PREFIX}/openapi.json", world.app, config=config)

    client = world.app.test_client()

    @schema.hook
    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        """Use-after-free is not: the history of a deleted deployment (it is kept for restore),
        a deployment whose DELETE answered 202 (review mode: a change request, and the
        deployment is there until it is approved), nor one restored after its delete (the
        stateful phase follows the restore link between the DELETE and the GET)."""
        if not isinstance(failure, UseAfterFree) or case.operation.path.endswith("/history"):
            return not isinstance(failure, UseAfterFree)
        name = (case.path_parameters or {}).get("name")
        changes = client.get(f"{PREFIX}/changes", headers=ADMIN).json
        if any(c["deployment"] == name and c["action"] == "delete" for c in changes):
            return False
        versions = client.get(f"{PREFIX}/deployments/{name}/history?limit=1", headers=ADMIN)
        newest = versions.json[0] if versions.status_code == 200 and versions.json else {}
        return newest.get("action") != "restore"

    findings, errors, statuses = _run(schema)
    report = "\n".join(
        f"{f.operation} [{f.check}] {f.title}: {f.message}\n  {f.request}\n  -> {f.answer}"
        for f in findings
    )
    assert not findings, f"seed {config.seed}:\n{report}"
    assert not errors, errors
    operations = {
        f"{method.upper()} {path}"
        for path, item in _doc()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete") and path != "/openapi.json"
    }  # the description itself: Schemathesis does not call where it read it (tested above)
    assert operations <= set(statuses), sorted(operations - set(statuses))
    answered = {label for label, counts in statuses.items() if any(200 <= c < 300 for c in counts)}
    assert len(answered) >= len(operations) - 3, statuses  # not just refusals
    assert all(code < 500 for counts in statuses.values() for code in counts), statuses


# ---- what Schemathesis found ----------------------------------------------------------------


def test_a_method_a_route_does_not_take_is_405_with_allow_even_unidentified(
    tmp_path: Path,
) -> None:
    client = make_app(tmp_path / "data", identity="proxy").test_client()
    for method, path, allowed in (
        ("PUT", f"{PREFIX}/groups", {"GET", "HEAD", "OPTIONS", "POST"}),  # was 401 (no user)
        ("TRACE", f"{PREFIX}/forge/events", {"OPTIONS", "POST"}),  # was 401
        ("GET", f"{PREFIX}/changes/team-a/web-a1b2c3/create-d4e5f6/approve", {"OPTIONS", "POST"}),
    ):
        response = client.open(path, method=method)
        assert response.status_code == 405, (method, path, response.json)
        assert set(response.headers["Allow"].split(", ")) == allowed  # was missing
        assert response.json["error"] == "Method Not Allowed"
    # a change id never ends in /approve or /close: OPTIONS offered GET there (was 404)
    allow = client.options(f"{PREFIX}/changes/a/b/c-1/close", headers=ADMIN).headers["Allow"]
    assert "GET" not in allow


def test_the_log_of_a_container_a_pod_lacks_is_404_not_503(world: World) -> None:
    client = world.app.test_client()
    web_name = world.deployments[0]  # not exposed: its pods have no frpc container
    response = client.get(f"{PREFIX}/deployments/{web_name}/logs?container=frpc", headers=ADMIN)
    assert response.status_code == 404, response.json  # was 503 ClusterUnavailable, retryable
    assert "not exposed" in response.json["message"]
    exposed = world.deployments[1]
    response = client.get(f"{PREFIX}/deployments/{exposed}/logs?container=frpc", headers=ADMIN)
    assert response.status_code == 200 and response.mimetype == "text/plain"


def test_a_signed_flux_event_with_malformed_metadata_is_400_not_500(tmp_path: Path) -> None:
    kubernetes = {"mode": "none", "events_token": EVENTS_TOKEN}
    client = make_app(tmp_path / "data", kubernetes=kubernetes).test_client()
    involved = {"kind": "HelmRelease", "namespace": "group-team-a", "name": "web-a1b2c3"}
    for metadata, status in (([1], 400), ("x", 400), (False, 400), (None, 202), ({}, 200)):
        body = json.dumps({"involvedObject": involved, "metadata": metadata}).encode()
        environ = {"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        headers = {"X-Signature": _signed(environ), "Content-Type": "application/json"}
        response = client.post(f"{PREFIX}/flux/events", data=body, headers=headers)
        assert response.status_code == status, (metadata, response.json)  # was 500, or 202
