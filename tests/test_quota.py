"""Proves quota.py's rule: a change that replaces pods (create, start, new pod template, restart)
must leave the group within its quota, surge pods counted, increase or not; scaling down,
stopping and deleting are always allowed; refusals say what is over and what to do."""

from __future__ import annotations

from typing import Any

import pytest

from gitops_bridge import quantity, quota
from gitops_bridge.errors import QuotaExceeded
from gitops_bridge.models import (
    Autoscaling,
    Deployment,
    DeploymentSpec,
    EnvVar,
    Group,
    Health,
    QuotaSpec,
    Resources,
)

SIDECAR = quota.Sidecar(cpu=quantity.parse("10m"), memory=quantity.parse("32Mi"))


def group(cpu: str = "2", memory: str = "4Gi", deployments: int = 5) -> Group:
    return Group(name="team-a", quota=QuotaSpec(cpu=cpu, memory=memory, deployments=deployments))


def deployment(id: str = "abc123", name: str = "web", **fields: Any) -> Deployment:
    restarted_at = fields.pop("restarted_at", "")
    spec = DeploymentSpec(name=name, image="registry:5000/team-a/web:1.0", **fields)
    return Deployment(group="team-a", id=id, spec=spec, restarted_at=restarted_at)


def changed(d: Deployment, restarted_at: str | None = None, **fields: Any) -> Deployment:
    update: dict[str, Any] = {"spec": d.spec.model_copy(update=fields)}
    if restarted_at is not None:
        update["restarted_at"] = restarted_at
    return d.model_copy(update=update)


def check(
    g: Group, current: list[Deployment], before: Deployment | None, after: Deployment | None
) -> quota.Usage:
    return quota.check(g, current=current, before=before, after=after, sidecar=SIDECAR)


# --- footprint ----------------------------------------------------------------------------------


def test_footprint_counts_the_surge_pod_and_the_sidecar() -> None:
    spec = DeploymentSpec(name="web", image="nginx", replicas=3, expose=True)
    used = quota.footprint(spec, sidecar=SIDECAR)
    assert (used.cpu, used.memory, used.pods) == (
        quantity.parse("440m"),
        quantity.parse("640Mi"),
        4,
    )
    stopped = quota.footprint(spec.model_copy(update={"replicas": 0}), sidecar=SIDECAR)
    assert (stopped.cpu, stopped.pods, stopped.deployments) == (quantity.Quantity(0), 0, 1)


# --- which changes replace pods -----------------------------------------------------------------

WEB = deployment(replicas=2)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (None, WEB, True),  # create
        (None, changed(WEB, replicas=0), False),  # create stopped
        (WEB, None, False),  # delete
        (WEB, changed(WEB, replicas=0), False),  # stop
        (WEB, changed(WEB, replicas=5), False),  # scale up (an increase: checked as one)
        (WEB, changed(WEB, replicas=1), False),  # scale down
        (changed(WEB, replicas=0), WEB, True),  # start
        (WEB, changed(WEB, image="registry:5000/team-a/web:2.0"), True),
        (WEB, changed(WEB, env=[EnvVar(name="A", value="1")]), True),
        (WEB, changed(WEB, port=9090), True),
        (WEB, changed(WEB, resources=Resources(cpu="200m")), True),
        (WEB, changed(WEB, expose=True), True),
        (WEB, changed(WEB, restarted_at="2025-01-01T00:00:00Z"), True),
        (WEB, changed(WEB, replicas=1, image="registry:5000/team-a/web:2.0"), True),
        (WEB, changed(WEB, replicas=0, image="registry:5000/team-a/web:2.0"), False),
    ],
)
def test_replaces_pods(before: Deployment | None, after: Deployment | None, expected: bool) -> None:
    assert quota.replaces_pods(before, after) is expected


def test_pod_template_changes_are_named() -> None:
    after = changed(WEB, restarted_at="now", image="x/y:2", env=[EnvVar(name="A")], replicas=7)
    assert quota.pod_template_changes(WEB, after) == ["image", "env", "restart"]
    started = changed(WEB, health=Health(path="/h"), command=["run"], args=["-x"])
    assert quota.pod_template_changes(WEB, started) == ["health", "command", "args"]
    # the autoscaler's bounds are not in the pods' template
    scaled = changed(WEB, autoscaling=Autoscaling(min=2, max=4))
    assert quota.pod_template_changes(WEB, scaled) == []


