"""Pull-request adapters for review mode: one small interface (:class:`base.Forge`), one module
per forge. ``make`` builds the adapter named in the configuration.

    forge.make("github", url="https://api.github.com", repo="org/gitops", token=t, webhook_secret=s)
    forge.make("gitea", url="https://git.example.com", repo="org/gitops", ...)  # Forgejo too
"""

from __future__ import annotations

import urllib.parse

from gitops_bridge.forge import base, gitea, github
from gitops_bridge.forge.base import Forge, PullRequest, PullRequestEvent

__all__ = ["KINDS", "Forge", "PullRequest", "PullRequestEvent", "base", "make"]

KINDS = ("github", "gitea", "forgejo")


def make(
    kind: str, *, url: str, repo: str, token: str, webhook_secret: str, timeout: float = 10.0
) -> Forge:
    """The adapter for ``kind`` ("github", "gitea"; "forgejo" is an alias of "gitea").

    ``url`` is the API base: ``https://api.github.com``, ``https://host/api/v3`` (GitHub
    Enterprise) or ``https://host`` (Gitea/Forgejo; ``/api/v1`` is added). ``repo`` is
    ``owner/name``. Raises ValueError for an unknown kind or a malformed argument.
    """
    _check_url(url)
    base.split_repo(repo)
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise ValueError("token: must be non-empty, without spaces or control characters")
    if timeout <= 0:
        raise ValueError(f"timeout: must be > 0 seconds, got {timeout}")
    if kind == "github":
        return github.GitHub(
            url=url, repo=repo, token=token, webhook_secret=webhook_secret, timeout=timeout
        )
    if kind in ("gitea", "forgejo"):
        return gitea.Gitea(
            url=url, repo=repo, token=token, webhook_secret=webhook_secret, timeout=timeout
        )
    raise ValueError(f"forge kind: must be one of {', '.join(KINDS)}, got {kind!r}")


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"forge url: must be an http(s) API base URL, got {url!r}")
    if parts.username or parts.password:
        raise ValueError("forge url: must not carry credentials; pass the token separately")
