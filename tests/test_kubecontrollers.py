"""The stand-in cluster's own controllers against a FakeKube: a rolling update replaces pods
one at a time (maxSurge 1, maxUnavailable 0) and stops where the API server refuses a pod
(FailedCreate on the ReplicaSet, old pods kept running); the kubelet gives each container
the environment Kubernetes would, byte for byte through the real chart, or leaves it
waiting with CreateContainerConfigError in the kubelet's words."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_bridge import config, models
from gitops_bridge.render.helmrelease import values as chart_values
from tests import kubelet
from tests.kubecontrollers import Workloads, template_hash
from tests.kubefake import FakeKube

NS = "group-team-a"
POD = ("v1", "Pod")
DEPLOYMENT = ("apps/v1", "Deployment")
EVENT = ("v1", "Event")
SAFE = "[bcdfghjklmnpqrstvwxz2456789]"


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        yield server


def deployment(
    *, replicas: int = 3, image: str = "registry:5000/team-a/web:1", containers: Any = None
) -> dict[str, Any]:
    """A Deployment shaped like the chart's: RollingUpdate maxSurge 1, maxUnavailable 0."""
    app = {
        "name": "app",
        "image": image,
        "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "200m"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": replicas,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "selector": {"matchLabels": {"app.kubernetes.io/instance": "web"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/instance": "web"}},
                "spec": {"enableServiceLinks": False, "containers": containers or [app]},
            },
        },
    }


def roll(fake: FakeKube, workloads: Workloads, body: dict[str, Any], health: str = "ok") -> bool:
    return workloads.roll(fake.apply(body), release="web", health=health)


def pods(fake: FakeKube) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in fake.items(*POD, NS)}


def deployment_status(fake: FakeKube) -> dict[str, Any]:
    found = fake.get(*DEPLOYMENT, NS, "web")
    assert found is not None
    return found["status"]  # type: ignore[no-any-return]


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in status["conditions"]}


def pod_events(fake: FakeKube, since: str) -> list[tuple[str, str, bool]]:
    """(type, pod, ready) of every pod watch event after ``since``, read over the wire."""
    url = f"{fake.url}/api/v1/namespaces/{NS}/pods?watch=1&resourceVersion={since}&timeoutSeconds=1"
    with urllib.request.urlopen(url, timeout=10) as response:
        lines = response.read().decode().splitlines()
    found = []
    for line in lines:
        event = json.loads(line)
        obj = event["object"]
        found.append((event["type"], obj["metadata"]["name"], kubelet.is_ready(obj)))
    return found


def quota(pods_allowed: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "compute", "namespace": NS},
        "spec": {"hard": {"pods": str(pods_allowed)}},
    }


# ---- the Deployment and ReplicaSet controllers ----------------------------------------------


def test_a_new_template_replaces_pods_one_at_a_time(fake: FakeKube) -> None:
    workloads = Workloads(fake)
    assert roll(fake, workloads, deployment())
    first = set(pods(fake))
    assert len(first) == 3
    since = fake.resource_version

    assert roll(fake, workloads, deployment(image="registry:5000/team-a/web:2"))
    events = pod_events(fake, since)
    moves = [(kind, name) for kind, name, _ in events if kind in ("ADDED", "DELETED")]
    assert [kind for kind, _ in moves] == ["ADDED", "DELETED"] * 3
    added = [name for kind, name in moves if kind == "ADDED"]
    assert {name for kind, name in moves if kind == "DELETED"} == first
    assert not set(added) & first
    # never more than replicas + maxSurge pods, never fewer than replicas available
    alive = set(first)
    for kind, name in moves:
        alive = alive | {name} if kind == "ADDED" else alive - {name}
        assert 3 <= len(alive) <= 4
    # each surge pod is Ready before an old pod goes
    for new in added:
        at = events.index(("ADDED", new, False))
        ready = next(i for i, e in enumerate(events) if e[1] == new and e[2])
        deleted = next(i for i, e in enumerate(events) if i > at and e[0] == "DELETED")
        assert at < ready < deleted

    now = pods(fake)
    assert set(now) == set(added)
    assert {p["spec"]["containers"][0]["image"] for p in now.values()} == {
        "registry:5000/team-a/web:2"
    }
    pod_hash = template_hash(deployment(image="registry:5000/team-a/web:2")["spec"]["template"])
    assert all(re.fullmatch(rf"web-{pod_hash}-{SAFE}{{5}}", name) for name in now)
    status = deployment_status(fake)
    counts = {k: status.get(k) for k in ("replicas", "updatedReplicas", "availableReplicas")}
    assert counts == {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}
    assert "unavailableReplicas" not in status
    assert conditions(status)["Progressing"] == (
        "True",
        "NewReplicaSetAvailable",
        f'ReplicaSet "web-{pod_hash}" has successfully progressed.',
    )


