"""A group's storage through the API: volumes as commits under the storage quota (with the
group's registry images counted), the mounting rules (ReadWriteOnce: one pod, Recreate, and
the quota knows it), deleting only on purpose, and image tags deleted and kept."""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gitops_bridge.render import yamlio
from tests.apputil import as_user, make_app, web
from tests.gitutil import git, head
from tests.registryutil import RegistryServer, layer, push_image
from tests.test_write_contention import replicas

ADMIN = {"X-Forwarded-User": "admin"}
ALICE = as_user("alice")
CLASSES = [
    {"name": "standard", "access_modes": ["ReadWriteOnce"], "expandable": True},
    {"name": "shared", "access_modes": ["ReadWriteMany", "ReadOnlyMany"], "expandable": False},
]
STORAGE = {"classes": CLASSES, "min_size": "1Mi"}


def group(client: FlaskClient, *, storage: str = "10Gi", cpu: str = "4", **extra: Any) -> None:
    body = {
        "name": "team-a",
        "members": ["alice"],
        "quota": {"cpu": cpu, "memory": "8Gi", "storage": storage, "deployments": 10},
        **extra,
    }
    assert client.post("/api/v1/groups", json=body, headers=ADMIN).status_code == 201


def volume(client: FlaskClient, name: str, size: str, **fields: Any) -> Any:
    body = {"name": name, "size": size, **fields}
    return client.post("/api/v1/groups/team-a/volumes", json=body, headers=ALICE)


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    return make_app(tmp_path / "data", storage=STORAGE).test_client()


def remote_of(client: FlaskClient) -> Path:
    return Path(client.application.extensions["gitops_bridge.settings"].data_dir) / "remote.git"


def test_a_volume_is_a_claim_flux_never_prunes_by_accident(client: FlaskClient) -> None:
    group(client)
    made = volume(client, "data", "2Gi")
    assert made.status_code == 201, made.json
    assert made.json["storageClass"] == "standard" and made.json["accessMode"] == "ReadWriteOnce"
    remote = remote_of(client)
    claim = yamlio.load(git(remote, "show", "main:tenants/team-a/apps/volumes/data.yaml"))
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["metadata"]["namespace"] == "group-team-a"
    assert claim["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/prune"] == "disabled"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "standard",
        "resources": {"requests": {"storage": "2Gi"}},
    }
    assert git(remote, "log", "-1", "--format=%an").strip() == "alice"
    listed = client.get("/api/v1/groups/team-a/volumes", headers=ALICE).json
    assert [(v["name"], v["size"], v["mountedBy"]) for v in listed] == [("data", "2Gi", [])]
    summary = client.get("/api/v1/groups/team-a/storage", headers=ALICE).json
    assert (summary["volumes"], summary["quota"]) == (2 * 2**30, 10 * 2**30)


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"name": "Data", "size": "1Gi"}, "name", "DNS label"),
        ({"name": "data", "size": "lots"}, "size", ""),
        ({"name": "data", "size": "1Gi", "storageClass": "gold"}, "storageClass", "one of"),
        ({"name": "data", "size": "1Gi", "accessMode": "ReadWriteMany"}, "accessMode", "offers"),
        ({"name": "data", "size": "600Gi"}, "size", "1Mi..500Gi"),
        ({"name": "data", "size": "1Gi", "owner": "x"}, "owner", "unknown field"),
    ],
)
def test_bad_volumes_are_refused_naming_the_field_and_write_nothing(
    client: FlaskClient, body: dict[str, Any], field: str, rule: str
) -> None:
    group(client)
    before = head(remote_of(client))
    response = client.post("/api/v1/groups/team-a/volumes", json=body, headers=ALICE)
    assert response.status_code == 422, response.json
    problems = {p["field"]: p["message"] for p in response.json["problems"]}
    assert rule in problems[field], problems
    assert head(remote_of(client)) == before


