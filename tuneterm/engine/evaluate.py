"""Running rules over a Run: detectors -> Detection -> Finding.

>>> from tuneterm.engine import load_rules, evaluate
>>> from tuneterm.logs.model import Run
>>> run = Run(source="demo", format="test")
>>> run.facts.trainer_kind = "sft"
>>> for step in range(1, 6):
...     run.add_train("loss", step * 10, 2.0)
...     run.add_train("grad_norm", step * 10, float("nan"))
>>> [f.name for f in evaluate(run, load_rules())][:1]
['nan-or-inf']
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from typing import Any

from tuneterm.engine.causes import merge_causes
from tuneterm.engine.model import Detection, Finding, Rule, Severity
from tuneterm.engine.registry import get_detector
from tuneterm.engine.stats import analysis_cache, fmt_num
from tuneterm.engine.subjects import FindingOrder, Placement, Subject, by_severity_step_code
from tuneterm.logs.model import Run
from tuneterm.textsafe import inert_line


def _render(value: Any, spec: str) -> str:
    if isinstance(value, float) and not spec:
        return fmt_num(value)
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def fill_message(template: str, fields: Mapping[str, Any]) -> str:
    """Fill a ``str.format``-style template safely.

    Only plain field names are looked up (no attribute or index access, no conversions); a field
    missing from ``fields`` is left visible as ``{name}``; a format spec that does not fit the
    value falls back to ``str(value)``. Floats without a spec print with 4 significant digits.

    >>> fill_message("grad_norm {value:.2f} at step {step}; {missing}", {"value": 0.0, "step": 7})
    'grad_norm 0.00 at step 7; {missing}'
    """
    out: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return template
    for literal, field, spec, conv in parsed:
        out.append(literal)
        if field is None:
            continue
        if field in fields and field.isidentifier():
            out.append(_render(fields[field], spec or ""))
        else:
            shown = field + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "")
            out.append("{" + shown + "}")
    return "".join(out)


def make_finding(
    rule: Rule,
    det: Detection,
    *,
    source: str = "",
    line: int | None = None,
    context: Mapping[str, Any] | None = None,
) -> Finding:
    """Join a rule record and one of its detections into a :class:`Finding`.

    The one place findings are built, for every scope (logs, configs, datasets, eval reports):
    the message template is filled safely from the rule's params, the evidence, the steps and
    ``context`` (e.g. ``trainer``); causes computed for this run come before the rule's static
    ones; a fix computed for this run replaces the rule's static fix for the same config key
    (a run-specific ``learning_rate: 1e-05`` and the table's ``learning_rate: 1e-04`` must not both
    be shown); command fixes are kept unless identical.

    Args:
        rule: the rule that fired.
        det: what its detector reported.
        source: the file the finding is about.
        line: 1-based line in ``source``; by default an integer ``line`` in the evidence is used.
        context: extra template fields.
    """
    fields: dict[str, Any] = dict(rule.params)
    fields.update(det.evidence)
    fields.update(context or {})
    fields.update(first_step=det.first_step, last_step=det.last_step, code=rule.code, name=rule.name)
    if line is None:
        ev_line = det.evidence.get("line")
        if isinstance(ev_line, int) and not isinstance(ev_line, bool) and ev_line >= 1:
            line = ev_line
    computed_keys = {f.key for f in det.fixes if f.key is not None}
    static = tuple(
        f for f in rule.fixes if f not in det.fixes and (f.key is None or f.key not in computed_keys)
    )
    return Finding(
        code=rule.code,
        name=rule.name,
        severity=det.severity or rule.severity,
        category=rule.category,
        message=fill_message(rule.message, fields),
        first_step=det.first_step,
        last_step=det.last_step,
        evidence=dict(det.evidence),
        causes=merge_causes(det.causes, rule.causes),
        fixes=det.fixes + static,
        references=rule.references,
        source=source,
        line=line,
    )


def crash_finding(rule: Rule, exc: BaseException, source: str) -> Finding:
    """The info finding that stands for a rule whose detector raised (or is unknown): a detector
    bug must never take the whole diagnosis down."""
    text = inert_line(f"{type(exc).__name__}: {exc}", 200)
    return Finding(
        code=rule.code,
        name=rule.name,
        severity=Severity.INFO,
        category=rule.category,
        message=f"detector crashed: '{rule.detector}' raised {text}; this rule was not checked",
        first_step=None,
        last_step=None,
        evidence={"detector": rule.detector, "error": text},
        causes=(),
        fixes=(),
        references=rule.references,
        source=source,
    )


def evaluate_rules(
    scope: str,
    subject: object,
    rules: Iterable[Rule],
    *,
    source: str,
    trainer: str | None = None,
    place: Placement | None = None,
    order: FindingOrder = by_severity_step_code,
) -> list[Finding]:
    """The one evaluation loop, for every scope (``log``, ``config``, ``data``, ``eval``).

    Each rule of ``scope`` that applies to ``trainer`` (every rule of the scope when ``trainer`` is
    None) runs its detector on ``subject`` with the rule's parameters (resolved and validated when
    the rules were loaded, defaults filled in), and each detection becomes a finding through
    :func:`make_finding` (``trainer`` is a template field). A detector that raises, or a
    hand-made rule naming no registered detector, yields :func:`crash_finding` instead.

    Args:
        scope: the rule scope evaluated; rules of other scopes are skipped.
        subject: what the scope's detectors read (a Run, a ConfigSubject, a DataAnalysis, an eval report).
        rules: a RuleSet or any iterable of rules.
        source: the file findings are about.
        trainer: the subject's trainer kind.
        place: per detection ``(source, line)`` when it is not simply ``source``.
        order: sort key of the returned findings (default: :func:`by_severity_step_code`).
    """
    findings: list[Finding] = []
    context = {"trainer": trainer} if trainer is not None else None
    with analysis_cache():
        for rule in rules:
            if rule.scope != scope or (trainer is not None and trainer not in rule.trainers):
                continue
            spec = get_detector(rule.detector, scope)
            if spec is None:  # rules from load_rules() are validated; hand-made ones may not be
                findings.append(crash_finding(rule, LookupError(f"unknown detector {rule.detector!r}"), source))
                continue
            try:
                detections = spec.func(subject, rule.params)
            except Exception as exc:  # noqa: BLE001 - isolate detector bugs, by design
                findings.append(crash_finding(rule, exc, source))
                continue
            for det in detections:
                where, line = place(rule, det) if place is not None else (source, None)
                findings.append(make_finding(rule, det, source=where, line=line, context=context))
    findings.sort(key=order)
    return findings


def evaluate_subject(subject: Subject, rules: Iterable[Rule]) -> list[Finding]:
    """Evaluate the rules of ``subject.scope`` over ``subject.value`` (:func:`evaluate_rules`
    with the subject's source, trainer, placement and order).

    Faces do not call this directly: :func:`tuneterm.runs.diagnose.diagnose` does, for every scope.
    """
    return evaluate_rules(subject.scope, subject.value, rules, source=subject.source, trainer=subject.trainer,
                          place=subject.place, order=subject.order)


def evaluate(run: Run, rules: Iterable[Rule]) -> list[Finding]:
    """Evaluate the ``log``-scope rules that apply to ``run``'s trainer kind.

    Args:
        run: a parsed run (see :func:`tuneterm.logs.load_run`).
        rules: a :class:`~tuneterm.engine.rules.RuleSet` or any iterable of rules.

    Returns:
        Findings sorted by severity (errors first), then first step, then code. A detector that
        raises yields an info finding "detector crashed" for its rule instead of an exception.
    """
    return evaluate_subject(run_subject(run), rules)


def run_subject(run: Run) -> Subject:
    """``run`` as the subject of the ``log`` scope: its trainer kind picks the rules; a metric
    finding points at its first step's line, an event at its own line (a traceback's)."""

    def place(rule: Rule, det: Detection) -> tuple[str, int | None]:
        ev_line = det.evidence.get("line")
        has_own_line = isinstance(ev_line, int) and not isinstance(ev_line, bool) and ev_line >= 1
        return run.source, None if has_own_line or det.first_step is None else run.lines.get(det.first_step)

    return Subject(scope="log", value=run, source=run.source, trainer=run.facts.trainer_kind, place=place)
