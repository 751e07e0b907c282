"""Exceptions that carry an exit code and a one-line, user-facing message.

Library code raises these; the CLI turns them into ``tuneterm: error: <message>`` on stderr and the
exit code they carry. Anything else escaping a command is a bug, reported the same way (exit 2)
without a traceback unless ``TUNETERM_DEBUG=1``.
"""

from __future__ import annotations

from tuneterm.exit_codes import ExitCode


class TunetermError(Exception):
    """Base class: ``str(err)`` is the one-line message shown to the user."""

    exit_code: ExitCode = ExitCode.USAGE


class InputError(TunetermError):
    """A path is missing, unreadable, binary junk, or in no format tuneterm knows (exit 2)."""


class NoMetricsError(TunetermError):
    """The input was read but contains no training metrics (exit 3)."""

    exit_code = ExitCode.NO_METRICS


class RuleFileError(TunetermError):
    """A rule table in ``rules/`` is malformed; the message names the file and the field (exit 2)."""


class ConfigError(TunetermError):
    """A training config is malformed or refers to something that does not exist (exit 2)."""
