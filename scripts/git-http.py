#!/usr/bin/env python3
"""Serve bare Git repositories over smart HTTP (``git http-backend``), read-only.

For the opt-in real-cluster test: Flux's GitRepository accepts http, https and ssh URLs
only, so the bridge's embedded remote is served to the cluster this way.
Usage: git-http.py ROOT [PORT]   (repositories are ROOT/<name>.git)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from typing import Any
from wsgiref.simple_server import make_server


def app(root: str) -> Any:
    def serve(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "POST") or "receive-pack" in (
            environ.get("PATH_INFO", "") + environ.get("QUERY_STRING", "")
        ):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"read-only\n"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        env = {
            "GIT_PROJECT_ROOT": root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": environ.get("PATH_INFO", ""),
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": environ.get("HTTP_CONTENT_ENCODING", ""),
            "GIT_PROTOCOL": environ.get("HTTP_GIT_PROTOCOL", ""),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }
        result = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status, headers = "200 OK", []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            elif name:
                headers.append((name, value.strip()))
        start_response(status, headers)
        return [payload]

    return serve


if __name__ == "__main__":
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 8081
    with make_server("0.0.0.0", port, app(os.path.abspath(sys.argv[1]))) as server:
        server.serve_forever()
