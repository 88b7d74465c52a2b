"""Shared fixtures: paths of the real tools and of the project's assets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask

from gitops_bridge import tools
from tests.apputil import make_app
from tests.e2eutil import stack  # noqa: F401 (a fixture: the browser end-to-end stack)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from tests.registryutil import RegistryServer

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
SOPS_DECRYPT = ROOT / "tests" / "js" / "sops_decrypt.mjs"
TOOL_TIMEOUT = 60


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
def _no_user_git_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Tests never read the developer's ~/.gitconfig."""
    home = tmp_path_factory.getbasetemp() / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


# ---- browser tests: a live server on a fresh embedded remote, headless Chromium ---------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@dataclass
class LiveServer:
    url: str
    app: Flask
    remote: Path


@pytest.fixture
def live_overrides() -> dict[str, Any]:
    """Settings for the live server besides its data dir; a module overrides this fixture."""
    return {}


@pytest.fixture
def live_server(tmp_path: Path, live_overrides: dict[str, Any]) -> Iterator[LiveServer]:
    """The real app on 127.0.0.1:<free port>, its embedded bare remote under tmp_path/data."""
    from werkzeug.serving import make_server

    from gitops_bridge import config
    from gitops_bridge.webapp import create_app

    settings = config.load(data_dir=tmp_path / "data", **live_overrides)
    app = create_app(settings)
    remote = settings.embedded_remote
    assert remote is not None and (remote / "HEAD").is_file(), f"no bare remote at {remote}"
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(url=f"http://127.0.0.1:{server.server_port}", app=app, remote=remote)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install Debian's chromium package "
            "(apt-get install chromium); never `playwright install`",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def open_as(browser: Browser) -> Iterator[Callable[[str], Page]]:
    """A page per user (the dev identity trusts X-Forwarded-User from loopback)."""
    contexts = []

    def open_page(user: str) -> Page:
        context = browser.new_context(
            viewport={"width": 1280, "height": 900}, extra_http_headers={"X-Forwarded-User": user}
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


# ---- a real Docker registry 2.8 (Debian's docker-registry) on 127.0.0.1 -----------------


@pytest.fixture
def registry_server(tmp_path: Path) -> Iterator[RegistryServer]:
    """docker-registry on a free port with its own config and storage under tmp_path."""
    from tests.registryutil import running_registry

    with running_registry(tmp_path / "registry") as server:
        yield server


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    """The real app on a temporary data dir with its embedded remote (``remote``)."""
    return make_app(tmp_path / "data")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return tmp_path / "data" / "remote.git"


@pytest.fixture(scope="session")
def sops_age() -> Callable[[Path, str], Any]:
    """Decrypt a file with sops-age (installed by scripts/tools); returns the plaintext."""
    node = shutil.which("node")
    installed = tools.tools_dir() / "node" / "sops-age"
    if node is None or not (installed / "node_modules" / "sops-age").is_dir():
        pytest.fail(
            f"sops-age not installed in {installed}: run scripts/tools "
            "(needs Node.js 20+ and npm: apt-get install nodejs npm)",
            pytrace=False,
        )

    def decrypt(path: Path, identity: str) -> Any:
        key_file = path.with_suffix(".agekey")
        key_file.write_text(f"# test identity\n{identity}\n", encoding="utf-8")
        result = subprocess.run(
            [node, str(SOPS_DECRYPT), str(installed), str(path), str(key_file)],
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    return decrypt


@pytest.fixture(scope="session")
def age_cli() -> str:
    found = shutil.which("age")
    if found is None:
        pytest.fail("age not found: apt-get install age (scripts/test installs it)", pytrace=False)
    return found
