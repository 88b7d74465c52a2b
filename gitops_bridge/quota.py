"""Pure quota checks: does a group still fit after a change?

A deployment's footprint is what it can occupy during a rolling update:
``(replicas + 1 surge pod) x (app container + sidecars)`` requests, and nothing
when it is stopped (0 replicas). A change is refused when it would take a group
over its quota *and* increases usage, so a group that is over quota (because an
admin lowered it) can still scale down.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gitops_bridge import quantity
from gitops_bridge.errors import QuotaExceeded
from gitops_bridge.models import DeploymentSpec, Group
from gitops_bridge.quantity import Quantity

SURGE_PODS = 1  # the chart's RollingUpdate maxSurge


@dataclass(frozen=True)
class Sidecar:
    """Requests of the container added to exposed deployments (frpc)."""

    cpu: Quantity
    memory: Quantity


@dataclass(frozen=True)
class Usage:
    cpu: Quantity
    memory: Quantity
    pods: int
    deployments: int

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            cpu=self.cpu + other.cpu,
            memory=self.memory + other.memory,
            pods=self.pods + other.pods,
            deployments=self.deployments + other.deployments,
        )

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            cpu=self.cpu - other.cpu,
            memory=self.memory - other.memory,
            pods=self.pods - other.pods,
            deployments=self.deployments - other.deployments,
        )


NOTHING = Usage(cpu=Quantity(0), memory=Quantity(0), pods=0, deployments=0)


def pod_requests(spec: DeploymentSpec, *, sidecar: Sidecar) -> tuple[Quantity, Quantity]:
    """CPU and memory requested by one pod of the deployment, sidecars included."""
    cpu = quantity.parse(spec.resources.cpu)
    memory = quantity.parse(spec.resources.memory)
    if spec.expose:
        cpu, memory = cpu + sidecar.cpu, memory + sidecar.memory
    return cpu, memory


def footprint(spec: DeploymentSpec, *, sidecar: Sidecar) -> Usage:
    """The most a deployment occupies, during a rolling update."""
    pods = spec.replicas + SURGE_PODS if spec.replicas else 0
    cpu, memory = pod_requests(spec, sidecar=sidecar)
    return Usage(cpu=cpu * pods, memory=memory * pods, pods=pods, deployments=1)


def usage(specs: Iterable[DeploymentSpec], *, sidecar: Sidecar) -> Usage:
    result = NOTHING
    for spec in specs:
        result = result + footprint(spec, sidecar=sidecar)
    return result


def check(
    group: Group,
    *,
    current: Iterable[DeploymentSpec],
    before: DeploymentSpec | None,
    after: DeploymentSpec | None,
    sidecar: Sidecar,
) -> Usage:
    """Refuse a change (before -> after; None = absent) that does not fit; return the new usage.

    ``current`` holds every deployment of the group as it is now, ``before`` included.
    """
    used = usage(current, sidecar=sidecar)
    old = footprint(before, sidecar=sidecar) if before else NOTHING
    new = footprint(after, sidecar=sidecar) if after else NOTHING
    return _check(group, used=used, total=used - old + new, explain=after, sidecar=sidecar)


def check_states(
    group: Group,
    *,
    before: Iterable[DeploymentSpec],
    after: Iterable[DeploymentSpec],
    sidecar: Sidecar,
) -> Usage:
    """The same rule for a change of several deployments at once (a replayed commit)."""
    used = usage(before, sidecar=sidecar)
    return _check(
        group, used=used, total=usage(after, sidecar=sidecar), explain=None, sidecar=sidecar
    )


def _check(
    group: Group, *, used: Usage, total: Usage, explain: DeploymentSpec | None, sidecar: Sidecar
) -> Usage:
    limit_cpu = quantity.parse(group.quota.cpu)
    limit_memory = quantity.parse(group.quota.memory)
    delta = total - used
    problems = []
    if total.cpu > limit_cpu and total.cpu > used.cpu:
        problems.append(
            f"cpu: used {used.cpu.format_cpu()}, requested {_delta_cpu(delta.cpu)}, "
            f"allowed {limit_cpu.format_cpu()}"
        )
    if total.memory > limit_memory and total.memory > used.memory:
        problems.append(
            f"memory: used {used.memory.human_memory()}, "
            f"requested {delta.memory.human_memory()}, "
            f"allowed {limit_memory.human_memory()}"
        )
    if total.deployments > group.quota.deployments and total.deployments > used.deployments:
        problems.append(
            f"deployments: used {used.deployments}, requested {delta.deployments}, "
            f"allowed {group.quota.deployments}"
        )
    if not problems:
        return total
    explanation = ""
    if explain is not None:
        cpu, memory = pod_requests(explain, sidecar=sidecar)
        pods = explain.replicas + SURGE_PODS if explain.replicas else 0
        explanation = (
            f" ({explain.replicas} replicas + {SURGE_PODS} rolling-update pod = {pods} pods "
            f"x {cpu.format_cpu()} cpu / {memory.human_memory()} memory per pod"
            f"{', frpc sidecar included' if explain.expose else ''})"
        )
    raise QuotaExceeded(
        f"quota of group {group.name} exceeded: " + "; ".join(problems) + explanation
    )


def _delta_cpu(value: Quantity) -> str:
    return value.format_cpu() if value.value >= 0 else "-" + Quantity(-value.value).format_cpu()
