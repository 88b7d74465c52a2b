"""The OpenAPI 3.1 description of the JSON API: ``openapi.yaml`` beside this module, served
as JSON at ``/api/v1/openapi.json``."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from gitops_bridge.render import yamlio

PATH = Path(__file__).with_name("openapi.yaml")


@functools.cache
def text() -> str:
    """The description as JSON text (read once)."""
    return json.dumps(yamlio.load(PATH.read_text(encoding="utf-8")), ensure_ascii=False)


def description() -> dict[str, Any]:
    """The description as a fresh dict (the caller may change it)."""
    data = json.loads(text())
    assert isinstance(data, dict)
    return data
