"""``degenerate-generations`` on a run's ``samples.jsonl`` (the training-time greedy samples).

The rule record is the eval rule ``E102 degenerate-generations`` of ``rules/diagnostics/generalization.yaml`` (same
thresholds, same finding name). A run's samples are an ``eval``-scope subject of their own
(:func:`samples_subject`, a :class:`RunSamples`), judged by the engine's one evaluation loop like
an eval report: the rule's detector (:mod:`tuneterm.engine.detectors.eval_report`) hands them to
:func:`detect_samples`, which applies the same text analysis
(:func:`tuneterm.engine.detectors.degenerate.detect_degenerate`) to the samples. What plays the
part of the base model: the *first* sampling point of the run. A model that loops at step 400 but
answered sanely at step 50 collapsed during training (an error or a warning by the rule's shares,
and only when the degenerate share rose by ``min_increase``); a model whose samples were
degenerate from the first point on (a tiny random model, a broken chat template) gets at most a
warning, because the samples cannot tell whether training did it.

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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tuneterm.engine.detectors.degenerate import detect_degenerate
from tuneterm.engine.evaluate import evaluate_subject
from tuneterm.engine.model import Detection, Finding, Rule, Severity
from tuneterm.engine.subjects import Subject
from tuneterm.logs.model import Run

Sample = Mapping[str, Any]
"""One line of samples.jsonl: ``step``, ``prompt``, ``completion``; optionally ``n_tokens`` and
``hit_max_tokens``."""


@dataclass(frozen=True, slots=True)
class RunSamples:
    """What the ``eval`` rules read about a run's samples.

    Attributes:
        samples: the run's sample generations, in file order.
        still_running: the run may still be training (not finished, failed, stopped or died): one
            bad sampling round is then held back until the next confirms it.
    """

    samples: tuple[Sample, ...]
    still_running: bool


def samples_subject(run: Run) -> Subject:
    """``run``'s samples as the subject of the ``eval`` scope (findings about ``run.source``;
    every eval rule applies, whatever the trainer, as for an eval report)."""
    return Subject(scope="eval", value=RunSamples(tuple(run.samples), _still_running(run)), source=run.source)


def samples_findings(run: Run, rules: Iterable[Rule]) -> list[Finding]:
    """The ``degenerate-generations`` finding for ``run.samples``, or ``[]``: the ``eval`` rules
    among ``rules`` evaluated over :func:`samples_subject` (what
    :func:`tuneterm.runs.diagnose.diagnose` does for a run with samples).

    Returns:
        Zero or one finding about the latest sampling point (or the rule's "detector crashed"
        finding when the samples could not be judged).
    """
    return evaluate_subject(samples_subject(run), rules)


def _groups(samples: Sequence[Sample]) -> list[tuple[int, list[Sample]]]:
    by_step: dict[int, list[Sample]] = {}
    for s in samples:
        by_step.setdefault(int(s["step"]), []).append(s)
    return sorted(by_step.items())


def detect_samples(subject: RunSamples, params: Mapping[str, Any]) -> list[Detection]:
    """The ``degenerate-generations`` detection for a run's samples, or ``[]``.

    Args:
        subject: the run's samples.
        params: the rule's parameters (thresholds of
            :func:`~tuneterm.engine.detectors.degenerate.detect_degenerate`).

    Returns:
        Zero or one detection about the latest sampling point.
    """
    if not subject.samples:
        return []
    groups = _groups(subject.samples)
    last_step, latest = groups[-1]
    if subject.still_running and not _persistent(groups, params):
        return []
    if len(groups) >= 2:
        first_step, first = groups[0]
        found = detect_degenerate(latest, params, baseline=first, label=f"training samples (vs step {first_step})", step=last_step)
        if found:
            return found[:1]
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
    return [det]


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
