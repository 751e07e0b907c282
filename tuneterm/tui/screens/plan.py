"""Plan: model, method, trainer, sequence length, batch -> memory breakdown, recommendations, config.

The verdict is ``tuneterm plan``'s (:func:`tuneterm.plan.verdict.fit_verdict`: the estimate against
the smallest GPU's total memory); memory other processes hold right now is a note beside it.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Input, Label, Select, Static

from tuneterm.textsafe import inert_line
from tuneterm.kinds import TRAINERS
from tuneterm.tui.messages import PlanReady
from tuneterm.tui.render import PlanForm
from tuneterm.tui.screens.base import MainScreen, NavBar

METHODS = ("lora", "qlora", "dora", "full")  # the form's order: the usual choice first


class PlanScreen(MainScreen):
    """The planner's form and its answer; ``w`` writes the plan as a TRL config."""

    TITLE_NAME = "Plan"
    MODE = "plan"
    BINDINGS = [
        Binding("ctrl+r", "estimate", "Estimate"),
        Binding("w,ctrl+s", "write_config", "Write config"),
        Binding("m", "focus_model", "Model field"),
        Binding("escape", "leave_field", "Leave field"),
        Binding("enter", "estimate", show=False),  # enter estimates wherever the focus is
    ]

    def __init__(self) -> None:
        super().__init__()
        self.plan = None
        self.verdict = None  # tuneterm.plan.verdict.FitVerdict of the plan shown
        self.last_written: str | None = None

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE)
        with Horizontal(classes="form-row"):
            yield Label("model", classes="field-label")
            yield Input(placeholder="path or hub id, e.g. Qwen/Qwen2.5-0.5B", id="model", compact=True)
            yield Label("method", classes="field-label")
            yield Select([(m, m) for m in METHODS], value="lora", allow_blank=False, id="method", compact=True)
            yield Label("trainer", classes="field-label")
            yield Select([(t, t) for t in TRAINERS], value="sft", allow_blank=False, id="trainer", compact=True)
        with Horizontal(classes="form-row"):
            yield Label("seq len", classes="field-label")
            yield Input("1024", id="seq_len", type="integer", compact=True)
            yield Label("batch", classes="field-label")
            yield Input(placeholder="auto", id="batch", type="integer", compact=True)
            yield Label("GPU mem", classes="field-label")
            yield Input(placeholder="detected (or 24GiB)", id="gpu_memory", compact=True)
        with VerticalScroll(id="plan-body"):
            yield Static(Text("Type a model and press enter: the memory breakdown against your GPUs' total memory "
                              "(and what other processes hold right now) and the recommended settings, each with its "
                              "reason, appear here. w writes a TRL config.", style="dim"), id="plan-out")
        yield Footer()

    def on_mount(self) -> None:
        # The model field takes focus only when chosen (m, a click, tab): keys pressed on arrival
        # are the app's keys, never text typed into the field.
        self.query_one("#plan-body").focus()

    def action_leave_field(self) -> None:
        self.query_one("#plan-body").focus()

    def action_focus_model(self) -> None:
        self.query_one("#model", Input).focus()

    def request(self) -> PlanForm:
        return PlanForm(
            model=self.query_one("#model", Input).value,
            method=str(self.query_one("#method", Select).value),
            trainer=str(self.query_one("#trainer", Select).value),
            seq_len=self.query_one("#seq_len", Input).value,
            batch=self.query_one("#batch", Input).value,
            gpu_memory=self.query_one("#gpu_memory", Input).value,
        )

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_estimate()

    def action_estimate(self) -> None:
        self.query_one("#plan-out", Static).update(Text("estimating ...", style="dim"))
        self.estimate(self.request())

    @work(thread=True, exclusive=True, exit_on_error=False, group="plan", description="Estimating memory and recommending settings.")
    def estimate(self, req: PlanForm) -> None:
        from tuneterm.errors import TunetermError
        from tuneterm.plan.gpu import probe
        from tuneterm.tui.render import make_plan, plan_renderables

        try:
            view = make_plan(req, probe())
            self.post_message(PlanReady(view.plan, plan_renderables(view), verdict=view.verdict))
        except TunetermError as exc:
            self.post_message(PlanReady(None, [], inert_line(str(exc), 300)))
        except Exception as exc:  # noqa: BLE001 - a planner bug must show as a line, not kill the app
            self.post_message(PlanReady(None, [], inert_line(f"internal error: {type(exc).__name__}: {exc}", 300)))

    def on_plan_ready(self, message: PlanReady) -> None:
        out = self.query_one("#plan-out", Static)
        if message.error is not None:
            out.update(Text(f"error: {message.error}", style="bold red"))
            return
        self.plan = message.plan
        self.verdict = message.verdict
        out.update(Group(*message.renderables))

    def action_write_config(self) -> None:
        if self.plan is None:
            self.notify("Estimate a plan first (type a model, press enter).", severity="warning", markup=False)
            return
        from tuneterm.tui.screens.modals import PromptScreen

        s = self.plan.setup
        stem = Path(self.plan.model.name).name.lower().replace(" ", "-") or "model"
        default = str(Path.cwd() / f"{stem}-{s.trainer}-{s.method}.yaml")
        self.app.push_screen(PromptScreen("Write the plan as a TRL config to:", default), self._write)

    def _write(self, path: str | None) -> None:
        if path:
            self.write_config(path)

    @work(thread=True, exclusive=True, exit_on_error=False, group="plan-write", description="Writing a TRL config.")
    def write_config(self, path: str) -> None:
        from tuneterm.errors import TunetermError
        from tuneterm.plan.trl_config import write_config

        try:
            written = write_config(Path(path).expanduser(), self.plan)
        except TunetermError as exc:
            self.app.call_from_thread(self.notify, inert_line(str(exc), 300), severity="error", markup=False)
            return
        self.last_written = str(written)
        self.tapp.last_config = str(written)
        self.app.call_from_thread(
            self.notify, f"wrote {inert_line(written, 200)}: start it from Runs (r, then s)", markup=False
        )
