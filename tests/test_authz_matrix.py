"""Every route of the app x every kind of caller: the status each gets, that nothing refused
writes anything, and that no answer carries data of a group the caller is not in."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.apputil import make_app, session_token
from tests.gitutil import git

PROXY = "10.1.2.7"
ELSEWHERE = "203.0.113.9"  # API tokens work from anywhere; nothing else does from here
MARK_A = "MARK-A-3f9e1c"  # env values: found in a body = the group's data leaked
MARK_B = "MARK-B-71d0aa"
QUOTA = {"cpu": "64", "memory": "128Gi", "storage": "10Gi", "deployments": 100}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()  # as `gitops-bridge token new` does


@dataclass(frozen=True)
class Principal:
    user: str = ""  # X-Forwarded-User through the proxy
    groups: str = ""  # X-Forwarded-Groups
    token: str = ""  # Authorization: Bearer, from outside the proxy
    sees: frozenset[str] = frozenset()  # the groups whose data it may see


PRINCIPALS = {
    "anonymous": Principal(),
    "non-member": Principal(user="mallory"),
    "member": Principal(user="alice", sees=frozenset({"team-a"})),
    "group admin": Principal(user="gina", sees=frozenset({"team-a"})),
    "platform admin": Principal(user="root", sees=frozenset({"team-a", "team-b"})),
    "platform admin by group": Principal(
        user="pat", groups="Platform-Admins", sees=frozenset({"team-a", "team-b"})
    ),
    "scoped token": Principal(token="gb_ci", sees=frozenset({"team-a"})),
    "token named like a user": Principal(token="gb_alice", sees=frozenset({"team-b"})),
    "token named like an admin": Principal(token="gb_root"),
}
TOKENS = {
    "ci": {"sha256": digest("gb_ci"), "groups": ["team-a"]},
    "alice": {"sha256": digest("gb_alice"), "groups": ["team-b"]},  # alice is in team-a
    "root": {"sha256": digest("gb_root")},  # root is a platform admin; this token is not
}

# ---- expectations ------------------------------------------------------------------------

Expect = dict[str, int]
PEOPLE = ("non-member", "member", "group admin", "platform admin", "platform admin by group")
ADMINS = ("platform admin", "platform admin by group")


def everyone(status: int) -> Expect:
    """Routes without identity: the same answer for every caller."""
    return dict.fromkeys(PRINCIPALS, status)


def signed_in(ok: int, *, ui: bool) -> Expect:
    """Any identified caller; pages are for people only (tokens are API identities)."""
    tokens = 401 if ui else ok
    return {"anonymous": 401, **dict.fromkeys(PEOPLE, ok)} | _tokens(tokens, tokens, tokens)


def members(ok: int, *, ui: bool, hidden: int = 404) -> Expect:
    """team-a's objects: its members and platform admins; hidden (404) from everyone else."""
    return {
        "anonymous": 401,
        "non-member": hidden,
        "member": ok,
        "group admin": ok,
        **dict.fromkeys(ADMINS, ok),
    } | (_tokens(401, 401, 401) if ui else _tokens(ok, hidden, hidden))


def platform(ok: int, *, ui: bool) -> Expect:
    """Platform admin actions: 403 for the rest (answered before any lookup: no hint)."""
    refused = {"anonymous": 401, **dict.fromkeys(PEOPLE, 403), **dict.fromkeys(ADMINS, ok)}
    return refused | (_tokens(401, 401, 401) if ui else _tokens(403, 403, 403))


def group_admins(ok: int, *, ui: bool) -> Expect:
    """Approving under `approvers = admins`: a member without the right gets 403."""
    return members(ok, ui=ui) | {"member": 403} | ({} if ui else {"scoped token": 403})


def _tokens(scoped: int, like_user: int, like_admin: int) -> Expect:
    return {
        "scoped token": scoped,
        "token named like a user": like_user,
        "token named like an admin": like_admin,
    }