def test_a_surge_pod_that_never_gets_ready_keeps_the_old_pods(fake: FakeKube) -> None:
    workloads = Workloads(fake)
    assert roll(fake, workloads, deployment())
    first = set(pods(fake))
    broken = deployment(image="registry:5000/team-a/web:broken")
    assert not roll(fake, workloads, broken, health="crashloop")
    now = pods(fake)
    assert first < set(now) and len(now) == 4
    assert [kubelet.is_ready(now[name]) for name in sorted(first)] == [True] * 3
    status = deployment_status(fake)
    counts = {
        k: status.get(k)
        for k in ("replicas", "updatedReplicas", "availableReplicas", "unavailableReplicas")
    }
    assert counts == {
        "replicas": 4,
        "updatedReplicas": 1,
        "availableReplicas": 3,
        "unavailableReplicas": 1,
    }
    assert conditions(status)["Progressing"][:2] == ("True", "ReplicaSetUpdated")
    assert conditions(status)["Available"][:2] == ("True", "MinimumReplicasAvailable")

    assert roll(fake, workloads, broken)  # the image is fixed under the same tag
    assert not first & set(pods(fake)) and len(pods(fake)) == 3


def test_a_refused_pod_stops_the_rollout_with_a_failed_create_event(fake: FakeKube) -> None:
    """Quota admission (ResourceQuota pods=2) refuses the surge pod: the ReplicaSet
    controller's FailedCreate event and ReplicaFailure condition, the old pods untouched."""
    workloads = Workloads(fake)
    fake.apply(quota(2))
    assert roll(fake, workloads, deployment(replicas=2))
    first = pods(fake)

    changed = deployment(replicas=2, image="registry:5000/team-a/web:2")
    assert not roll(fake, workloads, changed)
    assert pods(fake).keys() == first.keys()
    assert all(kubelet.is_ready(p) for p in pods(fake).values())
    assert {p["spec"]["containers"][0]["image"] for p in pods(fake).values()} == {
        "registry:5000/team-a/web:1"
    }
    replica_set = f"web-{template_hash(changed['spec']['template'])}"
    (event,) = [e for e in fake.items(*EVENT, NS) if e["reason"] == "FailedCreate"]
    assert event["type"] == "Warning" and event["count"] == 1
    assert event["source"] == {"component": "replicaset-controller"}
    involved = event["involvedObject"]
    assert (involved["kind"], involved["apiVersion"], involved["name"]) == (
        "ReplicaSet",
        "apps/v1",
        replica_set,
    )
    refusal = (
        rf'pods "{replica_set}-{SAFE}{{5}}" is forbidden: exceeded quota: compute, '
        r"requested: pods=1, used: pods=2, limited: pods=2"
    )
    assert re.fullmatch(f"Error creating: {refusal}", event["message"]), event["message"]
    status = deployment_status(fake)
    failure = conditions(status)["ReplicaFailure"]
    assert failure == ("True", "FailedCreate", event["message"].removeprefix("Error creating: "))
    assert conditions(status)["Progressing"] == (
        "True",
        "ReplicaSetUpdated",
        f'ReplicaSet "{replica_set}" is progressing.',
    )
    counts = {
        k: status.get(k)
        for k in ("replicas", "updatedReplicas", "availableReplicas", "unavailableReplicas")
    }
    assert counts == {
        "replicas": 2,
        "updatedReplicas": None,
        "availableReplicas": 2,
        "unavailableReplicas": 1,
    }

    # the next sync tries again and is refused again: the same event counts up
    assert not roll(fake, workloads, changed)
    (event,) = [e for e in fake.items(*EVENT, NS) if e["reason"] == "FailedCreate"]
    assert event["count"] == 2

    fake.apply(quota(3))  # room for the surge pod: the rollout completes
    assert roll(fake, workloads, changed)
    assert not pods(fake).keys() & first.keys() and len(pods(fake)) == 2
    assert "ReplicaFailure" not in conditions(deployment_status(fake))


