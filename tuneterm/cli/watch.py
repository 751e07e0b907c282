"""``tuneterm watch``, ``tuneterm runs``, ``tuneterm stop``: follow, list and stop runs.

Light at import (Typer only); the watch package, Rich and plotext are imported inside the commands.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tuneterm.cli import app
from tuneterm.exit_codes import ExitCode
from tuneterm.textsafe import inert_line

if TYPE_CHECKING:
    import subprocess

    from tuneterm.engine.rules import RuleSet
    from tuneterm.runs.pipeline import PipelineDir
    from tuneterm.watch.loop import WatchOptions


def _say(line: str) -> None:
    print(f"tuneterm: {inert_line(line, 600)}", file=sys.stderr, flush=True)


def _is_command(args: list[str], runs_dir: str | None) -> bool:
    """Whether ``args`` (what followed ``watch``) is a command to run rather than a RUN/LOGFILE.

    Click drops the ``--`` itself, so: two or more words are a command; one word is a run (a
    name in the runs directory, or an existing path that is not an executable file), else a
    command when it is an executable file or a program on PATH.
    """
    if len(args) > 1:
        return True
    word = args[0]
    from tuneterm.runs.layout import runs_root

    if "/" not in word and (runs_root(runs_dir) / word).is_dir():
        return False
    p = Path(word)
    if p.exists():
        return p.is_file() and os.access(p, os.X_OK) and p.suffix.lower() not in (".log", ".txt", ".jsonl", ".json", ".csv")
    return shutil.which(word) is not None


@app.command("watch")
def watch_cmd(
    target: list[str] = typer.Argument(
        ..., metavar="RUN|LOGFILE | -- COMMAND ...", help="A run name, a run directory or a growing log file; or, after --, a training command to run under tuneterm."
    ),
    headless: bool = typer.Option(False, "--headless", help="Plain lines, no live screen; exit 1 on an error finding, 0 when the run ends clean."),
    stop_on: str = typer.Option("never", "--stop-on", metavar="error|never", help="Stop the run on the first error finding (SIGTERM, then SIGKILL after --grace)."),
    runs_dir: str | None = typer.Option(None, "--runs-dir", help="Where runs live (default $TUNETERM_RUNS_DIR or ./runs)."),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Keep following a log file as it grows (--no-follow: read it once)."),
    idle_timeout: float = typer.Option(60.0, "--idle-timeout", min=0, help="End the watch of a log file that has not grown for this many seconds (0: never)."),
    grace: float = typer.Option(30.0, "--grace", min=0, help="Seconds between SIGTERM and SIGKILL when stopping a run."),
    name: str | None = typer.Option(None, "--name", help="Run name for -- COMMAND (default: <script>-<date>-<time>)."),
    heartbeat: float = typer.Option(30.0, "--heartbeat", min=0, metavar="SECONDS", help="Headless: a line with step, loss, steps/s and ETA every SECONDS (0: none)."),
    notify: list[str] = typer.Option([], "--notify", metavar="URL", help="Apprise URL to notify on an error finding, a stall or the run's end (repeatable; also $TUNETERM_NOTIFY and ~/.config/tuneterm/config.yaml)."),
) -> int:
    """Follow a run or log live, print findings with fixes as they fire; or run COMMAND under tuneterm."""
    import click

    from tuneterm.engine import load_rules
    from tuneterm.runs.info import resolve_target
    from tuneterm.runs.pipeline import PipelineDir, is_pipeline_dir
    from tuneterm.watch.loop import WatchOptions

    if stop_on not in ("error", "never"):
        raise click.BadParameter(f"{stop_on!r} is not one of 'error', 'never'", param_hint="'--stop-on'")
    options = WatchOptions(stop_on=stop_on, follow=follow, idle_timeout=idle_timeout, grace_s=grace, notify=tuple(notify))
    rules = load_rules(scopes=["log", "eval"])
    proc = None
    if _is_command(target, runs_dir):
        from tuneterm.watch.command import start_command

        started = start_command(list(target), runs_dir=runs_dir, name=name)
        path, proc = started.run.path, started.proc
        print(started.run.name, flush=True)
        _say(f"started {' '.join(target)[:200]} as run {started.run.name} in {path} (pid {proc.pid})")
    else:
        if name is not None:
            raise click.BadParameter("--name is only for -- COMMAND", param_hint="'--name'")
        path = resolve_target(target[0], runs_dir)
        if is_pipeline_dir(path):
            return _watch_pipeline(PipelineDir(path), rules, options, headless=headless, heartbeat=heartbeat)
    return _watch_one(path, rules, options, headless=headless, heartbeat=heartbeat, proc=proc)


def _watch_one(
    path: Path,
    rules: RuleSet,
    options: WatchOptions,
    *,
    headless: bool,
    heartbeat: float,
    proc: subprocess.Popen[bytes] | None = None,
    again: Path | None = None,
) -> int:
    """Watch one run directory or log file to its end, print the closing line, return the exit
    code; ``again`` is what a detached user is told to watch again (default ``path``)."""
    from tuneterm.runs.layout import STATUS
    from tuneterm.watch.loop import ask_stop, exit_code_for, make_view, watch

    view = make_view(headless, path.name, heartbeat_s=heartbeat)
    interactive = not headless and sys.stdin is not None and sys.stdin.isatty()
    result = watch(path, rules, options=options, view=view, proc=proc, on_interrupt=ask_stop if interactive else None)
    if result.interrupted:
        if result.action == "stopped":
            _say(f"run {path.name} {result.state}")
        elif (path / STATUS).is_file():
            again = again or path
            _say(f"the run keeps going; follow it again with: tuneterm watch {again}   stop it with: tuneterm stop {again}")
        return exit_code_for(result)
    errors = sum(1 for f in result.fired if f.severity.value == "error")
    warnings = sum(1 for f in result.fired if f.severity.value == "warning")
    _say(f"{path.name}: {result.state}{_reached(path, result.state)}; {errors} error(s), {warnings} warning(s)"
         + (" (stopped on error)" if result.stopped_on_error else ""))
    code = exit_code_for(result)
    if code == ExitCode.NO_METRICS:
        _say(f"no training metrics or errors were read from {path}")
    return code


def _watch_pipeline(pd: PipelineDir, rules: RuleSet, options: WatchOptions, *, headless: bool, heartbeat: float) -> int:
    """Follow a pipeline stage after stage until it ends (docs/commands-watch.md, "A pipeline directory").

    Exit code: 130 on Ctrl-C; 1 when an error finding fired in a followed stage or the pipeline
    ended ``gated``, ``failed`` or ``died``; 3 when no followed stage had anything to read; else 0.
    """
    from tuneterm.errors import InputError
    from tuneterm.runs.pipeline import current_stage_dir
    from tuneterm.watch.pipeline import after_stage, ended_line

    stage = current_stage_dir(pd)
    if stage is None and not options.follow:
        raise InputError(f"pipeline {pd.name} has not started a stage yet; try again in a moment")
    if stage is None:
        # Just launched (`train PIPELINE --detach` prints this very command): the driver is still
        # preparing stage 1; it is waited for like any next stage, rather than refused.
        _say(f"pipeline {pd.name}: waiting for its first stage to start")
    else:
        _say(f"pipeline {pd.name}: watching stage {stage.name} (each stage is its own run)")
    codes: list[int] = []
    while True:
        if stage is not None:
            code = _watch_one(stage, rules, options, headless=headless, heartbeat=heartbeat, again=pd.path)
            if code == ExitCode.INTERRUPTED:
                return code
            codes.append(code)
            if not options.follow:
                return code
            _say(f"pipeline {pd.name}: stage {stage.name} ended; waiting for its gate and the next stage")
        try:
            after = after_stage(pd, stage)
        except KeyboardInterrupt:
            _say(f"the pipeline keeps going; follow it again with: tuneterm watch {pd.path}")
            return int(ExitCode.INTERRUPTED)
        if after.stage is None:
            _say(ended_line(pd, after))
            break
        _say(f"pipeline {pd.name}: stage {after.index}/{after.count} running; watching stage {after.stage.name}")
        stage = after.stage
    if ExitCode.FINDINGS in codes or after.state in ("gated", "failed", "died"):
        return int(ExitCode.FINDINGS)
    # no stage followed, or none had anything to read: nothing to check
    return int(ExitCode.NO_METRICS) if all(c == ExitCode.NO_METRICS for c in codes) else int(ExitCode.OK)


def _reached(path: Path, state: str | None) -> str:
    """`` at step 4628/20000 (23%)`` for a run directory that ended early; else empty."""
    from tuneterm.progress import ENDED_EARLY, step_text
    from tuneterm.runs.status import read_status

    if state not in ENDED_EARLY or not (path / "status.json").is_file():
        return ""
    st = read_status(path)
    step, max_steps = st.get("step"), st.get("max_steps")
    if not isinstance(step, int) or isinstance(step, bool):
        return ""
    return f" at step {step_text(step, max_steps if isinstance(max_steps, int) else None, state)}"


@app.command("runs")
def runs_cmd(
    json_out: bool = typer.Option(False, "--json", help="One JSON array of runs (name, state, step, loss, findings ...)."),
    runs_dir: str | None = typer.Option(None, "--runs-dir", help="Where runs live (default $TUNETERM_RUNS_DIR or ./runs)."),
) -> int:
    """List runs: state (a dead process shows as 'died'), step, last loss, findings, start, duration."""
    import json

    from tuneterm.runs.info import list_runs

    if runs_dir is None and not os.environ.get("TUNETERM_RUNS_DIR") and not Path("runs").is_dir():
        infos = []  # the default ./runs not made yet: nothing has run here (an explicit dir must exist)
    else:
        infos = list_runs(runs_dir)
    if json_out:
        print(json.dumps([i.to_dict() for i in infos], indent=2, allow_nan=False))
        return int(ExitCode.OK)
    from tuneterm.report.doctor import make_console

    console = make_console()
    if not infos:
        _say("no runs yet (start one with: tuneterm train configs/tiny.yaml)")
        return int(ExitCode.OK)
    print_runs_table(console, infos)
    return int(ExitCode.OK)


_RUN_COLUMNS = ("name", "state", "step", "loss", "findings", "started", "duration")
_STATE_STYLES = {"running": "green", "finished": "bold green", "failed": "bold red", "died": "bold red", "stopped": "yellow", "gated": "bold red"}
# States whose recorded error line is shown under the run's row.
ERROR_LINE_STATES = frozenset({"failed", "died", "stopped", "gated"})


def _run_cells(i: Any) -> list[Any]:
    """The table cells of one run (``RunInfo``), every text inert and a ``rich.text.Text``."""
    from rich.text import Text

    from tuneterm.runs.info import fmt_duration

    from tuneterm.progress import step_text

    step = step_text(i.step, i.max_steps, i.state)
    loss = "-" if i.last_loss is None else f"{i.last_loss:.4g}"
    if i.errors is None:
        found = Text("-")
    else:
        found = Text(f"{i.errors}E {i.warnings}W", style="bold red" if i.errors else ("yellow" if i.warnings else "green"))
    started = (i.started or "-")[:16].replace("T", " ")
    return [
        Text(inert_line(i.name, 100)),
        Text(inert_line(i.state, 20), style=_STATE_STYLES.get(i.state, "")),
        Text(step),
        Text(loss),
        found,
        Text(started),
        Text(fmt_duration(i.duration_s)),
    ]


def error_line(i: Any) -> str | None:
    """The line shown under a failed/died/stopped run's row: its recorded error, inert, or None."""
    if i.state not in ERROR_LINE_STATES or not i.error:
        return None
    return inert_line(i.error, 300)


