"""The ``sarif`` format: SARIF 2.1.0 for GitHub code scanning and other SARIF viewers.

One SARIF ``run`` holds every checked path. ``tool.driver.rules`` describes the rules that fired
(``id`` = rule code, ``name``, ``shortDescription`` = summary, ``fullDescription`` = why,
``help`` = fixes as text and Markdown, ``defaultConfiguration.level``, ``properties``: ``tags``,
``precision`` and ``problem.severity`` as GitHub reads them); each result points at its rule by
``ruleId`` and ``ruleIndex``.

Locations: a path inside the working directory is a relative URI against the base
``%SRCROOT%`` (run ``tuneterm check`` from the repository root); a path outside it is relative to
the base ``LOGROOT`` (the deepest directory holding every such path). Both bases are declared in
``originalUriBaseIds`` as absolute ``file://`` URIs, and the working directory is recorded in
``invocations[0].workingDirectory``. URIs are percent-encoded (a space is ``%20``), so every
``uri`` passes the schema's ``uri-reference`` format. ``region.startLine`` is the finding's line
or 1 (GitHub requires a line).

``partialFingerprints`` (``tuneterm/v2``) identify an alert across uploads by rule, file and
series: the eval set and metric a finding is about (overfitting on six eval sets of one log is six
alerts, not one), never by step, which moves as a run grows. ``--sarif-category`` sets
``automationDetails.id`` (GitHub's analysis category), so several tuneterm uploads per commit keep
their alerts apart.

The document is strict JSON (non-finite evidence as strings, see :func:`json_safe`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tuneterm.version import __version__
from tuneterm.engine.model import Finding, Fix, Rule
from tuneterm.report.result import CheckResult, command_prompt, json_safe

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/tuneterm/"
_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
# GitHub code scanning's rule properties: how often a rule is right, and how bad the problem is.
_PRECISION = {"error": "high", "warning": "medium", "info": "low"}
_PROBLEM_SEVERITY = {"error": "error", "warning": "warning", "info": "recommendation"}
SRCROOT = "%SRCROOT%"
LOGROOT = "LOGROOT"


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
        "properties": {
            "tags": ["tuneterm", category],
            "category": category,
            "precision": _PRECISION[severity],
            "problem.severity": _PROBLEM_SEVERITY[severity],
        },
    }


def series_of(finding: Finding) -> str:
    """The series a finding is about (``eval_g1/loss``, ``grad_norm``), or ``""`` for the run."""
    ev = finding.evidence
    eval_set = ev.get("eval_set")
    metric = ev.get("metric")
    parts = [str(v) for v in (eval_set, metric) if isinstance(v, str) and v]
    return "/".join(parts)


def fingerprint(finding: Finding, path: str) -> str:
    """A stable identity for an alert: sha256 of rule code, path and series (first 32 hex).

    >>> from tuneterm.engine.model import Finding, Severity
    >>> def f(eval_set): return Finding("O101", "overfitting", Severity.WARNING, "generalization",
    ...     "m", 401, 900, {"eval_set": eval_set}, (), (), ())
    >>> fingerprint(f("eval_g0"), "a.json") != fingerprint(f("eval_g1"), "a.json")
    True
    """
    key = f"{finding.code}\x00{path}\x00{series_of(finding)}"
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:32]


def _dir_uri(path: Path) -> str:
    """An absolute ``file://`` URI of a directory, ending in ``/`` (a base URI)."""
    uri = path.as_uri()
    return uri if uri.endswith("/") else uri + "/"


def _encode(rel_posix: str) -> str:
    """A relative path as a percent-encoded URI reference (``/`` kept)."""
    return quote(rel_posix, safe="/")


class _Locator:
    """Maps sources to ``(uri, uriBaseId)`` pairs and declares the bases they use."""

    def __init__(self, sources: Sequence[str], cwd: Path) -> None:
        self.cwd = cwd
        outside = [self._abs(s) for s in sources if self._relative(s) is None]
        self.logroot: Path | None = None
        if outside:
            common = Path(os.path.commonpath([str(p.parent) for p in outside]))
            self.logroot = common

    def _abs(self, source: str) -> Path:
        p = Path(source)
        return Path(os.path.normpath(p if p.is_absolute() else self.cwd / p))

    def _relative(self, source: str) -> str | None:
        rel = os.path.relpath(self._abs(source), os.path.normpath(self.cwd))
        if rel == ".." or rel.startswith(".." + os.sep):
            return None
        return Path(rel).as_posix()

    def locate(self, source: str) -> tuple[str, str, str]:
        """``(uri, uriBaseId, key)``: the encoded URI, its base and the unencoded path used for
        fingerprints."""
        rel = self._relative(source)
        if rel is not None:
            return _encode(rel), SRCROOT, rel
        root = self.logroot if self.logroot is not None else self._abs(source).parent
        rel = Path(os.path.relpath(self._abs(source), root)).as_posix()
        return _encode(rel), LOGROOT, rel

    def bases(self) -> dict[str, Any]:
        out: dict[str, Any] = {SRCROOT: {"uri": _dir_uri(self.cwd), "description": {"text": "the working directory tuneterm ran in"}}}
        if self.logroot is not None:
            out[LOGROOT] = {"uri": _dir_uri(self.logroot), "description": {"text": "the directory holding the logs outside the working directory"}}
        return out


def sarif_document(results: Sequence[CheckResult], *, category: str | None = None, cwd: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The SARIF log as a dict (see module docstring).

    Args:
        results: one check result per path.
        category: ``automationDetails.id`` (a trailing ``/`` is added: GitHub reads the part
            before the last ``/`` as the analysis category).
        cwd: the working directory (default: the current one).
    """
    base = Path(os.path.normpath(Path(cwd) if cwd is not None else Path.cwd())).absolute()
    locator = _Locator([r.source for r in results], base)
    descriptors: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    for r in results:
        by_code = {rule.code: rule for rule in r.rules}
        uri, base_id, key = locator.locate(r.source)
        for f in r.findings:
            if f.code not in index:
                index[f.code] = len(descriptors)
                descriptors.append(_descriptor(f.code, by_code.get(f.code), f))
            props: dict[str, Any] = {
                "name": f.name,
                "category": f.category,
                "firstStep": f.first_step,
                "lastStep": f.last_step,
                "evidence": dict(f.evidence),
            }
            series = series_of(f)
            if series:
                props["series"] = series
            out.append(
                {
                    "ruleId": f.code,
                    "ruleIndex": index[f.code],
                    "level": _LEVEL[f.severity.value],
                    "message": {"text": f.message},
                    "locations": [
                        {
                            "physicalLocation": {
                                "artifactLocation": {"uri": uri, "uriBaseId": base_id},
                                "region": {"startLine": max(1, f.line or 1)},
                            }
                        }
                    ],
                    "partialFingerprints": {"tuneterm/v2": fingerprint(f, key)},
                    "properties": props,
                }
            )
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "tuneterm",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": descriptors,
            }
        },
        "invocations": [{"executionSuccessful": True, "workingDirectory": {"uri": _dir_uri(base)}}],
        "originalUriBaseIds": locator.bases(),
        "results": out,
        "columnKind": "unicodeCodePoints",
    }
    if category:
        run["automationDetails"] = {"id": category if category.endswith("/") else category + "/"}
    doc = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
    return json_safe(doc)


def render_sarif(results: Sequence[CheckResult], *, category: str | None = None) -> str:
    """Serialise :func:`sarif_document` (strict JSON, 2-space indent)."""
    doc = sarif_document(results, category=category)
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