# --- autoscaling: the maximum counts ------------------------------------------------------------


def test_an_autoscaled_deployment_occupies_its_maximum_plus_the_surge_pod() -> None:
    spec = DeploymentSpec(
        name="web", image="nginx", expose=True, autoscaling=Autoscaling(min=2, max=5)
    )
    assert spec.replicas == 2
    used = quota.footprint(spec, sidecar=SIDECAR)
    assert (used.pods, used.cpu, used.memory) == (
        6,
        quantity.parse("660m"),  # 6 x (100m + 10m sidecar)
        quantity.parse("960Mi"),  # 6 x (128Mi + 32Mi)
    )
    stopped = quota.footprint(spec.model_copy(update={"replicas": 0}), sidecar=SIDECAR)
    assert (stopped.pods, stopped.cpu) == (0, quantity.Quantity(0))
    # Recreate (a ReadWriteOnce volume; then max is 1): no surge pod
    one = deployment(autoscaling=Autoscaling(min=1, max=1))
    assert quota.occupies(one.model_copy(update={"recreate": True}), sidecar=SIDECAR).pods == 1


def test_raising_the_autoscaling_maximum_over_the_quota_says_how_it_counts() -> None:
    web = deployment(autoscaling=Autoscaling(min=1, max=3))  # 4 x 100m = 400m
    wider = changed(web, autoscaling=Autoscaling(min=1, max=9))  # 10 x 100m = 1
    with pytest.raises(QuotaExceeded) as excinfo:
        check(group(cpu="800m"), [web], web, wider)
    message = excinfo.value.message
    assert message.startswith(
        "quota of group team-a exceeded: cpu: used 400m, requested 600m, allowed 800m"
    )
    assert (
        "(autoscaling up to 9 replicas + 1 rolling-update pod = 10 pods x 100m cpu / "
        "128Mi memory per pod)"
    ) in message
    narrower = changed(web, autoscaling=Autoscaling(min=1, max=2))
    assert check(group(cpu="100m"), [web], web, narrower).cpu == quantity.parse("300m")


# --- a group over quota (an admin lowered it) ---------------------------------------------------

# web: 3 replicas + 1 surge = 4 pods x 100m / 128Mi = 400m / 512Mi; api: 2 x 100m = 200m.
OVER_WEB = deployment(replicas=3)
OVER_API = deployment(id="def456", name="api", replicas=1)
OVER = [OVER_WEB, OVER_API]  # 600m used
LOWERED = group(cpu="500m")


@pytest.mark.parametrize(
    ("after", "action"),
    [
        (changed(OVER_WEB, restarted_at="2025-01-01T00:00:00Z"), "restarting web-abc123"),
        (
            changed(OVER_WEB, image="registry:5000/team-a/web:2.0"),
            "changing the image of web-abc123",
        ),
        (changed(OVER_WEB, env=[EnvVar(name="A", value="1")]), "changing the env of web-abc123"),
        (
            changed(OVER_WEB, port=9090, image="registry:5000/team-a/web:2.0"),
            "changing the image and port of web-abc123",
        ),
    ],
)
def test_a_change_that_replaces_pods_must_fit_even_without_growing(
    after: Deployment, action: str
) -> None:
    with pytest.raises(QuotaExceeded) as excinfo:
        check(LOWERED, OVER, OVER_WEB, after)
    message = excinfo.value.message
    assert message.startswith("quota of group team-a exceeded: cpu: used 600m")
    assert "allowed 500m" in message
    assert f"{action} replaces its pods one at a time and needs room for 1 more pod" in message
    assert message.endswith(
        "to make room, scale down or stop a deployment of team-a, "
        "or ask a platform admin to raise the quota"
    )
    assert "memory" not in message.split(";")[0]  # only what is over is named


def test_scaling_down_does_not_excuse_a_rollout_that_still_does_not_fit() -> None:
    smaller = changed(OVER_WEB, replicas=2, image="registry:5000/team-a/web:2.0")  # 600m -> 500m
    with pytest.raises(QuotaExceeded) as excinfo:
        check(group(cpu="400m"), OVER, OVER_WEB, smaller)
    message = excinfo.value.message
    assert "cpu: used 600m, requested -100m, allowed 400m" in message
    assert "changing the image of web-abc123 replaces its pods one at a time" in message


