"""Proves the Flux stand-in decrypts SOPS files as kustomize-controller does (keys from the
decryption Secret's ``*.agekey`` entries, the decrypted Secret applied with exactly the values
set) and fails as it does (a tampered value, a missing Secret or key, no decryption
configured) with nothing applied; and that the fake API server treats Secrets as the real
one: stringData merged into data, data base64, config keys, 1 MiB, unknown fields refused."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gitops_bridge import sops
from gitops_bridge.render import yamlio
from tests.fluxstandin import KUSTOMIZATION, SECRET, FluxStandIn
from tests.kubefake import ApiError, FakeKube

Obj = dict[str, Any]
NS = "shop"
VALUES = {"password": "hunter2 ✓", "dsn": "postgres://u:p@db/x?ssl=$1", "empty": ""}
DECRYPTION = {"provider": "sops", "secretRef": {"name": "sops-age"}}
WHERE = "decryption failed for 'web-env': failed to decrypt and format 'shop/web-env' Secret data"


@dataclass
class Repo:
    path: Path
    identity: str
    fake: FakeKube
    flux: FluxStandIn

    def commit(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        for args in (["add", "-A"], ["commit", "-q", "-m", "change"]):
            subprocess.run(["git", *args], cwd=self.path, check=True, capture_output=True)

    def apps(self, *, decryption: Obj | None = DECRYPTION) -> None:
        spec: Obj = {
            "interval": "10m",
            "path": "./apps",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
            "serviceAccountName": "kustomize-controller",
        }
        if decryption is not None:
            spec["decryption"] = decryption
        ks = {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": "flux-system"},
            "spec": spec,
        }
        self.commit({"clusters/dev/apps.yaml": yamlio.dump(ks)})

    def ready(self) -> Obj:
        ks = self.fake.get(*KUSTOMIZATION, "flux-system", "apps")
        assert ks is not None
        return next(c for c in ks["status"]["conditions"] if c["type"] == "Ready")


def secret_doc(values: dict[str, str], **annotations: str) -> Obj:
    meta: Obj = {"name": "web-env", "namespace": NS}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": values}


@pytest.fixture
def repo(tmp_path: Path, helm: str, kubectl: str) -> Iterator[Repo]:
    path = tmp_path / "gitops"
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    for key, value in (("user.name", "t"), ("user.email", "t@example.com")):
        subprocess.run(["git", "config", key, value], cwd=path, check=True)
    identity = sops.generate_identity()
    with FakeKube() as fake:
        fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system"}})
        fake.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "sops-age", "namespace": "flux-system"},
                "stringData": {"age.agekey": f"# dev cluster\n{identity}\n", "other": "x"},
            }
        )
        flux = FluxStandIn(fake, remote=path, helm=helm, kubectl=kubectl, cluster="dev")
        built = Repo(path, identity, fake, flux)
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
        built.commit({"apps/namespace.yaml": yamlio.dump(namespace)})
        yield built


def encrypted(repo: Repo, doc: Obj, **kwargs: Any) -> Obj:
    return sops.encrypt(doc, [sops.public_key(repo.identity)], **kwargs)


def stored_values(fake: FakeKube) -> dict[str, str]:
    stored = fake.get(*SECRET, NS, "web-env")
    assert stored is not None
    assert "stringData" not in stored and "sops" not in stored
    return {k: base64.b64decode(v).decode() for k, v in stored["data"].items()}


# ---- kustomize-controller ------------------------------------------------------------------


def test_an_encrypted_secret_lands_decrypted(repo: Repo) -> None:
    repo.apps()
    repo.commit({"apps/secret.yaml": yamlio.dump(encrypted(repo, secret_doc(VALUES)))})
    repo.flux.reconcile()
    assert repo.ready()["reason"] == "ReconciliationSucceeded"
    assert stored_values(repo.fake) == VALUES


def test_a_tampered_value_fails_the_build_and_changes_nothing(repo: Repo) -> None:
    repo.apps()
    good = encrypted(repo, secret_doc(VALUES))
    repo.commit({"apps/secret.yaml": yamlio.dump(good)})
    repo.flux.reconcile()
    before = repo.fake.get(*SECRET, NS, "web-env")
    key = sops.decrypt(good, [repo.identity]).data_key
    changed = encrypted(repo, secret_doc({**VALUES, "password": "new"}), data_key=key, keep=good)
    enc = changed["stringData"]["password"]
    data = enc.split("data:", 1)[1].split(",", 1)[0]
    flipped = bytearray(base64.b64decode(data))
    flipped[-1] ^= 0x80
    changed["stringData"]["password"] = enc.replace(data, base64.b64encode(flipped).decode())
    repo.commit({"apps/secret.yaml": yamlio.dump(changed)})
    repo.flux.reconcile()
    ready = repo.ready()
    assert (ready["status"], ready["reason"]) == ("False", "BuildFailed")
    assert ready["message"] == (
        f"{WHERE}: error decrypting sops tree: Error walking tree: Could not decrypt value: "
        "Could not decrypt with AES_GCM: cipher: message authentication failed"
    )
    assert repo.fake.get(*SECRET, NS, "web-env") == before


def test_like_the_controller_the_mac_is_not_checked(repo: Repo) -> None:
    repo.apps()
    doc = encrypted(repo, secret_doc(VALUES))
    doc["metadata"]["labels"] = {"added": "by-hand"}
    with pytest.raises(sops.MacMismatch):
        sops.decrypt(doc, [repo.identity])
    repo.commit({"apps/secret.yaml": yamlio.dump(doc)})
    repo.flux.reconcile()
    assert repo.ready()["reason"] == "ReconciliationSucceeded"
    assert stored_values(repo.fake) == VALUES


def test_a_missing_decryption_secret_fails_the_build(repo: Repo) -> None:
    repo.apps(decryption={"provider": "sops", "secretRef": {"name": "nope"}})
    repo.commit({"apps/secret.yaml": yamlio.dump(encrypted(repo, secret_doc(VALUES)))})
    repo.flux.reconcile()
    ready = repo.ready()
    assert (ready["reason"], ready["message"]) == ("BuildFailed", 'secrets "nope" not found')
    assert repo.fake.get(*SECRET, NS, "web-env") is None


def test_a_file_for_another_key_fails_the_build(repo: Repo) -> None:
    repo.apps()
    other = sops.public_key(sops.generate_identity())
    repo.commit({"apps/secret.yaml": yamlio.dump(sops.encrypt(secret_doc(VALUES), [other]))})
    repo.flux.reconcile()
    ready = repo.ready()
    assert ready["reason"] == "BuildFailed"
    assert ready["message"].startswith(f"{WHERE}: cannot get sops data key: ")
    assert repo.fake.get(*SECRET, NS, "web-env") is None


def test_without_decryption_the_controller_refuses_the_secret(repo: Repo) -> None:
    repo.apps(decryption=None)
    repo.commit({"apps/secret.yaml": yamlio.dump(encrypted(repo, secret_doc(VALUES)))})
    repo.flux.reconcile()
    ready = repo.ready()
    assert (ready["reason"], ready["message"]) == (
        "ReconciliationFailed",
        "Secret/shop/web-env is SOPS encrypted, configuring decryption is required for this "
        "secret to be reconciled",
    )
    assert repo.fake.get(*SECRET, NS, "web-env") is None


def test_with_decryption_disabled_the_api_server_refuses_the_sops_field(repo: Repo) -> None:
    repo.apps()
    doc = encrypted(repo, secret_doc(VALUES, **{"kustomize.toolkit.fluxcd.io/decrypt": "Disabled"}))
    repo.commit({"apps/secret.yaml": yamlio.dump(doc)})
    repo.flux.reconcile()
    ready = repo.ready()
    assert (ready["reason"], ready["message"]) == (
        "ReconciliationFailed",
        "Secret/shop/web-env dry-run failed: failed to create typed patch object "
        "(shop/web-env; /v1, Kind=Secret): .sops: field not declared in schema",
    )


# ---- the API server's Secrets --------------------------------------------------------------


def post(fake: FakeKube, body: Obj, query: str = "") -> tuple[int, Obj, str]:
    request = urllib.request.Request(
        f"{fake.url}/api/v1/namespaces/default/secrets{query}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read()), answer.headers.get("Warning", "")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers.get("Warning", "")


def plain_secret(**fields: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, **fields}


def test_string_data_is_merged_into_data_and_never_returned() -> None:
    with FakeKube() as fake:
        code, body, _ = post(
            fake, plain_secret(data={"a": "eA==", "b": "eQ=="}, stringData={"b": "z", "c": "€"})
        )
        assert code == 201
        assert "stringData" not in body
        assert body["data"] == {"a": "eA==", "b": "eg==", "c": "4oKs"}
        stored = fake.get(*SECRET, "default", "s")
        assert stored is not None and "stringData" not in stored


def test_data_that_is_not_base64_is_a_bad_request() -> None:
    with FakeKube() as fake:
        code, body, _ = post(fake, plain_secret(data={"k": "ENC[AES256_GCM,data:x]"}))
        assert (code, body["reason"]) == (400, "BadRequest")
        assert body["message"] == (
            'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at '
            "input byte 3"
        )


def test_data_keys_and_size_are_validated() -> None:
    with FakeKube() as fake:
        code, body, _ = post(fake, plain_secret(stringData={"bad key": "x", "..x": "y"}))
        assert code == 422
        assert [c["field"] for c in body["details"]["causes"]] == [
            "data[bad key]",
            "data[..x]",
        ]
        assert "a valid config key must consist of alphanumeric characters" in body["message"]
        assert "must not start with '..'" in body["message"]
        big = base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()
        code, body, _ = post(fake, plain_secret(data={"big": big}))
        assert code == 422
        assert body["message"] == (
            'Secret "s" is invalid: data: Too long: must have at most 1048576 bytes'
        )


def test_unknown_fields_follow_field_validation() -> None:
    with FakeKube() as fake:
        doc = plain_secret(stringData={"a": "1"}, sops={"mac": "x"})
        code, body, _ = post(fake, doc, "?fieldValidation=Strict")
        assert (code, body["message"]) == (400, 'strict decoding error: unknown field "sops"')
        code, body, warning = post(fake, doc)
        assert code == 201 and "sops" not in body
        assert 'unknown field \\"sops\\"' in warning or 'unknown field "sops"' in warning


def test_server_side_apply_of_an_unknown_field_is_a_500_without_reason() -> None:
    with FakeKube() as fake:
        with pytest.raises(ApiError) as caught:
            fake.apply(plain_secret(stringData={"a": "1"}, sops={"mac": "x"}))
        assert caught.value.code == 500
        assert "reason" not in caught.value.body
        assert caught.value.body["message"] == (
            "failed to create typed patch object (default/s; /v1, Kind=Secret): "
            ".sops: field not declared in schema"
        )
