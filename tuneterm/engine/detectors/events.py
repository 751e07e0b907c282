"""Event detectors: the run ended in an exception, was interrupted, or ran out of memory.

Two rules read the same fatal events and never report one twice: ``run-crashed`` (X101) owns
crashes, ``run-interrupted`` (X117) owns a run stopped on purpose (Ctrl-C, a stop signal, a
``stopped`` run directory, tuneterm's own ``--stop-on error``). An interruption is not a crash:
out-of-memory or a missing package are not among its causes, and a run tuneterm stopped because
of a finding gets no advice to resume it.
"""

from __future__ import annotations

import re
import signal as _signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuneterm.engine.model import Detection, Fix, Severity
from tuneterm.engine.registry import Param, detector
from tuneterm.logs.model import LogEvent, Run
from tuneterm.textsafe import inert_line

_EXC_CLASS = re.compile(r"^\s*([A-Za-z_][\w.]{0,200}?)(?::|$)")
# Signals a user, a scheduler or tuneterm sends to stop a run: an interruption, never a crash.
_STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")
#: The event code a console parser gives a log that ends inside a traceback (no exception line).
TRUNCATED_TRACEBACK = "TruncatedTraceback"


@dataclass(frozen=True, slots=True)
class _Ending:
    """How the run ended, as far as status and events tell (shared by both event rules)."""

    fatal: tuple[LogEvent, ...]
    is_run_dir: bool
    state: str | None
    exit_code: int | None
    stop_reason: str | None
    metric_lines: tuple[int, ...]


def _ending(run: Run, kinds: Sequence[str]) -> _Ending:
    is_run_dir = run.format == "run_dir"
    return _Ending(
        fatal=tuple(e for e in run.events if e.kind in kinds),
        is_run_dir=is_run_dir,
        state=run.state,
        exit_code=run.exit_code,
        stop_reason=run.status.stop_reason if run.status is not None else None,
        metric_lines=tuple(sorted(run.lines.values())) if run.lines and not is_run_dir else (),
    )


def _code_of(e: LogEvent) -> str:
    """The exception class (last dotted part) or signal name of an event."""
    if e.code:
        return e.code
    m = _EXC_CLASS.match(e.text)
    return m.group(1).rsplit(".", 1)[-1] if m and e.kind == "exception" else e.kind


def _is_interruption(e: LogEvent, interrupted: Sequence[str]) -> bool:
    """Ctrl-C or a stop signal (KeyboardInterrupt, SIGINT, SIGTERM, SIGHUP)."""
    code = _code_of(e)
    return code in interrupted or code in _STOP_SIGNALS or (e.kind == "signal" and "INT" in e.text.upper())


def _signal_name(n: int) -> str:
    try:
        return _signal.Signals(n).name
    except ValueError:
        return f"SIG{n}"


def _death_signal(end: _Ending, interrupted: Sequence[str]) -> tuple[str, LogEvent | None] | None:
    """(signal name, its log event if any) when a signal that is not a stop ended the run."""
    if end.is_run_dir:
        code = end.exit_code
        if end.state == "stopped" or code is None:
            return None
        n = -code if code < 0 else (code - 128 if 128 < code < 160 else 0)
        if n <= 0:
            return None
        name = _signal_name(n)
        return None if name in interrupted or name in _STOP_SIGNALS else (name, None)
    last = end.fatal[-1]
    if last.kind != "signal" or _is_interruption(last, interrupted):
        return None
    return _code_of(last), last


def _handled(e: LogEvent, params: Mapping[str, Any]) -> bool:
    """An exception printed and survived, never a cause of death (warning-ish or listed)."""
    c = _code_of(e)
    low = e.text.lower()
    return (
        c in params["interrupted_codes"]
        or c.endswith("Warning")
        or c in params.get("handled_codes", ())
        or any(t.lower() in low for t in params.get("handled_texts", ()))
    )


def _evidence(e: LogEvent, code: str, pattern: str, count: int) -> dict[str, Any]:
    return {
        "exception": inert_line(code, 80),
        "text": inert_line(e.text, 200),
        "line": e.line,
        "step": e.step,
        "pattern": pattern,
        "count": count,
        "where": f"near step {e.step}" if e.step is not None else "before the first logged step",
    }


