"""Snapshots of the main screens at 100x30, as plain text in tests/tui/__snapshots__/*.txt.

pytest-textual-snapshot is not installed in this project, so each test renders the screen's text
(``screen_text``: what the terminal shows, without colours) and compares it with the stored file.
Machine-specific lines (host, CPU, RAM) are redacted. To accept a change on purpose:

    TUNETERM_SNAPSHOT_UPDATE=1 pytest tests/tui/test_snapshots.py

and review the diff of the .txt files.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

from tests.tui.conftest import H100, SNAPSHOTS, T4, UPDATE, fill, make_app, screen_text, wait_for
from tuneterm.resources import samples_dir
from tuneterm.tui.screens.run_view import RunScreen

SIZE = (100, 30)
_HOST = re.compile(r"^ host .*$", re.M)


def check_snapshot(name: str, text: str) -> None:
    text = _HOST.sub(" host <redacted>", text).rstrip("\n") + "\n"
    path = SNAPSHOTS / f"{name}.txt"
    if UPDATE:
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    if not path.is_file():
        pytest.fail(f"no snapshot {path.name}; create it with TUNETERM_SNAPSHOT_UPDATE=1")
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "\n".join(difflib.unified_diff(expected.splitlines(), text.splitlines(), "stored", "now", lineterm=""))
        pytest.fail(f"screen {name} changed (TUNETERM_SNAPSHOT_UPDATE=1 accepts it):\n{diff}")


@pytest.fixture(autouse=True)
def _no_hf_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Model facts come from the family table, not from whatever this machine has cached."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))


async def test_gpus_screen(fake_nvml) -> None:
    fake_nvml([dict(H100, procs=[(3999999, 9 * 2**30)]), dict(T4, no_power=True)])
    app = make_app(initial="gpus")
    app.gpu_interval = 3600  # one sample: the sparklines stay one cell long
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "GPU 1" in screen_text(app))
        check_snapshot("gpus", screen_text(app))


async def test_gpus_screen_without_gpu(fake_nvml) -> None:
    fake_nvml([], init_error="Driver Not Loaded")
    app = make_app(initial="gpus")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "No GPU" in screen_text(app))
        check_snapshot("gpus-none", screen_text(app))


async def test_plan_screen(fake_nvml) -> None:
    fake_nvml([dict(H100)])
    app = make_app(initial="plan")
    async with app.run_test(size=SIZE) as pilot:
        await fill(pilot, "#model", "Qwen/Qwen2.5-0.5B")
        await wait_for(pilot, lambda: app.screen.plan is not None)
        check_snapshot("plan", screen_text(app))


async def test_runs_screen(runs_dir: Path) -> None:
    app = make_app(runs_dir="runs")  # relative to the test's working directory: a stable nav bar
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "nan-sft" in screen_text(app) and "clean-sft" in screen_text(app))
        check_snapshot("runs", screen_text(app))


async def test_run_view_findings(runs_dir: Path) -> None:
    app = make_app(runs_dir="runs")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "nan-sft" in screen_text(app))
        app.push_screen(RunScreen(str(runs_dir / "nan-sft")))
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.snap is not None)
        check_snapshot("run-charts", screen_text(app))
        await pilot.press("f")
        await wait_for(pilot, lambda: "nan-or-inf" in screen_text(app))
        check_snapshot("run-findings", screen_text(app))


async def test_doctor_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(samples_dir())  # the report shows paths relative to the working directory
    app = make_app(initial="doctor")
    async with app.run_test(size=SIZE) as pilot:
        await fill(pilot, "#doctor-path", "qlora-undertrained")
        await wait_for(pilot, lambda: app.screen.report is not None)
        check_snapshot("doctor", screen_text(app))
