"""The registry client against a real Docker registry 2.8; the image picker and storage in the app.

Images are pushed over HTTP with the real v2 upload protocol; every expected size is the
number of bytes the test pushed, every expected digest what the registry answered.
"""

from __future__ import annotations

import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr

from gitops_bridge import errors, registry
from gitops_bridge.quantity import Quantity
from tests.apputil import TEAM_A, as_user, create_group, make_app
from tests.registryutil import (
    OCI_MANIFEST,
    RegistryServer,
    free_port,
    layer,
    push_image,
    push_index,
    push_manifest,
    running_registry,
)

TEAM_B = {
    "name": "team-b",
    "members": ["carol"],
    "quota": {"cpu": "2", "memory": "4Gi", "storage": "1Gi", "deployments": 5},
}


def client_for(server: RegistryServer, **options: object) -> registry.Registry:
    return registry.Registry(server.url, host="registry:5000", **options)  # type: ignore[arg-type]


def raw_get(url: str, accept: str = "application/json") -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return {k.lower(): v for k, v in response.headers.items()}, response.read()


# ---- the client ----------------------------------------------------------------------


def test_repositories_lists_a_groups_prefix_only_across_catalog_pages(
    registry_server: RegistryServer,
) -> None:
    for repo in ["team-a/web", "team-a/api", "team-a/web/worker", "team-ab/x", "team-b/web"]:
        push_image(registry_server.url, repo, "1.0")
    # the real catalog pages at n=2: the client has to follow Link to see everything
    headers, _ = raw_get(f"{registry_server.url}/v2/_catalog?n=2")
    assert 'rel="next"' in headers["link"]

    client = client_for(registry_server, page_size=2)
    assert client.repositories("team-a/") == ["team-a/api", "team-a/web", "team-a/web/worker"]
    assert client.repositories("team-b/") == ["team-b/web"]
    assert client.repositories("team-ab/") == ["team-ab/x"]
    assert client.repositories("nobody/") == []
    assert client_for(registry_server, page_size=1).repositories("team-a/") == [
        "team-a/api",
        "team-a/web",
        "team-a/web/worker",
    ]


def test_tags_are_all_listed_with_a_small_page_size_in_natural_order(
    registry_server: RegistryServer,
) -> None:
    for tag in ["1.10", "1.9", "latest", "0.9", "1.0"]:
        push_image(registry_server.url, "team-a/web", tag)
    # registry 2.8 answers tags/list in one page whatever n says; the client follows
    # Link when a registry pages them (the catalog test proves the Link walk)
    client = client_for(registry_server, page_size=2)
    assert client.tags("team-a/web") == ["0.9", "1.0", "1.9", "1.10", "latest"]


def test_image_digest_is_the_registrys_and_size_is_the_bytes_pushed(
    registry_server: RegistryServer,
) -> None:
    layers = [layer({"bin/app": b"x" * 5000}), layer({"etc/app.conf": b"port=8080\n"})]
    pushed = push_image(
        registry_server.url, "team-a/web", "2.0", layers=layers, created="2024-05-06T07:08:09Z"
    )
    headers, _ = raw_get(f"{registry_server.url}/v2/team-a/web/manifests/2.0", accept=OCI_MANIFEST)

    image = client_for(registry_server).image("team-a/web", "2.0")

    assert image.digest == headers["docker-content-digest"] == pushed.digest
    assert image.size == pushed.config[1] + len(layers[0]) + len(layers[1])
    assert image.reference == "registry:5000/team-a/web:2.0"
    assert image.created == "2024-05-06T07:08:09Z"


def test_an_index_counts_the_unique_blobs_of_its_manifests(
    registry_server: RegistryServer,
) -> None:
    shared = layer({"usr/lib/base.so": b"b" * 3000})
    amd64 = push_image(
        registry_server.url, "team-a/web", "amd64", layers=[shared, layer({"a": b"amd64"})]
    )
    arm64 = push_image(
        registry_server.url, "team-a/web", "arm64", layers=[shared, layer({"a": b"arm64"})]
    )
    digest = push_index(registry_server.url, "team-a/web", "1.0", [amd64, arm64])

    image = client_for(registry_server).image("team-a/web", "1.0")

    assert image.digest == digest
    assert image.size == sum((amd64.blobs | arm64.blobs).values())
    assert image.size < amd64.size + arm64.size  # the shared base layer once


