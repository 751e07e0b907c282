"""``tuneterm stop RUN`` on a run of TunetermCallback: a graceful stop at the next step end, and the
user's script goes on after ``trainer.train()`` (a real tiny Trainer slowed to 0.3 s per step)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.train.conftest import needs_trl, run_cli, status

pytestmark = [pytest.mark.slow, pytest.mark.train, needs_trl]


def test_tuneterm_stop_is_graceful_and_the_script_continues(tiny_model: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    env.pop("TUNETERM_NOTIFY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.train.callback_script", "hf", "1e-3", "runs", "slow", "--steps", "400",
         "--step-sleep", "0.3", "--no-samples"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "runs" / "slow.step3").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, "the script ended before step 3"
            time.sleep(0.2)
        t0 = time.monotonic()
        stop = run_cli(["stop", "slow", "--runs-dir", "runs", "--grace", "60"], cwd=tmp_path)
        took = time.monotonic() - t0
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert took < 30  # the recorded end is the end: no waiting out the grace, no SIGKILL
    assert proc.returncode == 0 and "TRAINED" in out  # the script went on after trainer.train()
    st = status(tmp_path / "runs" / "slow")
    assert st["state"] == "stopped" and st["error"] == "stopped on request" and st["signal"] is None
    assert 3 <= st["step"] < 400
