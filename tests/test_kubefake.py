"""The fake API server answers the official kubernetes client as a real API server would:
discovery, typed and custom lists, selectors, pages, watches, 410s, logs, metrics, leases;
and refuses, warns and admits as one: validation, namespace lifecycle, LimitRange, quota."""

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

from tests.kubefake import ApiError, FakeKube

HR = ("helm.toolkit.fluxcd.io", "v2", "helmreleases")
HR_VERSION = "helm.toolkit.fluxcd.io/v2"
SYSTEM_NAMESPACES = ["default", "kube-node-lease", "kube-public", "kube-system"]


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


def namespace(fake: FakeKube, *names: str) -> None:
    """Create namespaces: as on a real server, nothing namespaced can be created without one."""
    for name in names:
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
    namespace(fake, "team", "elsewhere")
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
    namespace(fake, "team")
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
    namespace(fake, "team")
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
    namespace(fake, "team", "zone")
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
    namespace(fake, "team")
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
    namespace(fake, "team")
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
    namespace(fake, "team")
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
        namespace(small, "team")
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
    namespace(fake, "gitops-bridge")
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
    namespace(fake, "team")
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
    fake.set_metrics("team", "web-1", {"app": {"cpu": "260m", "memory": "300Mi"}})  # a new sample
    again = custom.list_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", "team", "pods", label_selector="app=web"
    )
    assert again["items"][0]["containers"][0]["usage"]["cpu"] == "260m"
    with pytest.raises(ApiException) as watched:  # metrics-server serves no watch
        custom.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "pods", watch=True)
    assert watched.value.status == 405

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
        listed = client.CoreV1Api(good).list_namespace().items
        assert [n.metadata.name for n in listed] == SYSTEM_NAMESPACES
        configuration = client.Configuration()
        configuration.host = guarded.url
        configuration.api_key = {"BearerToken": "Bearer wrong"}
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(client.ApiClient(configuration)).list_namespace()
        assert denied.value.status == 401
        assert status_of(denied.value)["reason"] == "Unauthorized"
        good.close()


# ---- what the API server refuses: validation and admission ------------------------------
# Expected texts are written out here from the Kubernetes sources named in kubefake.py.

LABEL_RULE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
KEY_NAME_RULE = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
CHART_LABEL = "generic-app-0.1.0+a96eff73a282"  # what .Chart.Version gives with Revision
LIMIT_RANGE = {
    "apiVersion": "v1",
    "kind": "LimitRange",
    "metadata": {"name": "limits", "namespace": "team"},
    "spec": {
        "limits": [
            {
                "type": "Container",
                "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
                "default": {"cpu": "200m", "memory": "256Mi"},
                "max": {"cpu": "8", "memory": "16Gi"},
                "min": {"memory": "64Mi"},
            }
        ]
    },
}


def deployment(
    name: str = "web",
    *,
    labels: dict[str, str] | None = None,
    template_labels: dict[str, str] | None = None,
    resources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "web:1"}
    if resources is not None:
        container["resources"] = resources
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "team", "labels": labels or {}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, **(template_labels or {})}},
                "spec": {"containers": [container]},
            },
        },
    }


def pod_body(
    name: str,
    *,
    ns: str = "team",
    resources: dict[str, Any] | None = None,
    containers: tuple[str, ...] = ("app",),
    **spec: Any,
) -> dict[str, Any]:
    listed = [
        {"name": c, "image": f"{c}:1", **({"resources": resources} if resources else {})}
        for c in containers
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": listed, **spec},
    }


def sized(cpu: str, memory: str) -> dict[str, Any]:
    values = {"cpu": cpu, "memory": memory}
    return {"requests": dict(values), "limits": dict(values)}


def quota(ns: str, hard: dict[str, str], name: str = "quota") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"hard": hard},
    }


def refused(call: Any, *args: Any) -> dict[str, Any]:
    """The Status a kubernetes-client call is answered with."""
    with pytest.raises(ApiException) as raised:
        call(*args)
    return status_of(raised.value)