def test_the_storage_quota_counts_volumes_both_ways(client: FlaskClient) -> None:
    group(client, storage="5Gi")
    remote = remote_of(client)
    assert volume(client, "a", "3Gi").status_code == 201
    before = head(remote)
    refused = volume(client, "b", "3Gi")
    assert refused.status_code == 422 and refused.json["error"] == "QuotaExceeded"
    assert "volumes 3Gi + images 0 + requested 3Gi = 6Gi, allowed 5Gi" in refused.json["message"]
    assert head(remote) == before
    assert volume(client, "b", "2Gi").status_code == 201  # exactly the quota
    grown = client.patch("/api/v1/groups/team-a/volumes/a", json={"size": "4Gi"}, headers=ALICE)
    assert grown.status_code == 422 and "allowed 5Gi" in grown.json["message"]
    shrunk = client.patch("/api/v1/groups/team-a/volumes/a", json={"size": "1Gi"}, headers=ALICE)
    assert shrunk.status_code == 422 and "must not shrink" in shrunk.json["problems"][0]["message"]
    client.patch(
        "/api/v1/groups/team-a",
        json={"quota": {"cpu": "4", "memory": "8Gi", "storage": "10Gi", "deployments": 10}},
        headers=ADMIN,
    )
    grown = client.patch("/api/v1/groups/team-a/volumes/a", json={"size": "4Gi"}, headers=ALICE)
    assert grown.status_code == 200 and grown.json["size"] == "4Gi"
    shared = volume(client, "c", "1Gi", storageClass="shared", accessMode="ReadWriteMany")
    assert shared.status_code == 201
    fixed = client.patch("/api/v1/groups/team-a/volumes/c", json={"size": "2Gi"}, headers=ALICE)
    assert fixed.status_code == 422 and "does not allow volumes to grow" in fixed.text


def test_the_storage_quota_counts_the_groups_images(
    tmp_path: Path, registry_server: RegistryServer
) -> None:
    noise = random.Random(7).randbytes(1_200_000)  # gzip keeps it ~1.2 MB
    big = layer({"blob.bin": noise})
    pushed = push_image(registry_server.url, "team-a/web", "1.0", layers=[big])
    push_image(registry_server.url, "team-a/web", "1.1", layers=[big])  # shares the layer
    images = pushed.config[1] + sum(size for _, size in pushed.layers)
    registry = {"url": registry_server.url, "host": "registry:5000", "cache_seconds": 0}
    client = make_app(tmp_path / "data", storage=STORAGE, registry=registry).test_client()
    group(client, storage="2Mi")
    summary = client.get("/api/v1/groups/team-a/storage", headers=ALICE).json
    assert images > 1_200_000 and images < summary["images"] < images + 4096
    refused = volume(client, "data", "1Mi")
    assert refused.status_code == 422 and "images 1" in refused.json["message"]

    # over its quota because of images: a new deployment of its images is refused...
    client.patch(
        "/api/v1/groups/team-a",
        json={"quota": {"cpu": "4", "memory": "8Gi", "storage": "1Mi", "deployments": 10}},
        headers=ADMIN,
    )
    deploy = client.post(
        "/api/v1/groups/team-a/deployments",
        json=web("web", image="registry:5000/team-a/web:1.0"),
        headers=ALICE,
    )
    assert deploy.status_code == 422 and "Storage tab" in deploy.json["message"]
    # ...not an image from elsewhere
    other = client.post(
        "/api/v1/groups/team-a/deployments",
        json=web("other", image="docker.io/library/nginx:1.27"),
        headers=ALICE,
    )
    assert other.status_code == 201, other.json
    over = client.get("/api/v1/groups/team-a/storage", headers=ALICE).json
    assert over["over"] > 0 and over["free"] == 0


def test_three_replicas_racing_volume_creates_never_overshoot(tmp_path: Path) -> None:
    apps, remote = replicas(tmp_path, storage=STORAGE)
    group(apps[0].test_client(), storage="6Gi")
    base = head(remote)

    def create(index: int) -> int:
        client = apps[index % len(apps)].test_client()
        return int(volume(client, f"v{index}", "1Gi").status_code)

    with ThreadPoolExecutor(max_workers=9) as pool:
        statuses = Counter(pool.map(create, range(9), timeout=120))
    assert statuses == {201: 6, 422: 3}, statuses
    created = git(remote, "ls-tree", "--name-only", "main", "tenants/team-a/apps/volumes/")
    assert len(created.split()) == 6
    assert len(git(remote, "rev-list", f"{base}..main").split()) == 6


