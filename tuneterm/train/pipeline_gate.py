"""The gate after a pipeline stage: its diagnosis, and optionally an evaluation, decide whether the
next stage starts.

:func:`check_gate` passes a stage when

1. the stage's run finished (not failed, stopped or dead);
2. its diagnosis (the same rules and findings as ``tuneterm doctor RUN``, :func:`tuneterm.train.
   follow.evaluate_dir`) has no finding at or above the gate's ``fail_on`` (``error`` by default;
   ``warning`` also stops on warnings); a run that could not be diagnosed does not pass;
3. with ``eval:``, the stage's model beats the model it is compared with (``previous``: the model
   the stage started from; ``base``: stage 1's model) by at least ``min_improvement`` on the
   metric, measured by ``tuneterm eval``'s runner (:func:`tuneterm.evaluation.runner.run_eval`,
   greedy decoding, the same data for both). The full report is written to the stage's
   ``eval.json``.

A failed gate carries the findings with their fixes and the advisor's prescription for the stage
(:func:`tuneterm.advise.advise`: one consistent set of config changes and steps for this run, the
same as ``tuneterm doctor`` prints), which the driver prints and records.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneterm.preflight.pipeline_spec import EvalGate, Gate
from tuneterm.report.prescription import Prescription

if TYPE_CHECKING:
    from tuneterm.engine.model import Finding, Fix
    from tuneterm.evaluation.results import EvalReport

EVAL_REPORT = "eval.json"
_RANK = {"info": 0, "warning": 1, "error": 2}


@dataclass(frozen=True, slots=True)
class GateFinding:
    """A finding that stopped (or would stop) the pipeline, with its fixes as printed."""

    code: str
    name: str
    severity: str
    message: str
    fixes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EvalOutcome:
    """The gate's evaluation: the metric for both models and whether the improvement suffices."""

    metric: str
    against: str
    against_model: str
    against_value: float | None
    stage_value: float | None
    improvement: float | None
    min_improvement: float
    passed: bool
    report: str | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class GateResult:
    """The verdict of one gate: passed or not, why, the findings that count, the evaluation."""

    passed: bool
    fail_on: str
    reasons: tuple[str, ...]
    findings: tuple[GateFinding, ...]
    eval: EvalOutcome | None = None
    prescription: Prescription | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form for pipeline.json (the prescription as in ``check --format json``)."""
        d = asdict(self)
        d["findings"] = [dict(asdict(f), fixes=list(f.fixes)) for f in self.findings]
        d["prescription"] = self.prescription.to_dict() if self.prescription is not None else None
        return d


def fix_text(fix: Fix) -> str:
    """One fix as a line: ``key: value  (why)`` or ``run: command  (why)``."""
    why = f"  ({fix.why})" if fix.why else ""
    if fix.key:
        return f"{fix.key}: {fix.value}{why}"
    if fix.command:
        return f"run: {fix.command}{why}"
    return fix.why or ""


def gate_findings(findings: Sequence[Finding], fail_on: str) -> tuple[GateFinding, ...]:
    """The findings at or above ``fail_on``, most severe first, as :class:`GateFinding`."""
    floor = _RANK[fail_on]
    kept = [f for f in findings if _RANK.get(f.severity.value, 0) >= floor]
    kept.sort(key=lambda f: -_RANK.get(f.severity.value, 0))
    return tuple(
        GateFinding(f.code, f.name, f.severity.value, f.message, tuple(fix_text(x) for x in f.fixes)) for f in kept
    )


def _metric_values(report: EvalReport, metric: str) -> tuple[float | None, float | None]:
    """(against, stage) values of ``metric`` in an :class:`~tuneterm.evaluation.results.EvalReport`."""
    if metric.startswith("probes"):
        if report.probes is None:
            return None, None
        category = metric.split("/", 1)[1] if "/" in metric else None
        return report.probes.pass_rate("base", category), report.probes.pass_rate("finetuned", category)
    delta = report.delta(metric)
    if delta is None or delta.n == 0:
        return None, None
    return delta.a_mean, delta.b_mean


def run_gate_eval(stage_dir: Path, gate: EvalGate, against_model: str) -> EvalOutcome:
    """Evaluate the stage's saved model against ``against_model`` and apply ``min_improvement``.

    Writes the full report to ``<stage_dir>/eval.json``. An evaluation that cannot run (no saved
    model, unreadable data) fails the gate with its one-line reason.
    """
    from tuneterm.errors import TunetermError
    from tuneterm.evaluation.runner import EvalOptions, run_eval

    opts = EvalOptions(
        target=str(stage_dir), base=against_model, data=gate.data, split=gate.split, n=gate.n,
        max_new_tokens=gate.max_new_tokens, probes=gate.probes, resamples=200,
    )
    try:
        report = run_eval(opts)
    except TunetermError as exc:
        return EvalOutcome(gate.metric, gate.against, against_model, None, None, None, gate.min_improvement,
                           False, None, error=str(exc))
    out = stage_dir / EVAL_REPORT
    out.write_text(json.dumps(report.to_dict(), indent=1, default=str) + "\n", encoding="utf-8")
    a, b = _metric_values(report, gate.metric)
    if a is None or b is None:
        return EvalOutcome(gate.metric, gate.against, against_model, a, b, None, gate.min_improvement, False,
                           str(out), error=f"metric {gate.metric!r} was not measured (no such category or no rows)")
    improvement = b - a
    return EvalOutcome(gate.metric, gate.against, against_model, a, b, improvement, gate.min_improvement,
                       improvement >= gate.min_improvement, str(out))


def prescription_for(stage_dir: Path) -> Prescription | None:
    """The advisor's prescription for the stage's run (its findings, config, method, hardware and
    the installed TRL's keys), or None when the run cannot be diagnosed or nothing is prescribed."""
    from tuneterm.advise import advise
    from tuneterm.runs.layout import RunDir
    from tuneterm.train.follow import evaluate_dir
    from tuneterm.preflight.schema import key_schema

    ev = evaluate_dir(RunDir(stage_dir))
    if ev is None or not ev.findings:
        return None
    p = advise(ev.run, ev.findings, schema=key_schema())
    return None if p.empty else p


def check_gate(
    stage_dir: Path, gate: Gate, *, state: str, error: str | None, findings: Sequence[Finding] | None, against_model: str
) -> GateResult:
    """Decide the gate after a stage (see the module docstring).

    Args:
        stage_dir: the stage's run directory.
        gate: the stage's gate.
        state: the run's final state; error: its error line.
        findings: the run's findings (None: the run could not be diagnosed).
        against_model: what ``eval.against`` resolves to (a path or name), used only with ``eval``.
    """
    reasons: list[str] = []
    if state != "finished":
        reasons.append(f"the stage ended {state}" + (f": {error}" if error else ""))
    if findings is None:
        reasons.append("the stage could not be diagnosed (its run directory or the rules were unreadable)")
    counted = gate_findings(findings or [], gate.fail_on)
    if counted:
        worst = counted[0]
        reasons.append(f"{len(counted)} finding(s) at or above {gate.fail_on}, first: {worst.code} {worst.name}")
    outcome: EvalOutcome | None = None
    if gate.eval is not None and not reasons:
        outcome = run_gate_eval(stage_dir, gate.eval, against_model)
        if outcome.error:
            reasons.append(f"evaluation failed: {outcome.error}")
        elif not outcome.passed:
            reasons.append(
                f"{outcome.metric} improved by {outcome.improvement:+.4f} against {outcome.against} "
                f"({outcome.against_value:.4f} -> {outcome.stage_value:.4f}); the gate needs at least "
                f"{outcome.min_improvement:+.4f}"
            )
    prescription = prescription_for(stage_dir) if counted else None
    return GateResult(passed=not reasons, fail_on=gate.fail_on, reasons=tuple(reasons), findings=counted, eval=outcome,
                      prescription=prescription)
