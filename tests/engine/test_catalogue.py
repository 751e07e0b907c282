"""The shipped diagnostic rules: complete, unique, well-formed, explained."""

from __future__ import annotations

import re

import pytest

from tuneterm.engine import RuleSet, get_detector, load_rules
from tuneterm.engine.rules import NAME_RE, placeholders

REQUIRED = {
    "zero-grad-norm", "nan-or-inf", "loss-spike", "grad-norm-spike", "divergence", "loss-plateau",
    "zero-loss", "overfitting", "eval-loss-frozen", "lr-zero", "lr-decayed-early",
    "low-data-coverage", "uniform-prediction", "memorization", "grpo-zero-reward-variance",
    "grpo-completions-truncated", "dpo-chosen-reward-falling", "dpo-no-preference-signal",
    "run-crashed",
}


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(scopes=["log"])


def test_required_rules_present(rules: RuleSet) -> None:
    assert REQUIRED <= {r.name for r in rules}


def test_codes_and_names_unique_and_well_formed(rules: RuleSet) -> None:
    codes = [r.code for r in rules]
    names = [r.name for r in rules]
    assert len(set(codes)) == len(codes) and len(set(names)) == len(names)
    assert all(re.fullmatch(r"[A-Z]\d{3}", c) for c in codes)
    assert all(NAME_RE.fullmatch(n) for n in names)
    assert codes == sorted(codes)


def test_every_rule_is_explained_and_fixable(rules: RuleSet) -> None:
    for r in rules:
        assert r.summary and r.why and r.message and r.causes, r.code
        assert r.references and r.example, r.code
        for fix in r.fixes:
            assert fix.why, r.code
            assert fix.command or (fix.key and fix.value is not None), (r.code, fix)
        spec = get_detector(r.detector, "log")
        assert spec is not None
        known = set(spec.evidence) | set(r.params) | {"first_step", "last_step", "code", "name", "trainer"}
        assert set(placeholders(r.message)) <= known, r.code


def test_select_and_ignore(rules: RuleSet) -> None:
    assert [r.name for r in rules.select(["zero-grad-norm"], None)] == ["zero-grad-norm"]
    assert [r.code for r in rules.select(["N101"], None)] == ["N101"]
    assert {r.code[0] for r in rules.select(["G"], None)} == {"G"}
    assert len(rules.select(["G1,L"], ["loss-spike"])) == len(rules.select(["G", "L"], None)) - 1
    assert rules.get("g101").name == "zero-grad-norm"
    from tuneterm.engine import RuleSetError

    with pytest.raises(RuleSetError, match="'no-such-rule'"):
        rules.select(["no-such-rule"], None)


def test_for_scope_and_trainer(rules: RuleSet) -> None:
    assert len(rules.for_scope("log")) == len(rules)
    grpo = {r.name for r in rules.for_trainer("grpo")}
    assert "zero-loss" not in grpo and "grpo-zero-reward-variance" in grpo


def test_shipped_rules_load_whole() -> None:
    """Every rule table under rules/ (all scopes) loads; a broken table from any scope fails here."""
    full = load_rules()
    assert REQUIRED <= {r.name for r in full}


def test_rules_readme_table_is_generated_from_the_records() -> None:
    from tuneterm.engine.catalogue import rule_table, with_table
    from tuneterm.resources import rules_dir

    root = rules_dir()
    readme = (root / "README.md").read_text(encoding="utf-8")
    table = rule_table(root)
    assert with_table(readme, table) == readme, "rules/README.md is stale: run python -m tuneterm.engine.catalogue"
    # every rule is in it, with the file of its record and the module of its detector
    row = next(line for line in table.splitlines() if line.startswith("| X116 "))
    assert "`run-stalled`" in row and "engine/detectors/runtime.py" in row and "rules/diagnostics/runtime.yaml" in row
    assert len([line for line in table.splitlines() if re.match(r"\| [A-Z]\d{3} ", line)]) == len(load_rules())
    # ... and where its cases are: a fixture file per log rule, the scope's case module otherwise
    assert "tests/fixtures/rules/X116.yaml" in row
    c105 = next(line for line in table.splitlines() if line.startswith("| C105 "))
    assert "tests/preflight/test_config_check.py" in c105
    cases = [line.split(" | ")[6] for line in table.splitlines() if re.match(r"\| [A-Z]\d{3} ", line)]
    assert "?" not in cases, "a rule without cases"


def test_rule_explanation_says_where_the_rule_lives() -> None:
    """`tuneterm rule CODE` ends with the record, the detector's module and the cases' file."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "tuneterm", "rule", "D103", "--width", "120"],
                         capture_output=True, text=True, check=True).stdout
    where = out[out.index("Where it lives"):]
    assert "record    rules/diagnostics/data.yaml" in where
    assert "(data-eos-missing)" in where and "detector  tuneterm/" in where
    assert "cases     tests/preflight/test_data_check.py" in where


def test_one_rule_file_per_category() -> None:
    from tuneterm.engine.catalogue import record_files
    from tuneterm.resources import rules_dir

    files = record_files(rules_dir())
    by_category: dict[str, set[str]] = {}
    for rule in load_rules():
        by_category.setdefault(rule.category, set()).add(files[rule.code])
    assert all(paths == {f"rules/diagnostics/{cat}.yaml"} for cat, paths in by_category.items()), by_category
