"""TunetermCallback's own parts without a training run: config extraction from real
TrainingArguments and a real PEFT model, the stop path driven by real TrainerState/TrainerControl
objects through the rules thread, and argument checks (real trainings:
tests/train/test_public_callback.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.train.conftest import needs_trl
from tuneterm.errors import InputError

pytestmark = [pytest.mark.train, needs_trl]


def test_bad_arguments_fail_before_training(tmp_path: Path) -> None:
    from tuneterm import TunetermCallback

    (tmp_path / "taken").mkdir()
    with pytest.raises(InputError, match="already exists"):
        TunetermCallback(runs_dir=tmp_path, name="taken")
    with pytest.raises(InputError, match="invalid run name"):
        TunetermCallback(runs_dir=tmp_path, name="../escape")
    with pytest.raises(ValueError, match="stop_on"):
        TunetermCallback(stop_on="warning")


def test_config_from_training_arguments_and_a_peft_model(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig

    from tuneterm.train.attach import args_config, model_info, trainer_kind

    args = DPOConfig(output_dir=str(tmp_path), learning_rate=5e-6, beta=0.2, hub_token="secret", report_to=[], bf16=False, use_cpu=True)
    cfg = args_config(args)
    assert cfg["learning_rate"] == 5e-6 and cfg["beta"] == 0.2
    assert cfg["per_device_train_batch_size"] == args.per_device_train_batch_size  # always written
    assert "hub_token" not in cfg and "secret" not in json.dumps(cfg)
    assert all(isinstance(v, (str, int, float, bool, list, dict, type(None))) for v in cfg.values())
    def tiny() -> LlamaForCausalLM:
        return LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                            num_attention_heads=2, num_key_value_heads=2, vocab_size=64))

    assert model_info(tiny()).method == "full"
    peft = get_peft_model(tiny(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    info = model_info(peft)
    assert info.method == "lora"
    assert info.fields["use_peft"] is True and info.fields["lora_r"] == 4 and info.fields["lora_alpha"] == 8
    assert info.fields["lora_target_modules"] == ["q_proj", "v_proj"]
    assert trainer_kind(args, peft) == "dpo"


def test_an_error_finding_stops_training_at_the_next_step_end(tmp_path: Path) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from tuneterm import TunetermCallback

    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[], logging_steps=1, max_steps=100)
    state, control = TrainerState(), TrainerControl()
    state.max_steps = 100
    cb = TunetermCallback(runs_dir=tmp_path / "runs", name="lr0", stop_on="error", samples=False)
    cb.on_train_begin(args, state, control)
    step = 0
    deadline = time.monotonic() + 60
    while not control.should_training_stop and time.monotonic() < deadline:
        step += 1
        state.global_step = step
        cb.on_log(args, state, control, logs={"loss": 3.0, "grad_norm": 1.0, "learning_rate": 0.0, "epoch": step / 100})
        time.sleep(0.05)  # a training step
        cb.on_step_end(args, state, control)
    assert control.should_training_stop, "lr 0 at every step never stopped the run"
    assert 5 <= step < 100  # lr-zero needs 5 logged steps
    cb.on_train_end(args, state, control)
    status = json.loads((tmp_path / "runs" / "lr0" / "status.json").read_text())
    assert status["state"] == "stopped" and "S101 lr-zero" in status["stop_reason"]
    assert status["samples"].startswith("off: disabled")
    doc = json.loads((tmp_path / "runs" / "lr0" / "findings.json").read_text())
    assert [f["name"] for f in doc["findings"] if f["severity"] == "error"] == ["lr-zero"]