def test_usage_counts_each_blob_once_across_the_groups_repositories(
    registry_server: RegistryServer,
) -> None:
    base = layer({"usr/lib/base.so": b"b" * 4000})
    web = push_image(registry_server.url, "team-a/web", "1.0", layers=[base, layer({"w": b"1"})])
    web2 = push_image(registry_server.url, "team-a/web", "2.0", layers=[base, layer({"w": b"2"})])
    api = push_image(registry_server.url, "team-a/api", "1.0", layers=[base, layer({"a": b"1"})])
    # another tag of the same image adds nothing; another group's image is not counted
    push_manifest(registry_server.url, "team-a/web", "latest", web2.manifest, OCI_MANIFEST)
    other = push_image(registry_server.url, "team-b/web", "1.0", layers=[layer({"b": b"9" * 999})])

    client = client_for(registry_server)
    expected = sum((web.blobs | web2.blobs | api.blobs).values())
    assert client.usage("team-a/") == expected
    assert expected < web.size + web2.size + api.size
    assert client.usage("team-b/") == other.size
    assert client.usage("nobody/") == 0


def test_images_list_tags_newest_first_and_reference_the_newest(
    registry_server: RegistryServer,
) -> None:
    url = registry_server.url
    push_image(url, "team-a/web", "1.0", created="2024-01-01T00:00:00Z")
    push_image(url, "team-a/web", "1.1", created="2024-03-01T00:00:00.123456789Z")
    push_image(url, "team-a/web", "0.9", created="2024-02-01T00:00:00+02:00")
    push_image(url, "team-a/api", "main", created="2024-01-01T00:00:00Z")

    found = client_for(registry_server).images("team-a/")

    assert [repo.name for repo in found] == ["team-a/api", "team-a/web"]
    assert found[1].tags == ("1.1", "0.9", "1.0")
    assert found[1].newest.reference == "registry:5000/team-a/web:1.1"
    assert found[0].newest.reference == "registry:5000/team-a/api:main"


def test_unknown_repository_or_tag_is_not_found(registry_server: RegistryServer) -> None:
    push_image(registry_server.url, "team-a/web", "1.0")
    client = client_for(registry_server)
    with pytest.raises(errors.NotFound, match="team-a/nothing"):
        client.tags("team-a/nothing")
    with pytest.raises(errors.NotFound, match=r"registry:5000/team-a/web:9\.9"):
        client.image("team-a/web", "9.9")
    with pytest.raises(errors.NotFound):
        client.image("team-a/nothing", "1.0")


