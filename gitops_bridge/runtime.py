"""Wiring: the service, its review workflow and forge, built from Settings."""

from __future__ import annotations

from typing import Any

from gitops_bridge import bootstrap, forge, gitrepo
from gitops_bridge.config import Settings
from gitops_bridge.gitrepo import Author, GitRepo
from gitops_bridge.identity import User
from gitops_bridge.review import Reviews
from gitops_bridge.service import Service


def open_service(settings: Settings) -> Service:
    """The service on its working clone; with no repo_url, an embedded remote under data_dir.

    A new embedded remote is initialised from repo-template/ and, when configured, gets
    a demo group whose members are the platform admins.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedded = settings.embedded_remote
    if embedded is not None:
        gitrepo.init_bare(embedded, branch=settings.branch)
    committer = Author(name=settings.committer_name, email=settings.committer_email)
    repo = GitRepo(
        path=settings.clone_dir,
        url=settings.remote_url,
        branch=settings.branch,
        committer=committer,
        push_attempts=settings.push_attempts,
        fetch_interval=settings.fetch_interval,
    )
    repo.fetch()
    service = Service(settings, repo)
    service.review = Reviews(service, _forge(settings))
    if embedded is not None and repo.head() is None:
        initial = bootstrap.initial_change(cluster=settings.cluster)
        repo.apply(lambda snap: initial if snap.commit is None else None, author=committer)
        if settings.demo_group:
            admin = User(
                name=settings.admins[0] if settings.admins else "admin",
                email=settings.committer_email,
                admin=True,
            )
            service.create_group(admin, DEMO_GROUP | {"members": list(settings.admins)})
    return service


DEMO_GROUP: dict[str, Any] = {
    "name": "demo",
    "quota": {"cpu": "4", "memory": "8Gi", "storage": "20Gi", "deployments": 10},
}


def _forge(settings: Settings) -> forge.Forge | None:
    review = settings.review
    if review.forge == "none":
        return None
    return forge.make(
        review.forge,
        url=review.forge_url,
        repo=review.forge_repo,
        token=review.forge_token.get_secret_value(),
        webhook_secret=review.webhook_secret.get_secret_value(),
    )
