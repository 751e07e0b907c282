"""Starting a run from the Runs screen goes through ``tuneterm train``'s pre-flight check.

Errors (the seeds' 24B model at lr 5e-5: C101) open a modal with the findings; Cancel starts
nothing, "Start anyway" launches the config as resolved. Warnings do not block: the run starts and
a notification names them. A clean tiny config starts without a word from the check. Runs that
start are real supervisors (``tuneterm.train.launch``); each test stops its run at once so no
training happens here (tests/tui/test_real_run.py trains for real).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.tui.conftest import fill, make_app, notes, screen_text, wait_for
from tuneterm.tui.screens.modals import PreflightScreen
from tuneterm.tui.screens.run_view import RunScreen
from tuneterm.tui.screens.runs import RunsScreen

pytestmark = pytest.mark.train  # needs the train extra; skipped cleanly without it

SEED_24B = """\
model_name_or_path: mistralai/Mistral-Small-3.1-24B-Instruct-2503
dataset_name: trl-lib/Capybara
learning_rate: 5.0e-5
warmup_steps: 10
bf16: false     # no GPU here: without these, C122 (bf16 on a machine without a bf16 GPU) fires too
use_cpu: true
"""


@pytest.fixture(autouse=True)
def _no_gpu(fake_nvml: Any) -> None:
    """No GPU: the fit rule (C111) stays out, the findings are the config's own."""
    fake_nvml([], init_error="Driver Not Loaded")


def run_dirs(runs: Path) -> list[Path]:
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


async def ask_to_start(pilot: Any, app: Any, config: Path) -> None:
    await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.listed)
    await pilot.press("s")
    await wait_for(pilot, lambda: "Start a training run" in screen_text(app))
    await fill(pilot, "#prompt", str(config))


def stop(app: Any, path: str) -> None:
    """Stop a run this test started: SIGKILL to its process group at once (it has not trained)."""
    from tuneterm.runs.control import stop_run
    from tuneterm.runs.layout import RunDir

    stop_run(RunDir(Path(path)), grace_s=0.0, proc=app.procs.get(path))


async def test_preflight_error_shows_modal_and_cancel_starts_nothing(tmp_path: Path) -> None:
    config = tmp_path / "seed24b.yaml"
    config.write_text(SEED_24B)
    runs = tmp_path / "runs"
    app = make_app(runs_dir=str(runs))
    async with app.run_test(size=(100, 30)) as pilot:
        await ask_to_start(pilot, app, config)
        await wait_for(pilot, lambda: isinstance(app.screen, PreflightScreen))
        modal = app.screen
        assert [f.code for f in modal.result.errors] == ["C101"]
        # the modal is pushed before it is painted: under load the first frame can lag
        await wait_for(pilot, lambda: "Pre-flight check" in screen_text(app))
        text = screen_text(app)
        assert "Pre-flight check: 1 error" in text and "seed24b.yaml" in text, text
        assert "C101 learning-rate-out-of-range" in text and "learning_rate 5e-05" in text
        assert "Start anyway (a)" in text and "Cancel (esc)" in text
        await pilot.press("enter")  # Cancel has the focus: enter alone never starts a refused run
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        await wait_for(pilot, lambda: "not started: pre-flight check found 1 error(s)" in notes(app))
        await pilot.pause(0.5)
        assert run_dirs(runs) == [] and app.procs == {}
        # esc cancels as well
        await ask_to_start(pilot, app, config)
        await wait_for(pilot, lambda: isinstance(app.screen, PreflightScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        await pilot.pause(0.5)
        assert run_dirs(runs) == [] and app.procs == {}


async def test_start_anyway_launches_the_refused_config(tmp_path: Path) -> None:
    config = tmp_path / "seed24b.yaml"
    config.write_text(SEED_24B)
    runs = tmp_path / "runs"
    app = make_app(runs_dir=str(runs))
    async with app.run_test(size=(100, 30)) as pilot:
        await ask_to_start(pilot, app, config)
        await wait_for(pilot, lambda: isinstance(app.screen, PreflightScreen))
        await pilot.click("#start-anyway")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), timeout=30)
        path = app.screen.path
        try:
            assert "despite 1 pre-flight error(s)" in notes(app)
            [d] = run_dirs(runs)
            assert str(d) == path
            launched = yaml.safe_load((d / "config.yaml").read_text())
            assert launched["learning_rate"] == 5e-5  # launched as given: the user overrode the check
        finally:
            stop(app, path)


async def test_clean_tiny_config_starts_without_preflight_notes(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    app = make_app(runs_dir=str(runs))
    async with app.run_test(size=(100, 30)) as pilot:
        await ask_to_start(pilot, app, REPO / "configs" / "tiny.yaml")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), timeout=30)
        path = app.screen.path
        try:
            assert "started tiny-" in notes(app) and "pre-flight" not in notes(app)
            assert [str(d) for d in run_dirs(runs)] == [path]
        finally:
            stop(app, path)


async def test_warnings_do_not_block_and_are_shown(tmp_path: Path) -> None:
    config = tmp_path / "nowarmup.yaml"
    config.write_text((REPO / "configs" / "tiny.yaml").read_text().replace("warmup_steps: 3", "warmup_steps: 0"))
    runs = tmp_path / "runs"
    app = make_app(runs_dir=str(runs))
    async with app.run_test(size=(100, 30)) as pilot:
        await ask_to_start(pilot, app, config)
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), timeout=30)
        path = app.screen.path
        try:
            assert "pre-flight: " in notes(app) and "(not blocking): " in notes(app) and "C104 no-warmup" in notes(app)
            assert len(run_dirs(runs)) == 1
        finally:
            stop(app, path)


def test_notes_for_checks_that_do_not_block() -> None:
    """What a launch tells the user when the check could not run, or found only warnings."""
    from tests.train.conftest import TINY, TINY_DPO
    from tuneterm.train.config import resolve
    from tuneterm.train.preflight import PreflightResult, preflight
    from tuneterm.tui.screens.runs import preflight_notes

    skipped = PreflightResult("x.yaml", skipped="RuleFileError: rules/config.yaml: cannot read\x1b[31m")
    assert preflight_notes(skipped) == ("pre-flight check could not run (RuleFileError: rules/config.yaml: cannot "
                                        "read); started anyway",)  # escape sequence removed
    assert preflight_notes(preflight(resolve(TINY), 1)) == ()
    [line] = preflight_notes(preflight(resolve(TINY_DPO), 1))
    assert line.startswith("pre-flight: ") and "C104 no-warmup" in line and f"tuneterm check {TINY_DPO}" in line


async def test_a_config_that_cannot_be_read_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    bad = tmp_path / "broken.yaml"
    bad.write_text("learning_rate: [unclosed\n")
    app = make_app(runs_dir=str(runs))
    async with app.run_test(size=(100, 30)) as pilot:
        await ask_to_start(pilot, app, bad)
        await wait_for(pilot, lambda: "could not start:" in notes(app))
        line = next(n for n in notes(app).splitlines() if "could not start:" in n)
        assert "broken.yaml" in line and "Traceback" not in notes(app)
        assert isinstance(app.screen, RunsScreen) and run_dirs(runs) == []
