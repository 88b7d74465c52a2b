"""Wiring: the service, review, cluster monitor and background jobs, built from Settings."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from gitops_bridge import bootstrap, forge, gitrepo, leader, poller
from gitops_bridge.cluster import Cluster
from gitops_bridge.config import Settings
from gitops_bridge.gitrepo import Author, GitRepo
from gitops_bridge.identity import User
from gitops_bridge.monitor import Monitor
from gitops_bridge.review import Reviews
from gitops_bridge.service import Service

log = logging.getLogger(__name__)

DEMO_GROUP: dict[str, Any] = {
    "name": "demo",
    "quota": {"cpu": "4", "memory": "8Gi", "storage": "20Gi", "deployments": 10},
}


@dataclass
class Runtime:
    settings: Settings
    svc: Service
    monitor: Monitor
    elector: leader.LeaderElector | None = None
    scheduler: BackgroundScheduler | None = None
    secret: str = ""  # secret_key, or the key generated into data_dir (``local_secret``)

    def peer_token(self) -> str | None:
        """What replicas present to each other to fetch the leader's reading: derived from
        the secret (shared between replicas through ``secret_key``); None without one, and
        then no reading is served or fetched."""
        if not self.secret:
            return None
        return hmac.new(self.secret.encode(), b"gitops-bridge/reading", hashlib.sha256).hexdigest()

    def start_background(self) -> None:
        """Poll (or follow the leader), elect, and poll the forge, on a schedule."""
        if self.scheduler is not None:
            return
        scheduler = BackgroundScheduler(daemon=True)
        k = self.settings.kubernetes
        if self.monitor.poller is not None:
            if self.elector is not None:
                scheduler.add_job(
                    self.elector.tick, "interval", seconds=max(1.0, k.lease_seconds / 3)
                )
            scheduler.add_job(self.cycle, "interval", seconds=k.poll_interval, max_instances=1)
            threading.Thread(target=self.cycle, daemon=True).start()
        if self.svc.review is not None and self.svc.review.forge is not None:
            interval = self.settings.review.poll_interval
            scheduler.add_job(self.svc.review.sync, "interval", seconds=interval, max_instances=1)
        scheduler.start()
        self.scheduler = scheduler

    def cycle(self) -> None:
        """One poll: by the leader (or by everyone without election), else follow it."""
        pl = self.monitor.poller
        if pl is None:
            return
        if self.elector is None or self.elector.tick():
            pl.run_once()
            return
        pl.stop()  # a follower watches nothing: the leader's reading is the one shown
        if self.elector.leader_url:
            url = self.elector.leader_url.rstrip("/") + "/internal/v1/reading"
            token = self.peer_token()
            if token is None:
                log.warning("no secret to present to the leader: set secret_key")
                return
            reading = poller.follow(pl, url, token=token)
            if reading is not None:  # the graphs of usage go on while this replica follows
                self.monitor.usage.feed(reading)

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        if self.monitor.poller is not None:
            self.monitor.poller.stop()


STATE_FILE = "gitops-bridge-state.pickle"  # in the clone: the state kept for the next start


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
        push_deadline=settings.push_deadline,
        push_attempts=settings.push_attempts,
        fetch_interval=settings.fetch_interval,
    )
    repo.fetch()
    service = Service(settings, repo, stored=settings.clone_dir / STATE_FILE)
    service.review = Reviews(service, _forge(settings))
    if embedded is not None and repo.head() is None:
        initial = bootstrap.initial_change(
            cluster=settings.cluster, decryption=bool(settings.secrets.age_recipients)
        )
        repo.apply(lambda snap: initial if snap.commit is None else None, author=committer)
        if settings.demo_group:
            admin = User(
                name=settings.admins[0] if settings.admins else "admin",
                email=settings.committer_email,
                admin=True,
            )
            service.create_group(admin, DEMO_GROUP | {"members": list(settings.admins)})
    return service


def open_runtime(settings: Settings) -> Runtime:
    svc = open_service(settings)
    cluster = _cluster(settings)
    k = settings.kubernetes
    pl = None
    elector = None
    if cluster is not None:
        pl = poller.Poller(
            cluster,
            interval=k.poll_interval,
            flux_namespace=k.flux_namespace,
            kustomization=k.kustomization,
            gitrepository=k.gitrepository,
            page_size=k.page_size,
        )
        if k.lease_namespace:
            elector = leader.LeaderElector(
                cluster,
                namespace=k.lease_namespace,
                name=k.lease_name,
                identity=k.identity or leader.default_identity(),
                lease_seconds=k.lease_seconds,
                advertise_url=k.advertise_url,
            )
    monitor = Monitor(svc, cluster=cluster, poller=pl)
    svc.repo.on_push.append(
        lambda sha, paths: threading.Thread(
            target=monitor.request_reconcile, args=(paths,), daemon=True
        ).start()
    )
    secret = settings.secret_key or local_secret(settings.data_dir)
    return Runtime(settings=settings, svc=svc, monitor=monitor, elector=elector, secret=secret)


def local_secret(data_dir: Path) -> str:
    """A per-installation key kept in the data dir (set secret_key for replicas: theirs
    differ otherwise, and they can neither share sessions nor take each other's readings)."""
    path = data_dir / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # readable by the owner only from the start; a concurrent start keeps the first
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip()


def _cluster(settings: Settings) -> Cluster | None:
    k = settings.kubernetes
    if k.mode == "none":
        return None
    pool = settings.server.max_streams + 16  # every followed log, and the poller's calls
    kubeconfig = k.kubeconfig or (os.environ.get("KUBECONFIG") if k.mode == "auto" else None)
    if k.mode == "in-cluster" or (k.mode == "auto" and not kubeconfig):
        if k.mode == "auto" and "KUBERNETES_SERVICE_HOST" not in os.environ:
            return None
        return Cluster.connect(kubeconfig=None, timeout=k.timeout, pool_size=pool)
    return Cluster.connect(
        kubeconfig=kubeconfig, context=k.context, timeout=k.timeout, pool_size=pool
    )


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
