"""A subject already read, ready to be judged: :class:`Subject`.

Every rule scope judges one kind of thing: a run (``log``, read from a log or a run directory by
:mod:`tuneterm.runs`), a training config (``config``), a dataset analysis (``data``) or an
evaluation report (``eval``). The layers above the engine read configs, datasets and reports (they
need the planner, tokenizers, models); they wrap what they read in a :class:`Subject` and hand it
down to :func:`tuneterm.runs.diagnose.diagnose`, the one entry every face calls, which evaluates it
with :func:`tuneterm.engine.evaluate.evaluate_rules`.

>>> from tuneterm.engine.rules import load_rules
>>> from tuneterm.engine.evaluate import evaluate_subject
>>> s = Subject(scope="config", value=None, source="cfg.yaml", trainer="sft")
>>> s.scope, s.source
('config', 'cfg.yaml')
>>> evaluate_subject(Subject(scope="nothing", value=None, source="x"), load_rules(scopes=["log"]))
[]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuneterm.engine.model import Detection, Finding, Rule

Placement = Callable[[Rule, Detection], tuple[str, int | None]]
"""Where a detection points: ``(source, line)``; ``line`` None lets the evidence's ``line`` speak."""

FindingOrder = Callable[[Finding], Any]
"""A sort key for a subject's findings."""


def by_severity_step_code(f: Finding) -> tuple[int, float, str]:
    """The report order: errors first, then by first step (none last), then by code."""
    step = f.first_step if f.first_step is not None else float("inf")
    return (-f.severity.rank, step, f.code)


def by_severity_code(f: Finding) -> tuple[int, str]:
    """Errors first, then by code (configs and eval reports: their findings have no step)."""
    return (-f.severity.rank, f.code)


@dataclass(frozen=True, slots=True)
class Subject:
    """What one scope's detectors read, with how its findings are placed and ordered.

    Attributes:
        scope: the rule scope that judges it (``config``, ``data``, ``eval``; ``log`` for a run).
        value: what the scope's detectors receive (a config's facts, a dataset analysis, an eval
            report, a run).
        source: the file the findings are about (``findings[i].source`` unless ``place`` says
            otherwise).
        trainer: the subject's trainer kind; rules for other trainers are skipped, and it fills
            the ``{trainer}`` template field. None: every rule of the scope applies.
        place: per detection ``(source, line)`` when it is not simply ``source``.
        order: sort key of the findings (default: errors first, then by step, then by code).
    """

    scope: str
    value: object
    source: str
    trainer: str | None = None
    place: Placement | None = None
    order: FindingOrder = by_severity_step_code