# ---- the world: team-a (review mode) and team-b, each with a deployment -------------------


@dataclass
class World:
    app: Flask
    remote: Path
    web: str  # team-a's deployment
    secret: str  # team-b's deployment
    created: str  # the commit that created web (to restore its version of)
    port_commit: str  # a commit of web that changed only its port (to revert)
    standing: str  # an open change request of team-a that no refused call may decide
    secrets: dict[str, set[str]] = field(default_factory=dict)  # group -> what must not leak
    clients: dict[str, FlaskClient] = field(default_factory=dict)
    csrf: dict[str, str] = field(default_factory=dict)
    proposals: int = 0

    def call(self, who: str, method: str, path: str, **kwargs: Any) -> Any:
        principal = PRINCIPALS[who]
        client = self.clients.setdefault(who, self.app.test_client())
        headers: dict[str, str] = {}
        address = PROXY
        if principal.token:
            headers["Authorization"] = f"Bearer {principal.token}"
            address = ELSEWHERE
        if principal.user:
            headers["X-Forwarded-User"] = principal.user
        if principal.groups:
            headers["X-Forwarded-Groups"] = principal.groups
        return client.open(
            path, method=method, headers=headers, environ_base={"REMOTE_ADDR": address}, **kwargs
        )

    def form_token(self, who: str) -> str:
        """The CSRF token of this caller's own session (empty for those without pages).

        Someone in no group gets no form anywhere (the pages say how to get access), so the
        token their session would carry is made here, as a form of theirs would have it: the
        refusals checked are then the service's, not the missing token's."""
        if who not in self.csrf:
            page = self.call(who, "GET", "/deployments/new").get_data(as_text=True)
            match = re.search(r'name="csrf_token" value="([^"]+)"', page)
            self.csrf[who] = match.group(1) if match else ""
            user = PRINCIPALS[who].user
            if not match and user and 'data-testid="no-access"' in page:
                self.csrf[who] = session_token(self.clients[who], user)
        return self.csrf[who]

    def propose(self) -> str:
        """A new change request of team-a by carl (a member who is none of the callers)."""
        self.proposals += 1
        image = f"registry:5000/team-a/web:1.{self.proposals}"
        response = self.app.test_client().patch(
            f"/api/v1/deployments/{self.web}",
            json={"image": image},
            headers={"X-Forwarded-User": "carl"},
            environ_base={"REMOTE_ADDR": PROXY},
        )
        assert response.status_code == 202, response.json
        change: str = response.json["change"]["id"]
        return change


def _as(app: Flask, user: str, method: str, path: str, body: Any) -> Any:
    response = app.test_client().open(
        path,
        method=method,
        json=body,
        headers={"X-Forwarded-User": user},
        environ_base={"REMOTE_ADDR": PROXY},
    )
    assert response.status_code < 300, (path, response.json)
    return response.json


