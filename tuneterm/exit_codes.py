"""Process exit codes: a contract that scripts and CI depend on (see DESIGN.md).

Every tuneterm command exits with one of these. "Found problems" (1) is kept apart from "could
not run" (2) and from "nothing to check" (3), so an empty or unreadable log can never pass a CI gate.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    """Nothing at or above ``--fail-on`` was found (or the command simply succeeded)."""
    FINDINGS = 1
    """At least one finding at or above ``--fail-on`` (default ``error``)."""
    USAGE = 2
    """Bad flags, bad rule/config file, unreadable input; one line on stderr, never a traceback."""
    NO_METRICS = 3
    """The input was readable but held no training metrics to check."""
    INTERRUPTED = 130
    """Interrupted by Ctrl-C (SIGINT)."""
