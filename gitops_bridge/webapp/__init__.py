"""The Flask application: ``create_app(settings=None)``, one blueprint per area."""

from __future__ import annotations

import logging

from flask import Flask, Response, request

from gitops_bridge import assets, config, metrics, runtime
from gitops_bridge.webapp import (  # noqa: F401
    api,
    auth,
    detail,
    errors,
    figures,
    forgery,
    ops,
    pages,
    review_pages,
    storage_pages,
    streams,
    ui,
)

log = logging.getLogger(__name__)


def create_app(
    settings: config.Settings | None = None, *, rt: runtime.Runtime | None = None
) -> Flask:
    settings = settings or config.load()
    rt = rt or runtime.open_runtime(settings)
    svc = rt.svc
    web = assets.web()
    app = Flask(
        __name__,
        template_folder=str(web / "templates"),
        static_folder=str(web / "static"),
        static_url_path="/static",
    )
    app.config.update(
        SECRET_KEY=rt.secret or runtime.local_secret(settings.data_dir),
        MAX_CONTENT_LENGTH=1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    app.extensions["gitops_bridge"] = svc
    app.extensions["gitops_bridge.settings"] = settings
    app.extensions["gitops_bridge.runtime"] = rt
    app.extensions["gitops_bridge.monitor"] = rt.monitor
    app.extensions["gitops_bridge.streams"] = streams.Streams.from_settings(settings.server)
    app.after_request(_count)
    auth.init_app(app)
    forgery.init_app(app, settings)  # cookies, CSRF, Origin and headers; needs the principal
    errors.init_app(app)
    app.register_blueprint(ops.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)  # with the routes of ui, review_pages, storage_pages
    return app


def _count(response: Response) -> Response:
    endpoint = request.endpoint or "unknown"
    metrics.inc(
        "gitops_bridge_http_requests_total", endpoint=endpoint, status=str(response.status_code)
    )
    return response
