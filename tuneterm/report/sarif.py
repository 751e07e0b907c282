"""The ``sarif`` format: SARIF 2.1.0 for GitHub code scanning and other SARIF viewers.

One SARIF ``run`` holds every checked path. ``tool.driver.rules`` describes the rules that fired
(``id`` = rule code, ``name``, ``shortDescription`` = summary, ``fullDescription`` = why,
``help`` = fixes as text and Markdown, ``defaultConfiguration.level``, ``properties.tags``);
each result points at its rule by ``ruleId`` and ``ruleIndex``. Locations are paths relative to
the working directory with forward slashes (run ``tuneterm check`` from the repository root), with
``region.startLine`` = the finding's line or 1 (GitHub requires a line). ``partialFingerprints``
keeps an alert stable across uploads: a hash of code, path and first step.

The document is strict JSON (non-finite evidence as strings, see :func:`json_safe`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from tuneterm import __version__
from tuneterm.engine.model import Finding, Fix, Rule
from tuneterm.report.result import CheckResult, command_prompt, display_path, json_safe

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/tuneterm/"
_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def _fix_line(fix: Fix, markdown: bool) -> str:
    if fix.command is not None:
        prompt = command_prompt(fix.command)
        head = f"`{prompt} {fix.command}`" if markdown else f"{prompt} {fix.command}"
    else:
        value = fix.value if isinstance(fix.value, str) else json.dumps(json_safe(fix.value))
        head = f"`{fix.key}: {value}`" if markdown else f"{fix.key}: {value}"
    return f"- {head}: {fix.why}"


def _descriptor(code: str, rule: Rule | None, finding: Finding) -> dict[str, Any]:
    """A ``reportingDescriptor`` from the rule record (or, lacking one, from the finding)."""
    name = rule.name if rule else finding.name
    summary = rule.summary if rule else finding.message
    why = rule.why if rule and rule.why else summary
    fixes = rule.fixes if rule else finding.fixes
    severity = (rule.severity if rule else finding.severity).value
    category = rule.category if rule else finding.category
    references = rule.references if rule else finding.references
    text = why
    md = f"**{name}** ({code}): {why}"
    if fixes:
        text += "\n\nFixes:\n" + "\n".join(_fix_line(f, False) for f in fixes)
        md += "\n\n**Fixes**\n\n" + "\n".join(_fix_line(f, True) for f in fixes)
    if references:
        md += "\n\n**References**: " + ", ".join(references)
    md += f"\n\nMore: `tuneterm rule {name}`"
    return {
        "id": code,
        "name": name,
        "shortDescription": {"text": summary},
        "fullDescription": {"text": why},
        "help": {"text": text, "markdown": md},
        "defaultConfiguration": {"level": _LEVEL[severity]},
        "properties": {"tags": ["tuneterm", category], "category": category},
    }


def fingerprint(finding: Finding, path: str) -> str:
    """A stable identity for an alert: sha256 of code, path and first step (first 32 hex)."""
    key = f"{finding.code}\x00{path}\x00{finding.first_step}"
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:32]


def sarif_document(results: Sequence[CheckResult]) -> dict[str, Any]:
    """The SARIF log as a dict (see module docstring)."""
    descriptors: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    for r in results:
        by_code = {rule.code: rule for rule in r.rules}
        path = display_path(r.source)
        for f in r.findings:
            if f.code not in index:
                index[f.code] = len(descriptors)
                descriptors.append(_descriptor(f.code, by_code.get(f.code), f))
            out.append(
                {
                    "ruleId": f.code,
                    "ruleIndex": index[f.code],
                    "level": _LEVEL[f.severity.value],
                    "message": {"text": f.message},
                    "locations": [
                        {
                            "physicalLocation": {
                                "artifactLocation": {"uri": path},
                                "region": {"startLine": max(1, f.line or 1)},
                            }
                        }
                    ],
                    "partialFingerprints": {"tuneterm/v1": fingerprint(f, path)},
                    "properties": {
                        "name": f.name,
                        "category": f.category,
                        "firstStep": f.first_step,
                        "lastStep": f.last_step,
                        "evidence": dict(f.evidence),
                    },
                }
            )
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "tuneterm",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": descriptors,
                    }
                },
                "results": out,
                "columnKind": "unicodeCodePoints",
            }
        ],
    }
    return json_safe(doc)


def render_sarif(results: Sequence[CheckResult]) -> str:
    """Serialise :func:`sarif_document` (strict JSON, 2-space indent)."""
    return json.dumps(sarif_document(results), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
