"""Formats met in public training logs that were not read before: Training_PRO console lines,
key=value lines of hand-written loops, JSON dumps naming the history differently, and console
logs without step numbers whose logging_steps (or tqdm counter) sets the steps.

Fixtures and their provenance: tests/fixtures/logs/README.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tuneterm.engine import evaluate, load_rules
from tuneterm.logs import load_run

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "logs"


def test_training_pro_step_prefixed_dicts() -> None:
    run = load_run(FIX / "training_pro_console.log")
    loss = run.train["loss"]
    assert list(loss.steps[:3]) == [3, 7, 11] and loss.steps[-1] == 79
    assert loss.values[0] == pytest.approx(2.4395)
    assert all(math.isinf(v) for v in run.train["grad_norm"].values)
    # every grad_norm is inf: the fp16 scaler never found a finite scale, a persistent error
    (f,) = [f for f in evaluate(run, load_rules(scopes=["log"])) if f.name == "nan-or-inf"]
    assert f.severity.value == "error" and f.first_step == 3


def test_key_value_loop_lines() -> None:
    run = load_run(FIX / "kv_loop_sft.log")
    loss, lr = run.train["loss"], run.train["learning_rate"]
    assert len(loss) == 60 and list(loss.steps[:2]) == [10, 20] and loss.steps[-1] == 600
    assert loss.values[0] == pytest.approx(12.1181) and lr.values[0] == pytest.approx(1.97e-4)
    assert run.facts.max_steps == 611


@pytest.mark.parametrize(
    "line",
    [
        "[train] step=78290 tokens=1282.7M loss=2.0442 lr=1.97e-04 tok/s=12487",
        "[44/411 10.7%] loss= 1.8358  lr=1.97e-04  grad= 0.4367  el=04:42  eta=39:12",
        "INFO:nano_llm.train:Epoch 15/40 train_loss=1.5802 val_loss=1.6659 val_ppl=5.29 lr=2.08e-04",
    ],
)
def test_other_key_value_shapes(tmp_path: Path, line: str) -> None:
    log = tmp_path / "train.log"
    log.write_text(line + "\n", encoding="utf-8")
    run = load_run(log)
    assert run.train["loss"].values[0] > 0 and run.train["learning_rate"].values[0] > 0
    assert run.train["loss"].steps[0] in (78290, 44, 15)


def test_training_arguments_dump_lines_are_not_metrics(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("learning_rate=2e-05,\nlogging_steps=5,\nweight_decay=0.0,\n", encoding="utf-8")
    run = load_run(log)
    assert not run.train and run.facts.learning_rate == pytest.approx(2e-5) and run.facts.logging_steps == 5


@pytest.mark.parametrize("name", ["history_payload_raw_log_history.json", "history_payload_scalar_series.json"])
def test_json_dumps_with_other_history_names(name: str) -> None:
    run = load_run(FIX / name)
    loss = run.train["loss"]
    assert len(loss) == 20 and loss.steps[0] == 1 and loss.values[0] == pytest.approx(2.4763)
    assert len(run.train["learning_rate"]) == 20
    assert "grad_norm" in run.train


@pytest.mark.parametrize("name", ["stepless_logging_steps_2.log", "stepless_tqdm_counter.log"])
def test_stepless_console_takes_logging_steps_from_the_log(name: str) -> None:
    # Dicts without a step, logged every 2 steps: steps 2..40, not 1..20.
    run = load_run(FIX / name)
    assert list(run.train["loss"].steps[:3]) == [2, 4, 6] and run.train["loss"].steps[-1] == 40


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  --logging_steps 10 \\\n", 10),
        ("logging_steps: 25\n", 25),
        ('config: {"output_dir": "out", "logging_steps": 5, "save_steps": 100}\n', 5),
        ("SFTConfig(output_dir='out', logging_steps=4, max_steps=100)\n", 4),
    ],
)
def test_logging_steps_sources(tmp_path: Path, text: str, expected: int) -> None:
    log = tmp_path / "train.log"
    log.write_text(text + "{'loss': 2.0, 'learning_rate': 1e-4, 'epoch': 0.1}\n{'loss': 1.9, 'learning_rate': 1e-4, 'epoch': 0.2}\n", encoding="utf-8")
    run = load_run(log)
    assert run.facts.logging_steps == expected
    assert list(run.train["loss"].steps) == [expected, 2 * expected]


def test_log_truncated_while_written_starts_with_nul_bytes(tmp_path: Path) -> None:
    # `> train.log` while the trainer keeps writing at its old offset leaves a hole of NUL bytes
    # before the new text; the shape of the lines is that of a hand-written loop (pipes, a bracketed
    # block of other key=value numbers).
    lines = "".join(
        f"step {s:>6} | loss {4.5 - s / 1000:.4f} | ppl {math.exp(4.5 - s / 1000):.1f} | lr 2.99e-04 | 427 tok/s | NT[DA=0.80 NE=0.70]\r\n"
        for s in range(700, 1000, 10)
    )
    log = tmp_path / "training.log"
    log.write_bytes(b"\x00" * 11363 + lines.encode())
    run = load_run(log)
    loss = run.train["loss"]
    assert len(loss) >= 29 and loss.steps[-1] == 990 and loss.values[-1] == pytest.approx(3.51)
    assert run.train["learning_rate"].values[0] == pytest.approx(2.99e-4)