@pytest.fixture
def world(tmp_path: Path) -> World:
    app = make_app(
        tmp_path / "data",
        identity="proxy",
        trusted_proxies=["10.1.2.0/24"],
        admins=["root"],
        api_tokens=TOKENS,
        demo_group=False,
        review={"approvers": "admins"},
    )
    members_a = ["alice", "gina", "carl"]
    _as(app, "root", "POST", "/api/v1/groups", {
        "name": "team-a", "members": members_a, "admins": ["gina"], "quota": QUOTA
    })  # fmt: skip
    _as(app, "root", "POST", "/api/v1/groups", {
        "name": "team-b", "members": ["bob"], "quota": QUOTA
    })  # fmt: skip
    env_a = [{"name": "TOKEN", "value": MARK_A}]
    created = _as(app, "alice", "POST", "/api/v1/groups/team-a/deployments", {
        "name": "web", "image": "registry:5000/team-a/web:1.0", "env": env_a
    })  # fmt: skip
    web = created["name"]
    port = _as(app, "alice", "PATCH", f"/api/v1/deployments/{web}", {"port": 8081})["commit"]
    env_b = [{"name": "TOKEN", "value": MARK_B}]
    secret = _as(app, "bob", "POST", "/api/v1/groups/team-b/deployments", {
        "name": "secret", "image": "registry:5000/team-b/secret:1.0", "env": env_b
    })["name"]  # fmt: skip
    _as(app, "alice", "POST", "/api/v1/groups/team-a/volumes", {"name": "data", "size": "1Gi"})
    # one deleted deployment a group (Recently deleted): only the group's members see it
    gone = _as(app, "alice", "POST", "/api/v1/groups/team-a/deployments", {
        "name": "gone", "image": "registry:5000/team-a/gone:1.0"
    })["name"]  # fmt: skip
    lost = _as(app, "bob", "POST", "/api/v1/groups/team-b/deployments", {
        "name": "lost", "image": "registry:5000/team-b/lost:1.0"
    })["name"]  # fmt: skip
    _as(app, "alice", "DELETE", f"/api/v1/deployments/{gone}", None)
    _as(app, "bob", "DELETE", f"/api/v1/deployments/{lost}", None)
    _as(app, "root", "PATCH", "/api/v1/groups/team-a", {"review": "pull-request"})
    world = World(
        app=app,
        remote=tmp_path / "data" / "remote.git",
        web=web,
        secret=secret,
        created=created["commit"],
        port_commit=port,
        standing="",
    )
    world.standing = world.propose()
    world.secrets = {
        "team-a": {MARK_A, "team-a", web, "gina", "carl", gone},
        "team-b": {MARK_B, "team-b", secret, "bob", lost},
    }
    return world


# ---- the matrix: one entry per route ------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    method: str
    path: str  # {web} {change} {commit} {created} {group} are filled in from the world
    expect: Expect
    json: Any = None  # API body
    form: dict[str, str] | None = None  # page form (the caller's CSRF token is added)
    fresh_change: bool = False  # a success consumes the change: propose one per call
    document: bool = False  # a file shipped with the bridge (its examples are no one's data)


DEPLOYMENT_FORM = {
    "group": "team-a",
    "image": "registry:5000/team-a/web:2.0",
    "replicas": "1",
    "port": "8080",
    "cpu": "100m",
    "memory": "128Mi",
}
GROUP_FORM = {
    "members": "alice, gina, carl",
    "admins": "gina",
    "cpu": "64",
    "memory": "128Gi",
    "storage": "10Gi",
    "deployments": "100",
    "review": "pull-request",
}
NEW_GROUP = {"name": "{group}", "members": ["zed"], "quota": QUOTA}
WEB = "/deployments/{web}"
API = "/api/v1"

