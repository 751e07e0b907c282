"""Watching runs live: ``tuneterm watch``, ``tuneterm runs``, ``tuneterm stop``, following and stopping.

Modules (all light at import: no torch, no textual; Rich and plotext only inside the live view):

``live``       :class:`~tuneterm.watch.live.LiveEvaluator`: follow + incremental rule evaluation
``command``    ``tuneterm watch -- COMMAND``: run any training command under tuneterm
``view``       the plain (headless) and Rich Live renderings of a watch
``loop``       the watch loop that joins them (stop-on-error, end conditions, exit codes)
"""

from __future__ import annotations
