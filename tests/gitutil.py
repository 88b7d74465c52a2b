"""Helpers for tests that inspect real Git repositories with the git CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(repo: Path, *args: str) -> str:
    """Run git against a bare or normal repository and return stdout (stripped)."""
    flag = ["--git-dir", str(repo)] if (repo / "HEAD").exists() else ["-C", str(repo)]
    result = subprocess.run(
        ["git", *flag, *args], check=True, capture_output=True, text=True, timeout=60
    )
    return result.stdout.strip()


def head(repo: Path, ref: str = "main") -> str:
    return git(repo, "rev-parse", ref)


def files(repo: Path, ref: str = "main") -> list[str]:
    out = git(repo, "ls-tree", "-r", "--name-only", ref)
    return out.splitlines()


def show(repo: Path, path: str, ref: str = "main") -> str:
    return git(repo, "show", f"{ref}:{path}")


def init_bare(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    return path
