"""Runs screen and run view over real run-directory files: list, open, findings, rule, log,
samples, stop, and reopening after quitting."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.tui.conftest import make_app, notes, screen_text, wait_for, write_run
from tuneterm.tui.messages import RunSnapshotReady, RunsListed
from tuneterm.tui.screens.modals import RuleScreen
from tuneterm.tui.screens.run_view import RunScreen
from tuneterm.tui.screens.runs import RunsScreen


async def open_run(pilot, app, name: str) -> RunScreen:
    screen = app.screen
    assert isinstance(screen, RunsScreen)
    await wait_for(pilot, lambda: name in screen_text(app))
    table = screen.query_one("#runs-table")
    path = next(p for p in screen.infos if Path(p).name == name)
    table.move_cursor(row=table.get_row_index(path))
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.snap is not None)
    return app.screen


async def test_runs_listed_with_state_step_loss_findings(runs_dir: Path) -> None:
    messages: list[object] = []
    app = make_app(runs_dir=str(runs_dir))
    async with app.run_test(size=(100, 30), message_hook=messages.append) as pilot:
        await wait_for(pilot, lambda: "nan-sft" in screen_text(app) and "clean-sft" in screen_text(app))
        text = screen_text(app)
        row = next(line for line in text.splitlines() if "nan-sft" in line)
        assert "finished" in row and "30/30" in row and "nan" in row and "1 error" in row
        row = next(line for line in text.splitlines() if "clean-sft" in line)
        assert "40/40" in row and "clean" in row and "5m07s" in row
        assert any(isinstance(m, RunsListed) for m in messages)
        # a run appearing later shows up on the next poll
        write_run(runs_dir, "late-run", steps=12)
        await wait_for(pilot, lambda: "late-run" in screen_text(app))


async def test_missing_runs_dir_says_how_to_start(tmp_path: Path) -> None:
    app = make_app(runs_dir=str(tmp_path / "nothing"))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "no runs directory" in screen_text(app))
        assert "s starts a run" in screen_text(app)


async def test_run_view_charts_findings_rule_log_samples(runs_dir: Path) -> None:
    from tests.tui.conftest import EVIL

    write_run(runs_dir, "evil-run", steps=30, nan_at=25, evil=True)
    app = make_app(runs_dir=str(runs_dir))
    async with app.run_test(size=(100, 30)) as pilot:
        view = await open_run(pilot, app, "evil-run")
        snap = view.snap
        titles = [c.title.plain for c in snap.charts]
        assert titles[0].startswith("loss") and "eval" in titles[0]
        assert any(t.startswith("grad_norm") for t in titles) and any(t.startswith("learning rate") for t in titles)
        assert any(t.startswith("GPU memory") for t in titles)  # from gpu.jsonl
        assert "loss" in screen_text(app) and "errors" in screen_text(app)
        assert [f.code for f in snap.findings][0] == "N101"

        await pilot.press("f")
        await wait_for(pilot, lambda: "nan-or-inf" in screen_text(app))
        text = screen_text(app)
        assert "loss is NaN" in text and "fixes" in text and "bf16: true" in text
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RuleScreen) and "Why it matters" in screen_text(app))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))

        await pilot.press("l")
        await wait_for(pilot, lambda: "stdout.log" in screen_text(app))
        text = screen_text(app)
        assert "[bold red]EVIL[/bold red]" in text  # markup shown literally, escape codes removed
        assert "pwned" not in text and "\x1b" not in text
        assert "100%|##########| 10/10" in text and "50%" not in text  # tqdm's \r redraws collapsed

        await pilot.press("a")
        await wait_for(pilot, lambda: "completion" in screen_text(app))
        text = screen_text(app)
        assert "What is 3 plus 18?" in text and "[bold red]EVIL[/bold red] the answer is 21" in text
        assert EVIL not in text

        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))


async def test_live_run_updates_and_stop(runs_dir: Path, sleeper) -> None:
    """A running run (a real process as its supervisor) grows; x stops it after confirmation."""
    d = write_run(runs_dir, "live-run", state="running", steps=10, pid=sleeper.pid)
    app = make_app(runs_dir=str(runs_dir))
    messages: list[object] = []
    async with app.run_test(size=(100, 30), message_hook=messages.append) as pilot:
        view = await open_run(pilot, app, "live-run")
        assert view.snap.stoppable and view.snap.state == "running"
        with open(d / "metrics.jsonl", "a") as fh:
            for s in range(11, 16):
                fh.write(json.dumps({"loss": 0.5, "grad_norm": 1.0, "learning_rate": 1e-4, "step": s, "epoch": 1.0}) + "\n")
        with open(d / "stdout.log", "a") as fh:
            fh.write("fresh line at step 15\n")
        await wait_for(pilot, lambda: "step 15" in view.snap.headline)
        await pilot.press("l")
        await wait_for(pilot, lambda: "fresh line at step 15" in screen_text(app))
        await pilot.press("x")
        await wait_for(pilot, lambda: "Stop run live-run?" in screen_text(app))
        await pilot.press("y")
        await wait_for(pilot, lambda: json.loads((d / "status.json").read_text()).get("state") == "stopped")
        assert sleeper.wait(timeout=10) is not None  # the process really got the signal
        await wait_for(pilot, lambda: view.snap.state == "stopped" and not view.snap.stoppable)
        assert sum(isinstance(m, RunSnapshotReady) for m in messages) >= 2


async def test_stop_refused_for_finished_run(runs_dir: Path) -> None:
    app = make_app(runs_dir=str(runs_dir))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "clean-sft" in screen_text(app))
        await pilot.press("x")
        await wait_for(pilot, lambda: "nothing to stop" in notes(app))
        assert json.loads((runs_dir / "nan-sft" / "status.json").read_text())["state"] == "finished"


async def test_quit_leaves_runs_and_reopen_shows_history(runs_dir: Path, sleeper) -> None:
    write_run(runs_dir, "still-going", state="running", steps=20, pid=sleeper.pid)
    app = make_app(runs_dir=str(runs_dir))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "still-going" in screen_text(app))
        await pilot.press("q")
    assert sleeper.poll() is None  # quitting the app did not stop the run's process
    os.kill(sleeper.pid, 0)
    app2 = make_app(runs_dir=str(runs_dir))
    async with app2.run_test(size=(100, 30)) as pilot:
        view = await open_run(pilot, app2, "still-going")
        assert "running" in screen_text(app2) and "step 20/20" in view.snap.headline
        loss = next(c for c in view.snap.charts if c.title.plain.startswith("loss"))
        assert "20" in loss.body.plain  # the full history is charted, up to the last step


async def test_log_tab_follows_the_end_of_the_log(runs_dir: Path) -> None:
    d = write_run(runs_dir, "chatty", steps=20)
    (d / "stdout.log").write_text("".join(f"log line {n:04d}\n" for n in range(1, 301)))
    (d / "stderr.log").write_text("")
    app = make_app(runs_dir=str(runs_dir))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_run(pilot, app, "chatty")
        await pilot.press("l")
        await wait_for(pilot, lambda: "log line 0300" in screen_text(app))
        assert "log line 0100" not in screen_text(app)  # the tail, not the head
        with open(d / "stdout.log", "a") as fh:  # the run writes more: the view follows
            fh.write("log line 0301\n")
        await wait_for(pilot, lambda: "log line 0301" in screen_text(app))


async def test_two_marked_runs_open_the_comparison(runs_dir: Path) -> None:
    from tuneterm.tui.screens.compare import CompareScreen

    app = make_app(runs_dir=str(runs_dir))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "nan-sft" in screen_text(app) and "clean-sft" in screen_text(app))
        await pilot.press("m")
        await wait_for(pilot, lambda: "●" in screen_text(app))
        await pilot.press("down", "m")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        screen = app.screen
        # first what `tuneterm compare` prints: its verdict names the finding only one run has
        await wait_for(pilot, lambda: "nan-or-inf (N101) fired in" in screen_text(app), timeout=60)
        text = screen_text(app)
        assert "clean-sft" in text and "nan-sft" in text and "max_steps" in text  # 40 vs 30 differs
        rows = {what: (a, b) for what, a, b in screen.rows}  # then the run directories side by side
        assert set(rows["step"]) == {"40/40", "30/30"} and "lowest loss" in rows
        assert set(rows["max_steps"]) == {"40", "30"}
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and "●" not in screen_text(app))


async def test_run_view_at_80x24_keeps_charts_footer_and_notes_apart(runs_dir: Path) -> None:
    from textual.widgets._toast import Toast

    app = make_app(runs_dir=str(runs_dir))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        view = await open_run(pilot, app, "nan-sft")
        await wait_for(pilot, lambda: view.snap.charts != ())
        app.notify("stopping nan-sft ...", markup=False)
        await wait_for(pilot, lambda: bool(app.screen.query(Toast)))
        (toast,) = app.screen.query(Toast)
        charts = app.screen.query_one("#charts-scroll").region
        assert toast.region.height == 1 and not toast.region.overlaps(charts), (toast.region, charts)
        footer = screen_text(app).splitlines()[-1]
        assert "q Quit" in footer and footer.rstrip().endswith("^p palette")  # nothing cut
