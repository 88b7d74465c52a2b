"""GitHub (and GitHub Enterprise Server) pull requests over the REST API, version 2022-11-28.

Endpoints: ``POST/GET /repos/{owner}/{repo}/pulls``, ``PATCH .../pulls/{number}``; pages
follow the ``Link: <...>; rel="next"`` header. Webhooks: ``X-GitHub-Event`` and
``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from gitops_bridge import errors
from gitops_bridge.forge import base as common

API_VERSION = "2022-11-28"
PER_PAGE = 100  # GitHub's maximum
MAX_PAGES = 1000
_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="([^"]*)"')


class GitHub(common.PullRequestApi):
    name = "github"

    def __init__(
        self, *, url: str, repo: str, token: str, webhook_secret: str, timeout: float = 10.0
    ) -> None:
        self.owner, name = common.split_repo(repo)
        self._pulls = f"/repos/{common.quote(self.owner)}/{common.quote(name)}/pulls"
        self._secret = webhook_secret
        self._api = common.Api(
            forge=self.name,
            base_url=url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "gitops-bridge",  # GitHub rejects requests without one
            },
            token=token,
            timeout=timeout,
            error_message=_error_message,
        )

    def find_pull_request(self, branch: str) -> common.PullRequest | None:
        query: dict[str, str | int] = {
            "state": "all",
            "head": f"{self.owner}:{branch}",
            "per_page": PER_PAGE,
        }
        found = [pr for pr in self._pages(query) if pr.branch == branch]
        return max(found, key=lambda pr: pr.number, default=None)

    def list_pull_requests(
        self, *, state: Literal["open", "all"] = "open"
    ) -> list[common.PullRequest]:
        return list(self._pages({"state": state, "per_page": PER_PAGE}))

    def parse_webhook(
        self, *, headers: Mapping[str, str], body: bytes
    ) -> common.PullRequestEvent | None:
        common.verify_signature(
            forge=self.name,
            secret=self._secret,
            given=common.header(headers, "X-Hub-Signature-256"),
            expected_prefix="sha256=",
            body=body,
        )
        if common.header(headers, "X-GitHub-Event") != "pull_request":
            return None
        return common.pull_request_event(
            common.load_event(forge=self.name, body=body), forge=self.name
        )

    def _pages(self, query: Mapping[str, str | int]) -> Iterator[common.PullRequest]:
        url: str | None = self._api.url(self._pulls, query)
        for _ in range(MAX_PAGES):
            if url is None:
                return
            reply = self._api.call("GET", url)
            for item in common.require_list(reply.data, forge=self.name):
                yield self._pull(item)
            url = _next_link(reply.headers.get("link"))
            if url is not None and not self._api.same_origin(url):
                raise errors.RepoUnavailable(
                    "github: pagination link points to another host; refusing to follow it"
                )
        raise errors.RepoUnavailable(f"github: more than {MAX_PAGES} pages of pull requests")

    def _pull(self, data: Any) -> common.PullRequest:
        merged = common.field(data, "merged") is True or common.field(data, "merged_at") is not None
        sha = common.field(data, "merge_commit_sha")
        return common.PullRequest(
            number=common.require_int(data, "number", forge=self.name),
            url=common.require_str(data, "html_url", forge=self.name),
            branch=common.require_str(data, "head", "ref", forge=self.name),
            state=common.pr_state(state=common.field(data, "state"), merged=merged),
            # Before a merge GitHub fills merge_commit_sha with its *test* merge commit.
            merge_commit=sha if merged and isinstance(sha, str) else None,
            merged_by=common.login(data, "merged_by") if merged else None,
        )


def _next_link(value: str | None) -> str | None:
    for target, rels in _LINK.findall(value or ""):
        if "next" in rels.split():
            return str(target)
    return None


def _error_message(data: Any) -> str:
    """``{"message": "Validation Failed", "errors": [{"message": ...} | {"field", "code"}]}``."""
    message = common.field(data, "message")
    parts = [message] if isinstance(message, str) and message else []
    details = common.field(data, "errors")
    for item in details if isinstance(details, list) else []:
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, dict):
            text = item.get("message")
            if not isinstance(text, str):
                text = " ".join(str(item[k]) for k in ("resource", "field", "code") if k in item)
            if text:
                parts.append(text)
    return ": ".join(parts)
