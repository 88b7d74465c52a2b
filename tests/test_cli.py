"""The command line, as a real process: init-repo, group create, deploy, render (writes
nothing), manage actions, history, revert, and validate on what it made."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.gitutil import files, git, head


def cli(
    *args: str, data: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    extra = ["--data-dir", str(data)] if data is not None else []
    result = subprocess.run(
        [sys.executable, "-m", "gitops_bridge", *args, *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def out(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def test_init_repo_makes_one_commit_that_validates(tmp_path: Path) -> None:
    repo = tmp_path / "gitops"
    result = cli("init-repo", str(repo), "--cluster", "prod")
    assert "for cluster prod" in result.stdout
    assert git(repo, "rev-list", "--count", "HEAD") == "1"
    tracked = git(repo, "ls-files").splitlines()
    assert "clusters/prod/tenants.yaml" in tracked and "charts/generic-app/Chart.yaml" in tracked
    assert "tenants/kustomization.yaml" in tracked
    validated = cli("validate", str(repo))
    assert validated.stdout.strip() == "14 valid objects"  # tenants, notifications, the bridge
    again = cli("init-repo", str(repo), check=False)
    assert again.returncode != 0 and "not empty" in again.stderr


def test_deploy_manage_and_roll_back_from_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    remote = data / "remote.git"
    cli(
        "group",
        "create",
        "team-a",
        "--cpu",
        "2",
        "--memory",
        "4Gi",
        "--deployments",
        "3",
        "--members",
        "alice",
        data=data,
    )
    rendered = cli(
        "render",
        "team-a",
        "--name",
        "web",
        "--image",
        "nginx:1.27",
        "--env",
        "GREETING=hi there",
        "--as",
        "alice",
        data=data,
    )
    assert "# --- tenants/team-a/apps/web-" in rendered.stdout and "GREETING" in rendered.stdout
    before = head(remote)
    assert not any(f.endswith(".yaml") and "/apps/" in f for f in files(remote))
    assert head(remote) == before

    deployed = out(
        cli(
            "deploy",
            "team-a",
            "--name",
            "web",
            "--image",
            "nginx:1.27",
            "--replicas",
            "2",
            "--expose",
            "--as",
            "alice",
            data=data,
        )
    )
    name = deployed["name"]
    assert deployed["url"] == f"https://{name}.code-hub.com" and deployed["commit"] == head(remote)
    assert git(remote, "log", "-1", "--format=%an") == "alice"

    scaled = out(cli("scale", name, "4", "--as", "alice", data=data))
    cli("update", name, '{"image": "nginx:1.28"}', "--as", "alice", data=data)
    log = cli("history", name, "--as", "alice", data=data).stdout.splitlines()
    assert len(log) == 3 and "Scale" in log[1] and "replicas 2 -> 4" in log[1]
    reverted = out(cli("revert", name, scaled["commit"], "--as", "alice", data=data))
    assert reverted["commit"] == head(remote)
    assert "replicas: 2" in git(remote, "show", f"main:tenants/team-a/apps/{name}.yaml")

    refused = cli("scale", name, "99", "--as", "alice", data=data, check=False)
    assert refused.returncode == 2 and "replicas: must be 0..20, got 99" in refused.stderr
    outsider = cli("restart", name, "--as", "mallory", data=data, check=False)
    assert outsider.returncode == 2 and f"deployment {name!r} not found" in outsider.stderr
    assert "team-a" not in outsider.stderr  # not even who owns it

    updated = out(
        cli("group", "update", "team-a", "--cpu", "3", "--members", "alice,bob", data=data)
    )
    assert updated["changed"] is True
    assert git(remote, "log", "-1", "--format=%s") == (
        "Update group team-a: members +bob; quota cpu 2 -> 3"
    )

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True)
    assert cli("validate", str(clone)).returncode == 0


@pytest.mark.parametrize("bad", [["--env", "NOEQUALS"]])
def test_deploy_rejects_malformed_options(tmp_path: Path, bad: list[str]) -> None:
    result = cli(
        "deploy",
        "demo",
        "--name",
        "web",
        "--image",
        "nginx",
        *bad,
        data=tmp_path / "data",
        check=False,
    )
    assert result.returncode != 0 and "NAME=VALUE" in result.stderr
