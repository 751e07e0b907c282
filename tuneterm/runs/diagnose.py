"""The one entry every face calls to diagnose a source: :func:`diagnose`.

``doctor`` and ``check`` (through the log subject handler), ``tuneterm runs``, the headless
follower of ``tuneterm train``, ``tuneterm watch`` and the terminal app all judge a run the same
way: the source is read by :func:`tuneterm.runs.load.load_source` (a run directory with its status,
``died`` mark and progress; any other log through the format parsers), and the rules are evaluated
by :func:`evaluate_run`: the log rules (crash and runtime rules included) and, when the run
recorded sample generations, ``degenerate-generations`` on them. A live watcher that follows a
growing run calls :func:`evaluate_run` on the run it keeps up to date.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass

from tuneterm.engine.detectors.samples import samples_findings
from tuneterm.engine.evaluate import evaluate
from tuneterm.engine.model import Finding, Rule
from tuneterm.logs.model import Run
from tuneterm.runs.load import load_source


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """One source judged: the run as read, the rules it was judged by, the findings (report
    order: errors first, then by first step, then by code)."""

    run: Run
    rules: tuple[Rule, ...]
    findings: tuple[Finding, ...]


def has_evidence(run: Run) -> bool:
    """True when there is something to judge: metrics, an event (a traceback before the first
    metric), or a process that vanished."""
    return run.has_metrics() or bool(run.events) or run.state == "died"


def _order(f: Finding) -> tuple[int, float, str]:
    return (-f.severity.rank, f.first_step if f.first_step is not None else math.inf, f.code)


def evaluate_run(run: Run, rules: Iterable[Rule]) -> list[Finding]:
    """Every finding for ``run``: the ``log`` rules that apply to its trainer (crash and runtime
    rules included) and, when it has samples, ``degenerate-generations`` on them (an ``eval`` rule:
    pass it among ``rules``). Sorted errors first, then by step and code."""
    rules = tuple(rules)
    found = list(evaluate(run, rules))
    if run.samples:
        found += samples_findings(run, rules)
    found.sort(key=_order)
    return found


def diagnose(source: str | os.PathLike[str] | Run, rules: Iterable[Rule]) -> Diagnosis:
    """Read ``source`` (unless it is a :class:`Run` already) and judge it by ``rules``.

    A source with nothing to judge (:func:`has_evidence`) gets no findings; whether that is an
    error (``check``'s exit 3) is the caller's decision.

    Raises:
        InputError: the source cannot be read (as :func:`tuneterm.logs.load_run`).
    """
    run = source if isinstance(source, Run) else load_source(source)
    rules = tuple(rules)
    findings = evaluate_run(run, rules) if has_evidence(run) else []
    return Diagnosis(run, rules, tuple(findings))
