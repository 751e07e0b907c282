"""Home: the first screen. The GPUs (or the plain no-GPU line with CPU and RAM), the live runs with
step, loss sparkline, speed, ETA and their latest finding, and the recent ended runs with their
verdicts. ``enter`` opens the selected run, ``tab`` moves between the two tables.

Two workers feed it: one polls NVML (``app.gpu_interval``), one lists the runs directory
(``app.runs_interval``). The runs worker first posts a quick listing (no rule evaluation: state,
step and loss straight from the files) so the first frame shows the runs at once, then the full
one with findings.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static
from textual.worker import get_current_worker

from tuneterm.progress import step_text
from tuneterm.textsafe import inert_line
from tuneterm.tui.messages import GpuSampled, HomeListed
from tuneterm.tui.screens.base import NavBar, nap, post_gpu_samples
from tuneterm.tui.screens.run_rows import RunRowsScreen, cursor_key, read_runs

SPARK_WIDTH = 12
LIVE_COLUMNS = ("run", "step", "loss", "speed", "ETA", "latest finding")
RECENT_COLUMNS = ("run", "state", "step", "verdict", "time")


def gpu_lines(profile: Any) -> Text:
    """One line per GPU (memory bar, used/total, utilisation, temperature), or the no-GPU line
    with the host's CPU and RAM."""
    from tuneterm.plan.gpu import GIB

    out = Text()
    ram_t, ram_a = profile.ram_total_bytes, profile.ram_available_bytes
    ram = "RAM n/a" if ram_t is None else f"RAM {0 if ram_a is None else ram_a / GIB:.1f} GiB free of {ram_t / GIB:.1f} GiB"
    if not profile.gpus:
        out.append("No GPU ", style="bold yellow")
        out.append(inert_line(f"({profile.gpu_error or 'none found'}) · CPU {profile.cpu_model or 'unknown'} x {profile.cpu_count or '?'} · {ram}", 200))
        return out
    for n, g in enumerate(profile.gpus):
        if n:
            out.append("\n")
        frac = g.used_bytes / g.total_bytes if g.total_bytes else 0.0
        out.append(f"GPU {g.index} ", style="bold")
        out.append(inert_line(g.name, 28) + "  ")
        filled = round(frac * 10)
        out.append("█" * filled + "░" * (10 - filled), style="cyan")
        out.append(f" {g.used_bytes / GIB:.1f}/{g.total_bytes / GIB:.0f} GiB")
        out.append(f"  util {'n/a' if g.utilization_pct is None else f'{g.utilization_pct}%'}")
        if g.temperature_c is not None:
            out.append(f"  {g.temperature_c} C")
        if g.processes:
            out.append(f"  {len(g.processes)} proc", style="dim")
    return out


def _eta(seconds: float | None) -> str:
    from tuneterm.runs.info import fmt_duration

    return fmt_duration(seconds) if seconds is not None else "-"


def _speed(rate: float | None) -> str:
    if rate is None:
        return "-"
    return f"{rate:.2f}/s" if rate < 10 else f"{rate:.0f}/s"


def _loss_cell(losses: tuple[float, ...]) -> Text:
    from tuneterm.tui.render import sparkline
    from tuneterm.watch.home import loss_fractions

    if not losses:
        return Text("-", style="dim")
    t = Text(sparkline(loss_fractions(losses[-SPARK_WIDTH:]), SPARK_WIDTH).ljust(SPARK_WIDTH), style="cyan")
    t.append(f" {losses[-1]:.3g}")
    return t


def _verdict_style(verdict: str | None) -> str:
    if verdict is None:
        return "dim"
    if verdict == "clean":
        return "green"
    return "bold red" if "error" in verdict else "yellow"


