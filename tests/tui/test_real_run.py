"""A real tiny CPU training run started from the TUI: live view, quit, the run goes on, reopen.

Slow (real TRL training on CPU, ~1 minute): marked ``slow``; needs the train extra.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.tui.conftest import fill, make_app, screen_text, wait_for
from tuneterm.tui.screens.run_view import RunScreen
from tuneterm.tui.screens.runs import RunsScreen

pytestmark = pytest.mark.slow


async def test_start_quit_run_survives_reopen(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    config = tmp_path / "tiny6.yaml"
    config.write_text((REPO / "configs" / "tiny.yaml").read_text().replace("max_steps: 30", "max_steps: 6"))
    runs = tmp_path / "runs"
    app = make_app(runs_dir=str(runs))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.listed)
        await pilot.press("s")
        await wait_for(pilot, lambda: "Start a training run" in screen_text(app))
        await fill(pilot, "#prompt", str(config))
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), timeout=120)
        view = app.screen
        await wait_for(pilot, lambda: view.snap is not None and view.snap.state == "running"
                       and view.snap.charts != (), timeout=180)
        assert view.snap.stoppable
        run_dir = Path(view.path)
    # the app is gone; the run is a separate process and keeps training to the end
    end = time.monotonic() + 300
    while time.monotonic() < end:
        status = json.loads((run_dir / "status.json").read_text())
        if status.get("state") in ("finished", "failed", "stopped"):
            break
        time.sleep(0.2)
    assert status["state"] == "finished", status
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert max(steps) == 6
    app2 = make_app(runs_dir=str(runs))
    async with app2.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: run_dir.name in screen_text(app2))
        row = next(line for line in screen_text(app2).splitlines() if run_dir.name[:20] in line)
        assert "finished" in row and "6/6" in row
        assert isinstance(app2.screen, RunsScreen)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app2.screen, RunScreen) and app2.screen.snap is not None)
        snap = app2.screen.snap
        assert "step 6/6" in snap.headline and snap.state == "finished"
        assert any(c.title.plain.startswith("process memory") for c in snap.charts)  # gpu.jsonl of a CPU run
        assert snap.samples and snap.log
