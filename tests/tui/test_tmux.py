"""The real console script in a real terminal: ``tuneterm ui --demo`` inside tmux (100x30).

Keys are sent with ``tmux send-keys`` and the screen is read with ``capture-pane -p``. The test
uses its own tmux server (``-L``), so it never touches a user's sessions, and kills only that
server at the end. Skipped when tmux is not installed (``apt-get install tmux``).
"""

from __future__ import annotations

import shlex

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.tui.conftest import tuneterm_exe, write_run

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")


class Tmux:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def __call__(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=20, check=False)
        return out.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "tt")

    def wait(self, predicate: Callable[[str], bool], timeout: float = 30.0) -> str:
        end = time.monotonic() + timeout
        text = ""
        while time.monotonic() < end:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"tmux pane never matched; it shows:\n{text}")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(f"tuneterm-test-{os.getpid()}-{tmp_path.name}")
    yield t
    t("kill-server")


def test_demo_in_tmux(tmux: Tmux, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "tmux-run", steps=25)
    exe = tuneterm_exe()
    script = f"TERM=xterm-256color TUNETERM_RUNS_DIR={shlex.quote(str(runs))} {shlex.quote(exe)} ui --demo; echo TUNETERM-EXIT=$?; sleep 60"
    tmux("-f", "/dev/null", "new-session", "-d", "-s", "tt", "-x", "100", "-y", "30", "sh", "-c", script)
    tmux("set-option", "-s", "escape-time", "10")
    t0 = time.monotonic()
    text = tmux.wait(lambda s: "Charts" in s and "loss" in s)
    assert time.monotonic() - t0 < 20
    assert "qlora-undertrained" in text or "grpo-no-signal" in text
    tmux("send-keys", "-t", "tt", "f")
    text = tmux.wait(lambda s: "code" in s and "steps" in s)
    tmux("send-keys", "-t", "tt", "?")
    tmux.wait(lambda s: "Help" in s and "Everywhere" in s)
    tmux("send-keys", "-t", "tt", "Escape")
    tmux.wait(lambda s: "Everywhere" not in s)
    tmux("send-keys", "-t", "tt", "Escape")  # back to the runs list: the samples and the runs dir
    text = tmux.wait(lambda s: "tmux-run" in s and "sample" in s)
    assert "25/25" in text
    tmux("resize-window", "-t", "tt", "-x", "80", "-y", "24")
    text = tmux.wait(lambda s: "tmux-run" in s and len(s.splitlines()[0]) <= 80)
    tmux("send-keys", "-t", "tt", "d")
    tmux.wait(lambda s: "a log file or run/checkpoint directory" in s and "Open a path" in s)
    # the path field takes focus only when chosen (o): q right away is the app's quit key
    tmux("send-keys", "-t", "tt", "q")
    text = tmux.wait(lambda s: "TUNETERM-EXIT=" in s)
    assert "TUNETERM-EXIT=0" in text and "Traceback" not in text
