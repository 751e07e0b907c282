"""Evaluation mechanics: crash isolation, message filling, sorting, trainer filtering."""

from __future__ import annotations

from tuneterm.engine import Detection, Rule, Severity, detector, evaluate, fill_message, load_rules
from tuneterm.logs.model import Run


@detector("test-raises", params={}, evidence=())
def _raises(run: Run, params: object) -> list[Detection]:
    raise ZeroDivisionError("boom \x1b[2J")


def test_a_crashing_detector_becomes_an_info_finding() -> None:
    rule = Rule(code="T901", name="test-crash", category="test", severity=Severity.ERROR,
                trainers=("sft",), detector="test-raises", summary="s", message="m", why="w")
    run = Run("x", "test")
    run.facts.trainer_kind = "sft"
    (f,) = evaluate(run, [rule])
    assert f.severity is Severity.INFO and "detector crashed" in f.message
    assert "ZeroDivisionError" in f.message and "\x1b" not in f.message


def test_fill_message_is_safe() -> None:
    assert fill_message("{a} {b:.2f} {c}", {"a": "x", "b": 1.234}) == "x 1.23 {c}"
    assert fill_message("{a.__class__}", {"a": 1}) == "{a.__class__}"
    assert fill_message("{a:>{w}}", {"a": 1, "w": 9}) == "1"  # nested fields are never looked up
    assert fill_message("{x:d}", {"x": "text"}) == "text"  # a spec that does not fit falls back
    assert fill_message("unbalanced {", {}) == "unbalanced {"


def test_sorted_by_severity_then_step_and_trainer_filtered() -> None:
    run = Run("x", "test")
    run.facts.trainer_kind = "grpo"
    for s in range(1, 31):
        run.add_train("loss", s, 0.0)  # normal for GRPO: zero-loss must not fire
        run.add_train("grad_norm", s, float("nan") if s == 20 else 0.5)
        run.add_train("frac_reward_zero_std", s, 1.0)
    findings = evaluate(run, load_rules(scopes=["log"]))
    names = [f.name for f in findings]
    assert "zero-loss" not in names
    ranks = [f.severity.rank for f in findings]
    assert ranks == sorted(ranks, reverse=True)
    assert {"nan-or-inf", "grpo-zero-reward-variance"} <= set(names)


def test_finding_line_points_into_the_log() -> None:
    run = Run("x", "test")
    run.facts.trainer_kind = "sft"
    for s in range(1, 11):
        run.add_train("grad_norm", s, 0.0)
        run.lines[s] = 100 + s
    (f,) = [f for f in evaluate(run, load_rules(scopes=["log"])) if f.name == "zero-grad-norm"]
    assert f.line == 101 and f.source == "x"
