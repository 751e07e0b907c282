"""Event detectors: the run ended in an exception, was interrupted, or ran out of memory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuneterm.engine.model import Detection, Fix, Severity
from tuneterm.engine.registry import Param, detector
from tuneterm.logs.model import LogEvent, Run
from tuneterm.textsafe import inert_line


@detector(
    "exception-event",
    params={
        "kinds": Param("str_list", "event kinds that count as the run dying", ["exception", "oom", "signal"]),
        "interrupted_codes": Param("str_list", "exception codes meaning the user stopped the run (warning)", ["KeyboardInterrupt", "SIGINT", "SIGTERM"]),
        "defer_codes": Param("str_list", "event codes a specific crash rule reports (rules/diagnostics/runtime.yaml): stay silent", []),
        "defer_texts": Param("str_list", "case-insensitive error-line substrings a specific crash rule reports: stay silent", []),
        "handled_codes": Param("str_list", "exception classes that are printed and survived, never a cause of death (warning-ish)", []),
        "handled_texts": Param("str_list", "case-insensitive substrings of a handled exception's line (Python's 'Exception ignored in')", []),
    },
    evidence=("exception", "text", "line", "step", "pattern", "count", "where"),
)
def exception_event(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Report the exception a run ended with (the last fatal event in the log).

    An out-of-memory is an error with computed fixes (halve the per-device batch and double
    gradient accumulation, gradient checkpointing, shorter sequences); ``KeyboardInterrupt`` or a
    stop signal is a warning (interrupted, not crashed); an exception the run survived is info.

    Whether the run survived it: in a plain log, more metric lines after the exception's line; in a
    tuneterm run directory (metrics and console output are separate files, so line numbers cannot
    be compared) status.json decides: a run that is running or finished survived every exception
    it printed, a run stopped on request was interrupted, only a ``failed`` (or ``died``) run ended
    with its last exception.

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
    >>> run.events.append(LogEvent("exception", "KeyboardInterrupt", line=9, step=244, code="KeyboardInterrupt"))
    >>> exception_event(run, {"kinds": ["exception"], "interrupted_codes": ["KeyboardInterrupt"]})[0].severity.value
    'warning'
    """
    import re
    import signal as _signal

    fatal = [e for e in run.events if e.kind in params["kinds"]]
    if not fatal:
        return []
    interrupted = tuple(params["interrupted_codes"])
    is_run_dir = run.format == "run_dir"
    state = run.state
    exit_code = run.exit_code

    def code_of(e: LogEvent) -> str:
        if e.code:
            return e.code
        m = re.match(r"^\s*([A-Za-z_][\w.]{0,200}?)(?::|$)", e.text)
        return m.group(1).rsplit(".", 1)[-1] if m and e.kind == "exception" else e.kind

    def death_signal() -> tuple[str, LogEvent | None] | None:
        """(signal name, the signal's log event if any) when a signal that is not a stop ended the run."""
        if is_run_dir:
            if state == "stopped" or not isinstance(exit_code, int) or isinstance(exit_code, bool):
                return None
            n = -exit_code if exit_code < 0 else (exit_code - 128 if 128 < exit_code < 160 else 0)
            if n <= 0:
                return None
            try:
                name = _signal.Signals(n).name
            except ValueError:
                name = f"SIG{n}"
            return None if name in interrupted or name in ("SIGTERM", "SIGINT", "SIGHUP") else (name, None)
        last = fatal[-1]
        if last.kind != "signal" or code_of(last) in interrupted or "INT" in last.text.upper() or code_of(last) in ("SIGTERM", "SIGHUP"):
            return None
        return code_of(last), last

    def handled(e: LogEvent) -> bool:
        c = code_of(e)
        low = e.text.lower()
        return (
            c in interrupted
            or c.endswith("Warning")
            or c in params.get("handled_codes", ())
            or any(t.lower() in low for t in params.get("handled_texts", ()))
        )

    def evidence_of(e: LogEvent, code: str, pattern: str) -> dict[str, Any]:
        return {
            "exception": inert_line(code, 80),
            "text": inert_line(e.text, 200),
            "line": e.line,
            "step": e.step,
            "pattern": pattern,
            "count": len(fatal),
            "where": f"near step {e.step}" if e.step is not None else "before the first logged step",
        }

    metric_lines = sorted(run.lines.values()) if run.lines and not is_run_dir else []
    died = death_signal()
    if died is not None:
        sig, sig_ev = died
        before = [e for e in fatal if e.kind != "signal" and (sig_ev is None or sig_ev.line is None or e.line is None or e.line < sig_ev.line)]
        if not before:
            return []
        ex = before[-1]
        if handled(ex):
            return []
        if sig_ev is not None and ex.line is not None and sig_ev.line is not None:
            if any(ex.line < ln < sig_ev.line for ln in metric_lines):
                return []  # training went on after it: unrelated to the death
        if is_run_dir and ex.line is not None:
            later = run.events[run.events.index(ex) + 1 :]
            if any(e.line is not None and e.line > ex.line for e in later):
                return []  # more was printed after it in the same log: not the last thing
        code = "OutOfMemoryError" if ex.kind == "oom" else code_of(ex)
        causes = (
            f"the exception was the last thing the run printed before it was killed by {sig}: it may have started the "
            "shutdown during which native code crashed or the process was killed; killed-by-signal (X114) has the cause and its fixes",
        )
        return [Detection(ex.step, ex.step, evidence_of(ex, code, f"raised just before the process was killed by {sig}"), Severity.WARNING, (), causes)]

    ev = fatal[-1]
    code = ev.code or ev.kind
    # A specific crash rule (cuda-out-of-memory, missing-package ...) owns this event: one report.
    low = ev.text.lower()
    if code in params.get("defer_codes", ()) or any(t.lower() in low for t in params.get("defer_texts", ())):
        return []
    last_metric_line = metric_lines[-1] if metric_lines else None
    fixes: list[Fix] = []
    causes: list[str] = []
    if is_run_dir and state in ("running", "starting", "finished"):
        severity, pattern = Severity.INFO, "printed mid-run; training went on"
    elif not is_run_dir and ev.line is not None and last_metric_line is not None and last_metric_line > ev.line:
        severity, pattern = Severity.INFO, "printed mid-run; training went on"
    elif code in interrupted or (ev.kind == "signal" and "INT" in ev.text.upper()) or (is_run_dir and state == "stopped"):
        severity, pattern = Severity.WARNING, "interrupted"
        causes.append("the run was stopped by hand (Ctrl-C) or by a signal; it did not crash")
        fixes.append(Fix(key="resume_from_checkpoint", value=True, why="continue from the last saved checkpoint instead of starting over"))
    elif ev.kind == "oom" or "OutOfMemory" in code or "out of memory" in ev.text.lower():
        severity, pattern = Severity.ERROR, "out of memory"
        code = "OutOfMemoryError"
        f = run.facts
        if f.train_batch_size and f.train_batch_size > 1:
            pd = max(1, f.train_batch_size // 2)
            ga = (f.gradient_accumulation_steps or 1) * (f.train_batch_size // pd)
            fixes.append(Fix(key="per_device_train_batch_size", value=pd, why=f"half the activation memory; gradient_accumulation_steps {ga} keeps the effective batch"))
            fixes.append(Fix(key="gradient_accumulation_steps", value=ga, why="keeps the effective batch while the per-device batch shrinks"))
        if not f.gradient_checkpointing:
            fixes.append(Fix(key="gradient_checkpointing", value=True, why="recompute activations in the backward pass: much less memory for ~20-30% more time"))
        if f.max_length:
            fixes.append(Fix(key="max_length", value=max(128, f.max_length // 2), why=f"activations and logits grow with sequence length; {f.max_length} -> {max(128, f.max_length // 2)} (check your length distribution first)"))
        if f.trainer_kind == "grpo" and f.max_completion_length:
            fixes.append(Fix(key="max_completion_length", value=max(64, f.max_completion_length // 2), why="generation memory grows with num_generations x completion length"))
    elif code == "ConfigError":
        # TRL's own dataclasses refused the config in the training process (status.json
        # error_kind "config"): nothing ran, so memory and SSH advice would mislead.
        severity, pattern = Severity.ERROR, "config rejected before training"
        causes.append("TRL's own checks rejected the training config before the first step; the error line names the field")
        fixes.append(Fix(command="tuneterm check CONFIG", why="the pre-flight rules explain most config mistakes before any GPU time is spent"))
    else:
        severity, pattern = Severity.ERROR, "crashed"
    evidence = evidence_of(ev, code, pattern)
    return [Detection(ev.step, ev.step, evidence, severity, tuple(fixes), tuple(causes))]
