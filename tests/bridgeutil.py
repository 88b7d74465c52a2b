"""gitops-bridge's real app on a temporary embedded remote, with the cluster stand-ins:
the fake API server (``kubefake``) and Flux (``fluxstandin``). Test code."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from tests import kubelet
from tests.apputil import TEAM_A, as_user, create_group, make_app, web
from tests.fluxstandin import FluxStandIn
from tests.gitutil import git
from tests.kubefake import FakeKube

HR = ("helm.toolkit.fluxcd.io/v2", "HelmRelease")
KS = ("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
GIT = ("source.toolkit.fluxcd.io/v1", "GitRepository")
ALICE = as_user("alice")


class Bridge:
    """The app, a FakeKube and a FluxStandIn on one remote; groups are team-a unless said."""

    def __init__(
        self,
        data: Path,
        fake: FakeKube,
        helm: str,
        kubectl: str,
        *,
        settings: dict[str, Any] | None = None,
        **flux: Any,
    ) -> None:
        self.client: FlaskClient = make_app(data, **(settings or {})).test_client()
        self.remote = data / "remote.git"
        self.fake = fake
        self.flux = FluxStandIn(fake, remote=self.remote, helm=helm, kubectl=kubectl, **flux)
        self.add_group(TEAM_A)

    def add_group(self, body: dict[str, Any]) -> None:
        create_group(self.client, body)
        namespace = f"group-{body['name']}"
        # provisioned out of band, before anything is exposed (never in Git)
        if self.fake.get("v1", "Namespace", None, namespace) is None:
            self.fake.apply(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )
        self.fake.apply(kubelet.frp_token(namespace))

    def create(self, name: str, group: str = "team-a", **fields: Any) -> str:
        response = self.client.post(
            f"/api/v1/groups/{group}/deployments", json=web(name, **fields), headers=ALICE
        )
        assert response.status_code == 201, response.json
        return str(response.json["name"])  # type: ignore[index]

    def update(self, name: str, **fields: Any) -> None:
        response = self.client.patch(f"/api/v1/deployments/{name}", json=fields, headers=ALICE)
        assert response.status_code == 200, response.json

    def delete(self, name: str) -> None:
        response = self.client.delete(f"/api/v1/deployments/{name}", headers=ALICE)
        assert response.status_code == 200, response.json

    def release(self, name: str, group: str = "team-a") -> dict[str, Any]:
        found = self.fake.get(*HR, f"group-{group}", name)
        assert found is not None, f"no HelmRelease {name}"
        return found

    def pods(self, name: str, group: str = "team-a") -> list[dict[str, Any]]:
        return [
            p
            for p in self.fake.items("v1", "Pod", f"group-{group}")
            if p["metadata"]["labels"].get("app.kubernetes.io/instance") == name
        ]

    def edit_by_hand(self, tmp: Path, edits: dict[str, str | None], message: str) -> str:
        """A person's commit in a clone of the remote: path -> new text (None deletes)."""
        return edit_by_hand(self.remote, tmp, edits, message)


def edit_by_hand(remote: Path, tmp: Path, edits: dict[str, str | None], message: str) -> str:
    """A person's commit in a clone of ``remote`` (kept in ``tmp/hand``): path -> new text
    (None deletes); returns the commit."""
    work = tmp / "hand"
    if not work.exists():
        subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True)
    git(work, "pull", "-q", "--ff-only")
    for path, text in edits.items():
        target = work / path
        if text is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    git(work, "add", "-A")
    git(
        work,
        "-c",
        "user.name=Hand",
        "-c",
        "user.email=hand@example.com",
        "commit",
        "-qm",
        message,
    )
    git(work, "push", "-q", "origin", "HEAD:main")
    return git(work, "rev-parse", "HEAD").strip()


def ready(obj: dict[str, Any] | None) -> tuple[str, str, str]:
    """(status, reason, message) of an object's Ready condition."""
    assert obj is not None
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return condition["status"], condition["reason"], condition["message"]
    return ("", "", "")
