"""The rule engine: rule records, rule-table loading and validation, detectors, evaluation.

Public API:
    load_rules(directory=None) -> RuleSet   validated rules from rules/ (raises RuleFileError)
    RuleSet                                  .rules, .get(), .select(), .for_scope()
    evaluate(run, rules) -> list[Finding]    findings, most severe first
    Subject                                  a config, dataset or eval report read above the engine,
                                             for tuneterm.runs.diagnose.diagnose (every scope)
    detector, Param                          register a detector (see tuneterm.engine.registry)
"""

from __future__ import annotations

from tuneterm.engine.evaluate import evaluate, fill_message
from tuneterm.engine.model import Detection, Finding, Fix, Rule, Severity
from tuneterm.engine.registry import Param, all_detectors, detector, get_detector
from tuneterm.engine.rules import RuleSet, RuleSetError, load_rules
from tuneterm.engine.subjects import Subject

__all__ = [
    "Detection",
    "Finding",
    "Fix",
    "Param",
    "Rule",
    "RuleSet",
    "RuleSetError",
    "Severity",
    "Subject",
    "all_detectors",
    "detector",
    "evaluate",
    "fill_message",
    "get_detector",
    "load_rules",
]
