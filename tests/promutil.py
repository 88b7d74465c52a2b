"""A real Prometheus (Debian's ``prometheus`` 2.42 with its ``promtool``) on 127.0.0.1.

Samples are written as OpenMetrics text (``openmetrics``), backfilled into a temporary
storage directory with ``promtool tsdb create-blocks-from openmetrics``, and served by
``prometheus`` on a free port with a configuration that scrapes nothing: the blocks are all
it has. Prometheus 2.42 serves backfilled blocks whose samples are minutes old (overlapping
blocks are on by default since 2.39), so the samples can sit in the last hour, where the
bridge asks. Nothing is installed here: scripts/test installs the package (apt-get install
prometheus); without it the tests are skipped with the reason, except in CI (``CI=true``),
where a missing binary fails them.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.registryutil import free_port

BINARIES = ("prometheus", "promtool")
READY_SECONDS = 30.0
CONFIG = "# scrapes nothing: the backfilled blocks are all this server has\nscrape_configs: []\n"


def binary(name: str) -> str | None:
    """``name`` on PATH, else Debian's ``/usr/bin/<name>``; None when neither is there."""
    found = shutil.which(name)
    if found is None and Path(f"/usr/bin/{name}").is_file():
        found = f"/usr/bin/{name}"
    return found


def missing() -> str | None:
    """Why the real Prometheus cannot run here (None: it can)."""
    absent = [name for name in BINARIES if binary(name) is None]
    if not absent:
        return None
    return (
        f"{' and '.join(absent)} not found (on PATH or in /usr/bin): scripts/test installs "
        "Debian's prometheus package (apt-get install prometheus)"
    )


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def skip_reason() -> str | None:
    """Skip only where a person runs the tests without the package; CI must run them."""
    reason = missing()
    return None if reason is None or in_ci() else reason


def require() -> tuple[str, str]:
    """The two binaries; the test fails (CI) or is skipped (elsewhere) without them."""
    reason = missing()
    if reason is not None:
        if in_ci():
            pytest.fail(f"{reason} (CI=true: the tests must run)", pytrace=False)
        pytest.skip(reason)
    prometheus, promtool = (binary(name) for name in BINARIES)
    assert prometheus is not None and promtool is not None
    return prometheus, promtool


@dataclass(frozen=True)
class Series:
    """One series: its metric name, labels and ``(Unix seconds, value)`` samples, in order."""

    name: str
    labels: Mapping[str, str]
    samples: Sequence[tuple[int, float]]


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def openmetrics(families: Mapping[tuple[str, str], Iterable[Series]]) -> str:
    """OpenMetrics text: each family ``(name, type)`` once (a counter's samples end in
    ``_total``), each series' samples together and in time order, ``# EOF`` last."""
    lines = []
    for (family, kind), members in families.items():
        lines.append(f"# TYPE {family} {kind}")
        for series in members:
            labels = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(series.labels.items()))
            for at, value in series.samples:
                assert math.isfinite(value)
                lines.append(f"{series.name}{{{labels}}} {value!r} {at}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


class PrometheusServer:
    """``prometheus`` on ``port`` (known before it starts, so an app can be configured with
    its URL first) over ``directory``'s storage; ``start`` may follow ``stop`` on the same
    port and storage."""

    def __init__(self, directory: Path) -> None:
        self.prometheus, self.promtool = require()
        self.directory = directory
        self.storage = directory / "storage"
        self.config = directory / "prometheus.yml"
        self.log = directory / "prometheus.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.config.write_text(CONFIG)

    def backfill(self, text: str) -> None:
        """Write ``text`` (OpenMetrics) into the storage as blocks, with promtool."""
        source = self.directory / "samples.om"
        source.write_text(text)
        done = subprocess.run(
            [
                self.promtool,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                str(source),
                str(self.storage),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            pytest.fail(f"promtool could not backfill: {done.stdout}{done.stderr}", pytrace=False)

    def start(self) -> None:
        """Start and wait until ``/-/ready`` answers 200."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.prometheus,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.storage}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                pytest.fail(f"prometheus exited: {self.log.read_text()[-2000:]}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"prometheus was not ready: {self.log.read_text()[-2000:]}", pytrace=False)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
