"""State's indexes (deployments by group, ids in use) answer what a scan would."""

from __future__ import annotations

import random

from gitops_bridge import models
from gitops_bridge.service import State


def _deployment(group: str, app: str, id_: str) -> models.Deployment:
    spec = models.parse_deployment({"name": app, "image": "nginx"})
    return models.Deployment(group=group, id=id_, spec=spec)


def test_in_group_and_ids_match_a_scan_of_the_state() -> None:
    rng = random.Random(9)
    state = State(commit="c0")
    for n in range(300):
        d = _deployment(f"g{rng.randrange(7)}", f"app{n}", f"{n:06d}")
        state.deployments[d.name] = d
    held = _deployment("g2", "broken", "zzz001")
    state.unreadable["tenants/g2/apps/broken-zzz001.yaml"] = "invalid YAML"
    state.held["tenants/g2/apps/broken-zzz001.yaml"] = held
    state.unreadable["tenants/g3/apps/other-zzz002.yaml"] = "invalid YAML"
    state.unreadable["tenants/g3/quota.yaml"] = "invalid YAML"

    for group in [f"g{i}" for i in range(8)]:
        expected = [d for d in state.deployments.values() if d.group == group]
        expected += [held] if group == "g2" else []
        assert state.in_group(group) == expected
    found = state.in_group("g2")
    found.clear()  # a caller's list: the index is not changed through it
    assert held in state.in_group("g2")

    expected_ids = {d.id for d in state.deployments.values()} | {"zzz001", "zzz002"}
    assert state.ids() == expected_ids
    assert State(commit="c1") == State(commit="c1")  # the indexes take no part in equality
