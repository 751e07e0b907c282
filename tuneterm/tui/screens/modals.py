"""Modal screens: help, a rule explained, a yes/no question, a one-line prompt, pre-flight findings."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

if TYPE_CHECKING:
    from textual.screen import Screen

    from tuneterm.train.preflight import PreflightResult


def _keys(key: str) -> str:
    return ", ".join({"question_mark": "?", "escape": "esc", "enter": "enter"}.get(k, k) for k in key.split(","))


SCREEN_HELP = {
    "GPUs": "Live memory, utilisation, temperature and processes of every GPU (NVML), refreshed every 2 s.",
    "Plan": "Type a model (local path or hub id), method, trainer, sequence length and batch; enter runs the "
            "memory estimate against the GPUs' total memory (the verdict of tuneterm plan; a note says what other "
            "processes hold now) and the recommendations; w writes a TRL config.",
    "Runs": "Runs in the runs directory with state, step, loss and findings. enter opens the live view, s starts "
            "a run from a config (after tuneterm train's pre-flight check: errors ask before starting), x stops "
            "one. Quitting tuneterm never stops a run.",
    "Run": "The live view of one run: charts, findings (enter reads the rule), the log tail, the latest samples.",
    "Doctor": "Type a log file or directory and press enter: the same report as `tuneterm doctor`.",
}


class HelpScreen(ModalScreen[None]):
    """Every key binding of the app and of the screen it was opened from, generated from BINDINGS."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def __init__(self, under: Screen | None = None) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        t = Text()
        t.append("tuneterm: GPUs, plans, runs and diagnoses in one terminal\n\n", style="bold")
        title = getattr(self.under, "TITLE_NAME", None)
        if title:
            t.append(f"{title}\n", style="bold underline")
            t.append(SCREEN_HELP.get(title, "") + "\n")
            for b in getattr(self.under, "BINDINGS", []):
                if isinstance(b, Binding) and b.description:
                    t.append(f"  {_keys(b.key):<14}", style="bold")
                    t.append(b.description + "\n")
            t.append("\n")
        t.append("Everywhere\n", style="bold underline")
        from tuneterm.tui.app import TunetermApp

        for b in TunetermApp.BINDINGS:
            if isinstance(b, Binding) and b.description:
                t.append(f"  {_keys(b.key):<14}", style="bold")
                t.append(b.description + "\n")
        t.append(f"  {'ctrl+p':<14}", style="bold")
        t.append("command palette: every action by name\n")
        t.append("\nKeyboard first: tab moves focus, esc leaves a text field so the letter keys work again.", style="dim")
        self.text = t
        with Vertical(id="modal"):
            yield Label("Help  (esc closes)", classes="modal-title")
            with VerticalScroll():
                yield Static(t)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


class RuleScreen(ModalScreen[None]):
    """``tuneterm rule CODE`` in a scrollable modal, rendered at the modal's own width."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, code: str, render: Callable[[int], Text]) -> None:
        super().__init__()
        self.code = code
        self.render_at = render

    def compose(self) -> ComposeResult:
        with Vertical(id="modal"):
            yield Label(Text(f"Rule {self.code}  (esc closes)"), classes="modal-title")
            with VerticalScroll(id="rule-body"):
                yield Static(Text("..."), id="rule-text")

    def on_mount(self) -> None:
        self.call_after_refresh(self._draw)

    def on_resize(self) -> None:
        self.call_after_refresh(self._draw)

    def _draw(self) -> None:
        width = max(40, self.query_one("#rule-text", Static).content_size.width)
        self.query_one("#rule-text", Static).update(self.render_at(width))

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; ``y``/``enter`` confirm, ``n``/``esc`` cancel."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="modal", classes="small"):
            yield Static(Text(self.question))
            yield Button("Yes (y)", id="yes", variant="error")
            yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PromptScreen(ModalScreen["str | None"]):
    """Ask for one line of text (a path); enter accepts, esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="modal", classes="small"):
            yield Static(Text(self.question))
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt")
            yield Static(Text("enter accepts · esc cancels", style="dim"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PreflightScreen(ModalScreen[bool]):
    """The pre-flight check refused a config: its findings, then "Start anyway" or "Cancel".

    Dismisses with True to start the run despite the errors, False to leave it unstarted.
    ``esc``/``n`` cancel; ``a`` starts anyway; the Cancel button has the focus, so ``enter`` alone
    never starts a run the check refused.
    """

    BINDINGS = [Binding("escape,n", "answer(False)", "Cancel"), Binding("a", "answer(True)", "Start anyway")]

    def __init__(self, result: PreflightResult) -> None:
        super().__init__()
        self.result = result

    def compose(self) -> ComposeResult:
        from tuneterm.textsafe import inert_line
        from tuneterm.tui.render import preflight_text

        r = self.result
        n_err, n_warn = len(r.errors), len(r.warnings)
        title = f"Pre-flight check: {n_err} error{'s' if n_err != 1 else ''}"
        if n_warn:
            title += f", {n_warn} warning{'s' if n_warn != 1 else ''}"
        # keep the file name: a long path loses its head, not its tail
        from tuneterm.report.result import display_path

        src = inert_line(display_path(r.source), 1000)
        title += f" in {src if len(src) <= 60 else '…' + src[-59:]}"
        with Vertical(id="modal", classes="preflight"):
            yield Label(Text(title), classes="modal-title")
            yield Static(Text("The run was not started. Fix the config (tuneterm check CONFIG explains each rule), "
                              "or start it anyway.", style="dim"))
            with VerticalScroll(id="preflight-body"):
                yield Static(preflight_text(r), id="preflight-text")
            with Horizontal(id="preflight-buttons"):
                yield Button("Start anyway (a)", id="start-anyway", variant="error")
                yield Button("Cancel (esc)", id="cancel", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "start-anyway")

    def action_answer(self, start: bool) -> None:
        self.dismiss(start)
