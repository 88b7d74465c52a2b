"""Writing a HelmRelease over one a person edited: keep what the bridge does not model.

GitOps means people commit to the repository too (a hot fix, a review suggestion), so the
bridge's next write must not silently drop their work. It merges its rendering into the
file as it is, in ruamel's round-trip mode (comments, key order and quoting kept), instead
of refusing: refusing would block every scale or restart of a hand-tuned deployment until
someone undid the tuning. The rules, per field of the rendered HelmRelease:

- **owned** (identity, the bridge's labels and annotations, release name, service account,
  chart source, and the values the bridge models: image, replicas, port, env, expose,
  requests and limits, frpc, restartedAt, command, args, autoscaling, the type and path of
  the probes, and ``specDigest``, the digest of those values: ``render.digest``): the
  bridge's value, always; when it stops rendering one (health checks,
  command or autoscaling turned off), the file loses it too. These are the
  request itself or what the platform depends on (limits are 2x the requests, which is
  what the ResourceQuota's limits.* are sized for: a larger limit by hand would have the
  group's pods refused at admission); the deployment was read from the same file, so a
  person's change to a modelled value is already the "before" of the request.
- **tunable** (``spec.timeout``, ``interval``, ``install``, ``upgrade``, ``driftDetection``):
  kept as the person set them; the bridge writes its value where the field is missing, or
  when its own value for it changes. The timeout is a floor the rollout needs: it grows
  with the replicas, and a person's longer one stays.
- **anything else** (an extra value, ``spec.test``, a label of the team's, comments): kept.

A write that changes nothing leaves the file's bytes alone, so a repeated request makes no
commit; a change re-emits the file once in the bridge's layout (indentation, block style).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from gitops_bridge.render import layout, yamlio

Path = tuple[str, ...]

# Replaced as a whole: the bridge renders every key below these.
OWNED_WHOLE: frozenset[Path] = frozenset(
    {
        ("spec", "chart"),
        ("spec", "chartRef"),
        ("spec", "values", "env"),
        ("spec", "values", "frpc"),
    }
)
TUNABLE: frozenset[Path] = frozenset(
    {
        ("spec", "timeout"),
        ("spec", "interval"),
        ("spec", "install"),
        ("spec", "upgrade"),
        ("spec", "driftDetection"),
    }
)
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
# Keys the bridge may stop rendering: when it does, they go from the file too.
OWNED_OPTIONAL: frozenset[Path] = frozenset(
    {
        ("metadata", "annotations", layout.ANNOTATION_OWNER),
        ("metadata", "annotations", layout.ANNOTATION_PRUNE),
        ("spec", "chart"),
        ("spec", "chartRef"),
        ("spec", "values", "frpc"),
        ("spec", "values", "restartedAt"),
        ("spec", "values", "command"),
        ("spec", "values", "args"),
        ("spec", "values", "autoscaling"),
        # health checks: the bridge's type and path go; a person's delays and thresholds stay
        ("spec", "values", "probes", "readiness", "type"),
        ("spec", "values", "probes", "readiness", "path"),
        ("spec", "values", "probes", "liveness", "type"),
        ("spec", "values", "probes", "liveness", "path"),
    }
)


def merge(current: bytes, *, base: dict[str, Any] | None, theirs: dict[str, Any]) -> str | None:
    """``theirs`` (the bridge's new rendering) written over the text ``current``, by the
    rules above. ``base``: the bridge's rendering of what the file held (None: unknown, e.g.
    a restored old version), to tell its own tunable values from a person's.

    Returns the new text; ``None`` when the file is not a YAML mapping (write it anew).
    """
    try:
        ours = yamlio.load_roundtrip(current)
    except YAMLError:
        return None
    if not isinstance(ours, CommentedMap):
        return None
    if ours.fa.flow_style():  # a file written as JSON: into the bridge's layout
        ours = yamlio.roundtrip_data(json.loads(json.dumps(ours)))
        _merge(ours, base, theirs, ())
        return yamlio.dump_roundtrip(ours)
    if not _merge(ours, base, theirs, ()):
        return current.decode()
    return yamlio.dump_roundtrip(ours)


def _merge(ours: Any, base: dict[str, Any] | None, theirs: dict[str, Any], path: Path) -> bool:
    """Apply one mapping level in place; True if anything changed."""
    changed = False
    for key, value in theirs.items():
        where = (*path, key)
        old = base.get(key) if isinstance(base, dict) else None
        if where in TUNABLE:
            keep = key in ours and (base is None or key not in base or old == value)
            if where == ("spec", "timeout"):  # a floor: the longer of the two
                keep = key in ours and _seconds(ours[key]) >= _seconds(value)
            if not keep and ours.get(key) != value:
                ours[key] = yamlio.roundtrip_data(value)
                changed = True
        elif isinstance(value, dict) and where not in OWNED_WHOLE:
            if not isinstance(ours.get(key), dict):
                ours[key] = yamlio.roundtrip_data({})
                changed = True
            changed |= _merge(ours[key], old if isinstance(old, dict) else None, value, where)
        elif key not in ours or ours[key] != value:
            ours[key] = yamlio.roundtrip_data(value)
            changed = True
    for key in [k for k in ours if k not in theirs]:
        where = (*path, key)
        old = base.get(key) if isinstance(base, dict) else None
        if where in OWNED_OPTIONAL or (where in TUNABLE and old is not None and old == ours[key]):
            del ours[key]
            changed = True
        elif isinstance(ours[key], dict) and _merge(
            ours[key], old if isinstance(old, dict) else None, {}, where
        ):  # e.g. the bridge's only annotation went: drop it, keep the person's
            changed = True
            if not ours[key]:
                del ours[key]
    return changed


def _seconds(duration: object) -> int:
    """A Go duration like ``1h30m`` in seconds (-1: not one this reads)."""
    match = _DURATION.fullmatch(str(duration))
    if not match or not any(match.groups()):
        return -1
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds
