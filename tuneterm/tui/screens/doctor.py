"""Doctor: open any log file or directory and read the same report as ``tuneterm doctor``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Input, Label, Static

from tuneterm.textsafe import inert_line
from tuneterm.tui.messages import DoctorReady
from tuneterm.tui.screens.base import MainScreen, NavBar

if TYPE_CHECKING:
    from tuneterm.report.result import CheckResult


class DoctorScreen(MainScreen):
    """A path field and the doctor report (rendered in a worker at the screen's width)."""

    TITLE_NAME = "Doctor"
    MODE = "doctor"
    BINDINGS = [
        Binding("o", "focus_path", "Open a path"),
        Binding("v", "verbose", "Verbose"),
        Binding("u", "reload", "Reload"),
        Binding("escape", "leave_field", "Leave field"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.verbose = False
        self.result: CheckResult | None = None
        self.path = ""
        self.report: Text | None = None

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE)
        with Horizontal(classes="form-row"):
            yield Label("log", classes="field-label")
            yield Input(placeholder="o: a log file or run/checkpoint directory, then enter", id="doctor-path", compact=True)
        with VerticalScroll(id="doctor-scroll"):
            yield Static(Text("Press o and type the path of a training log (trainer_state.json, a console log, metrics.jsonl, a "
                              "run or checkpoint directory ...) and press enter.", style="dim"), id="doctor-body")
        yield Footer()

    def on_mount(self) -> None:
        # The path field takes focus only when chosen (o, a click, tab): keys pressed on arrival
        # are the app's keys (p, r, q ...), never text typed into the field.
        self.query_one("#doctor-scroll").focus()

    def action_focus_path(self) -> None:
        self.query_one("#doctor-path", Input).focus()

    def open_path(self, path: str) -> None:
        """Fill the field with ``path`` and diagnose it (used by the run view and ``--demo``)."""
        self.query_one("#doctor-path", Input).value = path
        self.query_one("#doctor-scroll").focus()
        self.diagnose(path)

    def action_leave_field(self) -> None:
        self.query_one("#doctor-scroll").focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.diagnose(event.value)
            self.query_one("#doctor-scroll").focus()

    def diagnose(self, path: str) -> None:
        from tuneterm.runs.info import run_or_path

        path = run_or_path(path.strip(), self.tapp.runs_dir)  # a run name works as in `tuneterm doctor`
        self.path = path
        self.result = None
        self.query_one("#doctor-body", Static).update(Text(f"diagnosing {inert_line(path, 200)} ...", style="dim"))
        self.render_report(path, self._width(), self.verbose, None)

    def _width(self) -> int:
        # the report is drawn for the text area: screen minus padding and the scrollbar
        width = self.query_one("#doctor-body", Static).content_size.width
        return max(40, width if width > 0 else self.app.size.width - 4)

    def action_verbose(self) -> None:
        self.verbose = not self.verbose
        if self.result is not None:
            self.render_report(self.path, self._width(), self.verbose, self.result)
        self.notify(f"verbose {'on' if self.verbose else 'off'}", markup=False)

    def action_reload(self) -> None:
        if self.path:
            self.diagnose(self.path)

    def on_resize(self) -> None:
        if self.result is not None:
            self.render_report(self.path, self._width(), self.verbose, self.result)

    @work(thread=True, exclusive=True, exit_on_error=False, group="doctor", description="Diagnosing a training log.")
    def render_report(self, path: str, width: int, verbose: bool, result: CheckResult | None) -> None:
        from tuneterm.errors import TunetermError
        from tuneterm.tui.render import check_path, doctor_text

        try:
            if result is None:
                result = check_path(path)
                self.result = result
            self.post_message(DoctorReady(path, doctor_text([result], width, verbose=verbose)))
        except TunetermError as exc:
            self.post_message(DoctorReady(path, None, inert_line(str(exc), 300)))
        except Exception as exc:  # noqa: BLE001 - a bug shows as a line, the app stays up
            self.post_message(DoctorReady(path, None, inert_line(f"internal error: {type(exc).__name__}: {exc}", 300)))

    def on_doctor_ready(self, message: DoctorReady) -> None:
        body = self.query_one("#doctor-body", Static)
        if message.report is None:
            body.update(Text(f"error: {message.error}", style="bold red"))
        else:
            self.report = message.report
            body.update(message.report)