def test_an_unreachable_registry_is_a_retryable_error() -> None:
    client = registry.Registry(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(errors.RegistryUnavailable) as caught:
        client.repositories("team-a/")
    assert caught.value.retryable and caught.value.status == 503
    assert "unreachable" in caught.value.message
    with pytest.raises(errors.RegistryUnavailable):  # fails fast while it counts as down
        client.usage("team-a/")


def test_listings_are_reused_briefly(registry_server: RegistryServer) -> None:
    now = [0.0]
    client = client_for(registry_server, cache_seconds=30.0, clock=lambda: now[0])
    push_image(registry_server.url, "team-a/web", "1.0")
    assert client.tags("team-a/web") == ["1.0"]
    push_image(registry_server.url, "team-a/web", "2.0")
    assert client.tags("team-a/web") == ["1.0"]  # from the cache
    now[0] = 31.0
    assert client.tags("team-a/web") == ["1.0", "2.0"]


def _htpasswd(path: Path, user: str, password: str) -> Path:
    with warnings.catch_warnings():  # stdlib crypt: deprecated, still the bcrypt we have
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    path.write_text(f"{user}:{hashed}\n")
    return path


def test_credentials_are_sent_and_a_refusal_is_forbidden(tmp_path: Path) -> None:
    htpasswd = _htpasswd(tmp_path / "htpasswd", "bridge", "s3cret")
    with running_registry(tmp_path / "auth", htpasswd=htpasswd) as server:
        good = client_for(server, username="bridge", password=SecretStr("s3cret"))
        assert good.repositories("team-a/") == []
        with pytest.raises(errors.Forbidden, match="401"):
            client_for(server, username="bridge", password=SecretStr("wrong")).repositories("a/")
        with pytest.raises(errors.Forbidden):
            client_for(server).tags("team-a/web")


# ---- through the app -----------------------------------------------------------------


@pytest.fixture
def registry_app(tmp_path: Path, registry_server: RegistryServer) -> Iterator[Flask]:
    app = make_app(tmp_path / "data", registry={"url": registry_server.url, "cache_seconds": 0})
    client = app.test_client()
    create_group(client, TEAM_A)
    create_group(client, TEAM_B)
    yield app


def test_images_api_lists_the_groups_images_for_members_only(
    registry_app: Flask, registry_server: RegistryServer
) -> None:
    url = registry_server.url
    push_image(url, "team-a/web", "1.0", created="2024-01-01T00:00:00Z")
    newest = push_image(url, "team-a/web", "1.1", created="2024-02-01T00:00:00Z")
    push_image(url, "team-b/secret", "1.0")
    client = registry_app.test_client()

    response = client.get("/api/v1/groups/team-a/images", headers=as_user("alice"))
    assert response.status_code == 200, response.json
    assert response.json == [
        {
            "repository": "team-a/web",
            "tags": ["1.1", "1.0"],
            "reference": "registry:5000/team-a/web:1.1",
            "digest": newest.digest,
            "size": newest.size,
            "created": "2024-02-01T00:00:00Z",
        }
    ]
    refused = client.get("/api/v1/groups/team-a/images", headers=as_user("carol"))
    assert refused.status_code == 404  # to a non-member the group does not exist
    assert refused.json is not None and refused.json["error"] == "NotFound"
    missing = client.get("/api/v1/groups/nope/images", headers=as_user("alice"))
    assert missing.status_code == 404


def test_groups_page_and_api_show_storage_used(
    registry_app: Flask, registry_server: RegistryServer
) -> None:
    base = layer({"base": b"b" * 6000})
    web = push_image(registry_server.url, "team-a/web", "1.0", layers=[base])
    api = push_image(registry_server.url, "team-a/api", "1.0", layers=[base, layer({"a": b"1"})])
    used = sum((web.blobs | api.blobs).values())
    client = registry_app.test_client()

    groups = client.get("/api/v1/groups", headers=as_user("alice")).json
    assert groups is not None
    (team_a,) = groups
    assert team_a["usage"]["storageBytes"] == used
    assert team_a["usage"]["storage"] == Quantity(used).human_memory()

    page = client.get("/groups", headers=as_user("alice"))
    assert page.status_code == 200
    free = Quantity(10 * 2**30 - used).human_memory()
    shown = f'<dd data-field="storage">{Quantity(used).human_memory()} of 10Gi '
    assert shown + f'<span class="muted">· {free} free</span></dd>' in page.get_data(as_text=True)


def test_the_form_offers_the_groups_images_in_a_datalist(
    registry_app: Flask, registry_server: RegistryServer
) -> None:
    push_image(registry_server.url, "team-a/web", "1.0")
    push_image(registry_server.url, "team-b/secret", "1.0")
    client = registry_app.test_client()

    html = client.get("/deployments/new?group=team-a", headers=as_user("alice")).get_data(
        as_text=True
    )
    assert 'list="image-choices"' in html
    assert '<option value="registry:5000/team-a/web:1.0" label="newest">' in html
    assert "team-b/secret" not in html

    created = client.post(
        "/api/v1/groups/team-a/deployments",
        json={"name": "web", "image": "registry:5000/team-a/web:1.0"},
        headers=as_user("alice"),
    )
    assert created.status_code == 201, created.json
    assert created.json is not None
    edit = client.get(f"/deployments/{created.json['name']}/edit", headers=as_user("alice"))
    assert edit.status_code == 200
    assert '<option value="registry:5000/team-a/web:1.0"' in edit.get_data(as_text=True)


def test_with_the_registry_stopped_pages_still_render(
    registry_app: Flask, registry_server: RegistryServer
) -> None:
    push_image(registry_server.url, "team-a/web", "1.0")
    registry_server.stop()
    client = registry_app.test_client()

    form = client.get("/deployments/new?group=team-a", headers=as_user("alice"))
    assert form.status_code == 200
    html = form.get_data(as_text=True)
    assert 'name="image"' in html
    assert "The image list is unavailable right now" in html
    assert "<option value=" not in html.split('id="image-choices"', 1)[1].split("</datalist>")[0]

    groups = client.get("/groups", headers=as_user("alice"))
    assert groups.status_code == 200
    assert "— of 10Gi" in groups.get_data(as_text=True)
    assert "(registry unavailable)" in groups.get_data(as_text=True)

    api = client.get("/api/v1/groups/team-a/images", headers=as_user("alice"))
    assert api.status_code == 503
    assert api.json is not None and api.json["retryable"] is True


def test_without_a_registry_there_is_no_picker(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data")
    client: FlaskClient = app.test_client()
    create_group(client, TEAM_A)
    form = client.get("/deployments/new?group=team-a", headers=as_user("alice"))
    assert form.status_code == 200
    assert "datalist" not in form.get_data(as_text=True)
    groups = client.get("/groups", headers=as_user("alice")).get_data(as_text=True)
    assert '<dd data-field="storage">— of 10Gi</dd>' in groups
    images = client.get("/api/v1/groups/team-a/images", headers=as_user("alice"))
    assert images.status_code == 200 and images.json == []
    listed = client.get("/api/v1/groups", headers=as_user("alice")).json
    assert listed is not None and "storage" not in listed[0]["usage"]
