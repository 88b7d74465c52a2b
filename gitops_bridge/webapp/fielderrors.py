"""Errors at the field: a refused form shows each problem next to the input that can fix it.

The service names a problem's field as the API does (``replicas``, ``resources.cpu``,
``env[1].name``, ``quota.cpu``); people read none of that. Each form maps those paths to
its inputs (an id each), the label a person sees and, for list rows, the row as people
count it ("row 2", from 1). The page then marks the input (``aria-invalid``,
``aria-describedby`` naming the message's id), puts the message next to it, autofocuses the
first invalid input in page order, and lists the fields in a short summary at the top, each
a link to its input (GOV.UK's error summary). A problem no input can fix (the body, a
group the form does not offer) is said once, in the summary and at the end of the form.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gitops_bridge.errors import BridgeError

# (input id, what people call it, its place in the form: earlier sorts first, its row's words)
Place = tuple[str, str, tuple[int, ...], str]
Locate = Callable[[str], Place | None]

_ROW = re.compile(r"^(env|volumes)\[(\d+)\](?:\.(.+))?$")


@dataclass(frozen=True)
class Shown:
    """The problems of one input: what the page puts next to it."""

    target: str  # the input's id
    field: str  # the API's name of the first problem's field (a data attribute, for scripts)
    label: str
    messages: tuple[str, ...]
    rank: tuple[int, ...]
    row: str = ""  # an input of a list row: "Row 2 name", said before its message there

    @property
    def id(self) -> str:
        """The message's id, for the input's ``aria-describedby``."""
        return f"{self.target}-error"

    @property
    def message(self) -> str:
        """What the page says next to the input (in a row: which one, first)."""
        if self.row:
            return f"{self.row}: " + " ".join(sentence(t, capital=False) for t in self.messages)
        return self.text

    @property
    def text(self) -> str:
        """The messages alone, for the summary (which names the field in its link)."""
        return " ".join(sentence(text) for text in self.messages)


@dataclass(frozen=True)
class FieldErrors:
    """A refused form's problems, by input; ``general``: those no input takes."""

    shown: dict[str, Shown] = field(default_factory=dict)
    general: tuple[str, ...] = ()

    def at(self, target: str) -> Shown | None:
        return self.shown.get(target)

    @property
    def summary(self) -> list[Shown]:
        """The invalid inputs in page order (the first: focused when the page loads)."""
        return sorted(self.shown.values(), key=lambda shown: shown.rank)

    @property
    def first(self) -> str | None:
        found = self.summary
        return found[0].target if found else None

    def starting(self, prefix: str) -> list[Shown]:
        """The invalid inputs whose id starts so (one row's, for the row's messages)."""
        return [shown for shown in self.summary if shown.target.startswith(prefix)]

    def __bool__(self) -> bool:
        return bool(self.shown or self.general)


def of(
    error: BridgeError | None, locate: Locate, words: Mapping[str, str] | None = None
) -> FieldErrors:
    """The error's problems placed by ``locate`` (None: no input of this form); ``words``:
    the fields a message may name (``must be >= autoscaling.min``), as the form labels them."""
    if error is None:
        return FieldErrors()
    placed: dict[str, tuple[str, str, list[str], tuple[int, ...], str]] = {}
    general: list[str] = []
    for problem in error.problems:
        text = problem.message
        for name, label in (words or {}).items():
            text = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w.])", label, text)
        where = locate(problem.field)
        if where is None:
            label = spoken(problem.field)
            general.append(f"{label}: {text}" if label else text)
            continue
        target, label, rank, row = where
        placed.setdefault(target, (problem.field, label, [], rank, row))[2].append(text)
    return FieldErrors(
        shown={
            target: Shown(target, name, label, tuple(messages), rank, row)
            for target, (name, label, messages, rank, row) in placed.items()
        },
        general=tuple(sentence(text) for text in general),
    )


# ---- the deployment form -----------------------------------------------------------------

_DEPLOYMENT: dict[str, tuple[str, str]] = {  # field -> (input id, label), in page order
    "group": ("f-group", "Group"),
    "name": ("f-name", "Name"),
    "image": ("f-image", "Image"),
    "replicas": ("f-replicas", "Replicas"),
    "port": ("f-port", "Port"),
    "resources.cpu": ("f-cpu", "CPU per pod"),
    "resources": ("f-cpu", "CPU per pod"),
    "resources.memory": ("f-memory", "Memory per pod"),
    "expose": ("f-expose", "Expose"),
    "command": ("f-command", "Command"),
    "args": ("f-args", "Args"),
    "health": ("f-health", "Health check path"),
    "health.path": ("f-health", "Health check path"),
    "autoscaling": ("f-autoscale", "Autoscaling"),
    "autoscaling.min": ("f-autoscale-min", "Min pods"),
    "autoscaling.max": ("f-autoscale-max", "Max pods"),
    "autoscaling.cpu": ("f-autoscale-cpu", "Target CPU %"),
}
_ORDER = list(dict.fromkeys(target for target, _ in _DEPLOYMENT.values()))
_ENV_COLUMNS = {  # an env row's field -> (input, label); value: the input of the row's kind
    "name": ("name", "name"),
    "secret": ("kind", "kind"),
    "secretRef": ("ref-name", "Secret name"),
    "secretRef.name": ("ref-name", "Secret name"),
    "secretRef.key": ("ref-key", "Secret key"),
}
_VALUE_INPUTS = {"plain": "value", "secret": "secret", "ref": "ref-name"}
_MOUNT_COLUMNS = {
    "volume": ("volume", "volume"),
    "path": ("path", "mount path"),
    "readOnly": ("mode", "access"),
}