def apply_refused(fake: FakeKube, obj: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as raised:
        fake.apply(obj)
    return raised.value


def test_invalid_label_value_is_422_over_http_and_from_apply(
    fake: FakeKube, api: client.ApiClient
) -> None:
    namespace(fake, "team")
    apps = client.AppsV1Api(api)
    body = deployment(labels={"helm.sh/chart": CHART_LABEL})
    status = refused(apps.create_namespaced_deployment, "team", body)
    expected = (
        f'Deployment.apps "web" is invalid: metadata.labels: Invalid value: "{CHART_LABEL}": '
        f"{LABEL_RULE}"
    )
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert status["message"] == expected
    assert status["details"] == {
        "name": "web",
        "group": "apps",
        "kind": "Deployment",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": f'Invalid value: "{CHART_LABEL}": {LABEL_RULE}',
                "field": "metadata.labels",
            }
        ],
    }
    error = apply_refused(fake, body)
    assert error.code == 422 and error.body["message"] == expected
    assert fake.get("apps/v1", "Deployment", "team", "web") is None

    # In the pod template too (ValidatePodTemplateSpec's path is spec.template); both at once.
    both = deployment(
        labels={"helm.sh/chart": CHART_LABEL}, template_labels={"helm.sh/chart": CHART_LABEL}
    )
    assert apply_refused(fake, both).body["message"] == (
        f'Deployment.apps "web" is invalid: [metadata.labels: Invalid value: "{CHART_LABEL}": '
        f'{LABEL_RULE}, spec.template.labels: Invalid value: "{CHART_LABEL}": {LABEL_RULE}]'
    )
    # Helm's own scaffold replaces "+" by "_": stored.
    fixed = CHART_LABEL.replace("+", "_")
    apps.create_namespaced_deployment(
        "team", deployment(labels={"helm.sh/chart": fixed}, template_labels={"v": fixed})
    )
    # An update is validated as well; a label value longer than 63 bytes.
    status = refused(
        apps.patch_namespaced_deployment, "web", "team", {"metadata": {"labels": {"x": "a" * 64}}}
    )
    assert status["message"] == (
        f'Deployment.apps "web" is invalid: metadata.labels: Invalid value: "{"a" * 64}": '
        "must be no more than 63 bytes"
    )
    # The selector must select the template's pods.
    stray = deployment("other")
    stray["spec"]["template"]["metadata"]["labels"] = {"app": "web"}
    assert apply_refused(fake, stray).body["message"] == (
        'Deployment.apps "other" is invalid: spec.template.metadata.labels: Invalid value: '
        '{"app":"web"}: `selector` does not match template `labels`'
    )


def test_names_follow_the_rule_of_their_kind(fake: FakeKube, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    namespace(fake, "team")
    too_long = "a" * 254
    status = refused(core.create_namespaced_pod, "team", pod_body(too_long))
    assert status["code"] == 422
    assert status["message"] == (
        f'Pod "{too_long}" is invalid: metadata.name: Invalid value: "{too_long}": '
        "must be no more than 253 characters"
    )
    core.create_namespaced_pod("team", pod_body("a" * 253))  # a DNS subdomain: up to 253

    label_name = "n" * 64  # a Namespace name is a DNS label: at most 63
    error = apply_refused(
        fake, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": label_name}}
    )
    assert error.body["message"] == (  # its kubernetes.io/metadata.name label is the name
        f'Namespace "{label_name}" is invalid: [metadata.name: Invalid value: "{label_name}": '
        f'must be no more than 63 characters, metadata.labels: Invalid value: "{label_name}": '
        "must be no more than 63 bytes]"
    )
    status = refused(core.create_namespace, {"metadata": {"name": "team.a"}})
    assert status["message"] == (
        'Namespace "team.a" is invalid: metadata.name: Invalid value: "team.a": '
        "must not contain dots"
    )
    service = {"metadata": {"name": "1web"}, "spec": {"ports": [{"port": 80}]}}
    status = refused(core.create_namespaced_service, "team", service)
    assert status["message"] == (
        'Service "1web" is invalid: metadata.name: Invalid value: "1web": a DNS-1035 label '
        "must consist of lower case alphanumeric characters or '-', start with an alphabetic "
        "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
        "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
    )
    core.create_namespaced_config_map("team", {"metadata": {"name": "1web"}})  # a subdomain
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "flux:100%", "namespace": "team"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "x"},
    }
    assert apply_refused(fake, binding).body["message"] == (
        'RoleBinding.rbac.authorization.k8s.io "flux:100%" is invalid: metadata.name: '
        "Invalid value: \"flux:100%\": may not contain '%'"
    )
    binding["metadata"]["name"] = "flux:reconciler"  # RBAC names are path segments
    fake.apply(binding)


