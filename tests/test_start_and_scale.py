"""Health checks, start command and autoscaling as data: which bodies models.py accepts and
what each refusal says, how a merge patch, a commit message and a three-way merge treat them,
that they render into chart values and parse back unchanged, how ReadWriteOnce volumes limit
autoscaling, and what the card's status counts as the pods wanted."""

from __future__ import annotations

from typing import Any

import pytest

from gitops_bridge import config, models, mounts, render, status
from gitops_bridge.errors import InvalidRequest
from gitops_bridge.render import yamlio
from gitops_bridge.render.helmrelease import values as chart_values

BASE: dict[str, Any] = {"name": "web", "image": "registry:5000/team-a/web:1.0"}
SETTINGS = config.Settings()


def parse(**fields: Any) -> models.DeploymentSpec:
    return models.parse_deployment(BASE | fields)


def problems(**fields: Any) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as refused:
        parse(**fields)
    return {p.field: p.message for p in refused.value.problems}


# ---- what is accepted, and stored as what ---------------------------------------------------

GOOD: list[tuple[dict[str, Any], dict[str, Any]]] = [
    # (body fields, what the spec holds)
    ({}, {"health": None, "command": [], "args": [], "autoscaling": None, "replicas": 1}),
    ({"health": {"path": "/healthz"}}, {"health": {"path": "/healthz"}}),
    ({"health": {"path": "/"}}, {"health": {"path": "/"}}),
    ({"health": {"path": "/ready?full=1&x=%20"}}, {"health": {"path": "/ready?full=1&x=%20"}}),
    ({"health": None}, {"health": None}),
    ({"command": ["gunicorn"]}, {"command": ["gunicorn"]}),
    ({"args": ["--port", "8080", ""]}, {"args": ["--port", "8080", ""]}),  # empty args are words
    (
        {"command": ["sh", "-c", "exec app --port $PORT $(X) $$"]},
        {"command": ["sh", "-c", "exec app --port $PORT $(X) $$"]},
    ),
    ({"args": ["日本語 🚀", "a'b\"c\\"]}, {"args": ["日本語 🚀", "a'b\"c\\"]}),
    ({"command": ["x"] * models.MAX_ARGS}, {"command": ["x"] * models.MAX_ARGS}),
    ({"args": ["a" * models.MAX_ARG_LENGTH]}, {"args": ["a" * models.MAX_ARG_LENGTH]}),
    # autoscaling: replicas left out is the minimum; within min..max it is stored as the minimum
    (
        {"autoscaling": {"min": 2, "max": 5, "cpu": 70}},
        {"autoscaling": {"min": 2, "max": 5, "cpu": 70}, "replicas": 2},
    ),
    ({"autoscaling": {"max": 4}}, {"autoscaling": {"min": 1, "max": 4, "cpu": 70}, "replicas": 1}),
    ({"autoscaling": {"min": 2, "max": 5}, "replicas": 5}, {"replicas": 2}),
    ({"autoscaling": {"min": 2, "max": 5}, "replicas": 0}, {"replicas": 0}),  # stopped
    ({"autoscaling": {"min": 3, "max": 3, "cpu": 100}}, {"replicas": 3}),
    ({"autoscaling": {"min": 1, "max": 20, "cpu": 1}}, {"replicas": 1}),
    ({"autoscaling": None, "replicas": 4}, {"autoscaling": None, "replicas": 4}),
]


