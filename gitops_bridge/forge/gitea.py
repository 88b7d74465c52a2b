"""Gitea and Forgejo pull requests over the REST API (``/api/v1``).

Endpoints: ``POST/GET /api/v1/repos/{owner}/{repo}/pulls``, ``PATCH .../pulls/{index}``;
lists are paged with ``page``/``limit`` and counted by ``X-Total-Count``. The list has no
head-branch filter, so :meth:`Gitea.find_pull_request` reads every page and filters on
``head.ref``. Webhooks: ``X-Gitea-Event`` (Forgejo also ``X-Forgejo-Event``) and
``X-Gitea-Signature`` / ``X-Forgejo-Signature``: the bare hex HMAC-SHA256 of the raw body.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from gitops_bridge import errors
from gitops_bridge.forge import base as common

LIMIT = 50  # Gitea's default [api] MAX_RESPONSE_ITEMS; the server may cap it lower
MAX_PAGES = 1000


class Gitea(common.PullRequestApi):
    name = "gitea"

    def __init__(
        self, *, url: str, repo: str, token: str, webhook_secret: str, timeout: float = 10.0
    ) -> None:
        owner, name = common.split_repo(repo)
        root = url.rstrip("/")
        if not root.endswith("/api/v1"):
            root += "/api/v1"
        self._pulls = f"/repos/{common.quote(owner)}/{common.quote(name)}/pulls"
        self._secret = webhook_secret
        self._api = common.Api(
            forge=self.name,
            base_url=root,
            headers={
                "Authorization": f"token {token}",
                "Accept": "application/json",
                "User-Agent": "gitops-bridge",
            },
            token=token,
            timeout=timeout,
            error_message=_error_message,
        )

    def find_pull_request(self, branch: str) -> common.PullRequest | None:
        found = [pr for pr in self._pages("all") if pr.branch == branch]
        return max(found, key=lambda pr: pr.number, default=None)

    def list_pull_requests(
        self, *, state: Literal["open", "all"] = "open"
    ) -> list[common.PullRequest]:
        return list(self._pages(state))

    def parse_webhook(
        self, *, headers: Mapping[str, str], body: bytes
    ) -> common.PullRequestEvent | None:
        # Forgejo sends both headers with the same value; when its own is present, it counts.
        signature = common.header(headers, "X-Forgejo-Signature")
        if signature is None:
            signature = common.header(headers, "X-Gitea-Signature")
        common.verify_signature(
            forge=self.name, secret=self._secret, given=signature, expected_prefix="", body=body
        )
        event = common.header(headers, "X-Forgejo-Event") or common.header(headers, "X-Gitea-Event")
        if event != "pull_request":
            return None
        return common.pull_request_event(
            common.load_event(forge=self.name, body=body), forge=self.name
        )

    def _pages(self, state: str) -> Iterator[common.PullRequest]:
        seen = 0
        for page in range(1, MAX_PAGES + 1):
            query: dict[str, str | int] = {"state": state, "page": page, "limit": LIMIT}
            reply = self._api.call("GET", self._api.url(self._pulls, query))
            items = common.require_list(reply.data, forge=self.name)
            for item in items:
                yield self._pull(item)
            seen += len(items)
            total = _int(reply.headers.get("x-total-count"))
            if not items or (total is not None and seen >= total):
                return
        raise errors.RepoUnavailable(f"gitea: more than {MAX_PAGES} pages of pull requests")

    def _pull(self, data: Any) -> common.PullRequest:
        merged = common.field(data, "merged") is True
        sha = common.field(data, "merge_commit_sha")
        return common.PullRequest(
            number=common.require_int(data, "number", forge=self.name),
            url=common.require_str(data, "html_url", forge=self.name),
            branch=common.require_str(data, "head", "ref", forge=self.name),
            state=common.pr_state(state=common.field(data, "state"), merged=merged),
            merge_commit=sha if merged and isinstance(sha, str) and sha else None,
            merged_by=common.login(data, "merged_by") if merged else None,
        )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _error_message(data: Any) -> str:
    """``{"message": "...", "url": ".../api/swagger"}``, sometimes with ``errors``."""
    message = common.field(data, "message")
    parts = [message] if isinstance(message, str) and message else []
    details = common.field(data, "errors")
    parts += [str(d) for d in details if d] if isinstance(details, list) else []
    return ": ".join(parts)
