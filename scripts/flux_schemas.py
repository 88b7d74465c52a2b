#!/usr/bin/env python3
"""Convert the Flux CRDs into the JSON Schemas that ``gitops-bridge validate`` ships.

Usage: ``scripts/flux_schemas.py [CRD_DIR] [--out DIR]``; CRD_DIR defaults to
``../shared/flux-crds`` next to the repository, DIR to ``gitops_bridge/schemas``.

One file per served version, ``<group>_<version>_<kind>.json``: the CRD's
``openAPIV3Schema`` with descriptions and defaults stripped (structure only), the
OpenAPI v3 extensions translated to plain JSON Schema (draft 2020-12), ``apiVersion``
and ``kind`` pinned to their exact values. Objects with declared properties are
closed (``additionalProperties: false``) because the API server prunes unknown
fields, i.e. a typo there would be silently dropped. Output is byte-stable (sorted
keys, fixed indent), so a re-run over the same CRDs changes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CRDS = ROOT.parent / "shared" / "flux-crds"
DEFAULT_OUT = ROOT / "gitops_bridge" / "schemas"

Schema = dict[str, Any]

# Keywords copied as they are (they mean the same in OpenAPI v3 and JSON Schema).
KEEP = frozenset(
    {
        "type",
        "required",
        "enum",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
        "multipleOf",
        "format",
    }
)
# Keywords dropped: documentation, defaulting and API-server-only rules (CEL, list/map merge).
DROP = frozenset(
    {
        "description",
        "default",
        "example",
        "title",
        "externalDocs",
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-embedded-resource",
    }
)
# Keywords handled by convert() itself.
TRANSLATED = frozenset(
    {
        "properties",
        "items",
        "additionalProperties",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "nullable",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
    }
)


def convert(node: Schema, where: str) -> Schema:
    """One OpenAPI v3 (structural) schema node as JSON Schema; unknown keywords stop the script."""
    unknown = set(node) - KEEP - DROP - TRANSLATED
    if unknown:
        raise SystemExit(f"{where}: unsupported schema keyword(s) {sorted(unknown)}")
    out: Schema = {key: node[key] for key in KEEP if key in node}
    if "properties" in node:
        out["properties"] = {
            name: convert(sub, f"{where}.{name}") for name, sub in node["properties"].items()
        }
    if "items" in node:
        out["items"] = convert(node["items"], f"{where}[]")
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            out[key] = [convert(sub, f"{where}<{key}>") for sub in node[key]]
    if "not" in node:
        out["not"] = convert(node["not"], f"{where}<not>")
    _translate_object(node, out, where)
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable"):
        _allow_null(out)
    return out


def _translate_object(node: Schema, out: Schema, where: str) -> None:
    """additionalProperties as given; else closed when properties are declared and not preserved."""
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out["additionalProperties"] = convert(extra, f"{where}{{}}")
    elif isinstance(extra, bool):
        out["additionalProperties"] = extra
    elif "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False


def _allow_null(out: Schema) -> None:
    kinds = out.get("type")
    if isinstance(kinds, str):
        out["type"] = [kinds, "null"]
    elif isinstance(kinds, list) and "null" not in kinds:
        out["type"] = [*kinds, "null"]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]


def version_schema(*, group: str, version: str, kind: str, openapi: Schema) -> Schema:
    """The whole-object schema of one served version."""
    where = f"{group}/{version} {kind}"
    schema = convert(openapi, where)
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {"type": "string", "const": f"{group}/{version}"}
    properties["kind"] = {"type": "string", "const": kind}
    properties["metadata"] = {"type": "object"}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def crd_schemas(crd: Schema) -> dict[str, Schema]:
    """File name -> schema for every served version of one CRD."""
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    result: dict[str, Schema] = {}
    for entry in spec["versions"]:
        if not entry.get("served", False):
            continue
        version = entry["name"]
        openapi = entry["schema"]["openAPIV3Schema"]
        schema = version_schema(group=group, version=version, kind=kind, openapi=openapi)
        result[f"{group}_{version}_{kind}.json"] = schema
    return result


def generate(crd_dir: Path) -> dict[str, str]:
    """File name -> file text for every CRD document in crd_dir/*.yaml."""
    loader = YAML(typ="safe")
    files: dict[str, str] = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        for doc in loader.load_all(path.read_text(encoding="utf-8")):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            for name, schema in crd_schemas(doc).items():
                files[name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def write(files: dict[str, str], out: Path) -> list[str]:
    """Write the files, remove stale generated ones; the names of files that changed."""
    out.mkdir(parents=True, exist_ok=True)
    changed: list[str] = []
    for stale in sorted(out.glob("*.toolkit.fluxcd.io_*.json")):
        if stale.name not in files:
            stale.unlink()
            changed.append(stale.name)
    for name, text in sorted(files.items()):
        target = out / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            changed.append(name)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crd_dir", nargs="?", type=Path, default=DEFAULT_CRDS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    files = generate(args.crd_dir)
    if not files:
        print(f"no CustomResourceDefinition found in {args.crd_dir}", file=sys.stderr)
        return 1
    changed = write(files, args.out)
    print(f"{len(files)} schemas in {args.out}, {len(changed)} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