# Columns given up, in this order, when the terminal is too narrow for every column and the
# whole run name: the name is what people paste into `watch` and `stop`, so it never wraps.
_DROP_ORDER = ("started", "duration", "findings", "loss")


def fit_columns(names: tuple[str, ...], widths: list[int], total: int) -> list[int]:
    """Indices of the columns shown in ``total`` cells: all of them when they fit (two cells
    between columns), else without the columns of :data:`_DROP_ORDER`, one by one, until they do.

    >>> fit_columns(("name", "state", "started"), [20, 8, 16], 80)
    [0, 1, 2]
    >>> fit_columns(("name", "state", "started"), [60, 8, 16], 80)
    [0, 1]
    """
    keep = list(range(len(names)))

    def used() -> int:
        return sum(widths[k] for k in keep) + 2 * (len(keep) - 1)

    for col in _DROP_ORDER:
        if used() <= total:
            break
        if col in names:
            keep.remove(names.index(col))
    return keep


def shrink_to(widths: list[int], keep: list[int], total: int, floor: int = 4) -> list[int]:
    """``widths`` with the shown columns other than the first (the name) narrowed, widest first,
    down to ``floor`` cells each, until the row fits in ``total`` cells; the name keeps its width.

    >>> shrink_to([30, 8, 16], [0, 1, 2], 50)
    [30, 8, 8]
    """
    out = list(widths)
    while sum(out[k] for k in keep) + 2 * (len(keep) - 1) > total:
        k = max((k for k in keep[1:] if out[k] > floor), key=lambda k: out[k], default=None)
        if k is None:
            break
        out[k] -= 1
    return out


