"""What every main screen shares: the navigation bar, the footer, and the worker discipline."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import get_current_worker

from tuneterm.tui.messages import GpuSampled

if TYPE_CHECKING:
    from tuneterm.tui.app import TunetermApp

NAV: tuple[tuple[str, str, str], ...] = (("h", "home", "Home"), ("g", "gpus", "GPUs"), ("p", "plan", "Plan"), ("r", "runs", "Runs"), ("d", "doctor", "Doctor"))


class NavBar(Static):
    """One line: the app name, the main screens with their keys (current one highlighted)."""

    DEFAULT_CSS = """
    NavBar { height: 1; background: $panel; color: $text; padding: 0 1; }
    """

    def __init__(self, current: str, extra: str = "") -> None:
        super().__init__(self._line(current, extra))
        self.current = current

    @staticmethod
    def _line(current: str, extra: str) -> Text:
        t = Text()
        t.append("tuneterm ", style="bold")
        for key, mode, title in NAV:
            label = f" {key} {title} "
            t.append(label, style="reverse bold" if mode == current else "")
        t.append("  ? help", style="dim")
        if extra:
            t.append(f"  {extra}", style="dim")
        return t


class MainScreen(Screen[None]):
    """Base of the four main screens (one per app mode)."""

    TITLE_NAME: ClassVar[str] = ""
    MODE: ClassVar[str] = ""

    @property
    def tapp(self) -> TunetermApp:
        from tuneterm.tui.app import TunetermApp

        app = self.app
        assert isinstance(app, TunetermApp)  # noqa: S101 - narrows the type: screens live in this app
        return app


def nap(worker: object, seconds: float) -> bool:
    """Sleep ``seconds`` in short slices; return False as soon as ``worker`` is cancelled.

    Polling workers loop on this so that leaving a screen or quitting the app ends them within
    a tenth of a second instead of after a whole polling interval.
    """
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if getattr(worker, "is_cancelled", False):
            return False
        time.sleep(min(0.1, max(0.0, end - time.monotonic())))
    return not getattr(worker, "is_cancelled", False)


def post_gpu_samples(screen: MainScreen) -> None:
    """Post a :class:`~tuneterm.tui.messages.GpuSampled` to ``screen`` every ``app.gpu_interval``
    seconds until the thread worker running this is cancelled (the GPUs and Home screens' poll)."""
    from tuneterm.plan.gpu import probe

    worker = get_current_worker()
    while not worker.is_cancelled:
        screen.post_message(GpuSampled(probe()))
        if not nap(worker, screen.tapp.gpu_interval):
            return
