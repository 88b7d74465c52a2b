"""Find the external binaries gitops-bridge drives (helm, kubectl, frpc, frps).

Looked up in order: an explicit path, ``GITOPS_BRIDGE_<NAME>_BIN``, the cache that
``scripts/tools`` fills (``GITOPS_BRIDGE_TOOLS`` or ``~/.cache/gitops-bridge/tools``),
then ``PATH``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from gitops_bridge.errors import ToolMissing


def tools_dir() -> Path:
    explicit = os.environ.get("GITOPS_BRIDGE_TOOLS")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "gitops-bridge" / "tools"


def binary(name: str, *, explicit: str | None = None) -> str:
    """Absolute path of the named tool, or ToolMissing saying how to get it."""
    candidates = [explicit, os.environ.get(f"GITOPS_BRIDGE_{name.upper()}_BIN")]
    candidates.append(str(tools_dir() / "bin" / name))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return str(Path(candidate).resolve())
    found = shutil.which(name)
    if found:
        return found
    raise ToolMissing(
        f"{name}: not found; run scripts/tools or set GITOPS_BRIDGE_{name.upper()}_BIN"
    )
