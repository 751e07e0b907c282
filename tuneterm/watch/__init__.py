"""Watching runs live: ``tuneterm watch``, ``tuneterm runs``, ``tuneterm stop``, following and stopping.

Modules (all light at import: no torch, no textual; Rich and plotext only inside the live view):

``command``    ``tuneterm watch -- COMMAND``: run any training command under tuneterm
``view``       the plain (headless) and Rich Live renderings of a watch
``loop``       the watch loop that joins them (stop-on-error, end conditions, exit codes)

The parts the launcher shares live below both: the incremental evaluation
(:mod:`tuneterm.runs.live`), stopping a run (:mod:`tuneterm.runs.control`), findings.json
(:mod:`tuneterm.report.findings_file`) and notifications (:mod:`tuneterm.report.notify`).
"""

from __future__ import annotations
