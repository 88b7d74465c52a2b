"""Identity and CSRF.

- API tokens (any identity mode): ``Authorization: Bearer <token>`` on ``/api/``; the token's
  SHA-256 is configured in ``api_tokens`` with its name, groups and admin flag.
- ``dev`` identity: only requests from loopback are served; ``X-Forwarded-User`` /
  ``X-Forwarded-Groups`` / ``X-Forwarded-Email`` are honoured, and with no header the
  user is ``admin`` (a platform admin).
- ``proxy`` identity: requests must come from a trusted proxy address and carry
  ``X-Forwarded-User``; anything else is 401.
Platform admins are the users in ``admins`` and everyone in the ``admin_group``.
Forms carry a per-session CSRF token; the JSON API requires a JSON body instead
(a cross-site form cannot send one without a CORS preflight).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

from flask import Flask, g, request, session

from gitops_bridge import models
from gitops_bridge.errors import BadRequest, Forbidden, Unauthenticated
from gitops_bridge.identity import User
from gitops_bridge.webapp import context

DEV_USER = "admin"
# no user identity: health, metrics and peer endpoints; signed webhooks
PUBLIC_ENDPOINTS = {
    "ops.healthz",
    "ops.readyz",
    "ops.metrics_text",
    "ops.reading",
    "api.flux_event",
    "api.forge_event",
}
WEBHOOK_ENDPOINTS = {"api.flux_event", "api.forge_event"}
CSRF_FIELD = "csrf_token"


def init_app(app: Flask) -> None:
    app.before_request(_identify)
    app.before_request(_check_csrf)
    app.jinja_env.globals["csrf_token"] = csrf_token


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _trusted(address: str | None, networks: list[str]) -> bool:
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in networks)


def _identify() -> None:
    if request.endpoint == "static" or request.endpoint in PUBLIC_ENDPOINTS:
        return
    settings = context.settings()
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer ") and request.path.startswith("/api/"):
        g.user = _token_user(authorization.removeprefix("Bearer ").strip())
        return
    address = request.remote_addr
    if settings.identity == "dev":
        if not _is_loopback(address):
            raise Forbidden("dev identity serves loopback only; configure identity = proxy")
        name = request.headers.get("X-Forwarded-User", "").strip() or DEV_USER
    else:
        if not _trusted(address, settings.trusted_proxies):
            raise Unauthenticated(f"requests must come through the trusted proxy, not {address}")
        name = request.headers.get("X-Forwarded-User", "").strip()
        if not name:
            raise Unauthenticated("no X-Forwarded-User header from the proxy")
    if not models.USER_NAME.match(name):
        raise Unauthenticated(f"X-Forwarded-User: not a valid user name: {name!r}")
    groups = frozenset(
        part.strip()
        for part in request.headers.get("X-Forwarded-Groups", "").split(",")
        if part.strip()
    )
    email = request.headers.get("X-Forwarded-Email", "").strip() or f"{name}@{settings.domain}"
    admin = name in settings.admins or settings.admin_group in groups
    g.user = User(name=name, email=email, groups=groups, admin=admin)


def _token_user(token: str) -> User:
    """The API token's identity; a name of the configured tokens, found by constant-time
    comparison of SHA-256 digests."""
    settings = context.settings()
    digest = hashlib.sha256(token.encode()).hexdigest()
    for name, entry in settings.api_tokens.items():
        if hmac.compare_digest(digest, entry.sha256):
            email = entry.email or f"{name}@{settings.domain}"
            admin = entry.admin or name in settings.admins
            return User(name=name, email=email, groups=frozenset(entry.groups), admin=admin)
    raise Unauthenticated("Authorization: unknown API token")


def csrf_token() -> str:
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def _check_csrf() -> None:
    if request.method in ("GET", "HEAD", "OPTIONS") or request.endpoint == "static":
        return
    if request.endpoint in WEBHOOK_ENDPOINTS:  # machine callers prove themselves by HMAC
        return
    if request.path.startswith("/api/"):
        # also for bodiless POSTs: a cross-site HTML form cannot send this content type
        if request.method in ("POST", "PUT", "PATCH") and not request.is_json:
            raise BadRequest(
                "the API takes JSON: send Content-Type: application/json (an empty body is fine)"
            )
        return
    expected = session.get(CSRF_FIELD)
    given = request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, given):
        raise Forbidden("the form has expired or did not come from this site; reload and retry")
