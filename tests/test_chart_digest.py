"""The chart writes the bridge's settings digest (``specDigest``) as an annotation on the
Deployment's own metadata and nowhere on the pod template: a new digest restarts no pod, and
after a rolled-back upgrade the Deployment still names the settings that run. Proved with the
real helm (lint --strict, template) and the chart's values schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gitops_bridge import config, models
from gitops_bridge.render import digest
from gitops_bridge.render.helmrelease import values
from tests.test_chart import IMAGE, RICH_VALUES, helm_template, lint_strict, render

DIGEST = "0123456789abcdef"


def bridge_values(**fields: Any) -> dict[str, Any]:
    """Values exactly as the bridge renders them for a deployment."""
    spec = models.parse_deployment({"name": "web", "image": IMAGE, **fields})
    deployment = models.Deployment(group="team", id="abc123", spec=spec)
    return values(deployment, settings=config.Settings())


def test_lint_strict_is_clean_with_the_digest(helm: str, chart_dir: Path, tmp_path: Path) -> None:
    lint_strict(helm, chart_dir, tmp_path, {**RICH_VALUES, digest.KEY: DIGEST})
    lint_strict(helm, chart_dir, tmp_path, bridge_values(replicas=2, expose=True))


def test_the_digest_is_an_annotation_of_the_deployment_not_of_its_pods(
    helm: str, chart_dir: Path, tmp_path: Path
) -> None:
    given = bridge_values(replicas=2, expose=True)
    objects = render(helm, chart_dir, tmp_path, given)
    deployment = objects["Deployment"]
    assert deployment["metadata"]["annotations"] == {digest.ANNOTATION: given[digest.KEY]}
    template = deployment["spec"]["template"]["metadata"]
    assert digest.ANNOTATION not in (template.get("annotations") or {})
    assert given[digest.KEY] not in str(deployment["spec"])
    for kind, obj in objects.items():  # on the Deployment only
        if kind != "Deployment":
            assert digest.ANNOTATION not in (obj["metadata"].get("annotations") or {}), kind


@pytest.mark.parametrize("replicas", [1, 3])
def test_a_new_digest_changes_no_pod_template(
    helm: str, chart_dir: Path, tmp_path: Path, replicas: int
) -> None:
    base = {"image": IMAGE, "replicas": replicas, "expose": True}
    rendered = [
        render(helm, chart_dir, tmp_path, {**base, digest.KEY: value})["Deployment"]
        for value in ("", DIGEST, "fedcba9876543210" * 4)
    ]
    templates = [d["spec"]["template"] for d in rendered]
    assert templates[0] == templates[1] == templates[2]
    assert "annotations" not in rendered[0]["metadata"]  # empty: no annotation at all
    assert rendered[2]["metadata"]["annotations"] == {digest.ANNOTATION: "fedcba9876543210" * 4}


@pytest.mark.parametrize("value", ["XYZ", "0123456789ABCDEF", "0123", "a" * 65, 12, "../x"])
def test_the_schema_takes_only_a_hex_digest(
    helm: str, chart_dir: Path, tmp_path: Path, value: Any
) -> None:
    result = helm_template(helm, chart_dir, tmp_path, {"image": IMAGE, digest.KEY: value})
    assert result.returncode != 0, result.stdout
    assert "schema" in result.stderr and f"/{digest.KEY}" in result.stderr, result.stderr
