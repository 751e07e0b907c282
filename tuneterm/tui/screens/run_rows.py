"""Screens whose table rows are run directories (Home, Runs): reading them and opening one.

Both screens list the same runs (``tuneterm.runs.info.list_runs``, plus the shipped samples in
demo mode), key each table row by the run's path, and open the selected row in the run view; a
pipeline's row opens its running (else last) stage. This module holds that once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.widgets import DataTable

from tuneterm.tui.screens.base import MainScreen

if TYPE_CHECKING:
    from tuneterm.runs.info import RunInfo
    from tuneterm.tui.app import TunetermApp


class RunRowsScreen(MainScreen):
    """A main screen whose tables' rows are keyed by run directory path.

    Subclasses say which row is selected (:meth:`selected_path`) and what state a listed run is in
    (:meth:`run_state`); ``enter`` or a click on a row opens that run.
    """

    def selected_path(self) -> str | None:
        """The path of the run under the cursor, or None when no row is selected."""
        raise NotImplementedError

    def run_state(self, path: str) -> str | None:
        """The state of the run listed at ``path`` (``sample`` for a shipped sample), or None."""
        raise NotImplementedError

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.open(str(event.row_key.value))

    def action_open_run(self) -> None:
        path = self.selected_path()
        if path is None:
            self.notify("No run selected.", severity="warning", markup=False)
            return
        self.open(path)

    def open(self, path: str) -> None:
        """Show the run at ``path``; a pipeline's row opens its running (else last) stage."""
        from tuneterm.runs.pipeline import PipelineDir, current_stage_dir, is_pipeline_dir
        from tuneterm.tui.screens.run_view import RunScreen

        demo = self.run_state(path) == "sample"
        if is_pipeline_dir(Path(path)):
            stage = current_stage_dir(PipelineDir(Path(path)))
            if stage is None:
                self.notify("The pipeline has not started a stage yet.", severity="warning", markup=False)
                return
            path = str(stage)
        self.app.push_screen(RunScreen(path, demo=demo))


def read_runs(app: TunetermApp, *, evaluate: bool = True) -> tuple[list[RunInfo], str | None]:
    """The runs of the app's runs directory (and, in demo mode, the shipped samples), and the
    error that kept the directory from being listed (one line), else None. Runs in a worker.

    Args:
        app: the app (its runs directory, launched supervisors, demo mode).
        evaluate: run the rules on runs whose findings are missing or stale; False for a quick
            first listing (state, step and loss straight from the files).
    """
    from dataclasses import replace

    from tuneterm.errors import TunetermError
    from tuneterm.runs.info import list_runs, run_info

    for proc in list(app.procs.values()):  # reap supervisors that exited (no zombies that look alive)
        proc.poll()
    infos: list[RunInfo] = []
    error = None
    try:
        infos = list_runs(app.runs_dir, evaluate=evaluate)
    except TunetermError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - shown on screen, never a crash
        error = f"internal error: {type(exc).__name__}: {exc}"
    if app.demo:
        from tuneterm.tui.render import rules, sample_dirs

        for d in sample_dirs():
            try:
                infos.append(replace(run_info(d, rules() if evaluate else None, evaluate=evaluate), state="sample"))
            except TunetermError:
                continue
    return infos, error


def cursor_key(table: DataTable[Any]) -> str | None:
    """The key (run path) of the row under ``table``'s cursor, or None (empty table, stale cursor)."""
    if table.row_count == 0:
        return None
    try:
        key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
    except Exception:  # noqa: BLE001 - a stale cursor after a refresh
        return None
    return None if key.value is None else str(key.value)
