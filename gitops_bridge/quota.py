"""Pure quota checks: does a group still fit after a change?

A deployment's footprint is what it can occupy during a rolling update:
``(replicas + 1 surge pod) x (app container + sidecars)`` requests, and nothing
when it is stopped (0 replicas). With autoscaling the replicas counted are its maximum: the
autoscaler may run that many at any time, and a rollout then adds its surge pod. A change is
refused when it would take a group over its quota *and* increases usage, so a group that is
over quota (because an admin lowered it) can still scale down, stop and delete.

A change that *replaces pods* (a new pod template: image, env, port, resources, expose,
volumes, health checks, command or args, restart; or pods starting where there were none) is
refused whenever the group's usage after it does not fit, increase or not: its rollout starts
a surge pod first, and the ResourceQuota refuses that pod (``FailedCreate ... exceeded
quota``), so the rollout would never happen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gitops_bridge import quantity, units
from gitops_bridge.errors import FieldProblem, QuotaExceeded
from gitops_bridge.models import Deployment, DeploymentSpec, Group
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


NO_SIDECAR = Sidecar(cpu=Quantity(0), memory=Quantity(0))
NOTHING = Usage(cpu=Quantity(0), memory=Quantity(0), pods=0, deployments=0)


def pod_requests(spec: DeploymentSpec, *, sidecar: Sidecar) -> tuple[Quantity, Quantity]:
    """CPU and memory requested by one pod of the deployment, sidecars included."""
    cpu = quantity.parse(spec.resources.cpu)
    memory = quantity.parse(spec.resources.memory)
    if spec.expose:
        cpu, memory = cpu + sidecar.cpu, memory + sidecar.memory
    return cpu, memory


def surge(deployment: Deployment) -> int:
    """Pods a rollout adds before it removes old ones: none with ``Recreate`` (a deployment
    mounting a ReadWriteOnce volume stops its pod before starting the new one)."""
    return 0 if deployment.recreate else SURGE_PODS


def footprint(spec: DeploymentSpec, *, sidecar: Sidecar, surge: int = SURGE_PODS) -> Usage:
    """The most a deployment occupies, during a rollout (autoscaling: at its maximum)."""
    pods = spec.most_replicas + surge if spec.replicas else 0
    cpu, memory = pod_requests(spec, sidecar=sidecar)
    return Usage(cpu=cpu * pods, memory=memory * pods, pods=pods, deployments=1)


def occupies(deployment: Deployment, *, sidecar: Sidecar) -> Usage:
    return footprint(deployment.spec, sidecar=sidecar, surge=surge(deployment))


def usage(deployments: Iterable[Deployment], *, sidecar: Sidecar) -> Usage:
    result = NOTHING
    for deployment in deployments:
        result = result + occupies(deployment, sidecar=sidecar)
    return result


def pod_template_changes(before: Deployment, after: Deployment) -> list[str]:
    """What differs in the pods' template (each difference makes a new ReplicaSet)."""
    changes = [
        field
        for field in (
            "image",
            "port",
            "env",
            "resources",
            "expose",
            "volumes",
            "health",
            "command",
            "args",
        )
        if getattr(before.spec, field) != getattr(after.spec, field)
    ]
    if before.restarted_at != after.restarted_at:
        changes.append("restart")
    return changes


def replaces_pods(before: Deployment | None, after: Deployment | None) -> bool:
    """Does the change start new pods (a create, a start, a new pod template) that must fit?

    Scaling (up or down), stopping (0 replicas) and deleting keep the pod template.
    """
    if after is None or not after.spec.replicas:
        return False
    if before is None or not before.spec.replicas:
        return True
    # Recreate stops the old pods first: its new ones take their room
    return not (after.recreate and before.recreate) and bool(pod_template_changes(before, after))


