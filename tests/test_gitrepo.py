"""The git write path against real bare remotes: plumbing commits, races, retries, recovery."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops_bridge import gitrepo, render
from gitops_bridge.errors import Conflict, RepoUnavailable
from tests.gitutil import files, git, head, init_bare, show

BRIDGE = gitrepo.Author("gitops-bridge", "bridge@example.com")
ALICE = gitrepo.Author("Alice Example", "alice@example.com")


def clone(tmp_path: Path, url: str, name: str = "clone", **kw: object) -> gitrepo.GitRepo:
    return gitrepo.GitRepo(path=tmp_path / name, url=url, committer=BRIDGE, **kw)  # type: ignore[arg-type]


def write(*manifests: tuple[str, str], deletes: tuple[str, ...] = ()) -> render.Change:
    return render.Change(
        message="test change",
        writes=tuple(render.Manifest(p, t) for p, t in manifests),
        deletes=deletes,
    )


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return init_bare(tmp_path / "remote.git")


def test_commit_is_authored_by_the_user_and_touches_only_changed_paths(
    tmp_path: Path, remote: Path
) -> None:
    repo = clone(tmp_path, remote.as_uri())
    repo.apply(lambda s: write(("a/x.yaml", "x: 1\n"), ("b/y.yaml", "y: 1\n")), author=BRIDGE)
    b_tree_before = git(remote, "rev-parse", "main:b")
    result = repo.apply(lambda s: write(("a/z.yaml", "z: 1\n")), author=ALICE)

    assert result.changed and result.sha == head(remote)
    assert git(remote, "log", "-1", "--format=%an <%ae>|%cn <%ce>") == (
        "Alice Example <alice@example.com>|gitops-bridge <bridge@example.com>"
    )
    assert git(remote, "diff", "--name-only", "main~1", "main") == "a/z.yaml"
    assert git(remote, "rev-parse", "main:b") == b_tree_before  # untouched subtree reused
    assert git(remote, "fsck", "--strict") == ""
    assert sorted(files(remote)) == ["a/x.yaml", "a/z.yaml", "b/y.yaml"]


def test_same_content_makes_no_commit(tmp_path: Path, remote: Path) -> None:
    repo = clone(tmp_path, remote.as_uri())
    first = repo.apply(lambda s: write(("a.yaml", "a: 1\n")), author=ALICE)
    again = repo.apply(lambda s: write(("a.yaml", "a: 1\n")), author=ALICE)
    assert not again.changed and again.sha == first.sha == head(remote)
    assert git(remote, "rev-list", "--count", "main") == "1"


def test_deleting_the_last_file_removes_the_folder(tmp_path: Path, remote: Path) -> None:
    repo = clone(tmp_path, remote.as_uri())
    repo.apply(lambda s: write(("t/g/apps/a.yaml", "a\n"), ("t/g/k.yaml", "k\n")), author=ALICE)
    repo.apply(lambda s: write(deletes=("t/g/apps/a.yaml",)), author=ALICE)
    assert files(remote) == ["t/g/k.yaml"]


def test_refusing_build_writes_nothing(tmp_path: Path, remote: Path) -> None:
    repo = clone(tmp_path, remote.as_uri())
    repo.apply(lambda s: write(("a.yaml", "a\n")), author=ALICE)
    before = head(remote)

    def refuse(snapshot: gitrepo.Snapshot) -> render.Change:
        raise Conflict("no")

    with pytest.raises(Conflict):
        repo.apply(refuse, author=ALICE)
    assert head(remote) == before
    assert repo.head() == before


def test_rejected_push_rebuilds_on_the_new_main(tmp_path: Path, remote: Path) -> None:
    ours = clone(tmp_path, remote.as_uri(), "ours", fetch_interval=3600)
    theirs = clone(tmp_path, remote.as_uri(), "theirs")
    ours.apply(lambda s: write(("base.yaml", "b\n")), author=ALICE)
    theirs.fetch()
    theirs.apply(lambda s: write(("theirs.yaml", "t\n")), author=ALICE)  # ours is now stale
    seen: list[set[str]] = []

    def build(snapshot: gitrepo.Snapshot) -> render.Change:
        seen.append(set(snapshot.files))
        return write(("ours.yaml", "o\n"))

    result = ours.apply(build, author=ALICE)
    assert result.attempts == 2
    assert seen == [{"base.yaml"}, {"base.yaml", "theirs.yaml"}]  # re-run on the fresh main
    assert sorted(files(remote)) == ["base.yaml", "ours.yaml", "theirs.yaml"]


def test_two_clones_pushing_concurrently_lose_nothing(tmp_path: Path, remote: Path) -> None:
    clones = [clone(tmp_path, remote.as_uri(), f"c{i}", push_attempts=40) for i in range(2)]
    per_clone = 12

    def work(index: int) -> None:
        for n in range(per_clone):
            path = f"apps/c{index}-{n}.yaml"
            clones[index].apply(lambda s, p=path: write((p, f"{p}\n")), author=ALICE)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    expected = sorted(f"apps/c{i}-{n}.yaml" for i in range(2) for n in range(per_clone))
    assert sorted(files(remote)) == expected
    assert git(remote, "rev-list", "--count", "main") == str(2 * per_clone)
    assert git(remote, "rev-list", "--min-parents=2", "main") == ""  # linear history


def test_unreachable_remote_is_retryable_and_commits_nothing_locally(tmp_path: Path) -> None:
    remote = init_bare(tmp_path / "remote.git")
    repo = clone(tmp_path, remote.as_uri())
    repo.apply(lambda s: write(("a.yaml", "a\n")), author=ALICE)
    before = repo.head()
    subprocess.run(["mv", str(remote), str(tmp_path / "gone.git")], check=True)
    with pytest.raises(RepoUnavailable) as info:
        repo.apply(lambda s: write(("b.yaml", "b\n")), author=ALICE)
    assert info.value.retryable and info.value.status == 503
    assert repo.head() == before


def test_stale_lock_files_are_cleared_on_open(tmp_path: Path, remote: Path) -> None:
    repo = clone(tmp_path, remote.as_uri())
    repo.apply(lambda s: write(("a.yaml", "a\n")), author=ALICE)
    lock = tmp_path / "clone" / "refs" / "remotes" / "origin" / "main.lock"
    lock.write_text("left by a crash\n")
    reopened = clone(tmp_path, remote.as_uri())
    assert not lock.exists()
    reopened.apply(lambda s: write(("b.yaml", "b\n")), author=ALICE)
    assert sorted(files(remote)) == ["a.yaml", "b.yaml"]


def test_snapshot_reads_content_and_last_changes(tmp_path: Path, remote: Path) -> None:
    repo = clone(tmp_path, remote.as_uri())
    first = repo.apply(
        lambda s: write(("t/a.yaml", "a: 1\n"), ("t/b.yaml", "b: 1\n")), author=ALICE
    )
    second = repo.apply(lambda s: write(("t/b.yaml", "b: 2\n")), author=BRIDGE)
    snap = repo.snapshot()
    assert snap.read("t/a.yaml") == b"a: 1\n" and snap.yaml("t/b.yaml") == {"b": 2}
    changes = repo.last_changes(snap.commit, "t")
    assert changes["t/a.yaml"].sha == first.sha and changes["t/a.yaml"].author == ALICE.name
    assert changes["t/b.yaml"].sha == second.sha
    third = repo.apply(lambda s: write(("t/a.yaml", "a: 3\n")), author=ALICE)  # incremental
    assert repo.last_changes(third.sha, "t")["t/a.yaml"].sha == third.sha
    assert repo.last_changes(third.sha, "t")["t/b.yaml"].sha == second.sha
    assert show(remote, "t/a.yaml") == "a: 3"
    assert repo.read_at(first.sha, "t/a.yaml") == b"a: 1\n"  # one path, no tree listing
    assert repo.read_at(first.sha, "t/missing.yaml") is None
    assert repo.read_at(first.sha, "t") is None  # a folder is not a file
    assert repo.read_at(None, "t/a.yaml") is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[str]:
    """A real `git daemon` serving tmp_path/served/remote.git with push enabled."""
    served = tmp_path / "served"
    served.mkdir()
    init_bare(served / "remote.git")
    port = _free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--listen=127.0.0.1",
            f"--port={port}",
            "--export-all",
            "--enable=receive-pack",
            f"--base-path={served}",
            str(served),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield f"git://127.0.0.1:{port}/remote.git"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_pushes_over_git_daemon(tmp_path: Path, git_daemon: str) -> None:
    repo = clone(tmp_path, git_daemon)
    result = repo.apply(lambda s: write(("a.yaml", "a\n")), author=ALICE)
    assert files(tmp_path / "served" / "remote.git") == ["a.yaml"]
    assert head(tmp_path / "served" / "remote.git") == result.sha


def test_maintenance_packs_objects_in_the_foreground(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gitrepo.writer, "MAINTAIN_EVERY", 3)
    repo = clone(tmp_path, remote.as_uri())
    assert git(tmp_path / "clone", "config", "gc.auto") == "0"  # no detached gc after fetch
    writes = tuple(render.Manifest(f"many/f{i}.yaml", f"n: {i}\n") for i in range(300))
    repo.apply(lambda s: render.Change("many objects", writes=writes), author=ALICE)
    for n in range(3):
        repo.apply(lambda s, n=n: write((f"x{n}.yaml", "x\n")), author=ALICE)
    stats = dict(
        line.split(": ") for line in git(tmp_path / "clone", "count-objects", "-v").splitlines()
    )
    assert int(stats["packs"]) >= 1 and int(stats["count"]) < 300
    assert git(tmp_path / "clone", "fsck") == ""
    assert repo.snapshot().read("many/f7.yaml") == b"n: 7\n"


def test_a_main_that_keeps_moving_gives_up_with_503_and_writes_nothing(
    tmp_path: Path, remote: Path
) -> None:
    ours = clone(tmp_path, remote.as_uri(), "ours", push_attempts=3, fetch_interval=3600)
    rival = clone(tmp_path, remote.as_uri(), "rival")
    ours.apply(lambda s: write(("base.yaml", "b\n")), author=ALICE)
    attempts = []

    def build(snapshot: gitrepo.Snapshot) -> render.Change:
        attempts.append(snapshot.commit)
        rival.fetch()  # another replica wins the race every time
        path = f"rival{len(attempts)}.yaml"
        rival.apply(lambda s: write((path, "r\n")), author=ALICE)
        return write(("ours.yaml", "o\n"))

    with pytest.raises(RepoUnavailable) as info:
        ours.apply(build, author=ALICE)
    assert len(attempts) == 3 and "gave up after 3 attempts" in info.value.message
    assert info.value.status == 503 and info.value.retryable
    assert "ours.yaml" not in files(remote)


def test_a_push_refused_by_the_remote_is_not_retried(tmp_path: Path, remote: Path) -> None:
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    repo = clone(tmp_path, remote.as_uri())
    calls = []

    def build(snapshot: gitrepo.Snapshot) -> render.Change:
        calls.append(1)
        return write(("a.yaml", "a\n"))

    with pytest.raises(RepoUnavailable) as info:
        repo.apply(build, author=ALICE)
    assert calls == [1] and "refused the push (pre-receive hook declined)" in info.value.message
    assert git(remote, "for-each-ref") == ""  # nothing reached the remote
