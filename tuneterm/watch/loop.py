"""The watch loop: follow, evaluate, show findings, stop on error, decide when it is over.

When a watch ends:

* a **run directory** with ``status.json``: when the recorded state is ``finished``, ``failed`` or
  ``stopped`` and the run's supervisor process has exited (so its exit status is recorded), or when
  the process is gone without a recorded end (``died``);
* a **log file** (or a directory without status.json): with ``follow`` off, after one read; else
  when the log shows the end-of-training summary, or when it has not grown for ``idle_timeout``
  seconds (0: never; Ctrl-C ends it).

Each poll (every ``poll_s``, default 0.25 s) reads the new lines; the rules run when something
changed (see :class:`~tuneterm.runs.live.LiveEvaluator`), so a finding shows well within a second
of the line that causes it. ``findings.json`` of a run directory is rewritten whenever the
findings change and at the end, so a viewer that dies loses nothing.

Exit codes (:func:`exit_code_for`): 1 when an error finding fired or the run failed/died; 0 when
it finished (or was followed to its end) without one; 3 when nothing with metrics or events was
ever read; 130 when interrupted by Ctrl-C.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneterm.engine.model import Finding, Rule, Severity
from tuneterm.exit_codes import ExitCode
from tuneterm.logs.model import Run, RunStatus
from tuneterm.runs.layout import METRICS, STATUS, TERMINAL_STATES
from tuneterm.runs.processes import pid_alive
from tuneterm.runs.status import effective_state
from tuneterm.runs.live import LiveEvaluator
from tuneterm.watch.view import PlainView

if TYPE_CHECKING:
    import subprocess

    from tuneterm.report.notify import Notifier
    from tuneterm.report.prescription import Prescription

TERMINAL = TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """How to watch.

    Attributes:
        stop_on: ``"error"`` stops the run on the first error finding; ``"never"`` does not.
        follow: keep following a log file as it grows (``False``: read once and end).
        idle_timeout: a followed log file that has not grown for this many seconds ends the watch
            (0: never). Run directories end by their status instead.
        poll_s: seconds between polls.
        grace_s: seconds between SIGTERM and SIGKILL when stopping a run.
        notify: apprise URLs (``--notify``), added to ``$TUNETERM_NOTIFY`` and the config file's:
            error findings, a stall and the run's end are sent (:mod:`tuneterm.report.notify`).
    """

    stop_on: str = "never"
    follow: bool = True
    idle_timeout: float = 60.0
    poll_s: float = 0.25
    grace_s: float = 30.0
    notify: tuple[str, ...] = ()


@dataclass(slots=True)
class WatchResult:
    """How a watch ended.

    Attributes:
        state: the run's final state (run directories), else ``"ended"``/``"idle"``/``"read"``.
        findings: the final evaluation's findings.
        fired: every finding reported during the watch (one per rule code, most severe).
        stopped_on_error: the run was stopped because of ``stop_on == "error"``.
        interrupted: Ctrl-C ended the watch; ``action`` says what was done to the run.
        action: ``"stopped"`` or ``"detached"`` after Ctrl-C, else ``None``.
        had_input: metrics or events were read at all.
    """

    state: str | None
    findings: list[Finding] = field(default_factory=list)
    fired: list[Finding] = field(default_factory=list)
    stopped_on_error: bool = False
    interrupted: bool = False
    action: str | None = None
    had_input: bool = False


def exit_code_for(result: WatchResult) -> int:
    """The watch's exit code (module docstring)."""
    if result.interrupted:
        return int(ExitCode.INTERRUPTED)
    if any(f.severity is Severity.ERROR for f in result.fired) or result.state in ("failed", "died"):
        return int(ExitCode.FINDINGS)
    if not result.had_input and not result.fired:
        return int(ExitCode.NO_METRICS)
    return int(ExitCode.OK)


def advise_notice(run: Run, findings: Sequence[Finding]) -> Prescription:
    """The advisor's prescription for a notification (:data:`tuneterm.report.notify.Advisor`),
    imported when a message is composed, not when the watch starts."""
    from tuneterm.advise import advise

    return advise(run, findings)


def _size(path: Path) -> tuple[int, float]:
    try:
        st = path.stat()
    except OSError:
        return (-1, 0.0)
    return (st.st_size, st.st_mtime)


