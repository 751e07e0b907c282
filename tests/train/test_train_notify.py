"""``tuneterm train --detach --notify URL``: the supervisor notifies a failing run's end with nobody
watching, once, to a local HTTP receiver (a real tiny run crashed by fault injection)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import local_receiver
from tests.train.conftest import TINY, needs_trl, run_cli, status

pytestmark = [pytest.mark.slow, pytest.mark.train, needs_trl]


def test_detached_failing_run_is_notified_by_its_supervisor(tiny_model: str, tmp_path: Path) -> None:
    with local_receiver() as rec:
        url, got = rec.url, rec.bodies
        proc = run_cli(
            ["train", str(TINY), "--detach", "--runs-dir", "runs", "--name", "boom", "--notify", url],
            cwd=tmp_path, env={"TUNETERM_FAULT": "crash@3", "XDG_CONFIG_HOME": str(tmp_path / "xdg")},
        )
        assert proc.returncode == 0, proc.stderr
        run = tmp_path / "runs" / "boom"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any(b["title"] == "tuneterm: boom failed" for b in got):
            time.sleep(0.5)
        assert status(run)["state"] == "failed"
        ends = [b for b in got if b["title"] == "tuneterm: boom failed"]
        assert len(ends) == 1, got
        body = ends[0]["message"]
        assert "run: boom" in body and "RuntimeError: injected fault: crash" in body and "finding: error" in body
        # The URL (a secret, often) reached the supervisor through its environment, not a file.
        assert url not in "".join(p.read_text(errors="replace") for p in run.iterdir() if p.is_file())
