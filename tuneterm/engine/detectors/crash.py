"""Which event ended a run, and how crash rules recognise it.

A run "crashed" when it ended in an exception or a signal. For a run directory the verdict comes
from ``status.json`` (state ``failed`` or ``died``, or a non-zero exit code); a plain log crashed when
its last fatal event (traceback, OOM, ``Killed``) is not followed by further metric lines. A death by
a signal recorded in the exit status (``-9``, ``137``) outranks any exception text in the log: a
Python exception exits with status 1, so a signal exit means the signal ended the run.

Crash rules (``rules/diagnostics/runtime.yaml``) name the events they own by event ``codes`` (the exception
class or ``cuda-oom``/``SIGKILL`` codes the parsers assign) and by ``texts`` (case-insensitive
substrings of the event line); the generic ``run-crashed`` rule lists the same codes and texts in
its ``defer_codes``/``defer_texts`` so a crash is reported once (``tests/watch`` checks the two
stay in step).

>>> from tuneterm.logs.model import LogEvent, Run
>>> run = Run("train.log", "console")
>>> run.events.append(LogEvent("exception", "ModuleNotFoundError: No module named 'peft'", line=3))
>>> ev = final_crash(run)
>>> ev.code, matches(ev, ["ModuleNotFoundError"], [])
('ModuleNotFoundError', True)
"""

from __future__ import annotations

import re
import signal
from collections.abc import Sequence
from dataclasses import replace

from tuneterm.logs.model import LogEvent, Run

FATAL_KINDS = ("exception", "oom", "signal")
# Signals that mean "someone asked the run to stop", not a crash (run-crashed reports them as
# interrupted).
STOP_SIGNALS = frozenset({"SIGTERM", "SIGINT", "SIGHUP"})

_EXC_CLASS = re.compile(r"^\s*([A-Za-z_][\w.]{0,200}?)(?::|$)")


def signal_name(exit_code: int | None) -> str | None:
    """The signal behind an exit status: ``-9`` (Popen) or ``137`` (a shell) -> ``"SIGKILL"``.

    >>> signal_name(-9), signal_name(137), signal_name(1), signal_name(None)
    ('SIGKILL', 'SIGKILL', None, None)
    """
    if not isinstance(exit_code, int) or isinstance(exit_code, bool):
        return None
    if exit_code < 0:
        n = -exit_code
    elif 128 < exit_code < 160:
        n = exit_code - 128
    else:
        return None
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"SIG{n}"


def event_code(ev: LogEvent) -> str:
    """The event's code, else the exception class named at the start of its text, else its kind."""
    if ev.code:
        return ev.code
    m = _EXC_CLASS.match(ev.text)
    if m and ev.kind == "exception":
        return m.group(1).rsplit(".", 1)[-1]
    return ev.kind


def matches(ev: LogEvent, codes: Sequence[str], texts: Sequence[str]) -> bool:
    """True when the event's code is in ``codes`` or its text contains one of ``texts``
    (case-insensitive)."""
    if event_code(ev) in codes:
        return True
    low = ev.text.lower()
    return any(t.lower() in low for t in texts)


def _status_failed(run: Run) -> bool:
    state, code = run.state, run.exit_code
    if state in ("failed", "died"):
        return True
    return code is not None and code != 0 and state != "stopped"


def final_crash(run: Run) -> LogEvent | None:
    """The event that ended ``run``, or ``None`` when the run did not crash (or has not yet).

    Run directories (``run.format == "run_dir"``): only a run whose status says it failed (or that
    :func:`tuneterm.runs.status.mark_died` found dead) crashed; an exit by a non-stop signal is returned as a
    ``signal`` event even when the log also holds a traceback. Other logs: the last fatal event,
    unless metric lines follow it in the same file (the run carried on).
    """
    fatal = [e for e in run.events if e.kind in FATAL_KINDS]
    if run.format == "run_dir":
        if not _status_failed(run):
            return None
        sig = signal_name(run.exit_code)
        if sig is not None and sig not in STOP_SIGNALS:
            if fatal and fatal[-1].kind == "signal" and event_code(fatal[-1]) == sig:
                return fatal[-1]
            return LogEvent(kind="signal", text=f"killed by {sig}", step=run.last_step, code=sig)
        return fatal[-1] if fatal else None
    if not fatal:
        return None
    ev = fatal[-1]
    last_metric_line = max(run.lines.values()) if run.lines else None
    if ev.line is not None and last_metric_line is not None and last_metric_line > ev.line:
        return None
    if ev.code is None:
        ev = replace(ev, code=event_code(ev))
    return ev
