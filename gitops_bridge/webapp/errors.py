"""Errors to HTTP, in one place: JSON bodies on the API, a page elsewhere."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from gitops_bridge.errors import BridgeError, TooManyRequests

log = logging.getLogger(__name__)


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _bridge_error(exc: BridgeError) -> tuple[Response | str, int] | Response:
    if exc.status >= 500:
        log.warning("%s: %s", type(exc).__name__, exc.message)
    if isinstance(exc, TooManyRequests):
        response = jsonify(exc.to_dict()) if _wants_json() else Response(exc.message)
        response.status_code = exc.status
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if _wants_json():
        return jsonify(exc.to_dict()), exc.status
    return render_template("error.html", error=exc, status=exc.status), exc.status


def _http_error(exc: HTTPException) -> tuple[Response | str, int, list[tuple[str, str]]]:
    status = exc.code or 500
    # what the error itself says (405: Allow), in the body's own content type
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    if _wants_json():
        body = {"error": exc.name, "message": exc.description, "retryable": False}
        return jsonify(body), status, headers
    return render_template("error.html", error=exc, status=status), status, headers


def init_app(app: Flask) -> None:
    app.register_error_handler(BridgeError, _bridge_error)
    app.register_error_handler(HTTPException, _http_error)