def print_runs_table(console: Any, infos: list[Any]) -> None:
    """Print the ``tuneterm runs`` table; under the row of a failed/died/stopped run with a
    recorded error, that error on one dimmed line, cut to the console width with an ellipsis.

    Rich tables have no cells spanning columns, so every run is its own table with the same fixed
    column widths (computed here from all the rows), and the error line is printed between them.
    No cell wraps: a run name is always shown whole on one line (it is what people paste into
    ``watch`` and ``stop``); when the terminal is too narrow, the least needed columns are left
    out (:func:`fit_columns`) and what still does not fit is cut with an ellipsis.
    """
    from rich.table import Table
    from rich.text import Text

    rows = [_run_cells(i) for i in infos]
    widths = [max([len(c)] + [r[k].cell_len for r in rows]) for k, c in enumerate(_RUN_COLUMNS)]
    keep = fit_columns(_RUN_COLUMNS, widths, console.width)
    widths = shrink_to(widths, keep, console.width)
    total = sum(widths[k] for k in keep) + 2 * (len(keep) - 1)

    def table(header: bool) -> Table:
        t = Table(box=None, pad_edge=False, header_style="bold", show_header=header, width=total)
        for k in keep:
            col = _RUN_COLUMNS[k]
            t.add_column(
                col,
                justify="right" if col in ("step", "loss", "duration") else "left",
                no_wrap=True,
                overflow="ellipsis",
                width=widths[k],
            )
        return t

    for n, (info, cells) in enumerate(zip(infos, rows)):
        t = table(header=n == 0)
        t.add_row(*(cells[k] for k in keep))
        # A name longer than the terminal is still printed whole (the terminal wraps the line).
        console.print(t, crop=False, width=max(console.width, total))
        for line in (error_line(info), inert_line(info.note, 300) if info.note else None):
            if line is not None:
                console.print(Text(f"  {line}", style="dim"), no_wrap=True, overflow="ellipsis", crop=True)


