"""The fault matrix (docs/fault-matrix.md): what ``runs``, ``watch``, ``doctor`` and ``stop`` say
after each way a run can be hurt, and that nothing already written is lost.

Four real tiny trainings, started together once for the module (each is slowed by the ``sleep``
fault so that there is time to hurt it):

* ``sup``: launched twice at once with the same ``--name`` (one launch must refuse), then its
  supervisor is SIGKILLed while the worker trains; ``watch`` follows the orphan, ``stop`` stops it;
* ``wk``: its training process is SIGKILLed (the supervisor records it);
* ``grp``: launched from a shell that gets SIGHUP (the run goes on), then its whole process group
  is SIGKILLed (nothing can record it: ``died``);
* ``disk``: the disk is full for three steps (``enospc`` fault) and training goes on.

The corrupt status.json and the run written by another host need no training: crafted run
directories.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.train.conftest import TINY, run_cli, status, tiny_model, tuneterm_exe  # noqa: F401 - fixture
from tests.watch.helpers import make_run_dir

pytestmark = [pytest.mark.slow, pytest.mark.train]

SLOW = "sleep=0.25"
LONG = "max_steps=400"


def _popen(args: list[str], cwd: Path, fault: str | None = None, **kw: Any) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("TUNETERM_FAULT", None)
    if fault:
        env["TUNETERM_FAULT"] = fault
    return subprocess.Popen([*tuneterm_exe(), *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _wait(pred: Any, what: str, timeout: float = 240.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _status_or_empty(d: Path) -> dict[str, Any]:
    try:
        return status(d)
    except (OSError, ValueError):
        return {}


def _step_at_least(d: Path, n: int) -> bool:
    return (_status_or_empty(d).get("step") or 0) >= n and (d / "metrics.jsonl").is_file()


def _runs(root: Path) -> dict[str, dict[str, Any]]:
    proc = run_cli(["runs", "--json", "--runs-dir", str(root)], cwd=root)
    assert proc.returncode == 0, proc.stderr
    return {r["name"]: r for r in json.loads(proc.stdout)}


def _alive(pid: int) -> bool:
    from tuneterm.runs.processes import pid_alive

    return pid_alive(pid)


def _lines(d: Path) -> list[str]:
    return (d / "metrics.jsonl").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def runs(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Start the four runs (module docstring); yields the runs directory, kills leftovers after."""
    root = tmp_path_factory.mktemp("matrix")
    common = ["--runs-dir", str(root), "--sample-every", "1000"]
    # Two launches of the same name in the same second: exactly one may claim it.
    twins = [_popen(["train", str(TINY), "--detach", "--name", "sup", "--set", LONG, *common], root, SLOW) for _ in range(2)]
    _popen(["train", str(TINY), "--detach", "--name", "wk", "--set", LONG, *common], root, SLOW).wait(120)
    _popen(["train", str(TINY), "--detach", "--name", "disk", "--set", "max_steps=12", *common], root, "enospc@3=3").wait(120)
    # The launching shell of `grp` is a login-like shell in its own session that follows the run.
    cmd = shlex.join([*tuneterm_exe(), "train", str(TINY), "--headless", "--name", "grp", "--set", LONG, *common])
    shell = subprocess.Popen(["bash", "-c", cmd], cwd=root, start_new_session=True, env={**os.environ, "TUNETERM_FAULT": SLOW},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    outs = [t.communicate(timeout=120) for t in twins]
    root_twins = [(t.returncode, o, e) for t, (o, e) in zip(twins, outs)]
    (root / "twins.json").write_text(json.dumps(root_twins))
    (root / "shell.json").write_text(json.dumps(shell.pid))  # a session leader: its pgid is its pid
    try:
        yield root
    finally:
        shell.kill()
        for d in root.iterdir():
            if (d / "status.json").is_file():
                from tuneterm.runs.control import stop_run
                from tuneterm.runs.layout import RunDir

                stop_run(RunDir(d), grace_s=0)


def test_same_name_same_second_one_claims_it(runs: Path) -> None:
    twins = json.loads((runs / "twins.json").read_text())
    codes = sorted(c for c, _, _ in twins)
    assert codes == [0, 2], twins
    refused = next(e for c, _, e in twins if c == 2)
    assert "already exists" in refused and "Traceback" not in refused
    assert [p.name for p in runs.iterdir() if p.name.startswith("sup")] == ["sup"]


def test_supervisor_killed_run_stays_running_and_stop_stops_it(runs: Path) -> None:
    d = runs / "sup"
    _wait(lambda: _step_at_least(d, 3), "sup to train")
    st = status(d)
    sup, worker = st["pid"], st["worker_pid"]
    os.kill(sup, signal.SIGKILL)
    _wait(lambda: not _alive(sup), "the supervisor to die", 20)
    seen = len(_lines(d))
    _wait(lambda: len(_lines(d)) > seen + 2, "the orphaned worker to keep training", 60)
    assert _alive(worker)
    row = _runs(runs)["sup"]
    assert row["state"] == "running", row
    assert "supervisor" in (row["note"] or "") and str(worker) in row["note"]
    _wait(lambda: _status_or_empty(d).get("supervisor_lost"), "the worker to record the supervisor's death", 30)
    doc = run_cli(["doctor", str(d)], cwd=runs)
    assert "run-vanished" not in doc.stdout and "nothing recorded how it ended" not in doc.stdout, doc.stdout
    watcher = _popen(["watch", "sup", "--headless", "--runs-dir", str(runs), "--heartbeat", "1"], runs)
    time.sleep(4)
    assert watcher.poll() is None, watcher.communicate()  # following the orphan, not calling it died
    before = len(_lines(d))
    stop = run_cli(["stop", "sup", "--runs-dir", str(runs), "--grace", "60"], cwd=runs)
    assert stop.returncode == 0, stop.stderr
    assert "training process pid" in stop.stderr and "stopped at step" in stop.stderr
    out, err = watcher.communicate(timeout=60)
    assert "sup: stopped at step" in err and "died" not in err, err
    assert "step" in out + err and "steps/s" in out + err  # the heartbeat line
    st = status(d)
    rows = [json.loads(x) for x in _lines(d)]
    last = max(r["step"] for r in rows)
    assert st["state"] == "stopped" and st["step"] == last and 3 <= last < 400, st
    assert st["exit_code"] == 0 and st["supervisor_lost"]
    assert len(rows) >= before  # nothing already written was lost
    assert json.loads((d / "worker-0.json").read_text())["state"] == "stopped"
    row = _runs(runs)["sup"]
    assert row["state"] == "stopped" and row["step"] == last
    table = run_cli(["runs", "--runs-dir", str(runs)], cwd=runs, env={"COLUMNS": "80"})
    assert f"{last}/400 (" in table.stdout, table.stdout


def test_worker_killed_is_failed_at_its_step(runs: Path) -> None:
    d = runs / "wk"
    _wait(lambda: _step_at_least(d, 3) and _status_or_empty(d).get("worker_pid"), "wk to train")
    os.kill(status(d)["worker_pid"], signal.SIGKILL)
    st = _wait(lambda: _status_or_empty(d).get("state") == "failed" and status(d), "the supervisor to record the death", 60)
    assert st["signal"] == "SIGKILL" and "killed by SIGKILL" in st["error"] and st["exit_code"] == -9
    last = max(json.loads(x)["step"] for x in _lines(d))
    row = _runs(runs)["wk"]
    assert row["state"] == "failed" and row["step"] >= last
    doc = run_cli(["doctor", str(d)], cwd=runs)
    assert doc.returncode == 1 and "SIGKILL" in doc.stdout, doc.stdout[-2000:]
    stop = run_cli(["stop", "wk", "--runs-dir", str(runs)], cwd=runs)
    assert stop.returncode == 0 and "already failed" in stop.stderr


def test_sighup_of_the_shell_then_group_kill_is_died(runs: Path) -> None:
    d = runs / "grp"
    _wait(lambda: _step_at_least(d, 3), "grp to train")
    # The terminal closes: SIGHUP to the shell's whole session/group (the following `tuneterm train`).
    shell_pgid = json.loads((runs / "shell.json").read_text())
    os.killpg(shell_pgid, signal.SIGHUP)
    seen = len(_lines(d))
    _wait(lambda: len(_lines(d)) > seen + 2, "the run to survive SIGHUP", 60)
    assert _runs(runs)["grp"]["state"] == "running"
    st = status(d)
    os.killpg(st["pgid"], signal.SIGKILL)  # the whole group: supervisor and worker at once
    _wait(lambda: not _alive(st["pid"]) and not _alive(st["worker_pid"]), "the group to die", 20)
    before = _lines(d)
    row = _runs(runs)["grp"]
    assert row["state"] == "died" and row["errors"] >= 1, row
    doc = run_cli(["doctor", str(d)], cwd=runs)
    assert "run-vanished" in doc.stdout, doc.stdout[-2000:]
    stop = run_cli(["stop", "grp", "--runs-dir", str(runs)], cwd=runs)
    assert stop.returncode == 0 and "already gone" in stop.stderr
    watch = run_cli(["watch", "grp", "--headless", "--runs-dir", str(runs)], cwd=runs, timeout=60)
    assert watch.returncode == 1 and "died" in watch.stderr
    assert _lines(d)[: len(before)] == before


def test_disk_full_while_writing_metrics_loses_only_those_lines(runs: Path) -> None:
    d = runs / "disk"
    st = _wait(lambda: _status_or_empty(d).get("state") in ("finished", "failed") and status(d), "disk to end", 240)
    assert st["state"] == "finished", st
    steps = [json.loads(x)["step"] for x in _lines(d) if "loss" in json.loads(x)]
    assert steps == [1, 2, 6, 7, 8, 9, 10, 11, 12], steps  # steps 3-5 hit the full disk
    assert st["write_errors"]["first_step"] == 3 and st["write_errors"]["lines"] >= 3
    assert "No space left on device" in st["write_errors"]["error"]
    assert "cannot write metrics.jsonl" in (d / "stderr.log").read_text()
    assert _runs(runs)["disk"]["state"] == "finished"
    doc = run_cli(["doctor", str(d)], cwd=runs)
    assert doc.returncode in (0, 1) and "Traceback" not in doc.stderr


# ------------------------------------------------------------------ crafted run directories
def test_corrupt_status_json(tmp_path: Path) -> None:
    d = make_run_dir(tmp_path, "torn", status={"state": "running", "pid": 999999}, steps=8)
    (d / "status.json").write_text('{"state": "runn', encoding="utf-8")  # half-written by a foreign tool
    row = _runs(tmp_path)["torn"]
    assert row["state"] == "unknown" and row["step"] == 8
    doc = run_cli(["doctor", str(d)], cwd=tmp_path)
    assert doc.returncode in (0, 1) and "Traceback" not in doc.stderr and "step 8" in doc.stdout
    stop = run_cli(["stop", "torn", "--runs-dir", str(tmp_path)], cwd=tmp_path)
    assert stop.returncode == 0 and "already gone" in stop.stderr
    watch = run_cli(["watch", "torn", "--headless", "--no-follow", "--runs-dir", str(tmp_path)], cwd=tmp_path, timeout=60)
    assert "Traceback" not in watch.stderr
    from tuneterm.runs.layout import RunDir

    RunDir(d).update_status(state="failed")  # a later writer keeps the torn file aside
    assert (d / "status.json.corrupt").read_text() == '{"state": "runn'
    assert len(_lines(d)) == 8


def test_run_from_another_host_is_never_judged_by_local_pids(tmp_path: Path) -> None:
    me = os.getpid()  # alive here, but the pid means nothing on the other host
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    other = f"not-{socket.gethostname()}"
    make_run_dir(tmp_path, "far-alive", status={"state": "running", "pid": me, "host": other})
    make_run_dir(tmp_path, "far-gone", status={"state": "running", "pid": gone.pid, "host": other})
    rows = _runs(tmp_path)
    assert rows["far-alive"]["state"] == "running?" and rows["far-gone"]["state"] == "running?"
    for name in ("far-alive", "far-gone"):
        stop = run_cli(["stop", name, "--runs-dir", str(tmp_path)], cwd=tmp_path)
        assert stop.returncode == 2 and f"runs on host {other}" in stop.stderr
        doc = run_cli(["doctor", str(tmp_path / name)], cwd=tmp_path)
        assert "run-vanished" not in doc.stdout
    assert _alive(me)


def test_auto_names_in_the_same_second_do_not_collide(tmp_path: Path) -> None:
    from tuneterm.runs.layout import create_run_dir

    names = {create_run_dir(tmp_path, None, "tiny").name for _ in range(3)}
    assert len(names) == 3
