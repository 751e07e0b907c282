"""The advisor: every finding of one run + what is known about the run -> one prescription.

DESIGN.md places it between the reports and the planner: it reads findings (:mod:`tuneterm.engine`)
and run context (the run's files, through :mod:`tuneterm.logs`) and returns a
:class:`~tuneterm.report.prescription.Prescription` the reports render. It never imports the
planner, the training stack or the UI.

Public API:
    RunContext, KeySchema, Hardware, read_context     what is known about a run (``context.py``)
    prescribe(run, findings, ctx) -> Prescription      the advice (``prescribe.py``)
    advise(run, findings, schema=...) -> Prescription  both in one call
    apply_prescription / fix_document                  ``doctor --fix -o`` (``apply.py``)
"""

from __future__ import annotations

from collections.abc import Sequence

from tuneterm.advise.context import KeySchema, RunContext, read_context
from tuneterm.advise.hardware import Hardware
from tuneterm.advise.prescribe import prescribe
from tuneterm.engine.model import Finding
from tuneterm.logs.model import Run
from tuneterm.report.prescription import Change, Conflict, Prescription, Step


def advise(run: Run, findings: Sequence[Finding], *, schema: KeySchema | None = None,
           model_size_b: float | None = None) -> Prescription:
    """Read ``run``'s context and prescribe for its ``findings`` (see :func:`prescribe`)."""
    return prescribe(run, findings, read_context(run, schema=schema, model_size_b=model_size_b))


__all__ = [
    "Change",
    "Conflict",
    "Hardware",
    "KeySchema",
    "Prescription",
    "RunContext",
    "Step",
    "advise",
    "prescribe",
    "read_context",
]
