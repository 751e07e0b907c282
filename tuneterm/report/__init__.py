"""Reports: one emitter per output format, all rendering :class:`CheckResult` records.

Public API:
    CheckResult, Tally                      what is rendered (``result.py``)
    CheckOptions, check_subject, register_subject, SubjectHandler
                                            path -> CheckResult dispatch (``subjects.py``)
    FORMATS                                 the ``check --format`` names
    render(fmt, results, fail_on) -> str    machine formats: text, json, sarif, github, junit
    report.doctor.render_doctor(...)        the Rich report of ``tuneterm doctor``

Importing this package loads neither Rich nor plotext (``check --format json`` in CI must start
fast); :mod:`.doctor`, :mod:`.charts` and :mod:`.rules_view` import them and are loaded on use.
"""

from __future__ import annotations

from collections.abc import Sequence

from tuneterm.engine.model import Severity
from tuneterm.report.result import CheckResult, Tally, fails, json_safe
from tuneterm.report.subjects import CheckOptions, SubjectHandler, check_subject, register_subject

FORMATS: tuple[str, ...] = ("text", "json", "sarif", "github", "junit")


def render(
    fmt: str,
    results: Sequence[CheckResult],
    fail_on: Severity = Severity.ERROR,
    *,
    as_array: bool | None = None,
    sarif_category: str | None = None,
) -> str:
    """Render ``results`` in machine format ``fmt`` (one of :data:`FORMATS`).

    ``fail_on`` matters only to JUnit (which findings are failures); ``as_array`` only to JSON
    (array for several paths); ``sarif_category`` only to SARIF (``automationDetails.id``).

    Raises:
        ValueError: unknown format name.
    """
    if fmt == "text":
        from tuneterm.report.text import render_text

        return render_text(results)
    if fmt == "json":
        from tuneterm.report.json_report import render_json

        return render_json(results, as_array=as_array)
    if fmt == "sarif":
        from tuneterm.report.sarif import render_sarif

        return render_sarif(results, category=sarif_category)
    if fmt == "github":
        from tuneterm.report.github import render_github

        return render_github(results)
    if fmt == "junit":
        from tuneterm.report.junit import render_junit

        return render_junit(results, fail_on)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


__all__ = [
    "FORMATS",
    "CheckOptions",
    "CheckResult",
    "SubjectHandler",
    "Tally",
    "check_subject",
    "fails",
    "json_safe",
    "register_subject",
    "render",
]
