"""Proves fielderrors' mapping: API field paths become the form's inputs, labels and rows as
people count them (from 1), in page order, with no path left in what a page shows."""

from __future__ import annotations

from gitops_bridge.errors import FieldProblem, InvalidRequest
from gitops_bridge.webapp import fielderrors

ROWS = [{"kind": "plain"}, {"kind": "secret"}, {"kind": "ref"}]


def refused(*problems: tuple[str, str]) -> InvalidRequest:
    return InvalidRequest.of([FieldProblem(field, message) for field, message in problems])


def test_deployment_problems_land_on_their_inputs_in_page_order() -> None:
    found = fielderrors.deployment_form(
        refused(
            ("env[1].value", "must not be empty"),
            ("replicas", "must be 0..20, got 50"),
            ("env[2].secretRef.key", "is required"),
            ("volumes[0].path", "must be an absolute path"),
            ("autoscaling.max", "must be >= autoscaling.min (3), got 2"),
            ("command[1]", "must not be empty"),
        ),
        env=ROWS,
        mounts=1,
        editing=False,
    )
    assert [(s.target, s.label) for s in found.summary] == [
        ("f-replicas", "Replicas"),
        ("f-command", "Command"),
        ("f-autoscale-max", "Max pods"),
        ("f-env-2-secret", "Environment row 2, value"),  # a secret row: its secret input
        ("f-env-3-ref-key", "Environment row 3, Secret key"),
        ("f-mount-1-path", "Volumes row 1, mount path"),
    ]
    assert found.first == "f-replicas"
    assert found.at("f-autoscale-max") is not None
    assert found.at("f-autoscale-max").message == "Must be >= Min pods (3), got 2."  # type: ignore[union-attr]
    row = found.at("f-env-2-secret")
    assert row is not None and row.message == "Row 2 value: must not be empty."
    assert row.text == "Must not be empty." and row.id == "f-env-2-secret-error"
    assert [s.target for s in found.starting("f-env-3-")] == ["f-env-3-ref-key"]
    assert found.general == ()


def test_what_no_input_shows_is_said_once_without_a_path() -> None:
    found = fielderrors.deployment_form(
        refused(
            ("name", "a deployment named 'web' exists"),
            ("", "the body must be a JSON object"),
            ("env[7].name", "duplicate name 'A'"),
        ),
        env=ROWS,
        mounts=1,
        editing=True,  # the edit form has no name field
    )
    assert found.shown == {}
    assert found.general == (
        "Name: a deployment named 'web' exists.",
        "The body must be a JSON object.",
        "Environment row 8 name: duplicate name 'A'.",
    )
    assert fielderrors.deployment_form(None, env=ROWS, mounts=1, editing=False).first is None


def test_group_form_problems_name_the_quota_as_the_form_does() -> None:
    found = fielderrors.group_form(
        refused(("quota.memory", "must be a quantity"), ("members[2]", "must be a user name")),
        prefix="e-team-a-",
        editing=True,
    )
    assert [(s.target, s.label, s.field) for s in found.summary] == [
        ("e-team-a-members", "Members", "members[2]"),
        ("e-team-a-memory", "Memory", "quota.memory"),
    ]
    assert found.first == "e-team-a-members"
