"""Where the files shipped beside the code live: web/, charts/, repo-template/.

In an installed wheel they are packaged under ``gitops_bridge/_assets``; in a
source checkout (editable install) they are the top-level folders of the project.
"""

from __future__ import annotations

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