def _before_signal(run: Run, end: _Ending, sig: str, sig_ev: LogEvent | None, params: Mapping[str, Any]) -> list[Detection]:
    """The exception printed just before a signal death, as context (a warning), if it was last."""
    before = [
        e for e in end.fatal
        if e.kind != "signal" and (sig_ev is None or sig_ev.line is None or e.line is None or e.line < sig_ev.line)
    ]
    if not before or _handled(before[-1], params):
        return []
    ex = before[-1]
    if (
        sig_ev is not None
        and ex.line is not None
        and sig_ev.line is not None
        and any(ex.line < ln < sig_ev.line for ln in end.metric_lines)
    ):
        return []  # training went on after it: unrelated to the death
    if end.is_run_dir and ex.line is not None:
        later = run.events[run.events.index(ex) + 1 :]
        if any(e.line is not None and e.line > ex.line for e in later):
            return []  # more was printed after it in the same log: not the last thing
    code = "OutOfMemoryError" if ex.kind == "oom" else _code_of(ex)
    causes = (
        (
            f"the exception was the last thing the run printed before it was killed by {sig}: it may have started the "
            "shutdown during which native code crashed or the process was killed; killed-by-signal (X114) has the "
            "cause and its fixes"
        ),
    )
    ev = _evidence(ex, code, f"raised just before the process was killed by {sig}", len(end.fatal))
    return [Detection(ex.step, ex.step, ev, Severity.WARNING, (), causes)]


