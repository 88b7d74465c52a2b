"""Proves the GitHub and Gitea/Forgejo adapters speak each forge's documented REST API and
webhooks (against wire-level fakes): the PR lifecycle across pages, PRs merged outside the
bridge, signature checks, and the translation of every failure into our errors without the
token ever appearing in one."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from gitops_bridge import errors, forge
from tests.forgefakes import FakeGitea, FakeGitHub, free_closed_port

SECRET = "webhook-s3cret"
BRANCH = "changes/team-a/web-abc123/update-7f3k2a"
KINDS = ["github", "github-enterprise", "gitea", "forgejo"]


def adapter(kind: str, fake: FakeGitHub | FakeGitea, **overrides: Any) -> forge.Forge:
    options: dict[str, Any] = {
        "url": fake.url,
        "repo": f"{fake.owner}/{fake.repo}",
        "token": fake.token,
        "webhook_secret": SECRET,
        "timeout": 5.0,
        **overrides,
    }
    return forge.make("github" if kind.startswith("github") else kind, **options)


@dataclass
class Case:
    kind: str
    fake: FakeGitHub | FakeGitea
    client: forge.Forge

    @property
    def github(self) -> bool:
        return self.kind.startswith("github")

    def make(self, **overrides: Any) -> forge.Forge:
        return adapter(self.kind, self.fake, **overrides)

    def pulls_path(self, suffix: str = "") -> str:
        root = "/api/v3" if self.kind == "github-enterprise" else ""
        if not self.github:
            root = "/api/v1"
        return f"{root}/repos/team/gitops/pulls{suffix}"


@pytest.fixture(params=KINDS)
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    kind: str = request.param
    fake: FakeGitHub | FakeGitea
    if kind.startswith("github"):
        fake = FakeGitHub(prefix="/api/v3" if kind == "github-enterprise" else "")
    else:
        fake = FakeGitea(forgejo=kind == "forgejo")
    with fake:
        yield Case(kind, fake, adapter(kind, fake))


def expect(error: type[errors.BridgeError], call: Callable[[], object], *tokens: str) -> Any:
    """Run ``call``; it must raise ``error``, and no token may appear anywhere in it."""
    with pytest.raises(error) as info:
        call()
    exc = info.value
    texts = [str(exc), repr(exc), exc.message, json.dumps(exc.to_dict())]
    cause = exc.__cause__
    while cause is not None:
        texts.append(str(cause))
        cause = cause.__cause__
    for token in tokens:
        assert all(token not in text for text in texts), f"token leaked in {texts}"
    return exc


def open_pr(case: Case, branch: str = BRANCH) -> forge.PullRequest:
    return case.client.open_pull_request(
        branch=branch, base="main", title=f"Update {branch}", body="Requested by alice"
    )


# ------------------------------------------------------------------ lifecycle


def test_open_find_list_close(case: Case) -> None:
    pr = open_pr(case)
    assert pr.number == 1
    assert pr.branch == BRANCH
    assert pr.state == "open"
    assert pr.merge_commit is None  # GitHub's test-merge sha of an open PR is not a merge
    web = "pull" if case.github else "pulls"
    assert pr.url == f"{case.fake.web}/team/gitops/{web}/1"

    assert case.client.find_pull_request(BRANCH) == pr
    assert case.client.find_pull_request("changes/team-a/other/none") is None

    others = [open_pr(case, f"changes/team-a/web-abc123/update-{i}") for i in range(4)]
    before = len(case.fake.requests)
    listed = case.client.list_pull_requests()
    assert sorted(p.number for p in listed) == [1, 2, 3, 4, 5]
    assert {p.branch for p in listed} == {BRANCH, *(o.branch for o in others)}
    pages = [r for r in case.fake.requests[before:] if r.method == "GET"]
    assert len(pages) == 3  # 5 PRs, 2 per page on the fake

    closed = case.client.close_pull_request(pr.number)
    assert (closed.number, closed.state, closed.branch) == (1, "closed", BRANCH)
    assert case.fake.pulls[1].state == "closed"
    found = case.client.find_pull_request(BRANCH)
    assert found is not None and found.state == "closed"
    assert 1 not in {p.number for p in case.client.list_pull_requests()}
    everything = case.client.list_pull_requests(state="all")
    assert sorted(p.number for p in everything) == [1, 2, 3, 4, 5]
    assert {p.number: p.state for p in everything}[1] == "closed"


def test_find_returns_the_newest_pr_of_the_branch_in_any_state(case: Case) -> None:
    first = open_pr(case)
    for i in range(3):  # push the branch's PRs onto different pages
        open_pr(case, f"changes/team-b/api-{i}/scale-x")
    case.client.close_pull_request(first.number)
    second = open_pr(case)
    found = case.client.find_pull_request(BRANCH)
    assert found == second and found.state == "open" and found.number == 5
    case.fake.merge(second.number, merge_commit="c0ffee" * 6 + "abcd")
    found = case.client.find_pull_request(BRANCH)
    assert found is not None and (found.number, found.state) == (5, "merged")


def test_pr_merged_outside_is_seen_as_merged(case: Case) -> None:
    pr = open_pr(case)
    sha = case.fake.merge(pr.number, merge_commit="9f" * 20)

    found = case.client.find_pull_request(BRANCH)
    # who merged: Gitea's list says; GitHub's list (pull-request-simple) does not
    merged_by = None if case.github else "reviewer"
    assert found == forge.PullRequest(
        pr.number, pr.url, BRANCH, "merged", "9f" * 20, merged_by=merged_by
    )
    listed = case.client.list_pull_requests(state="all")
    assert [(p.state, p.merge_commit) for p in listed] == [("merged", sha)]
    assert case.client.list_pull_requests() == []

    headers, body = case.fake.webhook_delivery(pr.number, SECRET)
    assert json.loads(body)["action"] == "closed"
    event = case.client.parse_webhook(headers=headers, body=body)
    assert event == forge.PullRequestEvent(branch=BRANCH, number=pr.number, state="merged")


def test_webhook_reports_open_and_closed_without_merge(case: Case) -> None:
    pr = open_pr(case)
    headers, body = case.fake.webhook_delivery(pr.number, SECRET)
    assert case.client.parse_webhook(headers=headers, body=body) == forge.PullRequestEvent(
        BRANCH, pr.number, "open"
    )
    case.fake.close(pr.number)
    headers, body = case.fake.webhook_delivery(pr.number, SECRET)
    lower = {k.lower(): v for k, v in headers.items()}  # header names are case-insensitive
    event = case.client.parse_webhook(headers=lower, body=body)
    assert event == forge.PullRequestEvent(BRANCH, pr.number, "closed")
    assert case.client.find_pull_request(BRANCH) == forge.PullRequest(
        pr.number, pr.url, BRANCH, "closed", None
    )


# ------------------------------------------------------------------ webhook signatures


def test_webhook_with_bad_or_missing_signature_is_refused(case: Case) -> None:
    pr = open_pr(case)
    headers, body = case.fake.webhook_delivery(pr.number, SECRET)
    parse = case.client.parse_webhook

    tampered = body.replace(b'"opened"', b'"closed"')
    assert tampered != body
    expect(errors.Unauthenticated, lambda: parse(headers=headers, body=tampered))

    forged, forged_body = case.fake.webhook_delivery(pr.number, "not-the-secret")
    expect(errors.Unauthenticated, lambda: parse(headers=forged, body=forged_body))

    unsigned = {k: v for k, v in headers.items() if "signature" not in k.lower()}
    expect(errors.Unauthenticated, lambda: parse(headers=unsigned, body=body))

    empty = {k: ("" if "signature" in k.lower() else v) for k, v in headers.items()}
    expect(errors.Unauthenticated, lambda: parse(headers=empty, body=body))

    no_secret = case.make(webhook_secret="")
    _, body_empty_key = case.fake.webhook_delivery(pr.number, "")
    signed_empty = case.fake.delivery_headers("pull_request", body_empty_key, "")
    exc = expect(
        errors.Unauthenticated,
        lambda: no_secret.parse_webhook(headers=signed_empty, body=body_empty_key),
    )
    assert "no webhook secret" in exc.message

    assert parse(headers=headers, body=body) is not None  # the genuine one still passes


def test_signature_header_format_is_the_forges_own(case: Case) -> None:
    pr = open_pr(case)
    headers, body = case.fake.webhook_delivery(pr.number, SECRET)
    if case.github:  # GitHub: "sha256=" + hex; the bare hex or the SHA-1 header is not enough
        bare = dict(headers, **{"X-Hub-Signature-256": headers["X-Hub-Signature-256"][7:]})
        expect(errors.Unauthenticated, lambda: case.client.parse_webhook(headers=bare, body=body))
        sha1_only = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
        expect(
            errors.Unauthenticated, lambda: case.client.parse_webhook(headers=sha1_only, body=body)
        )
    else:  # Gitea: bare hex; a "sha256=" prefix is not Gitea's format
        prefixed = dict(headers, **{"X-Gitea-Signature": "sha256=" + headers["X-Gitea-Signature"]})
        prefixed.pop("X-Forgejo-Signature", None)
        expect(
            errors.Unauthenticated, lambda: case.client.parse_webhook(headers=prefixed, body=body)
        )
    if case.kind == "forgejo":  # Forgejo's own header wins over the Gitea copy
        mixed = dict(headers, **{"X-Forgejo-Signature": "00" * 32})
        expect(errors.Unauthenticated, lambda: case.client.parse_webhook(headers=mixed, body=body))


def test_events_that_are_not_pull_requests_give_none(case: Case) -> None:
    push = {"ref": "refs/heads/main", "before": "0" * 40, "after": "1" * 40, "commits": []}
    headers, body = case.fake.event_delivery("push", push, SECRET)
    assert case.client.parse_webhook(headers=headers, body=body) is None
    headers, body = case.fake.event_delivery("ping", {"zen": "Keep it logically awesome."}, SECRET)
    assert case.client.parse_webhook(headers=headers, body=body) is None
    unsigned = {k: v for k, v in headers.items() if "signature" not in k.lower()}
    expect(errors.Unauthenticated, lambda: case.client.parse_webhook(headers=unsigned, body=body))


# ------------------------------------------------------------------ errors


def test_second_open_pr_for_a_branch_is_a_conflict_with_the_forges_message(case: Case) -> None:
    open_pr(case)
    exc = expect(errors.Conflict, lambda: open_pr(case), case.fake.token)
    assert not exc.retryable
    if case.github:
        assert "A pull request already exists for team:" + BRANCH in exc.message
    else:
        assert "pull request already exists for these targets" in exc.message
    assert len(case.fake.pulls) == 1


def test_wrong_token_is_forbidden(case: Case) -> None:
    wrong = "ghp_wrongTokenValue1234567890"
    adapter = case.make(token=wrong)
    exc = expect(errors.Forbidden, lambda: open_pr_with(adapter), wrong, case.fake.token)
    expected = "Bad credentials" if case.github else "invalid username, password or token"
    assert expected in exc.message and "401" in exc.message
    expect(errors.Forbidden, adapter.list_pull_requests, wrong)
    expect(errors.Forbidden, lambda: adapter.find_pull_request(BRANCH), wrong)
    expect(errors.Forbidden, lambda: adapter.close_pull_request(1), wrong)
    assert case.fake.pulls == {}


def open_pr_with(adapter: forge.Forge) -> forge.PullRequest:
    return adapter.open_pull_request(branch=BRANCH, base="main", title="t", body="b")


def test_unknown_pr_is_not_found_and_merged_pr_cannot_be_closed(case: Case) -> None:
    expect(errors.NotFound, lambda: case.client.close_pull_request(99), case.fake.token)
    pr = open_pr(case)
    case.fake.merge(pr.number)
    exc = expect(errors.Conflict, lambda: case.client.close_pull_request(pr.number))
    assert "merged" in exc.message


def test_server_down_is_retryable(case: Case) -> None:
    port = free_closed_port()
    url = f"http://127.0.0.1:{port}" + ("/api/v3" if case.kind == "github-enterprise" else "")
    down = case.make(url=url)
    calls: list[Callable[[], object]] = [
        lambda: open_pr_with(down),
        lambda: down.find_pull_request(BRANCH),
        down.list_pull_requests,
        lambda: down.close_pull_request(1),
    ]
    for call in calls:
        exc = expect(errors.RepoUnavailable, call, case.fake.token)
        assert exc.retryable and exc.status == 503


def test_timeout_and_5xx_are_retryable(case: Case) -> None:
    slow = case.make(timeout=0.3)
    case.fake.delay = 1.5
    exc = expect(errors.RepoUnavailable, slow.list_pull_requests, case.fake.token)
    assert exc.retryable
    case.fake.delay = 0.0

    case.fake.fail_next(502, {"message": "Server Error"})
    exc = expect(errors.RepoUnavailable, lambda: open_pr(case), case.fake.token)
    assert exc.retryable and "502" in exc.message
    case.fake.fail_next(503, None)  # an empty body, as a proxy would send
    expect(errors.RepoUnavailable, case.client.list_pull_requests, case.fake.token)
    case.fake.fail_next(200, None, {"Content-Type": "text/html"})  # not JSON at all
    expect(errors.RepoUnavailable, case.client.list_pull_requests)


def test_rate_limit_is_retryable_not_forbidden(case: Case) -> None:
    message = "API rate limit exceeded for installation ID 1."
    case.fake.fail_next(403, {"message": message}, {"X-RateLimit-Remaining": "0"})
    exc = expect(errors.RepoUnavailable, case.client.list_pull_requests, case.fake.token)
    assert message in exc.message
    case.fake.fail_next(429, {"message": "too many requests"}, {"Retry-After": "1"})
    expect(errors.RepoUnavailable, case.client.list_pull_requests, case.fake.token)


def test_token_echoed_by_the_forge_is_scrubbed(case: Case) -> None:
    token = case.fake.token
    case.fake.fail_next(401, {"message": f"token {token} was revoked"})
    exc = expect(errors.Forbidden, lambda: open_pr(case), token)
    assert "***" in exc.message
    case.fake.fail_next(422, {"message": "Validation Failed", "errors": [token]})
    expect(errors.Conflict, lambda: open_pr(case), token)


def test_redirects_and_page_links_to_another_host_are_not_followed(case: Case) -> None:
    with FakeGitHub() as elsewhere:
        target = f"{elsewhere.origin}/repos/team/gitops/pulls"
        case.fake.fail_next(307, None, {"Location": target})
        expect(errors.BridgeError, case.client.list_pull_requests, case.fake.token)
        if case.github:
            link = f'<{target}?page=2>; rel="next"'
            case.fake.fail_next(200, [], {"Link": link})
            expect(errors.RepoUnavailable, case.client.list_pull_requests, case.fake.token)
        assert elsewhere.requests == []  # the token never went there


# ------------------------------------------------------------------ request shapes


def test_requests_have_the_documented_shape(case: Case) -> None:
    pr = open_pr(case)
    case.client.find_pull_request(BRANCH)
    case.client.list_pull_requests()
    case.client.close_pull_request(pr.number)
    create, find, listing, close = case.fake.requests
    token = case.fake.token

    assert (create.method, create.path) == ("POST", case.pulls_path())
    assert create.json == {
        "title": f"Update {BRANCH}",
        "head": BRANCH,
        "base": "main",
        "body": "Requested by alice",
    }
    assert create.headers["content-type"] == "application/json"
    assert (close.method, close.path, close.json) == (
        "PATCH",
        case.pulls_path(f"/{pr.number}"),
        {"state": "closed"},
    )
    assert (find.method, find.path) == ("GET", case.pulls_path())
    assert (listing.method, listing.path) == ("GET", case.pulls_path())
    for request in case.fake.requests:
        assert request.headers.get("user-agent")
        if case.github:
            assert request.headers["authorization"] == f"Bearer {token}"
            assert request.headers["accept"] == "application/vnd.github+json"
            assert request.headers["x-github-api-version"] == "2022-11-28"
        else:
            assert request.headers["authorization"] == f"token {token}"
    if case.github:
        assert find.query == {"state": "all", "head": f"team:{BRANCH}", "per_page": "100"}
        assert listing.query == {"state": "open", "per_page": "100"}
    else:
        assert find.query == {"state": "all", "page": "1", "limit": "50"}
        assert listing.query == {"state": "open", "page": "1", "limit": "50"}


def test_github_follows_the_link_header_and_gitea_the_total_count(case: Case) -> None:
    for i in range(5):
        open_pr(case, f"changes/g/app-{i}/update")
    before = len(case.fake.requests)
    assert len(case.client.list_pull_requests(state="all")) == 5
    pages = case.fake.requests[before:]
    assert [r.query.get("page", "1") for r in pages] == ["1", "2", "3"]
    assert all(r.query["state"] == "all" for r in pages)
    if not case.github:
        # page 3 is short but Gitea's X-Total-Count says all 5 are in: no 4th request
        assert all(r.query["limit"] == "50" for r in pages)


# ------------------------------------------------------------------ make()


def test_make_validates_its_arguments() -> None:
    common: dict[str, Any] = {
        "url": "https://api.github.com",
        "token": "t0k",
        "webhook_secret": "s",
    }
    with pytest.raises(ValueError, match="forge kind"):
        forge.make("gitlab", repo="a/b", **common)
    with pytest.raises(ValueError, match="forge kind"):
        forge.make("none", repo="a/b", **common)
    for repo in ("a", "a/", "/b", "a/b/c"):
        with pytest.raises(ValueError, match="owner/name"):
            forge.make("github", repo=repo, **common)
    with pytest.raises(ValueError, match="forge url"):
        forge.make("github", repo="a/b", **{**common, "url": "ftp://example.com"})
    with pytest.raises(ValueError, match="credentials"):
        forge.make("gitea", repo="a/b", **{**common, "url": "https://u:p@git.example.com"})
    with pytest.raises(ValueError, match="token") as info:
        forge.make("github", repo="a/b", **{**common, "token": "abc\ndef"})
    assert "abc" not in str(info.value)
    assert forge.make("github", repo="a/b", **common).name == "github"
    assert forge.make("forgejo", repo="a/b", **common).name == "gitea"


def test_gitea_url_may_already_end_in_api_v1() -> None:
    with FakeGitea() as fake:
        adapter = forge.make(
            "gitea",
            url=fake.url + "/api/v1/",
            repo="team/gitops",
            token=fake.token,
            webhook_secret=SECRET,
        )
        assert adapter.list_pull_requests() == []
        assert fake.requests[0].path == "/api/v1/repos/team/gitops/pulls"
