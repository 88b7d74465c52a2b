"""The one YAML emitter and loader of gitops-bridge.

Output is byte-stable (insertion order, fixed width, no anchors) and safe for the
YAML 1.1 readers Kubernetes tools use (go-yaml): every string that such a reader could
take for something else (``yes``, ``on``, ``0123``, ``1e3``, ``~``, dates...) is
double-quoted, so values always arrive as the strings the user typed.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterable
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.representer import SafeRepresenter
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

HEADER = "# Managed by gitops-bridge: change it through gitops-bridge, Flux applies it.\n"

# Strings safe to write plain: start with a letter or '/', no YAML indicators (a ':' only
# inside), not a YAML 1.1 bool/null word; or a quantity with a unit suffix (100m, 128Mi).
_PLAIN = re.compile(
    r"^(?:[A-Za-z/](?:[A-Za-z0-9_./@+-]|:(?=[A-Za-z0-9_./@+-]))*"
    r"|[0-9]+(?:\.[0-9]+)?(?:m|k|M|G|T|Ki|Mi|Gi|Ti))$"
)
_YAML11_WORDS = {
    "y",
    "yes",
    "n",
    "no",
    "true",
    "false",
    "on",
    "off",
    "null",
    "nan",
    "inf",
}


def _plain(data: str) -> bool:
    return _PLAIN.match(data) is not None and data.lower() not in _YAML11_WORDS


def _represent_str(representer: SafeRepresenter, data: str) -> Any:
    plain = _plain(data)
    return representer.represent_scalar("tag:yaml.org,2002:str", data, style=None if plain else '"')


def _new_yaml() -> YAML:
    yaml = YAML(typ="safe", pure=False)
    yaml.default_flow_style = False
    yaml.width = 1 << 16
    yaml.allow_unicode = True
    yaml.representer.sort_base_mapping_type_on_output = False
    yaml.representer.add_representer(str, _represent_str)
    yaml.representer.ignore_aliases = lambda data: True
    return yaml


# ruamel's YAML objects keep emitter/parser state: one per thread
_local = threading.local()


def _dumper() -> YAML:
    dumper = getattr(_local, "dumper", None)
    if dumper is None:
        dumper = _local.dumper = _new_yaml()
    return dumper


def _loader() -> YAML:
    loader = getattr(_local, "loader", None)
    if loader is None:
        loader = _local.loader = YAML(typ="safe", pure=False)
    return loader


def dump(document: Any, *, header: bool = True) -> str:
    """One YAML document as text, with the managed-by header."""
    return dump_all([document], header=header)


def dump_all(documents: Iterable[Any], *, header: bool = True) -> str:
    parts = []
    for doc in documents:
        stream = io.StringIO()
        _dumper().dump(doc, stream)
        parts.append(stream.getvalue())
    body = "---\n".join(parts)
    return (HEADER if header else "") + body


def load(text: str | bytes) -> Any:
    """One YAML document (raises ruamel's YAMLError on bad input)."""
    return _loader().load(text)


def load_all(text: str | bytes) -> list[Any]:
    return [doc for doc in _loader().load_all(text) if doc is not None]


# ---- round trip: a file a person may have edited, comments and all ---------------------
# Pure-Python ruamel, several times the cost of the C emitter: only for the one file a
# change touches, and only when that file holds more than the bridge wrote (see
# render.handedits).


def _roundtripper() -> YAML:
    yaml = getattr(_local, "roundtrip", None)
    if yaml is None:
        yaml = _local.roundtrip = YAML(typ="rt")
        yaml.preserve_quotes = True
        yaml.width = 1 << 16
        yaml.allow_unicode = True
        yaml.indent(mapping=2, sequence=2, offset=0)  # the layout dump() writes
    return yaml


def load_roundtrip(text: str | bytes) -> Any:
    """One YAML document with its comments, quoting and key order (raises YAMLError)."""
    return _roundtripper().load(text)


def dump_roundtrip(document: Any) -> str:
    """A document of ``load_roundtrip`` as text; unchanged parts come out as they went in."""
    stream = io.StringIO()
    _roundtripper().dump(document, stream)
    return stream.getvalue()


def roundtrip_data(value: Any) -> Any:
    """Plain data made ready to go into a round-trip document: block collections, and
    strings quoted by the same rule as ``dump`` (so ``yes``, ``0123`` stay strings)."""
    if isinstance(value, dict):
        mapping = CommentedMap()
        for key, item in value.items():
            mapping[key] = roundtrip_data(item)
        return mapping
    if isinstance(value, list):
        return CommentedSeq(roundtrip_data(item) for item in value)
    if isinstance(value, str) and not _plain(value):
        return DoubleQuotedScalarString(value)
    return value