def _oom_fixes(run: Run) -> list[Fix]:
    """Computed out-of-memory remedies from the run's batch geometry and lengths."""
    f = run.facts
    fixes: list[Fix] = []
    if f.train_batch_size and f.train_batch_size > 1:
        pd = max(1, f.train_batch_size // 2)
        ga = (f.gradient_accumulation_steps or 1) * (f.train_batch_size // pd)
        fixes.append(Fix(key="per_device_train_batch_size", value=pd, why=f"half the activation memory; gradient_accumulation_steps {ga} keeps the effective batch"))
        fixes.append(Fix(key="gradient_accumulation_steps", value=ga, why="keeps the effective batch while the per-device batch shrinks"))
    if not f.gradient_checkpointing:
        fixes.append(Fix(key="gradient_checkpointing", value=True, why="recompute activations in the backward pass: much less memory for ~20-30% more time"))
    if f.max_length:
        half = max(128, f.max_length // 2)
        fixes.append(Fix(key="max_length", value=half, why=f"activations and logits grow with sequence length; {f.max_length} -> {half} (check your length distribution first)"))
    if f.trainer_kind == "grpo" and f.max_completion_length:
        fixes.append(Fix(key="max_completion_length", value=max(64, f.max_completion_length // 2), why="generation memory grows with num_generations x completion length"))
    return fixes


def _survived(ev: LogEvent, end: _Ending) -> bool:
    """The run went on after printing ``ev`` (see :func:`exception_event`)."""
    if end.is_run_dir:
        return end.state in ("running", "starting", "finished")
    last_metric = end.metric_lines[-1] if end.metric_lines else None
    return ev.line is not None and last_metric is not None and last_metric > ev.line


def _interrupted(ev: LogEvent, end: _Ending, interrupted: Sequence[str]) -> bool:
    return _is_interruption(ev, interrupted) or (end.is_run_dir and end.state == "stopped")


def _crash(run: Run, ev: LogEvent, end: _Ending) -> Detection:
    """The detection for a final exception the run did not survive (or survived: info)."""
    code = ev.code or ev.kind
    fixes: list[Fix] = []
    causes: list[str] = []
    if _survived(ev, end):
        severity, pattern = Severity.INFO, "printed mid-run; training went on"
    elif code == TRUNCATED_TRACEBACK:
        severity, pattern = Severity.ERROR, "the log ends inside a traceback, before its exception line"
        causes.append("the process died while printing the traceback (killed, out of host memory, or its output was cut off): "
                      "the exception line that names the error is missing; look at stderr or the scheduler's log for it")
    elif ev.kind == "oom" or "OutOfMemory" in code or "out of memory" in ev.text.lower():
        severity, pattern, code = Severity.ERROR, "out of memory", "OutOfMemoryError"
        fixes = _oom_fixes(run)
    elif code == "ConfigError":
        # TRL's own dataclasses refused the config in the training process (status.json
        # error_kind "config"): nothing ran, so memory and SSH advice would mislead.
        severity, pattern = Severity.ERROR, "config rejected before training"
        causes.append("TRL's own checks rejected the training config before the first step; the error line names the field")
        fixes.append(Fix(command="tuneterm check CONFIG", why="the pre-flight rules explain most config mistakes before any GPU time is spent"))
    else:
        severity, pattern = Severity.ERROR, "crashed"
    return Detection(ev.step, ev.step, _evidence(ev, code, pattern, len(end.fatal)), severity, tuple(fixes), tuple(causes))


_EVENT_PARAMS = {
    "kinds": Param("str_list", "event kinds that count as the run dying", ["exception", "oom", "signal"]),
    "interrupted_codes": Param("str_list", "exception codes meaning the user stopped the run (run-interrupted reports them)", ["KeyboardInterrupt", "SIGINT", "SIGTERM"]),
}


@detector(
    "exception-event",
    params={
        **_EVENT_PARAMS,
        "defer_codes": Param("str_list", "event codes a specific crash rule reports (rules/diagnostics/runtime.yaml): stay silent", []),
        "defer_texts": Param("str_list", "case-insensitive error-line substrings a specific crash rule reports: stay silent", []),
        "handled_codes": Param("str_list", "exception classes that are printed and survived, never a cause of death (warning-ish)", []),
        "handled_texts": Param("str_list", "case-insensitive substrings of a handled exception's line (Python's 'Exception ignored in')", []),
    },
    evidence=("exception", "text", "line", "step", "pattern", "count", "where"),
)
def exception_event(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Report the exception a run crashed with (the last fatal event in the log).

    An out-of-memory is an error with computed fixes (halve the per-device batch and double
    gradient accumulation, gradient checkpointing, shorter sequences); an exception the run
    survived is info; a log that ends inside a traceback cut off before its exception line (the
    process died mid-print) is a crash with that said. ``KeyboardInterrupt``, a stop signal and a
    ``stopped`` run directory are not crashes: ``run-interrupted`` reports them.

    Whether the run survived it: in a plain log, more metric lines after the exception's line; in a
    tuneterm run directory (metrics and console output are separate files, so line numbers cannot
    be compared) status.json decides: a run that is running or finished survived every exception
    it printed, only a ``failed`` (or ``died``) run ended with its last exception.

    **A death by signal is the cause of death.** When the process ended by a signal that is not a
    stop request (a run directory whose exit status is negative or 128+N and whose state is not
    ``stopped``, or a plain log whose last fatal line is ``Killed`` / ``Segmentation fault``),
    ``killed-by-signal`` (X114) reports the crash and this rule does not report it again. An
    exception printed before the signal is reported here only when all of these hold, and then
    as a *warning* (context, not a second cause):

    * it was the last thing before the death: the last exception of the log; in a plain log no
      metric line lies between it and the signal line; in a run directory no other event follows
      it in its log file (a run that kept training usually printed more);
    * it is not warning-ish or handled: not an interruption (``interrupted_codes``), its class
      does not end in ``Warning``, is not in ``handled_codes`` (a tracker's ``CommError`` ...) and
      its line holds none of ``handled_texts`` (``Exception ignored in`` ...).

    The specific crash rules' ``defer_codes`` do not apply to that warning: those rules judge only
    the final event, which is the signal.

    >>> from tuneterm.logs.model import LogEvent, Run
    >>> run = Run("x", "test")
    >>> run.events.append(LogEvent("exception", "ValueError: too many dimensions 'str'", line=9, step=244, code="ValueError"))
    >>> exception_event(run, {"kinds": ["exception"], "interrupted_codes": ["KeyboardInterrupt"]})[0].severity.value
    'error'
    >>> run.events.append(LogEvent("exception", "KeyboardInterrupt", line=19, step=250, code="KeyboardInterrupt"))
    >>> exception_event(run, {"kinds": ["exception"], "interrupted_codes": ["KeyboardInterrupt"]})
    []
    """
    end = _ending(run, params["kinds"])
    if not end.fatal:
        return []
    interrupted = params["interrupted_codes"]
    died = _death_signal(end, interrupted)
    if died is not None:
        return _before_signal(run, end, died[0], died[1], params)
    ev = end.fatal[-1]
    if _interrupted(ev, end, interrupted) and not _survived(ev, end):
        return []  # run-interrupted's
    # A specific crash rule (cuda-out-of-memory, missing-package ...) owns this event: one report.
    low = ev.text.lower()
    if (ev.code or ev.kind) in params.get("defer_codes", ()) or any(t.lower() in low for t in params.get("defer_texts", ())):
        return []
    return [_crash(run, ev, end)]


@detector(
    "interrupt-event",
    params=dict(_EVENT_PARAMS),
    evidence=("exception", "text", "line", "step", "pattern", "count", "where", "how"),
)
def interrupt_event(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Report a run that was stopped on purpose rather than crashed.

    The run ended with ``KeyboardInterrupt`` (Ctrl-C), a stop signal (SIGINT, SIGTERM, SIGHUP), or
    a run directory whose state is ``stopped``, and did not go on training after it. Info with the
    advice to resume from the last checkpoint (the person who stopped it knows why; nothing is
    wrong with the training), a warning for SIGHUP (an SSH session that closed under an attached
    run, rarely meant). When tuneterm itself stopped the run (``--stop-on error``: status.json
    records the finding in ``stop_reason``) it is info without resume advice: the finding it was
    stopped for is reported by its own rule, and resuming would repeat it. A death by a signal that is not a stop (SIGKILL after a Ctrl-C) is
    ``killed-by-signal``'s.

    >>> from tuneterm.logs.model import LogEvent, Run
    >>> run = Run("x", "test")
    >>> run.events.append(LogEvent("exception", "KeyboardInterrupt", line=9, step=244, code="KeyboardInterrupt"))
    >>> d = interrupt_event(run, {"kinds": ["exception"], "interrupted_codes": ["KeyboardInterrupt"]})[0]
    >>> d.severity.value, d.evidence["how"]
    ('info', 'Ctrl-C (KeyboardInterrupt)')
    """
    end = _ending(run, params["kinds"])
    interrupted = params["interrupted_codes"]
    if end.fatal and _death_signal(end, interrupted) is not None:
        return []  # killed by a signal that is not a stop: killed-by-signal's
    ev: LogEvent | None = end.fatal[-1] if end.fatal else None
    stopped_dir = end.is_run_dir and end.state == "stopped"
    if ev is None:
        if not stopped_dir:
            return []
        ev = LogEvent(kind="signal", text=end.stop_reason or "stopped on request", step=run.last_step, code="SIGTERM")
    elif not _interrupted(ev, end, interrupted) or (not stopped_dir and _survived(ev, end)):
        return []
    code = _code_of(ev)
    if end.stop_reason:
        evidence = _evidence(ev, code, "stopped by tuneterm", len(end.fatal))
        evidence["how"] = f"stopped by tuneterm ({inert_line(end.stop_reason, 160)})"
        evidence["text"] = inert_line(end.stop_reason, 200)
        causes = ("tuneterm stopped the run because of the finding named here (--stop-on error); that finding has the fixes",)
        return [Detection(ev.step, ev.step, evidence, Severity.INFO, (), causes)]
    how = "Ctrl-C (KeyboardInterrupt)" if code == "KeyboardInterrupt" else (f"signal {code}" if code.startswith("SIG") else "stopped on request")
    evidence = _evidence(ev, code, "interrupted", len(end.fatal))
    evidence["how"] = how
    fixes = (Fix(key="resume_from_checkpoint", value=True, why="continue from the last saved checkpoint instead of starting over"),)
    # A hang-up is the SSH session closing under an attached run: rarely what the user meant.
    severity = Severity.WARNING if code == "SIGHUP" else Severity.INFO
    return [Detection(ev.step, ev.step, evidence, severity, fixes)]
