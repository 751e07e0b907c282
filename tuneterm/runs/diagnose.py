"""The one entry every face calls to diagnose a source: :func:`diagnose`.

Every face judges its subject here, whatever the scope:

- ``log``: ``doctor`` and ``check`` (through the log subject handler), ``tuneterm runs``, the
  headless follower of ``tuneterm train``, ``tuneterm watch`` and the terminal app hand a path or
  a :class:`~tuneterm.logs.model.Run`. The source is read by
  :func:`tuneterm.runs.load.load_source` (a run directory with its status, ``died`` mark and
  progress; any other log through the format parsers) and judged by :func:`evaluate_run`: the log
  rules (crash and runtime rules included) and, when the run recorded sample generations,
  ``degenerate-generations`` on them (an ``eval`` rule; the samples are a subject of their own,
  :func:`~tuneterm.engine.detectors.samples.samples_subject`). A live watcher that follows a
  growing run hands :func:`diagnose` the run it keeps up to date.
- ``config``, ``data``, ``eval``: ``check CONFIG|PIPELINE|DATA`` and ``tuneterm eval`` read their
  subject in the layers above (they need the planner, tokenizers, models) and hand it down as a
  :class:`~tuneterm.engine.subjects.Subject`.

Every subject, a run's samples included, is judged by the engine's one evaluation loop
(:func:`tuneterm.engine.evaluate.evaluate_rules`): a detector that raises is its rule's "detector
crashed" finding, never an exception out of :func:`diagnose`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from tuneterm.engine.detectors.samples import samples_subject
from tuneterm.engine.evaluate import evaluate, evaluate_subject
from tuneterm.engine.model import Finding, Rule
from tuneterm.engine.subjects import Subject
from tuneterm.logs.model import Run
from tuneterm.runs.load import load_source

RUN_SCOPES: tuple[str, ...] = ("log", "eval")
"""What a run is judged by unless told otherwise: its log rules, and the ``eval`` rule
``degenerate-generations`` on its sample generations."""


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """One source judged: what was read, the rules it was judged by, the findings (in the
    subject's order; a run's: errors first, then by first step, then by code).

    Attributes:
        run: the run as read, for a log source; None for a subject of another scope.
        rules: the rules it was judged by (all of them, whatever their scope).
        findings: what fired.
        subject: the subject of another scope as handed in; None for a log source.
    """

    run: Run | None
    rules: tuple[Rule, ...]
    findings: tuple[Finding, ...]
    subject: Subject | None = None


def has_evidence(run: Run) -> bool:
    """True when there is something to judge: metrics, an event (a traceback before the first
    metric), or a process that vanished."""
    return run.has_metrics() or bool(run.events) or run.state == "died"


def _order(f: Finding) -> tuple[int, float, str]:
    return (-f.severity.rank, f.first_step if f.first_step is not None else math.inf, f.code)


def evaluate_run(run: Run, rules: Iterable[Rule], scopes: Collection[str] = RUN_SCOPES) -> list[Finding]:
    """Every finding for ``run``: the ``log`` rules that apply to its trainer (crash and runtime
    rules included) and, when it has samples and ``scopes`` includes ``eval``,
    ``degenerate-generations`` on them (an ``eval`` rule: pass it among ``rules``). Sorted errors
    first, then by step and code."""
    rules = tuple(rules)
    found = list(evaluate(run, rules)) if "log" in scopes else []
    if run.samples and "eval" in scopes:
        found += evaluate_subject(samples_subject(run), rules)
    found.sort(key=_order)
    return found


def diagnose(
    source: str | os.PathLike[str] | Run | Subject,
    rules: Iterable[Rule],
    scopes: Collection[str] | None = None,
) -> Diagnosis:
    """Judge ``source`` by those of ``rules`` whose scope is in ``scopes``.

    Args:
        source: a log file or run directory (read here), a :class:`Run` already read, or a
            :class:`~tuneterm.engine.subjects.Subject` of another scope read by the layer above
            (a config's facts, a dataset analysis, an eval report).
        rules: the rules to judge by (rules of other scopes are skipped).
        scopes: the scopes to evaluate. Default: :data:`RUN_SCOPES` for a log source, the
            subject's own scope for a :class:`Subject`.

    A run with nothing to judge (:func:`has_evidence`) gets no findings; whether that is an
    error (``check``'s exit 3) is the caller's decision.

    Raises:
        InputError: the source cannot be read (as :func:`tuneterm.logs.load_run`).
    """
    rules = tuple(rules)
    if isinstance(source, Subject):
        wanted = (source.scope,) if scopes is None else scopes
        found = evaluate_subject(source, rules) if source.scope in wanted else []
        return Diagnosis(None, rules, tuple(found), subject=source)
    run = source if isinstance(source, Run) else load_source(source)
    findings = evaluate_run(run, rules, RUN_SCOPES if scopes is None else scopes) if has_evidence(run) else []
    return Diagnosis(run, rules, tuple(findings))
