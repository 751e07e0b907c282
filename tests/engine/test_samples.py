"""The shipped demo runs tell their stories, and regenerate byte for byte."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from tuneterm.engine import evaluate, load_rules
from tuneterm.runs.load import load_source as load_run
from tuneterm.resources import samples_dir


def _findings(name: str) -> dict[str, str]:
    run = load_run(samples_dir() / name)
    return {f.name: f.severity.value for f in evaluate(run, load_rules(scopes=["log"]))}


def test_qlora_undertrained_story() -> None:
    run = load_run(samples_dir() / "qlora-undertrained")
    assert run.facts.vocab_size == 32000 and run.facts.lora_r == 16 and run.facts.trainer_kind == "sft"
    found = _findings("qlora-undertrained")
    assert found["zero-grad-norm"] == "error"
    for name in ("loss-plateau", "eval-loss-frozen", "lr-decayed-early", "low-data-coverage"):
        assert name in found


def test_grpo_no_signal_story() -> None:
    found = _findings("grpo-no-signal")
    assert found["grpo-zero-reward-variance"] == "error"
    assert "grpo-completions-truncated" in found
    assert "zero-loss" not in found  # GRPO's ~0 loss is normal


def test_samples_are_reproducible(tmp_path: Path) -> None:
    root = samples_dir()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".json", ".yaml"))
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    subprocess.run([sys.executable, str(root / "make_samples.py")], check=True)
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    assert before == after