def test_restart_message_reads_as_a_whole() -> None:
    with pytest.raises(QuotaExceeded) as excinfo:
        check(LOWERED, OVER, OVER_WEB, changed(OVER_WEB, restarted_at="now"))
    assert excinfo.value.message == (
        "quota of group team-a exceeded: cpu: used 600m, allowed 500m; restarting web-abc123 "
        "replaces its pods one at a time and needs room for 1 more pod (100m cpu, 128Mi "
        "memory); to make room, scale down or stop a deployment of team-a, or ask a platform "
        "admin to raise the quota"
    )


def test_the_sidecar_is_part_of_the_room_a_rollout_needs() -> None:
    exposed = changed(OVER_WEB, expose=True)
    with pytest.raises(QuotaExceeded) as excinfo:
        check(LOWERED, [exposed, OVER_API], exposed, changed(exposed, restarted_at="now"))
    assert "(110m cpu, 160Mi memory, frpc sidecar included)" in excinfo.value.message


@pytest.mark.parametrize(
    "after",
    [
        changed(OVER_WEB, replicas=2),  # scale down: 600m -> 500m
        changed(OVER_WEB, replicas=1),  # still over (400m): allowed, it shrinks
        changed(OVER_WEB, replicas=0),  # stop
        None,  # delete
        changed(OVER_WEB, replicas=0, image="registry:5000/team-a/web:2.0"),  # stop + new image
    ],
)
def test_scale_down_stop_and_delete_are_always_allowed(after: Deployment | None) -> None:
    check(LOWERED, OVER, OVER_WEB, after)
    check(group(cpu="10m", memory="16Mi", deployments=0), OVER, OVER_WEB, after)


def test_a_change_that_replaces_pods_is_allowed_once_it_fits() -> None:
    restarted = changed(OVER_WEB, restarted_at="now")
    assert check(group(cpu="600m"), OVER, OVER_WEB, restarted).cpu == quantity.parse("600m")
    # or shrinks enough in the same change: 3 surge pods -> 2 = 500m
    smaller = changed(OVER_WEB, replicas=2, image="registry:5000/team-a/web:2.0")
    assert check(LOWERED, OVER, OVER_WEB, smaller).cpu == quantity.parse("500m")


def test_only_the_resource_that_is_over_is_refused() -> None:
    # 768Mi of memory used, quota lowered to 512Mi; cpu (600m of 2) fits
    g = group(cpu="2", memory="512Mi")
    with pytest.raises(QuotaExceeded) as excinfo:
        check(g, OVER, OVER_WEB, changed(OVER_WEB, restarted_at="now"))
    message = excinfo.value.message
    assert "memory: used 768Mi, allowed 512Mi" in message and "cpu:" not in message


def test_the_deployment_count_does_not_block_a_rollout() -> None:
    # an object-count quota only counts creations; an update of an existing release passes
    check(group(deployments=1), OVER, OVER_WEB, changed(OVER_WEB, restarted_at="now"))


# --- growing changes (unchanged rule, same message style) ---------------------------------------


def test_growth_over_quota_says_used_requested_allowed_and_what_to_do() -> None:
    web = deployment(replicas=3)
    api = deployment(id="def456", name="api", replicas=10, resources=Resources(cpu="200m"))
    with pytest.raises(QuotaExceeded) as excinfo:
        check(group(), [web], None, api)
    assert excinfo.value.message == (
        "quota of group team-a exceeded: cpu: used 400m, requested 2200m, allowed 2 "
        "(10 replicas + 1 rolling-update pod = 11 pods x 200m cpu / 128Mi memory per pod); "
        "to make room, scale down or stop a deployment of team-a, or ask a platform admin "
        "to raise the quota"
    )


def test_scale_up_of_a_group_over_quota_is_refused() -> None:
    with pytest.raises(QuotaExceeded, match="cpu: used 600m, requested 100m, allowed 500m"):
        check(LOWERED, OVER, OVER_WEB, changed(OVER_WEB, replicas=4))


