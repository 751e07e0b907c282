"""TunetermCallback in the user's own trainer, W&B runs, notifications, compare: on real tiny runs.

Six real CPU trainings, made once per module by ``callback_runs`` in one user script
(tests/train/callback_script.py) that adds ``TunetermCallback`` to each of its trainers:

* ``hf-a``: a transformers ``Trainer``, learning rate 1e-3, also logging to W&B offline;
* ``hf-b``: the same at 4e-3 (the pair ``compare`` tells apart);
* ``sft-lr0``: TRL's ``SFTTrainer`` at learning rate 0 with ``stop_on="error"``, notifying a local
  HTTP receiver;
* ``hf-crash``: a Trainer whose script raises mid-training (a failing run), notifying the receiver;
* ``dpo-lora``, ``grpo-lora``: TRL's DPOTrainer and GRPOTrainer with a LoRA ``peft_config``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, Receiver, local_receiver
from tests.train.conftest import needs_trl, run_cli, status

pytestmark = [pytest.mark.slow, pytest.mark.train, needs_trl]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with local_receiver() as rec:
        yield rec


def _script(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "WANDB_SILENT": "true", **env}
    full.pop("TUNETERM_NOTIFY", None)
    full["XDG_CONFIG_HOME"] = str(cwd / "xdg")  # no user config file leaks in
    return subprocess.run(
        [sys.executable, "-m", "tests.train.callback_script", *args],
        cwd=cwd, env=full, capture_output=True, text=True, timeout=600, check=False,
    )


@pytest.fixture(scope="module")
def callback_runs(tiny_model: str, tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Path:
    """The module's real trainings (see the module docstring); returns their working dir.

    One user script (one process: each costs seconds of torch/transformers/TRL imports) trains the
    six models one after another; the callback's run directory, hooks and stop are per trainer, so
    a finished or stopped run leaves the next one untouched. ``hf-crash`` trains last: its
    uncaught exception ends the process with exit status 1, as any crashing script does.
    """
    cwd = tmp_path_factory.mktemp("callback")
    runs = str(cwd / "runs")
    dead = "json://127.0.0.1:9/"  # nothing listens on the discard port: a failing notifier
    scenarios = [
        ["hf", "1e-3", runs, "hf-a", "--wandb"],
        ["hf", "4e-3", runs, "hf-b"],
        ["sft", "0", runs, "sft-lr0", "--stop-on", "error", "--steps", "80", "--notify", receiver.url, "--notify", dead],
        ["dpo", "5e-4", runs, "dpo-lora", "--steps", "6", "--no-samples"],
        ["grpo", "5e-3", runs, "grpo-lora", "--steps", "4", "--no-samples"],
        ["hf", "1e-3", runs, "hf-crash", "--steps", "20", "--raise-at", "6", "--notify", receiver.url],
    ]
    proc = _script([arg for spec in scenarios for arg in ["+", *spec]][1:], cwd, {})
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    # every scenario before the crash trained to its end, each into its own run directory
    trained = [Path(line.split(" ", 2)[2]).name for line in proc.stdout.splitlines() if line.startswith("TRAINED")]
    assert trained == [spec[3] for spec in scenarios[:-1]], proc.stdout[-2000:] + proc.stderr[-3000:]
    return cwd


def test_import_stays_light() -> None:
    code = "import sys, tuneterm; assert 'transformers' not in sys.modules; print(tuneterm.__all__)"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "TunetermCallback" in proc.stdout


def test_healthy_trainer_run_is_a_clean_run_directory(callback_runs: Path) -> None:
    d = callback_runs / "runs" / "hf-a"
    st = status(d)
    assert st["state"] == "finished" and st["exit_code"] == 0 and st["step"] == 24
    assert st["pid"] == st["worker_pid"]  # the training process itself: `runs` can tell it died
    cfg = (d / "config.yaml").read_text()
    assert "learning_rate: 0.001" in cfg and "model_name_or_path:" in cfg
    launch = json.loads((d / "launch.json").read_text())
    assert launch["kind"] == "callback" and launch["trainer"] == "sft" and launch["method"] == "full"
    rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 25))
    assert (d / "gpu.jsonl").is_file()
    doc = json.loads((d / "findings.json").read_text())
    assert [f for f in doc["findings"] if f["severity"] in ("error", "warning")] == []
    proc = run_cli(["doctor", "runs/hf-a"], cwd=callback_runs)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_lr_zero_sft_run_is_stopped_early_and_listed(callback_runs: Path) -> None:
    d = callback_runs / "runs" / "sft-lr0"
    st = status(d)
    assert st["state"] == "stopped", st
    assert 5 <= st["step"] < 80  # lr-zero needs 5 logged steps; the run was meant for 80
    assert "lr-zero" in st["stop_reason"]
    doc = json.loads((d / "findings.json").read_text())
    assert any(f["name"] == "lr-zero" and f["severity"] == "error" for f in doc["findings"])
    assert json.loads((d / "launch.json").read_text())["trainer"] == "sft"
    proc = run_cli(["runs", "--runs-dir", "runs", "--json"], cwd=callback_runs)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["sft-lr0"]["state"] == "stopped" and rows["sft-lr0"]["errors"] >= 1
    assert rows["hf-a"]["state"] == "finished" and rows["hf-a"]["errors"] == 0
    assert rows["hf-crash"]["state"] == "failed"
    # The notifier that could not deliver was logged in the run, and training went on to its stop.
    assert "not delivered" in (d / "notify.log").read_text()


def test_crashed_script_is_recorded_failed(callback_runs: Path) -> None:
    d = callback_runs / "runs" / "hf-crash"
    st = status(d)
    assert st["state"] == "failed" and st["exit_code"] == 1
    assert st["error"].startswith("RuntimeError: injected failure at step 6")
    assert "Traceback" in (d / "stderr.log").read_text()
    proc = run_cli(["doctor", str(d)], cwd=callback_runs)
    assert proc.returncode == 1 and "run-crashed" in proc.stdout, proc.stdout


def test_notifications_reach_a_local_http_receiver(callback_runs: Path, receiver: Receiver) -> None:
    titles = [b["title"] for b in receiver.bodies]
    assert "tuneterm: sft-lr0: error lr-zero" in titles
    assert "tuneterm: sft-lr0 stopped" in titles
    assert "tuneterm: hf-crash failed" in titles
    assert len(titles) == len(set(titles))  # one message per event
    failed = next(b for b in receiver.bodies if b["title"] == "tuneterm: hf-crash failed")
    assert "run: hf-crash" in failed["message"] and "host: " in failed["message"]
    assert "RuntimeError: injected failure" in failed["message"]
    lr0 = next(b for b in receiver.bodies if b["title"] == "tuneterm: sft-lr0: error lr-zero")
    assert "fix: learning_rate:" in lr0["message"]


def test_wandb_offline_run_read_by_doctor_with_trainer_steps(callback_runs: Path) -> None:
    wandb_dirs = list((callback_runs / "wandb").glob("offline-run-*"))
    assert len(wandb_dirs) == 1
    proc = run_cli(["check", str(wandb_dirs[0]), "--format", "json"], cwd=callback_runs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["summary"]["format"] == "wandb" and doc["summary"]["steps"] == 24
    proc = run_cli(["doctor", "wandb"], cwd=callback_runs)
    assert proc.returncode == 0 and "24 steps" in proc.stdout, proc.stdout + proc.stderr
    # The same steps as the callback's own metrics.jsonl (W&B's _step counts log calls instead).
    from tuneterm.logs import load_run

    wb = load_run(wandb_dirs[0])
    own = load_run(callback_runs / "runs" / "hf-a")
    assert list(wb.train["loss"].steps) == list(own.train["loss"].steps) == list(range(1, 25))
    assert wb.facts.learning_rate == pytest.approx(1e-3)


def test_compare_two_real_runs_names_the_learning_rate(callback_runs: Path) -> None:
    proc = run_cli(["compare", "hf-a", "hf-b", "--runs-dir", "runs", "--format", "json"], cwd=callback_runs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    diff = {c["key"]: c["values"] for c in doc["config_diff"]}
    assert diff["learning_rate"] == {"a": pytest.approx(1e-3), "b": pytest.approx(4e-3)}
    assert "max_steps" not in diff  # only keys that differ
    assert "b's learning_rate is 4x a's" in doc["verdict"]
    loss = next(m for m in doc["metrics"] if m["metric"] == "loss")
    assert [c["run"] for c in loss["curves"]] == ["a", "b"]
    assert loss["curves"][0]["x"] == loss["curves"][1]["x"] == list(range(1, 25))
    # Any sources: the W&B copy of run a against run b, by epoch, as text with charts.
    wandb_dir = next((callback_runs / "wandb").glob("offline-run-*"))
    proc = run_cli(["compare", str(wandb_dir), "runs/hf-b", "--x", "epoch", "--width", "100"], cwd=callback_runs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "learning_rate" in proc.stdout and "loss" in proc.stdout


def test_compare_findings_diff_names_the_step(callback_runs: Path) -> None:
    proc = run_cli(["compare", "runs/hf-a", "runs/sft-lr0", "--format", "json"], cwd=callback_runs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    lr0 = next(f for f in doc["findings_diff"] if f["name"] == "lr-zero")
    assert lr0["first_step"]["a"] is None and lr0["first_step"]["b"] >= 1
    assert doc["verdict"].startswith("lr-zero (S101) fired in b from step")
    assert "a did not" in doc["verdict"]


@pytest.mark.parametrize(("name", "trainer", "metric"), [("dpo-lora", "dpo", "rewards/margins"), ("grpo-lora", "grpo", "reward")])
def test_trl_preference_and_rl_trainers_through_the_callback(callback_runs: Path, name: str, trainer: str, metric: str) -> None:
    d = callback_runs / "runs" / name
    assert status(d)["state"] == "finished"
    launch = json.loads((d / "launch.json").read_text())
    assert launch["trainer"] == trainer and launch["method"] == "lora"
    assert "lora_r: 8" in (d / "config.yaml").read_text()
    rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert any(metric in r for r in rows)
    proc = run_cli(["check", str(d), "--format", "json"], cwd=callback_runs)
    doc = json.loads(proc.stdout)
    assert doc["summary"]["trainer"] == trainer
    # GRPO's near-zero loss and DPO's ln 2 start are normal for these trainers: no error.
    assert doc["summary"]["errors"] == 0 and proc.returncode == 0, doc["findings"]
