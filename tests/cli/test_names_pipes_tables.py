"""Run names everywhere a run is, tables that never wrap a run name, the headless heartbeat, the
step a run that ended early reached, and a closed pipe as a quiet exit (the real console script)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import TUNETERM, nan_run, run_script
from tests.watch.helpers import make_run_dir

LONG = "qwen2.5-7b-instruct-lora-sft-20251206-091500-2"


def _piped(args: list[str], cwd: Path | None = None) -> tuple[int, str]:
    """``tuneterm ARGS | head -1``: the reader closes the pipe after one line."""
    proc = subprocess.Popen([str(TUNETERM), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=60), err


@pytest.mark.parametrize("args", [["rules"], ["doctor", "--demo"], ["rule", "nan-or-inf"]])
def test_closed_pipe_is_a_quiet_exit_0(args: list[str]) -> None:
    code, err = _piped(args)
    assert code == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err and "error" not in err


def test_closed_pipe_after_findings_is_quiet(tmp_path: Path) -> None:
    log = nan_run(tmp_path / "trainer_state.json")
    code, err = _piped(["doctor", str(log)])
    assert code == 0 and err == ""
    # not piped: the findings still decide the exit code
    assert run_script("doctor", str(log)).returncode == 1


def test_doctor_check_and_eval_accept_a_run_name(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_run_dir(runs, "mine", status={"state": "finished", "exit_code": 0, "step": 10, "max_steps": 10},
                 config="model_name_or_path: tuneterm:tiny-llama\ndataset_name: tuneterm:tiny-sft\n")
    env = {"TUNETERM_RUNS_DIR": str(runs)}
    doc = run_script("doctor", "mine", env=env, cwd=tmp_path)
    assert doc.returncode == 0 and "mine" in doc.stdout, doc.stderr
    chk = run_script("check", "mine", "--format", "json", env=env, cwd=tmp_path)
    assert chk.returncode == 0 and "mine" in chk.stdout, chk.stderr
    ev = run_script("eval", "mine", "-q", env=env, cwd=tmp_path)
    # the name is resolved to the run: the message is about its missing model, not the name
    assert ev.returncode == 2 and "has no saved model" in ev.stderr and str(Path("runs") / "mine") in ev.stderr, ev.stderr
    missing = run_script("doctor", "nothing-here", env=env, cwd=tmp_path)
    assert missing.returncode == 2 and "nothing-here" in missing.stderr


@pytest.mark.parametrize("columns", ["80", "60"])
def test_runs_table_never_wraps_a_run_name(tmp_path: Path, columns: str) -> None:
    make_run_dir(tmp_path, LONG, status={"state": "stopped", "step": 4628, "max_steps": 20000, "error": "stopped on request",
                                          "started": "2025-01-02T00:00:00Z", "ended": "2025-01-02T01:00:00Z"}, steps=30)
    make_run_dir(tmp_path, "short", status={"state": "finished", "step": 10, "max_steps": 10, "started": "2025-01-01T00:00:00Z"})
    res = run_script("runs", "--runs-dir", str(tmp_path), env={"COLUMNS": columns})
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    (row,) = [ln for ln in lines if LONG in ln]  # the whole name, on one line
    assert row.startswith(LONG)
    assert all(len(ln) <= int(columns) for ln in lines)
    if columns == "80":
        assert "4628/20000 (23%)" in row  # stopped at 23%, never read as complete
        assert "stopped" in row


def test_stopped_run_shows_the_step_it_reached_in_json(tmp_path: Path) -> None:
    make_run_dir(tmp_path, "halted", status={"state": "stopped", "step": 4628, "max_steps": 20000}, steps=30)
    import json

    res = run_script("runs", "--json", "--runs-dir", str(tmp_path))
    (row,) = json.loads(res.stdout)
    assert row["step"] == 4628 and row["max_steps"] == 20000 and row["state"] == "stopped"


def test_headless_watch_heartbeat(tmp_path: Path) -> None:
    """A healthy live run prints a heartbeat line every --heartbeat seconds; 0 silences it."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        make_run_dir(tmp_path, "quiet", status={"state": "running", "pid": live.pid, "max_steps": 100}, steps=20)
        for beat, expect in (("1", True), ("0", False)):
            proc = subprocess.Popen([str(TUNETERM), "watch", "quiet", "--headless", "--runs-dir", str(tmp_path), "--heartbeat", beat],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                out, err = proc.communicate(timeout=3.5)
            except subprocess.TimeoutExpired:
                proc.terminate()
                out, err = proc.communicate(timeout=10)
            beats = [ln for ln in err.splitlines() if ln.startswith("tuneterm: quiet running · step 20/100")]
            if expect:
                assert beats and "loss 1" in beats[0] and "steps/s" in beats[0], err
            else:
                assert not beats, err
    finally:
        live.kill()
        live.wait()
