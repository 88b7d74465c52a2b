"""What every forge adapter offers, and the HTTP and webhook plumbing they share.

The adapters speak each forge's REST API with ``urllib.request`` (no extra dependency).
All third-party failures are translated here, at the edge, into ``gitops_bridge.errors``:
network trouble, timeouts, 5xx and rate limits are retryable (``RepoUnavailable``);
401/403 are ``Forbidden``, 404 ``NotFound``, 409/412/422/423 ``Conflict``. The token is sent
only in a header to the configured origin and is scrubbed from every error message.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any, Literal, Protocol

from gitops_bridge import errors, jsonbody

PullRequestState = Literal["open", "merged", "closed"]


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str  # the web page (html_url)
    branch: str  # head branch name
    state: PullRequestState  # closed = closed without merge
    merge_commit: str | None = None
    merged_by: str | None = None  # the forge's user who merged it (its login)


@dataclass(frozen=True)
class PullRequestEvent:
    """What a webhook delivery says about a pull request."""

    branch: str
    number: int
    state: PullRequestState


class Forge(Protocol):
    name: str

    def open_pull_request(self, *, branch: str, base: str, title: str, body: str) -> PullRequest:
        """Open a PR from ``branch`` into ``base``; ``Conflict`` if one is open already."""
        ...

    def find_pull_request(self, branch: str) -> PullRequest | None:
        """The newest PR whose head is ``branch``, in any state; None if there is none."""
        ...

    def list_pull_requests(self, *, state: Literal["open", "all"] = "open") -> list[PullRequest]:
        """Every PR of the repository in that state, following pagination."""
        ...

    def close_pull_request(self, number: int) -> PullRequest:
        """Close the PR without merging it."""
        ...

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> PullRequestEvent | None:
        """Verify the delivery's signature (``Unauthenticated`` if missing or wrong) and read
        it; None for events that are not about a pull request."""
        ...


# ---------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lower-case names
    data: Any  # decoded JSON body (None when empty)


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only within one origin: urllib would resend the token elsewhere."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if _origin(newurl) != _origin(req.full_url):
            return None  # urllib then raises HTTPError with the 3xx status
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


_OPENER = urllib.request.build_opener(_SameOriginRedirects())


class Api:
    """A JSON-over-HTTP client for one forge repository; translates every failure."""

    def __init__(
        self,
        *,
        forge: str,
        base_url: str,
        headers: Mapping[str, str],
        token: str,
        timeout: float,
        error_message: Callable[[Any], str],
    ) -> None:
        self.forge = forge
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers)
        self._token = token
        self._timeout = timeout
        self._error_message = error_message

    def url(self, path: str, query: Mapping[str, str | int] | None = None) -> str:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return url

    def same_origin(self, url: str) -> bool:
        return _origin(url) == _origin(self.base_url)

    def call(self, method: str, url: str, *, body: Mapping[str, object] | None = None) -> Response:
        """Send one request to ``url`` (built with :meth:`url`); 2xx -> Response, else raise."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        for name, value in self._headers.items():
            request.add_header(name, value)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        where = f"{self.forge}: {method} {urllib.parse.urlsplit(url).path}"
        try:
            with _OPENER.open(request, timeout=self._timeout) as reply:
                status = reply.status
                reply_headers = {k.lower(): v for k, v in reply.headers.items()}
                raw = reply.read()
        except urllib.error.HTTPError as exc:
            reply_headers = {k.lower(): v for k, v in exc.headers.items()} if exc.headers else {}
            try:
                raw = exc.read()
            except OSError:
                raw = b""
            raise self._http_error(where, exc.code, reply_headers, raw) from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            # URLError: refused/DNS/TLS; TimeoutError (an OSError): no answer in time;
            # HTTPException: garbled reply; ValueError: bad URL.
            reason = getattr(exc, "reason", exc)
            raise errors.RepoUnavailable(
                self._scrub(f"{where}: forge unreachable ({reason}); retry later")
            ) from exc
        try:
            parsed = json.loads(raw) if raw.strip() else None
        except ValueError as exc:
            raise errors.RepoUnavailable(
                self._scrub(f"{where}: forge answered {status} with a body that is not JSON")
            ) from exc
        return Response(status=status, headers=reply_headers, data=parsed)

    def _http_error(
        self, where: str, status: int, headers: Mapping[str, str], raw: bytes
    ) -> errors.BridgeError:
        try:
            detail = self._error_message(json.loads(raw)) if raw.strip() else ""
        except ValueError:
            detail = ""
        detail = detail or _REASONS.get(status, "error")
        message = self._scrub(f"{where}: {status} {detail}")
        rate_limited = status == 429 or (
            status == 403
            and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers)
        )
        if status >= 500 or rate_limited:
            return errors.RepoUnavailable(message + "; retry later")
        if status in (401, 403):
            return errors.Forbidden(message)
        if status == 404:
            return errors.NotFound(message)
        if status in (409, 412, 422, 423):
            return errors.Conflict(message)
        return errors.BridgeError(message)

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text


