"""GPUs: live per-GPU memory, utilisation, temperature and processes (NVML, polled in a worker)."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from tuneterm.tui.messages import GpuSampled
from tuneterm.tui.screens.base import MainScreen, NavBar, post_gpu_samples

HISTORY = 60


class GpusScreen(MainScreen):
    """Per-GPU panels, refreshed every ``app.gpu_interval`` seconds; a clear panel with no GPU."""

    TITLE_NAME = "GPUs"
    MODE = "gpus"
    BINDINGS = [Binding("u", "refresh", "Refresh now")]

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[int, list[tuple[float, float]]] = {}
        self.profile = None

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE)
        with VerticalScroll(id="gpus-body"):
            yield Static(Text("reading NVML ...", style="dim"), id="gpus")
        yield Footer()

    def on_mount(self) -> None:
        self.poll_gpus()

    def action_refresh(self) -> None:
        self.poll_gpus()

    @work(thread=True, exclusive=True, exit_on_error=False, group="nvml", description="Polling NVML for GPU state.")
    def poll_gpus(self) -> None:
        post_gpu_samples(self)

    def on_gpu_sampled(self, message: GpuSampled) -> None:
        from tuneterm.tui.render import gpu_renderables

        prof = message.profile
        self.profile = prof
        for g in prof.gpus:
            hist = self.history.setdefault(g.index, [])
            util = 0.0 if g.utilization_pct is None else g.utilization_pct / 100
            hist.append((g.used_bytes / g.total_bytes if g.total_bytes else 0.0, util))
            del hist[:-HISTORY]
        self.query_one("#gpus", Static).update(Group(*gpu_renderables(prof, self.history)))
