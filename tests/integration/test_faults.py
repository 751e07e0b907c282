"""Faults injected into real TRL runs are caught by the rules (issue 2); healthy runs stay clean.

Each test trains the built-in tiny model for real (CPU, seconds), with a fault injected through the
documented test-only hook ``TUNETERM_FAULT`` (tuneterm/train/faults.py) or through the config
itself, then evaluates the run directory with the same parser and rules as ``doctor``:
``evaluate(load_run(run_dir), load_rules())``. A rule that is not in rules/ yet skips its test.

Three of issue 2's cases are asserted on runs that other tests make anyway, so they are not
trained twice: the healthy run (no warning or error findings) is tests/train/test_train_runs.py's
headless tiny run; learning rate 0 -> ``lr-zero`` and a constant GRPO reward ->
``grpo-zero-reward-variance`` are the broken runs of tests/advise/test_fix_loop.py. NaN weights ->
``nan-or-inf`` is asserted on the live ``--stop-on error`` run below.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.train.conftest import TINY, run_cli, status, tiny_model  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.train]


def _rules() -> Any:
    from tuneterm.engine import load_rules

    return load_rules()


def _need(rule: str) -> None:
    assert _rules().get(rule) is not None, f"rule {rule} is missing from rules/"


@pytest.fixture
def fault_env() -> Iterator[None]:
    saved = os.environ.get("TUNETERM_FAULT")
    yield
    if saved is None:
        os.environ.pop("TUNETERM_FAULT", None)
    else:
        os.environ["TUNETERM_FAULT"] = saved


def _train(tmp_path: Path, config: Path, overrides: dict[str, Any], fault: str | None = None) -> Path:
    from tuneterm.train.config import resolve
    from tuneterm.train.launch import launch

    if fault:
        os.environ["TUNETERM_FAULT"] = fault
    else:
        os.environ.pop("TUNETERM_FAULT", None)
    launched = launch(resolve(config, overrides=overrides), runs_dir=tmp_path, name="run", sample_every=1000)
    launched.proc.wait(timeout=300)
    os.environ.pop("TUNETERM_FAULT", None)
    return launched.run.path


def _findings(run_dir: Path) -> dict[str, Any]:
    from tuneterm.engine import evaluate
    from tuneterm.runs.load import load_source as load_run

    return {f.name: f for f in evaluate(load_run(run_dir), _rules())}


def test_frozen_parameters_give_zero_grad_norm(tiny_model: str, tmp_path: Path, fault_env: None) -> None:
    _need("zero-grad-norm")
    rd = _train(tmp_path, TINY, {"max_steps": 12}, fault="freeze")
    found = _findings(rd)
    assert "zero-grad-norm" in found, sorted(found)
    assert found["zero-grad-norm"].severity.value == "error" and found["zero-grad-norm"].first_step == 1


def test_tiny_data_many_epochs_gives_overfitting(tiny_model: str, tmp_path: Path, fault_env: None) -> None:
    _need("overfitting")
    # Random word strings: nothing to generalise, everything to memorise. Eval loss falls while
    # the model learns word frequencies, then rises as it memorises the training rows.
    from tuneterm.assets.builtin import _training_texts

    words = sorted({w for t in _training_texts() for w in t.split() if w.isalpha()})
    rng = random.Random(0)
    data = tmp_path / "memorise.jsonl"
    import json

    data.write_text("".join(json.dumps({"text": " ".join(rng.choices(words, k=24))}) + "\n" for _ in range(40)))
    rd = _train(
        tmp_path,
        TINY,
        {"dataset_name": str(data), "max_steps": 90, "learning_rate": 1e-2, "warmup_steps": 0,
         "lr_scheduler_type": "constant", "eval_strategy": "steps", "eval_steps": 6, "logging_steps": 3},
    )
    assert status(rd)["state"] == "finished"
    found = _findings(rd)
    assert "overfitting" in found, sorted(found)


def test_stop_on_error_stops_a_nan_run_live(tiny_model: str, tmp_path: Path) -> None:
    _need("nan-or-inf")
    proc = run_cli(
        ["train", str(TINY), "--headless", "--stop-on", "error", "--runs-dir", "runs", "--name", "nan",
         "--set", "max_steps=200", "--sample-every", "1000"],
        cwd=tmp_path,
        env={"TUNETERM_FAULT": "nan-weights@3,sleep=0.2"},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr[-1500:]
    assert "nan-or-inf" in proc.stdout + proc.stderr
    st = status(tmp_path / "runs" / "nan")
    assert st["state"] == "stopped" and st["step"] < 200
    # NaN weights injected at step 3 are diagnosed from that step (the nan-weights fault of issue 2).
    found = _findings(tmp_path / "runs" / "nan")
    assert found["nan-or-inf"].severity.value == "error" and found["nan-or-inf"].first_step == 3