def deployment_form(
    error: BridgeError | None,
    *,
    env: Sequence[Mapping[str, object]],
    mounts: int,
    editing: bool,
) -> FieldErrors:
    """The deployment form's problems at its inputs. ``env``: the rows shown (their kinds
    pick which input a value's problem belongs to); ``mounts``: how many volume rows; the
    edit form has no group or name to change."""

    def locate(name: str) -> Place | None:
        if editing and name in ("group", "name"):
            return None
        base = re.sub(r"\[\d+\]$", "", name)  # command[2]: the command line
        if base in _DEPLOYMENT:
            target, label = _DEPLOYMENT[base]
            return target, label, (_ORDER.index(target),), ""
        if name in ("env", "volumes"):
            rows = len(env) if name == "env" else mounts
            return _row_place(name, 0, "", rows=rows, kind="plain") if rows else None
        row = _ROW.match(name)
        if row is None:
            return None
        index = int(row[2])
        kind = (
            str(env[index].get("kind") or "plain") if row[1] == "env" and index < len(env) else ""
        )
        rows = len(env) if row[1] == "env" else mounts
        return _row_place(row[1], index, row[3] or "", rows=rows, kind=kind)

    words = {name: label for name, (_, label) in _DEPLOYMENT.items() if "." in name}
    return of(error, locate, words)


def _row_place(list_name: str, index: int, column: str, *, rows: int, kind: str) -> Place | None:
    """An input of an env or volume row (None: a row the form does not show)."""
    if index >= rows:
        return None
    number = index + 1
    if list_name == "env":
        columns = _ENV_COLUMNS | {"value": (_VALUE_INPUTS.get(kind, "value"), "value")}
        suffix, what = columns.get(column, ("name", "name"))
        section, prefix, noun = len(_ORDER), "f-env", "Environment"
        order = list(dict.fromkeys(c for c, _ in columns.values()))
    else:
        suffix, what = _MOUNT_COLUMNS.get(column, ("volume", "volume"))
        section, prefix, noun = len(_ORDER) + 1, "f-mount", "Volumes"
        order = [c for c, _ in _MOUNT_COLUMNS.values()]
    rank = (section, index, order.index(suffix) if suffix in order else 0)
    return (
        f"{prefix}-{number}-{suffix}",
        f"{noun} row {number}, {what}",
        rank,
        f"Row {number} {what}",
    )


# ---- the group forms -----------------------------------------------------------------------

_GROUP: dict[str, tuple[str, str]] = {
    "name": ("name", "Name"),
    "members": ("members", "Members"),
    "admins": ("admins", "Group admins"),
    "quota.cpu": ("cpu", "CPU"),
    "quota": ("cpu", "CPU"),
    "quota.memory": ("memory", "Memory"),
    "quota.storage": ("storage", "Storage"),
    "quota.deployments": ("deployments", "Deployments"),
    "review": ("review", "Review"),
}
_GROUP_ORDER = list(dict.fromkeys(target for target, _ in _GROUP.values()))


def group_form(error: BridgeError | None, *, prefix: str, editing: bool = False) -> FieldErrors:
    """A group form's problems at its inputs, whose ids start with ``prefix`` (the create
    form and each group's edit form are on one page); the edit form has no name."""

    def locate(name: str) -> Place | None:
        base = re.sub(r"\[\d+\]$", "", name)  # members[2]: the members line
        if base not in _GROUP or (editing and base == "name"):
            return None
        target, label = _GROUP[base]
        return f"{prefix}{target}", label, (_GROUP_ORDER.index(target),), ""

    return of(error, locate, {name: label for name, (_, label) in _GROUP.items() if "." in name})


# ---- words ---------------------------------------------------------------------------------


def said(error: BridgeError) -> str:
    """A refusal as one line where there is no form of fields to put it at (a card's Scale):
    each problem after the field's name as people say it ("Replicas: must be 0..20, got 50.")."""
    if not error.problems:
        return sentence(error.message)
    parts = []
    for problem in error.problems:
        label = spoken(problem.field)
        text = sentence(problem.message, capital=not label)
        parts.append(f"{label[:1].upper()}{label[1:]}: {text}" if label else text)
    return " ".join(parts)


def spoken(name: str) -> str:
    """A field no input shows, as people would name it: ``quota.cpu`` -> ``quota CPU``,
    ``env[1].name`` -> ``Environment row 2 name``; "" for the body itself."""
    text = re.sub(r"^env\b", "Environment", re.sub(r"^volumes\b", "Volumes", name))
    text = re.sub(r"\[(\d+)\]", lambda m: f" row {int(m[1]) + 1}", text)
    return text.replace(".", " ").replace("cpu", "CPU").strip()


def sentence(text: str, *, capital: bool = True) -> str:
    """A message as a sentence: a capital first letter (unless it follows a label) and a
    full stop."""
    text = text.strip()
    if not text:
        return text
    if capital:
        text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else f"{text}."