def test_scaling_creates_through_admission_and_deletes(fake: FakeKube) -> None:
    workloads = Workloads(fake)
    fake.apply(quota(3))
    assert roll(fake, workloads, deployment(replicas=2))
    assert not roll(fake, workloads, deployment(replicas=5))
    assert len(pods(fake)) == 3  # slow start: one created, the next batch of two refused
    refused = [e for e in fake.items(*EVENT, NS) if e["reason"] == "FailedCreate"]
    assert len(refused) == 2
    status = deployment_status(fake)
    assert (status["replicas"], status["availableReplicas"], status["unavailableReplicas"]) == (
        3,
        3,
        2,
    )
    assert roll(fake, workloads, deployment(replicas=1))
    assert len(pods(fake)) == 1
    assert "ReplicaFailure" not in conditions(deployment_status(fake))
    assert roll(fake, workloads, deployment(replicas=0))
    assert pods(fake) == {}
    assert set(deployment_status(fake)) == {"observedGeneration", "conditions"}


# ---- the kubelet ------------------------------------------------------------------------------

FRPC = {
    "name": "frpc",
    "image": "registry:5000/platform/frpc:0.65.0",
    "env": [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": "FRP_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "frp-token", "key": "token"}},
        },
        {
            "name": "FRP_GROUP_KEY",
            "valueFrom": {"secretKeyRef": {"name": "frp-token", "key": "group-key"}},
        },
    ],
}
APP = {"name": "app", "image": "registry:5000/team-a/web:1"}


def waiting(pod: dict[str, Any], container: str) -> dict[str, Any]:
    found = next(s for s in pod["status"]["containerStatuses"] if s["name"] == container)
    return found["state"].get("waiting") or {}


def ready_condition(pod: dict[str, Any]) -> tuple[str, str, str]:
    found = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    return (found["status"], found.get("reason", ""), found.get("message", ""))


def test_a_missing_frp_secret_keeps_the_sidecar_waiting_until_it_exists(fake: FakeKube) -> None:
    workloads = Workloads(fake)
    body = deployment(replicas=1, containers=[APP, FRPC])
    assert not roll(fake, workloads, body)
    ((name, pod),) = pods(fake).items()
    assert waiting(pod, "frpc") == {
        "reason": "CreateContainerConfigError",
        "message": 'secret "frp-token" not found',
    }
    assert "running" in pod["status"]["containerStatuses"][0]["state"]
    assert pod["status"]["phase"] == "Pending"
    assert ready_condition(pod) == (
        "False",
        "ContainersNotReady",
        "containers with unready status: [frpc]",
    )
    assert workloads.environment(NS, name, "frpc") is None
    assert workloads.environment(NS, name, "app") is not None
    (event,) = fake.items(*EVENT, NS)
    assert (event["type"], event["reason"], event["message"]) == (
        "Warning",
        "Failed",
        'Error: secret "frp-token" not found',
    )
    assert event["involvedObject"]["fieldPath"] == "spec.containers{frpc}"
    assert event["source"] == {"component": "kubelet", "host": "kind-worker"}

    partial = kubelet.frp_token(NS)
    del partial["data"]["group-key"]
    fake.apply(partial)
    assert not roll(fake, workloads, body)
    assert waiting(pods(fake)[name], "frpc")["message"] == (
        f"couldn't find key group-key in Secret {NS}/frp-token"
    )

    token = "tok$(X)en $$ \"'\\ é\n"  # secretKeyRef values are never expanded
    fake.apply(kubelet.frp_token(NS, token=token, group_key="g"))
    assert roll(fake, workloads, body)
    pod = pods(fake)[name]
    assert pod["status"]["phase"] == "Running" and kubelet.is_ready(pod)
    env = workloads.environment(NS, name, "frpc")
    assert env is not None
    assert (env["POD_NAME"], env["FRP_TOKEN"], env["FRP_GROUP_KEY"]) == (name, token, "g")
    logs = fake.url + f"/api/v1/namespaces/{NS}/pods/{name}/log?container=frpc"
    with urllib.request.urlopen(logs, timeout=10) as response:
        assert "login to server success" in response.read().decode()


