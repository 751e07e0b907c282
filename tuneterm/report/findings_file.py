"""A live run's ``findings.json``: what its latest evaluation found, in the JSON contract of
``check --format json``.

Written by ``tuneterm watch`` and by the callback's live rules (:mod:`tuneterm.train.live_rules`)
whenever the findings change and at the end, so a viewer that dies loses nothing.
"""

from __future__ import annotations

from tuneterm.report.json_report import result_document
from tuneterm.report.subjects import result_from_run
from tuneterm.runs.layout import FINDINGS
from tuneterm.runs.live import LiveEvaluator
from tuneterm.runs.writer import write_json_atomic


def write_findings(live: LiveEvaluator) -> None:
    """Write the run directory's findings.json (the JSON contract of ``check --format json``)."""
    run = live.run
    rules = tuple(r for r in live.rules if r.scope == "log" and run.facts.trainer_kind in r.trainers)
    doc = result_document(result_from_run(run, live.findings, rules))
    try:
        write_json_atomic(live.path / FINDINGS, doc)
    except OSError:
        pass  # a read-only run directory: the findings were printed; nothing else to do
