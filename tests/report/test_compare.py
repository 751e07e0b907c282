"""``tuneterm compare`` on real logs of the corpus: config diff, findings diff, verdict, exit codes.

(Two real tiny trainings with different learning rates are compared in
tests/train/test_public_callback.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tuneterm.report.compare import compare

LR5E3 = "005_qlora-lr5e-3-diverge_trainer_state.json"
LR5 = "006_qlora-lr5-collapse_trainer_state.json"
STATE = "015_mistral-translator_trainer_state.json"
LF_LOG = "016_mistral-translator_trainer_log.jsonl"  # the same run, LLaMA-Factory's own log


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tuneterm", "compare", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_learning_rates_from_the_logged_schedule_and_the_finding_that_differs(corpus: Path) -> None:
    cmp = compare([corpus / LR5E3, corpus / LR5])
    diff = {c.key: c.values for c in cmp.config}
    assert diff["learning_rate"] == (pytest.approx(5e-3), pytest.approx(5.0))
    uniform = next(f for f in cmp.findings if f.name == "uniform-prediction")
    assert uniform.first_steps[0] is None and uniform.first_steps[1] is not None
    assert cmp.verdict.startswith("uniform-prediction (L105) fired in b from step")
    assert "a did not" in cmp.verdict and "b's learning_rate is 1000x a's" in cmp.verdict
    loss = next(m for m in cmp.metrics if m.metric == "loss")
    assert [c.label for c in loss.curves] == ["a", "b"]


def test_the_same_run_from_two_formats_differs_in_nothing_but_what_a_format_cannot_say(corpus: Path) -> None:
    cmp = compare([corpus / STATE, corpus / LF_LOG])
    assert cmp.findings == ()
    assert cmp.verdict.startswith("no finding tells the runs apart; all end at loss")
    # Only facts one format records and the other does not are listed; none with two values.
    assert all(sum(v is not None for v in c.values) == 1 for c in cmp.config)
    loss = next(m for m in cmp.metrics if m.metric == "loss")
    assert loss.curves[0].xs == loss.curves[1].xs and loss.curves[0].ys == pytest.approx(loss.curves[1].ys)


def test_epoch_axis(corpus: Path) -> None:
    cmp = compare([corpus / STATE, corpus / LF_LOG], x="epoch")
    loss = next(m for m in cmp.metrics if m.metric == "loss")
    assert 0 < loss.curves[0].xs[0] < loss.curves[0].xs[-1] <= 4.0


def test_cli_json_text_and_exit_codes(corpus: Path, tmp_path: Path) -> None:
    proc = _cli([str(corpus / LR5E3), str(corpus / LR5), "--format", "json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [r["label"] for r in doc["runs"]] == ["a", "b"]
    assert doc["config_diff"][0]["values"].keys() == {"a", "b"}
    proc = _cli([str(corpus / LR5E3), str(corpus / LR5), "--width", "80"], tmp_path)
    assert proc.returncode == 0 and "config (only what differs)" in proc.stdout and "learning_rate" in proc.stdout
    assert _cli([str(corpus / LR5E3)], tmp_path).returncode == 2
    assert _cli([str(corpus / LR5E3), str(tmp_path / "missing.json")], tmp_path).returncode == 2
    empty = tmp_path / "empty.log"
    empty.write_text("no metrics in here\n")
    proc = _cli([str(corpus / LR5E3), str(empty)], tmp_path)
    assert proc.returncode == 3 and "no training metrics" in proc.stderr


def test_tokens_axis_aligns_runs_with_different_batch_sizes(tmp_path: Path) -> None:
    # Two TRL-style metric logs (num_tokens is TRL's running token count): run b sees twice the
    # tokens per step, so by tokens its curve ends twice as far right; a log without num_tokens
    # has no curve on that axis.
    def write(name: str, tokens_per_step: float | None) -> Path:
        p = tmp_path / f"{name}.jsonl"
        rows = []
        for s in range(1, 11):
            row = {"loss": 2.0 - 0.05 * s, "learning_rate": 1e-4, "step": s, "epoch": s / 10}
            if tokens_per_step is not None:
                row["num_tokens"] = tokens_per_step * s
            rows.append(json.dumps(row) + "\n")
        p.write_text("".join(rows))
        return p

    cmp = compare([write("a", 1000.0), write("b", 2000.0), write("c", None)], x="tokens")
    loss = next(m for m in cmp.metrics if m.metric == "loss")
    assert [c.label for c in loss.curves] == ["a", "b"]
    assert loss.curves[0].xs[-1] == 10_000.0 and loss.curves[1].xs[-1] == 20_000.0
    assert all(m.metric not in ("num_tokens", "epoch") for m in cmp.metrics)