MATRIX: dict[str, list[Entry]] = {
    # operations: /healthz for liveness from anywhere; the rest only from trusted networks
    "ops.healthz": [Entry("GET", "/healthz", everyone(200))],
    "ops.readyz": [Entry("GET", "/readyz", everyone(403))],
    "ops.metrics_text": [Entry("GET", "/metrics", everyone(403))],
    "ops.reading": [Entry("GET", "/internal/v1/reading", everyone(403))],
    "static": [Entry("GET", "/static/app.css", everyone(200), document=True)],
    # signed webhooks: not configured here, so there is nothing to deliver to
    "api.flux_event": [Entry("POST", f"{API}/flux/events", everyone(404), json={})],
    "api.forge_event": [Entry("POST", f"{API}/forge/events", everyone(404), json={})],
    # the API's OpenAPI description: public
    "api.openapi": [Entry("GET", f"{API}/openapi.json", everyone(200), document=True)],
    # groups
    "api.list_groups": [Entry("GET", f"{API}/groups", signed_in(200, ui=False))],
    "api.create_group": [
        Entry("POST", f"{API}/groups", platform(201, ui=False), json=NEW_GROUP),
    ],
    "api.get_group": [Entry("GET", f"{API}/groups/team-a", members(200, ui=False))],
    "api.list_problems": [
        Entry("GET", f"{API}/problems", signed_in(200, ui=False)),
        Entry("GET", f"{API}/problems?group=team-a", signed_in(200, ui=False)),
    ],
    "api.update_group": [
        Entry("PATCH", f"{API}/groups/team-a", platform(200, ui=False), json={"quota": QUOTA}),
    ],
    "api.list_group_images": [
        Entry("GET", f"{API}/groups/team-a/images", members(200, ui=False)),
    ],
    # storage: volumes commit directly (no review); no registry is configured here, so
    # members get past the check to a 409 on the image routes
    "api.group_storage": [Entry("GET", f"{API}/groups/team-a/storage", members(200, ui=False))],
    "api.list_volumes": [Entry("GET", f"{API}/groups/team-a/volumes", members(200, ui=False))],
    "api.create_volume": [
        Entry(
            "POST",
            f"{API}/groups/team-a/volumes",
            members(201, ui=False),
            json={"name": "{group}", "size": "1Gi"},
        ),
    ],
    "api.resize_volume": [
        Entry(
            "PATCH",
            f"{API}/groups/team-a/volumes/data",
            members(200, ui=False),
            json={"size": "2Gi"},
        ),
    ],
    # the wrong name typed: refused (422) past the check, so nothing is deleted
    "api.delete_volume": [
        Entry(
            "DELETE",
            f"{API}/groups/team-a/volumes/data",
            members(422, ui=False),
            json={"confirm": "not-data"},
        ),
    ],
    "api.list_image_tags": [
        Entry("GET", f"{API}/groups/team-a/images/tags", members(409, ui=False)),
    ],
    "api.delete_image_tag": [
        Entry("DELETE", f"{API}/groups/team-a/images/web/tags/1.0", members(409, ui=False)),
    ],
    "api.image_retention": [
        Entry(
            "POST",
            f"{API}/groups/team-a/images/retention",
            members(409, ui=False),
            json={"keep": 1, "dry_run": True},
        ),
    ],
    "api.list_group_deployments": [
        Entry("GET", f"{API}/groups/team-a/deployments", members(200, ui=False)),
    ],
    "api.create_deployment": [
        Entry(
            "POST",
            f"{API}/groups/team-a/deployments",
            members(202, ui=False),
            json={"name": "new", "image": "registry:5000/team-a/new:1.0"},
        ),
    ],
    # deployments
    "api.list_deployments": [
        Entry("GET", f"{API}/deployments", signed_in(200, ui=False)),
        Entry("GET", f"{API}/deployments?group=team-a", members(200, ui=False)),
        # recently deleted: each caller sees its groups' only
        Entry("GET", f"{API}/deployments?deleted=1", signed_in(200, ui=False)),
        Entry("GET", f"{API}/deployments?deleted=1&group=team-a", members(200, ui=False)),
    ],
    "api.get_deployment": [Entry("GET", f"{API}{WEB}", members(200, ui=False))],
    "api.update_deployment": [
        Entry("PATCH", f"{API}{WEB}", members(202, ui=False), json={"replicas": 2}),
    ],
    "api.delete_deployment": [Entry("DELETE", f"{API}{WEB}", members(202, ui=False))],
    "api.deployment_history": [
        Entry("GET", f"{API}{WEB}/history?diff=1", members(200, ui=False)),
    ],
    # no cluster is connected: members get past the check to a 503
    "api.deployment_logs": [Entry("GET", f"{API}{WEB}/logs", members(503, ui=False))],
    # usage over time is kept in memory: without a cluster, members get a series of no points
    "api.deployment_usage": [Entry("GET", f"{API}{WEB}/usage", members(200, ui=False))],
    "api.deployment_events": [Entry("GET", f"{API}{WEB}/events", members(503, ui=False))],
    "api.retry_deployment": [
        Entry("POST", f"{API}{WEB}/retry", members(503, ui=False), json={}),
    ],
    "api.restart_deployment": [
        Entry("POST", f"{API}{WEB}/restart", members(202, ui=False), json={}),
    ],
    "api.scale_deployment": [
        Entry("POST", f"{API}{WEB}/scale", members(202, ui=False), json={"replicas": 3}),
    ],
    "api.revert_deployment": [
        Entry("POST", f"{API}{WEB}/revert", members(202, ui=False), json={"commit": "{commit}"}),
    ],
    "api.restore_deployment": [
        Entry("POST", f"{API}{WEB}/restore", members(202, ui=False), json={"commit": "{created}"}),
    ],
    # change requests (team-a reviews; only group admins approve)
    "api.list_changes": [
        Entry("GET", f"{API}/changes", signed_in(200, ui=False)),
        Entry("GET", f"{API}/changes?group=team-a", signed_in(200, ui=False)),
        Entry("GET", f"{API}/changes?state=all&group=team-a", signed_in(200, ui=False)),
    ],
    "api.get_change": [Entry("GET", f"{API}/changes/{{change}}", members(200, ui=False))],
    "api.approve_change": [
        Entry(
            "POST",
            f"{API}/changes/{{change}}/approve",
            group_admins(200, ui=False),
            json={},
            fresh_change=True,
        ),
    ],
    "api.close_change": [
        Entry(
            "POST",
            f"{API}/changes/{{change}}/close",
            members(200, ui=False),
            json={},
            fresh_change=True,
        ),
    ],
    # pages
    "ui.index": [Entry("GET", "/", signed_in(302, ui=True))],
    "ui.deployments": [
        Entry("GET", "/deployments", signed_in(200, ui=True)),
        Entry("GET", "/deployments?group=team-a", members(200, ui=True)),
        Entry("GET", "/deployments?group=team-a&owner=alice&q=web", members(200, ui=True)),
        Entry("GET", "/deployments?q=web&state=committed", signed_in(200, ui=True)),
        # the group overview's rows alone (its live refresh)
        Entry("GET", "/deployments?part=rows", signed_in(200, ui=True)),
    ],
    "ui.deleted_deployments": [
        Entry("GET", "/deployments/deleted", signed_in(200, ui=True)),
        Entry("GET", "/deployments/deleted?group=team-a", members(200, ui=True)),
    ],
    "ui.new_deployment": [Entry("GET", "/deployments/new", signed_in(200, ui=True))],
    "ui.create_deployment": [
        Entry(
            "POST",
            "/deployments/new",
            members(302, ui=True),
            form=DEPLOYMENT_FORM | {"name": "new"},
        ),
    ],
    "ui.edit_deployment": [Entry("GET", f"{WEB}/edit", members(200, ui=True))],
    "ui.update_deployment": [
        Entry("POST", f"{WEB}/edit", members(302, ui=True), form=DEPLOYMENT_FORM),
    ],
    "ui.confirm_delete": [Entry("GET", f"{WEB}/delete", members(200, ui=True))],
    "ui.delete_deployment": [
        Entry("POST", f"{WEB}/delete", members(302, ui=True), form={"group": "team-a"}),
    ],
    "ui.deployment_history": [Entry("GET", f"{WEB}/history", members(200, ui=True))],
    "ui.deployment_logs": [Entry("GET", f"{WEB}/logs", members(200, ui=True))],
    "ui.deployment_page": [Entry("GET", WEB, members(200, ui=True))],
    "ui.confirm_restart": [Entry("GET", f"{WEB}/restart", members(200, ui=True))],
    "ui.confirm_close": [Entry("GET", "/changes/{change}/close", members(200, ui=True))],
    "ui.restart_deployment": [Entry("POST", f"{WEB}/restart", members(302, ui=True), form={})],
    "ui.retry_deployment": [Entry("POST", f"{WEB}/retry", members(503, ui=True), form={})],
    "ui.scale_deployment": [
        Entry("POST", f"{WEB}/scale", members(302, ui=True), form={"replicas": "2"}),
    ],
    # the confirm steps: what a revert or restore would commit, nothing written
    "ui.confirm_revert": [
        Entry("GET", f"{WEB}/revert?commit={{commit}}", members(200, ui=True)),
    ],
    "ui.confirm_restore": [
        Entry("GET", f"{WEB}/restore?commit={{created}}", members(200, ui=True)),
    ],
    "ui.revert_deployment": [
        Entry("POST", f"{WEB}/revert", members(302, ui=True), form={"commit": "{commit}"}),
    ],
    "ui.restore_deployment": [
        Entry("POST", f"{WEB}/restore", members(302, ui=True), form={"commit": "{created}"}),
    ],
    "ui.groups": [Entry("GET", "/groups", signed_in(200, ui=True))],
    "ui.create_group": [
        Entry("POST", "/groups", platform(302, ui=True), form=GROUP_FORM | {"name": "{group}"}),
    ],
    "ui.update_group": [
        Entry("POST", "/groups/team-a/edit", platform(302, ui=True), form=GROUP_FORM),
    ],
    # the Storage tab: the quota, volumes and images of a group (no registry here: the image
    # forms get past the check to a 409)
    "ui.storage_page": [
        Entry("GET", "/storage", signed_in(200, ui=True)),
        Entry("GET", "/storage?group=team-a", members(200, ui=True)),
        Entry("GET", "/storage?group=team-a&keep=1", members(200, ui=True)),
    ],
    # the name taken: refused (409) past the check (each success would take 1Gi more of the
    # storage quota than the world has)
    "ui.storage_create_volume": [
        Entry(
            "POST",
            "/storage/team-a/volumes",
            members(409, ui=True),
            form={"name": "data", "size": "1Gi", "storageClass": "standard"},
        ),
    ],
    "ui.storage_resize_volume": [
        Entry(
            "POST",
            "/storage/team-a/volumes/data/resize",
            members(302, ui=True),
            form={"size": "2Gi"},
        ),
    ],
    # the wrong name typed: refused (422) past the check, so nothing is deleted
    "ui.storage_delete_volume": [
        Entry(
            "POST",
            "/storage/team-a/volumes/data/delete",
            members(422, ui=True),
            form={"confirm": "not-data"},
        ),
    ],
    "ui.storage_delete_tag": [
        Entry(
            "POST",
            "/storage/team-a/images/team-a/web/tags/1.0/delete",
            members(409, ui=True),
            form={},
        ),
    ],
    "ui.storage_retention": [
        Entry(
            "POST", "/storage/team-a/images/retention", members(409, ui=True), form={"keep": "1"}
        ),
    ],
    "ui.changes": [
        Entry("GET", "/changes", signed_in(200, ui=True)),
        Entry("GET", "/changes?view=closed", signed_in(200, ui=True)),
    ],
    "ui.change": [Entry("GET", "/changes/{change}", members(200, ui=True))],
    "ui.approve_change": [
        Entry(
            "POST",
            "/changes/{change}/approve",
            group_admins(302, ui=True),
            form={},
            fresh_change=True,
        ),
    ],
    "ui.close_change": [
        Entry("POST", "/changes/{change}/close", members(302, ui=True), form={}, fresh_change=True),
    ],
}