def check(
    group: Group,
    *,
    current: Iterable[Deployment],
    before: Deployment | None,
    after: Deployment | None,
    sidecar: Sidecar,
    used: Usage | None = None,
) -> Usage:
    """Refuse a change (before -> after; None = absent) that does not fit; return the new usage.

    ``current`` holds every deployment of the group as it is now, ``before`` included;
    ``used``: what they request, when already known.
    """
    if used is None:
        used = usage(current, sidecar=sidecar)
    old = occupies(before, sidecar=sidecar) if before else NOTHING
    new = occupies(after, sidecar=sidecar) if after else NOTHING
    replacing = [(before, after)] if after is not None and replaces_pods(before, after) else []
    return _check(
        group,
        used=used,
        total=used - old + new,
        replacing=replacing,
        explain=after,
        sidecar=sidecar,
    )


def check_states(
    group: Group,
    *,
    before: Iterable[Deployment],
    after: Iterable[Deployment],
    sidecar: Sidecar,
) -> Usage:
    """The same rule for a change of several deployments at once (a replayed commit)."""
    old = {d.name: d for d in before}
    new = {d.name: d for d in after}
    replacing = [
        (old.get(name), d) for name, d in sorted(new.items()) if replaces_pods(old.get(name), d)
    ]
    return _check(
        group,
        used=usage(old.values(), sidecar=sidecar),
        total=usage(new.values(), sidecar=sidecar),
        replacing=replacing,
        explain=None,
        sidecar=sidecar,
    )


def _check(
    group: Group,
    *,
    used: Usage,
    total: Usage,
    replacing: list[tuple[Deployment | None, Deployment]],
    explain: Deployment | None,
    sidecar: Sidecar,
) -> Usage:
    limit_cpu = quantity.parse(group.quota.cpu)
    limit_memory = quantity.parse(group.quota.memory)
    delta = total - used
    problems = []
    over: list[str] = []  # the resources refused, for ``_fixes``
    grows = False  # a refused resource is one the change increases
    if total.cpu > limit_cpu and (total.cpu > used.cpu or replacing):
        grows = grows or total.cpu > used.cpu
        over.append("cpu")
        requested = f", requested {_delta_cpu(delta.cpu)}" if delta.cpu.value else ""
        problems.append(
            f"cpu: used {used.cpu.format_cpu()}{requested}, allowed {limit_cpu.format_cpu()}"
        )
    if total.memory > limit_memory and (total.memory > used.memory or replacing):
        grows = grows or total.memory > used.memory
        over.append("memory")
        requested = f", requested {delta.memory.human_memory()}" if delta.memory.value else ""
        problems.append(
            f"memory: used {used.memory.human_memory()}{requested}, "
            f"allowed {limit_memory.human_memory()}"
        )
    if total.deployments > group.quota.deployments and total.deployments > used.deployments:
        grows = True
        over.append("deployments")
        problems.append(
            f"deployments: used {used.deployments}, requested {delta.deployments}, "
            f"allowed {group.quota.deployments}"
        )
    if not problems:
        return total
    fixes = _fixes(group, over, total=total, used=used, explain=explain, sidecar=sidecar)
    explanation = ""
    if grows and explain is not None and explain.spec.replicas:
        spec = explain.spec
        cpu, memory = pod_requests(spec, sidecar=sidecar)
        extra = surge(explain)
        pods = spec.most_replicas + extra
        most = (
            f"autoscaling up to {spec.most_replicas} replicas"
            if spec.autoscaling is not None
            else f"{spec.replicas} replicas"
        )
        counted = f"{most} + {extra} rolling-update pod = " if extra else ""
        if not extra and spec.autoscaling is not None:
            counted = "autoscaling up to "
        explanation = (
            f" ({counted}{pods} pods "
            f"x {cpu.format_cpu()} cpu / {memory.human_memory()} memory per pod"
            f"{', frpc sidecar included' if spec.expose else ''})"
        )
    elif replacing:
        explanation = "; " + "; ".join(
            _replacement(before, after, sidecar=sidecar) for before, after in replacing
        )
    raise QuotaExceeded(
        f"quota of group {group.name} exceeded: "
        + "; ".join(problems)
        + explanation
        + f"; to make room, scale down or stop a deployment of {group.name}, "
        "or ask a platform admin to raise the quota",
        problems=fixes,
    )


