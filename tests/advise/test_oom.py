"""An out-of-memory crash: the micro-batch halved with accumulation doubled (the effective batch
kept), fused cross-entropy when the traceback ends in the loss, and the planner command filled with
the model and the GPU memory the OOM message states."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.advise.test_invariants import parse_tuneterm
from tests.integration.test_oom_phase import GEN_TRACEBACK
from tuneterm.advise import Prescription, advise
from tuneterm.preflight.advice_context import key_schema
from tuneterm.engine import evaluate, load_rules
from tuneterm.logs import load_run

HERE = Path(__file__).resolve().parent


def _advise(path: Path) -> Prescription:
    run = load_run(str(path))
    return advise(run, evaluate(run, load_rules(scopes=["log"])), schema=key_schema(build=True))


def test_training_step_oom_in_the_loss(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    shutil.copy(HERE / "oom_loss.log", log)
    (tmp_path / "sft_config.yaml").write_text(
        "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nper_device_train_batch_size: 8\n"
        "gradient_accumulation_steps: 2\nlearning_rate: 1.0e-4\nuse_peft: true\nlora_r: 16\n")
    p = _advise(log)
    patch = p.patch()
    assert patch["per_device_train_batch_size"] == 4 and patch["gradient_accumulation_steps"] == 4
    assert patch["use_liger_kernel"] is True
    plan = next(s.command for s in p.steps if s.command.startswith("tuneterm plan"))
    assert plan == "tuneterm plan --model Qwen/Qwen2.5-7B-Instruct --gpu-memory 23.55GiB"
    parse_tuneterm(plan)
    train = next(s.command for s in p.steps if "tuneterm train" in s.command)
    assert str(tmp_path / "sft_config.yaml") in train
    parse_tuneterm(train)


def test_generation_oom_keeps_the_training_batch(tmp_path: Path) -> None:
    log = tmp_path / "grpo.log"
    log.write_text(GEN_TRACEBACK)
    p = _advise(log)
    assert "per_device_train_batch_size" not in p.patch() and "use_liger_kernel" not in p.patch()
    assert not [s for s in p.steps if "MODEL" in s.command or "GIB" in s.command]  # nothing unfilled printed