@pytest.mark.parametrize(("fields", "expected"), GOOD)
def test_accepted(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    spec = parse(**fields).model_dump()
    assert {key: spec[key] for key in expected} == expected
    # and what the API answers is a body it accepts again, unchanged
    assert models.parse_deployment(spec).model_dump() == spec


# ---- what is refused, naming the field and the rule -----------------------------------------

CONTROL = "must not contain control characters (one line each), got U+{:04X}"
BAD: list[tuple[dict[str, Any], str, str]] = [
    # (body fields, field, message)
    (
        {"health": {"path": "healthz"}},
        "health.path",
        "must be a URL path starting with '/' (printable ASCII, no spaces; max 2048), "
        "got 'healthz'",
    ),
    ({"health": {"path": "/a b"}}, "health.path", "must be a URL path"),
    ({"health": {"path": "/é"}}, "health.path", "must be a URL path"),
    ({"health": {"path": "/\n"}}, "health.path", "must be a URL path"),
    ({"health": {"path": "/" + "a" * 2048}}, "health.path", "max 2048"),
    ({"health": {"path": "/", "port": 9090}}, "health.port", "unknown field"),
    ({"health": {}}, "health.path", "is required"),
    ({"health": "/healthz"}, "health", "must be an object, got '/healthz'"),
    ({"command": "gunicorn app"}, "command", "must be a list, got 'gunicorn app'"),
    ({"command": ["", "x"]}, "command[0]", "must not be empty (the program to run)"),
    ({"command": ["a", 1]}, "command[1]", "must be a string, got 1"),
    ({"args": ["ok", "a\x00b"]}, "args[1]", CONTROL.format(0)),
    ({"args": ["tab\there"]}, "args[0]", CONTROL.format(9)),
    ({"args": ["line\nbreak"]}, "args[0]", CONTROL.format(10)),
    ({"command": ["x\x85"]}, "command[0]", CONTROL.format(0x85)),
    ({"args": ["\ufeffbom"]}, "args[0]", CONTROL.format(0xFEFF)),
    (
        {"args": ["a" * (models.MAX_ARG_LENGTH + 1)]},
        "args[0]",
        f"must be at most {models.MAX_ARG_LENGTH} characters",
    ),
    (
        {"args": ["x"] * (models.MAX_ARGS + 1)},
        "args",
        f"must have at most {models.MAX_ARGS} entries, got {models.MAX_ARGS + 1}",
    ),
    (
        {"autoscaling": {"min": 2, "max": 1}},
        "autoscaling.max",
        "must be >= autoscaling.min (2), got 1",
    ),
    ({"autoscaling": {"min": 0, "max": 3}}, "autoscaling.min", "must be 1..20, got 0"),
    ({"autoscaling": {"max": 0}}, "autoscaling.max", "must be 1..20, got 0"),
    ({"autoscaling": {"max": 21}}, "autoscaling.max", "must be 1..20, got 21"),
    (
        {"autoscaling": {"max": 3, "cpu": 0}},
        "autoscaling.cpu",
        "must be 1..100 (percent of the CPU request), got 0",
    ),
    ({"autoscaling": {"max": 3, "cpu": 150}}, "autoscaling.cpu", "must be 1..100"),
    ({"autoscaling": {"max": 3, "cpu": 70.5}}, "autoscaling.cpu", "must be a whole number"),
    ({"autoscaling": {"max": True}}, "autoscaling.max", "must be a whole number, got True"),
    ({"autoscaling": {"min": 2}}, "autoscaling.max", "is required"),
    ({"autoscaling": {"max": 3, "target": 50}}, "autoscaling.target", "unknown field"),
    (
        {"autoscaling": {"min": 2, "max": 5}, "replicas": 7},
        "replicas",
        "must be 0 (stopped) or within autoscaling.min..autoscaling.max (2..5): the "
        "autoscaler sets the number of pods, got 7",
    ),
    ({"autoscaling": {"min": 2, "max": 5}, "replicas": 1}, "replicas", "within"),
]


@pytest.mark.parametrize(("fields", "field", "message"), BAD)
def test_refused(fields: dict[str, Any], field: str, message: str) -> None:
    found = problems(**fields)
    assert field in found, found
    assert message in found[field], found[field]


def test_the_autoscaling_maximum_follows_the_installation_limit() -> None:
    limits = models.Limits(max_replicas=50)
    spec = models.parse_deployment(BASE | {"autoscaling": {"max": 50}}, limits=limits)
    assert spec.autoscaling is not None and spec.autoscaling.max == 50
    with pytest.raises(InvalidRequest, match=r"autoscaling\.max: must be 1\.\.50, got 51"):
        models.parse_deployment(BASE | {"autoscaling": {"max": 51}}, limits=limits)


def test_a_file_read_back_with_replicas_outside_the_bounds_still_loads() -> None:
    """A hand edit is not a request: the repository's state loads, replicas as the minimum."""
    data = BASE | {"replicas": 9, "autoscaling": {"min": 2, "max": 5}}
    assert models.DeploymentSpec.model_validate(data).replicas == 2


def test_a_shell_line_shows_a_list_back_exactly() -> None:
    import shlex

    for words in (["sh", "-c", "echo '$HOME' \"x\""], ["a b", "", "ü"], []):
        assert shlex.split(models.argv_line(words)) == words


# ---- merge patches ---------------------------------------------------------------------------


def patched(spec: models.DeploymentSpec, patch: dict[str, Any]) -> models.DeploymentSpec:
    return models.merge_patch(spec, patch, limits=models.DEFAULT_LIMITS)


def test_turning_autoscaling_on_keeps_running_at_the_minimum_and_stopped_stopped() -> None:
    running = parse(replicas=3)
    assert patched(running, {"autoscaling": {"min": 2, "max": 6}}).replicas == 2
    stopped = parse(replicas=0)
    assert patched(stopped, {"autoscaling": {"min": 2, "max": 6}}).replicas == 0


def test_autoscaling_and_health_merge_one_level_and_null_turns_them_off() -> None:
    spec = parse(autoscaling={"min": 2, "max": 5, "cpu": 60}, health={"path": "/a"})
    wider = patched(spec, {"autoscaling": {"max": 8}})
    assert wider.autoscaling == models.Autoscaling(min=2, max=8, cpu=60)
    assert wider.replicas == 2
    off = patched(spec, {"autoscaling": None, "health": None})
    assert (off.autoscaling, off.health, off.replicas) == (None, None, 2)
    assert patched(spec, {"health": {"path": "/b"}}).health == models.Health(path="/b")


def test_scaling_an_autoscaled_deployment_stops_it_or_changes_nothing() -> None:
    spec = parse(autoscaling={"min": 2, "max": 5})
    assert patched(spec, {"replicas": 0}).replicas == 0
    assert patched(spec, {"replicas": 4}) == spec  # the autoscaler decides: no change
    with pytest.raises(InvalidRequest, match=r"replicas: must be 0 \(stopped\) or within"):
        patched(spec, {"replicas": 9})
    assert patched(patched(spec, {"replicas": 0}), {"replicas": 3}).replicas == 2  # started


def test_command_and_args_are_replaced_as_a_whole() -> None:
    spec = parse(command=["a", "b"], args=["c"])
    assert patched(spec, {"command": ["z"]}).command == ["z"]
    assert patched(spec, {"args": []}).args == []


# ---- what history and commit messages say ----------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({}, {"health": {"path": "/healthz"}}, ["health tcp -> http /healthz"]),
        ({"health": {"path": "/a"}}, {}, ["health http /a -> tcp"]),
        ({}, {"command": ["gunicorn", "app:app"]}, ["command (image default) -> gunicorn app:app"]),
        ({"args": ["a b"]}, {"args": []}, ["args 'a b' -> (image default)"]),
        ({"args": ["x" * 100]}, {}, [f"args {'x' * 59}… -> (image default)"]),
        ({"replicas": 3}, {"autoscaling": {"max": 5}}, ["autoscaling off -> 1..5 at 70% cpu"]),
        (
            {"autoscaling": {"min": 1, "max": 5}},
            {"autoscaling": {"min": 2, "max": 5, "cpu": 50}},
            ["autoscaling 1..5 at 70% cpu -> 2..5 at 50% cpu"],
        ),
        (
            {"autoscaling": {"max": 5}},
            {"autoscaling": {"max": 5}, "replicas": 0},
            ["replicas 1 -> 0"],
        ),
        (
            {"autoscaling": {"max": 5}},
            {"replicas": 4},
            ["replicas 1 -> 4", "autoscaling 1..5 at 70% cpu -> off"],
        ),
    ],
)
def test_differences_say_what_changed(
    before: dict[str, Any], after: dict[str, Any], expected: list[str]
) -> None:
    assert models.spec_differences(parse(**before), parse(**after)) == expected


