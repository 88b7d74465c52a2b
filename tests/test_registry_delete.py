"""A group's tags with their sizes and blobs, deleting tags and retention, against a real
Docker registry 2.8; the retention and reclaim arithmetic on hand-made tags.

Expected sizes are the bytes the test pushed, expected digests what the registry answered
to the push, and what is left after a delete is read back over HTTP without the client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitops_bridge import errors, registry
from gitops_bridge.registry import TagInfo
from tests.registryutil import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Pushed,
    RegistryServer,
    layer,
    listed_tags,
    manifest_head,
    push_image,
    push_index,
    push_manifest,
    running_registry,
)

ALL_TYPES = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
T = [f"2024-0{n}-01T00:00:00Z" for n in range(1, 10)]  # T[n]: older before newer


def client_for(server: RegistryServer) -> registry.Registry:
    # listings cached for 30 s, as configured by default: deleting must not serve stale ones
    return registry.Registry(server.url, host="registry:5000", cache_seconds=30.0)


def info_of(pushed: Pushed, created: str) -> TagInfo:
    """What ``tag_infos`` must say about an image the test pushed."""
    return TagInfo(
        repository=pushed.repo,
        tag=pushed.tag,
        digest=pushed.digest,
        size=pushed.size,
        created=created,
        blobs=frozenset(pushed.blobs),
    )


# ---- tags, sizes and shared blobs ---------------------------------------------------------


def test_tag_infos_and_usage_count_shared_layers_once(registry_server: RegistryServer) -> None:
    url = registry_server.url
    base = layer({"usr/lib/base.so": b"b" * 7000})
    web1_layer, web2_layer, api_layer = (
        layer({"app/web": b"1" * 300}),
        layer({"app/web": b"2" * 400}),
        layer({"app/api": b"3" * 500}),
    )
    web1 = push_image(url, "team-a/web", "1.0", layers=[base, web1_layer], created=T[1])
    web2 = push_image(url, "team-a/web", "2.0", layers=[base, web2_layer], created=T[2])
    push_manifest(url, "team-a/web", "latest", web2.manifest, OCI_MANIFEST)
    api = push_image(url, "team-a/api", "1.0", layers=[base, api_layer], created=T[3])
    push_image(url, "team-b/web", "1.0", layers=[base], created=T[1])
    client = client_for(registry_server)

    infos = client.tag_infos("team-a/")

    assert infos == [
        info_of(api, T[3]),
        info_of(web2, T[2]),  # for the same image a pinned tag before latest
        replace(info_of(web2, T[2]), tag="latest"),
        info_of(web1, T[1]),
    ]
    # the sizes of what was pushed: config + layers, each image on its own
    assert infos[0].size == api.config[1] + len(base) + len(api_layer)
    assert infos[3].size == web1.config[1] + len(base) + len(web1_layer)
    # the group's usage: the base layer once over three images in two repositories
    configs = web1.config[1] + web2.config[1] + api.config[1]
    expected = configs + len(base) + len(web1_layer) + len(web2_layer) + len(api_layer)
    assert client.usage("team-a/") == expected
    own_web2 = web2.config[1] + len(web2_layer)  # latest: web2 once more, base included
    assert sum(info.size for info in infos) == expected + 3 * len(base) + own_web2
    sizes = client.blob_sizes("team-a/")
    assert sizes == web1.blobs | web2.blobs | api.blobs
    assert sizes[web1.layers[0][0]] == len(base)


def test_an_index_lists_its_platforms_and_counts_their_blobs(
    registry_server: RegistryServer,
) -> None:
    url = registry_server.url
    shared = layer({"usr/lib/base.so": b"b" * 3000})
    amd64 = push_image(url, "team-a/web", "amd64", layers=[shared, layer({"a": b"amd64"})])
    arm64 = push_image(url, "team-a/web", "arm64", layers=[shared, layer({"a": b"arm64"})])
    digest = push_index(url, "team-a/web", "1.0", [amd64, arm64])

    (index,) = [i for i in client_for(registry_server).tag_infos("team-a/") if i.tag == "1.0"]

    assert index.digest == digest
    assert index.manifests == {amd64.digest, arm64.digest}
    assert index.blobs == set(amd64.blobs) | set(arm64.blobs)
    assert index.size == sum((amd64.blobs | arm64.blobs).values())
    assert index.size == amd64.size + arm64.size - len(shared)


# ---- deleting -------------------------------------------------------------------------------


def test_delete_tag_takes_every_tag_of_its_digest_and_the_listings_follow(
    registry_server: RegistryServer,
) -> None:
    url = registry_server.url
    base = layer({"usr/lib/base.so": b"b" * 5000})
    web1 = push_image(url, "team-a/web", "1.0", layers=[base], created=T[1])
    web2_layer = layer({"app/web": b"2" * 800})
    web2 = push_image(url, "team-a/web", "2.0", layers=[base, web2_layer], created=T[2])
    push_manifest(url, "team-a/web", "latest", web2.manifest, OCI_MANIFEST)
    client = client_for(registry_server)
    before = client.tag_infos("team-a/")  # fills the listings cache
    assert [i.tag for i in before] == ["2.0", "latest", "1.0"]
    going, staying = before[:2], before[2:]
    # what a garbage collection would free: web2's config and own layer, not the base
    reclaim = registry.unique_bytes(going, staying, client.blob_sizes("team-a/"))
    assert reclaim == web2.config[1] + len(web2_layer)

    deleted = client.delete_tag("team-a/web", "latest")

    assert deleted == registry.Deleted(
        repository="team-a/web", tag="latest", digest=web2.digest, also=("2.0",)
    )
    assert listed_tags(url, "team-a/web") == ["1.0"]
    assert manifest_head(url, "team-a/web", web2.digest, ALL_TYPES) == (404, "")
    assert manifest_head(url, "team-a/web", web1.digest, ALL_TYPES) == (200, web1.digest)
    assert client.tag_infos("team-a/") == [info_of(web1, T[1])]
    assert client.tags("team-a/web") == ["1.0"]
    assert client.usage("team-a/") == web1.size
    assert [repo.tags for repo in client.images("team-a/")] == [("1.0",)]

    alone = client.delete_tag("team-a/web", "1.0")
    assert alone.also == () and alone.digest == web1.digest
    assert listed_tags(url, "team-a/web") == []
    assert client.tag_infos("team-a/") == []
    assert client.usage("team-a/") == 0


def test_delete_tag_finds_docker_manifests_only_with_the_right_accept_header(
    registry_server: RegistryServer,
) -> None:
    url = registry_server.url
    single = push_image(url, "team-a/web", "1.0", docker=True)
    amd64 = push_image(url, "team-a/web", "amd64", docker=True, label="amd64")
    arm64 = push_image(url, "team-a/web", "arm64", docker=True, label="arm64")
    listed = push_index(url, "team-a/web", "2.0", [amd64, arm64], docker=True)
    oci = push_image(url, "team-a/web", "3.0")
    # registry 2.8 answers a tag only for the manifest types the client accepts, and for a
    # manifest list asked as a single manifest, with the amd64 platform's digest
    assert manifest_head(url, "team-a/web", "1.0", None) == (400, "")
    assert manifest_head(url, "team-a/web", "1.0", OCI_MANIFEST) == (400, "")
    assert manifest_head(url, "team-a/web", "2.0", DOCKER_MANIFEST) == (200, amd64.digest)
    assert manifest_head(url, "team-a/web", "2.0", ALL_TYPES) == (200, listed)
    assert manifest_head(url, "team-a/web", "3.0", DOCKER_MANIFEST) == (404, "")
    client = client_for(registry_server)

    assert client.delete_tag("team-a/web", "1.0").digest == single.digest
    assert client.delete_tag("team-a/web", "2.0").digest == listed
    assert client.delete_tag("team-a/web", "3.0").digest == oci.digest
    assert listed_tags(url, "team-a/web") == ["amd64", "arm64"]


def test_a_platform_an_index_still_names_is_not_deleted(registry_server: RegistryServer) -> None:
    url = registry_server.url
    amd64 = push_image(url, "team-a/web", "amd64", label="amd64")
    arm64 = push_image(url, "team-a/web", "arm64", label="arm64")
    push_index(url, "team-a/web", "1.0", [amd64, arm64])
    client = client_for(registry_server)

    with pytest.raises(errors.Conflict, match=r"platform of team-a/web:1\.0") as caught:
        client.delete_tag("team-a/web", "amd64")
    assert caught.value.status == 409
    assert listed_tags(url, "team-a/web") == ["1.0", "amd64", "arm64"]

    client.delete_tag("team-a/web", "1.0")
    client.delete_tag("team-a/web", "amd64")
    assert listed_tags(url, "team-a/web") == ["arm64"]


def test_a_registry_that_does_not_allow_deleting_gives_a_clear_conflict(tmp_path: Path) -> None:
    with running_registry(tmp_path / "no-delete", delete=False) as server:
        pushed = push_image(server.url, "team-a/web", "1.0")
        client = client_for(server)

        with pytest.raises(errors.Conflict) as caught:
            client.delete_tag("team-a/web", "1.0")

        message = caught.value.message
        assert "405" in message and "storage.delete.enabled: true" in message
        assert "registry:5000" in message
        assert caught.value.status == 409 and not caught.value.retryable
        assert listed_tags(server.url, "team-a/web") == ["1.0"]
        assert manifest_head(server.url, "team-a/web", pushed.digest, ALL_TYPES)[0] == 200


def test_unknown_or_malformed_names_are_not_deleted(registry_server: RegistryServer) -> None:
    push_image(registry_server.url, "team-a/web", "1.0")
    client = client_for(registry_server)
    with pytest.raises(errors.NotFound, match=r"team-a/web:9\.9"):
        client.delete_tag("team-a/web", "9.9")
    with pytest.raises(errors.NotFound, match=r"team-a/nothing:1\.0"):
        client.delete_tag("team-a/nothing", "1.0")
    with pytest.raises(errors.InvalidRequest, match="tag: must be a tag"):
        client.delete_tag("team-a/web", "sha256:" + "0" * 64)
    with pytest.raises(errors.InvalidRequest, match="repository: must be"):
        client.delete_tag("team-a/../web", "1.0")
    assert listed_tags(registry_server.url, "team-a/web") == ["1.0"]


# ---- retention ------------------------------------------------------------------------------


def tag(
    repo: str,
    name: str,
    digest: str,
    created: str | None,
    *,
    blobs: Iterable[str] = (),
    manifests: Iterable[str] = (),
) -> TagInfo:
    return TagInfo(
        repository=repo,
        tag=name,
        digest=digest,
        size=0,
        created=created,
        blobs=frozenset(blobs),
        manifests=frozenset(manifests),
    )


def names(tags: Iterable[TagInfo]) -> list[str]:
    return [f"{t.repository}:{t.tag}" for t in tags]


def used(*which: str) -> Callable[[TagInfo], bool]:
    return lambda t: f"{t.repository}:{t.tag}" in which


NOTHING_USED = used()


def test_retention_keeps_the_newest_per_repository() -> None:
    tags = [
        tag("web", "1.3", "d3", T[4]),
        tag("web", "1.2", "d2", T[3]),
        tag("web", "1.1", "d1", T[2]),
        tag("web", "1.0", "d0", T[1]),
        tag("api", "b", "a2", T[5]),
        tag("api", "a", "a1", T[1]),
    ]
    assert names(registry.retention(tags, 2, NOTHING_USED)) == ["web:1.1", "web:1.0"]
    assert names(registry.retention(tags, 1, NOTHING_USED)) == [
        "web:1.2",
        "web:1.1",
        "web:1.0",
        "api:a",
    ]
    assert registry.retention(tags, 4, NOTHING_USED) == []
    assert registry.retention(tags, 0, NOTHING_USED) == tags
    with pytest.raises(errors.InvalidRequest, match="keep: must be 0 or more, got -1"):
        registry.retention(tags, -1, NOTHING_USED)


def test_retention_orders_by_time_then_version_and_unknown_times_last() -> None:
    tags = [
        tag("web", "1.9", "d9", T[2]),
        tag("web", "1.10", "d10", T[2]),
        tag("web", "old", "dx", None),
        tag("web", "0.1", "d1", T[1]),
    ]
    assert names(registry.retention(tags, 1, NOTHING_USED)) == ["web:1.9", "web:old", "web:0.1"]
    assert names(registry.retention(tags, 3, NOTHING_USED)) == ["web:old"]


def test_retention_keeps_used_tags_and_every_tag_of_a_kept_digest() -> None:
    tags = [
        tag("web", "latest", "d3", T[4]),
        tag("web", "1.3", "d3", T[4]),
        tag("web", "1.2", "d2", T[3]),
        tag("web", "stable", "d1", T[2]),
        tag("web", "1.1", "d1", T[2]),
        tag("web", "1.0", "d0", T[1]),
        tag("api", "2.0", "a2", T[5]),
        tag("api", "1.0", "d1", T[1]),  # the same digest in another repository: independent
    ]
    # latest and 1.3 are one image: keep=1 keeps both, keep=2 adds 1.2
    assert names(registry.retention(tags, 1, NOTHING_USED)) == [
        "web:1.2",
        "web:stable",
        "web:1.1",
        "web:1.0",
        "api:1.0",
    ]
    assert names(registry.retention(tags, 2, NOTHING_USED)) == [
        "web:stable",
        "web:1.1",
        "web:1.0",
    ]
    # 1.1 is in use: so is its digest, and stable stays; api:1.0 is not protected by it
    assert names(registry.retention(tags, 1, used("web:1.1"))) == [
        "web:1.2",
        "web:1.0",
        "api:1.0",
    ]
    assert names(registry.retention(tags, 0, used("web:stable", "api:1.0"))) == [
        "web:latest",
        "web:1.3",
        "web:1.2",
        "web:1.0",
        "api:2.0",
    ]


def test_retention_keeps_the_platforms_of_a_kept_index_and_deletes_indexes_first() -> None:
    tags = [
        tag("web", "2.0", "new", T[3]),
        tag("web", "arm64", "arm", T[2]),
        tag("web", "amd64", "amd", T[2]),
        tag("web", "1.0", "idx", T[2], manifests={"amd", "arm"}),
        tag("web", "0.9", "old", T[1]),
    ]
    # the platforms are part of the index's image: no place of their own
    assert names(registry.retention(tags, 2, NOTHING_USED)) == ["web:0.9"]
    # the index goes first, so that deleting in this order never meets a named platform
    assert names(registry.retention(tags, 1, NOTHING_USED)) == [
        "web:1.0",
        "web:arm64",
        "web:amd64",
        "web:0.9",
    ]
    assert names(registry.retention(tags, 1, used("web:1.0"))) == ["web:0.9"]
    assert names(registry.retention(tags, 1, used("web:amd64"))) == [
        "web:1.0",
        "web:arm64",
        "web:0.9",
    ]


REPOS = st.sampled_from(["web", "api"])
TAG_LISTS = st.lists(
    st.builds(
        lambda repo, n, digest, month, index: tag(
            repo,
            f"t{n}",
            f"d{digest}",
            None if month == 0 else f"2024-0{month}-01T00:00:00Z",
            manifests={f"d{index}"} if index is not None and index != digest else (),
        ),
        REPOS,
        st.integers(0, 30),
        st.integers(0, 6),
        st.integers(0, 9),
        st.one_of(st.none(), st.integers(0, 6)),
    ),
    max_size=14,
    unique_by=lambda t: (t.repository, t.tag),
).filter(
    # one digest is one manifest: its tags agree on what it names
    lambda tags: all(
        a.manifests == b.manifests
        for a in tags
        for b in tags
        if (a.repository, a.digest) == (b.repository, b.digest)
    )
)


@given(tags=TAG_LISTS, keep=st.integers(0, 4), chosen=st.sets(st.integers(0, 30)))
def test_retention_never_takes_a_used_or_kept_image(
    tags: list[TagInfo], keep: int, chosen: set[int]
) -> None:
    def in_use(t: TagInfo) -> bool:
        return int(t.tag[1:]) in chosen

    doomed = registry.retention(tags, keep, in_use)
    gone = {(t.repository, t.tag) for t in doomed}
    stay = [t for t in tags if (t.repository, t.tag) not in gone]
    assert len(gone) == len(doomed) and gone <= {(t.repository, t.tag) for t in tags}
    assert not any(in_use(t) for t in doomed)
    # deleting by digest takes no tag that stays
    assert not {(t.repository, t.digest) for t in doomed} & {(t.repository, t.digest) for t in stay}
    # no tag that stays names a deleted manifest as a platform
    assert not {(t.repository, m) for t in stay for m in t.manifests} & {
        (t.repository, t.digest) for t in doomed
    }
    for repo in {t.repository for t in tags}:
        platforms = {m for t in tags if t.repository == repo for m in t.manifests}
        images = {t.digest for t in tags if t.repository == repo and t.digest not in platforms}
        kept = {t.digest for t in stay if t.repository == repo and t.digest not in platforms}
        assert len(kept) >= min(keep, len(images))  # at least the newest keep images stay


def test_retention_applied_with_delete_tag_leaves_exactly_the_kept_tags(
    registry_server: RegistryServer,
) -> None:
    url = registry_server.url
    web = {
        v: push_image(url, "team-a/web", v, created=T[n])
        for n, v in enumerate(["1.0", "1.1", "1.2", "1.3", "1.4"], start=1)
    }
    push_manifest(url, "team-a/web", "latest", web["1.4"].manifest, OCI_MANIFEST)
    push_manifest(url, "team-a/web", "stable", web["1.1"].manifest, OCI_MANIFEST)
    api = {
        v: push_image(url, "team-a/api", v, created=T[n])
        for n, v in enumerate(["0.1", "0.2", "0.3"], start=1)
    }
    amd64 = push_image(url, "team-a/multi", "amd64", label="amd64", created=T[1])
    arm64 = push_image(url, "team-a/multi", "arm64", label="arm64", created=T[1])
    push_index(url, "team-a/multi", "1.0", [amd64, arm64])
    push_image(url, "team-a/multi", "2.0", created=T[2])
    push_image(url, "team-a/multi", "3.0", created=T[3])
    client = client_for(registry_server)
    tags = client.tag_infos("team-a/")

    doomed = registry.retention(tags, 2, used("team-a/web:stable"))

    assert names(doomed) == [
        "team-a/api:0.1",
        "team-a/multi:1.0",  # the index before its platforms
        "team-a/multi:arm64",
        "team-a/multi:amd64",
        "team-a/web:1.2",
        "team-a/web:1.0",
    ]
    kept = [t for t in tags if t not in doomed]
    reclaim = registry.unique_bytes(doomed, kept, client.blob_sizes("team-a/"))
    assert reclaim == sum(p.size for p in [api["0.1"], amd64, arm64, web["1.2"], web["1.0"]])
    gone: set[tuple[str, str]] = set()
    for t in doomed:
        if (t.repository, t.tag) not in gone:
            deleted = client.delete_tag(t.repository, t.tag)
            gone.update((t.repository, other) for other in deleted.also)
    assert not gone  # no doomed tag shared its digest with another
    assert listed_tags(url, "team-a/web") == ["1.1", "1.3", "1.4", "latest", "stable"]
    assert listed_tags(url, "team-a/api") == ["0.2", "0.3"]
    assert listed_tags(url, "team-a/multi") == ["2.0", "3.0"]
    assert client.tag_infos("team-a/") == kept
    assert registry.retention(kept, 2, used("team-a/web:stable")) == []


# ---- reclaimed bytes ------------------------------------------------------------------------


def test_unique_bytes_counts_blobs_only_the_removed_tags_hold_once() -> None:
    sizes = {"base": 4000, "w1": 100, "w2": 20, "cfg1": 3, "cfg2": 5, "api": 700}
    web1 = tag("web", "1.0", "d1", T[1], blobs={"base", "w1", "cfg1"})
    web2 = tag("web", "2.0", "d2", T[2], blobs={"base", "w2", "cfg2"})
    latest = tag("web", "latest", "d2", T[2], blobs={"base", "w2", "cfg2"})
    api = tag("api", "1.0", "a1", T[1], blobs={"base", "api", "missing"})

    assert registry.unique_bytes([web1], [web2, latest, api], sizes) == 100 + 3
    assert registry.unique_bytes([web2], [web1, latest, api], sizes) == 0  # latest holds it
    assert registry.unique_bytes([web2, latest], [web1, api], sizes) == 20 + 5
    assert registry.unique_bytes([web1, web2, latest], [api], sizes) == 100 + 3 + 20 + 5
    assert registry.unique_bytes([web1, web2, latest, api], [], sizes) == sum(sizes.values())
    assert registry.unique_bytes([], [web1], sizes) == 0
    assert registry.unique_bytes(iter([api]), iter([]), sizes) == 4000 + 700  # missing: 0
