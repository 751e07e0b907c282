"""``tuneterm watch PIPELINE``: a pipeline directory is followed stage after stage until the
pipeline itself ends, and the exit code says how it ended.

The pipeline directory is the launcher's own (:func:`tuneterm.train.pipeline.create` on the shipped
``configs/tiny-sft-dpo.yaml``); the test then plays the driver with the same ``pipeline.json`` and
run-directory updates the driver and the launcher make (``tuneterm.train.pipeline_driver``,
``tuneterm.train.launch``), with a ``sleep`` process as each stage's supervisor, instead of
training for real.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.conftest import REPO
from tests.watch.helpers import TUNETERM, cli_env
from tuneterm.runs.layout import METRICS, RunDir, create_run_dir, initial_status
from tuneterm.runs.pipeline import PipelineDir
from tuneterm.runs.writer import now_iso
from tuneterm.train.pipeline import create, prepare


def _pipeline(tmp_path: Path) -> PipelineDir:
    """The directory ``tuneterm train configs/tiny-sft-dpo.yaml`` makes, its driver started."""
    pd = create(prepare(REPO / "configs" / "tiny-sft-dpo.yaml"), runs_dir=tmp_path / "runs", name="pipe")
    pd.update(pid=os.getpid(), pgid=os.getpgid(0), state="running", ended=None, error=None)
    return pd


def _start_stage(pd: PipelineDir, index: int, steps: int) -> tuple[RunDir, subprocess.Popen[bytes]]:
    """Stage ``index`` launched and training: its run directory with ``steps`` healthy metrics rows,
    then the driver's records (as ``_run_stage`` writes them)."""
    rec = pd.stage(index)
    supervisor = subprocess.Popen(["sleep", "120"])
    rd = create_run_dir(pd.path, str(rec["dir"]), str(rec["dir"]))
    status = initial_status(rd, trainer=str(rec["trainer"]), method=str(rec["method"]), command=["tuneterm", "train"])
    rd.update_status(**status)
    with open(rd.path / METRICS, "a", encoding="utf-8") as fh:
        for s in range(1, steps + 1):
            fh.write(json.dumps({"loss": 2.0 - 0.05 * s, "grad_norm": 1.0, "learning_rate": 1e-4, "step": s, "epoch": s / 100}) + "\n")
    rd.update_status(state="running", pid=supervisor.pid, pgid=supervisor.pid, step=steps, max_steps=steps)
    pd.update_stage(index, state="running", started=now_iso(), model="tuneterm:tiny-llama", handover="base")
    pd.update(current=index, state="running")
    return rd, supervisor


def _finish_stage(rd: RunDir, supervisor: subprocess.Popen[bytes]) -> None:
    """The stage's training ended cleanly and its supervisor exited."""
    rd.update_status(state="finished", ended=now_iso(), exit_code=0)
    supervisor.kill()
    supervisor.wait()


def _pass_gate(pd: PipelineDir, index: int) -> None:
    gate = {"passed": True, "fail_on": "error", "reasons": [], "findings": [], "prescription": None, "eval": None}
    pd.update_stage(index, state="passed", ended=now_iso(), gate=gate)