def test_every_route_has_an_entry(world: World) -> None:
    routed = {rule.endpoint for rule in world.app.url_map.iter_rules()}
    assert routed - MATRIX.keys() == set(), "routes without an authorization matrix entry"
    assert MATRIX.keys() - routed == set(), "matrix entries for routes that do not exist"
    for rule in world.app.url_map.iter_rules():
        methods = (rule.methods or set()) - {"HEAD", "OPTIONS"}
        covered = {entry.method for entry in MATRIX[rule.endpoint]}
        assert methods <= covered, f"{rule.endpoint} {rule.rule}: {methods - covered} untested"


def test_every_entry_names_every_principal() -> None:
    for endpoint, entries in MATRIX.items():
        for entry in entries:
            assert entry.expect.keys() == PRINCIPALS.keys(), (endpoint, entry.path)


def refs(remote: Path) -> str:
    return git(remote, "for-each-ref", "--format=%(refname) %(objectname)")


def cells() -> Iterator[tuple[str, Entry, str]]:
    for endpoint, entries in MATRIX.items():
        for entry in entries:
            for who in PRINCIPALS:
                yield endpoint, entry, who


def test_the_matrix(world: World) -> None:
    """One world for all cells: a refused call must leave it as it was, so the next cell
    starts from the same state; a call that succeeds may only add (branches, groups)."""
    failures: list[str] = []
    for number, (endpoint, entry, who) in enumerate(cells()):
        expected = entry.expect[who]
        succeeds = expected < 400
        change = world.propose() if entry.fresh_change and succeeds else world.standing

        def fill(text: str, change: str = change, number: int = number) -> str:
            return (
                text.replace("{web}", world.web)
                .replace("{change}", change)
                .replace("{commit}", world.port_commit)
                .replace("{created}", world.created)
                .replace("{group}", f"new-{number}")
            )

        path = fill(entry.path)
        kwargs: dict[str, Any] = {}
        sent = ""
        if entry.json is not None:
            body = entry.json
            if isinstance(body, dict):
                body = {k: fill(v) if isinstance(v, str) else v for k, v in body.items()}
            kwargs["json"] = body
            sent = repr(body)
        if entry.form is not None:
            form = {k: fill(v) for k, v in entry.form.items()}
            kwargs["data"] = form | {"csrf_token": world.form_token(who)}
            sent = repr(form)
        before = refs(world.remote)
        response = world.call(who, entry.method, path, **kwargs)
        text = response.get_data(as_text=True)
        cell = f"{endpoint} {entry.method} {path} as {who}"
        if response.status_code != expected:
            failures.append(f"{cell}: {response.status_code}, expected {expected}: {text[:200]}")
        if response.status_code >= 400 and refs(world.remote) != before:
            failures.append(f"{cell}: refused with {response.status_code} but wrote")
        unseen = set() if entry.document else set(world.secrets) - PRINCIPALS[who].sees
        for group in sorted(unseen):
            for secret in sorted(world.secrets[group]):
                if secret in text and secret not in path and secret not in sent:
                    failures.append(f"{cell}: the answer names {secret!r} of {group}")
    assert not failures, "\n".join(failures)


def test_a_refusal_says_nothing_about_what_exists(world: World) -> None:
    """Asked about team-a's things, a non-member gets the answer given for things that do
    not exist: the same status and message, never the owning group."""
    templates = [
        f"{API}/deployments/{{}}",
        f"{API}/deployments/{{}}/history",
        f"{API}/groups/{{}}/deployments",
        f"{API}/changes/{{}}",
        "/deployments/{}/edit",
    ]
    real = {"deployments": world.web, "groups": "team-a", "changes": world.standing}
    fake = {"deployments": "web-zzzzzz", "groups": "team-q", "changes": "team-q/web-zzzzzz/x-1"}
    for template in templates:
        kind = next(k for k in real if f"/{k}/" in template)
        seen = world.call("non-member", "GET", template.format(real[kind]))
        missing = world.call("non-member", "GET", template.format(fake[kind]))
        assert seen.status_code == missing.status_code == 404, template
        said = seen.get_data(as_text=True).replace(real[kind], "<name>")
        assert said == missing.get_data(as_text=True).replace(fake[kind], "<name>"), template
        assert "team-a" not in seen.get_data(as_text=True).replace(real[kind], "")
