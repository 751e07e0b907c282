"""``tuneterm stop`` reaches every process of a run, including ranks in sessions of their own.

torch's elastic launcher (behind ``accelerate launch --multi_gpu``) starts each rank with
``start_new_session``, so the ranks are outside the supervisor's process group and a SIGKILL to the
group alone leaves them training. :func:`tuneterm.runs.control.stop_run` finds them by the
``TUNETERM_RUN_DIR`` every process of the run inherits. The first tests use plain processes set up
like a run (milliseconds); the last one stops a real two-rank CPU run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.train.conftest import TINY, run_cli, status
from tuneterm.runs.control import ProcRef, proc_alive, run_processes, stop_run
from tuneterm.runs.layout import RunDir

linux_only = pytest.mark.skipif(not (sys.platform.startswith("linux") and Path("/proc").is_dir()), reason="needs /proc")

IGNORE_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"


def with_env(value: str) -> list[int]:
    """Pids of live processes whose environment holds ``TUNETERM_RUN_DIR=value`` exactly (an
    independent scan, so the test does not check the code with itself)."""
    want = f"TUNETERM_RUN_DIR={value}".encode()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            env = Path("/proc", name, "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if want in env:
            out.append(int(name))
    return out


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _run_dir(root: Path, name: str, pid: int) -> RunDir:
    d = root / name
    d.mkdir()
    (d / "status.json").write_text(json.dumps({"state": "running", "pid": pid, "pgid": pid, "run_dir": str(d.resolve())}))
    return RunDir(d)


def _spawn(code: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True, env={**os.environ, **(env or {})})


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


@linux_only
def test_forced_stop_kills_a_rank_outside_the_process_group(tmp_path: Path, procs: list) -> None:
    sup = _spawn("import time; time.sleep(120)")
    rd = _run_dir(tmp_path, "r", sup.pid)
    value = str(rd.path.resolve())
    rank = _spawn(IGNORE_TERM, {"TUNETERM_RUN_DIR": value})  # its own session, like a torch rank
    procs += [sup, rank]
    # a process of another run whose path only shares a prefix must survive
    other = _spawn("import time; time.sleep(120)", {"TUNETERM_RUN_DIR": value + "0"})
    procs.append(other)
    deadline = time.monotonic() + 10
    while set(with_env(value)) != {rank.pid} and time.monotonic() < deadline:
        time.sleep(0.05)  # until the interpreter has exec'd
    assert os.getsid(rank.pid) != sup.pid, "the rank is outside the supervisor's session and group"
    assert {r.pid for r in run_processes(rd)} == {rank.pid}  # the sleeper is not tuneterm.train.child
    assert stop_run(rd, grace_s=0.0, poll_s=0.05) == "stopped"
    assert rank.wait(timeout=5) == -signal.SIGKILL
    assert sup.wait(timeout=5) in (-signal.SIGTERM, -signal.SIGKILL)
    assert with_env(value) == []
    assert other.poll() is None, "a different run's process was killed"
    st = rd.read_status()
    assert st["state"] == "stopped" and st["signal"] == "SIGKILL"


@linux_only
def test_graceful_stop_waits_for_the_ranks_too(tmp_path: Path, procs: list) -> None:
    # The supervisor ends at once on SIGTERM, a rank ignores it: the stop is not done until the
    # rank is gone, so it is SIGKILLed after the grace period.
    sup = _spawn("import time; time.sleep(120)")
    rd = _run_dir(tmp_path, "r", sup.pid)
    rank = _spawn(IGNORE_TERM, {"TUNETERM_RUN_DIR": str(rd.path.resolve())})
    procs += [sup, rank]
    deadline = time.monotonic() + 10
    while not run_processes(rd) and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    assert stop_run(rd, grace_s=0.6, poll_s=0.05) == "stopped"
    assert time.monotonic() - t0 >= 0.6, "returned while a rank was still alive"
    assert rank.wait(timeout=5) == -signal.SIGKILL
    assert sup.wait(timeout=5) == -signal.SIGTERM


@linux_only
def test_a_reused_pid_is_not_the_same_process(procs: list) -> None:
    p = _spawn("import time; time.sleep(120)")
    procs.append(p)
    start = int(Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    assert proc_alive(ProcRef(p.pid, start))
    assert not proc_alive(ProcRef(p.pid, start + 1))  # same pid, another start time: another process
    p.kill()
    p.wait()
    assert not proc_alive(ProcRef(p.pid, start))


@linux_only
@pytest.mark.slow
@pytest.mark.train
def test_stop_kills_every_rank_of_a_real_two_process_run(tiny_model: str, tmp_path: Path) -> None:
    proc = run_cli(
        ["train", str(TINY), "--detach", "--gpus", "2", "--runs-dir", "runs", "--name", "ddp", "--set", "max_steps=500",
         "--sample-every", "1000"],
        cwd=tmp_path,
        env={"TUNETERM_FAULT": "sleep=0.5"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rd = tmp_path / "runs" / "ddp"
    value = str(rd.resolve())
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            st = status(rd)
            assert st.get("state") in ("starting", "running"), st
            if (st.get("step") or 0) >= 1:
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"the run never reached step 1: {status(rd)}")
        before = with_env(value)
        assert len(before) >= 3, before  # accelerate's launcher and two ranks
        sup = status(rd)["pid"]
        assert {sup, *before} <= {r.pid for r in run_processes(RunDir(rd))}
        assert len({os.getsid(p) for p in before}) >= 3, "the ranks run in sessions of their own"
        t0 = time.monotonic()
        stopped = run_cli(["stop", "ddp", "--runs-dir", "runs", "--grace", "0"], cwd=tmp_path)
        took = time.monotonic() - t0
        assert stopped.returncode == 0, stopped.stderr
        assert with_env(value) == [], "a process of the run survived tuneterm stop"
        st = status(rd)
        assert st["state"] == "stopped" and st["stop_requested"] is True
        assert took < 30
    finally:
        _kill(with_env(value))
