"""Doctor screen: the same report as `tuneterm doctor`, for files and directories; clean errors."""

from __future__ import annotations

import pytest

from tests.conftest import corpus_file
from tests.tui.conftest import EVIL, fill, make_app, screen_text, wait_for
from tuneterm.cli import main
from tuneterm.resources import samples_dir
from tuneterm.tui.screens.doctor import DoctorScreen


def cli_doctor(path: str, width: int, capsys: pytest.CaptureFixture[str]) -> list[str]:
    with pytest.raises(SystemExit):
        main(["doctor", path, "--width", str(width)])
    out = capsys.readouterr().out
    return [line.rstrip() for line in out.splitlines()]


async def diagnose(path: str, size: tuple[int, int] = (100, 30)) -> tuple[object, list[str], str]:
    app = make_app(initial="doctor")
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        assert isinstance(screen, DoctorScreen)
        await fill(pilot, "#doctor-path", path)
        await wait_for(pilot, lambda: screen.report is not None or "error:" in screen_text(app))
        width = screen.query_one("#doctor-body").content_size.width
        lines = [] if screen.report is None else [line.rstrip() for line in screen.report.plain.splitlines()]
        return width, lines, screen_text(app)


async def test_sample_run_matches_cli_report(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(samples_dir() / "qlora-undertrained")
    width, lines, text = await diagnose(path)
    expected = cli_doctor(path, width, capsys)
    assert lines == expected  # same words, same layout, same charts as `tuneterm doctor`
    assert "qlora-undertrained" in text


async def test_corpus_log_file(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(corpus_file("001_"))
    width, lines, _ = await diagnose(path)
    assert lines and lines == cli_doctor(path, width, capsys)


async def test_missing_path_is_one_line_error() -> None:
    _, lines, text = await diagnose("/no/such/log.json", size=(80, 24))
    assert lines == []
    assert "error: /no/such/log.json: no such file or directory" in text
    assert "Traceback" not in text


async def test_log_without_metrics_and_with_markup(tmp_path) -> None:
    log = tmp_path / "empty.log"
    log.write_text(f"hello {EVIL}\nno metrics here\n")
    _, lines, text = await diagnose(str(log), size=(80, 24))
    assert "error: no training metrics" in text
    assert "\x1b" not in text and "pwned" not in text
