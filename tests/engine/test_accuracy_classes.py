"""Classes of misdiagnosis found on real logs, each on a real (corpus) or realistic series.

Every test here failed before the detector or parser change it covers: a class of problem that
nothing reported, or a report that was wrong for the run it described.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import corpus_file
from tuneterm.engine import RuleSet, evaluate, load_rules
from tuneterm.engine.model import Finding
from tuneterm.logs import load_run
from tuneterm.logs.model import Run


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(scopes=["log"])


def _by_name(findings: list[Finding]) -> dict[str, Finding]:
    return {f.name: f for f in findings}


def _dict_line(step: int, loss: float) -> str:
    return f"{{'loss': {loss:.4f}, 'grad_norm': 1.2, 'learning_rate': 2e-05, 'epoch': {step / 1000:.3f}}}\n"


# --------------------------------------------------------------------------- cut-off traceback
def test_log_ending_inside_a_traceback_is_a_crash(tmp_path: Path, rules: RuleSet) -> None:
    # The process died mid-backward while printing its traceback (killed by the host, output cut):
    # no exception line follows the frames, far from max_steps. Nothing fired before.
    log = tmp_path / "train.log"
    log.write_text(
        "***** Running training *****\n  Num examples = 20,000\n  Total optimization steps = 2,500\n"
        + "".join(_dict_line(s, 2.0 - s / 1000) for s in range(1, 31))
        + "Traceback (most recent call last):\n"
        '  File "/home/u/train.py", line 141, in <module>\n'
        "    trainer.train()\n"
        '  File "/opt/venv/lib/python3.11/site-packages/transformers/trainer.py", line 2325, in train\n'
        "    return inner_training_loop(\n"
        '  File "/opt/venv/lib/python3.11/site-packages/torch/autograd/__init__.py", line 266, in backward\n'
        "    Variable._execution_engine.run_backward(\n",
        encoding="utf-8",
    )
    f = _by_name(evaluate(load_run(log), rules))["run-crashed"]
    assert f.severity.value == "error"
    assert f.evidence["exception"] == "TruncatedTraceback" and "backward" in f.evidence["text"]
    assert f.line == 34  # the Traceback line


def test_complete_traceback_is_not_reported_as_cut_off(tmp_path: Path, rules: RuleSet) -> None:
    log = tmp_path / "train.log"
    log.write_text(
        "".join(_dict_line(s, 2.0) for s in range(1, 4))
        + "Traceback (most recent call last):\n  File \"train.py\", line 9, in <module>\n    trainer.train()\n"
        "ValueError: too many dimensions 'str'\n",
        encoding="utf-8",
    )
    run = load_run(log)
    assert [e.code for e in run.events] == ["ValueError"]


# ----------------------------------------------------------------------- wrong diagnoses: loss
def test_negative_loss_is_its_own_finding_not_memorization(rules: RuleSet) -> None:
    # Corpus 004 (Unsloth SFT): loss reaches ~0 then goes negative at 19 of 60 logs. More
    # epochs would not be the problem; the logged number is not a cross-entropy.
    found = _by_name(evaluate(load_run(corpus_file("004_")), rules))
    assert "memorization" not in found
    f = found["negative-loss"]
    assert f.severity.value == "error" and f.evidence["count"] == 19 and f.evidence["min_value"] < 0
    assert not any(x.key == "num_train_epochs" for x in f.fixes)


def test_nan_hidden_as_zero_is_not_memorization(tmp_path: Path, rules: RuleSet) -> None:
    # transformers' logging_nan_inf_filter logs a window of NaN steps as loss 0.0 while grad_norm
    # shows nan: nan-or-inf reports it; memorisation it is not.
    lines = [f"{{'loss': {2.2 - 0.02 * s:.4f}, 'grad_norm': 1.1, 'learning_rate': 2e-05, 'epoch': {s / 100:.2f}}}\n" for s in range(1, 41)]
    lines += [f"{{'loss': 0.0, 'grad_norm': nan, 'learning_rate': 2e-05, 'epoch': {s / 100:.2f}}}\n" for s in range(41, 61)]
    log = tmp_path / "train.log"
    log.write_text("".join(lines), encoding="utf-8")
    found = _by_name(evaluate(load_run(log), rules))
    assert "memorization" not in found
    assert found["nan-or-inf"].severity.value == "error" and found["nan-or-inf"].evidence["hidden"]


def test_tqdm_rounded_zero_is_not_an_exact_zero(rules: RuleSet) -> None:
    # Corpus 054: a tqdm postfix prints `loss 0.0000` for any loss below 5e-05. The loss going to
    # ~0 is memorisation; "exactly 0" it is not.
    run = load_run(corpus_file("054_"))
    assert run.train["loss"].resolution == pytest.approx(1e-4)
    found = _by_name(evaluate(run, rules))
    assert "zero-loss" not in found and "memorization" in found


# ------------------------------------------------------------------ wrong diagnoses: numerics
def test_nan_grad_norm_in_the_first_steps_then_finite_is_the_scaler_calibrating(rules: RuleSet) -> None:
    # Corpus 057 (Unsloth T4 fp16 reference): grad_norm NaN at steps 1-3, finite afterwards, the
    # loss finite throughout: the loss scaler skipped its first steps. Not a persistent error.
    f = _by_name(evaluate(load_run(corpus_file("057_")), rules))["nan-or-inf"]
    assert f.severity.value == "info" and "persistent" not in f.message
    assert "scaler" in f.message


# ------------------------------------------------------------------------------ schedule / RL
def _run_from(points: dict[str, list[tuple[int, float]]], trainer: str = "sft", **facts: object) -> Run:
    run = Run("realistic", "fixture")
    run.facts.trainer_kind = trainer  # type: ignore[assignment]
    for k, v in facts.items():
        setattr(run.facts, k, v)
    for name, pts in points.items():
        for st, v in pts:
            run.add_train(name, st, v)
    return run


def test_lr_decay_reaching_zero_at_the_last_steps_is_the_designed_end(rules: RuleSet) -> None:
    # Linear decay to 0 over 600 steps: below 1% of the peak only at the last 1% of the run.
    # The loss barely moved (a plateau, reported by loss-plateau), but the schedule did not end early.
    n = 600
    run = _run_from({
        "learning_rate": [(s, 2e-4 * (1 - s / n)) for s in range(10, n + 1, 10)],
        "loss": [(s, 1.80 - 0.0001 * s) for s in range(10, n + 1, 10)],
    }, finished=True)
    assert "lr-decayed-early" not in _by_name(evaluate(run, rules))


def test_lr_decayed_message_never_says_only_improved_by_a_lot(rules: RuleSet) -> None:
    # The rate sat at ~0 for the last 40% of a run whose loss fell 90%: report the idle stretch,
    # not a loss that "only improved 90%".
    run = _run_from({
        "learning_rate": [(s, max(1e-8, 2e-4 * (1 - s / 300))) for s in range(5, 501, 5)],
        "loss": [(s, 2.0 * (1 - 0.9 * s / 500)) for s in range(5, 501, 5)],
    }, finished=True)
    f = _by_name(evaluate(run, rules))["lr-decayed-early"]
    assert "only improved" not in f.message and "negligible rate" in f.message


def test_grpo_capped_by_max_steps_is_not_low_data_coverage(rules: RuleSet) -> None:
    # 250 GRPO steps drawing 4 prompts each from a 7,473-prompt pool (13% of it): max_steps is the design.
    run = _run_from({
        "reward": [(s, 0.2 + s / 500) for s in range(1, 251)],
        "epoch": [(s, s * 4 / 7473) for s in range(1, 251)],
        "reward_std": [(s, 0.3) for s in range(1, 251)],
    }, trainer="grpo", finished=True, max_steps=250, num_examples=7473)
    assert "low-data-coverage" not in _by_name(evaluate(run, rules))


def test_grpo_first_step_zero_grad_with_no_reward_variance_is_expected(rules: RuleSet) -> None:
    run = _run_from({
        "grad_norm": [(1, 0.0)] + [(s, 0.2) for s in range(2, 101)],
        "reward_std": [(1, 0.0)] + [(s, 0.4) for s in range(2, 101)],
        "reward": [(s, 0.1 + s / 200) for s in range(1, 101)],
        "loss": [(s, 0.0) for s in range(1, 101)],
    }, trainer="grpo", finished=True, max_steps=100)
    assert "zero-grad-norm" not in _by_name(evaluate(run, rules))


# --------------------------------------------------------------------- multi-phase divergence
def _noisy_loss(phases: list[tuple[float, float, int]], seed: int) -> Run:
    """A per-step loss through linear phases with the multiplicative batch noise of a small
    batch (log-normal, sigma 0.35); a fixed seed keeps the series identical on every machine."""
    import math
    import random

    rng = random.Random(seed)
    pts: list[tuple[int, float]] = []
    for a, b, n in phases:
        for i in range(n):
            pts.append((len(pts) + 1, (a + (b - a) * i / max(1, n - 1)) * math.exp(rng.gauss(0, 0.35))))
    return _run_from({"loss": pts, "learning_rate": [(s, 3e-4) for s, _ in pts]}, finished=True)


PHASES = [(4, 1.0, 300), (1.0, 3.5, 100), (3.5, 3.8, 500), (3.8, 1.3, 200), (1.3, 3.6, 150), (3.6, 3.4, 250),
          (3.4, 1.2, 150), (1.2, 1.3, 120), (1.3, 3.2, 80)]


@pytest.mark.parametrize("seed", range(4))
def test_multi_phase_divergence_in_a_noisy_loss(rules: RuleSet, seed: int) -> None:
    # Twice back at 3-4x the best level for hundreds of steps, a dip between, ending 3x above the
    # best and below a high start: the end-vs-start and "last stretch stays up" tests miss it.
    f = _by_name(evaluate(_noisy_loss(PHASES, seed), rules))["divergence"]
    assert f.evidence["pattern"] == "phases of divergence" and f.evidence["phase_share_pct"] >= 25
    assert 250 <= f.evidence["min_step"] <= 320


@pytest.mark.parametrize("seed", range(4))
def test_noisy_healthy_loss_is_not_divergence(rules: RuleSet, seed: int) -> None:
    healthy = [(2.5, 1.0, 300), (1.0, 2.8, 100), (2.8, 1.0, 200), (1.0, 0.9, 1000)]  # one bump, recovered
    assert "divergence" not in _by_name(evaluate(_noisy_loss(healthy, seed), rules))