@app.command("stop")
def stop_cmd(
    run: str = typer.Argument(..., metavar="RUN", help="A run name in the runs directory, or a run directory."),
    force: bool = typer.Option(False, "--force", help="SIGKILL every process of the run at once (no graceful stop)."),
    grace: float = typer.Option(30.0, "--grace", min=0, help="Seconds to wait after SIGTERM before SIGKILL."),
    runs_dir: str | None = typer.Option(None, "--runs-dir", help="Where runs live (default $TUNETERM_RUNS_DIR or ./runs)."),
) -> int:
    """Stop a run: SIGTERM so the trainer can stop at a step end, then SIGKILL after --grace."""
    from tuneterm.errors import InputError
    from tuneterm.runs.info import resolve_target
    from tuneterm.runs.layout import STATUS, TERMINAL_STATES, RunDir, is_run_dir
    from tuneterm.runs.status import effective_state, parse_status, read_status, supervisor_lost
    from tuneterm.runs.workers import alive_workers
    from tuneterm.runs.control import run_processes, stop_run

    try:
        path = resolve_target(run, runs_dir)
    except InputError:
        raise InputError(f"no such run: {run}") from None
    from tuneterm.runs.pipeline import PipelineDir, is_pipeline_dir
    from tuneterm.runs.pipeline import effective_state as pipeline_state

    if is_pipeline_dir(path):  # a pipeline: stop its running stage, and the driver
        pd = PipelineDir(path)
        pstate = pipeline_state(pd.read())
        if pstate not in ("starting", "running", "died"):  # died: the driver is gone, a stage may not be
            _say(f"pipeline {path.name} already {pstate}")
            return int(ExitCode.OK)
        from tuneterm.train.pipeline import stop_pipeline

        _say(f"stopping pipeline {path.name} (driver pid {pd.read().get('pid')}) ...")
        _say(f"pipeline {path.name} {stop_pipeline(pd, grace_s=0.0 if force else grace)}")
        return int(ExitCode.OK)
    if not is_run_dir(path) or not (path / STATUS).is_file():
        raise InputError(f"no such run: {run} (not a tuneterm run directory)")
    raw = read_status(path)  # {} when torn or unreadable: the processes decide then
    status = parse_status(raw)
    state = effective_state(status, path)
    if state.endswith("?"):
        raise InputError(f"run {path.name} runs on host {status.host}; stop it there")
    rd = RunDir(path)
    if state in TERMINAL_STATES:
        _say(f"run {path.name} already {state}")
        return int(ExitCode.OK)
    if state in ("died", "unknown") and not run_processes(rd, raw):
        what = "its processes are" if state == "died" else "no process of it is"
        _say(f"run {path.name}: {what} already gone (pid {status.pid}); see: tuneterm doctor {path}")
        return int(ExitCode.OK)
    who = f"pid {status.pid}"
    if supervisor_lost(status, path):
        pids = ", ".join(str(w.pid) for w in alive_workers(path))
        who = f"supervisor gone; training process pid {pids}"
    _say(f"stopping run {path.name} ({who}){' with SIGKILL' if force else ''} ...")
    final = stop_run(rd, grace_s=0.0 if force else grace)
    at = read_status(path).get("step")
    _say(f"run {path.name} {final}" + (f" at step {at}" if isinstance(at, int) and not isinstance(at, bool) else ""))
    return int(ExitCode.OK)
