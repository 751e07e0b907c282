"""`tuneterm` / `tuneterm ui` as commands: a clean refusal without a terminal, light imports."""

from __future__ import annotations

import subprocess
import sys

from tests.tui.conftest import tuneterm_exe


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tuneterm_exe(), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60, check=False)


def test_no_terminal_is_exit_2_with_one_line() -> None:
    for args in ([], ["ui"], ["ui", "--demo"]):
        r = run(args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tuneterm: error: the terminal app needs a terminal")


def test_ui_help_lists_options() -> None:
    r = run(["ui", "--help"])
    assert r.returncode == 0
    assert "--demo" in r.stdout and "--runs-dir" in r.stdout and "never stops a training run" in r.stdout


def test_cli_does_not_import_textual() -> None:
    code = "import sys, tuneterm.cli, tuneterm.main; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