_REASONS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    409: "conflict",
    412: "precondition failed",
    422: "unprocessable",
    429: "too many requests",
}


def split_repo(repo: str) -> tuple[str, str]:
    """``owner/name`` -> (owner, name); ValueError for anything else."""
    owner, _, name = repo.partition("/")
    if not owner or not name or "/" in name:
        raise ValueError(f"repo: must be 'owner/name', got {repo!r}")
    return owner, name


def quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


# ---------------------------------------------------------------- reading JSON


def field(obj: Any, *path: str) -> Any:
    """obj[path[0]][path[1]]..., or None where a step is missing or not an object."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def require_int(obj: Any, *path: str, forge: str) -> int:
    value = field(obj, *path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.RepoUnavailable(f"{forge}: unexpected response, {'.'.join(path)} missing")
    return value


def require_str(obj: Any, *path: str, forge: str) -> str:
    value = field(obj, *path)
    if not isinstance(value, str):
        raise errors.RepoUnavailable(f"{forge}: unexpected response, {'.'.join(path)} missing")
    return value


def require_list(obj: Any, *, forge: str) -> list[Any]:
    if not isinstance(obj, list):
        raise errors.RepoUnavailable(f"{forge}: unexpected response, expected a JSON list")
    return obj


def login(obj: Any, key: str) -> str | None:
    """The login of the user object ``obj[key]`` (GitHub and Gitea alike); None if absent."""
    value = field(obj, key, "login")
    return value if isinstance(value, str) and value else None


def pr_state(*, state: object, merged: bool) -> PullRequestState:
    if merged:
        return "merged"
    return "closed" if state == "closed" else "open"


# ---------------------------------------------------------------- webhooks


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(
    *, forge: str, secret: str, given: str | None, expected_prefix: str, body: bytes
) -> None:
    """Raise ``Unauthenticated`` unless ``given`` is ``expected_prefix + hex HMAC-SHA256``."""
    if not secret:
        raise errors.Unauthenticated(f"{forge}: webhook refused, no webhook secret is configured")
    if not given:
        raise errors.Unauthenticated(f"{forge}: webhook refused, the delivery is not signed")
    expected = expected_prefix + hmac_sha256_hex(secret, body)
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise errors.Unauthenticated(f"{forge}: webhook refused, the signature does not match")


def load_event(*, forge: str, body: bytes) -> Any:
    """The webhook's JSON payload (nesting bounded: 400, never a RecursionError)."""
    return jsonbody.loads(body, what=f"{forge}: webhook body")


def pull_request_event(payload: Any, *, forge: str) -> PullRequestEvent:
    """Read a ``pull_request`` payload (GitHub's shape; Gitea and Forgejo copy it)."""
    pull = field(payload, "pull_request")
    number = field(pull, "number")
    if not isinstance(number, int) or isinstance(number, bool):
        number = field(payload, "number")
    branch = field(pull, "head", "ref")
    if not isinstance(number, int) or isinstance(number, bool) or not isinstance(branch, str):
        raise errors.BadRequest(
            f"{forge}: pull_request webhook without pull_request.number / head.ref"
        )
    merged = field(pull, "merged") is True
    return PullRequestEvent(
        branch=branch, number=number, state=pr_state(state=field(pull, "state"), merged=merged)
    )


class PullRequestApi:
    """What GitHub and Gitea share: the pulls endpoint; opening and closing a PR there."""

    name = ""
    _api: Api
    _pulls: str  # /repos/<owner>/<name>/pulls

    def open_pull_request(self, *, branch: str, base: str, title: str, body: str) -> PullRequest:
        reply = self._api.call(
            "POST",
            self._api.url(self._pulls),
            body={"title": title, "head": branch, "base": base, "body": body},
        )
        return self._pull(reply.data)

    def close_pull_request(self, number: int) -> PullRequest:
        reply = self._api.call(
            "PATCH", self._api.url(f"{self._pulls}/{int(number)}"), body={"state": "closed"}
        )
        return self._pull(reply.data)

    def _pull(self, data: Any) -> PullRequest:
        raise NotImplementedError
