"""The live view of one run: charts, findings (open one to read its rule), log tail, samples; stop.

A worker follows the run with :class:`tuneterm.runs.live.LiveEvaluator` (the same incremental
evaluation as ``tuneterm watch``) and posts an immutable :class:`~tuneterm.tui.render.RunSnapshot`
whenever something changed; the handlers swap it in. Nothing here reads a file on the UI thread.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from tuneterm.runs.layout import GPU, SAMPLES, STDERR, STDOUT
from tuneterm.textsafe import inert_line
from tuneterm.tui.messages import RunSnapshotReady, RunStopped
from tuneterm.tui.render import RunSnapshot
from tuneterm.tui.screens.base import MainScreen, NavBar, nap

SEV_STYLE = {"error": "bold red", "warning": "bold yellow", "info": "cyan"}


class RunScreen(MainScreen):
    """One run, live. Pushed over the Runs screen; ``esc`` goes back (the run keeps running)."""

    TITLE_NAME = "Run"
    MODE = "runs"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        # The tab keys are on the tab labels ("c Charts" ...), not in the footer: at 80 columns
        # the footer keeps room for back, stop, doctor, help and quit.
        Binding("c", "tab('charts')", "Charts", show=False),
        Binding("f", "tab('findings')", "Findings", show=False),
        Binding("l", "tab('log')", "Log", show=False),
        Binding("a", "tab('samples')", "Samples", show=False),
        Binding("x", "stop", "Stop run"),
        Binding("o", "doctor", "Doctor report"),
    ]

    def __init__(self, path: str, *, demo: bool = False) -> None:
        super().__init__()
        self.path = path
        self.demo = demo
        self.snap: RunSnapshot | None = None
        self.chart_width = 76
        self._findings_sig: tuple[Any, ...] | None = None
        self.log_follows = True  # the Log tab shows the end of the log until the user scrolls up

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE, f"run {inert_line(Path(self.path).name, 50)} · esc back")
        yield Static(Text(f"{inert_line(Path(self.path).name, 60)} · reading ...", style="bold"), id="run-head")
        with TabbedContent(id="run-tabs", initial="charts"):
            with TabPane("c Charts", id="charts"):
                with VerticalScroll(id="charts-scroll"):
                    yield Static(Text("reading metrics ...", style="dim"), id="charts-body")
            with TabPane("f Findings", id="findings"):
                table: DataTable[Any] = DataTable(id="findings-table", cursor_type="row")
                table.add_columns("", "code", "name", "steps")
                yield table
                with VerticalScroll(id="finding-scroll"):
                    yield Static(Text("no findings yet", style="dim"), id="finding-detail")
            with TabPane("l Log", id="log"):
                with VerticalScroll(id="log-scroll"):
                    yield Static(Text("", style="dim"), id="log-body")
            with TabPane("a Samples", id="samples"):
                with VerticalScroll(id="samples-scroll"):
                    yield Static(Text("", style="dim"), id="samples-body")
        yield Footer()

    def on_mount(self) -> None:
        self.chart_width = max(40, self.app.size.width - 4)
        self.follow()

    def on_resize(self) -> None:
        self.chart_width = max(40, self.size.width - 4)

    # ----------------------------------------------------------------------------- worker
    @work(thread=True, exclusive=True, exit_on_error=False, group="follow", description="Following a run and evaluating its rules.")
    def follow(self) -> None:
        from tuneterm.errors import TunetermError
        from tuneterm.tui.render import rules, snapshot
        from tuneterm.runs.live import LiveEvaluator

        worker = get_current_worker()
        try:
            ev = LiveEvaluator(self.path, rules(), min_interval=0.5)
        except TunetermError as exc:
            self.post_message(RunSnapshotReady(None, inert_line(str(exc), 300)))
            return
        last_sig: tuple[Any, ...] | None = None
        while not worker.is_cancelled:
            try:
                up = ev.poll()
                sig = (up.points, up.evaluated, replace(ev.status, progress=None) if ev.status is not None else (),
                       self.chart_width, _sizes(Path(self.path)))
                if last_sig is None or up.points or up.evaluated or sig[2:] != last_sig[2:]:
                    self.post_message(RunSnapshotReady(snapshot(ev, self.chart_width, demo=self.demo)))
                last_sig = sig
            except TunetermError as exc:
                self.post_message(RunSnapshotReady(None, inert_line(str(exc), 300)))
            except Exception as exc:  # noqa: BLE001 - keep following; show the problem
                self.post_message(RunSnapshotReady(None, inert_line(f"internal error: {type(exc).__name__}: {exc}", 300)))
            if not nap(worker, self.tapp.run_interval):
                return

    def on_run_snapshot_ready(self, message: RunSnapshotReady) -> None:
        head = self.query_one("#run-head", Static)
        if message.snapshot is None:
            head.update(Text(f"{inert_line(Path(self.path).name, 60)}: {message.error}", style="bold red"))
            return
        snap = self.snap = message.snapshot
        t = Text()
        t.append(snap.name, style="bold")
        t.append(f"  {snap.headline}")
        counts = {s: sum(1 for f in snap.findings if f.severity.value == s) for s in ("error", "warning", "info")}
        t.append("  ·  ")
        t.append(f"{counts['error']} errors", style="bold red" if counts["error"] else "dim")
        t.append(", ")
        t.append(f"{counts['warning']} warnings", style="yellow" if counts["warning"] else "dim")
        if snap.stoppable:
            t.append("  · x stops it", style="dim")
        head.update(t)
        self._charts(snap)
        self._findings(snap)
        self._log(snap)
        self._samples(snap)

    def _charts(self, snap: RunSnapshot) -> None:
        body = self.query_one("#charts-body", Static)
        if not snap.charts:
            body.update(Text("no metrics yet: charts appear with the first logged step", style="dim"))
            return
        parts: list[Any] = []
        for c in snap.charts:
            parts += [c.title, c.body, Text("")]
        for n in snap.notes:
            parts.append(Text(f"note: {n}", style="dim"))
        body.update(Group(*parts))

    def _findings(self, snap: RunSnapshot) -> None:
        sig = tuple((f.code, f.severity.value, f.first_step, f.last_step, f.message) for f in snap.findings)
        if sig == self._findings_sig:
            return
        self._findings_sig = sig
        table = self.query_one("#findings-table", DataTable)
        row = table.cursor_row
        table.clear()
        for f in snap.findings:
            steps = "" if f.first_step is None else (str(f.first_step) if f.last_step in (None, f.first_step) else f"{f.first_step}-{f.last_step}")
            table.add_row(Text(f.severity.value, style=SEV_STYLE[f.severity.value]), inert_line(f.code, 10),
                          inert_line(f.name, 40), steps, key=f.code)
        if snap.findings:
            table.move_cursor(row=min(row, len(snap.findings) - 1))
            self._detail(min(row, len(snap.findings) - 1))
        else:
            self.query_one("#finding-detail", Static).update(Text("No findings: every rule passed so far.", style="green"))

    def _detail(self, index: int) -> None:
        from tuneterm.tui.render import finding_detail

        if self.snap is None or not (0 <= index < len(self.snap.findings)):
            return
        self.query_one("#finding-detail", Static).update(finding_detail(self.snap.findings[index]))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "findings-table":
            self._detail(event.cursor_row)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "findings-table" and event.row_key.value is not None:
            self.open_rule(str(event.row_key.value))

    def open_rule(self, code: str) -> None:
        from tuneterm.tui.render import rule_text
        from tuneterm.tui.screens.modals import RuleScreen

        self.app.push_screen(RuleScreen(code, lambda width: rule_text(code, width)))

    def _log(self, snap: RunSnapshot) -> None:
        scroll = self.query_one("#log-scroll", VerticalScroll)
        # The log follows its end (tail -f) until the user scrolls up in the visible Log tab;
        # scrolling back to the end resumes following. A hidden tab never stops following.
        if self.query_one(TabbedContent).active == "log" and scroll.size.height > 0:
            self.log_follows = scroll.scroll_y >= scroll.max_scroll_y - 1
        t = Text()
        if not snap.log:
            t.append("No log files: this is not a tuneterm run directory (the Doctor screen reads any log).", style="dim")
        for name, lines in snap.log:
            t.append(f"── {name} (last {len(lines)} lines)\n", style="bold")
            for line in lines:
                t.append(line + "\n", style="red" if "Error" in line or "Traceback" in line else "")
        self.query_one("#log-body", Static).update(t)
        if self.log_follows:
            scroll.call_after_refresh(scroll.scroll_end, animate=False)

    def _samples(self, snap: RunSnapshot) -> None:
        t = Text()
        if not snap.samples:
            t.append("No sample generations yet (a tuneterm run writes samples.jsonl a few times per run).", style="dim")
        for step, prompt, completion, note in snap.samples:
            t.append(f"step {step}", style="bold")
            if note:
                t.append(f"  ({note})", style="dim")
            t.append("\n  prompt      ", style="dim")
            t.append(prompt.replace("\n", "\n              "))
            t.append("\n  completion  ", style="dim")
            t.append(completion.replace("\n", "\n              ") or "(empty)", style="green")
            t.append("\n\n")
        self.query_one("#samples-body", Static).update(t)

    # ----------------------------------------------------------------------------- actions
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        # Move focus into the new pane first: a focused widget in a pane being hidden would pass
        # focus to its neighbour, and TabbedContent follows focus back to the old pane.
        target = {"charts": "#charts-scroll", "findings": "#findings-table", "log": "#log-scroll",
                  "samples": "#samples-scroll"}[tab]
        self.set_focus(None)
        self.query_one(TabbedContent).active = tab
        self.call_after_refresh(self.query_one(target).focus)
        if tab == "log" and self.log_follows:
            scroll = self.query_one("#log-scroll", VerticalScroll)
            self.call_after_refresh(lambda: scroll.scroll_end(animate=False))

    def action_stop(self) -> None:
        from tuneterm.tui.screens.runs import confirm_stop

        if self.snap is None or not self.snap.stoppable:
            state = self.snap.state if self.snap else "unknown"
            self.notify(f"this run is {state}: nothing to stop", severity="warning", markup=False)
            return
        confirm_stop(self, self.path, self.snap.name)

    def on_run_stopped(self, message: RunStopped) -> None:
        self.notify(f"run {message.name} {message.state}", markup=False)

    def action_doctor(self) -> None:
        self.tapp.open_doctor(self.path)


def _sizes(path: Path) -> tuple[int, ...]:
    out = []
    for name in (STDOUT, STDERR, GPU, SAMPLES):
        try:
            out.append((path / name).stat().st_size)
        except OSError:
            out.append(-1)
    return tuple(out)
