"""How Flux hands a HelmRelease to helm: release name, chart version, values.

What helm-controller and source-controller do before helm renders anything, so that
``validate`` renders exactly what a cluster would get:

- The chart version. source-controller packages a chart from a GitRepository (or Bucket) with
  ``reconcileStrategy: Revision`` as ``<version>+<first 12 hex of the revision>``
  (fluxcd/source-controller internal/controller/helmchart_controller.go, "Configure revision
  metadata": ``opts.VersionMetadata = rev[0:12]``); ``ChartVersion``, the default, keeps the
  version. helm-controller gives a ``chartRef`` chart from an OCIRepository
  ``<version>+<first 12 hex of the artifact digest>`` (fluxcd/helm-controller
  internal/controller/helmrelease_controller.go, ``mutateChartWithSourceRevision``). Both go
  through semver ``SetMetadata``, which replaces build metadata already in the version.
  Offline, the commit is the checkout's (``PLACEHOLDER_REVISION`` outside git) and the digest
  is ``PLACEHOLDER_DIGEST``.
- The release name: ``spec.releaseName``, else ``[targetNamespace-]name`` (api/v2
  ``GetReleaseName``) shortened to 53 characters as the first 40, '-', and the first 12 hex
  of its SHA-256 (internal/release/name.go ``ShortenName``).
- The values: a map handed to helm, never YAML text (``values_json``).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from datetime import date
from pathlib import Path
from typing import Any

from gitops_bridge import apirules

Obj = dict[str, Any]

# Stand-ins for what only the cluster knows: the commit Flux checked out (outside a git
# repository) and the digest of an OCI chart artifact; Flux appends 12 hex of either.
PLACEHOLDER_REVISION = "0" * 40
PLACEHOLDER_DIGEST = "sha256:" + "d16e57" * 10 + "d16e"
HASH_LENGTH = 12
# Characters a YAML parser refuses or folds when raw in a double-quoted scalar: escaped.
YAML_UNSAFE = re.compile(r"[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def release_name(name: str, *, target_namespace: str = "", explicit: object = None) -> str:
    """The Helm release name helm-controller uses for a HelmRelease called name."""
    if isinstance(explicit, str) and explicit:
        return explicit
    full = f"{target_namespace}-{name}" if target_namespace else name
    limit = apirules.RELEASE_NAME_MAX
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:HASH_LENGTH]
    return f"{full[: limit - HASH_LENGTH - 1]}-{digest}"


def version_metadata(spec: Obj, *, revision: str) -> str:
    """What Flux appends to the chart version as ``+<metadata>`` ('' for nothing).

    ``revision`` is the full commit id the chart's GitRepository is at.
    """
    if isinstance(spec.get("chartRef"), dict):
        if spec["chartRef"].get("kind") == "OCIRepository":
            return PLACEHOLDER_DIGEST.partition(":")[2][:HASH_LENGTH]
        return ""
    chart = spec.get("chart")
    chart_spec = chart.get("spec") if isinstance(chart, dict) else None
    if not isinstance(chart_spec, dict) or chart_spec.get("reconcileStrategy") != "Revision":
        return ""
    source = chart_spec.get("sourceRef")
    if isinstance(source, dict) and source.get("kind") in ("GitRepository", "Bucket"):
        return revision[:HASH_LENGTH]
    return ""


def values_json(values: Obj) -> str:
    """Values as JSON text that helm's YAML parser reads back as exactly these values.

    JSON because helm-controller hands helm the values as data: nothing may be re-typed by
    YAML (``yes``, ``0755``, ``1e3`` stay strings). Non-ASCII text stays raw (helm's parser
    refuses JSON's surrogate-pair escapes of emoji); what YAML refuses or folds when raw
    (C1 controls, U+2028/9, BOM, non-characters) is written as a \\uXXXX escape.
    """
    text = json.dumps(values, ensure_ascii=False, default=_json_default)
    return YAML_UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def _json_default(value: object) -> str:
    """YAML scalars JSON has no type for (timestamps) as the text they were written as."""
    return value.isoformat() if isinstance(value, date) else str(value)


class Charts:
    """Charts as Flux hands them to helm: a copy whose Chart.yaml has ``+<metadata>``.

    One copy per chart and metadata, under workdir (Flux rewrites the version when it
    packages the chart; helm sees only the result). No metadata: the chart directory itself.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.copies: dict[tuple[Path, str], Path | str] = {}

    def get(self, chart: Path, metadata: str) -> Path | str:
        """The chart directory to render, or why it cannot be prepared."""
        if not metadata:
            return chart
        key = (chart, metadata)
        if key not in self.copies:
            self.copies[key] = self._copy(chart, metadata)
        return self.copies[key]

    def _copy(self, chart: Path, metadata: str) -> Path | str:
        text = (chart / "Chart.yaml").read_text(encoding="utf-8")
        line = re.search(r"^version:[ \t]*(.*?)[ \t]*$", text, re.MULTILINE)
        if line is None:
            return f"chart {chart.name}: Chart.yaml has no top-level version"
        version = line.group(1).strip("\"'").partition("+")[0]
        target = self.workdir / str(len(self.copies)) / chart.name
        shutil.copytree(chart, target, symlinks=True)
        patched = f"version: {json.dumps(f'{version}+{metadata}')}"
        (target / "Chart.yaml").write_text(
            text[: line.start()] + patched + text[line.end() :], encoding="utf-8"
        )
        return target
