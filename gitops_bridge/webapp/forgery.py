"""Against a hostile page next door: tenant apps are served on the platform's own site
(``*.code-hub.com``), where a page can toss cookies to the bridge's host, post forms to it,
or frame it.

- CSRF: a form's token is an HMAC (keyed with the app's secret) of the principal and a
  nonce kept in the session, so a token, or a whole session cookie, made for one principal
  is worth nothing to another.
- Cookies: behind the proxy (``identity = "proxy"``: browsers reach it over https) the
  session cookie is ``__Host-gitops-bridge``: Secure, ``Path=/``, no ``Domain``, so no other
  host of the site can set or overwrite it. The dev identity serves plain http on loopback,
  where browsers refuse ``__Host-`` and Secure cookies: there it is ``gitops-bridge``,
  without Secure, but still host-only, HttpOnly and SameSite=Lax; only loopback reaches it,
  and the token stays bound to the principal.
- Origin: a write (any method but GET, HEAD, OPTIONS) from a browser page of another origin
  is refused, forms and API alike (``Origin`` must name this host, as the browser saw it:
  ``Host``, or ``X-Forwarded-Host`` from a trusted proxy). Signed webhooks are exempt.
- Every answer carries a Content-Security-Policy (everything from this origin only, no
  inline script, no framing), ``X-Frame-Options: DENY``, ``X-Content-Type-Options:
  nosniff`` and ``Referrer-Policy: same-origin``.
- The JSON API takes JSON only: a cross-site form cannot send it without a CORS preflight,
  which the bridge never grants.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, request, session

from gitops_bridge.config import Settings
from gitops_bridge.errors import BadRequest, Forbidden
from gitops_bridge.webapp import auth, context

CSRF_FIELD = "csrf_token"
NONCE = "csrf_nonce"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data:",  # the empty favicon
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def init_app(app: Flask, settings: Settings) -> None:
    """After ``auth.init_app``: the checks need the principal."""
    behind_proxy = settings.identity == "proxy"
    app.config.update(
        SESSION_COOKIE_NAME="__Host-gitops-bridge" if behind_proxy else "gitops-bridge",
        SESSION_COOKIE_SECURE=behind_proxy,
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_DOMAIN=None,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.before_request(_check)
    app.after_request(_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token


def csrf_token() -> str:
    """The token for this principal's forms (a nonce is added to the session if needed)."""
    nonce = session.get(NONCE)
    if not isinstance(nonce, str):
        nonce = secrets.token_urlsafe(32)
        session[NONCE] = nonce
    return _token(context.user().name, nonce)


def _token(principal: str, nonce: str) -> str:
    key = str(current_app.secret_key).encode()
    message = f"gitops-bridge/csrf\0{principal}\0{nonce}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _check() -> None:
    if request.method in SAFE_METHODS or request.endpoint == "static":
        return
    if request.routing_exception is not None and request.path.startswith("/api/"):
        return  # no such route or method (404, 405): nothing runs
    if request.endpoint in auth.WEBHOOK_ENDPOINTS:  # machine callers prove themselves by HMAC
        return
    _check_origin()
    if request.path.startswith("/api/"):
        # also for bodiless POSTs: a cross-site HTML form cannot send this content type
        if request.method in ("POST", "PUT", "PATCH") and not request.is_json:
            raise BadRequest(
                "the API takes JSON: send Content-Type: application/json (an empty body is fine)"
            )
        return
    nonce = session.get(NONCE)
    user = g.get("user")
    given = request.form.get(CSRF_FIELD, "")
    if (
        not isinstance(nonce, str)
        or user is None
        or not hmac.compare_digest(_token(user.name, nonce), given)
    ):
        raise Forbidden("the form has expired or did not come from this site; reload and retry")


def _check_origin() -> None:
    """No Origin: not a browser, or one that sends none on this request; the token (forms)
    or the JSON rule (API) still holds. ``null`` (sandboxed or privacy-redirected) is
    refused like any other origin."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    host = urlsplit(origin).netloc.lower() if origin != "null" else ""
    if not host or host not in _own_hosts():
        raise Forbidden(
            f"Origin {origin}: writes are accepted from this site's own pages only; "
            "open the page from the bridge and retry"
        )


def _own_hosts() -> set[str]:
    hosts = {request.host.lower()}
    forwarded = request.headers.get("X-Forwarded-Host", "")
    settings = context.settings()
    if forwarded and auth.trusted(request.remote_addr, settings.trusted_proxies):
        hosts.add(forwarded.split(",")[0].strip().lower())
    return hosts


def _headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response
