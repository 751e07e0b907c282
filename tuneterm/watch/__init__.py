"""Watching runs live: ``tuneterm watch``, ``tuneterm runs``, ``tuneterm stop``, crash diagnosis.

Modules (all light at import: no torch, no textual; Rich and plotext only inside the live view):

``crash``      which event ended a run, and whether it matches a crash rule's codes/texts
``detectors``  the ``runtime`` crash detectors (rules/runtime.yaml, X110+) for the engine
``oomfix``     out-of-memory fixes computed with the planner's memory estimator
``samples``    ``degenerate-generations`` on a run's ``samples.jsonl``
``live``       :class:`~tuneterm.watch.live.LiveEvaluator`: follow + incremental rule evaluation
``runs``       listing run directories, resolving ``RUN`` arguments, "died" detection
``command``    ``tuneterm watch -- COMMAND``: run any training command under tuneterm
``view``       the plain (headless) and Rich Live renderings of a watch
``loop``       the watch loop that joins them (stop-on-error, end conditions, exit codes)
"""

from __future__ import annotations
