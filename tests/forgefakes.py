"""Wire-level fake forges for the adapter tests: GitHub and Gitea/Forgejo over real HTTP.

Neither forge can run on these machines, so each fake is a small threaded ``http.server`` on
127.0.0.1 that serves exactly the pull-request endpoints gitops-bridge uses, with the
request and response shapes of the forges' REST documentation, their status codes and their
JSON error bodies. PRs live in memory. A test can merge or close a PR "from outside" (as a
reviewer on the forge would), build the webhook delivery the forge would send for it, make
the next request fail, slow the server down, and inspect every request the fake received.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JsonReply = tuple[int, dict[str, str], Any]


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    json: Any  # decoded body, None when there was none


@dataclass
class Pull:
    """A PR as the fake keeps it (the forge's own record, not an API shape)."""

    number: int
    title: str
    body: str
    head: str
    base: str
    head_sha: str
    created: str
    state: str = "open"  # open | closed
    merged: bool = False
    merge_commit: str | None = None
    closed_at: str | None = None
    merged_at: str | None = None
    test_merge_commit: str = field(default_factory=lambda: secrets.token_hex(20))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _sign(secret: str, body: bytes, digest: Any = hashlib.sha256) -> str:
    return hmac.new(secret.encode(), body, digest).hexdigest()


class _FakeForge:
    """Server plumbing shared by the fakes; subclasses implement ``route`` and the shapes."""

    kind = ""

    def __init__(
        self,
        *,
        owner: str = "team",
        repo: str = "gitops",
        token: str = "s3cr3t-forge-token-0123456789",
        page_size: int = 2,
        prefix: str = "",
    ) -> None:
        self.owner = owner
        self.repo = repo
        self.token = token
        self.page_size = page_size  # the server's largest page, kept small so tests cross pages
        self.prefix = prefix.rstrip("/")
        self.pulls: dict[int, Pull] = {}
        self.requests: list[Recorded] = []
        self.delay = 0.0  # seconds to wait before answering (timeouts)
        self._failures: list[JsonReply] = []
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle

    def start(self) -> _FakeForge:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._serve(self)

            do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> _FakeForge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        """What to configure as the forge URL."""
        return self.origin + self.prefix

    # -- test controls

    def fail_next(
        self, status: int, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next request with this status and JSON body, whatever it asks."""
        with self._lock:
            self._failures.append((status, headers or {}, body))

    def merge(self, number: int, merge_commit: str | None = None) -> str:
        """Merge the PR as a reviewer would on the forge; returns the merge commit."""
        with self._lock:
            pull = self.pulls[number]
            pull.state, pull.merged = "closed", True
            pull.merge_commit = merge_commit or secrets.token_hex(20)
            pull.merged_at = pull.closed_at = _now()
            return pull.merge_commit

    def close(self, number: int) -> None:
        """Close the PR without merging, as a reviewer would on the forge."""
        with self._lock:
            pull = self.pulls[number]
            pull.state, pull.closed_at = "closed", _now()

    def by_path(self, method: str, suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]

    def webhook_delivery(
        self, number: int, secret: str, *, action: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The headers and body the forge would POST for this PR's current state."""
        pull = self.pulls[number]
        if action is None:
            action = "closed" if pull.state == "closed" else "opened"
        payload = {
            "action": action,
            "number": number,
            "pull_request": self.webhook_pull(pull),
            "repository": self.repository(),
            "sender": {"login": "reviewer", "id": 7},
        }
        return self.event_delivery("pull_request", payload, secret)

    def event_delivery(self, event: str, payload: Any, secret: str) -> tuple[dict[str, str], bytes]:
        body = json.dumps(payload, indent=2).encode()
        return self.delivery_headers(event, body, secret), body

    # -- for subclasses

    def route(self, method: str, path: str, query: dict[str, str], data: Any) -> JsonReply:
        raise NotImplementedError

    def authorized(self, headers: dict[str, str]) -> JsonReply | None:
        raise NotImplementedError

    def webhook_pull(self, pull: Pull) -> dict[str, Any]:
        raise NotImplementedError

    def repository(self) -> dict[str, Any]:
        raise NotImplementedError

    def delivery_headers(self, event: str, body: bytes, secret: str) -> dict[str, str]:
        raise NotImplementedError

    def new_pull(self, *, title: str, body: str, head: str, base: str) -> Pull:
        pull = Pull(
            number=next(self._numbers),
            title=title,
            body=body,
            head=head,
            base=base,
            head_sha=secrets.token_hex(20),
            created=_now(),
        )
        self.pulls[pull.number] = pull
        return pull

    def page(
        self, items: list[Any], query: dict[str, str], *, size_param: str, default: int
    ) -> tuple[list[Any], int, int, int]:
        """Slice one page: (items, page, size, last page)."""
        try:
            size = min(int(query.get(size_param, default)), self.page_size)
            number = max(int(query.get("page", "1")), 1)
        except ValueError:
            size, number = self.page_size, 1
        size = max(size, 1)
        last = max((len(items) + size - 1) // size, 1)
        return items[(number - 1) * size : number * size], number, size, last

    def link_header(self, path: str, query: dict[str, str], number: int, last: int) -> str:
        def link(page: int, rel: str) -> str:
            target = f"{self.origin}{path}?{urllib.parse.urlencode({**query, 'page': page})}"
            return f'<{target}>; rel="{rel}"'

        links = []
        if number < last:
            links += [link(number + 1, "next"), link(last, "last")]
        if number > 1:
            links += [link(1, "first"), link(number - 1, "prev")]
        return ", ".join(links)

    # -- the HTTP side

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        split = urllib.parse.urlsplit(handler.path)
        query = dict(urllib.parse.parse_qsl(split.query))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        raw = handler.rfile.read(int(headers.get("content-length") or 0))
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        with self._lock:
            self.requests.append(Recorded(handler.command, split.path, query, headers, data))
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            if self._failures:
                status, extra, body = self._failures.pop(0)
            else:
                status, extra, body = self.authorized(headers) or self._route(
                    handler.command, split.path, query, data, raw
                )
        payload = b"" if body is None else json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json; charset=utf-8")
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in extra.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            pass  # the client gave up (timeout test)

    def _route(
        self, method: str, path: str, query: dict[str, str], data: Any, raw: bytes
    ) -> JsonReply:
        if not path.startswith(self.prefix + "/"):
            return self.not_found()
        if raw and data is None:
            return 400, {}, {"message": "Problems parsing JSON"}
        return self.route(method, path[len(self.prefix) :], query, data)

    def not_found(self) -> JsonReply:
        raise NotImplementedError

    def token_from(self, headers: dict[str, str]) -> str | None:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        return value if scheme.lower() in ("bearer", "token") else None


class FakeGitHub(_FakeForge):
    """A wire-level stand-in for GitHub's REST API (api.github.com, or GitHub Enterprise Server
    under ``prefix="/api/v3"``), which cannot run here.

    Serves ``POST/GET /repos/{owner}/{repo}/pulls``, ``GET/PATCH .../pulls/{number}`` with
    ``Link`` pagination (``per_page`` is capped at ``page_size``, where GitHub caps at 100).
    As on GitHub, list items carry ``merged_at`` but no ``merged`` key, and an open PR's
    ``merge_commit_sha`` holds a test-merge commit, not a real one.
    """

    kind = "github"
    web = "https://github.com"
    docs = "https://docs.github.com/rest/pulls/pulls"

    def authorized(self, headers: dict[str, str]) -> JsonReply | None:
        if not headers.get("user-agent"):
            message = (
                "Request forbidden by administrative rules. "
                "Please make sure your request has a User-Agent header"
            )
            return 403, {}, {"message": message}
        if self.token_from(headers) != self.token:
            body = {
                "message": "Bad credentials",
                "documentation_url": "https://docs.github.com/rest",
                "status": "401",
            }
            return 401, {}, body
        return None

    def not_found(self) -> JsonReply:
        return 404, {}, {"message": "Not Found", "documentation_url": self.docs, "status": "404"}

    def invalid(self, *errors: dict[str, str]) -> JsonReply:
        body = {
            "message": "Validation Failed",
            "errors": list(errors),
            "documentation_url": self.docs,
            "status": "422",
        }
        return 422, {}, body

    def route(self, method: str, path: str, query: dict[str, str], data: Any) -> JsonReply:
        pulls = f"/repos/{self.owner}/{self.repo}/pulls"
        if path == pulls and method == "POST":
            return self._create(data)
        if path == pulls and method == "GET":
            return self._list(path, query)
        number = path[len(pulls) + 1 :] if path.startswith(pulls + "/") else ""
        if not number.isdigit() or int(number) not in self.pulls:
            return self.not_found()
        pull = self.pulls[int(number)]
        if method == "GET":
            return 200, {}, self.full(pull)
        if method == "PATCH":
            state = (data or {}).get("state")
            if state not in (None, "open", "closed"):
                return self.invalid(
                    {"resource": "PullRequest", "field": "state", "code": "invalid"}
                )
            if state and pull.merged:
                # Text approximated; GitHub answers 422 when a merged PR's state is changed.
                return self.invalid(
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": "Cannot change the state of a merged pull request.",
                    }
                )
            if state:
                pull.state, pull.closed_at = state, (_now() if state == "closed" else None)
            return 200, {}, self.full(pull)
        return self.not_found()

    def _create(self, data: Any) -> JsonReply:
        data = data if isinstance(data, dict) else {}
        missing = [k for k in ("head", "base") if not isinstance(data.get(k), str) or not data[k]]
        if missing:
            return self.invalid(
                *({"resource": "PullRequest", "field": k, "code": "missing_field"} for k in missing)
            )
        if not data.get("title") and not data.get("issue"):
            return self.invalid({"resource": "Issue", "field": "title", "code": "missing_field"})
        head = data["head"].split(":", 1)[-1]
        if any(
            p.head == head and p.base == data["base"] and p.state == "open"
            for p in self.pulls.values()
        ):
            return self.invalid(
                {
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": f"A pull request already exists for {self.owner}:{head}.",
                }
            )
        pull = self.new_pull(
            title=data["title"], body=str(data.get("body") or ""), head=head, base=data["base"]
        )
        location = f"{self.origin}{self.prefix}/repos/{self.owner}/{self.repo}/pulls/{pull.number}"
        return 201, {"Location": location}, self.full(pull)

    def _list(self, path: str, query: dict[str, str]) -> JsonReply:
        state = query.get("state", "open")
        if state not in ("open", "closed", "all"):
            return self.invalid({"resource": "PullRequest", "field": "state", "code": "invalid"})
        chosen = [p for p in self.pulls.values() if state == "all" or p.state == state]
        if "head" in query:
            owner, _, ref = query["head"].partition(":")
            chosen = [p for p in chosen if owner == self.owner and p.head == ref] if ref else []
        chosen.sort(key=lambda p: p.number, reverse=True)  # sort=created, direction=desc
        items, number, _, last = self.page(chosen, query, size_param="per_page", default=30)
        headers = {}
        link = self.link_header(self.prefix + path, query, number, last)
        if link:
            headers["Link"] = link
        return 200, headers, [self.simple(p) for p in items]

    # -- shapes

    def _ref(self, ref: str, sha: str) -> dict[str, Any]:
        return {
            "label": f"{self.owner}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": {"login": self.owner},
            "repo": self.repository(),
        }

    def simple(self, pull: Pull) -> dict[str, Any]:
        """The pull-request-simple shape of list responses (no ``merged`` key)."""
        api = f"{self.origin}{self.prefix}/repos/{self.owner}/{self.repo}"
        return {
            "url": f"{api}/pulls/{pull.number}",
            "id": 1000 + pull.number,
            "node_id": f"PR_fake{pull.number}",
            "html_url": f"{self.web}/{self.owner}/{self.repo}/pull/{pull.number}",
            "diff_url": f"{self.web}/{self.owner}/{self.repo}/pull/{pull.number}.diff",
            "issue_url": f"{api}/issues/{pull.number}",
            "number": pull.number,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "user": {"login": "gitops-bridge[bot]", "id": 1, "type": "Bot"},
            "body": pull.body,
            "created_at": pull.created,
            "updated_at": pull.closed_at or pull.created,
            "closed_at": pull.closed_at,
            "merged_at": pull.merged_at,
            "merge_commit_sha": pull.merge_commit if pull.merged else pull.test_merge_commit,
            "draft": False,
            "head": self._ref(pull.head, pull.head_sha),
            "base": self._ref(pull.base, "0" * 40),
            "author_association": "NONE",
        }

    def full(self, pull: Pull) -> dict[str, Any]:
        """The full pull-request shape of create/get/update responses."""
        return {
            **self.simple(pull),
            "merged": pull.merged,
            "mergeable": None if pull.merged else True,
            "merged_by": {"login": "reviewer"} if pull.merged else None,
            "comments": 0,
            "commits": 1,
            "additions": 1,
            "deletions": 0,
            "changed_files": 1,
        }

    def webhook_pull(self, pull: Pull) -> dict[str, Any]:
        return self.full(pull)

    def repository(self) -> dict[str, Any]:
        return {
            "id": 42,
            "name": self.repo,
            "full_name": f"{self.owner}/{self.repo}",
            "private": True,
        }

    def delivery_headers(self, event: str, body: bytes, secret: str) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/044aadd",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-GitHub-Event": event,
            "X-GitHub-Hook-ID": "292430182",
            "X-GitHub-Hook-Installation-Target-ID": "79929171",
            "X-GitHub-Hook-Installation-Target-Type": "repository",
            "X-Hub-Signature": "sha1=" + _sign(secret, body, hashlib.sha1),
            "X-Hub-Signature-256": "sha256=" + _sign(secret, body),
        }


class FakeGitea(_FakeForge):
    """A wire-level stand-in for Gitea's REST API (``/api/v1``; Forgejo with ``forgejo=True``),
    which cannot run here.

    Serves ``POST/GET /api/v1/repos/{owner}/{repo}/pulls``, ``GET/PATCH .../pulls/{index}``
    with ``page``/``limit`` paging (``limit`` capped at ``page_size``, as ``MAX_RESPONSE_ITEMS``
    does), ``X-Total-Count`` and ``Link``. A second PR for the same head and base answers 409;
    PATCH answers 201 (as Gitea does) and 412 for a merged PR. Webhook deliveries carry the
    headers Gitea's ``services/webhook/deliver.go`` sets (and Forgejo's own).
    """

    kind = "gitea"
    web = "https://git.example.com"

    def __init__(self, *, forgejo: bool = False, **kwargs: Any) -> None:
        super().__init__(prefix="", **kwargs)
        self.forgejo = forgejo

    def _error(self, status: int, message: str) -> JsonReply:
        return status, {}, {"message": message, "url": f"{self.web}/api/swagger"}

    def authorized(self, headers: dict[str, str]) -> JsonReply | None:
        if self.token_from(headers) != self.token:
            return self._error(401, "invalid username, password or token")
        return None

    def not_found(self) -> JsonReply:
        return (
            404,
            {},
            {
                "errors": [],
                "message": "The target couldn't be found.",
                "url": f"{self.web}/api/swagger",
            },
        )

    def route(self, method: str, path: str, query: dict[str, str], data: Any) -> JsonReply:
        pulls = f"/api/v1/repos/{self.owner}/{self.repo}/pulls"
        if path == pulls and method == "POST":
            return self._create(data)
        if path == pulls and method == "GET":
            return self._list(path, query)
        index = path[len(pulls) + 1 :] if path.startswith(pulls + "/") else ""
        if not index.isdigit() or int(index) not in self.pulls:
            return self.not_found()
        pull = self.pulls[int(index)]
        if method == "GET":
            return 200, {}, self.shape(pull)
        if method == "PATCH":
            state = (data or {}).get("state")
            if state is not None:
                if pull.merged:
                    return self._error(
                        412, "cannot change state of this pull request, it was already merged"
                    )
                pull.state, pull.closed_at = state, (_now() if state == "closed" else None)
            return 201, {}, self.shape(pull)
        return self.not_found()

    def _create(self, data: Any) -> JsonReply:
        data = data if isinstance(data, dict) else {}
        head, base = str(data.get("head") or ""), str(data.get("base") or "")
        if not head or not base or not data.get("title"):
            return (
                422,
                {},
                {
                    "message": "[Head]: Required; [Base]: Required; [Title]: Required",
                    "url": f"{self.web}/api/swagger",
                },
            )
        if head == base:
            return self._error(
                422, "Invalid PullRequest: There are no changes between the head and the base"
            )
        for p in self.pulls.values():
            if p.head == head and p.base == base and not p.merged and p.state == "open":
                message = (
                    "pull request already exists for these targets "
                    f"[id: {p.number + 100}, issue_id: {p.number}, head_repo_id: 1, "
                    f"base_repo_id: 1, head_branch: {head}, base_branch: {base}]"
                )
                return self._error(409, message)
        pull = self.new_pull(
            title=str(data["title"]), body=str(data.get("body") or ""), head=head, base=base
        )
        return 201, {}, self.shape(pull)

    def _list(self, path: str, query: dict[str, str]) -> JsonReply:
        state = query.get("state", "open")
        chosen = [p for p in self.pulls.values() if state == "all" or p.state == state]
        chosen.sort(key=lambda p: p.number, reverse=True)  # newest first
        items, number, _, last = self.page(chosen, query, size_param="limit", default=30)
        headers = {
            "X-Total-Count": str(len(chosen)),
            "Access-Control-Expose-Headers": "X-Total-Count, Link",
        }
        link = self.link_header(path, query, number, last)
        if link:
            headers["Link"] = link
        return 200, headers, [self.shape(p) for p in items]

    # -- shapes

    def repository(self) -> dict[str, Any]:
        return {
            "id": 1,
            "owner": {"id": 2, "login": self.owner, "username": self.owner},
            "name": self.repo,
            "full_name": f"{self.owner}/{self.repo}",
            "private": True,
            "html_url": f"{self.web}/{self.owner}/{self.repo}",
            "default_branch": "main",
        }

    def _branch(self, ref: str, sha: str) -> dict[str, Any]:
        return {"label": ref, "ref": ref, "sha": sha, "repo_id": 1, "repo": self.repository()}

    def shape(self, pull: Pull) -> dict[str, Any]:
        """Gitea's PullRequest (modules/structs/pull.go)."""
        html = f"{self.web}/{self.owner}/{self.repo}/pulls/{pull.number}"
        return {
            "id": pull.number + 100,
            "url": html,
            "number": pull.number,
            "user": {"id": 3, "login": "gitops-bridge"},
            "title": pull.title,
            "body": pull.body,
            "labels": [],
            "milestone": None,
            "assignees": None,
            "state": pull.state,
            "is_locked": False,
            "comments": 0,
            "html_url": html,
            "diff_url": html + ".diff",
            "patch_url": html + ".patch",
            "mergeable": not pull.merged,
            "merged": pull.merged,
            "merged_at": pull.merged_at,
            "merge_commit_sha": pull.merge_commit,
            "merged_by": {"login": "reviewer"} if pull.merged else None,
            "allow_maintainer_edit": False,
            "base": self._branch(pull.base, "0" * 40),
            "head": self._branch(pull.head, pull.head_sha),
            "merge_base": "0" * 40,
            "due_date": None,
            "created_at": pull.created,
            "updated_at": pull.closed_at or pull.created,
            "closed_at": pull.closed_at,
        }

    def webhook_pull(self, pull: Pull) -> dict[str, Any]:
        return self.shape(pull)

    def delivery_headers(self, event: str, body: bytes, secret: str) -> dict[str, str]:
        delivery, sha256 = str(uuid.uuid4()), _sign(secret, body)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Go-http-client/1.1",
            "X-Gitea-Delivery": delivery,
            "X-Gitea-Event": event,
            "X-Gitea-Event-Type": event,
            "X-Gitea-Signature": sha256,
            "X-Gogs-Delivery": delivery,
            "X-Gogs-Event": event,
            "X-Gogs-Event-Type": event,
            "X-Gogs-Signature": sha256,
            "X-Hub-Signature": "sha1=" + _sign(secret, body, hashlib.sha1),
            "X-Hub-Signature-256": "sha256=" + sha256,
            "X-GitHub-Delivery": delivery,
            "X-GitHub-Event": event,
            "X-GitHub-Event-Type": event,
        }
        if self.forgejo:
            headers |= {
                "X-Forgejo-Delivery": delivery,
                "X-Forgejo-Event": event,
                "X-Forgejo-Event-Type": event,
                "X-Forgejo-Signature": sha256,
            }
        return headers


def free_closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def running(fake: _FakeForge) -> Iterator[_FakeForge]:
    """For pytest fixtures: ``yield from running(FakeGitHub())``."""
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