def test_environment_follows_make_environment_variables(fake: FakeKube) -> None:
    fake.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": NS},
            "data": {"LEVEL": "debug", "MODE": "$(LEVEL)"},
        }
    )
    raw = b"\xff\xfebytes"  # Secret data is bytes; the kubelet passes them on as they are
    fake.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": NS},
            "data": {"password": base64.b64encode(raw).decode()},
        }
    )
    app = {
        "name": "app",
        "image": "registry:5000/team-a/web:1",
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"}],
        "env": [
            {"name": "FIRST", "value": "one"},
            {"name": "REF", "value": "$(FIRST)-$(LATER)-$(CM_LEVEL)-$$(FIRST)-$-a$$b-$(NOPE"},
            {"name": "LATER", "value": "two"},
            {"name": "MASTER", "value": "$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
            {"name": "EMPTY", "value": ""},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {
                "name": "MAYBE",
                "valueFrom": {"secretKeyRef": {"name": "absent", "key": "x", "optional": True}},
            },
            {
                "name": "MODE2",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}},
            },
            {"name": "FIRST", "value": "again"},
        ],
    }
    workloads = Workloads(fake)
    assert roll(fake, workloads, deployment(replicas=1, containers=[app]))
    (name,) = pods(fake)
    env = workloads.environment(NS, name, "app")
    assert env is not None
    assert env["REF"] == "one-$(LATER)-debug-$(FIRST)-$-a$b-$(NOPE"
    assert env["MASTER"] == "10.96.0.1:443"
    assert env["KUBERNETES_PORT_443_TCP"] == "tcp://10.96.0.1:443"
    assert (env["EMPTY"], env["FIRST"], env["MODE2"], env["CM_MODE"]) == (
        "",
        "again",
        "$(LEVEL)",
        "$(LEVEL)",
    )
    assert env["PASSWORD"].encode("utf-8", "surrogateescape") == raw
    assert "MAYBE" not in env

    for ref, message in (
        ({"configMapKeyRef": {"name": "nope", "key": "x"}}, 'configmap "nope" not found'),
        (
            {"configMapKeyRef": {"name": "settings", "key": "x"}},
            f"couldn't find key x in ConfigMap {NS}/settings",
        ),
        (
            {"secretKeyRef": {"name": "db", "key": "user"}},
            f"couldn't find key user in Secret {NS}/db",
        ),
    ):
        broken = dict(app, env=[{"name": "X", "valueFrom": ref}])
        assert not roll(fake, workloads, deployment(replicas=1, containers=[broken]))
        stuck = [p for p in pods(fake).values() if not kubelet.is_ready(p)]
        assert [waiting(p, "app")["message"] for p in stuck] == [message]


def test_env_values_arrive_byte_exact_through_the_chart(
    fake: FakeKube, helm: str, chart_dir: Path, tmp_path: Path
) -> None:
    """What a user types is what the process sees: the chart writes every $ as $$ and the
    kubelet's expansion turns it back; the frp Secret's values pass untouched."""
    typed = {
        "PASSWORD": "pa$$word",
        "HOME_REF": "$(HOME)",
        "ESCAPED": "$$(x)",
        "FIRST": "one",
        "NOT_A_REF": "$(FIRST)",
        "DOLLARS": "$ $$ $$$ end$",
        "UNICODE": "日本語 $(🚀) é",
        "LINES": "a\nb\r\n\tc",
        "SPACES": "  spaced  ",
        "EMPTY": "",
    }
    spec = models.parse_deployment(
        {
            "name": "web",
            "image": "registry:5000/team-a/web:1.0",
            "replicas": 1,
            "expose": True,
            "env": [{"name": k, "value": v} for k, v in typed.items()],
        }
    )
    settings = config.load(data_dir=tmp_path / "data")
    app = models.Deployment(group="team-a", id="k3x9q2", spec=spec)
    values = tmp_path / "values.json"
    # raw UTF-8: helm's YAML parser refuses escaped surrogate pairs
    chart_input = json.dumps(chart_values(app, settings=settings), ensure_ascii=False)
    values.write_text(chart_input, encoding="utf-8")
    rendered = subprocess.run(
        [helm, "template", app.name, str(chart_dir), "-n", NS, "-f", str(values)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    objects = [d for d in yaml.safe_load_all(rendered) if d]
    token = "s3cr$(et)$$"
    fake.apply(kubelet.frp_token(NS, name=settings.frp.token_secret, token=token))
    workloads = Workloads(fake)
    for obj in objects:
        obj["metadata"]["namespace"] = NS
        stored = fake.apply(obj)
        if obj["kind"] == "Deployment":
            assert workloads.roll(stored, release=app.name, health="ok")
    (name,) = pods(fake)
    env = workloads.environment(NS, name, "app")
    assert env is not None
    assert {k: env[k] for k in typed} == typed
    frpc = workloads.environment(NS, name, "frpc")
    assert frpc is not None and frpc["FRP_TOKEN"] == token
