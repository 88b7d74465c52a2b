"""axe-core, Deque's accessibility engine, run inside a Playwright page (test code).

``scripts/tools`` installs the npm package, pinned by ``tests/js/axe/package-lock.json``, into
the tools cache. ``check(page, where)`` injects ``axe.min.js`` through the DevTools protocol
(the app's Content-Security-Policy forbids inline scripts, and a script tag would be one),
runs ``axe.run`` on the whole document with the WCAG 2.0/2.1/2.2 level A and AA rules, and
fails listing every serious or critical violation: the rule, its impact, the elements (CSS
selectors) and what to do. Moderate and minor findings do not fail; they come back to the
caller, which reports them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from gitops_bridge import tools

AXE_JS = tools.tools_dir() / "node" / "axe-core" / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa")
FAILING = frozenset({"serious", "critical"})

RUN = """async (tags) => {
  const result = await axe.run(document, {
    runOnly: {type: "tag", values: tags},
    resultTypes: ["violations"],
  });
  return result.violations.map((v) => ({
    rule: v.id,
    impact: v.impact || "",
    help: v.help,
    url: v.helpUrl,
    targets: v.nodes.map((n) => n.target.join(" ")),
    summaries: v.nodes.map((n) => n.failureSummary || ""),
  }));
}"""


@dataclass(frozen=True)
class Violation:
    """One axe rule broken on a page, with every element that breaks it."""

    where: str
    rule: str
    impact: str
    help: str
    url: str
    targets: tuple[str, ...]
    summaries: tuple[str, ...]

    def describe(self) -> str:
        elements = "\n".join(
            f"      {target}: {' '.join(summary.split())}"
            for target, summary in zip(self.targets, self.summaries, strict=True)
        )
        return f"  {self.where}: {self.rule} ({self.impact}) {self.help}\n{elements}"


def _source() -> str:
    if not AXE_JS.is_file():
        pytest.fail(
            f"axe-core not installed at {AXE_JS}: run scripts/tools "
            "(needs Node.js and npm: apt-get install nodejs npm)",
            pytrace=False,
        )
    return AXE_JS.read_text(encoding="utf-8")


def run(page: Page, where: str) -> list[Violation]:
    """Every WCAG 2 A/AA violation axe finds in the page as it is now."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(_source())  # evaluated by the DevTools protocol: no CSP applies
    found: list[dict[str, Any]] = page.evaluate(RUN, list(TAGS))
    return [
        Violation(
            where=where,
            rule=v["rule"],
            impact=v["impact"],
            help=v["help"],
            url=v["url"],
            targets=tuple(v["targets"]),
            summaries=tuple(v["summaries"]),
        )
        for v in found
    ]


def failing(violations: list[Violation]) -> list[Violation]:
    return [v for v in violations if v.impact in FAILING]


def report(violations: list[Violation], path: Path | None = None) -> str:
    """The violations as text (and as JSON in ``path``, kept with the test's artifacts)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps([v.__dict__ for v in violations], indent=2) + "\n", encoding="utf-8"
        )
    return "\n".join(v.describe() for v in violations)


def check(page: Page, where: str) -> list[Violation]:
    """Fail on a serious or critical violation; the others, for the caller to report."""
    violations = run(page, where)
    bad = failing(violations)
    if bad:
        pytest.fail(f"accessibility violations:\n{report(bad)}", pytrace=False)
    return violations