class HomeScreen(RunRowsScreen):
    """The app's first screen (module docstring)."""

    TITLE_NAME = "Home"
    MODE = "home"
    BINDINGS = [
        Binding("enter", "open_run", "Open"),
        Binding("u", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.paths: dict[str, Any] = {}
        self.listed = False
        self.profile: Any = None

    def compose(self) -> ComposeResult:
        from tuneterm.tui.screens.runs import STATE_STYLE

        self._state_style = STATE_STYLE
        yield NavBar(self.MODE)
        yield Static(Text("reading NVML ...", style="dim"), id="home-gpus")
        yield Static(Text("Live runs", style="bold"), classes="home-title")
        live: DataTable[Any] = DataTable(id="home-live", cursor_type="row", zebra_stripes=False)
        live.add_columns(*LIVE_COLUMNS)
        yield live
        yield Static(Text("Recent runs", style="bold"), classes="home-title")
        recent: DataTable[Any] = DataTable(id="home-recent", cursor_type="row", zebra_stripes=False)
        recent.add_columns(*RECENT_COLUMNS)
        yield recent
        yield Static(Text(f"reading runs ...\nruns dir: {inert_line(self.tapp.runs_root, 200)}", style="dim"), id="home-note")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#home-live", DataTable).focus()
        self.poll_gpus()
        self.poll_runs()

    def action_refresh(self) -> None:
        self.poll_gpus()
        self.poll_runs()

    # ----------------------------------------------------------------------------- workers
    @work(thread=True, exclusive=True, exit_on_error=False, group="home-nvml", description="Polling NVML for the home screen.")
    def poll_gpus(self) -> None:
        post_gpu_samples(self)

    @work(thread=True, exclusive=True, exit_on_error=False, group="home-runs", description="Listing runs for the home screen.")
    def poll_runs(self) -> None:
        worker = get_current_worker()
        quick = not self.listed
        while not worker.is_cancelled:
            self.post_message(self.list_once(evaluate=not quick))
            if quick:
                # Let the first frame paint before rule evaluation takes the interpreter.
                quick = False
                if not nap(worker, 0.3):
                    return
                continue
            if not nap(worker, self.tapp.runs_interval):
                return

    def list_once(self, *, evaluate: bool = True) -> HomeListed:
        """The live and recent runs (in a worker thread); ``evaluate=False`` for the first frame."""
        from tuneterm.watch.home import home_runs

        infos, error = read_runs(self.tapp, evaluate=evaluate)
        live, recent = home_runs(infos)
        return HomeListed(live, recent, error)

    # ----------------------------------------------------------------------------- messages
    def on_gpu_sampled(self, message: GpuSampled) -> None:
        self.profile = message.profile
        self.query_one("#home-gpus", Static).update(gpu_lines(message.profile))

    def on_home_listed(self, message: HomeListed) -> None:
        self.listed = True
        self.paths = {}
        live = self.query_one("#home-live", DataTable)
        recent = self.query_one("#home-recent", DataTable)
        keep_live, keep_recent = cursor_key(live), cursor_key(recent)
        # Columns are rebuilt with the rows so they fit the new contents (a cleared DataTable
        # keeps the widths of its first rows).
        live.clear(columns=True)
        live.add_columns(*LIVE_COLUMNS)
        recent.clear(columns=True)
        recent.add_columns(*RECENT_COLUMNS)
        for h in message.live:
            i = h.info
            self.paths[i.path] = h
            live.add_row(
                Text(inert_line(i.name, 100), style=self._state_style.get(i.state, "")), step_text(i.step, i.max_steps, i.state),
                _loss_cell(h.losses), _speed(h.steps_per_s), _eta(h.eta_s),
                Text(h.latest or "-", style=_verdict_style(h.latest) if h.latest else "dim"), key=i.path,
            )
        from tuneterm.runs.info import fmt_duration

        for h in message.recent:
            i = h.info
            self.paths[i.path] = h
            recent.add_row(
                Text(inert_line(i.name, 100)), Text(i.state, style=self._state_style.get(i.state, "")),
                step_text(i.step, i.max_steps, i.state), Text(h.latest or "-", style=_verdict_style(h.latest)),
                fmt_duration(i.duration_s), key=i.path,
            )
        _restore(live, keep_live)
        _restore(recent, keep_recent)
        root = inert_line(self.tapp.runs_root, 200)
        if message.error and not message.error.startswith("no runs directory") and not message.live and not message.recent:
            text = f"{inert_line(message.error, 200)}\nruns dir: {root}"
        elif not message.live and not message.recent:
            text = f"no runs yet · r then s starts one (configs/tiny.yaml trains on CPU)\nruns dir: {root}"
        else:
            text = f"{len(message.live)} live · enter opens · tab switches tables\nruns dir: {root}"
        self.query_one("#home-note", Static).update(Text(text, style="dim", no_wrap=True, overflow="ellipsis"))

    # ----------------------------------------------------------------------------- open
    def selected_path(self) -> str | None:
        focused = self.focused if isinstance(self.focused, DataTable) else self.query_one("#home-live", DataTable)
        for table in (focused, self.query_one("#home-live", DataTable), self.query_one("#home-recent", DataTable)):
            key = cursor_key(table)
            if key is not None:
                return key
        return None

    def run_state(self, path: str) -> str | None:
        h = self.paths.get(path)
        return None if h is None else h.info.state


def _restore(table: DataTable[Any], key: str | None) -> None:
    if key is None:
        return
    try:
        row = table.get_row_index(key)
    except Exception:  # noqa: BLE001 - the run is gone from this table
        return
    table.move_cursor(row=row)