def test_creating_beyond_the_deployment_count_is_refused() -> None:
    new = deployment(id="ghi789", name="new", replicas=0)
    with pytest.raises(QuotaExceeded, match="deployments: used 2, requested 1, allowed 2"):
        check(group(deployments=2), OVER, None, new)


# --- several deployments at once ----------------------------------------------------------------


def test_check_states_applies_the_same_rule() -> None:
    restarted = changed(OVER_WEB, restarted_at="now")
    with pytest.raises(QuotaExceeded, match="restarting web-abc123 replaces its pods"):
        quota.check_states(LOWERED, before=OVER, after=[restarted, OVER_API], sidecar=SIDECAR)
    shrunk = changed(OVER_WEB, replicas=1)
    quota.check_states(LOWERED, before=OVER, after=[shrunk, OVER_API], sidecar=SIDECAR)


# --- for people, at the field that can fix it -------------------------------------------------


def refusal(g: Group, current: list[Deployment], before: Any, after: Any) -> list[Any]:
    with pytest.raises(QuotaExceeded) as excinfo:
        check(g, current, before, after)
    return [(p.field, p.message) for p in excinfo.value.problems]


def test_a_refusal_is_said_at_the_replicas_in_rounded_units() -> None:
    web = deployment(replicas=3)  # 4 x 100m = 400m in use
    api = deployment(id="def456", name="api", replicas=10, resources=Resources(cpu="200m"))
    assert refusal(group(), [web], None, api) == [
        (
            "replicas",
            "This needs 2.2 cores of CPU (11 pods of 200m each: 10 replicas + 1 rolling-update "
            "pod); the group has 2 cores, 400m in use — lower the replicas or the CPU per pod.",
        )
    ]
    # memory the same way, with the frpc sidecar counted in each pod
    big = deployment(id="ghi789", name="big", replicas=5, expose=True)
    assert refusal(group(memory="1Gi", cpu="8"), [web], None, big) == [
        (
            "replicas",
            "This needs 960Mi of memory (6 pods of 160Mi each, frpc sidecar included: 5 replicas "
            "+ 1 rolling-update pod); the group has 1Gi, 512Mi in use — lower the replicas or "
            "the memory per pod.",
        )
    ]


def test_a_pod_too_big_for_the_group_is_said_at_its_request() -> None:
    huge = deployment(replicas=1, resources=Resources(cpu="1500m"))  # 2 pods x 1.5 > 2
    ((field, message),) = refusal(group(), [], None, huge)
    assert field == "resources.cpu"
    assert message.startswith("This needs 3 cores of CPU (2 pods of 1.5 cores each: 1 replica")
    assert "even 1 replica does not fit — lower the CPU per pod" in message


def test_autoscaling_is_said_at_its_maximum_and_the_count_at_the_group() -> None:
    web = deployment(autoscaling=Autoscaling(min=1, max=3))
    wider = changed(web, autoscaling=Autoscaling(min=1, max=9))
    ((field, message),) = refusal(group(cpu="800m"), [web], web, wider)
    assert field == "autoscaling.max" and "up to 9 autoscaled replicas + 1" in message
    assert message.endswith("none in use — lower the max pods or the CPU per pod.")
    new = deployment(id="ghi789", name="new", replicas=0)
    assert refusal(group(deployments=2), OVER, None, new) == [
        (
            "group",
            "Group team-a has 2 deployments, as many as its quota allows: delete one, or ask a "
            "platform admin to raise the quota.",
        )
    ]


def test_a_group_the_others_fill_and_a_replayed_commit_name_no_field() -> None:
    # web alone (400m) is over a quota lowered to 300m: nothing of api can make room
    restarted = changed(OVER_API, restarted_at="now")
    ((field, message),) = refusal(group(cpu="300m"), OVER, OVER_API, restarted)
    assert (field, message) == (
        "",
        "The other deployments of group team-a use 400m of its 300m of CPU: scale one of them "
        "down or stop it, or ask a platform admin to raise the quota.",
    )
    with pytest.raises(QuotaExceeded) as excinfo:
        quota.check_states(LOWERED, before=OVER, after=[restarted, OVER_WEB], sidecar=SIDECAR)
    assert excinfo.value.problems == ()
