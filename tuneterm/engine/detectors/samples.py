"""``degenerate-generations`` on a run's ``samples.jsonl`` (the training-time greedy samples).

The rule record is the eval rule ``E102 degenerate-generations`` of ``rules/diagnostics/generalization.yaml`` (same
thresholds, same finding name); its detector reads an eval report, so the live path applies the
same text analysis (:func:`tuneterm.engine.detectors.degenerate.detect_degenerate`) to the samples
itself. What plays the part of the base model: the *first* sampling point of the run. A model
that loops at step 400 but answered sanely at step 50 collapsed during training (an error or a
warning by the rule's shares, and only when the degenerate share rose by ``min_increase``); a
model whose samples were degenerate from the first point on (a tiny random model, a broken chat
template) gets at most a warning, because the samples cannot tell whether training did it.

>>> from tuneterm.engine import load_rules
>>> from tuneterm.logs.model import Run
>>> run = Run("r", "run_dir")
>>> run.facts.finished = True
>>> run.samples = [{"step": 10, "prompt": "p", "completion": "Paris is the capital of France."}] * 3
>>> run.samples += [{"step": 50, "prompt": "p", "completion": "is is is is is is is is"}] * 3
>>> [(f.name, f.severity.value) for f in samples_findings(run, load_rules(scopes=["eval"]))]
[('degenerate-generations', 'error')]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from tuneterm.engine.detectors.degenerate import detect_degenerate
from tuneterm.engine.evaluate import make_finding
from tuneterm.engine.model import Detection, Finding, Rule, Severity
from tuneterm.logs.model import Run

RULE_NAME = "degenerate-generations"


def _groups(samples: list[dict[str, Any]]) -> list[tuple[int, list[dict[str, Any]]]]:
    by_step: dict[int, list[dict[str, Any]]] = {}
    for s in samples:
        by_step.setdefault(int(s["step"]), []).append(s)
    return sorted(by_step.items())


def samples_findings(run: Run, rules: Iterable[Rule]) -> list[Finding]:
    """The ``degenerate-generations`` finding for ``run.samples``, or ``[]``.

    Args:
        run: a :class:`~tuneterm.logs.model.Run` whose ``samples`` come from samples.jsonl.
        rules: any rules; the one named ``degenerate-generations`` supplies thresholds and text.

    Returns:
        Zero or one finding about the latest sampling point.
    """
    rule = next((r for r in rules if r.name == RULE_NAME), None)
    if rule is None or not run.samples:
        return []
    groups = _groups(run.samples)
    last_step, latest = groups[-1]
    params = dict(rule.params)
    if _still_running(run) and not _persistent(groups, params):
        return []
    if len(groups) >= 2:
        first_step, first = groups[0]
        found = detect_degenerate(latest, params, baseline=first, label=f"training samples (vs step {first_step})", step=last_step)
        if found:
            return [make_finding(rule, found[0], source=run.source)]
    found = detect_degenerate(latest, params, label="training samples", step=last_step)
    if not found:
        return []
    det = found[0]
    if len(groups) >= 2:
        # Degenerate now, but no worse than at the first sampling point: maybe the model was
        # like this before training; say so and keep it a warning.
        det = _as_warning(det, f"already at the first sample (step {groups[0][0]}); the base model may behave the same")
    elif det.severity is Severity.ERROR:
        det = _as_warning(det, "at the first sampling point; compare with the base model (tuneterm eval)")
    return [make_finding(rule, det, source=run.source)]


def _still_running(run: Run) -> bool:
    """True while the run may still be training (not finished, failed, stopped or died)."""
    return not run.facts.finished and run.state in (None, "starting", "running")


def _persistent(groups: list[tuple[int, list[dict[str, Any]]]], params: dict[str, Any]) -> bool:
    """While a run is live, report degenerate samples only when the previous sampling point (after
    the first) was degenerate too: one bad round early in training (a random or freshly perturbed
    model rambling before it has learned EOS) is noise that the next round usually clears, and a
    live finding once shown stays shown (and ``--stop-on error`` would kill the run). A finished
    run is judged on its last point alone.
    """
    if len(groups) < 3:
        return False
    _, prev = groups[-2]
    return bool(detect_degenerate(prev, params, label="training samples", step=groups[-2][0]))


def _as_warning(det: Detection, note: str) -> Detection:
    evidence = dict(det.evidence)
    evidence["detail"] = f"{evidence.get('detail', '')}; {note}".strip("; ")
    return replace(det, severity=Severity.WARNING, evidence=evidence)
