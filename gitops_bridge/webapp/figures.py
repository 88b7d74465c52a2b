"""Numbers on the pages: the ``cpu`` and ``memory`` filters (``units``' one rule for every
number shown), a group's headroom, and what a card says of a deployment's requests: per pod
(as the form asked), the limit (``LIMIT_FACTOR`` x the request), and the total across
replicas with the frpc sidecar."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from gitops_bridge import quantity, units
from gitops_bridge.quantity import Quantity
from gitops_bridge.render import tenant
from gitops_bridge.webapp import context
from gitops_bridge.webapp.pages import bp

Amount = Quantity | str | int | float | None


def _value(amount: Amount) -> Fraction | None:
    """The exact value of a quantity, its text, or a plain number; None when not one."""
    if amount is None or isinstance(amount, bool):
        return None
    if isinstance(amount, Quantity):
        return amount.value
    try:
        return quantity.parse(amount).value
    except quantity.QuantityError:
        return None


@bp.app_context_processor
def _limit_factor() -> dict[str, Any]:
    return {"limit_factor": tenant.LIMIT_FACTOR}  # limits = this x requests, every container


@bp.app_template_filter("cpu")
def cpu(amount: Amount) -> str:
    """``4.4m``, ``250m``, ``1.5 cores``; text that is not a quantity is shown as it is."""
    value = _value(amount)
    if value is None:
        return "—" if amount is None else str(amount)
    return units.cpu(value)


@bp.app_template_filter("memory")
def memory(amount: Amount) -> str:
    """``1.1Ki``, ``300Mi``, ``1.5Gi`` (bytes, or quantity text such as ``512Mi``)."""
    value = _value(amount)
    if value is None:
        return "—" if amount is None else str(amount)
    return units.memory(value)


@bp.app_template_global("headroom")
def headroom(used: Amount, allowed: Amount, kind: str) -> str:
    """What the group has left of a quota: ``8.5 cores free``, ``over by 250m``; ``kind``:
    cpu, memory or count. Empty when either side is unknown."""
    have, limit = _value(used), _value(allowed)
    if have is None or limit is None:
        return ""
    room = limit - have
    if room == 0:
        return "none left"
    if kind == "cpu":
        shown = units.cpu(abs(room))
    elif kind == "memory":
        shown = units.memory(abs(room))
    else:
        shown = str(int(abs(room)))
    if room < 0:
        return f"over by {shown}"
    return f"{shown} {'left' if kind == 'count' else 'free'}"


@bp.app_template_global("footprint")
def footprint(card: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """A card's requests of ``kind`` (cpu or memory): ``request`` and ``limit`` per pod of
    the app container, and ``total`` (None when it is the request itself, or the deployment
    is stopped): all its replicas (autoscaled: its maximum), with the frpc sidecar when
    exposed."""
    show = cpu if kind == "cpu" else memory
    request = _value((card.get("resources") or {}).get(kind))
    if request is None:
        return {"request": "—", "limit": "—", "total": None}
    replicas = int(card.get("replicas") or 0)
    scaling = card.get("autoscaling")
    most = int(scaling.get("max") or replicas) if replicas and isinstance(scaling, Mapping) else 0
    sidecar = card.get("expose") is True
    extra = getattr(context.svc().sidecar, kind).value if sidecar else Fraction(0)
    total = None
    if replicas and (max(replicas, most) > 1 or sidecar):
        total = show(Quantity((request + extra) * max(replicas, most)))
    return {
        "request": show(Quantity(request)),
        "limit": show(Quantity(request * tenant.LIMIT_FACTOR)),
        "total": total,
        # autoscaled: the most it may run (what the quota counts)
        "replicas": f"up to {units.count(most, 'replica')}"
        if most
        else units.count(replicas, "replica"),
        "sidecar": sidecar,
    }
