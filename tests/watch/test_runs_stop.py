"""``tuneterm runs`` and ``tuneterm stop`` on run directories made in tmp dirs, and
``degenerate-generations`` on a run's samples.jsonl."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.helpers import run_cli
from tests.watch.helpers import make_run_dir
from tuneterm.engine import load_rules
from tuneterm.runs.control import pid_alive
from tuneterm.runs.diagnose import evaluate_run as evaluate_all
from tuneterm.runs.load import load_source as load_checked


def _sleeper(tmp_path: Path) -> subprocess.Popen[bytes]:
    # A fake long-running run: its own session, like tuneterm's supervisor.
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)


def test_runs_lists_states_steps_and_died(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    live = _sleeper(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        make_run_dir(tmp_path, "alive", status={"state": "running", "pid": live.pid, "started": "2025-01-02T00:00:00Z"}, steps=7)
        make_run_dir(tmp_path, "dead", status={"state": "running", "pid": gone.pid, "started": "2025-01-01T00:00:00Z"}, steps=5)
        make_run_dir(tmp_path, "done", status={"state": "finished", "exit_code": 0, "started": "2024-12-31T00:00:00Z", "ended": "2024-12-31T00:05:00Z"}, steps=100)
        (tmp_path / "not-a-run").mkdir()
        code, out, err = run_cli(capsys, "runs", "--json", "--runs-dir", str(tmp_path))
        assert code == 0, err
        rows = {r["name"]: r for r in json.loads(out)}
        assert set(rows) == {"alive", "dead", "done"}
        assert [r["name"] for r in json.loads(out)] == ["alive", "dead", "done"]  # newest first
        assert rows["alive"]["state"] == "running" and rows["alive"]["step"] == 7
        assert rows["alive"]["last_loss"] == pytest.approx(2.0 - 0.05 * 7)
        assert rows["dead"]["state"] == "died" and rows["dead"]["errors"] >= 1  # diagnosed: run-vanished
        assert rows["done"]["state"] == "finished" and rows["done"]["duration_s"] == 300
        assert rows["done"]["step"] == 100 and rows["done"]["errors"] == 0
        code, out, _ = run_cli(capsys, "runs", "--runs-dir", str(tmp_path))
        assert code == 0 and "died" in out and "alive" in out and "7/100" in out
    finally:
        live.kill()
        live.wait()


def test_runs_missing_dir_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "runs", "--runs-dir", str(tmp_path / "nope"))
    assert code == 2 and "no runs directory" in err


def test_stop_graceful(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    child = _sleeper(tmp_path)
    make_run_dir(tmp_path, "r1", status={"state": "running", "pid": child.pid, "pgid": child.pid})
    t0 = time.monotonic()
    import threading

    reaper = threading.Thread(target=child.wait)  # we are its parent: reap it so it does not linger as a zombie
    reaper.start()
    code, _, err = run_cli(capsys, "stop", "r1", "--runs-dir", str(tmp_path), "--grace", "5")
    reaper.join(10)
    assert code == 0, err
    assert child.returncode == -15  # SIGTERM was enough
    assert time.monotonic() - t0 < 5
    status = json.loads((tmp_path / "r1" / "status.json").read_text())
    assert status["state"] == "stopped" and status["stop_requested"] is True
    # stopping it again: already stopped, still exit 0
    code, _, err = run_cli(capsys, "stop", str(tmp_path / "r1"))
    assert code == 0 and "already stopped" in err


def test_stop_force_kills_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A process that ignores SIGTERM: only the forced stop ends it.
    child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"], start_new_session=True)
    time.sleep(0.3)
    import threading

    reaper = threading.Thread(target=child.wait)
    reaper.start()
    make_run_dir(tmp_path, "r2", status={"state": "running", "pid": child.pid, "pgid": child.pid})
    code, _, err = run_cli(capsys, "stop", "r2", "--runs-dir", str(tmp_path), "--force")
    reaper.join(10)
    assert code == 0, err
    assert child.returncode == -9
    assert not pid_alive(child.pid)
    assert json.loads((tmp_path / "r2" / "status.json").read_text())["state"] == "stopped"


def test_stop_unknown_run_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "stop", "ghost", "--runs-dir", str(tmp_path))
    assert code == 2 and "no such run: ghost" in err
    (tmp_path / "plain").mkdir()
    code, _, err = run_cli(capsys, "stop", str(tmp_path / "plain"))
    assert code == 2 and "not a tuneterm run directory" in err


# ------------------------------------------------------------------------------ samples
def _samples(step: int, texts: list[str]) -> list[dict[str, object]]:
    return [{"step": step, "prompt": f"prompt {i}", "completion": t, "n_tokens": 20, "hit_max_tokens": False} for i, t in enumerate(texts)]


SANE = ["Paris is the capital of France.", "Three plus four is seven.", "A mountain rises above the clouds at dawn."]
LOOPING = ["the the the the the the the the the the", "is is is is is is is is is is is", "and then and then and then and then and then"]


def _degenerate(tmp_path: Path, name: str, samples: list[dict[str, object]]) -> dict[str, object]:
    d = make_run_dir(tmp_path, name, status={"state": "finished", "exit_code": 0}, samples=samples)
    found = evaluate_all(load_checked(d), load_rules(scopes=["log", "eval"]))
    return {f.name: f for f in found if f.name == "degenerate-generations"}


def test_collapse_in_samples_is_an_error(tmp_path: Path) -> None:
    found = _degenerate(tmp_path, "collapse", _samples(10, SANE) + _samples(50, SANE) + _samples(90, LOOPING))
    f = found["degenerate-generations"]
    assert f.severity.value == "error" and f.first_step == 90
    assert f.code == "E102" and f.fixes


def test_healthy_samples_are_not_flagged(tmp_path: Path) -> None:
    assert _degenerate(tmp_path, "fine", _samples(10, SANE) + _samples(90, SANE)) == {}


def test_degenerate_from_the_start_is_only_a_warning(tmp_path: Path) -> None:
    # a tiny random model loops from the first sample on: training did not do it
    found = _degenerate(tmp_path, "random", _samples(10, LOOPING) + _samples(90, LOOPING))
    assert found["degenerate-generations"].severity.value == "warning"


def test_never_ending_samples(tmp_path: Path) -> None:
    long = [{"step": 20, "prompt": "p", "completion": f"A long but varied answer number {i} about many things", "hit_max_tokens": True} for i in range(4)]
    found = _degenerate(tmp_path, "noeos", _samples(5, SANE) + long)
    assert found["degenerate-generations"].severity.value == "warning"
    assert found["degenerate-generations"].evidence["never_ending_share"] == 1.0


# ------------------------------------------------------------------ the error line in `runs`
def _runs_text(tmp_path: Path, **env: str) -> list[str]:
    from tests.cli.helpers import run_script

    base = {"COLUMNS": "80"}
    base.update(env)
    res = run_script("runs", "--runs-dir", str(tmp_path), env=base)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def test_runs_table_shows_the_error_under_a_failed_or_stopped_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    evil = "RuntimeError: boom [bold]not markup[/bold] \x1b[31mred " + "y" * 200
    make_run_dir(tmp_path, "crashed", status={"state": "failed", "exit_code": 1, "error": evil, "started": "2025-01-03T00:00:00Z", "ended": "2025-01-03T00:01:00Z"})
    make_run_dir(tmp_path, "halted", status={"state": "stopped", "exit_code": -15, "error": "stopped on request", "started": "2025-01-02T00:00:00Z", "ended": "2025-01-02T00:01:00Z"})
    make_run_dir(tmp_path, "done", status={"state": "finished", "exit_code": 0, "started": "2025-01-01T00:00:00Z", "ended": "2025-01-01T00:01:00Z"})
    lines = _runs_text(tmp_path)
    assert lines[0].split() == ["name", "state", "step", "loss", "findings", "started", "duration"]
    rows = [i for i, ln in enumerate(lines) if ln.split() and ln.split()[0] in ("crashed", "halted", "done")]
    assert [lines[i].split()[0] for i in rows] == ["crashed", "halted", "done"]  # newest first, one line each
    err = lines[rows[0] + 1]
    assert err.startswith("  RuntimeError: boom [bold]not markup[/bold] red yyy")  # inert: markup shown, escape gone
    assert len(err) == 80 and err.endswith("…"), err  # one line, cut to the terminal width
    assert lines[rows[1] + 1] == "  stopped on request"
    assert rows[2] == len(lines) - 1, "a finished run has no error line"
    assert not any("\x1b" in ln for ln in lines)
    # in colour, the error line is dimmed
    colour = _runs_text(tmp_path, FORCE_COLOR="1")
    (err_c,) = [ln for ln in colour if "RuntimeError: boom" in ln]
    assert err_c.startswith("\x1b[2m  RuntimeError: boom")