def _watch_in_background(pd: PipelineDir, tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    """``tuneterm watch PIPELINE --headless`` started, its stderr going to a file the test reads."""
    err_file = tmp_path / "watch.err"
    with open(err_file, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [str(TUNETERM), "watch", str(pd.path), "--headless", "--heartbeat", "0"],
            stdout=subprocess.PIPE, stderr=err, text=True, env=cli_env(), cwd=tmp_path,
        )
    return proc, err_file


def _wait_for(path: Path, text: str, proc: subprocess.Popen[str], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text(encoding="utf-8"):
        assert proc.poll() is None, f"watch ended before {text!r}:\n{path.read_text(encoding='utf-8')}"
        assert time.monotonic() < deadline, f"no {text!r} in:\n{path.read_text(encoding='utf-8')}"
        time.sleep(0.1)


def test_watch_follows_the_next_stage_and_ends_with_the_pipeline(tmp_path: Path) -> None:
    pd = _pipeline(tmp_path)
    sft, sft_sup = _start_stage(pd, 1, steps=12)
    proc, err_file = _watch_in_background(pd, tmp_path)
    try:
        _wait_for(err_file, "watching stage 01-sft", proc)
        # stage 1 ends; the driver checks its gate (current still 1), then launches stage 2
        _finish_stage(sft, sft_sup)
        _wait_for(err_file, "waiting for its gate and the next stage", proc)
        assert proc.poll() is None  # the pipeline is not over: the watch must not end here
        _pass_gate(pd, 1)
        dpo, dpo_sup = _start_stage(pd, 2, steps=6)
        _wait_for(err_file, "watching stage 02-dpo", proc)
        _finish_stage(dpo, dpo_sup)
        _pass_gate(pd, 2)
        pd.update(state="finished", current=None, ended=now_iso())
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = err_file.read_text(encoding="utf-8")
    assert proc.returncode == 0, err + out
    lines = err.splitlines()
    said = [next(i for i, line in enumerate(lines) if text in line) for text in (
        "pipeline pipe: watching stage 01-sft",
        "01-sft: finished",
        "pipeline pipe: stage 01-sft ended; waiting for its gate and the next stage",
        "pipeline pipe: stage 2/2 running; watching stage 02-dpo",
        "02-dpo: finished",
        "pipeline pipe finished: every stage passed its gate",
    )]
    assert said == sorted(said), err
    # nothing said the pipeline had ended before its last stage did
    assert not any("pipeline pipe finished" in line for line in lines[: said[-1]]), err


def test_watch_of_a_gated_pipeline_says_why_and_exits_1(tmp_path: Path) -> None:
    pd = _pipeline(tmp_path)
    sft, sup = _start_stage(pd, 1, steps=12)
    _finish_stage(sft, sup)
    _pass_gate(pd, 1)
    dpo, sup = _start_stage(pd, 2, steps=6)
    _finish_stage(dpo, sup)
    reason = "rewards/margins stayed at 0"
    pd.update_stage(2, state="gate-failed", ended=now_iso(), gate={"passed": False, "fail_on": "error", "reasons": [reason]})
    pd.update(state="gated", current=None, ended=now_iso(), error=f"stage 2 (dpo): {reason}")
    r = subprocess.run(
        [str(TUNETERM), "watch", str(pd.path), "--headless", "--heartbeat", "0"],
        capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=120,
    )
    assert r.returncode == 1, r.stderr
    assert "pipeline pipe: watching stage 02-dpo" in r.stderr  # the last stage started
    assert f"pipeline pipe gated: stage 2 (dpo): {reason}" in r.stderr


def test_watch_of_a_pipeline_whose_driver_died_exits_1(tmp_path: Path) -> None:
    pd = _pipeline(tmp_path)
    sft, sup = _start_stage(pd, 1, steps=12)
    _finish_stage(sft, sup)
    gone = subprocess.Popen(["true"])
    gone.wait()
    pd.update(pid=gone.pid)  # the driver was killed between stages, recording nothing
    r = subprocess.run(
        [str(TUNETERM), "watch", str(pd.path), "--headless", "--heartbeat", "0"],
        capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=120,
    )
    assert r.returncode == 1, r.stderr
    assert f"pipeline pipe died: its driver (pid {gone.pid}) is gone" in r.stderr


def test_watch_right_after_a_detached_launch_waits_for_the_first_stage(tmp_path: Path) -> None:
    """`tuneterm train PIPELINE --detach` prints `tuneterm watch <dir>`; run at once, the driver is
    still preparing stage 1: the watch waits for it instead of refusing, then follows it."""
    pd = _pipeline(tmp_path)
    proc, err_file = _watch_in_background(pd, tmp_path)
    try:
        _wait_for(err_file, "pipeline pipe: waiting for its first stage to start", proc)
        sft, sup = _start_stage(pd, 1, steps=4)
        _wait_for(err_file, "pipeline pipe: stage 1/2 running; watching stage 01-sft", proc)
        _finish_stage(sft, sup)
        pd.update_stage(1, state="gate-failed", ended=now_iso(), gate={"passed": False, "fail_on": "error", "reasons": ["x"]})
        pd.update(state="gated", current=None, ended=now_iso(), error="stage 1 (sft): x")
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = err_file.read_text(encoding="utf-8")
    assert proc.returncode == 1, err + out
    assert "pipeline pipe gated: stage 1 (sft): x" in err


def test_watch_of_a_pipeline_that_dies_before_its_first_stage_exits_1(tmp_path: Path) -> None:
    pd = _pipeline(tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait()
    pd.update(pid=gone.pid)
    r = subprocess.run(
        [str(TUNETERM), "watch", str(pd.path), "--headless", "--heartbeat", "0"],
        capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=120,
    )
    assert r.returncode == 1, r.stderr
    assert "waiting for its first stage to start" in r.stderr
    assert f"pipeline pipe died: its driver (pid {gone.pid}) is gone" in r.stderr
