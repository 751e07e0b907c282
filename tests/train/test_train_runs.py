"""Real training runs through the real console script and the launcher (slow: seconds each)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.train.conftest import TINY, TINY_DPO, TINY_GRPO, metrics, run_cli, status, tuneterm_exe

pytestmark = [pytest.mark.slow, pytest.mark.train]


def _wait_state(run_dir: Path, states: set[str], timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run_dir / "status.json").exists():
            st = status(run_dir)
            if st.get("state") in states:
                return st
        time.sleep(0.3)
    raise AssertionError(f"run never reached {states}: {status(run_dir)}")


def test_headless_tiny_run_exits_0_with_complete_run_dir(tiny_model: str, tmp_path: Path) -> None:
    proc = run_cli(["train", str(TINY), "--headless", "--runs-dir", "runs", "--name", "tiny"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rd = tmp_path / "runs" / "tiny"
    assert proc.stdout.splitlines()[0] == "tiny"
    assert "step 30/30" in proc.stdout
    for name in ("config.yaml", "launch.json", "status.json", "metrics.jsonl", "samples.jsonl", "gpu.jsonl",
                 "stdout.log", "stderr.log"):
        assert (rd / name).is_file(), name
    cfg = yaml.safe_load((rd / "config.yaml").read_text())
    assert cfg["model_name_or_path"] == "tuneterm:tiny-llama" and cfg["logging_nan_inf_filter"] is False
    # the planner's estimate for this config is recorded, to set against the measured peak on a GPU
    est = json.loads((rd / "launch.json").read_text())["memory_estimate"]
    assert est["model"] == "tuneterm:tiny-llama" and est["method"] == "full" and est["peak_gib"] > 0
    st = status(rd)
    assert st["state"] == "finished" and st["exit_code"] == 0 and st["step"] == 30 and st["max_steps"] == 30
    assert st["pid"] and st["pgid"] == st["pid"] and st["host"] and st["started"] and st["ended"]
    assert st["trainer"] == "sft" and st["method"] == "full" and st["error"] is None
    rows = metrics(rd)
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == list(range(1, 31))
    assert all(isinstance(r["loss"], float) and isinstance(r["time"], float) for r in train_rows)
    assert train_rows[-1]["loss"] < train_rows[0]["loss"] - 1.0, "the tiny model must actually learn"
    samples = [json.loads(x) for x in (rd / "samples.jsonl").read_text().splitlines()]
    assert samples and {"step", "prompt", "completion", "n_tokens", "hit_max_tokens"} <= set(samples[0])
    assert max(s["step"] for s in samples) == 30
    gpu = [json.loads(x) for x in (rd / "gpu.jsonl").read_text().splitlines()]
    assert gpu and gpu[0]["device"] == "cpu" and gpu[0]["rss_mib"] > 0
    assert (rd / "output" / "config.json").is_file(), "the trained model is saved in output_dir"
    # A healthy run must stay free of warnings, not only of errors (issue 2), and pass the CI gate.
    doc = json.loads((rd / "findings.json").read_text())
    assert [f["name"] for f in doc["findings"] if f["severity"] != "info"] == []
    check = run_cli(["check", str(rd), "--fail-on", "warning"], cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    # Watched live, the same run raises nothing at any step either (no false alarm mid-run).
    from tests.engine.test_live_prefixes import assert_clean_at_every_step, assert_clean_when_replayed

    assert_clean_at_every_step(rd)
    assert_clean_when_replayed(rd, tmp_path)


@pytest.mark.parametrize(
    ("config", "sets", "trainer", "method", "metric"),
    [
        (TINY, {"use_peft": True, "lora_target_modules": "all-linear", "learning_rate": 1e-2}, "sft", "lora", "loss"),
        (TINY, {"use_peft": True, "load_in_4bit": True, "lora_target_modules": "all-linear"}, "sft", "qlora", "loss"),
        (TINY, {"use_peft": True, "use_dora": True, "lora_target_modules": "all-linear"}, "sft", "dora", "loss"),
        (TINY_DPO, {}, "dpo", "lora", "rewards/margins"),
        (TINY_GRPO, {}, "grpo", "lora", "reward"),
    ],
    ids=["sft-lora", "sft-qlora", "sft-dora", "dpo-lora", "grpo-lora"],
)
def test_trainers_and_methods_run_end_to_end(
    tiny_model: str, tmp_path: Path, config: Path, sets: dict, trainer: str, method: str, metric: str
) -> None:
    from tuneterm.train.config import resolve
    from tuneterm.train.launch import launch

    cfg = resolve(config, overrides={**sets, "max_steps": 4})
    assert (cfg.trainer, cfg.method) == (trainer, method)
    launched = launch(cfg, runs_dir=tmp_path, name="r", sample_every=1000)
    assert launched.proc.wait(timeout=300) == 0, (tmp_path / "r" / "stderr.log").read_text()[-3000:]
    st = status(tmp_path / "r")
    assert st["state"] == "finished" and st["step"] == 4 and (st["trainer"], st["method"]) == (trainer, method)
    rows = [r for r in metrics(tmp_path / "r") if metric in r]
    assert len(rows) == 4 and all(isinstance(r[metric], float) for r in rows)
    out = tmp_path / "r" / "output"
    if method == "full":
        assert (out / "config.json").is_file()
    else:
        adapter = json.loads((out / "adapter_config.json").read_text())
        assert adapter["peft_type"] == "LORA" and adapter["use_dora"] is (method == "dora")


def test_detached_run_survives_sighup_of_its_launching_session(tiny_model: str, tmp_path: Path) -> None:
    cmd = shlex.join([*tuneterm_exe(), "train", str(TINY), "--detach", "--runs-dir", "runs", "--name", "bg",
                    "--set", "max_steps=12"])
    env = dict(os.environ, TUNETERM_FAULT="sleep=0.4")
    # The "SSH session": a shell in its own session that launches the run and then lingers.
    shell = subprocess.Popen(["bash", "-c", f"{cmd}; sleep 120"], cwd=tmp_path, env=env, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rd = tmp_path / "runs" / "bg"
    try:
        st = _wait_state(rd, {"running", "finished", "failed"})
        assert st["state"] == "running"
        os.killpg(shell.pid, signal.SIGHUP)  # the connection drops
        assert shell.wait(timeout=20) != 0
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
    final = _wait_state(rd, {"finished", "failed", "stopped"})
    assert final["state"] == "finished" and final["step"] == 12 and final["exit_code"] == 0


def test_two_process_run_on_cpu_logs_from_rank_0_only(tiny_model: str, tmp_path: Path) -> None:
    proc = run_cli(["train", str(TINY), "--headless", "--runs-dir", "runs", "--name", "ddp", "--gpus", "2",
                    "--set", "max_steps=4", "--sample-every", "1000"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rd = tmp_path / "runs" / "ddp"
    st = status(rd)
    assert st["state"] == "finished" and st["world_size"] == 2 and "accelerate.commands.launch" in st["command"]
    steps = [r["step"] for r in metrics(rd) if "loss" in r]
    assert steps == [1, 2, 3, 4], "one metrics line per step: only rank 0 writes"


def test_training_exception_is_recorded_as_failed(tiny_model: str, tmp_path: Path) -> None:
    proc = run_cli(["train", str(TINY), "--headless", "--runs-dir", "runs", "--name", "crash"], cwd=tmp_path,
                   env={"TUNETERM_FAULT": "crash@3"})
    assert proc.returncode == 1
    st = status(tmp_path / "runs" / "crash")
    assert st["state"] == "failed" and st["exit_code"] == 1
    assert st["error"] == "RuntimeError: injected fault: crash"
    assert "Traceback (most recent call last)" in (tmp_path / "runs" / "crash" / "stderr.log").read_text()
    assert "RuntimeError: injected fault: crash" in proc.stderr


def test_signal_death_and_stop_are_recorded(tiny_model: str, tmp_path: Path) -> None:
    from tuneterm.train.config import resolve
    from tuneterm.runs.control import stop_run
    from tuneterm.train.launch import launch
    from tuneterm.runs.layout import RunDir

    os.environ["TUNETERM_FAULT"] = "sleep=0.5"
    try:
        cfg = resolve(TINY, overrides={"max_steps": 200})
        killed = launch(cfg, runs_dir=tmp_path, name="killed", sample_every=1000)
        stopped = launch(cfg, runs_dir=tmp_path, name="stopped", sample_every=1000)
    finally:
        del os.environ["TUNETERM_FAULT"]
    st = _wait_state(tmp_path / "killed", {"running"})
    while status(tmp_path / "killed").get("step", 0) < 1:
        time.sleep(0.2)
    os.kill(st["worker_pid"], signal.SIGKILL)  # e.g. the kernel's OOM killer
    killed.proc.wait(timeout=30)
    st = status(tmp_path / "killed")
    assert st["state"] == "failed" and st["signal"] == "SIGKILL" and st["exit_code"] == -9
    assert "killed by SIGKILL" in st["error"]

    _wait_state(tmp_path / "stopped", {"running"})
    while status(tmp_path / "stopped").get("step", 0) < 1:
        time.sleep(0.2)
    assert stop_run(RunDir(tmp_path / "stopped"), grace_s=30, proc=stopped.proc) == "stopped"
    st = status(tmp_path / "stopped")
    assert st["state"] == "stopped" and st["stop_requested"] is True and 1 <= st["step"] < 200
    assert st["signal"] is None, "the graceful path ended the run without SIGKILL"
