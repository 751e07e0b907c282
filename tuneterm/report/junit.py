"""The ``junit`` format: JUnit XML for CI systems that show test reports.

``<testsuites>`` holds one ``<testsuite>`` per checked path (``file`` = the path) and, in it, one
``<testcase>`` per rule evaluated on that path (``classname="tuneterm.<category>"``,
``name="CODE name"``; no ``file`` attribute: the Jenkins xunit plugin's JUnit schema rejects it
on ``testcase`` and then drops the whole report). A rule with findings at or above ``--fail-on``
gets one ``<failure>`` (several findings of one rule are joined in its text); findings below the
threshold go to the test case's ``<system-out>`` and the case passes. A rule that could not run
on the input (an evaluation rule on a log without evaluation data) is a ``<skipped>`` case with
the reason, not a pass. Valid against the xunit plugin's ``junit-10.xsd``. Built with :mod:`xml.etree.ElementTree` (so ``<``, ``&`` and quotes are escaped) and
stripped of characters XML 1.0 cannot hold (escape sequences, C0 controls, lone surrogates).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from tuneterm.engine.model import Finding, Rule, Severity
from tuneterm.logs.model import Run
from tuneterm.report.result import CheckResult, display_path
from tuneterm.report.github import fix_text
from tuneterm.textsafe import inert, inert_line

# Characters outside the XML 1.0 Char production (after inert() has removed escape sequences).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: object, max_len: int | None = 4000) -> str:
    """``text`` made inert and legal inside an XML 1.0 document."""
    return _NOT_XML.sub("", inert(text, max_len))


def _details(findings: list[Finding]) -> str:
    parts = []
    for f in findings:
        where = f"steps {f.first_step}-{f.last_step}" if f.first_step is not None else "whole run"
        lines = [f"[{f.severity.value}] {f.message} ({where})"]
        lines += [f"  evidence {k}: {inert_line(v, 200)}" for k, v in f.evidence.items()]
        lines += [f"  fix: {fix_text(x)}" for x in f.fixes]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def skip_reason(rule: Rule, run: Run | None) -> str | None:
    """Why ``rule`` could not run on ``run`` (``None``: it ran): a rule that reads evaluation
    sets (its detector takes ``eval_sets``) on a log without evaluation data."""
    if run is not None and "eval_sets" in rule.params and not run.evals:
        return "no evaluation data in this log (set eval_strategy and an eval_dataset to check it)"
    return None


def junit_tree(results: Sequence[CheckResult], fail_on: Severity) -> ET.Element:
    """The ``<testsuites>`` element (see module docstring)."""
    root = ET.Element("testsuites", name="tuneterm")
    total_tests = total_failures = 0
    for r in results:
        path = display_path(r.source)
        suite = ET.SubElement(root, "testsuite", name=xml_text(path, 1000), file=xml_text(path, 1000))
        props = ET.SubElement(suite, "properties")
        for key in ("trainer", "steps"):
            ET.SubElement(props, "property", name=key, value=xml_text(r.facts.get(key), 200))
        ET.SubElement(props, "property", name="format", value=xml_text(r.format, 200))
        by_code: dict[str, list[Finding]] = {}
        for f in r.findings:
            by_code.setdefault(f.code, []).append(f)
        cases: list[tuple[str, str, str, str | None]] = [
            (rule.code, rule.name, rule.category, skip_reason(rule, r.run)) for rule in r.rules
        ]
        known = {c for c, _, _, _ in cases}
        # A finding from a rule not in the evaluated list (e.g. a synthetic "detector crashed"
        # finding) still needs a test case, or the failure would vanish from the report.
        cases += [(c, fs[0].name, fs[0].category, None) for c, fs in by_code.items() if c not in known]
        tests = failures = skipped = 0
        for code, name, category, skip in cases:
            tests += 1
            case = ET.SubElement(
                suite,
                "testcase",
                classname=xml_text(f"tuneterm.{category}", 200),
                name=xml_text(f"{code} {name}", 200),
            )
            found = by_code.get(code, [])
            if skip is not None and not found:
                skipped += 1
                ET.SubElement(case, "skipped", message=xml_text(skip, 1000))
                continue
            failing = [f for f in found if f.severity.rank >= fail_on.rank]
            passing = [f for f in found if f.severity.rank < fail_on.rank]
            if failing:
                failures += 1
                worst = max(failing, key=lambda f: f.severity.rank)
                fail = ET.SubElement(
                    case, "failure", message=xml_text(worst.message, 1000), type=worst.severity.value
                )
                fail.text = xml_text(_details(failing), 20000)
            if passing:
                ET.SubElement(case, "system-out").text = xml_text(_details(passing), 20000)
        suite.set("tests", str(tests))
        suite.set("failures", str(failures))
        suite.set("errors", "0")
        suite.set("skipped", str(skipped))
        total_tests += tests
        total_failures += failures
    root.set("tests", str(total_tests))
    root.set("failures", str(total_failures))
    root.set("errors", "0")
    return root


def render_junit(results: Sequence[CheckResult], fail_on: Severity = Severity.ERROR) -> str:
    """Serialise :func:`junit_tree` with an XML declaration, indented."""
    root = junit_tree(results, fail_on)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