def _fixes(
    group: Group,
    over: list[str],
    *,
    total: Usage,
    used: Usage,
    explain: Deployment | None,
    sidecar: Sidecar,
) -> list[FieldProblem]:
    """The refusal of one deployment's change for people, at the field that can fix it: a
    form shows each next to its input (replicas, CPU or memory per pod, the group for the
    deployment count), in rounded units. A change of several deployments (a replayed
    commit) has no form field: none."""
    if explain is None:
        return []
    fixes = []
    mine = occupies(explain, sidecar=sidecar)
    others = total - mine
    per_pod = pod_requests(explain.spec, sidecar=sidecar)
    for kind, what, limit in (
        ("cpu", "CPU", quantity.parse(group.quota.cpu)),
        ("memory", "memory", quantity.parse(group.quota.memory)),
    ):
        if kind not in over:
            continue
        fixes.append(
            _fix(
                explain,
                kind=kind,
                what=what,
                limit=limit,
                mine=getattr(mine, kind),
                others=getattr(others, kind),
                per_pod=per_pod[0] if kind == "cpu" else per_pod[1],
            )
        )
    if "deployments" in over:
        fixes.append(
            FieldProblem(
                "group",
                f"Group {group.name} has {units.count(used.deployments, 'deployment')}, as "
                "many as its quota allows: delete one, or ask a platform admin to raise the "
                "quota.",
            )
        )
    return fixes


def _fix(
    deployment: Deployment,
    *,
    kind: str,
    what: str,
    limit: Quantity,
    mine: Quantity,
    others: Quantity,
    per_pod: Quantity,
) -> FieldProblem:
    """One resource over the quota: what the deployment needs, what the group has and
    what its other deployments use, and which field lowers it. Replicas (or the autoscaling
    maximum) when one replica would fit, the request per pod when not; nothing of this
    deployment when the others fill the quota alone."""

    def human(value: Quantity) -> str:
        return value.human_cpu() if kind == "cpu" else value.human_memory()

    spec = deployment.spec
    extra = surge(deployment)
    has = f"the group has {human(limit)}, {human(others) if others.value else 'none'} in use"
    per = f"{what} per pod"
    if others >= limit or not spec.replicas:
        return FieldProblem(
            "",
            f"The other deployments of group {deployment.group} use {human(others)} of its "
            f"{human(limit)} of {what}: scale one of them down or stop it, or ask a platform "
            "admin to raise the quota.",
        )
    pods = spec.most_replicas + extra
    most = (
        f"up to {units.count(spec.most_replicas, 'autoscaled replica')}"
        if spec.autoscaling is not None
        else units.count(spec.replicas, "replica")
    )
    counted = f"{most} + {extra} rolling-update pod" if extra else most
    sidecar = ", frpc sidecar included" if spec.expose else ""
    each = f"{units.count(pods, 'pod')} of {human(per_pod)} each{sidecar}: {counted}"
    needs = f"This needs {human(mine)} of {what} ({each})"
    if others + per_pod * (1 + extra) > limit:
        return FieldProblem(
            f"resources.{kind}",
            f"{needs}; {has}: even 1 replica does not fit — lower the {per}, or ask a "
            "platform admin to raise the quota.",
        )
    if spec.autoscaling is not None:
        return FieldProblem("autoscaling.max", f"{needs}; {has} — lower the max pods or the {per}.")
    return FieldProblem("replicas", f"{needs}; {has} — lower the replicas or the {per}.")


def _replacement(before: Deployment | None, after: Deployment, *, sidecar: Sidecar) -> str:
    """Why a change that does not grow the group still needs room: its rollout's surge pod."""
    cpu, memory = pod_requests(after.spec, sidecar=sidecar)
    room = (
        f"needs room for {SURGE_PODS} more pod ({cpu.format_cpu()} cpu, "
        f"{memory.human_memory()} memory{', frpc sidecar included' if after.spec.expose else ''})"
    )
    if before is None or not before.spec.replicas:
        return f"starting {after.name} {room}"
    changes = pod_template_changes(before, after)
    fields = [c for c in changes if c != "restart"]
    if fields:
        action = f"changing the {' and '.join(fields)} of {after.name}"
    else:
        action = f"restarting {after.name}"
    return f"{action} replaces its pods one at a time and {room}"


def _delta_cpu(value: Quantity) -> str:
    return value.format_cpu() if value.value >= 0 else "-" + Quantity(-value.value).format_cpu()
