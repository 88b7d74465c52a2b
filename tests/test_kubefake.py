"""The fake API server answers the official kubernetes client as a real API server would:
discovery, typed and custom lists, selectors, pages, watches, 410s, logs, metrics, leases."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tests.kubefake import FakeKube

HR = ("helm.toolkit.fluxcd.io", "v2", "helmreleases")
HR_VERSION = "helm.toolkit.fluxcd.io/v2"


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        yield server


def connect(fake: FakeKube, tmp_path: Path) -> client.ApiClient:
    """An ApiClient configured the way the poller is: load_kube_config on a kubeconfig file."""
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(fake.kubeconfig(tmp_path / "kubeconfig")),
        client_configuration=configuration,
    )
    return client.ApiClient(configuration)


@pytest.fixture
def api(fake: FakeKube, tmp_path: Path) -> Iterator[client.ApiClient]:
    api_client = connect(fake, tmp_path)
    yield api_client
    api_client.close()


def namespace(fake: FakeKube, name: str) -> None:
    fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def pod(
    fake: FakeKube,
    name: str,
    *,
    ns: str = "team",
    labels: dict[str, str] | None = None,
    containers: tuple[str, ...] = ("app",),
    phase: str = "Running",
) -> dict[str, Any]:
    return fake.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"containers": [{"name": c, "image": f"{c}:1"} for c in containers]},
            "status": {"phase": phase},
        }
    )


def helmrelease(fake: FakeKube, name: str, *, ns: str = "team", **labels: str) -> dict[str, Any]:
    return fake.apply(
        {
            "apiVersion": HR_VERSION,
            "kind": "HelmRelease",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"interval": "10m", "chart": {"spec": {"chart": "./charts/generic-app"}}},
        }
    )


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def first(func: Any, count: int, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
    """The first ``count`` events of a watch as (type, name); fails after 5 s."""
    stream = watch.Watch()
    events: list[tuple[str, str]] = []
    for event in stream.stream(func, *args, timeout_seconds=5, **kwargs):
        obj = event["raw_object"]
        events.append((event["type"], obj["metadata"].get("name", "")))
        if len(events) == count:
            stream.stop()
    return events


def raw(api: client.ApiClient, path: str) -> Any:
    response = api.call_api(*api.param_serialize("GET", path, auth_settings=["BearerToken"]))
    response.read()
    return json.loads(response.data)


# ---- discovery, typed core and apps ----------------------------------------------------


def test_discovery_lists_the_served_groups(fake: FakeKube, api: client.ApiClient) -> None:
    assert client.VersionApi(api).get_code().git_version == "v1.35.0"
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "coordination.k8s.io", "helm.toolkit.fluxcd.io", "metrics.k8s.io"} <= groups
    core = {r.name: r for r in client.CoreV1Api(api).get_api_resources().resources}
    assert core["pods"].kind == "Pod" and core["pods"].namespaced and "watch" in core["pods"].verbs
    assert "pods/log" in core and not core["namespaces"].namespaced
    flux = raw(api, "/apis/helm.toolkit.fluxcd.io/v2")
    assert flux["resources"][0]["kind"] == "HelmRelease"

    fake.metrics_enabled = False
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert "metrics.k8s.io" not in groups


def test_core_list_read_patch_and_selectors(fake: FakeKube, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    namespace(fake, "team")
    pod(fake, "web-1", labels={"app": "web", "tier": "front"})
    pod(fake, "web-2", labels={"app": "web"}, phase="Pending")
    pod(fake, "db-1", labels={"app": "db"})
    pod(fake, "other", ns="elsewhere", labels={"app": "web"})

    listed = core.list_namespaced_pod("team")
    assert [p.metadata.name for p in listed.items] == ["db-1", "web-1", "web-2"]
    assert int(listed.metadata.resource_version) == int(fake.resource_version)

    def names(**kwargs: str) -> list[str]:
        return [p.metadata.name for p in core.list_pod_for_all_namespaces(**kwargs).items]

    assert names(label_selector="app=web") == ["other", "web-1", "web-2"]
    assert names(label_selector="app==web,tier") == ["web-1"]
    # Sorted like etcd keys: namespace, then name.
    assert names(label_selector="app in (db, web),!tier") == ["other", "db-1", "web-2"]
    assert names(label_selector="app notin (web)") == ["db-1"]
    assert names(label_selector="tier!=front") == ["other", "db-1", "web-2"]
    assert names(field_selector="status.phase=Running,metadata.namespace=team") == [
        "db-1",
        "web-1",
    ]
    with pytest.raises(ApiException) as bad:
        core.list_pod_for_all_namespaces(field_selector="spec.bogus=x")
    assert bad.value.status == 400 and status_of(bad.value)["reason"] == "BadRequest"

    # The real server's JSON: built-in list items carry no apiVersion/kind, a GET does.
    body = raw(api, "/api/v1/namespaces/team/pods")
    assert body["kind"] == "PodList" and body["apiVersion"] == "v1"
    assert "kind" not in body["items"][0] and "apiVersion" not in body["items"][0]
    assert raw(api, "/api/v1/namespaces/team/pods/web-1")["kind"] == "Pod"

    read = core.read_namespaced_pod("web-1", "team")
    assert read.status.phase == "Running" and read.metadata.uid
    patched = core.patch_namespaced_pod("web-1", "team", {"metadata": {"annotations": {"a": "1"}}})
    assert patched.metadata.annotations == {"a": "1"}
    assert int(patched.metadata.resource_version) > int(read.metadata.resource_version)
    ops = [{"op": "add", "path": "/metadata/annotations/b~1c", "value": "2"}]
    patched = core.patch_namespaced_pod("web-1", "team", ops)  # a list: json-patch
    assert patched.metadata.annotations == {"a": "1", "b/c": "2"}
    ops = [{"op": "replace", "path": "/metadata/annotations/missing", "value": "x"}]
    with pytest.raises(ApiException) as invalid:
        core.patch_namespaced_pod("web-1", "team", ops)
    assert invalid.value.status == 422

    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod("nope", "team")
    assert missing.value.status == 404
    assert status_of(missing.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "kind": "pods"},
        "code": 404,
    }
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"k": "v"})
    core.create_namespaced_config_map("team", body)
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map("team", body)
    assert exists.value.status == 409 and status_of(exists.value)["reason"] == "AlreadyExists"
    assert core.read_namespaced_config_map("cfg", "team").data == {"k": "v"}
    assert core.delete_namespaced_config_map("cfg", "team")["status"] == "Success"


def test_deployments_generation_and_status_subresource(
    fake: FakeKube, api: client.ApiClient
) -> None:
    apps = client.AppsV1Api(api)
    template = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "web:1"}]},
    }
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template},
    }
    created = apps.create_namespaced_deployment("team", body)
    assert created.metadata.generation == 1 and created.metadata.namespace == "team"

    scaled = apps.patch_namespaced_deployment("web", "team", {"spec": {"replicas": 3}})
    assert scaled.metadata.generation == 2 and scaled.spec.replicas == 3
    labelled = apps.patch_namespaced_deployment("web", "team", {"metadata": {"labels": {"x": "y"}}})
    assert labelled.metadata.generation == 2
    # The main resource ignores status, the /status subresource only takes status.
    ignored = apps.patch_namespaced_deployment("web", "team", {"status": {"replicas": 9}})
    assert ignored.status is None
    status = {"status": {"replicas": 3, "readyReplicas": 3, "observedGeneration": 2}}
    updated = apps.patch_namespaced_deployment_status("web", "team", status)
    assert updated.status.ready_replicas == 3 and updated.metadata.generation == 2
    assert [d.metadata.name for d in apps.list_deployment_for_all_namespaces().items] == ["web"]


def test_pod_logs_tail_timestamps_and_follow(fake: FakeKube, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    pod(fake, "web-1", containers=("app", "frpc"))
    fake.set_logs("team", "web-1", "app", ["one", "two", "three"])
    fake.set_logs("team", "web-1", "frpc", ["login to server success"])

    assert core.read_namespaced_pod_log("web-1", "team", container="app") == "one\ntwo\nthree\n"
    assert core.read_namespaced_pod_log("web-1", "team", container="app", tail_lines=2) == (
        "two\nthree\n"
    )
    stamped = core.read_namespaced_pod_log("web-1", "team", container="frpc", timestamps=True)
    stamp, text = stamped.rstrip("\n").split(" ", 1)
    assert text == "login to server success" and stamp.endswith("Z") and "T" in stamp
    with pytest.raises(ApiException) as ambiguous:
        core.read_namespaced_pod_log("web-1", "team")
    assert ambiguous.value.status == 400
    assert status_of(ambiguous.value)["message"] == (
        "a container name must be specified for pod web-1, choose one of: [app frpc]"
    )

    response = core.read_namespaced_pod_log(
        "web-1", "team", container="app", follow=True, tail_lines=1, _preload_content=False
    )
    received: list[str] = []
    feeder = threading.Timer(0.1, fake.append_log, ("team", "web-1", "app", "four"))
    feeder.start()
    buffer = b""
    for chunk in response.stream(decode_content=False):
        buffer += chunk
        if buffer.count(b"\n") >= 2:
            received = buffer.decode().splitlines()
            break
    assert received == ["three", "four"]
    # Deleting the pod ends the stream, as on a real cluster.
    fake.delete("v1", "Pod", "team", "web-1")
    rest = b"".join(response.stream(decode_content=False))
    assert rest == b""
    response.release_conn()


# ---- custom resources: selectors and pages ---------------------------------------------


def test_custom_objects_label_selector_and_consistent_pages(
    fake: FakeKube, api: client.ApiClient
) -> None:
    custom = client.CustomObjectsApi(api)
    for i in range(5):
        helmrelease(fake, f"app-{i}", team="a" if i < 4 else "b")
    helmrelease(fake, "app-x", ns="zone", team="a")

    selected = custom.list_cluster_custom_object(*HR, label_selector="team=a")
    assert selected["kind"] == "HelmReleaseList" and selected["apiVersion"] == HR_VERSION
    assert [i["metadata"]["name"] for i in selected["items"]] == [
        "app-0",
        "app-1",
        "app-2",
        "app-3",
        "app-x",
    ]
    assert selected["items"][0]["kind"] == "HelmRelease"  # custom resource items keep it

    pages: list[list[str]] = []
    token = None
    versions = set()
    while True:
        kwargs: dict[str, Any] = {"limit": 2, "label_selector": "team=a"}
        if token:
            kwargs["_continue"] = token
        page = custom.list_cluster_custom_object(*HR, **kwargs)
        pages.append([i["metadata"]["name"] for i in page["items"]])
        versions.add(page["metadata"]["resourceVersion"])
        if len(pages) == 1:  # a change after the first page is not in later pages
            helmrelease(fake, "app-15", team="a")
            fake.delete(HR_VERSION, "HelmRelease", "team", "app-3")
        token = page["metadata"].get("continue")
        if not token:
            break
        assert page["metadata"]["remainingItemCount"] > 0
    assert pages == [["app-0", "app-1"], ["app-2", "app-3"], ["app-x"]]
    assert len(versions) == 1

    first = custom.list_namespaced_custom_object(*HR[:2], "team", HR[2], limit=2)
    fake.compact()  # an etcd compaction: the snapshot behind the token is gone
    with pytest.raises(ApiException) as expired:
        custom.list_namespaced_custom_object(
            *HR[:2], "team", HR[2], limit=2, _continue=first["metadata"]["continue"]
        )
    assert expired.value.status == 410
    gone = status_of(expired.value)
    assert gone["reason"] == "Expired" and "too old" in gone["message"]
    inconsistent = custom.list_namespaced_custom_object(
        *HR[:2], "team", HR[2], _continue=gone["metadata"]["continue"]
    )
    assert [i["metadata"]["name"] for i in inconsistent["items"]] == ["app-15", "app-2", "app-4"]
    with pytest.raises(ApiException) as garbage:
        custom.list_cluster_custom_object(*HR, limit=2, _continue="garbage!")
    assert garbage.value.status == 400


def test_custom_object_patch_types_and_finalizers(fake: FakeKube, api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    helmrelease(fake, "web")
    merged = custom.patch_namespaced_custom_object(
        *HR[:2], "team", HR[2], "web", {"metadata": {"annotations": {"r": "1"}}}
    )
    assert merged["metadata"]["annotations"] == {"r": "1"} and merged["metadata"]["generation"] == 1
    with pytest.raises(ApiException) as strategic:
        custom.patch_namespaced_custom_object(
            *HR[:2],
            "team",
            HR[2],
            "web",
            {"spec": {"suspend": True}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert strategic.value.status == 415
    ops = [{"op": "add", "path": "/metadata/finalizers", "value": ["finalizers.fluxcd.io"]}]
    custom.patch_namespaced_custom_object(
        *HR[:2], "team", HR[2], "web", ops, _content_type="application/json-patch+json"
    )
    deleting = custom.delete_namespaced_custom_object(*HR[:2], "team", HR[2], "web")
    assert deleting["metadata"]["deletionTimestamp"]
    assert fake.get(HR_VERSION, "HelmRelease", "team", "web") is not None
    custom.patch_namespaced_custom_object(
        *HR[:2], "team", HR[2], "web", {"metadata": {"finalizers": None}}
    )
    assert fake.get(HR_VERSION, "HelmRelease", "team", "web") is None

    helmrelease(fake, "two")
    stale = fake.get(HR_VERSION, "HelmRelease", "team", "two")
    assert stale is not None
    helmrelease(fake, "two", changed="yes")
    with pytest.raises(ApiException) as conflict:
        custom.replace_namespaced_custom_object(*HR[:2], "team", HR[2], "two", stale)
    assert conflict.value.status == 409 and status_of(conflict.value)["reason"] == "Conflict"


# ---- watch ------------------------------------------------------------------------------


def test_watch_streams_added_modified_deleted(fake: FakeKube, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    pod(fake, "before", labels={"app": "web"})
    start = fake.resource_version

    def changes() -> None:
        pod(fake, "web-1", labels={"app": "web"})
        pod(fake, "db-1", labels={"app": "db"})  # not selected: never seen
        fake.set_status("v1", "Pod", "team", "web-1", {"phase": "Running"})
        pod(fake, "before", labels={"app": "gone"})  # leaves the selector: DELETED
        fake.delete("v1", "Pod", "team", "web-1")

    threading.Timer(0.1, changes).start()
    seen: list[tuple[str, str]] = []
    stream = watch.Watch()
    for event in stream.stream(
        core.list_namespaced_pod,
        "team",
        label_selector="app=web",
        resource_version=start,
        timeout_seconds=5,
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 4:
            stream.stop()
    assert seen == [
        ("ADDED", "web-1"),
        ("MODIFIED", "web-1"),
        ("DELETED", "before"),
        ("DELETED", "web-1"),
    ]

    # Without a resourceVersion a watch starts with the current objects as ADDED.
    pod(fake, "web-2", labels={"app": "web"})
    assert first(core.list_namespaced_pod, 3, "team") == [
        ("ADDED", "before"),
        ("ADDED", "db-1"),
        ("ADDED", "web-2"),
    ]


def test_watch_custom_objects_with_bookmarks(fake: FakeKube, api: client.ApiClient) -> None:
    fake.bookmark_interval = 0.2
    custom = client.CustomObjectsApi(api)
    threading.Timer(0.1, helmrelease, (fake, "web")).start()
    events = first(
        custom.list_namespaced_custom_object,
        2,
        *HR[:2],
        "team",
        HR[2],
        resource_version=fake.resource_version,
        allow_watch_bookmarks=True,
    )
    assert events == [("ADDED", "web"), ("BOOKMARK", "")]


def test_watch_older_than_history_is_410(api: client.ApiClient, tmp_path: Path) -> None:
    with FakeKube(history=3) as small:
        small_api = connect(small, tmp_path)
        for i in range(6):
            pod(small, f"p{i}")
        core = client.CoreV1Api(small_api)
        with pytest.raises(ApiException) as expired:
            first(core.list_namespaced_pod, 1, "team", resource_version="1")
        assert expired.value.status == 410
        # On the wire: HTTP 200 and an ERROR event carrying the Status.
        url = f"{small.url}/api/v1/namespaces/team/pods?watch=1&resourceVersion=1"
        with urllib.request.urlopen(url, timeout=5) as response:
            event = json.loads(response.readline())
        assert response.status == 200 and event["type"] == "ERROR"
        assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
        assert event["object"]["message"].startswith("too old resource version: 1 (")
        # From a recent resourceVersion it still works.
        recent = str(int(small.resource_version) - 1)
        events = first(core.list_namespaced_pod, 1, "team", resource_version=recent)
        assert events == [("ADDED", "p5")]
        small_api.close()


# ---- leases, metrics, errors ------------------------------------------------------------


def test_lease_optimistic_concurrency(fake: FakeKube, api: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api)
    spec = client.V1LeaseSpec(holder_identity="replica-a", lease_duration_seconds=15)
    body = client.V1Lease(metadata=client.V1ObjectMeta(name="gitops-bridge"), spec=spec)
    leases.create_namespaced_lease("gitops-bridge", body)

    seen_by_a = leases.read_namespaced_lease("gitops-bridge", "gitops-bridge")
    seen_by_b = leases.read_namespaced_lease("gitops-bridge", "gitops-bridge")
    seen_by_a.spec.renew_time = "2026-01-01T00:00:00.000000Z"
    renewed = leases.replace_namespaced_lease("gitops-bridge", "gitops-bridge", seen_by_a)
    assert renewed.metadata.resource_version != seen_by_a.metadata.resource_version
    seen_by_b.spec.holder_identity = "replica-b"
    with pytest.raises(ApiException) as lost:
        leases.replace_namespaced_lease("gitops-bridge", "gitops-bridge", seen_by_b)
    assert lost.value.status == 409
    assert status_of(lost.value)["message"].startswith(
        'Operation cannot be fulfilled on leases.coordination.k8s.io "gitops-bridge"'
    )
    holder = leases.read_namespaced_lease("gitops-bridge", "gitops-bridge").spec.holder_identity
    assert holder == "replica-a"


def test_pod_metrics(fake: FakeKube, api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    pod(fake, "web-1", labels={"app": "web"})
    pod(fake, "db-1", labels={"app": "db"})
    fake.set_metrics("team", "web-1", {"app": {"cpu": "250m", "memory": "300Mi"}})
    fake.set_metrics("team", "db-1", {"app": {"cpu": "1034021n", "memory": "51244Ki"}})
    fake.set_metrics("team", "gone", {"app": {"cpu": "1m", "memory": "1Mi"}})  # no such pod

    listed = custom.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "pods")
    assert listed["kind"] == "PodMetricsList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["db-1", "web-1"]
    selected = custom.list_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", "team", "pods", label_selector="app=web"
    )
    (item,) = selected["items"]
    assert item["containers"] == [{"name": "app", "usage": {"cpu": "250m", "memory": "300Mi"}}]
    assert item["window"] and item["timestamp"].endswith("Z")
    one = custom.get_namespaced_custom_object("metrics.k8s.io", "v1beta1", "team", "pods", "db-1")
    assert one["kind"] == "PodMetrics" and one["metadata"]["labels"] == {"app": "db"}

    fake.metrics_enabled = False  # metrics-server not installed
    with pytest.raises(ApiException) as absent:
        custom.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "pods")
    assert absent.value.status == 404
    assert status_of(absent.value)["message"] == "the server could not find the requested resource"


def test_errors_faults_auth_and_requests(fake: FakeKube, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    namespace(fake, "team")
    fake.reset_requests()
    fake.fail_next(503, times=2, path_contains="/pods")
    for _ in range(2):
        with pytest.raises(ApiException) as unavailable:
            core.list_namespaced_pod("team")
        assert unavailable.value.status == 503
        assert status_of(unavailable.value)["reason"] == "ServiceUnavailable"
    assert core.read_namespace("team").metadata.name == "team"  # other paths unaffected
    assert core.list_namespaced_pod("team").items == []
    assert fake.requests[-1] == ("GET", "/api/v1/namespaces/team/pods", {})
    assert len(fake.requests) == 4

    fake.delay = 0.2
    started = time.monotonic()
    core.read_namespace("team")
    assert time.monotonic() - started >= 0.2
    fake.delay = 0

    # A Namespace delete (graceful from the Python side first) takes its contents along.
    pod(fake, "web-1")
    fake.delete("v1", "Namespace", None, "team", graceful=True)
    terminating = core.read_namespace("team")
    assert terminating.metadata.deletion_timestamp and terminating.status.phase == "Terminating"
    fake.delete("v1", "Namespace", None, "team")
    assert core.list_pod_for_all_namespaces().items == []


def test_bearer_token_is_checked_when_set(tmp_path: Path) -> None:
    with FakeKube(token="s3cret") as guarded:
        good = connect(guarded, tmp_path)
        assert client.CoreV1Api(good).list_namespace().items == []
        configuration = client.Configuration()
        configuration.host = guarded.url
        configuration.api_key = {"BearerToken": "Bearer wrong"}
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(client.ApiClient(configuration)).list_namespace()
        assert denied.value.status == 401
        assert status_of(denied.value)["reason"] == "Unauthorized"
        good.close()
