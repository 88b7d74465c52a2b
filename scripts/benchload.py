"""Served load, measured as a user would: ``python -m gitops_bridge serve`` (waitress) on a
repository of N real deployments in groups of 100 (``benchrepo``), a file:// remote, and
clients over HTTP with keep-alive, in this process.

Measured per size: start-up to the first answer with data, cold (a new data dir: clone and
read every file) and warm (a restart that finds the state the last run stored); RSS of the
server after start and after the load; one client's create; 20 clients' creates (latency
percentiles and throughput); 1,000 creates from 4 clients; the admin's Deployments page and
an API page. Afterwards every 201 is checked to be exactly one commit of one file on the
remote.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import benchrepo

from gitops_bridge import config

ROOT = Path(__file__).resolve().parent.parent
MEMBER = {"X-Forwarded-User": benchrepo.OWNER}
ADMIN = {"X-Forwarded-User": "root", "X-Forwarded-Groups": "platform-admins"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (the peak) of a process, MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **(headers or MEMBER)}
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=sent)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get_page(self, path: str) -> tuple[int, bytes, str | None]:
        """A page of a listing as the admin, and the path of the next (its Link header)."""
        self.conn.request("GET", path, headers=ADMIN)
        response = self.conn.getresponse()
        body = response.read()
        found = re.search(r'<([^>]+)>;\s*rel="next"', response.getheader("Link") or "")
        if found is None:
            return response.status, body, None
        parts = urllib.parse.urlsplit(found.group(1))
        return response.status, body, parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


@contextmanager
def serving(data: Path, remote: Path) -> Iterator[Server]:
    port = _free_port()
    env = os.environ | {
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GITOPS_BRIDGE_REPO_URL": remote.as_uri(),
        "GITOPS_BRIDGE_KUBERNETES__MODE": "none",
        "GITOPS_BRIDGE_SERVER__THREADS": "24",
        "MALLOC_ARENA_MAX": "2",  # as the Containerfile runs it
    }
    log = data.parent / f"serve-{port}.log"
    command = [sys.executable, "-m", "gitops_bridge", "serve", "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*command, "--data-dir", str(data)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Server(proc=proc, port=port, log=log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)


def first_answer(server: Server, name: str, started: float) -> float:
    """Seconds from ``started`` to the first 200 for one deployment."""
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"serve exited:\n{server.log.read_text()[-3000:]}")
        try:
            status, _ = Client(server.port).call("GET", f"/api/v1/deployments/{name}")
            if status == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.05)


def creates(port: int, groups: list[str], clients: int, total: int) -> tuple[list[float], float]:
    """``total`` creates from ``clients`` threads into random groups: latencies, wall time."""
    latencies: list[float] = []
    failures: list[str] = []
    counter = iter(range(total))
    lock = threading.Lock()
    tag = f"{random.randrange(36**4):04x}"

    def work(seed: int) -> None:
        client = Client(port)
        rng = random.Random(seed)
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            body = {"name": f"load{tag}{n}", "image": "registry:5000/x/app:1"}
            path = f"/api/v1/groups/{rng.choice(groups)}/deployments"
            begin = time.perf_counter()
            status, data = client.call("POST", path, body)
            took = time.perf_counter() - begin
            with lock:
                if status == 201:
                    latencies.append(took)
                else:
                    failures.append(f"{status} {data[:200]!r}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - begin
    if failures:
        raise AssertionError(f"{len(failures)} creates failed, e.g. {failures[:3]}")
    return latencies, wall


def commits_since(remote: Path, base: str) -> list[list[str]]:
    """The files each commit after ``base`` changed, oldest first."""
    out = subprocess.run(
        ["git", "log", "--reverse", "--format=%x01", "--name-only", f"{base}..main"],
        cwd=remote,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [[n for n in block.split("\n") if n] for block in out.split("\x01")[1:]]


def remote_head(remote: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "main"], cwd=remote, check=True, capture_output=True, text=True
    ).stdout.strip()


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(size: int, *, concurrent: int = 400, sequential: int = 1000) -> dict[str, float]:
    figures: dict[str, float] = {}
    # what the groups' quotas leave room for (a group of benchrepo takes 1,000 deployments)
    room = -(-size // benchrepo.PER_GROUP) * 1000 - size - 30
    concurrent = min(concurrent, room // 3)
    sequential = min(sequential, room - concurrent)
    figures["concurrent"], figures["sequential"] = concurrent, sequential
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        remote = root / "remote.git"
        settings = config.load(data_dir=root / "data", repo_url=remote.as_uri())
        generated = benchrepo.generate(remote, size, settings)
        last = generated.deployments[-1]
        data = root / "data"
        stored = settings.clone_dir / "gitops-bridge-state.pickle"

        started = time.perf_counter()
        with serving(data, remote) as server:
            figures["start_cold_s"] = first_answer(server, last, started)
            figures["rss_start_mib"] = rss_mib(server.proc.pid)[0]
            deadline = time.monotonic() + 120
            while not stored.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        if not stored.exists():
            raise RuntimeError(f"no stored state at {stored}")

        started = time.perf_counter()
        with serving(data, remote) as server:
            figures["start_warm_s"] = first_answer(server, last, started)
            figures["rss_warm_mib"] = rss_mib(server.proc.pid)[0]
            port = server.port
            client = Client(port)
            base = remote_head(remote)

            # reads: the admin's Deployments page and API pages
            samples, sizes = [], []
            for _ in range(5):
                begin = time.perf_counter()
                status, body = client.call("GET", "/deployments", headers=ADMIN)
                samples.append(time.perf_counter() - begin)
                sizes.append(len(body))
                assert status == 200, status
            figures["page_admin_s"] = statistics.median(samples)
            figures["page_admin_kb"] = statistics.median(sizes) / 1024
            samples = []
            url: str | None = "/api/v1/deployments?limit=100"
            while url is not None and len(samples) < 20:
                begin = time.perf_counter()
                status, body, link = client.get_page(url)
                samples.append(time.perf_counter() - begin)
                assert status == 200, (status, body[:300])
                url = link
            figures["api_page_s"] = statistics.median(samples)

            # one client
            one, _ = creates(port, generated.groups, 1, 30)
            figures["create_1_p50_s"] = statistics.median(one)
            # 20 clients
            many, wall = creates(port, generated.groups, 20, concurrent)
            figures["create_20_p50_s"] = statistics.median(many)
            figures["create_20_p99_s"] = pct(many, 0.99)
            figures["throughput_20"] = concurrent / wall
            # 1,000 creates from 4 clients
            four, wall4 = creates(port, generated.groups, 4, sequential)
            figures["create_4_p50_s"] = statistics.median(four)
            figures["throughput_4"] = sequential / wall4
            rss, peak = rss_mib(server.proc.pid)
            figures["rss_load_mib"], figures["rss_peak_mib"] = rss, peak

            written = commits_since(remote, base)
            expected = len(one) + len(many) + len(four)
            if len(written) != expected or any(len(files) != 1 for files in written):
                raise AssertionError(
                    f"{expected} creates answered 201 but the remote has {len(written)} "
                    f"commits ({sum(len(f) != 1 for f in written)} not of exactly one file)"
                )
            figures["commits"] = len(written)
    return figures


ROWS = (
    ("start-up to first answer with data, new data dir", lambda f: f"{f['start_cold_s']:.1f} s"),
    ("start-up, state stored by the last run", lambda f: f"{f['start_warm_s']:.2f} s"),
    (
        "RSS after start / after the load (peak)",
        lambda f: (
            f"{f['rss_warm_mib']:.0f} / {f['rss_load_mib']:.0f} ({f['rss_peak_mib']:.0f}) MiB"
        ),
    ),
    ("create, 1 client, p50", lambda f: f"{f['create_1_p50_s'] * 1000:.0f} ms"),
    (
        "create, 20 clients, p50 / p99",
        lambda f: f"{f['create_20_p50_s'] * 1000:.0f} / {f['create_20_p99_s'] * 1000:.0f} ms",
    ),
    (
        "throughput, 20 clients",
        lambda f: f"{f['throughput_20']:.0f} changes/s ({f['concurrent']:.0f} creates)",
    ),
    (
        "creates from 4 clients (1,000 where the quotas allow): p50, throughput",
        lambda f: (
            f"{f['create_4_p50_s'] * 1000:.0f} ms, {f['throughput_4']:.0f}/s "
            f"({f['sequential']:.0f})"
        ),
    ),
    (
        "admin's Deployments page",
        lambda f: f"{f['page_admin_s'] * 1000:.0f} ms, {f['page_admin_kb']:.0f} KiB",
    ),
    ("GET /api/v1/deployments?limit=100, a page", lambda f: f"{f['api_page_s'] * 1000:.0f} ms"),
    ("every 201 one commit of one file", lambda f: f"yes ({f['commits']:.0f} commits)"),
)


def table(sizes: list[int]) -> None:
    results = {}
    for size in sizes:
        results[size] = measure(size)
    print("| served | " + " | ".join(f"{size:,}" for size in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for label, show in ROWS:
        print(f"| {label} | " + " | ".join(show(results[size]) for size in sizes) + " |")


if __name__ == "__main__":
    table([int(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "100,2000,20000").split(",")])
