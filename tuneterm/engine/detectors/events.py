"""Event detectors: the run ended in an exception, was interrupted, or ran out of memory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuneterm.engine.model import Detection, Fix, Severity
from tuneterm.engine.registry import Param, detector
from tuneterm.logs.model import Run
from tuneterm.textsafe import inert_line


@detector(
    "exception-event",
    params={
        "kinds": Param("str_list", "event kinds that count as the run dying", ["exception", "oom", "signal"]),
        "interrupted_codes": Param("str_list", "exception codes meaning the user stopped the run (warning)", ["KeyboardInterrupt", "SIGINT", "SIGTERM"]),
        "defer_codes": Param("str_list", "event codes a specific crash rule reports (rules/runtime.yaml): stay silent", []),
        "defer_texts": Param("str_list", "case-insensitive error-line substrings a specific crash rule reports: stay silent", []),
    },
    evidence=("exception", "text", "line", "step", "pattern", "count"),
)
def exception_event(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Report the exception a run ended with (the last fatal event in the log).

    An out-of-memory is an error with computed fixes (halve the per-device batch and double
    gradient accumulation, gradient checkpointing, shorter sequences); ``KeyboardInterrupt`` or a
    stop signal is a warning (interrupted, not crashed); an exception followed by more metric
    lines is info (the run carried on).

    >>> from tuneterm.logs.model import LogEvent, Run
    >>> run = Run("x", "test")
    >>> run.events.append(LogEvent("exception", "KeyboardInterrupt", line=9, step=244, code="KeyboardInterrupt"))
    >>> exception_event(run, {"kinds": ["exception"], "interrupted_codes": ["KeyboardInterrupt"]})[0].severity.value
    'warning'
    """
    fatal = [e for e in run.events if e.kind in params["kinds"]]
    if not fatal:
        return []
    ev = fatal[-1]
    code = ev.code or ev.kind
    # A specific crash rule (cuda-out-of-memory, missing-package ...) owns this event: one report.
    low = ev.text.lower()
    if code in params.get("defer_codes", ()) or any(t.lower() in low for t in params.get("defer_texts", ())):
        return []
    last_metric_line = max(run.lines.values()) if run.lines else None
    fixes: list[Fix] = []
    causes: list[str] = []
    if ev.line is not None and last_metric_line is not None and last_metric_line > ev.line:
        severity, pattern = Severity.INFO, "printed mid-run; training went on"
    elif code in params["interrupted_codes"] or (ev.kind == "signal" and "INT" in ev.text.upper()):
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
    evidence = {
        "exception": inert_line(code, 80),
        "text": inert_line(ev.text, 200),
        "line": ev.line,
        "step": ev.step,
        "pattern": pattern,
        "count": len(fatal),
    }
    return [Detection(ev.step, ev.step, evidence, severity, tuple(fixes), tuple(causes))]
