"""Shared fixtures: paths of the real tools and of the project's assets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gitops_bridge import tools

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def helm() -> str:
    return tools.binary("helm")


@pytest.fixture(scope="session")
def kubectl() -> str:
    return tools.binary("kubectl")


@pytest.fixture(scope="session")
def frpc() -> str:
    return tools.binary("frpc")


@pytest.fixture(scope="session")
def frps() -> str:
    return tools.binary("frps")


@pytest.fixture(scope="session")
def chart_dir() -> Path:
    return ROOT / "charts" / "generic-app"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(autouse=True)
def _no_user_git_config(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read the developer's ~/.gitconfig."""
    home = tmp_path_factory.getbasetemp() / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
