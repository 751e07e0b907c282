"""Every rule against its fixture cases (tests/fixtures/rules/<CODE>.yaml): must fire / must not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.engine.fixture_runs import build_run
from tuneterm.engine import RuleSet, evaluate, load_rules

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rules"


def _cases() -> list[Any]:
    out = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        for i, case in enumerate(doc["cases"]):
            out.append(pytest.param(path.stem, doc["rule"], case, id=f"{path.stem}-{i}-{case['name'][:40]}"))
    return out


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(scopes=["log"])


@pytest.mark.parametrize(("code", "rule_name", "case"), _cases())
def test_rule_case(rules: RuleSet, code: str, rule_name: str, case: dict[str, Any]) -> None:
    rule = rules.get(rule_name)
    assert rule is not None and rule.code == code, f"fixture {code} names {rule_name}"
    run = build_run(case)
    findings = [f for f in evaluate(run, [rule]) if f.name == rule_name]
    crashed = [f for f in findings if f.message.startswith("detector crashed")]
    assert not crashed, crashed[0].message
    expect = case["expect"]
    if expect == "none":
        assert findings == [], [f.message for f in findings]
        return
    assert findings, f"{rule_name} did not fire on: {case['name']}"
    if expect != "fire":
        assert findings[0].severity.value == expect, findings[0].message
    f = findings[0]
    assert "{" not in f.message, f"unfilled placeholder in: {f.message}"
    json.dumps(f.to_dict(), allow_nan=True)  # evidence is JSON-serialisable


def test_every_rule_has_passing_and_failing_cases(rules: RuleSet) -> None:
    seen: dict[str, set[str]] = {}
    for path in FIXTURES.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        kinds = {"none" if c["expect"] == "none" else "fire" for c in doc["cases"]}
        seen[doc["rule"]] = kinds
    for rule in rules:
        assert seen.get(rule.name) == {"none", "fire"}, f"{rule.code} {rule.name} needs a firing and a non-firing case"


def test_config_failure_gets_config_fix_not_crash_advice(tmp_path: Path) -> None:
    # status.json of a run whose worker rejected the config (error_kind "config", exit 2).
    from tuneterm.engine import evaluate, load_rules
    from tuneterm.runs.load import load_source as load_run

    (tmp_path / "metrics.jsonl").write_text('{"loss": 2.0, "step": 1}\n')
    (tmp_path / "status.json").write_text(json.dumps(
        {"state": "failed", "exit_code": 2, "error_kind": "config", "error": "configs/x.yaml: bf16=True requires a GPU"}
    ))
    (f,) = [f for f in evaluate(load_run(tmp_path), load_rules(scopes=["log"])) if f.name == "run-crashed"]
    assert f.severity.value == "error" and f.evidence["exception"] == "ConfigError"
    assert [x.command for x in f.fixes if x.command][0] == "tuneterm check CONFIG"
    assert not any("PYTORCH_CUDA_ALLOC_CONF" in (x.command or "") for x in f.fixes)
