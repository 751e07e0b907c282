"""``tuneterm watch`` end to end: a fake trainer under ``watch -- COMMAND``, growing log files,
``--stop-on error``, and the run directory it leaves."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.watch.helpers import FAKE_TRAINER, TUNETERM, cli_env
from tuneterm.runs.control import pid_alive


def _only_run(runs: Path) -> Path:
    dirs = [p for p in runs.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_nan_found_within_a_second_and_exit_1(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cmd = [str(TUNETERM), "watch", "--headless", "--runs-dir", str(runs), "--",
           sys.executable, str(FAKE_TRAINER), "--steps", "24", "--nan-at", "12", "--sleep", "0.15"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=tmp_path)
    seen: dict[str, float] = {}
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        # The first NaN of a live run is a warning until it persists (N101's min_trailing), then the
        # finding is printed again as "escalated: error ...": the error is what --stop-on acts on.
        if line.removeprefix("escalated: ").startswith("error N101 nan-or-inf") and "nan" not in seen:
            seen["nan"] = time.time()
    rc = proc.wait(timeout=60)
    err = proc.stderr.read() if proc.stderr else ""
    assert rc == 1, (lines, err)
    assert "nan" in seen, lines
    rd = _only_run(runs)
    assert lines[0].strip() == rd.name  # the run name comes first, for scripts
    marker = re.search(r"@@ t=([\d.]+) step=12\n", (rd / "stdout.log").read_text())
    assert marker, "the fake trainer's step-12 marker is in stdout.log"
    latency = seen["nan"] - float(marker.group(1))
    print(f"nan-or-inf reported {latency:.2f} s after the NaN line was written")
    assert latency < 1.5
    # the run directory: finished status, findings.json in the check --format json contract
    status = json.loads((rd / "status.json").read_text())
    assert status["state"] == "finished" and status["exit_code"] == 0
    doc = json.loads((rd / "findings.json").read_text())
    assert doc["tool"] == "tuneterm" and doc["summary"]["errors"] >= 1
    assert "nan-or-inf" in {f["name"] for f in doc["findings"]}
    # and `tuneterm check` reads the same run directory (console metrics of a command run)
    chk = subprocess.run([str(TUNETERM), "check", str(rd), "--format", "json"], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert chk.returncode == 1, chk.stderr
    assert "nan-or-inf" in {f["name"] for f in json.loads(chk.stdout)["findings"]}


def test_stop_on_error_stops_the_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cmd = [str(TUNETERM), "watch", "--headless", "--stop-on", "error", "--grace", "5", "--runs-dir", str(runs),
           "--name", "nanrun", "--", sys.executable, str(FAKE_TRAINER), "--steps", "40", "--nan-at", "5", "--sleep", "0.1", "--hang"]
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=60)
    took = time.monotonic() - t0
    assert res.returncode == 1, res.stderr
    assert "error N101 nan-or-inf" in res.stdout
    status = json.loads((runs / "nanrun" / "status.json").read_text())
    assert status["state"] == "stopped"
    assert "nan-or-inf" in status["stop_reason"] and "--stop-on error" in status["error"]
    assert not pid_alive(status["pid"])
    assert took < 20  # stopped early: the fake trainer would have hung for 60 s
    assert "stopped on error" in res.stderr
    # Diagnosed afterwards, tuneterm's own stop is not a crash and gets no resume advice.
    from tuneterm.engine import load_rules
    from tuneterm.runs.diagnose import diagnose

    found = {f.name: f for f in diagnose(runs / "nanrun", load_rules(scopes=["log"])).findings}
    assert "run-crashed" not in found
    assert found["run-interrupted"].severity.value == "info" and not found["run-interrupted"].fixes


def test_clean_run_exits_0(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    res = subprocess.run([str(TUNETERM), "watch", "--headless", "--runs-dir", str(runs), "--",
                          sys.executable, str(FAKE_TRAINER), "--steps", "12", "--sleep", "0.02"],
                         capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=60)
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert "error" not in res.stdout
    rd = _only_run(runs)
    assert json.loads((rd / "findings.json").read_text())["summary"]["errors"] == 0


def test_crashing_command_is_diagnosed(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    res = subprocess.run([str(TUNETERM), "watch", "--headless", "--runs-dir", str(runs), "--",
                          sys.executable, str(FAKE_TRAINER), "--steps", "12", "--sleep", "0.02", "--crash", "module"],
                         capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=60)
    assert res.returncode == 1
    assert "error X112 missing-package" in res.stdout
    assert "$ pip install bitsandbytes" in res.stdout
    assert "run-crashed" not in res.stdout  # reported once
    status = json.loads((_only_run(runs) / "status.json").read_text())
    assert status["state"] == "failed" and status["exit_code"] == 1


def test_command_not_found_is_exit_2(tmp_path: Path) -> None:
    res = subprocess.run([str(TUNETERM), "watch", "--runs-dir", str(tmp_path), "--", "no-such-trainer-cli", "train", "x.yaml"],
                         capture_output=True, text=True, env=cli_env(), timeout=60)
    assert res.returncode == 2
    assert "command not found: no-such-trainer-cli" in res.stderr
    assert "Traceback" not in res.stderr


def test_watch_growing_log_file(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("", encoding="utf-8")
    stop = threading.Event()

    def writer() -> None:
        with open(log, "a", encoding="utf-8") as fh:
            for s in range(1, 16):
                if stop.is_set():
                    return
                gn = "nan" if s >= 10 else "1.0"
                fh.write(f"{{'loss': {2 - 0.05 * s:.3f}, 'grad_norm': {gn}, 'learning_rate': 0.0001, 'epoch': {s / 100}}}\n")
                fh.flush()
                time.sleep(0.1)

    t = threading.Thread(target=writer)
    t.start()
    try:
        res = subprocess.run([str(TUNETERM), "watch", str(log), "--headless", "--idle-timeout", "1.5"],
                             capture_output=True, text=True, env=cli_env(), timeout=60)
    finally:
        stop.set()
        t.join()
    assert res.returncode == 1, res.stderr
    # reported once, not on every poll (plus, when a poll saw the first NaN alone, its warning
    # before the escalation: N101's live runs need two NaN in a row for an error)
    heads = [ln.removeprefix("escalated: ") for ln in res.stdout.splitlines() if "N101 nan-or-inf" in ln]
    assert [h.split(" ", 1)[0] for h in heads] in (["error"], ["warning", "error"]), heads
    assert "idle" in res.stderr


def test_watch_no_follow_clean_and_missing(tmp_path: Path) -> None:
    log = tmp_path / "ok.log"
    log.write_text("".join(f"{{'loss': {2 - 0.01 * s:.3f}, 'grad_norm': 1.0, 'learning_rate': 0.0001, 'epoch': {s / 100}}}\n" for s in range(1, 30)))
    res = subprocess.run([str(TUNETERM), "watch", str(log), "--headless", "--no-follow"], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert res.returncode == 0, (res.stdout, res.stderr)
    empty = tmp_path / "empty.log"
    empty.write_text("no metrics here\n")
    res = subprocess.run([str(TUNETERM), "watch", str(empty), "--headless", "--no-follow"], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert res.returncode == 3
    res = subprocess.run([str(TUNETERM), "watch", "no-such-run", "--headless", "--runs-dir", str(tmp_path)], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert res.returncode == 2 and "no run named 'no-such-run'" in res.stderr


def test_markup_and_escapes_in_log_are_inert(tmp_path: Path) -> None:
    log = tmp_path / "evil.log"
    lines = [f"{{'loss': 2.0, 'grad_norm': 1.0, 'learning_rate': 0.0001, 'epoch': {s / 100}}}\n" for s in range(1, 5)]
    lines.append("Traceback (most recent call last):\n  File \"x\", line 1\nValueError: [bold red]boom\x1b[31m\x1b]0;title\x07\n")
    log.write_text("".join(lines))
    res = subprocess.run([str(TUNETERM), "watch", str(log), "--headless", "--no-follow"], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert res.returncode == 1
    assert "[bold red]boom" in res.stdout
    assert "\x1b" not in res.stdout + res.stderr


@pytest.mark.parametrize("bad", [b"\x00\x01\x02binary\xff\xfe" * 100])
def test_binary_file_is_exit_2(tmp_path: Path, bad: bytes) -> None:
    p = tmp_path / "junk.bin"
    p.write_bytes(bad)
    res = subprocess.run([str(TUNETERM), "watch", str(p), "--headless", "--no-follow"], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert res.returncode == 2 and "binary" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
@pytest.mark.train
def test_real_tiny_run_with_nan_fault_caught_live(tmp_path: Path) -> None:
    """A real TRL run (E's `tuneterm train`, configs/tiny.yaml, CPU) with NaN weights injected at
    step 4: `watch --stop-on error` reports nan-or-inf live and stops the run."""
    from tuneterm.resources import configs_dir

    runs = tmp_path / "runs"
    env = {**cli_env(), "TUNETERM_FAULT": "nan-weights@4,sleep=0.3"}
    launch = subprocess.run([str(TUNETERM), "train", str(configs_dir() / "tiny.yaml"), "--detach", "--runs-dir", str(runs),
                             "--name", "faulty", "--set", "max_steps=200"], capture_output=True, text=True, env=env, timeout=120)
    assert launch.returncode == 0, launch.stderr
    res = subprocess.run([str(TUNETERM), "watch", "faulty", "--headless", "--stop-on", "error", "--grace", "30", "--runs-dir", str(runs)],
                         capture_output=True, text=True, env=cli_env(), timeout=400)
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "error N101 nan-or-inf" in res.stdout
    status = json.loads((runs / "faulty" / "status.json").read_text())
    assert status["state"] == "stopped", status
    assert status["step"] < 200
    assert not pid_alive(status["pid"])
    doc = json.loads((runs / "faulty" / "findings.json").read_text())
    assert "nan-or-inf" in {f["name"] for f in doc["findings"]}


def test_command_survives_ctrl_c_of_the_viewer(tmp_path: Path) -> None:
    import signal

    runs = tmp_path / "runs"
    cmd = [str(TUNETERM), "watch", "--headless", "--runs-dir", str(runs), "--name", "survivor", "--",
           sys.executable, str(FAKE_TRAINER), "--steps", "3", "--sleep", "0.05", "--hang"]
    viewer = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=tmp_path)
    status_file = runs / "survivor" / "status.json"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if status_file.is_file() and json.loads(status_file.read_text() or "{}").get("pid"):
            break
        time.sleep(0.1)
    time.sleep(1.0)
    viewer.send_signal(signal.SIGINT)  # what Ctrl-C sends to the viewer (not to the run: own session)
    _, err = viewer.communicate(timeout=30)
    assert viewer.returncode == 130, err
    assert "keeps going" in err
    status = json.loads(status_file.read_text())
    try:
        assert status["state"] in ("starting", "running") and pid_alive(status["pid"])
    finally:
        res = subprocess.run([str(TUNETERM), "stop", "survivor", "--runs-dir", str(runs), "--grace", "5"],
                             capture_output=True, text=True, env=cli_env(), timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(status_file.read_text())["state"] == "stopped"
