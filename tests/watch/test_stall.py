"""run-stalled (X116): a live run that stopped making progress while its process stays alive.

The fast tests build run directories whose files really are old (``os.utime``) and whose process
really is alive (this test process); the slow one hangs a real TRL run with the ``hang`` fault
and judges it as it would look 30 minutes later.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.train.conftest import TINY, metrics, run_cli, status, tiny_model  # noqa: F401 - fixture
from tuneterm.engine import load_rules
from tuneterm.runs.diagnose import evaluate_run as evaluate_all
from tuneterm.runs.load import load_source as load_checked
from tuneterm.runs.info import run_info
from tuneterm.runs.progress import mark_progress


def _run_dir(root: Path, *, age_s: float, every_s: float, state: str = "running", pid: int | None = None) -> Path:
    """A run dir with 12 logged steps ``every_s`` apart, the last one ``age_s`` ago, and every file
    last written then."""
    d = root / f"r{age_s:g}-{every_s:g}-{state}"
    d.mkdir()
    last = time.time() - age_s
    rows = [{"loss": 2.0 - 0.05 * s, "grad_norm": 1.0, "learning_rate": 1e-4, "step": s, "epoch": s / 100,
             "time": last - (12 - s) * every_s} for s in range(1, 13)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "status.json").write_text(json.dumps({
        "state": state, "pid": os.getpid() if pid is None else pid, "worker_pid": os.getpid(),
        "host": socket.gethostname(), "step": 12, "max_steps": 1000, "started": "2026-01-01T00:00:00Z"}))
    for name in ("stdout.log", "stderr.log"):
        (d / name).write_text("")
    for f in d.iterdir():
        os.utime(f, (last, last))
    return d


def _codes(d: Path) -> dict[str, Any]:
    return {f.name: f for f in evaluate_all(load_checked(d), load_rules(scopes=["log"]))}


def test_silent_live_run_is_stalled(tmp_path: Path) -> None:
    d = _run_dir(tmp_path, age_s=3600, every_s=2)
    f = _codes(d)["run-stalled"]
    assert f.severity.value == "warning" and f.first_step == 12
    assert f.evidence["stalled_s"] >= 3600 and f.evidence["log_interval_s"] == 2.0
    assert f.fixes[0].command == f"py-spy dump --pid {os.getpid()}"
    # `tuneterm runs` re-evaluates a silent run even when its findings.json looks fresh
    (d / "findings.json").write_text(json.dumps({"summary": {"errors": 0, "warnings": 0}}))
    assert run_info(d).warnings == 1


def test_silence_is_judged_against_the_runs_own_rhythm(tmp_path: Path) -> None:
    assert "run-stalled" not in _codes(_run_dir(tmp_path, age_s=120, every_s=2))  # under min_stall_s
    # 15 minutes of silence in a run that logs every 5 minutes: 3 intervals, not a stall
    assert "run-stalled" not in _codes(_run_dir(tmp_path, age_s=900, every_s=300))


def test_ended_or_vanished_runs_do_not_stall(tmp_path: Path) -> None:
    assert "run-stalled" not in _codes(_run_dir(tmp_path, age_s=3600, every_s=2, state="finished"))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    found = _codes(_run_dir(tmp_path, age_s=3600, every_s=2, pid=gone.pid))
    assert "run-stalled" not in found and "run-vanished" in found


@pytest.mark.slow
@pytest.mark.train
def test_real_hung_run_is_stalled(tiny_model: str, tmp_path: Path) -> None:
    proc = run_cli(["train", str(TINY), "--detach", "--runs-dir", "runs", "--name", "hang", "--set", "max_steps=50",
                    "--sample-every", "1000"], cwd=tmp_path, env={"TUNETERM_FAULT": "hang@5=600"})
    assert proc.returncode == 0, proc.stderr[-1500:]
    d = tmp_path / "runs" / "hang"
    try:
        deadline = time.time() + 240
        while time.time() < deadline and (not (d / "metrics.jsonl").exists() or len(metrics(d)) < 4):
            time.sleep(0.5)
        time.sleep(2.0)
        rows = metrics(d)
        assert status(d)["state"] == "running" and [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4], rows
        run = load_checked(d)
        assert "run-stalled" not in {f.name for f in evaluate_all(run, load_rules(scopes=["log"]))}
        run.status = mark_progress(run.status, d, now=time.time() + 1800)  # the same run half an hour on
        (f,) = [f for f in evaluate_all(run, load_rules(scopes=["log"])) if f.name == "run-stalled"]
        assert f.first_step in (4, 5) and f.evidence["stalled_s"] >= 1800  # status.json may already say step 5
    finally:
        run_cli(["stop", "hang", "--runs-dir", "runs", "--grace", "1"], cwd=tmp_path)
    assert status(d)["state"] == "stopped"
