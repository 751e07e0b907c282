"""The rule engine: rule records, rule-table loading and validation, detectors, evaluation.

Public API:
    load_rules(directory=None) -> RuleSet   validated rules from rules/ (raises RuleFileError)
    evaluate(run, rules) -> list[Finding]    findings, most severe first
"""

from __future__ import annotations

from tuneterm.engine.model import Detection, Finding, Fix, Rule, Severity

__all__ = ["Detection", "Finding", "Fix", "Rule", "Severity"]
