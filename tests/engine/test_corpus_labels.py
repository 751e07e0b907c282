"""The corpus's clear labels (shared/corpus/INDEX.md) reproduced by the rules on real logs."""

from __future__ import annotations

import pytest

from tests.conftest import corpus_file, corpus_files
from tuneterm.engine import RuleSet, evaluate, load_rules
from tuneterm.logs import load_run

HEALTHY = ["014", "015", "016", "017", "020", "021", "022", "028", "029", "030", "037", "038", "047", "053", "056", "058"]
EXPECTED = {
    "001": ("zero-grad-norm", "warning"),
    "008": ("zero-grad-norm", "warning"),
    "009": ("zero-grad-norm", "warning"),
    "002": ("nan-or-inf", None),
    "003": ("nan-or-inf", None),
    "004": ("nan-or-inf", None),
    "057": ("nan-or-inf", None),
    "005": ("divergence", None),
    "006": ("uniform-prediction", None),
    "011": ("overfitting", None),
    "012": ("overfitting", None),
    "055": ("overfitting", None),
    "024": ("loss-plateau", None),
    "026": ("loss-plateau", None),
    "040": ("loss-plateau", None),
    "042": ("loss-plateau", None),
    "044": ("loss-plateau", None),
    "050": ("loss-plateau", None),
    "007": ("grpo-zero-reward-variance", None),
    "010": ("grad-norm-spike", None),
    "013": ("zero-loss", None),
    "048": ("memorization", None),
    "049": ("run-interrupted", "info"),
}


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(scopes=["log"])


@pytest.mark.parametrize("prefix", HEALTHY)
def test_healthy_runs_have_no_warnings(rules: RuleSet, prefix: str) -> None:
    findings = evaluate(load_run(corpus_file(prefix + "_")), rules)
    loud = [f"{f.name}: {f.message}" for f in findings if f.severity.value != "info"]
    assert loud == []


@pytest.mark.parametrize("prefix", sorted(EXPECTED))
def test_labelled_runs(rules: RuleSet, prefix: str) -> None:
    name, severity = EXPECTED[prefix]
    findings = [f for f in evaluate(load_run(corpus_file(prefix + "_")), rules) if f.name == name]
    assert findings, f"{prefix}: {name} did not fire"
    if severity:
        assert findings[0].severity.value == severity


def test_uniform_prediction_names_the_vocab(rules: RuleSet) -> None:
    f = next(f for f in evaluate(load_run(corpus_file("006_")), rules) if f.name == "uniform-prediction")
    assert f.evidence["vocab_size"] == 32000 and "ln(32000)" in f.message


def test_multi_eval_sets_one_finding_naming_them(rules: RuleSet) -> None:
    # One overfitting run watched by six eval sets is one finding, not six; every set's numbers stay in the evidence.
    (f,) = [f for f in evaluate(load_run(corpus_file("012_")), rules) if f.name == "overfitting"]
    assert set(f.evidence["eval_sets"]) == {f"eval_g{i}" for i in range(6)}
    assert f.evidence["eval_sets"]["eval_g1"]["best_step"] == 401
    assert all(f"eval_g{i}" in f.message for i in range(6))


def test_interrupted_is_not_a_crash(rules: RuleSet) -> None:
    # Ctrl-C is its own finding: no crash, no out-of-memory among its causes.
    findings = evaluate(load_run(corpus_file("049_")), rules)
    assert "run-crashed" not in {f.name for f in findings}
    f = next(f for f in findings if f.name == "run-interrupted")
    assert f.evidence["pattern"] == "interrupted" and f.line is not None
    assert not any("memory" in c.lower() for c in f.causes)
    assert [x.key for x in f.fixes] == ["resume_from_checkpoint"]


def test_grpo_near_zero_loss_is_not_zero_loss(rules: RuleSet) -> None:
    for prefix in ("007", "008", "010"):
        assert not [f for f in evaluate(load_run(corpus_file(prefix + "_")), rules) if f.name == "zero-loss"]


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name[:40])
def test_every_corpus_file_evaluates_without_crash(rules: RuleSet, path) -> None:  # type: ignore[no-untyped-def]
    run = load_run(path)  # every corpus file loads; a parser regression must fail here, not skip
    for f in evaluate(run, rules):
        assert not f.message.startswith("detector crashed"), f.message
