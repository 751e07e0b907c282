"""The ``github`` format: GitHub Actions workflow commands, one annotation per finding.

``::error file=runs/a/trainer_state.json,line=1,title=tuneterm G101 zero-grad-norm::message``

Severity maps to ``error`` / ``warning`` / ``notice``. Escaping follows GitHub's runner
(``toolkit/packages/core/src/command.ts``): in the message, ``%`` -> ``%25``, CR -> ``%0D``,
LF -> ``%0A``; in property values additionally ``:`` -> ``%3A`` and ``,`` -> ``%2C``. The message
carries the first fix on a second line, which GitHub shows inside the annotation.
"""

from __future__ import annotations

from collections.abc import Sequence

from tuneterm.engine.model import Finding, Fix
from tuneterm.report.result import CheckResult, command_prompt, display_path
from tuneterm.textsafe import inert, inert_line

_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}


def escape_data(text: str) -> str:
    """Escape a workflow-command message.

    >>> escape_data("50% done\\nnext")
    '50%25 done%0Anext'
    """
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow-command property value (``file``, ``title``).

    >>> escape_property("a,b:c")
    'a%2Cb%3Ac'
    """
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def fix_text(fix: Fix) -> str:
    """``key: value (why)`` or ``$ command (why)`` on one line."""
    import json

    if fix.command is not None:
        head = f"{command_prompt(fix.command)} {fix.command}"
    else:
        value = fix.value if isinstance(fix.value, str) else json.dumps(fix.value, default=str)
        head = f"{fix.key}: {value}"
    return inert_line(f"{head} ({fix.why})", 400)


def annotation(finding: Finding, path: str) -> str:
    """One ``::level file=..,line=..,title=..::message`` line."""
    level = _LEVEL[finding.severity.value]
    message = inert(finding.message, 2000)
    if finding.fixes:
        message += "\nFix: " + fix_text(finding.fixes[0])
    props = ",".join(
        [
            f"file={escape_property(inert_line(path, None))}",
            f"line={finding.line or 1}",
            f"title={escape_property(inert_line(f'tuneterm {finding.code} {finding.name}', 200))}",
        ]
    )
    return f"::{level} {props}::{escape_data(message)}"


def render_github(results: Sequence[CheckResult]) -> str:
    """All annotations, one per line (empty string when nothing was found)."""
    lines = [annotation(f, display_path(r.source)) for r in results for f in r.findings]
    return "".join(line + "\n" for line in lines)