# ---- three-way merges (revert and restore over later changes) --------------------------------


def deployed(**fields: Any) -> models.Deployment:
    return models.Deployment(group="team-a", id="abc123", spec=parse(**fields))


def test_a_revert_carries_health_command_and_autoscaling_over_other_changes() -> None:
    base = deployed(image="registry:5000/team-a/web:1.0")
    theirs = deployed(
        health={"path": "/h"}, command=["run"], args=["--x"], autoscaling={"min": 2, "max": 4}
    )
    ours = deployed(image="registry:5000/team-a/web:2.0")
    merged = models.merge_deployments(base, ours, theirs)
    spec = merged.spec
    assert spec.image == "registry:5000/team-a/web:2.0"
    assert (spec.health, spec.command, spec.args) == (models.Health(path="/h"), ["run"], ["--x"])
    assert spec.autoscaling == models.Autoscaling(min=2, max=4, cpu=70)
    assert spec.replicas == 2  # running with autoscaling: the minimum


def test_both_sides_changing_the_command_differently_conflict() -> None:
    base = deployed(command=["a"])
    with pytest.raises(models.MergeConflict) as conflict:
        models.merge_deployments(base, deployed(command=["b"]), deployed(command=["c"]))
    assert conflict.value.fields == ["command"]


# ---- rendering -------------------------------------------------------------------------------


