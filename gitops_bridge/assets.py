"""Where the files shipped beside the code live: web/, charts/, repo-template/.

In an installed wheel they are packaged under ``gitops_bridge/_assets``; in a
source checkout (editable install) they are the top-level folders of the project.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

_PACKAGED = Path(__file__).resolve().parent / "_assets"
_SOURCE = Path(__file__).resolve().parent.parent


def root() -> Path:
    return _PACKAGED if _PACKAGED.is_dir() else _SOURCE


def web() -> Path:
    return root() / "web"


def chart() -> Path:
    return root() / "charts" / "generic-app"


def repo_template() -> Path:
    return root() / "repo-template"


@functools.cache
def chart_version() -> str:
    """``version`` of the shipped chart's Chart.yaml (what ``chart push`` publishes)."""
    text = (chart() / "Chart.yaml").read_text(encoding="utf-8")
    found = re.search(r"^version:\s*['\"]?([^'\"\s#]+)", text, re.MULTILINE)
    if found is None:
        raise ValueError(f"{chart() / 'Chart.yaml'} has no version")
    return found.group(1)