def test_mounting_follows_the_access_mode(client: FlaskClient) -> None:
    group(client, cpu="1")
    assert volume(client, "data", "1Gi").status_code == 201
    assert (
        volume(
            client, "media", "1Gi", storageClass="shared", accessMode="ReadWriteMany"
        ).status_code
        == 201
    )
    mount = [{"volume": "data", "path": "/var/lib/app"}]
    two = client.post(
        "/api/v1/groups/team-a/deployments",
        json=web("db", replicas=2, volumes=mount),
        headers=ALICE,
    )
    assert two.status_code == 422
    assert "ReadWriteOnce" in {p["field"]: p["message"] for p in two.json["problems"]}["replicas"]
    # 1 cpu: one pod of 600m fits, two (a rolling update's surge pod) would not
    one = client.post(
        "/api/v1/groups/team-a/deployments",
        json=web("db", replicas=1, volumes=mount, resources={"cpu": "600m", "memory": "128Mi"}),
        headers=ALICE,
    )
    assert one.status_code == 201, one.json
    name = one.json["name"]
    release = yamlio.load(git(remote_of(client), "show", f"main:tenants/team-a/apps/{name}.yaml"))
    assert release["spec"]["values"]["strategy"] == "Recreate"
    assert release["spec"]["values"]["volumes"] == [
        {"name": "data", "mountPath": "/var/lib/app", "readOnly": False}
    ]
    second = client.post(
        "/api/v1/groups/team-a/deployments",
        json=web("reader", volumes=[{"volume": "data", "path": "/data"}]),
        headers=ALICE,
    )
    assert second.status_code == 422 and f"mounted by {name}" in second.text
    # a new image for a Recreate deployment needs no room for a surge pod
    changed = client.patch(
        f"/api/v1/deployments/{name}",
        json={"image": "registry:5000/team-a/web:2.0"},
        headers=ALICE,
    )
    assert changed.status_code == 200, changed.json
    # ReadWriteMany: replicas and rolling updates
    many = client.post(
        "/api/v1/groups/team-a/deployments",
        json=web("web", replicas=1, volumes=[{"volume": "media", "path": "/srv/media"}]),
        headers=ALICE,
    )
    assert many.status_code == 201, many.json
    values = yamlio.load(
        git(remote_of(client), "show", f"main:tenants/team-a/apps/{many.json['name']}.yaml")
    )["spec"]["values"]
    assert "strategy" not in values
    missing = client.post(
        "/api/v1/groups/team-a/deployments",
        json=web("x", volumes=[{"volume": "nope", "path": "/x"}]),
        headers=ALICE,
    )
    assert missing.status_code == 422 and "no volume 'nope'" in missing.text
    overlap = client.post(
        "/api/v1/groups/team-a/deployments",
        json=web(
            "y",
            volumes=[
                {"volume": "media", "path": "/srv"},
                {"volume": "data", "path": "/srv/data"},
            ],
        ),
        headers=ALICE,
    )
    assert overlap.status_code == 422 and "overlaps" in overlap.text
    listed = client.get("/api/v1/groups/team-a/volumes", headers=ALICE).json
    assert {v["name"]: v["mountedBy"] for v in listed} == {
        "data": [name],
        "media": [many.json["name"]],
    }


def test_a_volume_is_deleted_only_on_purpose_and_not_while_mounted(client: FlaskClient) -> None:
    group(client)
    assert volume(client, "data", "1Gi").status_code == 201
    made = client.post(
        "/api/v1/groups/team-a/deployments",
        json=web("db", volumes=[{"volume": "data", "path": "/data"}]),
        headers=ALICE,
    )
    remote = remote_of(client)
    path = "/api/v1/groups/team-a/volumes/data"
    before = head(remote)
    typo = client.delete(path, json={"confirm": "dat"}, headers=ALICE)
    assert typo.status_code == 422 and typo.json["problems"][0]["field"] == "confirm"
    mounted = client.delete(path, json={"confirm": "data"}, headers=ALICE)
    assert mounted.status_code == 409 and made.json["name"] in mounted.json["message"]
    assert head(remote) == before
    assert (
        client.delete(f"/api/v1/deployments/{made.json['name']}", headers=ALICE).status_code == 200
    )
    assert "data.yaml" in git(
        remote, "ls-tree", "--name-only", "main", "tenants/team-a/apps/volumes/"
    )

    released = client.delete(path, json={"confirm": "data"}, headers=ALICE)
    assert released.status_code == 200 and released.json["state"] == "released"
    claim = yamlio.load(git(remote, "show", "main:tenants/team-a/apps/volumes/data.yaml"))
    assert "kustomize.toolkit.fluxcd.io/prune" not in claim["metadata"]["annotations"]
    remount = client.post(
        "/api/v1/groups/team-a/deployments",
        json=web("db2", volumes=[{"volume": "data", "path": "/data"}]),
        headers=ALICE,
    )
    assert remount.status_code == 422 and "being deleted" in remount.text
    deleted = client.delete(path, json={"confirm": "data"}, headers=ALICE)
    assert deleted.status_code == 200 and deleted.json["state"] == "deleted"
    assert git(remote, "ls-tree", "--name-only", "main", "tenants/team-a/apps/volumes/") == ""
    assert client.delete(path, json={"confirm": "data"}, headers=ALICE).status_code == 404