def test_chart_values_and_back() -> None:
    deployment = deployed(
        health={"path": "/healthz"},
        command=["sh", "-c", "exec app"],
        args=["$(HOME)"],
        autoscaling={"min": 2, "max": 6, "cpu": 65},
    )
    chart = chart_values(deployment, settings=SETTINGS)
    probe = {"type": "http", "path": "/healthz"}
    assert chart["probes"] == {"readiness": probe, "liveness": probe}
    assert (chart["command"], chart["args"]) == (["sh", "-c", "exec app"], ["$(HOME)"])
    assert chart["autoscaling"] == {
        "enabled": True,
        "minReplicas": 2,
        "maxReplicas": 6,
        "targetCPUUtilizationPercentage": 65,
    }
    manifest = render.helmrelease(deployment, settings=SETTINGS)
    document = yamlio.load(manifest.text)
    assert document["spec"]["timeout"] == "8m"  # a rollout of up to 6 pods
    assert render.parse_helmrelease(document) == deployment


def test_without_them_the_values_are_what_they_were() -> None:
    """Nothing new in the values of a deployment that uses none: no upgrade for anyone."""
    chart = chart_values(deployed(replicas=2), settings=SETTINGS)
    assert not {"probes", "command", "args", "autoscaling"} & set(chart)


def test_a_stopped_autoscaled_deployment_keeps_its_bounds() -> None:
    deployment = deployed(autoscaling={"min": 2, "max": 6}, replicas=0)
    chart = chart_values(deployment, settings=SETTINGS)
    assert chart["replicas"] == 0 and chart["autoscaling"]["enabled"] is True
    document = yamlio.load(render.helmrelease(deployment, settings=SETTINGS).text)
    assert render.parse_helmrelease(document) == deployment


# ---- ReadWriteOnce volumes ---------------------------------------------------------------------


def volume(access: str) -> models.Volume:
    spec = models.VolumeSpec(name="data", size="1Gi", accessMode=access)  # type: ignore[arg-type]
    return models.Volume(group="team-a", spec=spec)


def test_a_read_write_once_volume_refuses_autoscaling_beyond_one_pod() -> None:
    mount = [{"volume": "data", "path": "/data"}]
    scaled = deployed(volumes=mount, autoscaling={"min": 1, "max": 3})
    with pytest.raises(InvalidRequest) as refused:
        mounts.check(scaled, [volume("ReadWriteOnce")], [])
    assert {p.field: p.message for p in refused.value.problems} == {
        "autoscaling.max": "must be 1: volume 'data' is ReadWriteOnce (one pod mounts it), got 3; "
        "turn autoscaling off or put the data on a ReadWriteMany class"
    }
    one = deployed(volumes=mount, autoscaling={"min": 1, "max": 1})
    assert mounts.check(one, [volume("ReadWriteOnce")], []).recreate
    assert not mounts.check(scaled, [volume("ReadWriteMany")], []).recreate


# ---- the pods wanted, as the card shows them ---------------------------------------------------


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        (None, 2),  # no reading of the Deployment yet: the minimum
        ({"spec": {}}, 2),
        ({"spec": {"replicas": 4}}, 4),  # what the autoscaler set
        ({"spec": {"replicas": 1}}, 2),  # the API server's default, before the autoscaler acts
        ({"spec": {"replicas": 9}}, 6),
    ],
)
def test_the_pods_wanted_are_the_autoscalers_within_the_bounds(
    cluster: dict[str, Any] | None, expected: int
) -> None:
    deployment = deployed(autoscaling={"min": 2, "max": 6})
    assert status.desired_replicas(deployment, cluster) == expected


def test_without_autoscaling_or_stopped_the_pods_wanted_are_the_replicas() -> None:
    cluster = {"spec": {"replicas": 4}}
    assert status.desired_replicas(deployed(replicas=3), cluster) == 3
    assert status.desired_replicas(deployed(replicas=0, autoscaling={"max": 3}), cluster) == 0


# ---- over a file a person edited ---------------------------------------------------------------


def test_turning_them_off_removes_them_from_a_hand_edited_file_keeping_the_persons_tuning() -> None:
    on = deployed(
        health={"path": "/h"}, command=["run"], args=["-x"], autoscaling={"min": 2, "max": 4}
    )
    text = render.helmrelease(on, settings=SETTINGS).text
    edited = text.replace(
        "      liveness:\n        type: http\n",
        "      liveness:\n        initialDelaySeconds: 30  # slow start\n        type: http\n",
    )
    assert edited != text
    off = on.model_copy(update={"spec": parse(replicas=2)})
    written = render.helmrelease(off, settings=SETTINGS, current=edited.encode(), before=on)
    values = yamlio.load(written.text)["spec"]["values"]
    assert not {"command", "args", "autoscaling"} & set(values)
    assert values["probes"] == {"liveness": {"initialDelaySeconds": 30}}
    assert "# slow start" in written.text
    assert render.parse_helmrelease(yamlio.load(written.text)).spec == off.spec
