"""The ``text`` format of ``tuneterm check``: one line per finding, then a summary line.

Lines look like compiler diagnostics, so editors and ``grep`` understand them::

    runs/a/stdout.log:1204: X101 run-crashed [warning] the run ended in KeyboardInterrupt at step 244
    runs/a/trainer_state.json: G101 zero-grad-norm [error] grad_norm is 0.0 at 50 of 50 logged steps
    runs/a/trainer_state.json: note: file is truncated; salvaged 1,204 complete entries
    1 error, 1 warning, 0 infos in 1 file

Everything that came from the input (paths, messages built from log text, notes) goes through
:func:`tuneterm.textsafe.inert_line`, so no escape sequence in a log reaches the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence

from tuneterm.engine.model import Finding
from tuneterm.report.result import CheckResult, Tally, display_path, plural
from tuneterm.textsafe import inert_line


def finding_line(finding: Finding, source: str) -> str:
    """``path[:line]: CODE name [severity] message`` for one finding (no trailing newline).

    >>> from tuneterm.engine.model import Severity
    >>> f = Finding("G101", "zero-grad-norm", Severity.ERROR, "gradients", "grad_norm is 0",
    ...             10, 500, {}, (), (), (), line=12)
    >>> finding_line(f, "log.txt")
    'log.txt:12: G101 zero-grad-norm [error] grad_norm is 0'
    """
    where = inert_line(source, None) + (f":{finding.line}" if finding.line else "")
    return (
        f"{where}: {inert_line(finding.code, 40)} {inert_line(finding.name, 80)} "
        f"[{finding.severity.value}] {inert_line(finding.message, 1000)}"
    )


def finding_summary(finding: Finding, *, limit: int = 600, brief: bool = False) -> str:
    """One inert line about a finding for a live status: ``severity CODE name (step a-b): message``.

    The form of ``tuneterm watch``, ``tuneterm train`` and the stop reason a run's status keeps
    (``brief``: ``CODE name: message``, no severity and no steps, since the reason names the rule
    that stopped the run). ``limit`` caps the whole line (characters).

    >>> from tuneterm.engine.model import Severity
    >>> f = Finding("G101", "zero-grad-norm", Severity.ERROR, "gradients", "grad_norm is 0",
    ...             10, 500, {}, (), (), ())
    >>> finding_summary(f)
    'error G101 zero-grad-norm (step 10-500): grad_norm is 0'
    >>> finding_summary(f, brief=True)
    'G101 zero-grad-norm: grad_norm is 0'
    """
    if brief:
        return inert_line(f"{finding.code} {finding.name}: {finding.message}", limit)
    return inert_line(f"{finding.severity.value} {finding.code} {finding.name}{step_range(finding)}: {finding.message}", limit)


def step_range(finding: Finding) -> str:
    """`` (step 12)``, `` (step 12-30)``, or ``""`` for a finding without steps."""
    if finding.first_step is None:
        return ""
    last = f"-{finding.last_step}" if finding.last_step not in (None, finding.first_step) else ""
    return f" (step {finding.first_step}{last})"


def render_text(results: Sequence[CheckResult]) -> str:
    """Render ``results`` as text lines ending with a summary line (and a final newline)."""
    lines: list[str] = []
    total = Tally()
    for r in results:
        src = display_path(r.source)
        lines.extend(finding_line(f, src) for f in r.findings)
        lines.extend(f"{inert_line(src, None)}: note: {inert_line(n, 400)}" for n in r.notes)
        total = total + r.tally
    lines.append(f"{total.describe()} in {plural(len(results), 'file')}")
    return "\n".join(lines) + "\n"