def _alive(pid: int | None, proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    return pid_alive(pid)


def stop_for_finding(path: Path, f: Finding, *, grace_s: float, proc: subprocess.Popen[bytes] | None = None) -> str:
    """Stop the run in ``path`` because of finding ``f``; record why in status.json.

    Returns the final state (``stopped``, or ``finished``/``failed`` if it ended meanwhile).
    """
    from tuneterm.runs.control import stop_run
    from tuneterm.runs.layout import RunDir
    from tuneterm.textsafe import inert_line

    rd = RunDir(path)
    why = inert_line(f"{f.code} {f.name}: {f.message}", 300)
    rd.update_status(stop_reason=why)
    state = stop_run(rd, grace_s=grace_s, proc=proc)
    if state in ("stopped", "failed") or state not in TERMINAL:
        rd.update_status(state="stopped", error=f"stopped by tuneterm watch --stop-on error: {why}")
        return "stopped"
    return state


def watch(
    path: str | os.PathLike[str],
    rules: Iterable[Rule],
    *,
    options: WatchOptions = WatchOptions(),
    view: PlainView | None = None,
    proc: subprocess.Popen[bytes] | None = None,
    on_interrupt: Callable[[], str] | None = None,
) -> WatchResult:
    """Watch ``path`` until it ends (module docstring).

    Args:
        path: a run directory or a log file.
        rules: the rule set.
        options: see :class:`WatchOptions`.
        view: a :class:`~tuneterm.watch.view.PlainView` or :class:`~tuneterm.watch.view.LiveView`.
        proc: the supervisor's ``Popen`` when this process started the run (reaped, not a zombie).
        on_interrupt: called on Ctrl-C; returns ``"stop"`` to stop the run, else it is left
            running (``"detach"``). Default: detach.

    Raises:
        InputError: the followed file is binary or unreadable.
    """
    from tuneterm.report.findings_file import write_findings
    from tuneterm.report.notify import Notifier, notify_findings

    p = Path(path)
    view = view or PlainView()
    live = LiveEvaluator(p, rules)
    notifier = Notifier.configured(options.notify, advise=advise_notice)
    notify_dir = p if live.is_run_dir else None
    has_status = (p / STATUS).is_file() if live.is_run_dir else False
    result = WatchResult(state=None)
    stop_warned = False
    watched = p / METRICS if p.is_dir() else p  # a directory grows by its metrics file
    last_sig = _size(watched)
    last_growth = time.monotonic()
    terminal_since: float | None = None
    try:
        with view:
            while True:
                up = live.poll()
                for f in up.new:
                    view.finding(f, escalated=f.code in {g.code for g in result.fired})
                    result.fired = [g for g in result.fired if g.code != f.code] + [f]
                if up.new and live.is_run_dir and has_status:
                    write_findings(live)
                notify_findings(notifier, notify_dir, p.name, up.new, live.run)
                view.refresh(live)
                new_errors = [f for f in up.new if f.severity is Severity.ERROR]
                if new_errors and options.stop_on == "error" and not result.stopped_on_error:
                    if has_status and live.status is not None and live.status.pid:
                        if live.status.state not in TERMINAL:
                            view.status(f"--stop-on error: stopping the run ({new_errors[0].code} {new_errors[0].name}) ...")
                            state = stop_for_finding(p, new_errors[0], grace_s=options.grace_s, proc=proc)
                            result.stopped_on_error = True
                            view.status(f"run {p.name} {state}")
                    elif not stop_warned:
                        stop_warned = True
                        view.status("--stop-on error: not a tuneterm run directory with a pid; cannot stop it")
                # --- end conditions
                if has_status:
                    st = live.status or RunStatus()
                    state = st.state
                    if state == "died":
                        result.state = "died"
                        break
                    if not isinstance(state, str) and effective_state(st, p) == "unknown":
                        # status.json unreadable (torn by a foreign writer) and no training
                        # process of the run alive: nothing more will come
                        result.state = "unknown"
                        break
                    if state in TERMINAL:
                        terminal_since = terminal_since or time.monotonic()
                        if not _alive(st.pid, proc) or time.monotonic() - terminal_since > 10:
                            result.state = state
                            break
                else:
                    sig = _size(watched)
                    if sig != last_sig:
                        last_sig, last_growth = sig, time.monotonic()
                    if not options.follow:
                        result.state = "read"
                        break
                    if live.run.facts.finished:
                        result.state = "ended"
                        break
                    if options.idle_timeout > 0 and time.monotonic() - last_growth >= options.idle_timeout:
                        result.state = "idle"
                        break
                time.sleep(options.poll_s)
            up = live.poll(force=True)
            for f in up.new:
                view.finding(f, escalated=f.code in {g.code for g in result.fired})
                result.fired = [g for g in result.fired if g.code != f.code] + [f]
            view.refresh(live)
    except KeyboardInterrupt:
        result.interrupted = True
        choice = on_interrupt() if on_interrupt is not None else "detach"
        if choice == "stop" and has_status:
            from tuneterm.runs.control import stop_run
            from tuneterm.runs.layout import RunDir

            result.action = "stopped"
            result.state = stop_run(RunDir(p), grace_s=options.grace_s, proc=proc)
        else:
            result.action = "detached"
        try:
            live.poll(force=True)
        except Exception:  # noqa: BLE001, S110 - best effort on the way out
            pass
    if has_status and live.findings is not None and (live.run.has_metrics() or live.run.events):
        write_findings(live)
    result.findings = list(live.findings)
    result.had_input = live.run.has_metrics() or bool(live.run.events)
    if notifier is not None:
        _notify_end(notifier, notify_dir, p, result, live)
    return result


def _notify_end(notifier: Notifier, run_dir: Path | None, p: Path, result: WatchResult, live: LiveEvaluator) -> None:
    """Send the end of the watched run (finished, failed, stopped, died; a log that ended), then
    let the queue drain for a few seconds."""
    from tuneterm.report.notify import end_message, notify_findings

    errors = [f for f in result.fired if f.severity is Severity.ERROR]
    notify_findings(notifier, run_dir, p.name, errors, live.run)
    state = "finished" if result.state == "ended" else result.state
    if state in (*TERMINAL, "died") and not result.interrupted:
        error = live.status.error if live.status is not None else None
        notifier.post(end_message(p.name, run_dir, state, error, result.findings, live.run, notifier.advise))
    notifier.close()


def ask_stop() -> str:
    """Ask on the terminal whether to stop the run (``"stop"``) or leave it running (``"detach"``).
    No terminal, EOF or a second Ctrl-C mean detach."""
    if not sys.stdin or not sys.stdin.isatty():
        return "detach"
    try:
        answer = input("\nStop the training run? [y/N] ")
    except (KeyboardInterrupt, EOFError):
        return "detach"
    return "stop" if answer.strip().lower() in {"y", "yes"} else "detach"


def make_view(headless: bool, title: str, heartbeat_s: float = 0.0) -> PlainView:
    """The Rich Live view on a terminal (unless ``headless``), else plain lines with a heartbeat
    line every ``heartbeat_s`` seconds (0: none)."""
    if not headless and sys.stdout.isatty() and os.environ.get("TERM") != "dumb":
        from tuneterm.watch.view import LiveView

        return LiveView(title)
    return PlainView(heartbeat_s=heartbeat_s, title=title)


def watch_launched(
    launched: Any, *, stop_on: str, grace_s: float = 30.0, headless: bool = False, notify: tuple[str, ...] = ()
) -> int:
    """The live view of ``tuneterm train`` (its default mode), with its exit-code contract:
    0 when the run finished clean or the user detached, 1 on an error finding or a failed run,
    130 when the user chose to stop the run."""
    from tuneterm.engine import load_rules

    rd, proc = launched.run, launched.proc
    rules = load_rules(scopes=["log", "eval"])
    view = make_view(headless, rd.name)
    result = watch(rd.path, rules, options=WatchOptions(stop_on=stop_on, grace_s=grace_s, notify=notify), view=view, proc=proc, on_interrupt=ask_stop)
    if result.interrupted:
        if result.action == "stopped":
            view.status(f"run {rd.name} {result.state}")
            return int(ExitCode.INTERRUPTED)
        view.status(f"run {rd.name} keeps running in the background: tuneterm watch {rd.path}  /  tuneterm stop {rd.path}")
        return int(ExitCode.OK)
    view.status(f"run {rd.name} {result.state} ({rd.path})")
    return exit_code_for(result) if exit_code_for(result) != int(ExitCode.NO_METRICS) else int(ExitCode.FINDINGS)
