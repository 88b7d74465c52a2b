"""The app connected to the HTTP-level fake API server (``kubefake``) by a kubeconfig, as the
tests of the cluster's side use it, with group team-a provisioned as the platform would, and
Flux played by ``fluxstandin`` on the app's embedded remote. Test code.

Each test module keeps its fixtures (one may set more settings) and builds them from these."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests import kubelet
from tests.apputil import create_group, make_app
from tests.fluxstandin import FluxStandIn
from tests.kubefake import FakeKube

NS = "group-team-a"


@contextmanager
def fake_cluster() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.05) as server:  # quiet watches catch up quickly
        yield server


@contextmanager
def connected_app(tmp_path: Path, fake: FakeKube, **settings: Any) -> Iterator[Flask]:
    """The app on ``tmp_path/data``, reading ``fake``; ``kubernetes`` settings add to the
    connection's. Its poller's watches end with the context."""
    kubernetes = {
        "mode": "kubeconfig",
        "kubeconfig": str(fake.kubeconfig(tmp_path / "kubeconfig")),
        **settings.pop("kubernetes", {}),
    }
    built = make_app(tmp_path / "data", kubernetes=kubernetes, **settings)
    try:
        yield built
    finally:
        built.extensions["gitops_bridge.runtime"].stop()


def team_client(app: Flask, fake: FakeKube) -> FlaskClient:
    """A client of the app with group team-a made, and what the platform provisions out of
    band for exposure (never in Git): its namespace and frp Secret."""
    client = app.test_client()
    create_group(client)
    fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    fake.apply(kubelet.frp_token(NS))
    return client


def flux(fake: FakeKube, tmp_path: Path, helm: str, kubectl: str) -> FluxStandIn:
    """Flux on the remote of ``connected_app(tmp_path, ...)``."""
    return FluxStandIn(fake, remote=tmp_path / "data" / "remote.git", helm=helm, kubectl=kubectl)
