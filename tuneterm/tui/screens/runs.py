"""Runs: every run in the runs directory (state, step, loss, findings); start, open, stop and
compare runs (``m`` marks a run; marking a second one opens the two side by side).

Starting a run goes through the same pre-flight check as ``tuneterm train``
(:func:`tuneterm.train.preflight.preflight`): error findings open a modal with "Start anyway" /
"Cancel" (the TUI's ``--force``); warnings are shown in a notification and do not block.

Runs are separate processes (``tuneterm.train.launch`` starts them in their own session), so this
screen only reads their directories: quitting the app leaves them running, and reopening it lists
them again from what they wrote.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static
from textual.worker import get_current_worker

from tuneterm.progress import step_text
from tuneterm.textsafe import inert_line
from tuneterm.tui.messages import PreflightRefused, RunLaunched, RunsListed, RunStopped
from tuneterm.tui.screens.base import MainScreen, NavBar, nap
from tuneterm.tui.screens.run_rows import RunRowsScreen, cursor_key, read_runs

if TYPE_CHECKING:
    from tuneterm.runs.info import RunInfo

STATE_STYLE = {
    "running": "bold green", "starting": "green", "finished": "cyan", "failed": "bold red", "died": "bold red",
    "stopped": "yellow", "sample": "magenta",
}


def _loss(v: float | None) -> str:
    if v is None:
        return "-"
    return "nan" if math.isnan(v) else f"{v:.4g}"


def _findings(info: RunInfo) -> Text:
    if info.errors is None:
        return Text("-", style="dim")
    t = Text()
    if info.errors:
        t.append(f"{info.errors} error{'s' if info.errors != 1 else ''}", style="bold red")
    if info.warnings:
        t.append(("  " if info.errors else "") + f"{info.warnings} warning{'s' if info.warnings != 1 else ''}", style="yellow")
    if not info.errors and not info.warnings:
        t.append("clean", style="green")
    return t


def preflight_notes(result: Any) -> tuple[str, ...]:
    """The notifications a launch carries for a pre-flight result that does not block it: the
    check could not run, or it found warnings (one line each, inert)."""
    if result.skipped is not None:
        return (inert_line(f"pre-flight check could not run ({result.skipped}); started anyway", 300),)
    if result.findings:
        from tuneterm.tui.render import preflight_summary

        return (preflight_summary(result),)
    return ()


def stop_target(path: str) -> Any:
    """The run directory record for ``path`` (``tuneterm.runs.layout.RunDir``)."""
    from tuneterm.runs.layout import RunDir

    return RunDir(Path(path))


def not_started(exc: Exception) -> RunLaunched:
    """A start that failed, as the message the screen shows: the library's one line for its own
    errors, else the exception's type and text (e.g. the train extra is not installed)."""
    from tuneterm.errors import TunetermError

    text = str(exc) if isinstance(exc, TunetermError) else f"{type(exc).__name__}: {exc}"
    return RunLaunched(None, inert_line(text, 300))


