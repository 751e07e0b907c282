"""The app as a whole: navigation keys, help, command palette, 80x24, resize, NO_COLOR, demo."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.binding import Binding

from tests.tui.conftest import make_app, screen_text, wait_for
from tuneterm.tui.app import TunetermApp, screen_actions
from tuneterm.tui.screens.doctor import DoctorScreen
from tuneterm.tui.screens.gpus import GpusScreen
from tuneterm.tui.screens.modals import HelpScreen
from tuneterm.tui.screens.plan import PlanScreen
from tuneterm.tui.screens.run_view import RunScreen
from tuneterm.tui.screens.runs import RunsScreen


async def test_keys_switch_screens_and_help(runs_dir: Path, fake_nvml) -> None:
    fake_nvml([], init_error="Driver Not Loaded")
    app = make_app(runs_dir=str(runs_dir))
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("g")
        assert isinstance(app.screen, GpusScreen)
        await pilot.press("d")
        assert isinstance(app.screen, DoctorScreen)
        await pilot.press("escape", "p")  # leave the path field, then switch
        assert isinstance(app.screen, PlanScreen)
        await pilot.press("escape", "r")
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert "Start run" in screen_text(app)
        text = app.screen.text.plain
        assert "Start run" in text and "Stop run" in text and "command palette" in text and "GPUs" in text
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


def test_every_binding_has_a_palette_entry() -> None:
    """Each described binding of every screen becomes a palette command (built from BINDINGS)."""
    for cls in (GpusScreen, PlanScreen, RunsScreen, DoctorScreen):
        described = [b for b in cls.BINDINGS if isinstance(b, Binding) and b.description]
        assert described, cls
        screen = cls.__new__(cls)
        actions = [a for _, _, a in screen_actions(screen)]
        assert actions == [b.action for b in described]
    screen = RunScreen.__new__(RunScreen)
    assert {"stop", "tab('findings')", "tab('log')", "tab('samples')", "doctor", "back"} <= {a for _, _, a in screen_actions(screen)}


async def test_palette_runs_a_screen_action(runs_dir: Path) -> None:
    app = make_app(runs_dir=str(runs_dir))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "clean-sft" in screen_text(app))
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for t in ("GPUs", "Plan", "Runs", "Doctor", "Help", "Quit", "Runs: Start run", "Runs: Stop run", "Runs: Open"):
            assert t in titles
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"Doctor")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DoctorScreen))


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (160, 50)])
async def test_demo_opens_on_a_shipped_run_and_survives_resize(size: tuple[int, int]) -> None:
    app = make_app(demo=True)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.snap is not None)
        assert app.screen.snap.name == "grpo-no-signal" or app.screen.snap.name == "qlora-undertrained"
        assert "loss" in screen_text(app)
        for w, h in ((60, 20), (120, 40), size):
            await pilot.resize_terminal(w, h)
            await pilot.pause(0.3)
            assert app.screen.snap is not None and "tuneterm" in screen_text(app)
        await wait_for(pilot, lambda: app.screen.chart_width == max(40, size[0] - 4))
        await pilot.press("escape")
        await wait_for(pilot, lambda: "sample" in screen_text(app))  # samples are listed as runs


async def test_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = TunetermApp()
    assert app.no_color  # Textual renders monochrome under NO_COLOR
    monkeypatch.delenv("NO_COLOR")
    assert TunetermApp().theme == "ansi-dark"  # no true colour assumed (COLORTERM unset)
    monkeypatch.setenv("COLORTERM", "truecolor")
    assert TunetermApp().theme != "ansi-dark"
