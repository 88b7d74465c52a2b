"""What a container sees of its ``env``: the kubelet's ``$(VAR)`` expansion, in Python.

``expand`` and ``mapping_for`` transcribe kubernetes/kubernetes
``third_party/forked/golang/expansion/expand.go`` (``Expand``, ``MappingFuncFor``,
``tryReadVariableName``; the rune-aware version): ``$(NAME)`` becomes the value of NAME when
it is defined and stays as written when it is not, ``$$`` becomes ``$``, any other ``$`` stays.

``container_env`` applies it the way the kubelet builds a container's environment
(``pkg/kubelet/kubelet_pods.go`` ``makeEnvironmentVariables``): each ``value`` is expanded
against the variables defined *before* it in the list, then against the service variables;
an empty value is not expanded; a later definition of a name replaces an earlier one. Docs:
https://kubernetes.io/docs/tasks/inject-data-application/define-interdependent-environment-variables/
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

OPERATOR = "$"
OPENER = "("
CLOSER = ")"

Resolver = Callable[[str], str]


def mapping_for(*contexts: Mapping[str, str]) -> Resolver:
    """The first context defining a name gives its value; an undefined name stays ``$(NAME)``."""

    def mapping(name: str) -> str:
        for variables in contexts:
            if name in variables:
                return variables[name]
        return f"{OPERATOR}{OPENER}{name}{CLOSER}"

    return mapping


def expand(text: str, mapping: Resolver) -> str:
    """``Expand`` of expand.go: replace ``$(NAME)`` references, unescape ``$$``."""
    out: list[str] = []
    checkpoint = cursor = 0
    while cursor < len(text):
        if text[cursor] == OPERATOR and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_variable_name(text[cursor + 1 :])
            out.append(mapping(read) if is_var else read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def _read_variable_name(rest: str) -> tuple[str, bool, int]:
    """``tryReadVariableName``: (text read, whether it names a variable, characters consumed)."""
    first = rest[0]
    if first == OPERATOR:  # escaped operator
        return first, False, 1
    if first == OPENER:  # scan to the closer; an unterminated reference stays as written
        closer = rest.find(CLOSER, 1)
        if closer != -1:
            return rest[1:closer], True, closer + 1
        return OPERATOR + OPENER, False, 1
    return OPERATOR + first, False, 1  # an operator that starts no expression


def container_env(
    env: Sequence[Mapping[str, Any]],
    *,
    service_env: Mapping[str, str] | None = None,
    value_from: Callable[[Mapping[str, Any]], str] | None = None,
) -> dict[str, str]:
    """The environment a container runs with, from its ``env`` list.

    ``value_from(var)`` resolves a ``valueFrom`` entry (fieldRef, secretKeyRef...); without
    it such variables are left out (and stay undefined for later references).
    """
    defined: dict[str, str] = {}
    mapping = mapping_for(defined, service_env or {})
    for var in env:
        name = str(var["name"])
        value = var.get("value")
        if value:
            defined[name] = expand(str(value), mapping)
        elif var.get("valueFrom") is not None:
            if value_from is not None:
                defined[name] = value_from(var)
        else:
            defined[name] = ""
    return defined
