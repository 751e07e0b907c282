"""Run directory creation, naming, atomic status updates; fault spec and reward unit behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneterm.errors import ConfigError, InputError
from tuneterm.train.faults import Fault, parse_faults
from tuneterm.train.follow import MetricsTail, progress_line
from tuneterm.train.rewards import constant_reward, format_reward, length_reward
from tuneterm.runs.layout import RunDir, create_run_dir, runs_root


def test_runs_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TUNETERM_RUNS_DIR", str(tmp_path / "env"))
    assert runs_root(tmp_path / "flag") == tmp_path / "flag"
    assert runs_root(None) == tmp_path / "env"
    monkeypatch.delenv("TUNETERM_RUNS_DIR")
    assert runs_root(None) == Path("runs")


def test_create_run_dir_names(tmp_path: Path) -> None:
    a = create_run_dir(tmp_path, None, "tiny")
    b = create_run_dir(tmp_path, None, "tiny")
    assert a.name.startswith("tiny-") and a.path != b.path and a.path.is_dir() and b.path.is_dir()
    named = create_run_dir(tmp_path, "exp1", "tiny")
    assert named.path == tmp_path / "exp1"
    with pytest.raises(InputError, match="already exists"):
        create_run_dir(tmp_path, "exp1", "tiny")
    for bad in ("../escape", "a/b", "", ".."):
        with pytest.raises(InputError, match="invalid run name"):
            create_run_dir(tmp_path, bad, "tiny")


def test_update_status_merges_and_leaves_no_temp_files(tmp_path: Path) -> None:
    rd = RunDir(tmp_path)
    rd.update_status(state="starting", pid=1)
    rd.update_status(state="running", step=3)
    assert rd.read_status() == {"state": "running", "pid": 1, "step": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]
    (tmp_path / "status.json").write_text("{half")
    assert rd.read_status() == {}


def test_metrics_tail_waits_for_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.poll() == []
    path.write_text('{"step": 1, "loss": NaN}\n{"step": 2, "lo')
    rows = tail.poll()
    assert len(rows) == 1 and rows[0]["step"] == 1 and rows[0]["loss"] != rows[0]["loss"]
    with open(path, "a") as fh:
        fh.write('ss": 1.5}\nnot json\n')
    assert tail.poll() == [{"step": 2, "loss": 1.5}]


def test_progress_line_is_inert() -> None:
    line = progress_line({"step": 2, "loss": "\x1b[31m[bold]x", "learning_rate": 0.0}, None)
    assert line is not None and "\x1b" not in line and line.startswith("step 2")
    assert progress_line({"step": 2, "num_tokens": 5.0}, 10) is None


def test_parse_faults() -> None:
    assert parse_faults("freeze, nan-weights@4,sleep=0.25") == [
        Fault("freeze"),
        Fault("nan-weights", 4),
        Fault("sleep", None, 0.25),
    ]
    assert parse_faults(None) == []
    with pytest.raises(ConfigError, match="unknown fault"):
        parse_faults("explode")
    with pytest.raises(ConfigError, match="malformed"):
        parse_faults("crash@soon")


def test_builtin_rewards_conversational_and_plain() -> None:
    conv = [[{"role": "assistant", "content": "A cat sits."}], [{"role": "assistant", "content": ""}]]
    assert format_reward(conv) == [1.0, 0.0]
    assert length_reward(["x" * 20], target_chars=40) == [0.5]
    assert constant_reward(["a", "b", "c"]) == [1.0, 1.0, 1.0]


def test_status_json_is_valid_json_after_many_updates(tmp_path: Path) -> None:
    rd = RunDir(tmp_path)
    for i in range(50):
        rd.update_status(step=i, loss=float("nan"))
    data = json.loads((tmp_path / "status.json").read_text())
    assert data["step"] == 49


_WRITER = """
import sys
from pathlib import Path
from tuneterm.runs.layout import RunDir
rd, who = RunDir(Path(sys.argv[1])), sys.argv[2]
for i in range(150):
    rd.update_status(**{f"{who}{i}": i})
"""


def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    """The launcher, supervisor and training process update status.json at the same time: every
    field each of them wrote is in the file afterwards (without the lock, a read-merge-write that
    raced another put back the stale copy and dropped the other's fields)."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    rd = create_run_dir(tmp_path, "race", "tiny")
    rd.update_status(state="starting")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(rd.path), who], env=env) for who in ("a", "b", "c")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    status = json.loads(rd.status_file.read_text(encoding="utf-8"))
    missing = [f"{w}{i}" for w in "abc" for i in range(150) if f"{w}{i}" not in status]
    assert not missing, f"{len(missing)} updates lost, e.g. {missing[:5]}"
    assert status["state"] == "starting"


def test_a_signal_handler_updating_during_an_update_does_not_deadlock(tmp_path: Path) -> None:
    """An update from inside an update of the same process (a SIGTERM handler recording
    ``stop_requested`` while the supervisor records the exit) goes ahead instead of waiting for a
    lock this process holds itself."""
    import time

    from tuneterm.runs.writer import locked

    rd = create_run_dir(tmp_path, "nested", "tiny")
    start = time.monotonic()
    with locked(rd.path):
        rd.update_status(stop_requested=True)
    assert time.monotonic() - start < 1.0
    assert rd.read_status()["stop_requested"] is True
