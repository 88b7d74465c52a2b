"""kill -9 of the real service while its push is in flight, then a restart on the same data
dir: remote and working clone stay intact, main holds the whole commit or nothing of it,
stale locks are recovered, and a retried request is neither lost nor duplicated."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gitops_bridge import validate
from tests.apputil import TEAM_A, as_user, web
from tests.gitutil import files, git, head

ROOT = Path(__file__).resolve().parent.parent
HOOK_SLEEP = 2  # seconds the in-flight push is held in the remote's pre-receive hook


@dataclass
class Bridge:
    proc: subprocess.Popen[bytes]
    url: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def live_members(pgid: int) -> list[int]:
    """Processes of the group that have not exited (orphans outlive a killed leader)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(stat.parent.name))
    return pids


def call(
    url: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@pytest.fixture
def bridges(tmp_path: Path) -> Iterator[Callable[[Path], Bridge]]:
    """Start ``python -m gitops_bridge serve`` on a data dir (its own process group)."""
    started: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "serve.log"

    def start(data: Path) -> Bridge:
        port = free_port()
        command = [sys.executable, "-m", "gitops_bridge", "serve", "--port", str(port)]
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [*command, "--data-dir", str(data)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(proc)
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"serve exited with {proc.returncode}:\n{log.read_text()}")
            with suppress(OSError), urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                return bool(r.status == 200)
            return False

        wait_for(healthy, 60, f"{url}/healthz")
        return Bridge(proc=proc, url=url)

    try:
        yield start
    finally:
        for proc in started:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the server and any git it left
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def fsck(repo: Path) -> None:
    result = subprocess.run(
        ["git", "--git-dir", str(repo), "fsck", "--full", "--strict", "--no-dangling"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr
    for word in ("error", "missing", "broken", "corrupt", "bad"):
        assert word not in result.stderr.lower(), result.stderr


@pytest.mark.parametrize("kill", ["server", "process-group"])
def test_kill_during_push_then_restart(
    tmp_path: Path, bridges: Callable[[Path], Bridge], kill: str, helm: str, kubectl: str
) -> None:
    """``server``: only the Python process dies, the orphaned ``git push`` finishes (the
    commit lands, the client never hears of it). ``process-group``: the whole container
    dies with it (nothing lands). Either way the restart must recover."""
    data = tmp_path / "data"
    remote, clone = data / "remote.git", data / "clone.git"
    first = bridges(data)
    assert call(first.url, "POST", "/api/v1/groups", TEAM_A)[0] == 201
    before = head(remote)

    marker = tmp_path / "push-in-flight"
    hook = remote / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(f"#!/bin/sh\ncat >/dev/null\ntouch '{marker}'\nsleep {HOOK_SLEEP}\n")
    hook.chmod(0o755)
    body = web("inflight", replicas=2)
    retry = as_user("alice") | {"Idempotency-Key": "crash-test-1"}
    answer: list[object] = []

    def create() -> None:
        try:
            answer.append(call(first.url, "POST", "/api/v1/groups/team-a/deployments", body, retry))
        except OSError as exc:  # the connection dies with the server
            answer.append(exc)

    client = threading.Thread(target=create, daemon=True)
    client.start()
    wait_for(marker.exists, 30, "the push to reach the remote's pre-receive hook")
    if kill == "server":
        first.proc.kill()
    else:
        os.killpg(first.proc.pid, signal.SIGKILL)
    first.proc.wait(timeout=10)
    hook.unlink()
    client.join(timeout=30)
    assert len(answer) == 1 and isinstance(answer[0], OSError), answer  # never told "created"
    wait_for(lambda: not live_members(first.proc.pid), 30, "orphaned git processes to end")

    # -- both repositories are intact; main holds the whole commit or none of it
    fsck(remote)
    fsck(clone)
    after = head(remote)
    landed: str | None = None
    if after != before:
        assert git(remote, "rev-list", "--parents", "-n1", after).split() == [after, before]
        changed = git(remote, "diff", "--name-only", before, after).splitlines()
        [release] = [p for p in changed if "/apps/" in p]
        assert changed == [release]
        landed = Path(release).stem
        message = git(remote, "log", "-1", "--format=%an%n%B", after)
        assert message.startswith("alice\n") and "Gitops-Bridge-Request: " in message
    assert (landed is not None) == (kill == "server"), "the orphaned push should (not) land"

    # -- a crash mid-fetch leaves git's ref lock and our file lock behind
    stale = clone / "refs" / "remotes" / "origin" / "main.lock"
    stale.write_text(before + "\n")
    (clone / "gitops-bridge.lock").write_text("held by a process that is gone\n")

    second = bridges(data)
    assert not stale.exists()
    status, retried = call(second.url, "POST", "/api/v1/groups/team-a/deployments", body, retry)
    assert status == 201, retried
    assert retried["name"].startswith("inflight-")
    if landed is not None:  # the retry answers with what the killed server committed
        assert (retried["name"], retried["commit"]) == (landed, after)
    else:
        assert git(remote, "rev-list", "--parents", "-n1", "main").split()[1] == before
    status, fresh = call(
        second.url, "POST", "/api/v1/groups/team-a/deployments", web("after"), as_user("bob")
    )
    assert status == 201 and fresh["commit"] == head(remote), fresh
    assert git(remote, "log", "-1", "--format=%an|%cn") == "bob|gitops-bridge"

    # -- what the API lists is what main holds: each deployment exactly once
    status, listed = call(second.url, "GET", "/api/v1/groups/team-a/deployments")
    assert status == 200
    on_main = [
        Path(p).stem
        for p in files(remote)
        if p.startswith("tenants/team-a/apps/") and p.endswith(".yaml")
    ]
    assert sorted(d["name"] for d in listed) == sorted(on_main)
    assert sorted(on_main) == sorted([retried["name"], fresh["name"]])
    assert git(remote, "rev-list", "--min-parents=2", "main") == ""
    fsck(remote)
    fsck(clone)

    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(remote), str(checkout)], check=True, timeout=60)
    assert validate.validate_repo(checkout, helm=helm, kubectl=kubectl).findings == []
