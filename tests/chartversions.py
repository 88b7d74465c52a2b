"""One chart version, one content: the digests of released generic-app versions.

``tests/golden/chart-versions.json`` maps each released version of ``charts/generic-app`` to
the digest of its content (``digest``: sha256 over the chart's files in sorted relative-path
order, each as path, NUL, byte length, NUL, bytes). With ``reconcileStrategy: ChartVersion``
Flux upgrades a release only when the chart version changes, so a chart changed without a
version bump would never reach the cluster; tests/test_chart.py fails on that.

``python -m tests.chartversions record`` (run by scripts/update-golden) adds the current
version's entry; it never overwrites the digest of a version already recorded.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "generic-app"
GOLDEN = ROOT / "tests" / "golden" / "chart-versions.json"


def digest(chart: Path) -> str:
    """``sha256:<hex>`` of every file under chart, by sorted relative path."""
    sha = hashlib.sha256()
    files = sorted(
        (path.relative_to(chart).as_posix(), path) for path in chart.rglob("*") if path.is_file()
    )
    for relative, path in files:
        data = path.read_bytes()
        sha.update(b"%s\0%d\0" % (relative.encode(), len(data)))
        sha.update(data)
    return f"sha256:{sha.hexdigest()}"


def version(chart: Path) -> str:
    """The ``version:`` of Chart.yaml (a top-level scalar line)."""
    for line in (chart / "Chart.yaml").read_text(encoding="utf-8").splitlines():
        if line.startswith("version:"):
            return line.partition(":")[2].strip().strip("\"'")
    raise ValueError(f"{chart}/Chart.yaml: no version")


def recorded(golden: Path = GOLDEN) -> dict[str, str]:
    if not golden.is_file():
        return {}
    data = json.loads(golden.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return {str(k): str(v) for k, v in data.items()}


def problem(chart: Path = CHART, golden: Path = GOLDEN) -> str:
    """Why the chart's content does not match its recorded version ('' when it does)."""
    current, known = version(chart), recorded(golden)
    if current not in known:
        return (
            f"charts/{chart.name} version {current} is not recorded: "
            "record it with scripts/update-golden"
        )
    if known[current] != digest(chart):
        return (
            f"charts/{chart.name} changed but its version {current} was released with other "
            "content: bump version in Chart.yaml and record it with scripts/update-golden"
        )
    return ""


def record(chart: Path = CHART, golden: Path = GOLDEN) -> str:
    """Add the current version's digest; refuse (ValueError) to change a recorded one."""
    current, known, content = version(chart), recorded(golden), digest(chart)
    if current in known:
        if known[current] != content:
            raise ValueError(problem(chart, golden))
        return f"charts/{chart.name} {current}: already recorded"
    known[current] = content
    golden.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return f"charts/{chart.name} {current}: recorded {content}"


def main(argv: list[str]) -> int:
    if argv != ["record"]:
        print("usage: python -m tests.chartversions record", file=sys.stderr)
        return 2
    try:
        print(record())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
