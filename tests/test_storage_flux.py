"""Volumes as Flux applies them (the Flux stand-in on the fake API server, real helm and
kubectl): a deployment with a volume renders valid, mounts the claim and rolls out with
Recreate, the claim is Bound; removing the deployment, reverting the volume's creation by
hand and breaking the group's reconcile all leave the claim; only the explicit delete, once
Flux applied its release, removes it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gitops_bridge import validate
from tests.apputil import as_user, make_app, web
from tests.bridgeutil import edit_by_hand, ready
from tests.fluxstandin import FluxStandIn
from tests.gitutil import git
from tests.kubefake import FakeKube

ADMIN = {"X-Forwarded-User": "admin"}
ALICE = as_user("alice")
NS = "group-team-a"
PVC = ("v1", "PersistentVolumeClaim")
KS = ("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
QUOTA = {"cpu": "4", "memory": "8Gi", "storage": "10Gi", "deployments": 10}


def test_a_volume_survives_everything_but_its_explicit_delete(
    tmp_path: Path, helm: str, kubectl: str
) -> None:
    data = tmp_path / "data"
    remote = data / "remote.git"
    client = make_app(data).test_client()
    body = {"name": "team-a", "members": ["alice"], "quota": QUOTA}
    assert client.post("/api/v1/groups", json=body, headers=ADMIN).status_code == 201
    made = client.post(
        "/api/v1/groups/team-a/volumes", json={"name": "data", "size": "1Gi"}, headers=ALICE
    )
    assert made.status_code == 201, made.json
    created_volume = made.json["commit"]
    app = client.post(
        "/api/v1/groups/team-a/deployments",
        json=web("db", volumes=[{"volume": "data", "path": "/var/lib/db"}]),
        headers=ALICE,
    )
    assert app.status_code == 201, app.json
    name = app.json["name"]

    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(remote), str(checkout)], check=True)
    report = validate.validate_repo(checkout, helm=helm, kubectl=kubectl)
    assert report.ok, [str(f) for f in report.findings]

    with FakeKube() as fake:
        fake.apply(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": "standard"},
                "provisioner": "rancher.io/local-path",
                "allowVolumeExpansion": True,
            }
        )
        flux = FluxStandIn(fake, remote=remote, helm=helm, kubectl=kubectl)
        flux.reconcile()
        claim = fake.get(*PVC, NS, "data")
        assert claim is not None and claim["status"]["phase"] == "Bound"
        assert claim["status"]["capacity"]["storage"] == "1Gi"
        deployment = fake.get("apps/v1", "Deployment", NS, name)
        assert deployment is not None
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        pod = deployment["spec"]["template"]["spec"]
        claims = {v["name"]: v.get("persistentVolumeClaim") for v in pod["volumes"]}
        assert claims["vol-data"]["claimName"] == "data"
        app_container = next(c for c in pod["containers"] if c["name"] == "app")
        assert {"name": "vol-data", "mountPath": "/var/lib/db"}.items() <= next(
            m for m in app_container["volumeMounts"] if m["name"] == "vol-data"
        ).items()

        # the deployment goes: the claim stays
        assert client.delete(f"/api/v1/deployments/{name}", headers=ALICE).status_code == 200
        flux.reconcile()
        assert fake.get("apps/v1", "Deployment", NS, name) is None
        assert fake.get(*PVC, NS, "data") is not None

        # someone reverts the volume's creation by hand: the claim stays
        hand = tmp_path / "hand"
        subprocess.run(["git", "clone", "-q", str(remote), str(hand)], check=True)
        who = ["-c", "user.name=Hand", "-c", "user.email=hand@example.com"]
        git(hand, *who, "revert", "--no-edit", created_volume)
        git(hand, "push", "-q", "origin", "HEAD:main")
        flux.reconcile()
        assert fake.get(*PVC, NS, "data") is not None
        git(hand, *who, "revert", "--no-edit", "HEAD")  # and back
        git(hand, "push", "-q", "origin", "HEAD:main")

        # a broken file stops the group's reconcile: the claim stays
        broken = "tenants/team-a/apps/broken.yaml"
        edit_by_hand(remote, tmp_path, {broken: "kind: [unclosed\n"}, "break the group")
        flux.reconcile()
        assert ready(fake.get(*KS, NS, "apps"))[0] == "False"
        assert fake.get(*PVC, NS, "data") is not None
        edit_by_hand(remote, tmp_path, {broken: None}, "repair the group")
        flux.reconcile()
        assert ready(fake.get(*KS, NS, "apps"))[0] == "True"

        # the explicit delete: released, applied by Flux, then removed and pruned
        path = "/api/v1/groups/team-a/volumes/data"
        first = client.delete(path, json={"confirm": "data"}, headers=ALICE)
        assert first.status_code == 200 and first.json["state"] == "released", first.json
        flux.reconcile()
        released = fake.get(*PVC, NS, "data")
        assert released is not None
        assert "kustomize.toolkit.fluxcd.io/prune" not in (
            released["metadata"].get("annotations") or {}
        )
        second = client.delete(path, json={"confirm": "data"}, headers=ALICE)
        assert second.status_code == 200 and second.json["state"] == "deleted", second.json
        flux.reconcile()
        assert fake.get(*PVC, NS, "data") is None
