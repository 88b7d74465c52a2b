"""Rendering is pure and byte-stable: golden files for every manifest kind, YAML 1.1 safety.

Regenerate the golden files with `scripts/update-golden` and review the diff like code.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gitops_bridge import config, models, render
from gitops_bridge.render import yamlio

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

GROUP = models.parse_group(
    {
        "name": "team-a",
        "members": ["alice", "bob"],
        "quota": {"cpu": "2", "memory": "4Gi", "storage": "10Gi", "deployments": 5},
    }
)
SPEC = models.parse_deployment(
    {
        "name": "web",
        "image": "registry:5000/team-a/web:1.4.2",
        "replicas": 2,
        "port": 8080,
        "env": [
            {"name": "GREETING", "value": 'he said "hi"\n{{ .Values.secret }}'},
            {"name": "FLAG", "value": "yes"},
            {"name": "ZIP", "value": "01234"},
            {"name": "EMPTY", "value": ""},
        ],
        "resources": {"cpu": "250m", "memory": "256Mi"},
        "expose": True,
    }
)
DEPLOYMENT = models.Deployment(group="team-a", id="k3x9q2", spec=SPEC, owner="alice")
# health checks, a start command and autoscaling: the values the chart gets for them
SCALED = models.Deployment(
    group="team-a",
    id="p4w7m1",
    owner="alice",
    spec=models.parse_deployment(
        {
            "name": "api",
            "image": "registry:5000/team-a/api:2.0",
            "health": {"path": "/healthz?probe=1"},
            "command": ["gunicorn"],
            "args": ["--bind", "0.0.0.0:8080", "--access-logformat", "$(h) '%(r)s'", "app:app"],
            "autoscaling": {"min": 2, "max": 6, "cpu": 75},
        }
    ),
)


def _settings(**overrides: object) -> config.Settings:
    return config.Settings(**overrides)  # type: ignore[arg-type]


def _cases() -> dict[str, str]:
    git_mode = _settings()
    oci_mode = _settings(chart={"source": "oci"})
    cases = {
        m.path.replace("/", "__"): m.text for m in render.group_files(GROUP, settings=git_mode)
    }
    cases["helmrelease-git.yaml"] = render.helmrelease(DEPLOYMENT, settings=git_mode).text
    stopped = DEPLOYMENT.model_copy(
        update={"spec": SPEC.model_copy(update={"replicas": 0, "expose": False})}
    )
    cases["helmrelease-stopped.yaml"] = render.helmrelease(stopped, settings=git_mode).text
    cases["helmrelease-scaled.yaml"] = render.helmrelease(SCALED, settings=git_mode).text
    cases["helmrelease-oci.yaml"] = render.helmrelease(DEPLOYMENT, settings=oci_mode).text
    oci_files = render.group_files(GROUP, settings=oci_mode)
    cases["oci-source.yaml"] = next(m.text for m in oci_files if m.path.endswith("source.yaml"))
    cases["group-kustomization.yaml"] = render.group_kustomization(
        "team-a",
        files=[
            "apps/web-k3x9q2.yaml",
            "rbac.yaml",
            "namespace.yaml",
            "quota.yaml",
            "networkpolicy.yaml",
            "sync.yaml",
            "notifications.yaml",
            "apps/api-aaaaaa.yaml",
        ],
    ).text
    cases["tenants-kustomization.yaml"] = render.tenants_kustomization(["team-b", "team-a"]).text
    return cases


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_golden_file(name: str) -> None:
    path = GOLDEN / (name if name.endswith(".yaml") else f"{name}")
    if UPDATE:
        path.write_text(CASES[name])
    assert path.exists(), f"missing golden file {path}; run scripts/update-golden"
    assert CASES[name] == path.read_text(), f"{name} changed; review and run scripts/update-golden"


def test_no_stale_golden_files() -> None:
    assert sorted(p.name for p in GOLDEN.glob("*.yaml")) == sorted(CASES)


def test_rendering_twice_gives_identical_bytes() -> None:
    assert _cases() == CASES


def test_helmrelease_parses_back_to_the_same_deployment() -> None:
    for deployment in (DEPLOYMENT, SCALED):
        text = render.helmrelease(deployment, settings=_settings()).text
        assert render.parse_helmrelease(yamlio.load(text)) == deployment


def test_group_parses_back_from_its_namespace() -> None:
    namespace = render.group_files(GROUP, settings=_settings())[0]
    assert render.parse_group(yamlio.load(namespace.text)) == GROUP


@pytest.mark.parametrize(
    "value",
    [
        "yes",
        "No",
        "on",
        "OFF",
        "y",
        "~",
        "null",
        "true",
        "0123",
        "1e3",
        "0x1F",
        "1:20",
        "2001-12-14",
        ".inf",
        "- a",
        "a: b",
        "#x",
        "{{ x }}",
        "'q'",
        '"dq"',
        " lead",
        "trail ",
        "multi\nline\n",
        "tab\there",
        "ünïcode ✓",
        "@at",
        "`tick`",
        "!tag",
        "&anchor",
        "*alias",
        "%pct",
        "|",
        ">",
        "?",
        ",",
        "[x]",
        "=",
        "registry:5000/a:b",
    ],
)
def test_strings_reach_kubernetes_yaml_readers_unchanged(kubectl: str, value: str) -> None:
    """kubectl (go-yaml, YAML 1.1 rules) reads back exactly the string we wrote."""
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "probe"},
        "data": {"value": value},
    }
    text = yamlio.dump(doc)
    out = subprocess.run(
        [kubectl, "annotate", "--local", "-o", "json", "-f", "-", "probe=1"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert json.loads(out.stdout)["data"]["value"] == value
