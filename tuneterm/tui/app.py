"""The Textual app: four screens (GPUs, Plan, Runs, Doctor) as app modes, global keys, the palette.

Keyboard first: ``g``/``p``/``r``/``d`` switch screens, ``?`` opens help, ``q`` quits, ``ctrl+p``
opens the command palette, which lists every action of the current screen (generated from its
bindings, so a key and a palette entry always exist together). Heavy work (NVML, parsing, rule
evaluation, plotext, the planner, launching) happens in thread workers that post messages; the
first frame needs only Textual itself.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from tuneterm.tui.screens.doctor import DoctorScreen
from tuneterm.tui.screens.gpus import GpusScreen
from tuneterm.tui.screens.plan import PlanScreen
from tuneterm.tui.screens.runs import RunsScreen


class TunetermApp(App[int]):
    """tuneterm's terminal app.

    Args:
        runs_dir: where runs live (``--runs-dir``; default ``$TUNETERM_RUNS_DIR`` or ``./runs``).
        demo: open on a sample run shipped with the package; list the samples among the runs.
        initial: the mode to open on (``gpus``, ``plan``, ``runs``, ``doctor``).
    """

    CSS_PATH = "app.tcss"
    TITLE = "tuneterm"
    MODES: ClassVar[dict[str, Any]] = {"gpus": GpusScreen, "plan": PlanScreen, "runs": RunsScreen, "doctor": DoctorScreen}
    DEFAULT_MODE = "runs"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("g", "mode('gpus')", "GPUs"),
        Binding("p", "mode('plan')", "Plan"),
        Binding("r", "mode('runs')", "Runs"),
        Binding("d", "mode('doctor')", "Doctor"),
        Binding("question_mark,f1", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    # Polling intervals (seconds); tests shorten them.
    gpu_interval: float = 2.0
    runs_interval: float = 2.0
    run_interval: float = 1.0
    stop_grace_s: float = 30.0

    def __init__(self, *, runs_dir: str | None = None, demo: bool = False, initial: str | None = None) -> None:
        super().__init__()
        self.runs_dir = runs_dir
        self.demo = demo
        self.initial = initial
        self.last_config: str | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}  # runs started here (reaped, never killed on quit)
        # Terminals over SSH often lack true colour: the ANSI theme uses the terminal's own palette.
        theme = os.environ.get("TUNETERM_THEME")
        if theme:
            self.theme = theme
        elif os.environ.get("COLORTERM", "").lower() not in ("truecolor", "24bit"):
            self.theme = "ansi-dark"

    @property
    def runs_root(self) -> str:
        from tuneterm.runs.layout import runs_root

        return str(runs_root(self.runs_dir))

    def on_mount(self) -> None:
        if self.initial and self.initial in self.MODES and self.initial != self.DEFAULT_MODE:
            self.switch_mode(self.initial)
        if self.demo:
            self.call_after_refresh(self._open_demo)

    def _open_demo(self) -> None:
        from tuneterm.tui.render import sample_dirs
        from tuneterm.tui.screens.run_view import RunScreen

        samples = sample_dirs()
        if not samples:
            self.notify("no sample runs shipped (broken install?)", severity="error", markup=False)
            return
        self.push_screen(RunScreen(str(samples[0]), demo=True))

    # ----------------------------------------------------------------------------- actions
    def action_mode(self, mode: str) -> None:
        if self.current_mode == mode and len(self.screen_stack) > 1:
            # already on this mode with a run view on top: go back to the mode's own screen
            while len(self.screen_stack) > 1:
                self.pop_screen()
            return
        self.switch_mode(mode)

    def action_help(self) -> None:
        from tuneterm.tui.screens.modals import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen))

    def open_doctor(self, path: str) -> None:
        """Switch to the Doctor screen and diagnose ``path``."""
        self.switch_mode("doctor")
        screen = self.screen
        if isinstance(screen, DoctorScreen):
            screen.call_after_refresh(screen.open_path, path)

    # ----------------------------------------------------------------------------- palette
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The palette: every screen switch and global action, then the current screen's actions."""
        yield SystemCommand("GPUs", "GPU memory, utilisation, temperature, processes (g)", partial(self.action_mode, "gpus"))
        yield SystemCommand("Plan", "memory estimate, recommendations, write a config (p)", partial(self.action_mode, "plan"))
        yield SystemCommand("Runs", "runs with state, step, loss, findings; start, open, stop (r)", partial(self.action_mode, "runs"))
        yield SystemCommand("Doctor", "diagnose any log file or directory (d)", partial(self.action_mode, "doctor"))
        yield SystemCommand("Help", "every key binding (?)", self.action_help)
        yield SystemCommand("Quit", "leave tuneterm; runs keep running (q)", self.exit)
        for title, help_text, action in screen_actions(screen):
            yield SystemCommand(title, help_text, partial(self._run_screen_action, screen, action))
        yield from (c for c in super().get_system_commands(screen) if c.title in ("Theme", "Screenshot", "Keys"))

    def _run_screen_action(self, screen: Screen[Any], action: str) -> None:
        self.call_later(screen.run_action, action)


def screen_actions(screen: Screen[Any]) -> list[tuple[str, str, str]]:
    """``(palette title, help, action)`` for every described binding of ``screen``."""
    out = []
    for b in getattr(screen, "BINDINGS", []):
        if isinstance(b, Binding) and b.description:
            keys = b.key.replace("question_mark", "?")
            out.append((f"{getattr(screen, 'TITLE_NAME', '')}: {b.description}".strip(": "), f"key {keys}", b.action))
    return out


def demo_exists() -> bool:
    """True when the sample runs ``--demo`` opens on are installed."""
    from tuneterm.tui.render import sample_dirs

    return bool(sample_dirs())


def run_app(*, runs_dir: str | None = None, demo: bool = False, initial: str | None = None) -> int:
    """Run the app in the terminal until the user quits; returns the exit code (0)."""
    if runs_dir is not None:
        runs_dir = str(Path(runs_dir).expanduser())
    app = TunetermApp(runs_dir=runs_dir, demo=demo, initial=initial)
    rv = app.run()
    return int(rv or 0)
