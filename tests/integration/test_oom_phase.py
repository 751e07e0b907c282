"""An OOM is diagnosed by the phase it struck in (failure_modes.md FM-36, FM-38).

The console parser reads the traceback's frames into ``LogEvent.phase``; ``cuda-out-of-memory``
then proposes evaluation fixes (eval_accumulation_steps, smaller eval batches) for an OOM in the
evaluation loop, generation fixes for one in GRPO's sampling, and the planner's batch fixes for one
in the training step. The evaluation case is a real TRL run whose evaluation loop raises
``torch.OutOfMemoryError`` (the ``oom-eval`` fault of tuneterm/train/faults.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.train.conftest import TINY, tiny_model  # noqa: F401 - fixture
from tuneterm.runs.load import load_source as load_run

GEN_TRACEBACK = '''{'loss': '0.01', 'grad_norm': '0.3', 'learning_rate': '1e-06', 'reward': '0.5', 'epoch': '0.01'}
Traceback (most recent call last):
  File "/work/grpo.py", line 40, in <module>
    trainer.train()
  File "/venv/lib/python3.11/site-packages/trl/trainer/grpo_trainer.py", line 1012, in _prepare_inputs
    generation_batch = self._generate_and_score_completions(generation_batch)
  File "/venv/lib/python3.11/site-packages/trl/trainer/grpo_trainer.py", line 1402, in _generate_and_score_completions
    prompt_completion_ids = unwrapped_model.generate(
  File "/venv/lib/python3.11/site-packages/transformers/generation/utils.py", line 2610, in _sample
    outputs = self(**model_inputs, return_dict=True)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.10 GiB. GPU 0 has a total capacity of 23.55 GiB of which 1.20 GiB is free.
'''

TRAIN_TRACEBACK = '''{'loss': 1.25, 'grad_norm': 0.8, 'learning_rate': 0.0001, 'epoch': 0.02}
Traceback (most recent call last):
  File "/work/train.py", line 88, in <module>
    trainer.train()
  File "/venv/lib/python3.11/site-packages/transformers/trainer.py", line 3790, in training_step
    self.accelerator.backward(loss, **kwargs)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB. GPU 0 has a total capacity of 23.55 GiB of which 0.20 GiB is free.
'''


def _cuda_oom(run_path: Path) -> object:
    from tuneterm.engine import evaluate, load_rules

    found = {f.name: f for f in evaluate(load_run(run_path), load_rules(scopes=["log"]))}
    assert "cuda-out-of-memory" in found, sorted(found)
    return found["cuda-out-of-memory"]


def test_generation_oom_gets_generation_fixes(tmp_path: Path) -> None:
    log = tmp_path / "grpo.log"
    log.write_text(GEN_TRACEBACK)
    (ev,) = [e for e in load_run(log).events if e.kind == "oom"]
    assert ev.phase == "generation"
    keys = [fx.key for fx in _cuda_oom(log).fixes if fx.key]  # type: ignore[attr-defined]
    assert keys[0] == "max_completion_length" or "generation_batch_size" in keys, keys
    assert "eval_accumulation_steps" not in keys


def test_training_step_oom_has_no_phase(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text(TRAIN_TRACEBACK)
    (ev,) = [e for e in load_run(log).events if e.kind == "oom"]
    assert ev.phase is None
    keys = [fx.key for fx in _cuda_oom(log).fixes if fx.key]  # type: ignore[attr-defined]
    assert "eval_accumulation_steps" not in keys and "gradient_checkpointing" in keys, keys


@pytest.mark.slow
@pytest.mark.train
def test_real_evaluation_loop_oom_gets_eval_fixes(tiny_model: str, tmp_path: Path) -> None:
    from tuneterm.train.config import resolve
    from tuneterm.train.launch import launch

    saved = os.environ.get("TUNETERM_FAULT")
    os.environ["TUNETERM_FAULT"] = "oom-eval"
    try:
        launched = launch(
            resolve(TINY, overrides={"max_steps": 4, "eval_strategy": "steps", "eval_steps": 2}),
            runs_dir=tmp_path, name="evaloom", sample_every=1000,
        )
        launched.proc.wait(timeout=300)
    finally:
        if saved is None:
            os.environ.pop("TUNETERM_FAULT", None)
        else:
            os.environ["TUNETERM_FAULT"] = saved
    rd = launched.run.path
    assert "evaluation_loop" in (rd / "stderr.log").read_text(errors="replace")
    ooms = [e for e in load_run(rd).events if e.kind == "oom"]
    assert ooms and ooms[-1].phase == "eval", ooms
    finding = _cuda_oom(rd)
    keys = [fx.key for fx in finding.fixes if fx.key]  # type: ignore[attr-defined]
    assert keys[:2] == ["eval_accumulation_steps", "per_device_eval_batch_size"], keys
    # The training step fitted: the advice must not shrink the training batch.
    assert "per_device_train_batch_size" not in keys
