"""Identity: who is asking, decided once per request, at the edge.

- API tokens (any identity mode): ``Authorization: Bearer <token>`` on ``/api/``; the token's
  SHA-256 is configured in ``api_tokens`` with its name, groups and admin flag. A token is
  its own principal, ``token:<name>``: it acts within its groups and admin flag only, and
  never as a person named like it (no person can be named ``token:...``).
- ``dev`` identity: only requests from loopback are served; ``X-Forwarded-User`` /
  ``X-Forwarded-Groups`` / ``X-Forwarded-Email`` are honoured, and with no header the
  user is ``admin`` (a platform admin).
- ``proxy`` identity: requests must come from a trusted proxy address and carry
  ``X-Forwarded-User``; anything else is 401.
Each identity header must arrive once: the WSGI server joins a repeated header into one
value with ", " (a proxy that appends its header to the client's would pass the client's
claims on), so such a value is refused (400); a list of groups is separated by "," alone.
User and group names are folded (``models.fold_name``) here, and nowhere else.
Platform admins are the users in ``admins`` and everyone in the ``admin_group``.
CSRF, Origin and the browser-side headers: ``forgery``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from flask import Flask, g, request

from gitops_bridge import models
from gitops_bridge.errors import BadRequest, Forbidden, Unauthenticated
from gitops_bridge.identity import TOKEN_PREFIX, User
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
    "api.openapi",  # the API's description
}
WEBHOOK_ENDPOINTS = {"api.flux_event", "api.forge_event"}


def init_app(app: Flask) -> None:
    app.before_request(_identify)


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def trusted(address: str | None, networks: list[str]) -> bool:
    """Whether the peer address is in one of the CIDRs."""
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
    if request.routing_exception is not None and request.path.startswith("/api/"):
        return  # no such route or method (404, 405): nothing runs, nobody to identify
    settings = context.settings()
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer ") and request.path.startswith("/api/"):
        g.user = _token_user(authorization.removeprefix("Bearer ").strip())
        return
    address = request.remote_addr
    if settings.identity == "dev":
        if not _is_loopback(address):
            raise Forbidden("dev identity serves loopback only; configure identity = proxy")
        name = _header("X-Forwarded-User") or DEV_USER
    else:
        if not trusted(address, settings.trusted_proxies):
            raise Unauthenticated(f"requests must come through the trusted proxy, not {address}")
        name = _header("X-Forwarded-User")
        if not name:
            raise Unauthenticated("no X-Forwarded-User header from the proxy")
    if not models.USER_NAME.match(name):
        raise Unauthenticated(f"X-Forwarded-User: not a valid user name: {name!r}")
    name = models.fold_name(name)
    groups = frozenset(
        models.fold_name(part) for part in _header("X-Forwarded-Groups").split(",") if part.strip()
    )
    email = _header("X-Forwarded-Email") or f"{name}@{settings.domain}"
    admin = name in settings.admins or settings.admin_group in groups
    g.user = User(name=name, email=email, groups=groups, admin=admin)


def _header(name: str) -> str:
    """An identity header that arrived once (see the module's docstring), stripped."""
    value = request.headers.get(name, "")
    if ", " in value or (name != "X-Forwarded-Groups" and "," in value):
        raise BadRequest(
            f"{name}: sent more than once (or joined with ', '); the proxy must send it once"
            + (", the groups separated by ',' alone" if name == "X-Forwarded-Groups" else "")
        )
    return value.strip()


def _token_user(token: str) -> User:
    """The API token's own principal, found by constant-time comparison of SHA-256
    digests: ``token:<name>`` with its configured groups and admin flag, nothing else."""
    settings = context.settings()
    digest = hashlib.sha256(token.encode()).hexdigest()
    for name, entry in settings.api_tokens.items():
        if hmac.compare_digest(digest, entry.sha256):
            return User(
                name=TOKEN_PREFIX + name,
                email=entry.email or settings.committer_email,  # no person's address
                groups=frozenset(entry.groups),
                admin=entry.admin,
                token=True,
            )
    raise Unauthenticated("Authorization: unknown API token")
