"""The digest of a deployment's committed settings, and keeping it out of the diffs people read.

The bridge writes ``specDigest`` into each HelmRelease's values: the sha256 of the canonical
JSON of the values it renders, the digest itself left out. The chart copies it to the
Deployment's metadata (``ANNOTATION``), never to the pod template, so it restarts nothing.
Helm changes the Deployment only when an upgrade succeeds, so after a failed upgrade that was
rolled back the annotation still names the settings that run, and the newest version of the
file in Git carrying that digest is the commit that is live for this deployment.

The digest is bookkeeping, not a setting: it is recomputed on every write (a revert or a
restore gets the digest of the values it writes) and ``hide`` drops its lines from the diffs
people see.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from gitops_bridge.render import layout

KEY = "specDigest"  # in spec.values
ANNOTATION = f"{layout.DOMAIN}/spec-digest"  # on the Deployment's metadata (the chart's)
LENGTH = 16  # hex digits kept: 64 bits tell a deployment's versions apart
# its line in a HelmRelease as the bridge writes it (spec.values, four spaces in)
_LINE = re.compile(rf'^[ +-] {{4}}{KEY}: "?[0-9a-f]*"?$')
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$")


def of(values: Mapping[str, Any]) -> str:
    """The digest of chart values (any ``specDigest`` in them left out)."""
    rest = {key: value for key, value in values.items() if key != KEY}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:LENGTH]


def stored(document: Any) -> str:
    """The digest a HelmRelease's values carry ("" when none: written before the bridge
    wrote one, or by hand)."""
    try:
        found = document["spec"]["values"].get(KEY)
    except (KeyError, TypeError, AttributeError):
        return ""
    return found if isinstance(found, str) else ""


def hide(diff: str) -> str:
    """A unified diff without the lines of the digest. A hunk keeps its place in the files
    (its start lines) and counts the lines it shows; a hunk left with no change goes, and so
    does a file's header when none of its hunks is left ("" when nothing is). A diff without
    such a line (a combined diff of a merge among them) is returned as it is."""
    if not any(_LINE.match(line) for line in diff.splitlines()):
        return diff
    out: list[str] = []
    header: list[str] = []
    hunk: list[str] = []
    where = ("", "", "")  # the hunk's start lines (old, new) and the text after its @@

    def close() -> None:
        if any(line[:1] in ("+", "-") for line in hunk):
            old = sum(1 for line in hunk if line[:1] in ("", " ", "-"))
            new = sum(1 for line in hunk if line[:1] in ("", " ", "+"))
            out.extend(header)
            header.clear()
            out.append(f"@@ -{_range(where[0], old)} +{_range(where[1], new)} @@{where[2]}")
            out.extend(hunk)
        hunk.clear()

    in_hunk = False
    for line in diff.splitlines():
        match = _HUNK.match(line)
        if match:
            close()
            where, in_hunk = (match[1], match[2], match[3]), True
        elif in_hunk and line[:1] in ("", " ", "+", "-", "\\"):
            if not _LINE.match(line):
                hunk.append(line)
        else:  # the next file's header
            close()
            if in_hunk:
                header.clear()  # the previous file's header, none of its hunks shown
            in_hunk = False
            header.append(line)
    close()
    if not out:
        return ""
    return "\n".join(out) + ("\n" if diff.endswith("\n") else "")


def _range(start: str, count: int) -> str:
    return start if count == 1 else f"{start},{count}"