def test_annotation_keys_and_their_total_size(fake: FakeKube, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    namespace(fake, "team")
    body = {"metadata": {"name": "cfg", "annotations": {"bad key": "x"}}}
    status = refused(core.create_namespaced_config_map, "team", body)
    assert status["message"] == (
        'ConfigMap "cfg" is invalid: metadata.annotations: Invalid value: "bad key": '
        f"{KEY_NAME_RULE}"
    )
    # Case does not matter in annotation keys; it does in a label key's prefix.
    body["metadata"]["annotations"] = {"Example.COM/Key": "x"}
    core.create_namespaced_config_map("team", body)
    labelled = {"metadata": {"name": "cfg2", "labels": {"Example.COM/Key": "x"}}}
    status = refused(core.create_namespaced_config_map, "team", labelled)
    assert status["message"].startswith(
        'ConfigMap "cfg2" is invalid: metadata.labels: Invalid value: "Example.COM/Key": '
        "prefix part a lowercase RFC 1123 subdomain must consist of lower case"
    )
    big = {"metadata": {"name": "big", "annotations": {"a": "x" * (256 * 1024)}}}
    status = refused(core.create_namespaced_config_map, "team", big)
    assert status["message"] == (
        'ConfigMap "big" is invalid: metadata.annotations: Too long: must have at most 262144 bytes'
    )
    big["metadata"]["annotations"] = {"a": "x" * (256 * 1024 - 1)}  # key + value: 256 KiB
    core.create_namespaced_config_map("team", big)


def test_requests_above_limits_are_422(fake: FakeKube, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    namespace(fake, "team")
    resources = {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "1"}}
    status = refused(core.create_namespaced_pod, "team", pod_body("web", resources=resources))
    assert status["code"] == 422
    assert status["message"] == (
        'Pod "web" is invalid: spec.containers[0].resources.requests: Invalid value: "2": '
        "must be less than or equal to cpu limit of 1"
    )
    memory = {"requests": {"memory": "2Gi"}, "limits": {"memory": "1.5Gi"}}
    error = apply_refused(fake, deployment(resources=memory))
    assert error.code == 422
    assert error.body["message"] == (  # quantities are shown in canonical form
        'Deployment.apps "web" is invalid: spec.template.spec.containers[0].resources.requests: '
        'Invalid value: "2Gi": must be less than or equal to memory limit of 1536Mi'
    )
    status = refused(
        core.create_namespaced_pod, "team", pod_body("odd", resources={"limits": {"cpu": "1x"}})
    )
    assert (
        status["code"] == 400
        and "quantities must match the regular expression" in (status["message"])
    )


def test_fractional_memory_is_stored_with_a_warning(fake: FakeKube, api: client.ApiClient) -> None:
    namespace(fake, "team")
    body = deployment(resources={"requests": {"memory": "100.5"}, "limits": {"memory": "1Gi"}})
    text = (
        "spec.template.spec.containers[0].resources.requests[memory]: fractional byte value "
        '"100500m" is invalid, must be an integer'
    )
    apps = client.AppsV1Api(api)
    _, code, headers = apps.create_namespaced_deployment_with_http_info("team", body)
    assert code == 201
    assert headers["Warning"] == '299 - "' + text.replace('"', '\\"') + '"'
    assert fake.warnings == [("Deployment", "team/web", text)]

    # On the wire, one Warning header per warning; a Pod's path starts at spec.
    fake.warnings.clear()
    pod = pod_body(
        "web-1", resources={"requests": {"memory": "0.5Ki"}, "limits": {"memory": "1000.5"}}
    )
    request = urllib.request.Request(
        f"{fake.url}/api/v1/namespaces/team/pods",
        data=json.dumps(pod).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        headers = answer.headers.get_all("Warning")
    assert answer.status == 201
    assert headers == [
        '299 - "spec.containers[0].resources.limits[memory]: fractional byte value \\"1000500m\\" '
        'is invalid, must be an integer"'
    ]  # 0.5Ki is 512 bytes: whole
    assert [w[:2] for w in fake.warnings] == [("Pod", "team/web-1")]

    # Whole bytes draw nothing; neither does an update that leaves the spec alone.
    fake.warnings.clear()
    fake.apply(pod_body("web-2", resources={"requests": {"memory": "128Mi"}}))
    client.AppsV1Api(api).patch_namespaced_deployment(
        "web", "team", {"metadata": {"labels": {"x": "y"}}}
    )
    assert fake.warnings == []


def test_namespaces_must_exist_and_not_be_terminating(
    fake: FakeKube, api: client.ApiClient
) -> None:
    core = client.CoreV1Api(api)
    config_map = {"metadata": {"name": "cfg"}, "data": {"k": "v"}}
    status = refused(core.create_namespaced_config_map, "nowhere", config_map)
    assert status == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'namespaces "nowhere" not found',
        "reason": "NotFound",
        "details": {"name": "nowhere", "kind": "namespaces"},
        "code": 404,
    }
    missing = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}}
    error = apply_refused(fake, missing | {"metadata": {"name": "cfg", "namespace": "nowhere"}})
    assert error.code == 404 and error.body["message"] == 'namespaces "nowhere" not found'
    assert fake.apply(missing)["metadata"]["namespace"] == "default"  # exists from the start
    assert core.read_namespace("kube-system").status.phase == "Active"

    namespace(fake, "team")
    core.create_namespaced_config_map("team", config_map)
    fake.delete("v1", "Namespace", None, "team", graceful=True)
    status = refused(
        core.create_namespaced_config_map, "team", config_map | {"metadata": {"name": "new"}}
    )
    assert status["code"] == 403 and status["reason"] == "Forbidden"
    assert status["message"] == (
        'configmaps "new" is forbidden: unable to create new content in namespace team '
        "because it is being terminated"
    )
    assert status["details"]["causes"] == [
        {
            "reason": "NamespaceTerminating",
            "message": "namespace team is being terminated",
            "field": "metadata.namespace",
        }
    ]
    # What is already there can still change while the namespace goes away.
    core.patch_namespaced_config_map("cfg", "team", {"data": {"k": "w"}})

    status = refused(core.delete_namespace, "default")
    assert status["code"] == 403
    assert (
        status["message"] == 'namespaces "default" is forbidden: this namespace may not be deleted'
    )


def test_limit_range_defaults_and_limits(fake: FakeKube, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    namespace(fake, "team")
    fake.apply(LIMIT_RANGE)
    body = pod_body("web", containers=("app", "frpc"))
    body["spec"]["containers"][1]["resources"] = {"requests": {"cpu": "50m"}}
    created = core.create_namespaced_pod("team", body)
    app, frpc = (c.resources for c in created.spec.containers)
    assert app.requests == {"cpu": "100m", "memory": "128Mi"}
    assert app.limits == {"cpu": "200m", "memory": "256Mi"}
    assert frpc.requests == {"cpu": "50m", "memory": "128Mi"}
    assert frpc.limits == {"cpu": "200m", "memory": "256Mi"}
    assert created.metadata.annotations == {
        "kubernetes.io/limit-ranger": "LimitRanger plugin set: cpu, memory request for "
        "container app; cpu, memory limit for container app; memory request for container "
        "frpc; cpu, memory limit for container frpc"
    }

    status = refused(
        core.create_namespaced_pod, "team", pod_body("big", resources={"limits": {"cpu": "10"}})
    )
    assert status["code"] == 403 and status["reason"] == "Forbidden"
    assert status["message"] == (
        'pods "big" is forbidden: maximum cpu usage per Container is 8, but limit is 10'
    )
    small = apply_refused(fake, pod_body("small", resources={"requests": {"memory": "32Mi"}}))
    assert small.code == 403
    assert small.body["message"] == (
        'pods "small" is forbidden: minimum memory usage per Container is 64Mi, but request is 32Mi'
    )
    # Defaults come before validation: a request above the defaulted limit is invalid.
    status = refused(
        core.create_namespaced_pod, "team", pod_body("odd", resources={"requests": {"cpu": "1"}})
    )
    assert status["code"] == 422
    assert status["message"].endswith("must be less than or equal to cpu limit of 200m")


def test_quota_refuses_the_pod_that_would_exceed_it(fake: FakeKube, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    namespace(fake, "team")
    fake.apply(quota("team", {"pods": "3", "requests.cpu": "1", "requests.memory": "1Gi"}))
    for index in range(3):
        core.create_namespaced_pod(
            "team", pod_body(f"web-{index}", resources=sized("300m", "256Mi"))
        )
    status = refused(
        core.create_namespaced_pod, "team", pod_body("web-3", resources=sized("300m", "256Mi"))
    )
    assert status["code"] == 403 and status["reason"] == "Forbidden"
    assert status["message"] == (
        'pods "web-3" is forbidden: exceeded quota: quota, requested: pods=1,requests.cpu=300m, '
        "used: pods=3,requests.cpu=900m, limited: pods=3,requests.cpu=1"
    )
    assert status["details"] == {"name": "web-3", "kind": "pods"}

    core.delete_namespaced_pod("web-2", "team")
    error = apply_refused(fake, pod_body("cpu", resources=sized("500m", "128Mi")))
    assert error.code == 403
    assert error.body["message"] == (
        'pods "cpu" is forbidden: exceeded quota: quota, requested: requests.cpu=500m, '
        "used: requests.cpu=600m, limited: requests.cpu=1"
    )
    status = refused(
        core.create_namespaced_pod, "team", pod_body("memory", resources=sized("100m", "768Mi"))
    )
    assert status["message"] == (
        'pods "memory" is forbidden: exceeded quota: quota, requested: requests.memory=768Mi, '
        "used: requests.memory=512Mi, limited: requests.memory=1Gi"
    )
    # status.used follows every change, as the quota controller keeps it.
    read = core.read_namespaced_resource_quota("quota", "team")
    assert read.status.hard == {"pods": "3", "requests.cpu": "1", "requests.memory": "1Gi"}
    assert read.status.used == {"pods": "2", "requests.cpu": "600m", "requests.memory": "512Mi"}
    core.create_namespaced_pod("team", pod_body("fits", resources=sized("400m", "512Mi")))
    read = core.read_namespaced_resource_quota("quota", "team")
    assert read.status.used == {"pods": "3", "requests.cpu": "1", "requests.memory": "1Gi"}


def test_quota_on_limits_needs_every_container_to_set_them(
    fake: FakeKube, api: client.ApiClient
) -> None:
    namespace(fake, "team")
    fake.apply(quota("team", {"limits.cpu": "4", "limits.memory": "8Gi"}, name="limits"))
    requests_only = {"requests": {"cpu": "100m", "memory": "128Mi"}}
    body = pod_body("web", containers=("app", "frpc"), resources=requests_only)
    status = refused(client.CoreV1Api(api).create_namespaced_pod, "team", body)
    assert status["code"] == 403
    assert status["message"] == (
        'pods "web" is forbidden: failed quota: limits: must specify limits.cpu for: app,frpc; '
        "limits.memory for: app,frpc"
    )
    fake.apply(LIMIT_RANGE)  # the LimitRange's defaults fill them in before the quota looks
    created = fake.apply(body)
    assert created["spec"]["containers"][0]["resources"]["limits"] == {
        "cpu": "200m",
        "memory": "256Mi",
    }
    used = fake.get("v1", "ResourceQuota", "team", "limits")
    assert used is not None and used["status"]["used"] == {
        "limits.cpu": "400m",
        "limits.memory": "512Mi",
    }


def test_quota_counts_helmreleases(fake: FakeKube, api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    namespace(fake, "team")
    counted = "count/helmreleases.helm.toolkit.fluxcd.io"
    fake.apply(quota("team", {counted: "2"}))
    helmrelease(fake, "web-0")
    helmrelease(fake, "web-1")
    third = {
        "apiVersion": HR_VERSION,
        "kind": "HelmRelease",
        "metadata": {"name": "web-2"},
        "spec": {"interval": "10m", "chart": {"spec": {"chart": "./charts/generic-app"}}},
    }
    status = refused(custom.create_namespaced_custom_object, *HR[:2], "team", HR[2], third)
    expected = (
        f'helmreleases.helm.toolkit.fluxcd.io "web-2" is forbidden: exceeded quota: quota, '
        f"requested: {counted}=1, used: {counted}=2, limited: {counted}=2"
    )
    assert status["code"] == 403 and status["message"] == expected
    assert status["details"] == {
        "name": "web-2",
        "group": "helm.toolkit.fluxcd.io",
        "kind": "helmreleases",
    }
    error = apply_refused(fake, third | {"metadata": {"name": "web-2", "namespace": "team"}})
    assert error.code == 403 and error.body["message"] == expected
    helmrelease(fake, "web-1", changed="yes")  # an object count is charged on create only
    assert client.CoreV1Api(api).read_namespaced_resource_quota("quota", "team").status.used == {
        counted: "2"
    }


def test_quota_counts_a_terminating_pod_until_its_grace_period_ends(fake: FakeKube) -> None:
    namespace(fake, "team")
    fake.apply(quota("team", {"pods": "1"}))
    start = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    fake.clock = lambda: start
    fake.apply(pod_body("old", nodeName="kind-worker", terminationGracePeriodSeconds=30))
    deleting = fake.delete("v1", "Pod", "team", "old", graceful=True)
    assert deleting is not None
    assert deleting["metadata"]["deletionTimestamp"] == "2027-01-15T08:00:30Z"  # now + grace
    assert deleting["metadata"]["deletionGracePeriodSeconds"] == 30
    expected = (
        'pods "new" is forbidden: exceeded quota: quota, requested: pods=1, used: pods=1, '
        "limited: pods=1"
    )
    assert apply_refused(fake, pod_body("new")).body["message"] == expected
    fake.clock = lambda: start + 60  # deletionTimestamp + grace period: still charged
    assert apply_refused(fake, pod_body("new")).body["message"] == expected
    fake.clock = lambda: start + 61
    fake.apply(pod_body("new"))
    used = fake.get("v1", "ResourceQuota", "team", "quota")
    assert used is not None and used["status"]["used"] == {"pods": "1"}


def test_quota_does_not_count_finished_pods(fake: FakeKube) -> None:
    namespace(fake, "team")
    fake.apply(quota("team", {"pods": "1", "count/pods": "3"}))
    pod(fake, "done", phase="Succeeded")
    pod(fake, "broken", phase="Failed")
    current = fake.get("v1", "ResourceQuota", "team", "quota")
    assert current is not None
    assert current["status"]["used"] == {"count/pods": "2", "pods": "0"}  # count/ counts all
    pod(fake, "web")
    error = apply_refused(fake, pod_body("web-2"))
    assert error.body["message"] == (
        'pods "web-2" is forbidden: exceeded quota: quota, requested: count/pods=1,pods=1, '
        "used: count/pods=3,pods=1, limited: count/pods=3,pods=1"
    )
    fake.set_status("v1", "Pod", "team", "web", {"phase": "Succeeded"})
    current = fake.get("v1", "ResourceQuota", "team", "quota")
    assert current is not None and current["status"]["used"]["pods"] == "0"