class RunsScreen(RunRowsScreen):
    """The runs table, refreshed every ``app.runs_interval`` seconds in a worker."""

    TITLE_NAME = "Runs"
    MODE = "runs"
    BINDINGS = [
        Binding("enter", "open_run", "Open"),
        Binding("s", "start_run", "Start run"),
        Binding("x", "stop_run", "Stop run"),
        Binding("m", "mark", "Mark to compare"),
        Binding("u", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.infos: dict[str, Any] = {}
        self.listed = False
        self.marked: list[str] = []  # run paths marked with m; the second mark opens the comparison
        self._last: RunsListed | None = None

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE)
        table: DataTable[Any] = DataTable(id="runs-table", cursor_type="row", zebra_stripes=False)
        table.add_columns("run", "state", "step", "loss", "findings", "time")
        yield table
        yield Static(Text("reading runs ...", style="dim"), id="runs-note")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.poll_runs()

    def action_refresh(self) -> None:
        self.poll_runs()

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs", description="Listing run directories.")
    def poll_runs(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled:
            self.post_message(self.list_once())
            if not nap(worker, self.tapp.runs_interval):
                return

    def list_once(self) -> RunsListed:
        """List the runs directory (and, in demo mode, the shipped samples). Runs in a worker."""
        infos, error = read_runs(self.tapp)
        return RunsListed(infos, error)

    def on_runs_listed(self, message: RunsListed) -> None:
        self.listed = True
        self._last = message
        table = self.query_one(DataTable)
        selected = self.selected_path()
        table.clear()
        self.infos = {}
        from tuneterm.runs.info import fmt_duration

        for info in message.infos:
            self.infos[info.path] = info
            step = step_text(info.step, info.max_steps, info.state)
            mark = "● " if info.path in self.marked else ""
            table.add_row(
                Text(mark + inert_line(info.name, 100), style="bold" if mark else ""), Text(info.state, style=STATE_STYLE.get(info.state, "")), step,
                _loss(info.last_loss), _findings(info), fmt_duration(info.duration_s), key=info.path,
            )
        if selected in self.infos:
            table.move_cursor(row=table.get_row_index(selected))
        note = self.query_one("#runs-note", Static)
        from tuneterm.report.result import elide_path

        # The note has three lines: a long runs path gives up leading directories, never the message.
        where = f"runs dir: {elide_path(inert_line(self.tapp.runs_root, 200), max(20, self.size.width - 12))}\n"
        if message.error and not message.infos:
            note.update(Text(where + f"s starts a run from a config (the directory is created). {inert_line(message.error, 200)}", style="yellow"))
        elif not message.infos:
            note.update(Text(where + "No runs yet. s starts one from a config (configs/tiny.yaml trains on CPU in a minute).", style="dim"))
        else:
            live = sum(1 for i in message.infos if i.state in ("running", "starting"))
            note.update(Text(where + f"{len(message.infos)} run(s), {live} live · enter opens · m marks two to compare · s starts · "
                             "x stops · quitting tuneterm never stops a run", style="dim"))

    def selected_path(self) -> str | None:
        return cursor_key(self.query_one(DataTable))

    def run_state(self, path: str) -> str | None:
        info = self.infos.get(path)
        return None if info is None else info.state

    # ----------------------------------------------------------------------------- compare
    def action_mark(self) -> None:
        """Mark (or unmark) the selected run; with two marked, open them side by side."""
        path = self.selected_path()
        if path is None:
            self.notify("No run selected.", severity="warning", markup=False)
            return
        if path in self.marked:
            self.marked.remove(path)
        else:
            self.marked.append(path)
        if len(self.marked) == 2:
            from tuneterm.tui.screens.compare import CompareScreen

            a, b = self.marked
            self.marked = []
            self.app.push_screen(CompareScreen(a, b))
        elif self.marked:
            self.notify("marked 1 run: mark another with m to compare them", markup=False, timeout=4)
        if self._last is not None:
            self.on_runs_listed(self._last)

    # ----------------------------------------------------------------------------- start
    def action_start_run(self) -> None:
        from tuneterm.tui.screens.modals import PromptScreen

        default = self.tapp.last_config or ""
        if not default and Path("configs/tiny.yaml").is_file():
            default = "configs/tiny.yaml"
        self.app.push_screen(
            PromptScreen(f"Start a training run from a config (runs dir {inert_line(self.tapp.runs_root, 60)}):", default,
                         "path/to/config.yaml"),
            self._start,
        )

    def _start(self, config: str | None) -> None:
        if config:
            self.notify(f"validating {inert_line(config, 100)} and launching ...", markup=False)
            self.start(config)

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch", description="Validating a config and launching a run.")
    def start(self, config: str) -> None:
        """Resolve ``config``, run the pre-flight check, then launch (in a worker thread).

        Errors in the check post :class:`PreflightRefused` (the screen asks the user) instead of
        launching; a check that could not run, or warnings, travel with the launch as notes.
        """
        try:
            from tuneterm.train.config import resolve
            from tuneterm.train.preflight import preflight

            cfg = resolve(Path(config).expanduser())
            result = preflight(cfg, 1)  # the TUI launches one process (launch()'s default gpus=1)
        except Exception as exc:  # noqa: BLE001 - a run that cannot start is a notification, never a crash
            self.post_message(not_started(exc))
            return
        if not result.ok:
            self.post_message(PreflightRefused(cfg, result))
            return
        self._launch(cfg, preflight_notes(result), result.memory_estimate)

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch", description="Launching a run despite pre-flight errors.")
    def start_anyway(self, cfg: Any, memory_estimate: dict[str, Any] | None = None) -> None:
        """Launch an already resolved and checked config (the user chose "Start anyway")."""
        self._launch(cfg, (), memory_estimate)

    def _launch(self, cfg: Any, notes: tuple[str, ...], memory_estimate: dict[str, Any] | None = None) -> None:
        """Start the run's supervisor and post :class:`RunLaunched` (called in a worker thread)."""
        try:
            from tuneterm.train.launch import launch

            launched = launch(cfg, runs_dir=self.tapp.runs_dir, argv=["tuneterm", "ui"], memory_estimate=memory_estimate)
        except Exception as exc:  # noqa: BLE001 - a run that cannot start is a notification, never a crash
            self.post_message(not_started(exc))
            return
        self.tapp.procs[str(launched.run.path)] = launched.proc
        self.post_message(RunLaunched(str(launched.run.path), notes=notes))

    def on_preflight_refused(self, message: PreflightRefused) -> None:
        from tuneterm.tui.screens.modals import PreflightScreen

        cfg, result = message.config, message.result

        def answer(start: bool | None) -> None:
            if start:
                self.notify(f"starting {inert_line(result.source, 100)} despite {len(result.errors)} pre-flight "
                            "error(s) ...", severity="warning", markup=False)
                self.start_anyway(cfg, result.memory_estimate)
            else:
                self.notify(f"not started: {inert_line(result.summary(), 200)}", markup=False)

        self.app.push_screen(PreflightScreen(result), answer)

    def on_run_launched(self, message: RunLaunched) -> None:
        if message.error is not None or message.path is None:
            self.notify(f"could not start: {message.error}", severity="error", markup=False, timeout=10)
            return
        for note in message.notes:
            self.notify(note, severity="warning", markup=False, timeout=15)
        self.notify(f"started {inert_line(Path(message.path).name, 80)}", markup=False)
        self.poll_runs()
        self.open(message.path)

    # ----------------------------------------------------------------------------- stop
    def action_stop_run(self) -> None:
        path = self.selected_path()
        info = self.infos.get(path) if path else None
        if info is None:
            self.notify("No run selected.", severity="warning", markup=False)
            return
        if info.state not in ("running", "starting") or info.pid is None:
            self.notify(f"{inert_line(info.name, 60)} is {info.state}: nothing to stop.", severity="warning", markup=False)
            return
        confirm_stop(self, info.path, info.name)

    def on_run_stopped(self, message: RunStopped) -> None:
        self.notify(f"run {message.name} {message.state}", markup=False)
        self.poll_runs()


def confirm_stop(screen: MainScreen, path: str, name: str) -> None:
    """Ask, then stop the run at ``path`` in a worker (SIGTERM, SIGKILL after the grace period)."""
    from tuneterm.tui.screens.modals import ConfirmScreen

    def answer(yes: bool | None) -> None:
        if yes:
            screen.notify(f"stopping {inert_line(name, 60)} ...", markup=False)
            screen.run_worker(lambda: _stop(screen, path, name), thread=True, exclusive=True, group="stop",
                              exit_on_error=False, description="Stopping a run.")

    screen.app.push_screen(ConfirmScreen(f"Stop run {inert_line(name, 60)}? Training ends at the next step."), answer)


def _stop(screen: MainScreen, path: str, name: str) -> None:
    from tuneterm.runs.control import stop_run
    from tuneterm.runs.pipeline import PipelineDir, is_pipeline_dir

    app = screen.tapp
    if is_pipeline_dir(Path(path)):  # the pipeline's row: its running stage and the driver
        from tuneterm.train.pipeline import stop_pipeline

        state = stop_pipeline(PipelineDir(Path(path)), grace_s=app.stop_grace_s)
        screen.post_message(RunStopped(inert_line(name, 60), state))
        return
    state = stop_run(stop_target(path), grace_s=app.stop_grace_s, proc=app.procs.get(path))
    screen.post_message(RunStopped(inert_line(name, 60), state))
